"""Customer value, the third family: each customer's spend over the next H days (XGBoost
regression, point-in-time, from the churn features). Its logic is lifecycle/value_model.py;
its windows, verified rows, scoring and per-day checks are every snapshot family's
(assets/snapshots.py). Nothing in the generic factory knows it exists."""

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import xgboost as xgb

from assets.family import Registration, Words
from assets.keys import ACTIVITY, FAMILIES
from assets.snapshots import CustomerSnapshots, snapshot_lineage
from lifecycle import gates
from lifecycle import value_model as vm
from lifecycle.churn_model import save_booster
from lifecycle.datasets import build_manifest, selection_split
from lifecycle.family import DailyCheck, Dataset, Loader, Needs, Reader, Trained, Verdict
from lifecycle.features import future_spend, lifetime_columns
from lifecycle.model_records import ModelVersion
from lifecycle.numbers import rounded_metadata
from lifecycle.out_of_time import Window, spend_in_window, value_out_of_time
from lifecycle.plots import histogram_plot
from lifecycle.settings import Settings
from lifecycle.snapshots import split_rows, stored_rows, verified_rows

GATES = {
    "beats_naive": "Judged fit: holdout MAE at most the configured share of the trailing-spend "
    "baseline's MAE on the same rows.",
    "beats_champion": "Paired-bootstrap CI of MAE(challenger) − MAE(champion) on the same holdout "
    "rows stays under tolerance × MAE(champion) (the first model passes).",
    "input_drift": "PSI of every windowed feature between the champion's and the challenger's "
    "training data stays under the bound.",
    "prediction_sanity": "Holdout predictions are finite, non-negative and not constant.",
}


class ValueFamily(CustomerSnapshots):
    name, code_version, table = "value", "value-xgb-1", "datasets.value_training_set"
    gates: Mapping[str, str] = GATES
    daily_check: DailyCheck | None = DailyCheck(
        "score_drift",
        "Each day's predicted spend stays close to the model's training-time predictions (PSI) "
        "and every active customer got exactly one prediction that day.",
    )
    files = {"served": "value.ubj", "judged": "judged.ubj"}
    score = staticmethod(vm.predict_value)

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings, "value", settings.value, settings.value.horizon_days)
        self.cfg = settings.value
        self.psi_bound = self.cfg.checks.max_prediction_psi

    def dataset_needs(self, month: pd.Timestamp) -> Needs:
        return self.needs_window(month, ACTIVITY)

    def build_dataset(
        self, month: pd.Timestamp, inputs: Mapping[str, pd.DataFrame], reader: Reader
    ) -> Dataset:
        snapshots, rows = self.snapshot_rows(month, reader)
        activity = reader.query(
            "select * from features.customer_activity where activity_date > ? and activity_date < ?",
            [self.window(month).train_start.to_pydatetime(), month.to_pydatetime()],
        )
        target = future_spend(rows, activity, self.horizon)
        frame = self.training_set(month, snapshots, rows, target, inputs, vm.TARGET)
        sources = {"features": f"{len(snapshots)} as-of days", "activity": "(D, D + H] of each"}
        manifest = build_manifest(
            frame,
            "value_training_set",
            "value_ds",
            f"{month:%Y-%m-%d}",
            self.features,
            sources,
            target=vm.TARGET,
            date_column="as_of_date",
        )
        means = manifest.positive_rate_by_split.items()
        return Dataset(frame, manifest, {f"mean_{vm.TARGET}_{k}": round(v, 2) for k, v in means})

    def train(self, dataset: pd.DataFrame, workdir: Path) -> Trained:
        everything = verified_rows(dataset)
        train, valid = split_rows(everything)
        fit, select = selection_split(train, self.cfg.validation_days)
        trained = vm.train_value_model(fit, select, self.features, self.cfg)
        y, pred = (
            valid[vm.TARGET].to_numpy(),
            vm.predict_value(trained.booster, valid, self.features),
        )
        naive = vm.naive_prediction(valid, self.windows, self.horizon)
        metrics = vm.regression_metrics(y, pred, naive)
        save_booster(trained.booster, workdir / self.files["judged"])
        save_booster(vm.refit_value(trained, everything), workdir / self.files["served"])

        def describe(version: str) -> dict[str, Any]:
            by = {"actual": y, "predicted": pred, "trailing spend": naive}
            title = f"Holdout {self.horizon}-day spend ({version})"
            return {
                "plot_holdout_spend": histogram_plot(by, title=title, xlabel="spend"),
                "train_rows": len(fit),
                "holdout_rows": len(valid),
                **rounded_metadata(metrics),
                "params": dict(trained.params),
            }

        files = [workdir / self.files["served"], workdir / self.files["judged"]]
        return Trained(files, trained.params, metrics, describe)

    def judge(
        self,
        dataset: pd.DataFrame,
        challenger: ModelVersion,
        champion: ModelVersion | None,
        load: Loader,
        reader: Reader,
    ) -> list[Verdict]:
        checks, features = self.cfg.checks, self.features
        train, valid = split_rows(verified_rows(dataset))
        y, naive = (
            valid[vm.TARGET].to_numpy(),
            vm.naive_prediction(valid, self.windows, self.horizon),
        )
        new = vm.predict_value(load(challenger, "judged"), valid, features)
        old = vm.predict_value(load(champion, "judged"), valid, features) if champion else None
        ref = (
            stored_rows(reader, champion.dataset_version, "train", self.table) if champion else None
        )
        drift = gates.input_drift(ref, train, features, checks.max_feature_psi, lifetime_columns())
        return [
            Verdict(vm.beats_naive(y, new, naive, checks.max_mae_ratio_to_naive)),
            Verdict(vm.beats_champion_mae(y, new, old, checks.tolerance, checks.n_boot)),
            Verdict(drift),
            Verdict(vm.prediction_sanity(new)),
        ]

    def out_of_time(
        self, window: Window, challenger: xgb.Booster, champion: xgb.Booster | None, reader: Reader
    ) -> Verdict:
        """Predicted spend as of the day before the month against the spend of the days since."""
        population, activity = self.after_training(window, reader)
        observed = spend_in_window(population["customer_id"].to_numpy(), activity)
        new = vm.predict_value(challenger, population, self.features)
        old = vm.predict_value(champion, population, self.features) if champion else None
        c = self.cfg.checks
        tolerance = c.out_of_time_tolerance
        outcome = value_out_of_time(observed, new, old, self.horizon, window, tolerance, c.n_boot)
        return Verdict(outcome)


def registration(settings: Settings) -> Registration:
    family, c = ValueFamily(settings), settings.value
    words = Words(
        dataset=f"Month M's value training set: churn's windows and snapshots, target = spend in "
        f"the {c.horizon_days} days after each as-of day (matured before M).",
        challenger="Month M's XGBoost regression of next-horizon spend (MAE objective, early "
        "stopping on the last training days); UBJ + sha256, judged and served fits.",
        gates="Gates on the challenger: against the trailing-spend baseline and the champion, "
        "on the same holdout rows.",
        predictions=f"Daily predicted {c.horizon_days}-day spend (`score`) of every active "
        "customer by the champion; decile 10 = most valuable.",
    )
    lineage = snapshot_lineage(family, ACTIVITY)
    return Registration(family, FAMILIES["value"], words, {"xgboost", "duckdb"}, **lineage)
