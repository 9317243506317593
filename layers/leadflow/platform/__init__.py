"""Platform: AWS access and web plumbing that knows no business rule. ``dynamo`` is the one place
DynamoDB requests are shaped, paged, batched and committed; ``tables`` names the tables, keys and
indexes; ``tokens`` and ``rotation`` sign links with keys from Secrets Manager; ``http`` and
``routes`` are the HTTP API's answers and route list; ``bulk`` the resumable SQS bulk jobs, ``lanes`` their progress items."""
