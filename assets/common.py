"""Partitions, owners and small helpers shared by every asset module."""

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import dagster as dg
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


def md_table(frame: pd.DataFrame, max_rows: int = 5) -> str:
    """A small markdown table for metadata previews (no extra dependency)."""
    head = frame.head(max_rows)
    lines = [
        "| " + " | ".join(map(str, head.columns)) + " |",
        "|" + "---|" * len(head.columns),
    ]
    for row in head.itertuples(index=False):
        lines.append(
            "| " + " | ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in row) + " |"
        )
    return "\n".join(lines)


def frame_metadata(frame: pd.DataFrame, date_column: str | None = None) -> dict[str, Any]:
    """Row count, a preview and, for range runs, the spread of rows per day."""
    meta: dict[str, Any] = {
        "rows": dg.MetadataValue.int(len(frame)),
        "preview": dg.MetadataValue.md(md_table(frame)),
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
