"""raw/*: one daily partition = the events whose local timestamp falls in that day."""

import functools

import dagster as dg
from dagster_pandera import pandera_schema_to_dagster_type

from assets.common import DAILY_RANGE, OWNERS, Partitions, frame_metadata, local_window
from lifecycle.settings import Settings
from lifecycle.validation import (
    INTERACTIONS,
    SCHEMAS,
    TRANSACTIONS,
    EmptyPartitionError,
    QuarantineSchema,
    TableSpec,
    empty_days,
    quarantine_share_by_day,
    validate_rows,
)
from resources.sources import EventSource

PARTITIONED_BY_DAY = {"partition_expr": "event_date"}


@functools.cache
def quarantine_type() -> dg.DagsterType:
    """One Dagster type shared by both quarantine tables (type names must be unique)."""
    return pandera_schema_to_dagster_type(QuarantineSchema)


def quarantine_check_name(table: str) -> str:
    return f"{table}_quarantine_share"


def build_raw_asset(
    spec: TableSpec, partitions: Partitions, settings: Settings
) -> dg.AssetsDefinition:
    """A raw table and its quarantine, written together so they never disagree."""
    table = spec.name
    key = dg.AssetKey(["raw", table])
    quarantine_key = dg.AssetKey(["raw", f"{table}_quarantine"])
    quality_key = dg.AssetKey(["raw", f"{table}_daily_quality"])
    bound = settings.validation.max_quarantine_share
    group = "ingest"

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
                description=f"Per day: {table} rows kept and quarantined, and whether the day "
                "passed the quarantine bound (training excludes days that did not).",
                metadata=PARTITIONED_BY_DAY,
                kinds={"duckdb", "pandas"},
                owners=OWNERS,
                group_name=group,
            ),
            "quarantine": dg.AssetOut(
                key=quarantine_key,
                dagster_type=quarantine_type(),
                description=f"Rejected {table} rows, verbatim, with the reason.",
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
                description=f"Every day's quarantined share stays at or below {bound:.0%}.",
            )
        ],
        partitions_def=partitions.daily,
        backfill_policy=DAILY_RANGE,
        can_subset=False,
    )
    def _raw(context: dg.AssetExecutionContext, source: EventSource):
        start, end = local_window(context)
        raw = source.fetch(table, start, end)
        batch = validate_rows(raw, spec, start, end, origin=f"{type(source).__name__}.{table}")
        missing_days = empty_days(batch.clean, start, end)
        if missing_days and settings.validation.on_empty_day == "fail":
            raise EmptyPartitionError(
                f"raw/{table}: no valid rows for day(s) {', '.join(missing_days[:10])}"
                " (set validation.on_empty_day: allow if such days are expected)"
            )
        shares = quarantine_share_by_day(batch.clean, batch.quarantine, start, end)
        quality = shares.rename(columns={"day": "event_date"}).assign(
            passed=lambda f: f["share"] <= bound
        )
        worst = shares.loc[shares["share"].idxmax()]
        yield dg.Output(
            batch.clean,
            output_name="clean",
            metadata={
                **frame_metadata(batch.clean, "event_date"),
                "quarantined_rows": dg.MetadataValue.int(len(batch.quarantine)),
            },
        )
        yield dg.Output(
            quality,
            output_name="quality",
            metadata={**frame_metadata(quality), "failing_days": int((~quality["passed"]).sum())},
        )
        reasons = batch.quarantine["reason"].value_counts().head(10)
        yield dg.Output(
            batch.quarantine,
            output_name="quarantine",
            metadata={
                **frame_metadata(batch.quarantine),
                "reasons": dg.MetadataValue.json({str(k): int(v) for k, v in reasons.items()}),
            },
        )
        yield dg.AssetCheckResult(
            check_name=quarantine_check_name(table),
            asset_key=key,
            passed=bool(shares["share"].max() <= bound),
            severity=dg.AssetCheckSeverity.WARN,
            metadata={
                "max_share": float(worst["share"]),
                "worst_day": str(worst["day"].date()),
                "bound": float(bound),
                "days_over_bound": int((shares["share"] > bound).sum()),
                "quarantined_rows": int(shares["quarantined"].sum()),
                "kept_rows": int(shares["kept"].sum()),
            },
        )

    return _raw


def build_ingest_assets(partitions: Partitions, settings: Settings) -> list[dg.AssetsDefinition]:
    return [build_raw_asset(spec, partitions, settings) for spec in (TRANSACTIONS, INTERACTIONS)]
