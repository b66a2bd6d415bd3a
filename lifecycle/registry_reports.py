"""The registry as tables for people: alias history and one row per version.

Read-only views for the CLI, the demo and notebooks; nothing in the promotion path reads them.
Columns are fixed (:data:`HISTORY_COLUMNS`, :data:`SUMMARY_COLUMNS`) so an empty registry
still yields a frame with the expected shape, and timestamps come back as UTC-aware.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

import pandas as pd

from lifecycle.registry_store import SCHEMA

__all__ = ["HISTORY_COLUMNS", "SUMMARY_COLUMNS", "SUMMARY_SQL", "history_frame", "summary_frame"]

HISTORY_COLUMNS: tuple[str, ...] = (
    "seq",
    "model_name",
    "alias",
    "from_version",
    "to_version",
    "event",
    "run_id",
    "at",
    "reason",
)
SUMMARY_COLUMNS: tuple[str, ...] = (
    "model_name",
    "version",
    "partition_key",
    "created_at",
    "dataset_version",
    "code_version",
    "run_id",
    "sha256",
    "params",
    "metrics",
    "aliases",
    "ever_champion",
)

# The rows behind :func:`summary_frame`, in its column order.
SUMMARY_SQL = f"""
SELECT v.model_name, v.version, v.partition_key, v.created_at,
       v.dataset_version, v.code_version, v.run_id, v.sha256,
       v.params, v.metrics,
       coalesce((SELECT string_agg(a.alias, ',' ORDER BY a.alias)
                 FROM {SCHEMA}.aliases a
                 WHERE a.model_name = v.model_name
                   AND a.version = v.version), '') AS aliases,
       EXISTS (SELECT 1 FROM {SCHEMA}.alias_events e
               WHERE e.model_name = v.model_name
                 AND e.to_version = v.version
                 AND e.alias = 'champion') AS ever_champion
FROM {SCHEMA}.model_versions v
ORDER BY v.model_name, v.version
"""


def history_frame(rows: Sequence[Sequence[Any]]) -> pd.DataFrame:
    """Alias history rows (``registry_store.event_rows``) as :data:`HISTORY_COLUMNS`, newest
    last."""
    frame = pd.DataFrame(rows, columns=list(HISTORY_COLUMNS))
    frame["seq"] = frame["seq"].astype("int64")
    frame["at"] = pd.to_datetime(frame["at"]).dt.tz_localize("UTC")
    return frame


def summary_frame(rows: Sequence[Sequence[Any]]) -> pd.DataFrame:
    """The rows of :data:`SUMMARY_SQL`, one per version with aliases held and metrics
    flattened as ``metric_<name>``.

    Columns: :data:`SUMMARY_COLUMNS` followed by one ``metric_<name>`` column per metric
    name seen in any version (NaN where a version lacks it).
    """
    frame = pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))
    frame["created_at"] = pd.to_datetime(frame["created_at"]).dt.tz_localize("UTC")
    frame["ever_champion"] = frame["ever_champion"].astype(bool)
    metrics = [json.loads(m) for m in frame["metrics"]]
    names = sorted({name for m in metrics for name in m})
    for name in names:
        frame[f"metric_{name}"] = [float(m.get(name, math.nan)) for m in metrics]
    return frame
