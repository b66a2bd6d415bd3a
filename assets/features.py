"""features/* and labels/*: daily, point-in-time, computed over a whole partition range at once."""

from typing import Any

import dagster as dg
import pandas as pd

from assets.common import (
    OWNERS,
    Partitions,
    daily_table,
    day_keys,
    local_window,
    release_freed_memory,
    require_materialized,
    trailing_days,
)
from assets.keys import ACTIVITY, FEATURES, LABELS, RAW_TRANSACTIONS
from assets.per_day import DailyTally, daily_frame_metadata, day_summary, per_day
from lifecycle.feature_schema import FEATURE_TABLE, Migration, migrate_feature_table
from lifecycle.feature_sql import coded_window
from lifecycle.features import (
    LABELS_SCHEMA,
    coded_feature_chunks,
    daily_activity,
    empty_features,
    feature_columns,
    features_schema,
)
from lifecycle.labels_sql import churn_labels_select
from lifecycle.settings import Settings
from resources.lazy_outputs import FrameChunks, SqlRows, chunked_frame_type, sql_rows_type
from resources.registry import Warehouse

KINDS = {"duckdb", "pandas", "numpy"}
ACTIVITY_TABLE = "features.customer_activity"


def check_sql_labels(
    connection: Any, table: str, start: pd.Timestamp, end: pd.Timestamp, tally: DailyTally
) -> None:
    """What the pandera type checked when labels were a frame: each day's preview against
    LABELS_SCHEMA (columns, types) and, over every row written, the schema's value checks."""
    if tally.previews:  # one validation of every day's preview (one per day: 1.4 s a year)
        LABELS_SCHEMA.validate(pd.concat(tally.previews.values(), ignore_index=True))
    bad = connection.execute(
        f"select count(*) from {table} where as_of_date >= ? and as_of_date < ? and "
        "(customer_id is null or purchases_in_horizon is null or purchases_in_horizon < 0 "
        "or churned not in (0, 1))",
        [start.to_pydatetime(), end.to_pydatetime()],
    ).fetchone()[0]
    if bad:
        raise dg.Failure(f"{bad} rows of {table} break LABELS_SCHEMA's value checks")


def migrate_features(
    context: dg.AssetExecutionContext, warehouse: Warehouse, columns: list[str], days: pd.Index
) -> Migration:
    """Bring the feature table's columns in line with ``features.windows`` before the write
    (see lifecycle.feature_schema) and tell the operator which stored days need a backfill."""
    with warehouse.get_connection() as con:
        migration = migrate_feature_table(con, columns, rewriting=list(days.date))
    if migration.added or migration.unfilled:
        context.log.warning(migration.describe())
    elif migration.retired:
        context.log.info(migration.describe())
    return migration


def build_feature_assets(partitions: Partitions, settings: Settings) -> list[dg.AssetsDefinition]:
    lookback = settings.features.lookback_days
    horizon = settings.labels.horizon_days
    windows = settings.features.windows
    first_day = pd.Timestamp(settings.partitions.start_date)
    dormant = settings.features.max_dormant_days

    @dg.asset(
        key=ACTIVITY,
        ins={"transactions": dg.AssetIn(RAW_TRANSACTIONS)},
        **daily_table(partitions, "activity_date"),
        group_name="features",  # shared by every customer-snapshot family (churn, value)
        kinds=KINDS,
        owners=OWNERS,
        description="Per customer per day with a purchase: purchase count, spend, largest basket.",
    )
    def customer_activity(context: dg.AssetExecutionContext, transactions: pd.DataFrame):
        start, end = local_window(context)
        require_materialized(context, RAW_TRANSACTIONS, day_keys(start, end), "daily activity")
        activity = daily_activity(transactions)
        # One row per customer-day (daily_activity groups by both): customers = rows per day.
        customers = per_day(activity, "activity_date", "customer_id", "size")
        return dg.Output(
            activity,
            metadata=daily_frame_metadata(
                context, activity, "activity_date", extra={"customers": customers}
            ),
        )

    @dg.asset(
        key=FEATURES,
        dagster_type=chunked_frame_type(features_schema(windows)),
        # Read by SQL (customers as integer codes), not loaded as a frame: see lifecycle.feature_sql.
        deps=[dg.AssetDep(ACTIVITY, partition_mapping=trailing_days(lookback))],
        **daily_table(partitions, "as_of_date"),
        group_name="features",
        kinds=KINDS,
        owners=OWNERS,
        description=(
            "As of day D, every customer with a purchase on or before D"
            + (
                f" (except those dormant for more than {dormant} days, counted in metadata)"
                if dormant
                else ""
            )
            + ": uncapped recency, tenure, lifetime count/spend/active days, and "
            f"count/spend/trend features over {list(windows)}-day windows, computed only from "
            f"data up to and including D. The last {lookback} days are read as numbers (DuckDB "
            "numbers the customers; each id is fetched once, as stored) and lifetime aggregates "
            "of the days before come from one SQL group-by over features/customer_activity. "
            "A change of windows adds its columns to the table "
            "(days stored earlier hold NULL there until backfilled: the run's warning and "
            "`days_to_backfill` name them)."
        ),
    )
    def customer_features_asset(context: dg.AssetExecutionContext, warehouse: Warehouse):
        start, end = local_window(context)
        # Lifetime features need every activity day from the first partition on.
        require_materialized(
            context, ACTIVITY, day_keys(first_day, end), "lifetime features read all history"
        )
        days = pd.date_range(start, end - pd.Timedelta(days=1), freq="D")
        release_freed_memory()
        with warehouse.get_connection() as con:
            coded = coded_window(
                con, ACTIVITY_TABLE, start - pd.Timedelta(days=lookback - 1), days[-1]
            )
        migration = migrate_features(context, warehouse, feature_columns(windows), days)
        schema = features_schema(windows)
        tally = DailyTally("as_of_date")
        counted = {"customers": 0, "left_out": 0}

        def written(chunk: pd.DataFrame) -> None:
            tally.add(chunk)
            counted["customers"] += int(chunk.attrs["customers"])  # chunks: disjoint ids
            counted["left_out"] += int(chunk.attrs.get("left_out_dormant", 0))

        def done(_rows: int) -> None:
            per_day_rows = pd.Series(tally.counts, dtype="int64")  # one row per customer-day
            context.add_asset_metadata(
                {
                    **tally.attach(context, extra={"customers": per_day_rows}),
                    "range_customers": dg.MetadataValue.int(counted["customers"]),
                    "range_left_out_dormant_customer_days": dg.MetadataValue.int(
                        counted["left_out"]
                    ),
                }
            )

        # Validated and written a chunk of customers at a time (staged, then the range replaced
        # in one transaction): a million customers over months never sit in memory at once.
        # In place: the schema coerces nothing, and pandera's default copies every chunk.
        chunks = coded_feature_chunks(coded, days, windows, dormant)
        return dg.Output(
            FrameChunks(
                (schema.validate(chunk, inplace=True) for chunk in chunks),
                empty=empty_features(windows),
                on_chunk=written,
                on_done=done,
            ),
            metadata={
                "schema_added_columns": ", ".join(migration.added) or "none",
                "days_to_backfill": dg.MetadataValue.int(migration.unfilled_days),
                "population_rule": (
                    f"purchase on or before D, last purchase within {dormant} days"
                    if dormant
                    else "every customer with a purchase on or before D"
                ),
            },
        )

    @dg.asset(
        key=LABELS,
        dagster_type=sql_rows_type(LABELS_SCHEMA),
        deps=[
            dg.AssetDep(FEATURES),
            # Offsets count days of this asset: day D reads activity of D+1 … D+H.
            dg.AssetDep(
                ACTIVITY,
                partition_mapping=dg.TimeWindowPartitionMapping(start_offset=1, end_offset=horizon),
            ),
        ],
        **daily_table(partitions, "as_of_date"),
        group_name="churn",
        kinds=KINDS,
        owners=OWNERS,
        description=(
            f"churned = 1 when a customer of day D's feature population makes no purchase in "
            f"(D, D+{horizon}]. A day matures only once all {horizon} following days exist. "
            "Computed by the warehouse (one SQL statement over features/customer_features and "
            "features/customer_activity), so a million customers' labels never pass through "
            "Python."
        ),
    )
    def churn_labels_asset(context: dg.AssetExecutionContext):
        start, end = local_window(context)
        horizon_end = end + pd.Timedelta(days=horizon)
        last_partition = partitions.daily.get_last_partition_key()
        if last_partition is None or horizon_end - pd.Timedelta(days=1) > pd.Timestamp(
            last_partition
        ):
            raise dg.Failure(
                description=(
                    f"labels for {start.date()} … {(end - pd.Timedelta(days=1)).date()} have not "
                    f"matured: they need activity up to {(horizon_end - pd.Timedelta(days=1)).date()}, "
                    f"but the last day partition is {last_partition}"
                )
            )
        require_materialized(context, FEATURES, day_keys(start, end), "label population")
        require_materialized(
            context, ACTIVITY, day_keys(start + pd.Timedelta(days=1), horizon_end), "label horizon"
        )
        last_day = (end - pd.Timedelta(days=1)).date()
        select = churn_labels_select(FEATURE_TABLE, ACTIVITY_TABLE, start.date(), last_day, horizon)

        def done(connection: Any, table: str) -> None:
            daily = day_summary(connection, table, "as_of_date", start, end, "avg(churned)")
            check_sql_labels(connection, table, start, end, daily.tally)
            context.add_asset_metadata(
                {
                    **daily.tally.attach(context, extra={"churn_rate": daily.values.round(4)}),
                    "range_churn_rate": dg.MetadataValue.float(daily.overall),
                }
            )

        return dg.Output(SqlRows(select, on_done=done))

    return [customer_activity, customer_features_asset, churn_labels_asset]
