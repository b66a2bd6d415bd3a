"""Tags and partition helpers shared by the sensors (run keys, partitions, ranges)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

import dagster as dg

TRIGGER_TAG = "lifecycle/trigger"
PARTITION_TAG = "dagster/partition"
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"


def partition_exists(
    partitions_def: dg.TimeWindowPartitionsDefinition, key: str, now: dt.datetime
) -> bool:
    """Whether ``key`` is a partition as of ``now`` (a day exists once it is over)."""
    with dg.partition_loading_context(effective_dt=now):
        return partitions_def.has_partition_key(key)


def run_partition(tags: Mapping[str, str]) -> str | None:
    """A run's partition key, or ``start…end`` for a single-run range backfill."""
    if tags.get(PARTITION_TAG):
        return tags[PARTITION_TAG]
    if tags.get(RANGE_START_TAG) and tags.get(RANGE_END_TAG):
        return f"{tags[RANGE_START_TAG]}…{tags[RANGE_END_TAG]}"
    return None
