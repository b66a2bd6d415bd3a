"""features/* and labels/*: daily, point-in-time, computed over a whole partition range at once."""

import dagster as dg
import pandas as pd
from dagster_pandera import pandera_schema_to_dagster_type

from assets.common import (
    OWNERS,
    Partitions,
    daily_table,
    day_keys,
    local_window,
    require_materialized,
    trailing_days,
)
from assets.keys import ACTIVITY, FEATURES, LABELS, RAW_TRANSACTIONS
from assets.per_day import daily_frame_metadata, per_day
from lifecycle.feature_schema import Migration, migrate_feature_table
from lifecycle.features import (
    LABELS_SCHEMA,
    PRIOR_COLUMNS,
    churn_labels,
    customer_features,
    daily_activity,
    empty_prior,
    feature_columns,
    features_schema,
)
from lifecycle.settings import Settings
from resources.registry import Warehouse

KINDS = {"duckdb", "pandas", "numpy"}


def lifetime_state(warehouse: Warehouse, before: pd.Timestamp) -> pd.DataFrame:
    """Per customer, lifetime aggregates of all activity before ``before``: one group-by in
    DuckDB, so a long history costs one scan rather than loading every day into pandas."""
    # The table exists: the asset requires every activity partition before calling this.
    frame = warehouse.query(
        "select customer_id, min(activity_date) first_date, max(activity_date) last_date, "
        "sum(txn_count) txn_count, sum(spend) spend, count(*) active_days "
        "from features.customer_activity where activity_date < ? group by customer_id",
        [before.to_pydatetime()],
    )
    return frame.loc[:, list(PRIOR_COLUMNS)] if len(frame) else empty_prior()


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
        customers = per_day(activity, "activity_date", "customer_id", "nunique")
        return dg.Output(
            activity,
            metadata=daily_frame_metadata(
                context, activity, "activity_date", extra={"customers": customers}
            ),
        )

    @dg.asset(
        key=FEATURES,
        dagster_type=pandera_schema_to_dagster_type(features_schema(windows)),
        ins={"activity": dg.AssetIn(ACTIVITY, partition_mapping=trailing_days(lookback))},
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
            f"data up to and including D. The last {lookback} days are read as the input; "
            "lifetime aggregates of the days before come from one SQL group-by over "
            "features/customer_activity. A change of windows adds its columns to the table "
            "(days stored earlier hold NULL there until backfilled: the run's warning and "
            "`days_to_backfill` name them)."
        ),
    )
    def customer_features_asset(
        context: dg.AssetExecutionContext, activity: pd.DataFrame, warehouse: Warehouse
    ):
        start, end = local_window(context)
        window_from = start - pd.Timedelta(days=lookback - 1)
        # Lifetime features need every activity day from the first partition on.
        require_materialized(
            context, ACTIVITY, day_keys(first_day, end), "lifetime features read all history"
        )
        prior = lifetime_state(warehouse, window_from)
        days = pd.date_range(start, end - pd.Timedelta(days=1), freq="D")
        features = customer_features(activity, days, windows, prior, dormant)
        left_out = int(features.attrs.get("left_out_dormant", 0))
        migration = migrate_features(context, warehouse, feature_columns(windows), days)
        return dg.Output(
            features,
            metadata={
                **daily_frame_metadata(
                    context,
                    features,
                    "as_of_date",
                    extra={"customers": per_day(features, "as_of_date", "customer_id", "nunique")},
                ),
                "schema_added_columns": ", ".join(migration.added) or "none",
                "days_to_backfill": dg.MetadataValue.int(migration.unfilled_days),
                "range_customers": dg.MetadataValue.int(int(features["customer_id"].nunique())),
                "range_left_out_dormant_customer_days": dg.MetadataValue.int(left_out),
                "population_rule": (
                    f"purchase on or before D, last purchase within {dormant} days"
                    if dormant
                    else "every customer with a purchase on or before D"
                ),
            },
        )

    @dg.asset(
        key=LABELS,
        dagster_type=pandera_schema_to_dagster_type(LABELS_SCHEMA),
        ins={
            "population": dg.AssetIn(FEATURES, metadata={"columns": ["as_of_date", "customer_id"]}),
            "activity": dg.AssetIn(
                ACTIVITY,
                # Offsets count days of this asset: day D reads activity of D+1 … D+H.
                partition_mapping=dg.TimeWindowPartitionMapping(start_offset=1, end_offset=horizon),
            ),
        },
        **daily_table(partitions, "as_of_date"),
        group_name="churn",
        kinds=KINDS,
        owners=OWNERS,
        description=(
            f"churned = 1 when a customer of day D's feature population makes no purchase in "
            f"(D, D+{horizon}]. A day matures only once all {horizon} following days exist."
        ),
    )
    def churn_labels_asset(
        context: dg.AssetExecutionContext, population: pd.DataFrame, activity: pd.DataFrame
    ):
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
        labels = churn_labels(population, activity, horizon)
        return dg.Output(
            labels,
            metadata={
                **daily_frame_metadata(
                    context,
                    labels,
                    "as_of_date",
                    extra={"churn_rate": per_day(labels, "as_of_date", "churned", "mean").round(4)},
                ),
                "range_churn_rate": dg.MetadataValue.float(
                    float(labels["churned"].mean()) if len(labels) else 0.0
                ),
            },
        )

    return [customer_activity, customer_features_asset, churn_labels_asset]
