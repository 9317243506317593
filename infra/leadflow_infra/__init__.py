"""The leadflow CDK app's constructs and stack."""
