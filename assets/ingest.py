"""raw/*: one daily partition = the events whose local timestamp falls in that day."""

import functools
from typing import Any

import dagster as dg
import pandas as pd
from dagster_pandera import pandera_schema_to_dagster_type

from assets.common import DAILY_RANGE, OWNERS, Partitions, local_window
from assets.per_day import daily_frame_metadata, day_check_evaluations, day_key, per_day
from lifecycle.settings import Settings
from lifecycle.sources import FILE_COUNTS, partition_window
from lifecycle.validation import (
    INTERACTIONS,
    SCHEMAS,
    TRANSACTIONS,
    EmptyPartitionError,
    Limits,
    QuarantineSchema,
    TableSpec,
    daily_quality,
    empty_days,
    quarantine_share_by_day,
    validate_rows,
)
from resources.sources import EventSource

PARTITIONED_BY_DAY = {"partition_expr": "event_date"}


def _days(days: list[str], shown: int = 20) -> str:
    more = f" … ({len(days)} in all)" if len(days) > shown else ""
    return ", ".join(days[:shown]) + more


def file_metadata(files: pd.DataFrame | None, by_source: pd.DataFrame) -> dict[str, Any]:
    """Per file: rows read, stored, quarantined, dated before the first partition, future-dated
    and left for other days' runs (read = stored + quarantined + before_start + other_days);
    future-dated rows are among the quarantined only in the run holding the last partition."""
    if files is None:
        return {}
    table = files.join(by_source, how="left").fillna(0).astype("int64")
    table = table.loc[:, ["rows_read", "stored", "quarantined", *FILE_COUNTS[1:4]]]
    return {
        "files": dg.MetadataValue.json(
            {path: {k: int(v) for k, v in row.items()} for path, row in table.iterrows()}
        ),
        "files_read": len(table),
        "rows_read": int(table["rows_read"].sum()),
        "rows_before_start": int(table["before_start"].sum()),
        "rows_future_dated": int(table["future_dated"].sum()),
    }


@functools.cache
def quarantine_type() -> dg.DagsterType:
    """One Dagster type shared by both quarantine tables (type names must be unique)."""
    return pandera_schema_to_dagster_type(QuarantineSchema)


def quarantine_check_name(table: str) -> str:
    return f"{table}_quarantine_share"


def day_results(
    by_day: pd.DataFrame, bound: float, empty: set[str], on_empty: str
) -> dict[str, tuple[bool, dict[str, Any]]]:
    """Each day's quarantine verdict with its own numbers, and the range's worst day beside
    them; an empty day fails only under on_empty_day: warn (fail stops the run earlier)."""
    worst = by_day["share"].idxmax()
    context = {
        "bound": float(bound),
        "on_empty_day": on_empty,
        "range": f"{by_day.index[0]}…{by_day.index[-1]}",
        "range_max_share": round(float(by_day["share"].max()), 4),
        "range_worst_day": str(worst),
        "range_days_over_bound": int((by_day["share"] > bound).sum()),
        "range_empty_days": len(empty),
    }
    results = {}
    for day, row in by_day.iterrows():
        is_empty = day in empty
        share = float(row["share"])
        passed = share <= bound and not (is_empty and on_empty == "warn")
        results[str(day)] = (
            passed,
            {
                "share": round(share, 4),
                "quarantined_rows": int(row["quarantined"]),
                "kept_rows": int(row["kept"]),
                "empty": is_empty,
                **context,
            },
        )
    return results


def build_raw_asset(
    spec: TableSpec, partitions: Partitions, settings: Settings
) -> dg.AssetsDefinition:
    """A raw table and its quarantine, written together so they never disagree."""
    table = spec.name
    key = dg.AssetKey(["raw", table])
    quarantine_key = dg.AssetKey(["raw", f"{table}_quarantine"])
    quality_key = dg.AssetKey(["raw", f"{table}_daily_quality"])
    bound = settings.validation.max_quarantine_share
    on_empty = settings.validation.on_empty_day
    limits = Limits(settings.validation.max_amount, settings.validation.max_weight)
    group = "ingest"
    empty_note = {
        "fail": " A day without valid rows fails the run.",
        "warn": " A day without valid rows also fails it (validation.on_empty_day: warn).",
        "allow": "",
    }[on_empty]

    @dg.multi_asset(
        name=f"raw_{table}",
        outs={
            "clean": dg.AssetOut(
                key=key,
                dagster_type=pandera_schema_to_dagster_type(SCHEMAS[table]),
                description=f"Validated {table}: rows of the day in the configured time zone.",
                metadata=PARTITIONED_BY_DAY,
                kinds={"duckdb", "pandas"},
                owners=OWNERS,
                group_name=group,
            ),
            "quality": dg.AssetOut(
                key=quality_key,
                description=f"Per day: {table} rows kept and quarantined, whether the day "
                "passed the quarantine bound (training excludes days that did not) and whether "
                "it had no valid row at all (empty).",
                metadata=PARTITIONED_BY_DAY,
                kinds={"duckdb", "pandas"},
                owners=OWNERS,
                group_name=group,
            ),
            "quarantine": dg.AssetOut(
                key=quarantine_key,
                dagster_type=quarantine_type(),
                description=f"Rejected {table} rows, verbatim, with the reason and the source "
                "(file path, sql or synthetic).",
                metadata=PARTITIONED_BY_DAY,
                kinds={"duckdb", "pandas"},
                owners=OWNERS,
                group_name=group,
            ),
        },
        check_specs=[
            dg.AssetCheckSpec(
                quarantine_check_name(table),
                asset=key,
                description=f"Every day's quarantined share stays at or below {bound:.0%}."
                + empty_note
                + " One result per day, also in range runs.",
                partitions_def=partitions.daily,
            )
        ],
        partitions_def=partitions.daily,
        backfill_policy=DAILY_RANGE,
        can_subset=False,
    )
    def _raw(context: dg.AssetExecutionContext, source: EventSource):
        start, end = local_window(context)
        today = pd.Timestamp.now(tz=settings.timezone).tz_localize(None)
        window = partition_window(
            start, end, settings.partitions.start_date, settings.partitions.end_date, today
        )
        read = source.read(table, window)
        batch = validate_rows(
            read.frame,
            spec,
            start,
            end,
            origin=f"{type(source).__name__}.{table}",
            limits=limits,
            future_from=window.future_here,
        )
        missing_days = empty_days(batch.clean, start, end)
        if missing_days and on_empty == "fail":
            raise EmptyPartitionError(
                f"raw/{table}: no valid rows for day(s) {', '.join(missing_days[:10])}"
                " (set validation.on_empty_day: warn or allow if such days are expected)"
            )
        if missing_days and on_empty == "warn":
            context.log.warning(
                f"raw/{table}: {len(missing_days)} day(s) without valid rows: {_days(missing_days)}"
            )
        shares = quarantine_share_by_day(batch.clean, batch.quarantine, start, end)
        quality = daily_quality(shares, bound)
        by_day = shares.assign(key=day_key(shares["day"])).set_index("key")
        who = spec.keys[0]
        yield dg.Output(
            batch.clean,
            output_name="clean",
            metadata={
                **daily_frame_metadata(
                    context,
                    batch.clean,
                    "event_date",
                    key,
                    {
                        "quarantined_rows": by_day["quarantined"].astype(int),
                        "quarantine_share": by_day["share"].round(4),
                        # Grouped on day codes: a day key per row would be 7M strings at 1M
                        # customers × 90 days.
                        f"{who.removesuffix('_id')}s": per_day(
                            batch.clean, "event_date", who, "nunique"
                        ),
                    },
                ),
                "range_quarantined_rows": dg.MetadataValue.int(len(batch.quarantine)),
                "empty_days": dg.MetadataValue.int(len(missing_days)),
                **({"empty_day_list": _days(missing_days)} if missing_days else {}),
                **file_metadata(read.files, batch.by_source),
            },
        )
        yield dg.Output(
            quality,
            output_name="quality",
            metadata={
                **daily_frame_metadata(
                    context,
                    quality,
                    "event_date",
                    quality_key,
                    {"passed": by_day["share"] <= bound},
                ),
                "failing_days": int((~quality["passed"]).sum()),
                "empty_days": int(quality["empty"].sum()),
            },
        )
        reasons = batch.quarantine["reason"].value_counts().head(10)
        yield dg.Output(
            batch.quarantine,
            output_name="quarantine",
            metadata={
                **daily_frame_metadata(context, batch.quarantine, "event_date", quarantine_key),
                "range_reasons": dg.MetadataValue.json(
                    {str(k): int(v) for k, v in reasons.items()}
                ),
            },
        )
        yield from day_check_evaluations(
            context,
            key,
            quarantine_check_name(table),
            day_results(by_day, bound, set(missing_days), on_empty),
        )

    return _raw


def build_ingest_assets(partitions: Partitions, settings: Settings) -> list[dg.AssetsDefinition]:
    """Raw assets for the tables the configured source provides, and only those."""
    return [
        build_raw_asset(spec, partitions, settings)
        for spec in (TRANSACTIONS, INTERACTIONS)
        if spec.name in settings.source.tables
    ]
