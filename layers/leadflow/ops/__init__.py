"""Operator tools for a deployed stage (and the local runtime): ``leadflow ops ...``."""
