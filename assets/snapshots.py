"""What the families built on daily customer snapshots (churn, value) share: the training
window and its warm-up, the snapshot rows of a month, verified training sets, judged/served
XGBoost fits, daily scoring with its per-day drift check, and the out-of-time population."""

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import dagster as dg
import numpy as np
import pandas as pd
import xgboost as xgb

from assets.common import day_keys
from assets.keys import ACTIVITY, FEATURES
from assets.per_day import day_key, score_day_results
from lifecycle import gates
from lifecycle.churn_model import load_booster
from lifecycle.datasets import (
    ChurnWindow,
    build_churn_training_set,
    churn_window,
    failing_days,
    first_trainable_month,
    months_back,
    quarantined_ids,
    snapshot_days,
)
from lifecycle.family import Fit, Needs, NotReady, Predictions, Reader
from lifecycle.feature_schema import require_filled
from lifecycle.features import feature_columns
from lifecycle.model_records import ModelVersion
from lifecycle.out_of_time import Window, as_of
from lifecycle.plots import histogram_plot
from lifecycle.scoring import score_table
from lifecycle.settings import Settings
from lifecycle.snapshots import stored_rows

QUARANTINE = dg.AssetKey(["raw", "transactions_quarantine"])
QUALITY = dg.AssetKey(["raw", "transactions_daily_quality"])
Score = Callable[[xgb.Booster, pd.DataFrame, Sequence[str]], np.ndarray]


class WindowSettings(Protocol):
    """The window part of a snapshot family's settings section (churn:, value:)."""

    @property
    def train_months(self) -> int: ...
    @property
    def validation_days(self) -> int: ...
    @property
    def min_train_days(self) -> int: ...
    @property
    def snapshot_every_days(self) -> int: ...


class CustomerSnapshots:
    """Base of a snapshot family: ``section`` names its settings (for messages), ``horizon`` the
    days its label looks ahead, ``table`` its training set, ``files`` its fits' file names."""

    name: str
    table: str
    files: Mapping[str, str]
    score: Score
    psi_bound: float  # of the daily score drift check

    def __init__(self, settings: Settings, section: str, cfg: WindowSettings, horizon: int) -> None:
        self.section, self.span, self.horizon = section, cfg, horizon
        self.windows = settings.features.windows
        self.features = feature_columns(self.windows)
        # Feature days before a full look-back window exists are not comparable with later ones
        # (every customer looks new), so training sets start once the window is warm.
        self.first_day = pd.Timestamp(settings.partitions.start_date) + pd.Timedelta(
            days=settings.features.lookback_days - 1
        )

    def window(self, month: pd.Timestamp) -> ChurnWindow:
        c = self.span
        return churn_window(month, self.horizon, c.train_months, c.validation_days, self.first_day)

    def mapping(self) -> dg.TimeWindowPartitionMapping:
        """Month M reads the daily partitions of M-k … M-1 (offsets count months)."""
        c = self.span
        back = months_back(self.horizon, c.train_months, c.validation_days)
        return dg.TimeWindowPartitionMapping(start_offset=-back, end_offset=-1)

    def needs_window(self, month: pd.Timestamp, labels: dg.AssetKey) -> Needs:
        """The feature and label days of month M's window; NotReady while it is too short."""
        c, window = self.span, self.window(month)
        if (window.train_end - window.train_start).days < c.min_train_days:
            first = first_trainable_month(
                self.first_day, self.horizon, c.validation_days, c.min_train_days
            )
            raise NotReady(
                f"month {month:%Y-%m-%d} is too early to train: its training days must end by "
                f"{window.train_end.date()} (validation {c.validation_days} days and a "
                f"{self.horizon}-day horizon twice before the month), but warmed-up feature days "
                f"start on {self.first_day.date()}, leaving fewer than {self.section}."
                f"min_train_days={c.min_train_days}. The first trainable month is "
                f"{first.strftime('%Y-%m')} (or lower the horizon, {self.section}.validation_days, "
                f"{self.section}.min_train_days or the longest features.windows)."
            )
        days = day_keys(window.train_start, window.valid_end)
        ends = month if labels == ACTIVITY else window.valid_end
        return {
            FEATURES.to_user_string(): days,
            labels.to_user_string(): day_keys(window.train_start, ends),
        }

    def snapshot_rows(
        self, month: pd.Timestamp, reader: Reader
    ) -> tuple[pd.DatetimeIndex, pd.DataFrame]:
        """Month M's as-of days and the features of every customer on them (read by SQL)."""
        snapshots = snapshot_days(self.window(month), self.span.snapshot_every_days)
        rows = reader.query(
            "select * from features.customer_features where list_contains(?, as_of_date)",
            [list(snapshots.to_pydatetime())],
        ).loc[:, ["as_of_date", "customer_id", *self.features]]
        require_filled(rows, self.features, f"the {self.name} training set for {month:%Y-%m-%d}")
        return snapshots, rows

    def training_set(
        self,
        month: pd.Timestamp,
        snapshots: pd.DatetimeIndex,
        rows: pd.DataFrame,
        labels: pd.DataFrame,
        inputs: Mapping[str, pd.DataFrame],
        target: str,
    ) -> pd.DataFrame:
        """Rows with their split and `verified` (no quarantined customer, no failing day)."""
        return build_churn_training_set(
            rows,
            labels,
            self.window(month),
            self.features,
            quarantined_ids(inputs["quarantine"], "customer_id"),
            failing_days(inputs["quality"]),
            month,
            snapshots,
            target=target,
        )

    def load(self, paths: Mapping[str, Path], fit: Fit) -> xgb.Booster:
        """``judged`` is the fit the gates measured; versions registered before judged fits
        existed have only the served file."""
        name = self.files[fit] if self.files[fit] in paths else self.files["served"]
        return load_booster(paths[name])

    def prediction_needs(self, start: pd.Timestamp, end: pd.Timestamp) -> Needs:
        return {}  # the features arrive through the IO manager, one partition per day

    def predict(
        self,
        model: xgb.Booster,
        version: ModelVersion,
        days: pd.DatetimeIndex,
        inputs: Mapping[str, pd.DataFrame],
        reader: Reader,
    ) -> Predictions:
        population, features = inputs["features_"], self.features
        require_filled(population, features, f"{self.name} scores by {version.version}")
        scores = self.score(model, population, features)
        table = score_table(population, scores, self.name, version.version)
        stored = stored_rows(reader, version.dataset_version, "train", self.table)
        reference = self.score(model, stored, features)
        bound = self.psi_bound
        drift = gates.score_drift(reference, table["score"].to_numpy(), bound)
        results = score_day_results(
            table, population, reference, bound, list(days.strftime("%Y-%m-%d"))
        )
        by_day = table.groupby(day_key(table["as_of_date"]).to_numpy())["score"]
        psi = pd.Series({day: meta["score_psi"] for day, (_, meta) in results.items()})
        mean = round(float(table["score"].mean()), 4) if len(table) else float("nan")
        distribution = histogram_plot({"training": reference, "scored": table["score"].to_numpy()})
        return Predictions(
            table,
            per_day={"mean_score": by_day.mean().round(4), "score_psi": psi},
            metadata={
                "range_mean_score": mean,
                "range_score_psi": round(drift.observed, 4),
                "distribution": distribution,
            },
            day_checks=results,
        )

    def out_of_time_needs(self, window: Window) -> Needs:
        after = day_keys(window.first_day, window.last_day + pd.Timedelta(days=1))
        return {
            FEATURES.to_user_string(): day_keys(as_of(window), window.first_day),
            ACTIVITY.to_user_string(): after,
        }

    def after_training(self, window: Window, reader: Reader) -> tuple[pd.DataFrame, pd.DataFrame]:
        """(customers scored as of the day before the month, their activity in the window)."""
        population = reader.query(
            "select * from features.customer_features where as_of_date = ?",
            [as_of(window).to_pydatetime()],
        )
        activity = reader.query(
            "select customer_id, spend from features.customer_activity "
            "where activity_date between ? and ?",
            [window.first_day.to_pydatetime(), window.last_day.to_pydatetime()],
        )
        return population, activity


def snapshot_lineage(family: CustomerSnapshots, labels: dg.AssetKey) -> dict[str, Any]:
    """Registration arguments every snapshot family shares: its window's features and labels
    (SQL reads, as deps), quarantine and quality (frames), features per scored day."""
    back = family.mapping()
    return {
        "dataset_deps": [
            dg.AssetDep(FEATURES, partition_mapping=back),
            dg.AssetDep(labels, partition_mapping=back),
        ],
        "dataset_ins": {
            "quarantine": dg.AssetIn(QUARANTINE, partition_mapping=back),
            "quality": dg.AssetIn(QUALITY, partition_mapping=back),
        },
        "prediction_ins": {"features_": dg.AssetIn(FEATURES)},
    }
