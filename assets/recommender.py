"""Recommender: monthly interaction sets → implicit ALS challenger → blocking checks → champion →
daily top-K recommendations, with a popularity fallback for users the model has never seen."""

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
    trailing_days,
)
from assets.keys import REC_CHALLENGER, REC_CHAMPION, REC_DATASET, RECOMMENDATIONS
from assets.promotion import (
    build_champion_asset,
    challenger_under_review,
    check_result,
    gate_specs,
    register_challenger,
)
from lifecycle import gates
from lifecycle.datasets import build_manifest
from lifecycle.interactions import (
    active_users,
    evaluate_bundle,
    from_table,
    holdout_unseen_by,
    recommendation_table,
    serving_bundle,
    to_table,
)
from lifecycle.recommender import (
    AlsParams,
    RecommenderBundle,
    Weighting,
    build_bundle,
    build_interaction_data,
    evaluate_popularity,
    load_bundle,
    save_bundle,
    search_als,
    train_als,
)
from lifecycle.registry import ModelRegistry, ModelVersion
from lifecycle.settings import Settings
from resources.publisher import PostgresPublisher
from resources.registry import RegistryResource

MODEL = "recommender"
INTERACTIONS = dg.AssetKey(["raw", "interactions"])
GATES = {
    "precision_floor": "precision@K on the per-user temporal holdout is at least the floor.",
    "beats_popularity": "precision@K is at least the configured factor × the popularity "
    "baseline's on the same users.",
    "beats_champion": "precision@K is not worse than the champion's beyond the tolerance, both "
    "re-evaluated on the held-out pairs neither model trained on (the first model passes).",
    "coverage_floor": "Share of the catalogue recommended to holdout users is above the floor.",
    "fallback_present": "The popularity fallback for unknown users holds at least K items.",
}
CODE_VERSION = "recommender-als-1"
KINDS = {"implicit", "duckdb"}
SEED = 0


def load_model(reg: ModelRegistry, mv: ModelVersion) -> RecommenderBundle:
    """Every file is checked against its recorded sha256 before implicit reads it."""
    paths = reg.verify(mv)
    return load_bundle(next(iter(paths.values())).parent)


def build_recommender_assets(partitions: Partitions, settings: Settings) -> list:
    cfg = settings.recommender
    weighting = Weighting(scheme=cfg.weighting.scheme, alpha=cfg.weighting.alpha)
    grid = [AlsParams(**point.model_dump()) for point in cfg.grid]
    first_day = pd.Timestamp(settings.partitions.start_date)

    @dg.asset(
        key=REC_DATASET,
        ins={
            "interactions": dg.AssetIn(
                INTERACTIONS,
                # Offsets count months: month M reads the days of M-L … M-1.
                partition_mapping=dg.TimeWindowPartitionMapping(
                    start_offset=-cfg.lookback_months, end_offset=-1
                ),
            )
        },
        partitions_def=partitions.monthly,
        metadata={"partition_expr": "dataset_month"},
        group_name="recommender",
        kinds={"duckdb", "scipy"},
        owners=OWNERS,
        description=(
            f"Month M's user × item confidences from the {cfg.lookback_months} months before M "
            f"({weighting.scheme} weighting), with each user's last {cfg.holdout_k} items held "
            "out (`split = holdout`) for evaluation. Long format: the id maps are the rows."
        ),
    )
    def interactions_training_set(context: dg.AssetExecutionContext, interactions: pd.DataFrame):
        month = pd.Timestamp(context.partition_key)
        start = max(month - pd.DateOffset(months=cfg.lookback_months), first_day)
        needed = day_keys(start, month)
        require_materialized(context, INTERACTIONS, needed, "interaction look-back")
        data = build_interaction_data(
            interactions.sort_values(["timestamp", "user_id", "item_id"], ignore_index=True),
            cfg.holdout_k,
            cfg.min_user_interactions,
            weighting,
        )
        table = to_table(data)
        manifest = build_manifest(
            table.assign(verified=True),
            REC_DATASET.path[-1],
            "interactions_ds",
            context.partition_key,
            [f"weighting={weighting.scheme}", f"alpha={weighting.alpha}"],
            {"interactions": f"{needed[0]}…{needed[-1]}"},
        )
        table = table.assign(dataset_month=month, dataset_version=manifest.version)
        warehouse_meta = {
            "users": len(data.user_ids),
            "items": len(data.item_ids),
            "holdout_users": int(data.holdout["user_id"].nunique()),
            "density": float(data.train.nnz / max(data.train.shape[0] * data.train.shape[1], 1)),
        }
        return dg.Output(
            table,
            metadata={**frame_metadata(table), **manifest_metadata(manifest), **warehouse_meta},
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
            "Month M's implicit ALS challenger: a small grid search scored on the holdout, a "
            "popularity fallback for unseen users, saved with implicit's .npz (no pickle), "
            "registered with sha256 and aliased `challenger`."
        ),
    )
    def recommender_challenger(
        context: dg.AssetExecutionContext, dataset: pd.DataFrame, registry: RegistryResource
    ) -> dg.MaterializeResult:
        data = from_table(dataset)
        best, trials = search_als(data, grid, cfg.k, SEED)
        model = train_als(data, best, SEED)
        bundle = serving_bundle(build_bundle(model, data, best, cfg.fallback_size), data)
        metrics = evaluate_bundle(bundle, data, cfg.k)
        baseline = evaluate_popularity(data, cfg.k)
        reg = registry.registry()
        with tempfile.TemporaryDirectory() as tmp:
            files = save_bundle(bundle, Path(tmp))
            _, meta = register_challenger(
                context,
                reg,
                MODEL,
                files,
                str(dataset["dataset_version"].iloc[0]),
                params={**asdict(best), "weighting": weighting.scheme, "alpha": weighting.alpha},
                metrics={
                    **metrics.as_dict(),
                    **{f"popularity_{k}": v for k, v in baseline.as_dict().items()},
                },
                code_version=CODE_VERSION,
            )
        return dg.MaterializeResult(
            metadata={
                **meta,
                **{f"{k}_at_k": float(v) for k, v in metrics.as_dict().items()},
                **{f"popularity_{k}_at_k": float(v) for k, v in baseline.as_dict().items()},
                "fallback_items": len(bundle.fallback_items),
                "trials": dg.MetadataValue.md(md_table(trials, max_rows=len(trials))),
                "params": dg.MetadataValue.json(dict(asdict(best))),
            }
        )

    @dg.multi_asset_check(
        specs=gate_specs(REC_CHALLENGER, GATES, partitions.monthly, [REC_DATASET]),
        ins={"dataset": dg.AssetIn(REC_DATASET)},
        name="recommender_promotion_gates",
        description="Gates on the challenger, each on the same per-user holdout.",
    )
    def recommender_gates(
        context: dg.AssetCheckExecutionContext, dataset: pd.DataFrame, registry: RegistryResource
    ):
        reg = registry.registry()
        challenger = challenger_under_review(
            context, reg, MODEL, str(dataset["dataset_version"].iloc[0])
        )
        champion = reg.alias(MODEL, "champion")
        data = from_table(dataset)
        bundle = load_model(reg, challenger)
        new = evaluate_bundle(bundle, data, cfg.k)
        head_to_head = None
        if champion is not None:
            incumbent = load_model(reg, champion)
            blind = holdout_unseen_by(incumbent, data)
            head_to_head = (
                evaluate_bundle(bundle, blind, cfg.k),
                evaluate_bundle(incumbent, blind, cfg.k),
            )
        popularity = evaluate_popularity(data, cfg.k)
        checks = cfg.checks
        outcomes = [
            gates.at_least("precision_floor", new.precision, checks.min_precision, "precision@K"),
            gates.lift_over_baseline(
                new.precision, popularity.precision, checks.min_lift_over_popularity, "precision@K"
            ),
            gates.not_worse_than_champion(
                head_to_head[0].precision if head_to_head else new.precision,
                head_to_head[1].precision if head_to_head else None,
                checks.tolerance,
                "precision@K on held-out pairs neither model trained on",
            ),
            gates.at_least("coverage_floor", new.coverage, checks.min_coverage, "coverage"),
            gates.non_empty(
                "fallback_present", len(bundle.fallback_items), cfg.k, "fallback items"
            ),
        ]
        for outcome in outcomes:
            yield check_result(outcome, REC_CHALLENGER, challenger)

    champion = build_champion_asset(MODEL, REC_CHALLENGER, list(GATES), "recommender", KINDS)

    @dg.asset(
        key=RECOMMENDATIONS,
        ins={
            "interactions": dg.AssetIn(
                INTERACTIONS,
                partition_mapping=trailing_days(cfg.active_days),
                metadata={"columns": ["user_id", "event_date"]},
            )
        },
        deps=[REC_CHAMPION],
        **daily_table(partitions, "as_of_date"),
        output_required=False,  # nothing to write until a champion exists
        group_name="recommender",
        kinds=KINDS,
        owners=OWNERS,
        description=(
            f"For day D, the champion's top-{cfg.k} items for every user active in the last "
            f"{cfg.active_days} days; users the model has never seen get the popularity "
            "fallback, flagged `is_fallback`. Items a known user already had are never shown."
        ),
    )
    def recommendations(
        context: dg.AssetExecutionContext,
        interactions: pd.DataFrame,
        registry: RegistryResource,
        publisher: PostgresPublisher,
    ):
        start, end = local_window(context)
        reg = registry.registry()
        mv = reg.alias(MODEL, "champion")
        if mv is None:
            context.log.warning("no recommender champion yet: nothing to recommend")
            return
        days = pd.date_range(start, end - pd.Timedelta(days=1), freq="D")
        table = recommendation_table(
            active_users(interactions, days, cfg.active_days),
            load_model(reg, mv),
            cfg.k,
            mv.version,
        )
        per_user = table.drop_duplicates(["as_of_date", "user_id"])
        published = publisher.publish(RECOMMENDATIONS.path[-1], table, "as_of_date", start, end)
        return dg.Output(
            table,
            metadata={
                **frame_metadata(table, "as_of_date"),
                "model_version": mv.version,
                "users": int(per_user["user_id"].nunique()),
                "fallback_share": float(per_user["is_fallback"].mean()) if len(per_user) else 0.0,
                "published_rows": published,
            },
        )

    return [
        interactions_training_set,
        recommender_challenger,
        recommender_gates,
        champion,
        recommendations,
    ]
