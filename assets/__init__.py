"""Dagster wrappers only: each module says what depends on what; logic lives in `lifecycle`."""
