"""Metadata for single partitions of a ranged output, written into the step's accumulator.

Why internals: Dagster's ``add_asset_metadata(..., partition_key=...)`` rebuilds its whole
metadata accumulator (a copy and a type check of every partition's entry so far) and lists the
run's partitions again on each call, so N days cost O(N²); and an IO manager's OutputContext has
no per-partition call at all. :func:`merge_partition_metadata` makes the same entries in one
step; the two names below are the accumulator's own types. Dagster reads the accumulator when
it builds each partition's materialisation, after the IO manager's ``handle_output``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import dagster as dg
from dagster._core.execution.context.metadata_logging import (
    AssetMetadataHandle,
    OutputMetadataAccumulator,
)


def merge_partition_metadata(
    step: Any, asset_key: dg.AssetKey, per_partition: Mapping[str, Mapping[str, Any]]
) -> None:
    """Add ``per_partition[key]`` to partition ``key``'s event of ``asset_key`` (the step's
    ``StepExecutionContext``; keys must be partitions of the run, which callers check)."""
    merged = dict(step._metadata_accumulator.per_output_metadata)
    for key, meta in per_partition.items():
        handle = AssetMetadataHandle(asset_key=asset_key, partition_key=key)
        merged[handle] = {**merged.get(handle, {}), **meta}
    step._metadata_accumulator = OutputMetadataAccumulator(per_output_metadata=merged)


def on_last_partition(context: dg.OutputContext, metadata: Mapping[str, Any]) -> dict[str, Any]:
    """``metadata`` for the output as a whole, except in a ranged write: then only its last
    partition's event carries it (what is the same for every day, such as a column schema,
    need not be stored in each of thousands of events; the asset's latest event shows it)."""
    keys = list(context.asset_partition_keys) if context.has_asset_partitions else []
    if len(keys) < 2:
        return dict(metadata)
    try:
        step = context.step_context
    except dg.DagsterInvariantViolationError:  # an OutputContext built outside a run
        return dict(metadata)
    merge_partition_metadata(step, context.asset_key, {keys[-1]: metadata})
    return {}
