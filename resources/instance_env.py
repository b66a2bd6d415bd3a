"""Dagster instance settings that fit this project's ranged daily runs, set by its own entry
points (definitions.py for `dagster dev` code servers and their run workers, the `lifecycle`
CLI before it opens the instance) and by deploy/ for the cluster.

- ``DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS``: one "planned" event per asset for a
  ranged run instead of one per day (a year's backfill of eight daily keys planned 2,920).
  Its documented cost: a ranged run that fails does not mark its days FAILED; they stay
  missing (never materialised) or keep their last good materialisation, the run shows as
  failed, and the run-failure alert sensor fires. tests/test_orchestration_cost.py pins this.
- ``DAGSTER_EVENT_BATCH_SIZE``: the materialisations of one output's days are stored as one
  batch (one INSERT on PostgreSQL; one transaction per shard on the local SQLite storage of
  resources/event_storage.py) instead of one write each.

Values already in the environment win: an operator can turn either off (``false`` / ``0``).
"""

import os

INSTANCE_ENV = {
    "DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS": "true",
    "DAGSTER_EVENT_BATCH_SIZE": "500",
}


def apply_instance_env() -> None:
    """Set the settings above unless the environment already names them."""
    for name, value in INSTANCE_ENV.items():
        os.environ.setdefault(name, value)
