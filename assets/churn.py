"""Churn, one instance of the family contract: monthly training sets → XGBoost challenger →
blocking checks → champion → daily scores (+ shadow). The lineage is assets/family.py's; this
module says what churn reads, how it trains, judges and scores."""

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import xgboost as xgb

from assets.common import day_keys
from assets.family import Registration, Words, build_family_assets
from assets.keys import FAMILIES, LABELS
from assets.snapshots import CustomerSnapshots, snapshot_lineage
from lifecycle import gates, snapshots
from lifecycle.churn_model import (
    SearchSpace,
    feature_importance,
    predict_scores,
    refit,
    save_booster,
    train_churn_model,
)
from lifecycle.datasets import (
    build_manifest,
    selection_split,
)
from lifecycle.family import (
    DailyCheck,
    Dataset,
    Loader,
    Needs,
    Reader,
    Trained,
    Verdict,
)
from lifecycle.features import lifetime_columns
from lifecycle.metrics import binary_metrics
from lifecycle.model_records import ModelVersion
from lifecycle.numbers import rounded_metadata
from lifecycle.out_of_time import Window, churn_early_outcome, churn_out_of_time
from lifecycle.plots import (
    calibration_plot,
    histogram_plot,
    importance_plot,
    psi_plot,
    roc_plot,
)
from lifecycle.settings import Settings
from lifecycle.snapshots import split_rows, verified_rows, verified_splits

MODEL = "churn"
KEYS = FAMILIES[MODEL]

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
TABLE = "datasets.churn_training_set"
KINDS = {"xgboost", "duckdb"}
DRIFT = DailyCheck(
    "score_drift",
    "Each day's scores stay close to the model's training-time scores (PSI) and every active "
    "customer got exactly one score that day. One result per day, also in range runs.",
)


def stored_rows(warehouse: Reader, dataset_version: str, split: str) -> pd.DataFrame:
    """Verified rows of one split of a churn model's own training set, by dataset version."""
    return snapshots.stored_rows(warehouse, dataset_version, split, TABLE)


class ChurnFamily(CustomerSnapshots):
    """Churn's hooks of the family contract (lifecycle.family.ModelFamily)."""

    name, code_version, table = MODEL, CODE_VERSION, TABLE
    gates: Mapping[str, str] = GATES
    daily_check: DailyCheck | None = DRIFT
    files = {"served": ARTIFACT, "judged": JUDGED}
    score = staticmethod(predict_scores)

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings, "churn", settings.churn, settings.labels.horizon_days)
        self.cfg = settings.churn
        self.psi_bound = self.cfg.checks.max_score_psi
        self.space = SearchSpace(**self.cfg.search.model_dump())

    def dataset_needs(self, month: pd.Timestamp) -> Needs:
        return self.needs_window(month, LABELS)

    def build_dataset(
        self, month: pd.Timestamp, inputs: Mapping[str, pd.DataFrame], reader: Reader
    ) -> Dataset:
        window, features = self.window(month), self.features
        needed = day_keys(window.train_start, window.valid_end)
        snapshots, rows = self.snapshot_rows(month, reader)
        labels = reader.query(
            "select as_of_date, customer_id, churned from labels.churn_labels "
            "where list_contains(?, as_of_date)",
            [list(snapshots.to_pydatetime())],
        )
        frame = self.training_set(month, snapshots, rows, labels, inputs, "churned")
        sources = {
            "features": f"{needed[0]}…{needed[-1]}",
            "labels": f"{needed[0]}…{needed[-1]}",
            "snapshots": f"{len(snapshots)} as-of days, every {self.cfg.snapshot_every_days} days",
        }
        manifest = build_manifest(
            frame, KEYS.dataset.path[-1], "churn_ds", f"{month:%Y-%m-%d}", features, sources,
            target="churned", date_column="as_of_date",
        )  # fmt: skip
        rates = {f"churn_rate_{k}": v for k, v in manifest.positive_rate_by_split.items()}
        return Dataset(frame, manifest, rates)

    def train(self, dataset: pd.DataFrame, workdir: Path) -> Trained:
        features = self.features
        everything = verified_rows(dataset)
        train, valid = split_rows(everything)
        fit, select = selection_split(train, self.cfg.validation_days)
        started = time.perf_counter()
        trained = train_churn_model(fit, select, features, "churned", self.space)
        y = valid["churned"].to_numpy()
        scores = predict_scores(trained.booster, valid, features)
        metrics = binary_metrics(y, scores)
        # The served fit: the winning configuration refit on every verified row up to the
        # cut-off, including the selection, purged and gate slices the judged fit never saw.
        served = refit(trained, everything, "churned")
        seconds = time.perf_counter() - started
        save_booster(served, workdir / ARTIFACT)
        save_booster(trained.booster, workdir / JUDGED)
        importance = feature_importance(served, features)

        def describe(version: str) -> dict[str, Any]:
            by_outcome = {"churned": scores[y == 1], "stayed": scores[y == 0]}
            return {
                "plot_roc": roc_plot(y, scores, label=version),
                "plot_calibration": calibration_plot(y, scores, label=version),
                "plot_importance": importance_plot(importance),
                "plot_score_distribution": histogram_plot(
                    by_outcome,
                    title=f"Holdout scores by outcome ({version})",
                    xlabel="predicted churn probability",
                ),
                "train_rows": len(fit),
                "selection_rows": len(select),
                "holdout_rows": len(valid),
                "served_train_rows": len(everything),
                "training_seconds": round(seconds, 2),
                "best_iteration": trained.best_iteration,
                "metrics_are_of": "the judged fit (trained without the selection and holdout "
                "slices); the served fit adds them and is what scores use",
                **rounded_metadata({k: float(v) for k, v in metrics.as_dict().items()}),
                "params": dict(trained.params),
            }

        return Trained(
            [workdir / ARTIFACT, workdir / JUDGED],
            params=trained.params
            | {
                "best_iteration": trained.best_iteration,
                "served_train_rows": len(everything),
                "served_num_boost_round": served.num_boosted_rounds(),
            },
            metrics=metrics.as_dict() | {"training_seconds": seconds},
            describe=describe,
        )

    def judge(
        self,
        dataset: pd.DataFrame,
        challenger: ModelVersion,
        champion: ModelVersion | None,
        load: Loader,
        reader: Reader,
    ) -> list[Verdict]:
        features, checks = self.features, self.cfg.checks
        train, valid = verified_splits(dataset)
        y = valid["churned"].to_numpy()
        # Judged fits on both sides: neither has seen this holdout (the gate's numbers are the
        # judged fit's; the served fit adds the holdout and cannot be judged on it).
        new = predict_scores(load(challenger, "judged"), valid, features)
        old = predict_scores(load(champion, "judged"), valid, features) if champion else None
        reference = stored_rows(reader, champion.dataset_version, "train") if champion else None
        drift = gates.input_drift(
            reference, train, features, checks.max_feature_psi, lifetime_columns()
        )
        # The picture behind two verdicts: both ROC curves on the same holdout rows, and the
        # PSI of every feature against the bound.
        versus = {}
        if champion is not None and old is not None:
            versus["plot_roc"] = roc_plot(
                y, new, challenger.version, baseline=(old, f"champion {champion.version}")
            )
        psi = {}
        if reference is not None:
            per_feature = {c: float(drift.extra[f"psi_{c}"]) for c in features}
            psi["plot_psi"] = psi_plot(per_feature, checks.max_feature_psi, lifetime_columns())
        auc = binary_metrics(y, new).roc_auc
        return [
            Verdict(gates.at_least("auc_floor", auc, checks.min_auc, "ROC-AUC")),
            Verdict(
                gates.beats_champion_auc(y, new, old, checks.auc_tolerance, checks.n_boot), versus
            ),
            Verdict(drift, psi),
            Verdict(gates.score_sanity(new)),
        ]

    def out_of_time(
        self, window: Window, challenger: xgb.Booster, champion: xgb.Booster | None, reader: Reader
    ) -> Verdict:
        """Customers scored as of the day before the month, against the early outcome the
        elapsed days allow: no purchase in the window (a short-horizon churn label)."""
        population, bought = self.after_training(window, reader)
        y = churn_early_outcome(population["customer_id"].to_numpy(), bought)
        new = predict_scores(challenger, population, self.features)
        old = predict_scores(champion, population, self.features) if champion else None
        checks = self.cfg.checks
        return Verdict(
            churn_out_of_time(y, new, old, window, checks.out_of_time_tolerance, checks.n_boot)
        )


def registration(settings: Settings) -> Registration:
    cfg, horizon = settings.churn, settings.labels.horizon_days
    family = ChurnFamily(settings)
    return Registration(
        family,
        KEYS,
        Words(
            dataset=f"Month M's candidate training set: as-of snapshots every "
            f"{cfg.snapshot_every_days} days of label days matured by M — the last "
            f"{cfg.validation_days} days as out-of-time validation, before them "
            f"{cfg.train_months} months of training days purged by the {horizon}-day horizon. "
            "Each snapshot holds the same population the scores do. `verified` marks rows free "
            "of quarantined customers and of days that failed the quarantine bound; training "
            "uses verified rows.",
            challenger="Month M's XGBoost challenger: a small seeded search, early stopping and "
            "trial choice on the last days of the training window; metrics, plots and gates on "
            "the untouched out-of-time slice. Registered as an immutable version (UBJ + sha256) "
            "and aliased `challenger`.",
            gates="Gates on the challenger; all compare real numbers on the same holdout rows.",
            predictions="Daily churn scores of every active customer by the champion: "
            "customer_id, as_of_date, model_name, model_version, score, decile (10 = riskiest). "
            "A partition is replaced atomically.",
        ),
        kinds=KINDS,
        **snapshot_lineage(family, LABELS),
    )


def build_churn_assets(partitions, settings: Settings) -> list:
    return build_family_assets(registration(settings), partitions, settings)
