"""The kernel every context stands on: ids, the clock, errors, settings, observability and reading
content files. It imports no other leadflow package."""
