"""leadflow: serverless, event-driven marketing automation (domain package of the shared layer)."""

__version__ = "0.1.0"
