"""Platform helpers the domain modules stand on: AWS service access that knows no business rule
(``dynamo``: the one place DynamoDB requests are shaped, paged, batched and committed)."""
