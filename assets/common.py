"""Partitions, owners and small helpers shared by every asset module."""

import ctypes
import datetime as dt
import gc
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import dagster as dg
import numpy as np
import pandas as pd

from lifecycle.datasets import DatasetManifest
from lifecycle.settings import Settings

OWNERS = ["team:ml-platform"]
DAILY_RANGE = dg.BackfillPolicy.single_run()


@dataclass(frozen=True)
class Partitions:
    """The two calendars every asset is partitioned on, declared once from the settings."""

    daily: dg.DailyPartitionsDefinition
    monthly: dg.MonthlyPartitionsDefinition


def build_partitions(settings: Settings) -> Partitions:
    p, tz = settings.partitions, settings.timezone
    start = p.start_date
    end = p.end_date
    # A month is trained on its first day, so the month holding the (exclusive) end day is
    # included: data through June 30 makes July's challenger trainable.
    month_end = None
    if end is not None:
        last_month = pd.Timestamp(end).to_period("M")
        month_end = (last_month + 1).to_timestamp().strftime("%Y-%m-%d")
    return Partitions(
        daily=dg.DailyPartitionsDefinition(
            start_date=start.isoformat(),
            end_date=end.isoformat() if end else None,
            timezone=tz,
        ),
        monthly=dg.MonthlyPartitionsDefinition(
            start_date=start.replace(day=1).isoformat(),
            end_date=month_end,
            # Month M is trained on its first day, while it is still in progress.
            end_offset=1,
            timezone=tz,
        ),
    )


def partition_exists(partitions_def: dg.PartitionsDefinition, key: str, now: dt.datetime) -> bool:
    """Whether ``key`` is a partition as of ``now``, not as of the wall clock (a day exists
    once it is over); schedules pass their tick's time, sensors the time of the tick."""
    with dg.partition_loading_context(effective_dt=now):
        return partitions_def.has_partition_key(key)


def daily_table(partitions: Partitions, date_column: str) -> dict[str, Any]:
    """Decorator arguments of a daily warehouse table computed a whole range at a time."""
    return {
        "partitions_def": partitions.daily,
        "backfill_policy": DAILY_RANGE,
        "metadata": {"partition_expr": date_column},
    }


def trailing_days(days: int) -> dg.TimeWindowPartitionMapping:
    """Day D reads the upstream days D-(days-1) … D (offsets count days of the reader)."""
    return dg.TimeWindowPartitionMapping(start_offset=-(days - 1), end_offset=0)


def local_window(context: dg.AssetExecutionContext) -> tuple[pd.Timestamp, pd.Timestamp]:
    """The run's partition window (one day or a range) as naive local timestamps."""
    window = context.partition_time_window
    return (
        pd.Timestamp(window.start).tz_localize(None),
        pd.Timestamp(window.end).tz_localize(None),
    )


def require_materialized(
    context: dg.AssetExecutionContext, key: dg.AssetKey, partition_keys: Iterable[str], why: str
) -> None:
    """Fail naming the missing partitions: Dagster runs a step even when mapped upstream
    partitions are absent, and a window read over a hole would silently compute wrong numbers.
    """
    wanted = sorted(set(partition_keys))
    done = context.instance.get_materialized_partitions(key)
    missing = [k for k in wanted if k not in done]
    if missing:
        shown = ", ".join(missing[:5]) + (f" … ({len(missing)} in all)" if len(missing) > 5 else "")
        raise dg.Failure(
            description=f"{key.to_user_string()} is missing partitions {shown}: {why}",
            metadata={"missing_partitions": len(missing)},
        )


def day_keys(start: pd.Timestamp, end: pd.Timestamp) -> list[str]:
    return list(pd.date_range(start, end - pd.Timedelta(days=1), freq="D").strftime("%Y-%m-%d"))


def json_safe(value: Any) -> str | int | float | bool | None:
    """A cell as a table record holds it: numpy scalars as Python numbers, times as ISO
    strings, missing (None, NaN, NaT, pd.NA) and infinite as None, anything else as text."""
    if value is None or (pd.api.types.is_scalar(value) and pd.isna(value)):
        return None
    if isinstance(value, np.datetime64):
        value = pd.Timestamp(value)
    if isinstance(value, dt.date | dt.time):  # pd.Timestamp and dt.datetime included
        return value.isoformat()
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no infinity
    if isinstance(value, bool | int | float | str):
        return value
    return str(value)


def table_value(frame: pd.DataFrame, max_rows: int | None = None) -> dg.TableMetadataValue:
    """A frame (or its first ``max_rows``) as Dagster's own table, sortable in the UI, numbers
    kept as numbers; every value JSON-safe, as the event log stores it."""
    head = frame if max_rows is None else frame.head(max_rows)
    records = [
        dg.TableRecord({str(k): json_safe(v) for k, v in row.items()})
        for row in head.to_dict(orient="records")
    ]
    schema = dg.TableSchema(
        columns=[dg.TableColumn(str(c), str(head[c].dtype)) for c in head.columns]
    )
    return dg.MetadataValue.table(records, schema=schema)


def frame_metadata(frame: pd.DataFrame, date_column: str | None = None) -> dict[str, Any]:
    """Row count, a preview and, for range runs, the spread of rows per day."""
    meta: dict[str, Any] = {
        "rows": dg.MetadataValue.int(len(frame)),
        "preview": table_value(frame, max_rows=5),
    }
    if date_column and not frame.empty:
        per_day = frame.groupby(date_column).size()
        meta |= {
            "days": dg.MetadataValue.int(int(per_day.size)),
            "rows_per_day_min": dg.MetadataValue.int(int(per_day.min())),
            "rows_per_day_max": dg.MetadataValue.int(int(per_day.max())),
        }
    return meta


def manifest_metadata(manifest: DatasetManifest) -> dict[str, Any]:
    return {
        "dataset_version": manifest.version,
        "content_sha256": manifest.content_sha256,
        "manifest": dg.MetadataValue.json(manifest.as_dict()),
        "verified_rows": manifest.verified_rows,
        **{f"rows_{k}": v for k, v in manifest.rows_by_split.items()},
    }


def release_freed_memory() -> None:
    """Hand back to the OS the heap that earlier steps of this process freed (glibc keeps it):
    a run's steps share one process (in-process executor), so without this a range's raw step
    adds its high-water mark to the features step's. A no-op where libc is not glibc."""
    gc.collect()
    try:
        trim = ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return
    trim(0)
