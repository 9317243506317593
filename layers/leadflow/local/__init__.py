"""The local, embedded runtime: the whole system in one process on moto (not shipped to Lambda)."""
