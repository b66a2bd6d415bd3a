"""Recommender: monthly interaction sets (all history by default) → implicit ALS challenger →
blocking checks → champion → daily top-K for every known user, each folded in from their history
up to the day, with a popularity fallback for users none of whose items the model knows."""

import tempfile
from dataclasses import asdict
from pathlib import Path

import dagster as dg
import pandas as pd

from assets.common import (
    OWNERS,
    Partitions,
    daily_table,
    day_keys,
    frame_metadata,
    local_window,
    manifest_metadata,
    md_table,
    require_materialized,
)
from assets.keys import REC_CHALLENGER, REC_CHAMPION, REC_DATASET, RECOMMENDATIONS
from assets.per_day import daily_frame_metadata, day_key
from assets.promotion import (
    build_champion_asset,
    challenger_under_review,
    check_result,
    gate_specs,
    register_challenger,
)
from lifecycle.datasets import build_manifest
from lifecycle.interactions import from_table, to_table
from lifecycle.numbers import rounded_metadata
from lifecycle.plots import precision_plot
from lifecycle.rec_data import window_start
from lifecycle.rec_serving import daily_recommendations
from lifecycle.rec_training import (
    JUDGED_NOTE,
    judge_challenger,
    load_fit,
    save_fits,
    train_challenger,
    version_record,
)
from lifecycle.recommender import AlsParams, RecommenderBundle, Weighting, build_interaction_data
from lifecycle.registry import ModelRegistry, ModelVersion
from lifecycle.settings import Settings
from resources.publisher import PostgresPublisher
from resources.registry import RegistryResource, Warehouse

MODEL = "recommender"
INTERACTIONS = dg.AssetKey(["raw", "interactions"])
# Every gate judges the *judged* fit (trained without each user's gate slice) on the gate slice,
# which the grid search never saw; the served fit has trained on it and is not judged by it.
GATES = {
    "precision_floor": "Judged fit: precision@K on each user's gate slice (their most recent "
    "items, unseen by the search and by this fit) is at least the floor.",
    "beats_popularity": "Judged fit: precision@K on the gate slice is at least the configured "
    "factor × the popularity baseline's (counted on the same training pairs) on the same users.",
    "beats_champion": "Judged fit vs the champion's served fit: precision@K not worse beyond the "
    "tolerance, on the gate pairs neither model trained on (the first model passes).",
    "coverage_floor": "Judged fit: share of the catalogue recommended to gate users is above "
    "the floor.",
    "fallback_present": "Both fits' popularity fallback for unknown users holds at least K items.",
}
# 3: judged through fold-in serving (each user's history solved against the item factors).
CODE_VERSION = "recommender-als-3"
KINDS = {"implicit", "duckdb"}
SEED = 0
# An open-ended calendar has no last partition to count back from: a century reaches past any
# start date, and Dagster clamps a mapped window to the partitions that exist.
OPEN_ENDED_MONTHS, OPEN_ENDED_DAYS = 1200, 36525


def history_mappings(
    settings: Settings,
) -> tuple[dg.TimeWindowPartitionMapping, dg.TimeWindowPartitionMapping]:
    """(monthly training set → its window's days, daily recommendations → every day up to D).

    Offsets count partitions of the reader, so "all history" is as many months (days) as lie
    between the first partition and the last one.
    """
    p = settings.partitions
    start = pd.Timestamp(p.start_date)
    months = settings.recommender.lookback_months
    if months is None:
        end = pd.Timestamp(p.end_date) if p.end_date else None
        # The last monthly partition is the month holding the end day (see build_partitions).
        months = (end.to_period("M") - start.to_period("M")).n if end else OPEN_ENDED_MONTHS
    days = (pd.Timestamp(p.end_date) - start).days if p.end_date else OPEN_ENDED_DAYS
    return (
        dg.TimeWindowPartitionMapping(start_offset=-max(months, 1), end_offset=-1),
        dg.TimeWindowPartitionMapping(start_offset=-max(days, 1), end_offset=0),
    )


def load_model(reg: ModelRegistry, mv: ModelVersion, fit: str = "served") -> RecommenderBundle:
    """One fit of a version ("served" or "judged"); every file of the version is checked
    against its recorded sha256 before implicit reads any of them."""
    paths = reg.verify(mv)
    return load_fit(next(iter(paths.values())).parent, fit)


def build_recommender_assets(partitions: Partitions, settings: Settings) -> list:
    cfg = settings.recommender
    weighting = Weighting(scheme=cfg.weighting.scheme, alpha=cfg.weighting.alpha)
    grid = [AlsParams(**point.model_dump()) for point in cfg.grid]
    first_day = pd.Timestamp(settings.partitions.start_date)
    window_months, history_days = history_mappings(settings)
    window = (
        "all history since the first partition"
        if cfg.lookback_months is None
        else f"the {cfg.lookback_months} months before M"
    )

    @dg.asset(
        key=REC_DATASET,
        # Read by SQL (only the columns needed); the mapping is the lineage: M reads every day
        # of its window, which ends the day before M.
        deps=[dg.AssetDep(INTERACTIONS, partition_mapping=window_months)],
        partitions_def=partitions.monthly,
        metadata={"partition_expr": "dataset_month"},
        group_name="recommender",
        kinds={"duckdb", "scipy"},
        owners=OWNERS,
        description=(
            f"Month M's user × item pairs from {window}, ids "
            "verbatim, with the summed raw weight and a `split`: each user's last "
            f"{cfg.holdout_k} items are `gate` (what the promotion gates judge), the "
            f"{cfg.holdout_k} before them `selection` (what the grid search picks on), the "
            "rest `train`. Long format: the id maps are the rows."
        ),
    )
    def interactions_training_set(context: dg.AssetExecutionContext, warehouse: Warehouse):
        month = pd.Timestamp(context.partition_key)
        start = window_start(month, cfg.lookback_months, first_day)
        needed = day_keys(start, month)
        if not needed:
            raise dg.Failure(
                description=f"month {context.partition_key} has no days of interactions before "
                f"it (partitions start on {first_day.date()}): train from the next month on"
            )
        require_materialized(context, INTERACTIONS, needed, "interaction training window")
        interactions = warehouse.query(
            "select user_id, item_id, timestamp, weight from raw.interactions "
            "where event_date >= ? and event_date < ?",
            [start.to_pydatetime(), month.to_pydatetime()],
        )
        splits = build_interaction_data(
            interactions, cfg.holdout_k, cfg.min_user_interactions, weighting
        )
        table = to_table(splits)
        manifest = build_manifest(
            table.assign(verified=True),
            REC_DATASET.path[-1],
            "interactions_ds",
            context.partition_key,
            [f"holdout_k={cfg.holdout_k}", f"min_user_interactions={cfg.min_user_interactions}"],
            {"interactions": f"{needed[0]}…{needed[-1]}"},
        )
        table = table.assign(dataset_month=month, dataset_version=manifest.version)
        return dg.Output(
            table,
            metadata={
                **frame_metadata(table),
                **manifest_metadata(manifest),
                **splits.summary(),
                "events": len(interactions),
                "window_start": str(start.date()),
                "window_end": needed[-1],
            },
        )

    @dg.asset(
        key=REC_CHALLENGER,
        ins={"dataset": dg.AssetIn(REC_DATASET)},
        partitions_def=partitions.monthly,
        group_name="recommender",
        kinds=KINDS,
        owners=OWNERS,
        code_version=CODE_VERSION,
        description=(
            "Month M's implicit ALS challenger. The grid point is chosen on the `selection` "
            "slice; the *judged* fit (that point refit without the `gate` slice) is what the "
            "gates score on the gate slice; the *served* fit (refit on the whole window) is "
            "what the champion serves. Both fits, each with a popularity fallback, are saved "
            "with implicit's .npz (no pickle) in one version, registered with sha256."
        ),
    )
    def recommender_challenger(
        context: dg.AssetExecutionContext, dataset: pd.DataFrame, registry: RegistryResource
    ) -> dg.MaterializeResult:
        splits = from_table(dataset, weighting, REC_DATASET.to_user_string())
        fits = train_challenger(splits, grid, cfg.k, SEED, cfg.fallback_size)
        params, metrics = version_record(
            fits, {"weighting": weighting.scheme, "alpha": weighting.alpha}
        )
        reg = registry.registry()
        with tempfile.TemporaryDirectory() as tmp:
            version, meta = register_challenger(
                context,
                reg,
                MODEL,
                save_fits(fits, Path(tmp)),
                str(dataset["dataset_version"].iloc[0]),
                params=params,
                metrics=metrics,
                code_version=CODE_VERSION,
            )
        numbers = {
            **{f"{k}_at_k": float(v) for k, v in fits.gate.as_dict().items()},
            **{f"popularity_{k}_at_k": float(v) for k, v in fits.popularity.as_dict().items()},
            **{f"selection_{k}_at_k": float(v) for k, v in fits.selection.as_dict().items()},
            **{k: float(v) for k, v in metrics.items() if k.startswith("served_")},
        }
        return dg.MaterializeResult(
            metadata={
                "plot_precision_at_k": dg.MetadataValue.md(
                    precision_plot(
                        fits.gate.as_dict(), fits.popularity.as_dict(), cfg.k, version.version
                    )
                ),
                **meta,
                "judged_fit": JUDGED_NOTE,
                **rounded_metadata(numbers),
                "trials": dg.MetadataValue.md(md_table(fits.trials, max_rows=len(fits.trials))),
                "params": dg.MetadataValue.json(dict(asdict(fits.params))),
            }
        )

    @dg.multi_asset_check(
        specs=gate_specs(REC_CHALLENGER, GATES, partitions.monthly, [REC_DATASET]),
        ins={"dataset": dg.AssetIn(REC_DATASET)},
        name="recommender_promotion_gates",
        description="Gates on the challenger's judged fit, each on the same per-user gate slice.",
    )
    def recommender_gates(
        context: dg.AssetCheckExecutionContext, dataset: pd.DataFrame, registry: RegistryResource
    ):
        reg = registry.registry()
        challenger = challenger_under_review(
            context, reg, MODEL, str(dataset["dataset_version"].iloc[0])
        )
        champion = reg.alias(MODEL, "champion")
        splits = from_table(dataset, weighting, REC_DATASET.to_user_string())
        outcomes = judge_challenger(
            load_model(reg, challenger, "judged"),
            load_model(reg, challenger, "served"),
            load_model(reg, champion, "served") if champion is not None else None,
            splits.judged,
            cfg.k,
            cfg.checks,
        )
        for outcome in outcomes:
            yield check_result(outcome, REC_CHALLENGER, challenger, champion)

    champion = build_champion_asset(
        MODEL, REC_CHALLENGER, list(GATES), "recommender", KINDS, settings.alerts.webserver_url
    )

    who = (
        "every user with any interaction on or before D"
        if cfg.active_days is None
        else f"every user active in the last {cfg.active_days} days (the others are counted)"
    )

    @dg.asset(
        key=RECOMMENDATIONS,
        # Each user's whole history up to D is read by SQL: it is folded into the champion and
        # filtered out of their list.
        deps=[dg.AssetDep(INTERACTIONS, partition_mapping=history_days), REC_CHAMPION],
        **daily_table(partitions, "as_of_date"),
        output_required=False,  # nothing to write until a champion exists
        group_name="recommender",
        kinds=KINDS,
        owners=OWNERS,
        description=(
            f"For day D, the champion's top-{cfg.k} items for {who}. Each user's history up to "
            "D is folded into the champion (their factor solved against its item factors), so "
            "events and users newer than the fit count; items a user already had are never "
            "shown. Users none of whose items the champion knows get the popularity fallback, "
            "flagged `is_fallback`."
        ),
    )
    def recommendations(
        context: dg.AssetExecutionContext,
        registry: RegistryResource,
        publisher: PostgresPublisher,
        warehouse: Warehouse,
    ):
        start, end = local_window(context)
        reg = registry.registry()
        mv = reg.alias(MODEL, "champion")
        if mv is None:
            context.log.warning("no recommender champion yet: nothing to recommend")
            return
        require_materialized(context, INTERACTIONS, day_keys(first_day, end), "history up to D")
        # Ordered, so each pair's weights add up in one order on every run.
        events = warehouse.query(
            "select user_id, item_id, event_date, weight from raw.interactions "
            "where event_date < ? order by user_id, item_id, event_date, weight",
            [end.to_pydatetime()],
        )
        days = pd.date_range(start, end - pd.Timedelta(days=1), freq="D")
        table, counts = daily_recommendations(
            events, days, load_model(reg, mv), cfg.k, weighting, mv.version, cfg.active_days
        )
        per_user = table.drop_duplicates(["as_of_date", "user_id"])
        user_days = per_user.groupby(day_key(per_user["as_of_date"]).to_numpy())
        # A generator, so the bare `return` above (no champion yet) writes nothing, not None;
        # and Dagster stores this output (the warehouse commits the partition) before resuming
        # here, so PostgreSQL only ever receives committed rows.
        yield dg.Output(
            table,
            metadata={
                **daily_frame_metadata(
                    context,
                    table,
                    "as_of_date",
                    extra={
                        "users": user_days["user_id"].nunique(),
                        "fallback_share": user_days["is_fallback"].mean().round(4),
                    },
                ),
                "model_version": mv.version,
                "range_users": int(per_user["user_id"].nunique()),
                "range_fallback_share": round(float(per_user["is_fallback"].mean()), 4)
                if len(per_user)
                else 0.0,
                **counts,
            },
        )
        yield from publisher.publish_committed(RECOMMENDATIONS, table, "as_of_date", start, end)

    return [
        interactions_training_set,
        recommender_challenger,
        recommender_gates,
        champion,
        recommendations,
    ]
