"""Issue 7, prove it: `make proof` (see __main__)."""
