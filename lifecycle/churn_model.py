"""XGBoost churn model: seeded random search with early stopping on an out-of-time frame.

Validation is a later time window than training, so early stopping and trial selection
reward models that generalise forward in time rather than ones that memorise the
training period. The returned booster is already truncated at the best iteration and is
persisted in XGBoost's own UBJ format, so scoring needs no side state and no pickle.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import xgboost as xgb

from lifecycle.metrics import roc_auc

__all__ = [
    "SearchSpace",
    "TrainedChurnModel",
    "feature_importance",
    "load_booster",
    "predict_scores",
    "quantile_matrix",
    "refit",
    "save_booster",
    "train_churn_model",
]

# Rows per chunk handed to XGBoost when building a training matrix (tests lower it).
CHUNK_ROWS = 1_000_000

_TUNED = (
    "max_depth",
    "learning_rate",
    "min_child_weight",
    "subsample",
    "colsample_bytree",
    "reg_lambda",
)


@dataclass(frozen=True)
class SearchSpace:
    """Grid the random search samples from, plus the boosting budget.

    Small on purpose: with out-of-time early stopping a handful of trials captures most
    of the gain, and the daily retrain has to fit in a partition's time budget.
    """

    max_depth: tuple[int, ...] = (3, 4, 6)
    learning_rate: tuple[float, ...] = (0.05, 0.1)
    min_child_weight: tuple[float, ...] = (1.0, 5.0)
    subsample: tuple[float, ...] = (0.8, 1.0)
    colsample_bytree: tuple[float, ...] = (0.8, 1.0)
    reg_lambda: tuple[float, ...] = (1.0,)
    n_trials: int = 4
    num_boost_round: int = 400
    early_stopping_rounds: int = 30
    seed: int = 0
    nthread: int = 2

    def __post_init__(self) -> None:
        for name in _TUNED:
            if not getattr(self, name):
                raise ValueError(f"SearchSpace.{name} must list at least one value")
        if self.n_trials < 1:
            raise ValueError("n_trials must be >= 1")
        if self.num_boost_round < 1 or self.early_stopping_rounds < 1:
            raise ValueError("num_boost_round and early_stopping_rounds must be >= 1")

    def sample(self) -> list[dict[str, float | int]]:
        """Distinct grid points drawn without replacement; all of them if the grid is smaller."""
        grid = list(itertools.product(*(getattr(self, name) for name in _TUNED)))
        rng = np.random.default_rng(self.seed)
        picks = rng.permutation(len(grid))[: min(self.n_trials, len(grid))]
        return [dict(zip(_TUNED, grid[int(i)], strict=True)) for i in picks]


@dataclass(frozen=True, eq=False)
class TrainedChurnModel:
    """Winning booster (truncated to ``best_iteration + 1`` trees) and the search record."""

    booster: xgb.Booster
    params: dict[str, float | int | str]
    best_iteration: int
    trials: pd.DataFrame
    features: tuple[str, ...]


def _labels(frame: pd.DataFrame, label: str, name: str) -> np.ndarray:
    if label not in frame.columns:
        raise KeyError(f"label column {label!r} missing from {name} frame")
    y = frame[label].to_numpy(dtype=np.float64, na_value=np.nan)
    if not np.all((y == 0.0) | (y == 1.0)):
        raise ValueError(f"{name} label {label!r} must be 0/1 without missing values")
    if y.min() == y.max():
        raise ValueError(f"{name} label {label!r} has a single class; cannot train/validate")
    return y


def _feature_frame(frame: pd.DataFrame, features: Sequence[str], name: str) -> pd.DataFrame:
    missing = [f for f in features if f not in frame.columns]
    if missing:
        raise KeyError(f"features missing from {name} frame: {missing}")
    return frame.loc[:, list(features)]


class _RowChunks(xgb.DataIter):
    """The feature columns in row chunks: XGBoost quantises chunk by chunk, so a training set
    of ~9M snapshot rows is never copied whole (``frame[features]`` would double its size)."""

    def __init__(
        self, frame: pd.DataFrame, features: Sequence[str], label: np.ndarray, rows: int
    ) -> None:
        self._frame, self._features, self._label = frame, list(features), label
        self._rows, self._at = max(1, rows), 0
        super().__init__(release_data=True)

    def next(self, input_data: Callable[..., None]) -> bool:
        if self._at >= len(self._frame):
            return False
        end = self._at + self._rows
        part = self._frame.iloc[self._at : end]
        input_data(data=part.loc[:, self._features], label=self._label[self._at : end])
        self._at = end
        return True

    def reset(self) -> None:
        self._at = 0


def quantile_matrix(
    frame: pd.DataFrame,
    features: Sequence[str],
    label: np.ndarray,
    nthread: int,
    name: str = "training",
) -> xgb.QuantileDMatrix:
    """Training matrix in bounded memory: one chunk of ``CHUNK_ROWS`` rows copied at a time."""
    _feature_frame(frame.iloc[:0], features, name)  # names the missing columns, if any
    chunks = _RowChunks(frame, features, label, CHUNK_ROWS)
    return xgb.QuantileDMatrix(chunks, nthread=nthread)


def train_churn_model(
    train: pd.DataFrame,
    valid: pd.DataFrame,
    features: Sequence[str],
    label: str,
    space: SearchSpace,
) -> TrainedChurnModel:
    """Run the seeded search and return the trial with the lowest validation log loss.

    Log loss (not AUC) picks the winner because downstream consumers act on the
    probabilities themselves (thresholds, expected-loss budgets), not just the ranking.
    """
    feats = tuple(features)
    if not feats:
        raise ValueError("features must not be empty")
    if len(set(feats)) != len(feats):
        raise ValueError("features contain duplicates")
    y_train = _labels(train, label, "train")
    y_valid = _labels(valid, label, "valid")
    x_valid = _feature_frame(valid, feats, "valid")
    dtrain = quantile_matrix(train, feats, y_train, space.nthread, "train")
    dvalid = xgb.QuantileDMatrix(x_valid, label=y_valid, ref=dtrain, nthread=space.nthread)

    base: dict[str, float | int | str] = {
        "objective": "binary:logistic",
        "tree_method": "hist",
        "seed": space.seed,
        "nthread": space.nthread,
    }
    rows: list[dict[str, float | int]] = []
    boosters: list[xgb.Booster] = []
    for trial, tuned in enumerate(space.sample()):
        history: dict[str, dict[str, list[float]]] = {}
        booster = xgb.train(
            # Only logloss is tracked per round: an AUC eval sorts the validation frame
            # every iteration (~40% of the run); it is computed once below instead.
            {**base, **tuned, "eval_metric": "logloss"},
            dtrain,
            num_boost_round=space.num_boost_round,
            evals=[(dvalid, "valid")],
            early_stopping_rounds=space.early_stopping_rounds,
            evals_result=history,
            verbose_eval=False,
        )
        best = int(booster.best_iteration)
        valid_scores = booster.inplace_predict(x_valid, iteration_range=(0, best + 1))
        rows.append(
            {
                "trial": trial,
                **tuned,
                "valid_logloss": float(history["valid"]["logloss"][best]),
                "valid_auc": roc_auc(y_valid, np.asarray(valid_scores, dtype=np.float64)),
                "best_iteration": best,
            }
        )
        boosters.append(booster)

    trials = pd.DataFrame(rows)
    winner = int(np.argmin(trials["valid_logloss"].to_numpy()))
    trials["selected"] = trials.index == winner
    best_iteration = int(trials.loc[winner, "best_iteration"])
    final = boosters[winner][: best_iteration + 1]
    params: dict[str, float | int | str] = {**base}
    params.update({name: trials.loc[winner, name].item() for name in _TUNED})
    params["num_boost_round"] = best_iteration + 1
    return TrainedChurnModel(
        booster=final,
        params=params,
        best_iteration=best_iteration,
        trials=trials,
        features=feats,
    )


def refit(trained: TrainedChurnModel, frame: pd.DataFrame, label: str) -> xgb.Booster:
    """The winning configuration refit on ``frame`` (every row up to the cut-off) with the
    number of rounds early stopping chose: the model that is served, not the one judged."""
    y = _labels(frame, label, "refit")
    data = quantile_matrix(
        frame, trained.features, y, int(trained.params.get("nthread", 2)), "refit"
    )
    params = {k: v for k, v in trained.params.items() if k != "num_boost_round"}
    return xgb.train(params, data, num_boost_round=int(trained.params["num_boost_round"]))


def predict_scores(
    booster: xgb.Booster, frame: pd.DataFrame, features: Sequence[str]
) -> np.ndarray:
    """Churn probabilities as float64 in [0, 1], using every tree in the (truncated) booster."""
    x = _feature_frame(frame, features, "scoring")
    if booster.feature_names is not None and list(booster.feature_names) != list(features):
        raise ValueError(
            f"feature order {list(features)} does not match the booster's {booster.feature_names}"
        )
    if x.shape[0] == 0:
        return np.empty(0, dtype=np.float64)
    scores = np.asarray(booster.inplace_predict(x), dtype=np.float64).reshape(-1)
    return np.clip(scores, 0.0, 1.0)


def feature_importance(booster: xgb.Booster, features: Sequence[str]) -> dict[str, float]:
    """Share of total split gain per feature (sums to 1); unused features get 0.

    Total gain rather than split count, because a feature used in many shallow,
    low-gain splits should not look more important than one decisive split.
    """
    raw = booster.get_score(importance_type="total_gain")
    names = booster.feature_names
    if names is None:
        # Without stored names XGBoost keys features as f0, f1, ... in column order.
        raw = {features[int(k[1:])]: v for k, v in raw.items()}
    gains = {f: float(np.asarray(raw.get(f, 0.0)).sum()) for f in features}
    total = sum(gains.values())
    if total <= 0.0:
        return dict.fromkeys(features, 0.0)
    return {f: g / total for f, g in gains.items()}


def save_booster(booster: xgb.Booster, path: Path) -> None:
    """Write the booster in UBJ via a temp file + rename, so readers never see a partial file."""
    path = Path(path)
    if path.suffix != ".ubj":
        raise ValueError(
            f"booster path must end in .ubj (XGBoost picks the format by suffix): {path}"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.ubj")
    try:
        booster.save_model(str(tmp))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load_booster(path: Path) -> xgb.Booster:
    """Load a UBJ booster written by :func:`save_booster`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"booster file not found: {path}")
    booster = xgb.Booster()
    booster.load_model(str(path))
    return booster
