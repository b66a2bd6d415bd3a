"""The direct reference: what a data scientist writes without the platform, in a notebook's worth.

It reads the same export files the platform ingests and answers the same two questions at the
same as-of day D, so the platform has to be at least this good on the same customers:

* churn: monthly as-of RFM snapshots (uncapped recency, lifetime frequency and spend, tenure,
  30/90-day counts and spend) of every customer with a purchase by the snapshot day, label "no
  purchase in (S, S+H]", plain XGBoost with early stopping on the newest snapshot, refit on all
  snapshots, then a score for every customer known at D;
* recommender: ``implicit`` ALS chosen from a small grid on each user's last interactions,
  refit on all history up to D, top-k excluding seen items, popularity for unknown users.

Nothing here imports the platform: it is the yardstick, not a second copy of it.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import glob as globlib
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import implicit.als
import numpy as np
import pandas as pd
import scipy.sparse as sp
import xgboost as xgb

RFM_FEATURES = (
    "recency",
    "tenure",
    "frequency",
    "monetary",
    "count_30",
    "count_90",
    "spend_30",
    "spend_90",
)
XGB_PARAMS: dict[str, Any] = {
    "objective": "binary:logistic",
    "eval_metric": "auc",
    "tree_method": "hist",
    "max_depth": 5,
    "eta": 0.05,
    "subsample": 0.9,
    "colsample_bytree": 0.9,
    "min_child_weight": 5,
    "seed": 0,
}
ALS_GRID: tuple[dict[str, float], ...] = (
    {"factors": 16, "regularization": 0.1},
    {"factors": 32, "regularization": 0.1},
    {"factors": 32, "regularization": 1.0},
    {"factors": 64, "regularization": 1.0},
)


def read_export(
    patterns: Sequence[str],
    columns: Mapping[str, str],
    timezone: str,
    epoch_unit: str | None = None,
) -> pd.DataFrame:
    """Every file matching any of ``patterns``; ids stay text, timestamps become local time.

    ``columns`` maps our names to the export's. Epoch numbers (``epoch_unit``) and text with a
    UTC offset are instants, converted to ``timezone``; naive text is already local time.
    Adds ``day`` (local midnight).
    """
    files = sorted(f for pattern in patterns for f in globlib.glob(pattern))
    if not files:
        raise FileNotFoundError(f"no files match {', '.join(patterns)}")
    raw = pd.concat([pd.read_csv(f, dtype=str, keep_default_na=False) for f in files])
    frame = pd.DataFrame({ours: raw[theirs].to_numpy() for ours, theirs in columns.items()})
    text = frame["timestamp"].astype(str)
    if epoch_unit is not None:
        stamps = pd.to_datetime(text.astype("int64"), unit=epoch_unit, utc=True)
        frame["timestamp"] = stamps.dt.tz_convert(timezone).dt.tz_localize(None)
    elif text.str.contains(r"(?:[+-]\d\d:?\d\d|Z)$", regex=True).any():
        stamps = pd.to_datetime(text, format="ISO8601", utc=True)
        frame["timestamp"] = stamps.dt.tz_convert(timezone).dt.tz_localize(None)
    else:
        frame["timestamp"] = pd.to_datetime(text, format="ISO8601")
    for number in ("amount", "weight"):
        if number in frame:
            frame[number] = frame[number].astype(float)
    frame["day"] = frame["timestamp"].dt.normalize()
    return frame.sort_values("timestamp", kind="stable", ignore_index=True)


# --------------------------------------------------------------------------------------------
# Churn
# --------------------------------------------------------------------------------------------


def rfm_snapshot(tx: pd.DataFrame, as_of: pd.Timestamp) -> pd.DataFrame:
    """RFM features of every customer with a purchase on or before ``as_of``."""
    past = tx[tx["day"] <= as_of]
    by = past.groupby("customer_id")
    age = (as_of - past["day"]).dt.days
    windows = (
        pd.DataFrame(
            {
                **{f"count_{w}": (age < w).astype(float) for w in (30, 90)},
                **{f"spend_{w}": past["amount"].where(age < w, 0.0) for w in (30, 90)},
            }
        )
        .groupby(past["customer_id"])
        .sum()
    )
    out = pd.DataFrame(
        {
            "recency": (as_of - by["day"].max()).dt.days,
            "tenure": (as_of - by["day"].min()).dt.days,
            "frequency": by.size(),
            "monetary": by["amount"].sum(),
        }
    ).join(windows)
    return out.astype(float)


def churned_after(
    tx: pd.DataFrame, customers: pd.Index, as_of: pd.Timestamp, horizon: int
) -> pd.Series:
    """1 where a customer made no purchase in (as_of, as_of + horizon]."""
    window = tx[(tx["day"] > as_of) & (tx["day"] <= as_of + pd.Timedelta(days=horizon))]
    return pd.Series((~customers.isin(window["customer_id"])).astype(int), index=customers)


@dataclass(frozen=True)
class ChurnReference:
    scores: pd.Series  # index customer_id (text), churn probability at D
    fit_seconds: float
    rounds: int
    snapshots: int
    train_rows: int
    valid_auc: float


def churn_reference(
    tx: pd.DataFrame,
    as_of: pd.Timestamp,
    horizon: int,
    n_snapshots: int = 12,
    max_rounds: int = 400,
    params: Mapping[str, Any] = XGB_PARAMS,
) -> ChurnReference:
    """Snapshots S = (D - H) - k months, k < n_snapshots: each label is known by D."""
    started = time.perf_counter()
    newest = as_of - pd.Timedelta(days=horizon)
    frames = []
    for k in range(n_snapshots):
        snap = newest - pd.DateOffset(months=k)
        feats = rfm_snapshot(tx, snap)
        if feats.empty:
            break
        frames.append(feats.assign(churned=churned_after(tx, feats.index, snap, horizon)))
    if len(frames) < 2:
        raise ValueError(f"history before {newest.date()} is too short for two snapshots")
    valid, train = frames[0], pd.concat(frames[1:])
    cols = list(RFM_FEATURES)
    dtrain = xgb.DMatrix(train[cols], label=train["churned"])
    dvalid = xgb.DMatrix(valid[cols], label=valid["churned"])
    probe = xgb.train(
        dict(params),
        dtrain,
        max_rounds,
        evals=[(dvalid, "valid")],
        early_stopping_rounds=30,
        verbose_eval=False,
    )
    rounds = probe.best_iteration + 1
    everything = pd.concat(frames)
    final = xgb.train(
        dict(params), xgb.DMatrix(everything[cols], label=everything["churned"]), rounds
    )
    fit_seconds = time.perf_counter() - started
    now = rfm_snapshot(tx, as_of)
    scores = pd.Series(final.inplace_predict(now[cols]), index=now.index, name="score")
    return ChurnReference(
        scores=scores,
        fit_seconds=fit_seconds,
        rounds=rounds,
        snapshots=len(frames),
        train_rows=len(everything),
        valid_auc=float(probe.best_score),
    )


# --------------------------------------------------------------------------------------------
# Recommender
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RecReference:
    recommendations: pd.DataFrame  # user_id, rank, item_id (text ids)
    popular: np.ndarray  # item ids, most popular first (for unknown users)
    fit_seconds: float
    chosen: dict[str, float]
    selection: list[dict[str, float]] = field(default_factory=list)


def _matrix(
    users: np.ndarray, items: np.ndarray, weight: np.ndarray, shape: tuple[int, int]
) -> sp.csr_matrix:
    return sp.csr_matrix((weight, (users, items)), shape=shape)


def _fit_als(point: Mapping[str, float], matrix: sp.csr_matrix) -> Any:
    """ALS at one grid point, as the notebook fits it (15 iterations, seed 0)."""
    model = implicit.als.AlternatingLeastSquares(
        factors=int(point["factors"]),
        regularization=float(point["regularization"]),
        iterations=15,
        random_state=0,
    )
    model.fit(matrix, show_progress=False)
    return model


def _precision(model: Any, train: sp.csr_matrix, held: pd.DataFrame, k: int) -> float:
    users = held["u"].unique()
    recs, _ = model.recommend(users, train[users], N=k, filter_already_liked_items=True)
    wanted = held.groupby("u")["i"].apply(set)
    hits = [len(wanted[u] & set(row)) for u, row in zip(users, recs, strict=True)]
    return float(np.mean(hits) / k)


def recommender_reference(
    events: pd.DataFrame,
    as_of: pd.Timestamp,
    k: int = 10,
    holdout: int = 5,
    min_interactions: int = 10,
    alpha: float = 2.0,
    grid: Sequence[Mapping[str, float]] = ALS_GRID,
) -> RecReference:
    """Pick ALS settings on each user's last ``holdout`` events, refit on all history ≤ D."""
    started = time.perf_counter()
    past = events[events["day"] <= as_of]
    u, users = pd.factorize(past["user_id"])
    i, items = pd.factorize(past["item_id"])
    shape = (len(users), len(items))
    weight = alpha * past["weight"].to_numpy(dtype=np.float32)
    frame = pd.DataFrame({"u": u, "i": i, "w": weight})
    last = frame.groupby("u").cumcount(ascending=False) < holdout
    enough = frame.groupby("u")["u"].transform("size") >= min_interactions
    test = last & enough
    train = _matrix(u[~test], i[~test], weight[~test], shape)
    held = frame[test]
    seen = set(zip(u[~test].tolist(), i[~test].tolist(), strict=True))
    held = held[[(a, b) not in seen for a, b in zip(held["u"], held["i"], strict=True)]]
    selection = []
    for point in grid:
        model = _fit_als(point, train)
        selection.append({**point, "precision": _precision(model, train, held, k)})
    best = max(selection, key=lambda s: s["precision"])
    full = _matrix(u, i, weight, shape)
    model = _fit_als(best, full)
    fit_seconds = time.perf_counter() - started
    rows = np.arange(len(users))
    recs, _ = model.recommend(rows, full[rows], N=k, filter_already_liked_items=True)
    popular = items[np.argsort(-np.bincount(i, minlength=len(items)), kind="stable")]
    table = pd.DataFrame(
        {
            "user_id": np.repeat(np.asarray(users, dtype=object), k),
            "rank": np.tile(np.arange(1, k + 1), len(users)),
            "item_id": np.asarray(items, dtype=object)[recs.ravel()],
            "valid": recs.ravel() >= 0,
        }
    )
    return RecReference(
        recommendations=table[table["valid"]].drop(columns="valid").reset_index(drop=True),
        popular=np.asarray(popular, dtype=object),
        fit_seconds=fit_seconds,
        chosen={k_: v for k_, v in best.items() if k_ != "precision"},
        selection=selection,
    )


def popular_unseen(
    events: pd.DataFrame, popular: np.ndarray, users: Sequence[str], k: int
) -> pd.DataFrame:
    """The popularity floor: the k most popular items each user has not interacted with."""
    seen = events.groupby("user_id")["item_id"].apply(set)
    empty: set[str] = set()
    rows = []
    for user in users:
        mine = seen.get(user, empty)
        top = [item for item in popular[: k + len(mine)] if item not in mine][:k]
        rows += [(user, rank, item) for rank, item in enumerate(top, start=1)]
    return pd.DataFrame(rows, columns=["user_id", "rank", "item_id"])
