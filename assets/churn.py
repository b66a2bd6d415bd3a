"""Churn: monthly training sets → XGBoost challenger → blocking checks → champion → daily scores."""

import tempfile
import time
from pathlib import Path

import dagster as dg
import pandas as pd
import xgboost as xgb

from assets.common import (
    OWNERS,
    Partitions,
    daily_table,
    day_keys,
    frame_metadata,
    local_window,
    manifest_metadata,
    require_materialized,
)
from assets.keys import (
    CHURN_CHALLENGER,
    CHURN_CHAMPION,
    CHURN_DATASET,
    CHURN_SCORES,
    CHURN_SHADOW,
    FEATURES,
    LABELS,
)
from assets.per_day import (
    daily_frame_metadata,
    day_check_evaluations,
    day_key,
    score_day_results,
)
from assets.promotion import (
    build_champion_asset,
    challenger_under_review,
    check_result,
    gate_specs,
    register_challenger,
)
from lifecycle import gates
from lifecycle.churn_model import (
    SearchSpace,
    feature_importance,
    load_booster,
    predict_scores,
    refit,
    save_booster,
    train_churn_model,
)
from lifecycle.datasets import (
    build_churn_training_set,
    build_manifest,
    churn_window,
    failing_days,
    first_trainable_month,
    months_back,
    quarantined_ids,
    selection_split,
    snapshot_days,
)
from lifecycle.feature_schema import require_filled
from lifecycle.features import feature_columns, lifetime_columns
from lifecycle.metrics import binary_metrics
from lifecycle.numbers import rounded_metadata
from lifecycle.plots import (
    calibration_plot,
    histogram_plot,
    importance_plot,
    psi_plot,
    roc_plot,
)
from lifecycle.registry import ModelRegistry, ModelVersion
from lifecycle.scoring import score_table
from lifecycle.settings import Settings
from resources.publisher import PostgresPublisher
from resources.registry import RegistryResource, Warehouse

MODEL = "churn"
DATASET, CHALLENGER, CHAMPION = CHURN_DATASET, CHURN_CHALLENGER, CHURN_CHAMPION
SCORES, SHADOW = CHURN_SCORES, CHURN_SHADOW
QUARANTINE = dg.AssetKey(["raw", "transactions_quarantine"])
QUALITY = dg.AssetKey(["raw", "transactions_daily_quality"])
GATES = {
    "auc_floor": "Held-out ROC-AUC is at least the configured floor.",
    "beats_champion": "Paired-bootstrap CI of AUC(challenger) − AUC(champion) on the same "
    "holdout rows stays above −tolerance (the first model passes and says so).",
    "input_drift": "PSI of every windowed feature between the champion's and the "
    "challenger's training data stays under the bound (lifetime features drift with the age "
    "of the history and are shown, not gated).",
    "score_sanity": "Holdout scores are finite probabilities and not constant.",
}
ARTIFACT = "model.ubj"
JUDGED = "judged.ubj"
CODE_VERSION = "churn-xgb-1"
KINDS = {"xgboost", "duckdb"}


def load_model(reg: ModelRegistry, mv: ModelVersion, fit: str = "served") -> xgb.Booster:
    """Verify the artifact's sha256 before XGBoost reads a byte of it.

    ``fit="judged"`` is the fit the gates measured (without the selection and holdout slices);
    versions registered before judged fits existed have only the served file.
    """
    name = JUDGED if fit == "judged" and JUDGED in mv.files_sha256 else ARTIFACT
    return load_booster(reg.verified_path(mv, name))


def stored_rows(warehouse: Warehouse, dataset_version: str, split: str) -> pd.DataFrame:
    """Verified rows of one split of a model's own training set, by its dataset_version: the
    month may have been rebuilt since, and the champion's evidence must not change with it."""
    return warehouse.version_rows(
        "datasets.churn_training_set",
        dataset_version,
        "split = ? and verified",
        [split],
        order_by="as_of_date, customer_id",
    )


def verified_rows(dataset: pd.DataFrame) -> pd.DataFrame:
    """Verified rows in a fixed order (the warehouse returns rows unordered, and the same rows
    in another order would train a slightly different model)."""
    return dataset[dataset["verified"]].sort_values(["as_of_date", "customer_id"], kind="stable")


def split_rows(usable: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train and validation rows of verified rows (the purged days belong to neither)."""
    return usable[usable["split"] == "train"], usable[usable["split"] == "valid"]


def verified_splits(dataset: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    return split_rows(verified_rows(dataset))


def build_churn_assets(partitions: Partitions, settings: Settings) -> list:
    features = feature_columns(settings.features.windows)
    horizon, cfg = settings.labels.horizon_days, settings.churn
    # Feature days before a full look-back window exists are not comparable with later ones
    # (every customer looks new), so training sets start once the window is warm.
    first_day = pd.Timestamp(settings.partitions.start_date) + pd.Timedelta(
        days=settings.features.lookback_days - 1
    )
    # Offsets count months of the dataset: month M reads the daily partitions of M-k … M-1.
    back = dg.TimeWindowPartitionMapping(
        start_offset=-months_back(horizon, cfg.train_months, cfg.validation_days), end_offset=-1
    )
    space = SearchSpace(**cfg.search.model_dump())

    @dg.asset(
        key=DATASET,
        # Features and labels are read for the snapshot days only (SQL), not the whole window.
        deps=[
            dg.AssetDep(FEATURES, partition_mapping=back),
            dg.AssetDep(LABELS, partition_mapping=back),
        ],
        ins={
            "quarantine": dg.AssetIn(QUARANTINE, partition_mapping=back),
            "quality": dg.AssetIn(QUALITY, partition_mapping=back),
        },
        partitions_def=partitions.monthly,
        metadata={"partition_expr": "dataset_month"},
        group_name="churn",
        kinds={"duckdb", "pandas"},
        owners=OWNERS,
        description=(
            f"Month M's candidate training set: as-of snapshots every {cfg.snapshot_every_days} "
            f"days of label days matured by M — the last {cfg.validation_days} days as "
            f"out-of-time validation, before them {cfg.train_months} months of training days "
            f"purged by the {horizon}-day horizon. Each snapshot holds the same population the "
            "scores do. `verified` marks rows free of quarantined customers and of days that "
            "failed the quarantine bound; training uses verified rows."
        ),
    )
    def churn_training_set(
        context: dg.AssetExecutionContext,
        quarantine: pd.DataFrame,
        quality: pd.DataFrame,
        warehouse: Warehouse,
    ):
        month = pd.Timestamp(context.partition_key)
        window = churn_window(month, horizon, cfg.train_months, cfg.validation_days, first_day)
        if (window.train_end - window.train_start).days < cfg.min_train_days:
            first = first_trainable_month(
                first_day, horizon, cfg.validation_days, cfg.min_train_days
            )
            raise dg.Failure(
                description=(
                    f"month {context.partition_key} is too early to train: its training days "
                    f"must end by {window.train_end.date()} (validation {cfg.validation_days} "
                    f"days and a {horizon}-day horizon twice before the month), but warmed-up "
                    f"feature days start on {first_day.date()}, leaving fewer than "
                    f"churn.min_train_days={cfg.min_train_days}. The first trainable month is "
                    f"{first.strftime('%Y-%m')} (or lower labels.horizon_days, "
                    "churn.validation_days, churn.min_train_days or the longest features.windows)."
                )
            )
        needed = day_keys(window.train_start, window.valid_end)
        for key in (FEATURES, LABELS):
            require_materialized(context, key, needed, "training window")
        snapshots = snapshot_days(window, cfg.snapshot_every_days)
        params: list[object] = [list(snapshots.to_pydatetime())]
        features_ = warehouse.query(
            "select * from features.customer_features where list_contains(?, as_of_date)", params
        ).loc[:, ["as_of_date", "customer_id", *features]]
        require_filled(features_, features, f"the churn training set for {context.partition_key}")
        labels = warehouse.query(
            "select as_of_date, customer_id, churned from labels.churn_labels "
            "where list_contains(?, as_of_date)",
            params,
        )
        frame = build_churn_training_set(
            features_,
            labels,
            window,
            features,
            quarantined_ids(quarantine, "customer_id"),
            failing_days(quality),
            month,
            snapshots,
        )
        sources = {
            "features": f"{needed[0]}…{needed[-1]}",
            "labels": f"{needed[0]}…{needed[-1]}",
            "snapshots": f"{len(snapshots)} as-of days, every {cfg.snapshot_every_days} days",
        }
        manifest = build_manifest(
            frame,
            DATASET.path[-1],
            "churn_ds",
            context.partition_key,
            features,
            sources,
            target="churned",
            date_column="as_of_date",
        )
        # The IO manager commits the rows, the retained version and the manifest together.
        frame = frame.assign(dataset_version=manifest.version)
        return dg.Output(
            frame,
            metadata={
                **frame_metadata(frame),
                **manifest_metadata(manifest),
                **{f"churn_rate_{k}": v for k, v in manifest.positive_rate_by_split.items()},
            },
        )

    @dg.asset(
        key=CHALLENGER,
        ins={"dataset": dg.AssetIn(DATASET)},
        partitions_def=partitions.monthly,
        group_name="churn",
        kinds=KINDS,
        owners=OWNERS,
        code_version=CODE_VERSION,
        description=(
            "Month M's XGBoost challenger: a small seeded search, early stopping and trial "
            "choice on the last days of the training window; metrics, plots and gates on the "
            "untouched out-of-time slice. Registered as an immutable version (UBJ + sha256) "
            "and aliased `challenger`."
        ),
    )
    def churn_challenger(
        context: dg.AssetExecutionContext, dataset: pd.DataFrame, registry: RegistryResource
    ) -> dg.MaterializeResult:
        everything = verified_rows(dataset)
        train, valid = split_rows(everything)
        fit, select = selection_split(train, cfg.validation_days)
        started = time.perf_counter()
        trained = train_churn_model(fit, select, features, "churned", space)
        y = valid["churned"].to_numpy()
        scores = predict_scores(trained.booster, valid, features)
        metrics = binary_metrics(y, scores)
        # The served fit: the winning configuration refit on every verified row up to the
        # cut-off, including the selection, purged and gate slices the judged fit never saw.
        served = refit(trained, everything, "churned")
        seconds = time.perf_counter() - started
        importance = feature_importance(served, features)
        reg = registry.registry()
        with tempfile.TemporaryDirectory() as tmp:
            judged_path, served_path = Path(tmp) / JUDGED, Path(tmp) / ARTIFACT
            save_booster(trained.booster, judged_path)
            save_booster(served, served_path)
            version, meta = register_challenger(
                context,
                reg,
                MODEL,
                [served_path, judged_path],
                str(dataset["dataset_version"].iloc[0]),
                params=trained.params
                | {
                    "best_iteration": trained.best_iteration,
                    "served_train_rows": len(everything),
                    "served_num_boost_round": served.num_boosted_rounds(),
                },
                metrics=metrics.as_dict() | {"training_seconds": seconds},
                code_version=CODE_VERSION,
            )
        by_outcome = {"churned": scores[y == 1], "stayed": scores[y == 0]}
        return dg.MaterializeResult(
            metadata={
                # Plots first (one per entry), so the UI lists them at the top.
                "plot_roc": dg.MetadataValue.md(roc_plot(y, scores, label=version.version)),
                "plot_calibration": dg.MetadataValue.md(
                    calibration_plot(y, scores, label=version.version)
                ),
                "plot_importance": dg.MetadataValue.md(importance_plot(importance)),
                "plot_score_distribution": dg.MetadataValue.md(
                    histogram_plot(
                        by_outcome,
                        title=f"Holdout scores by outcome ({version.version})",
                        xlabel="predicted churn probability",
                    )
                ),
                **meta,
                "train_rows": len(fit),
                "selection_rows": len(select),
                "holdout_rows": len(valid),
                "served_train_rows": len(everything),
                "training_seconds": round(seconds, 2),
                "best_iteration": trained.best_iteration,
                "metrics_are_of": "the judged fit (trained without the selection and holdout "
                "slices); the served fit adds them and is what scores use",
                **rounded_metadata({k: float(v) for k, v in metrics.as_dict().items()}),
                "params": dg.MetadataValue.json(dict(trained.params)),
            }
        )

    @dg.multi_asset_check(
        specs=gate_specs(CHALLENGER, GATES, partitions.monthly, [DATASET]),
        ins={"dataset": dg.AssetIn(DATASET)},
        name="churn_promotion_gates",
        description="Gates on the challenger; all compare real numbers on the same holdout rows.",
    )
    def churn_gates(
        context: dg.AssetCheckExecutionContext,
        dataset: pd.DataFrame,
        registry: RegistryResource,
        warehouse: Warehouse,
    ):
        reg = registry.registry()
        challenger = challenger_under_review(
            context, reg, MODEL, str(dataset["dataset_version"].iloc[0])
        )
        champion = reg.alias(MODEL, "champion")
        train, valid = verified_splits(dataset)
        y = valid["churned"].to_numpy()
        # Judged fits on both sides: neither has seen this holdout (the gate's numbers are the
        # judged fit's; the served fit adds the holdout and cannot be judged on it).
        new = predict_scores(load_model(reg, challenger, "judged"), valid, features)
        old = (
            predict_scores(load_model(reg, champion, "judged"), valid, features)
            if champion
            else None
        )
        reference = stored_rows(warehouse, champion.dataset_version, "train") if champion else None
        drift = gates.input_drift(
            reference, train, features, cfg.checks.max_feature_psi, lifetime_columns()
        )
        outcomes = [
            gates.at_least(
                "auc_floor", binary_metrics(y, new).roc_auc, cfg.checks.min_auc, "ROC-AUC"
            ),
            gates.beats_champion_auc(y, new, old, cfg.checks.auc_tolerance, cfg.checks.n_boot),
            drift,
            gates.score_sanity(new),
        ]
        # The picture behind two verdicts: both ROC curves on the same holdout rows, and the
        # PSI of every feature against the bound.
        plots: dict[str, dict[str, str]] = {"input_drift": {}, "beats_champion": {}}
        if champion is not None and old is not None:
            plots["beats_champion"]["plot_roc"] = roc_plot(
                y, new, challenger.version, baseline=(old, f"champion {champion.version}")
            )
        if reference is not None:
            per_feature = {c: float(drift.extra[f"psi_{c}"]) for c in features}
            plots["input_drift"]["plot_psi"] = psi_plot(
                per_feature, cfg.checks.max_feature_psi, lifetime_columns()
            )
        for outcome in outcomes:
            yield check_result(outcome, CHALLENGER, challenger, champion, plots.get(outcome.name))

    champion = build_champion_asset(
        MODEL, CHALLENGER, list(GATES), "churn", KINDS, settings.alerts.webserver_url
    )

    def build_scores(key: dg.AssetKey, alias: str, description: str) -> dg.AssetsDefinition:
        check_name = "score_drift"

        @dg.asset(
            key=key,
            ins={"features_": dg.AssetIn(FEATURES)},
            deps=[CHAMPION] if alias == "champion" else [CHALLENGER],
            **daily_table(partitions, "as_of_date"),
            # Scores exist once a model is promoted; shadow scores only while a challenger
            # awaits promotion.
            output_required=False,
            check_specs=[
                dg.AssetCheckSpec(
                    check_name,
                    asset=key,
                    description="Each day's scores stay close to the model's training-time "
                    "scores (PSI) and every active customer got exactly one score that day. One "
                    "result per day, also in range runs.",
                    partitions_def=partitions.daily,
                )
            ],
            group_name="churn",
            kinds={"xgboost", "duckdb"},
            owners=OWNERS,
            description=description,
        )
        def scores_asset(
            context: dg.AssetExecutionContext,
            features_: pd.DataFrame,
            registry: RegistryResource,
            warehouse: Warehouse,
            publisher: PostgresPublisher,
        ):
            start, end = local_window(context)
            reg = registry.registry()
            mv = reg.alias(MODEL, alias)
            skip = None
            if mv is None:
                # A fresh deployment ingests daily before any model is promoted: no scores yet,
                # and no failed run (and alert) every morning until then.
                skip = f"no churn {alias} yet: nothing to score"
            elif alias == "challenger" and mv == reg.alias(MODEL, "champion"):
                skip = f"{mv.version} is already champion: no shadow scores to write"
            if skip is not None:
                context.log.info(skip)
                # Every declared check must get a result, or the step (and the daily run) fails.
                days = list(context.partition_keys)
                yield from day_check_evaluations(
                    context, key, check_name, {day: (True, {"skipped": skip}) for day in days}
                )
                return
            assert mv is not None
            require_filled(features_, features, f"{key.to_user_string()} by {mv.version}")
            booster = load_model(reg, mv)
            table = score_table(
                features_, predict_scores(booster, features_, features), MODEL, mv.version
            )
            reference = predict_scores(
                booster, stored_rows(warehouse, mv.dataset_version, "train"), features
            )
            drift = gates.score_drift(
                reference, table["score"].to_numpy(), cfg.checks.max_score_psi
            )
            results = score_day_results(
                table, features_, reference, cfg.checks.max_score_psi, list(context.partition_keys)
            )
            # Dagster stores an output before it resumes the generator: once past this yield the
            # warehouse partition is committed, and a failed write never reaches the publish.
            yield dg.Output(
                table,
                metadata={
                    **daily_frame_metadata(
                        context,
                        table,
                        "as_of_date",
                        extra={
                            "mean_score": table.groupby(day_key(table["as_of_date"]).to_numpy())[
                                "score"
                            ]
                            .mean()
                            .round(4),
                            "score_psi": pd.Series(
                                {day: meta["score_psi"] for day, (_, meta) in results.items()}
                            ),
                        },
                    ),
                    "model_version": mv.version,
                    "range_mean_score": round(float(table["score"].mean()), 4)
                    if len(table)
                    else float("nan"),
                    "range_score_psi": round(drift.observed, 4),
                    "distribution": dg.MetadataValue.md(
                        histogram_plot({"training": reference, "scored": table["score"].to_numpy()})
                    ),
                },
            )
            yield from day_check_evaluations(
                context,
                key,
                check_name,
                {
                    day: (passed, {"model_version": mv.version, **meta})
                    for day, (passed, meta) in results.items()
                },
            )
            yield from publisher.publish_committed(key, table, "as_of_date", start, end)

        return scores_asset

    scores = build_scores(
        SCORES,
        "champion",
        "Daily churn scores of every active customer by the champion: customer_id, as_of_date, "
        "model_name, model_version, score, decile (10 = riskiest). A partition is replaced atomically.",
    )
    shadow = build_scores(
        SHADOW,
        "challenger",
        "The challenger's scores on the same customers, before promotion, so a reviewer can "
        "compare with the champion's (blue-green without a second deployment).",
    )
    return [churn_training_set, churn_challenger, churn_gates, champion, scores, shadow]
