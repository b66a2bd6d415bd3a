"""Glue between the warehouse's long tables and the recommender's matrices.

A training set is stored long (user, item, weight, split) so it is queryable and hashable; it
round-trips exactly to the :class:`InteractionSplits` the recommender trains on. Evaluation of
any bundle (challenger or champion) goes through the same serving path on the same holdout, so
the champion is re-evaluated, not quoted.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import scipy.sparse as sp

from lifecycle.rec_data import SPLITS, InteractionData, InteractionSplits, Weighting, as_ids
from lifecycle.recommender import (
    RankingMetrics,
    RecommenderBundle,
    metrics_from_pairs,
    recommend_users,
)

TABLE_COLUMNS = ("user_id", "item_id", "weight", "split")
RECOMMENDATION_COLUMNS = (
    "user_id",
    "as_of_date",
    "rank",
    "item_id",
    "score",
    "model_version",
    "is_fallback",
)


def to_table(splits: InteractionSplits) -> pd.DataFrame:
    """One row per distinct pair: the user's ids, the aggregated raw weight and its slice."""
    order = np.lexsort((splits.cols, splits.rows, splits.split))
    return pd.DataFrame(
        {
            "user_id": splits.user_ids[splits.rows[order]],
            "item_id": splits.item_ids[splits.cols[order]],
            "weight": splits.weight[order],
            "split": np.asarray(SPLITS, dtype=object)[splits.split[order]],
        }
    )


def from_table(table: pd.DataFrame, weighting: Weighting, origin: str) -> InteractionSplits:
    """Inverse of :func:`to_table`; a malformed table fails naming ``origin`` and the problem."""
    missing = [c for c in TABLE_COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"{origin}: missing column(s) {missing}")
    if table.empty:
        raise ValueError(f"{origin}: no rows")
    users, user_ids = pd.factorize(as_ids(table["user_id"], f"{origin}.user_id"), sort=True)
    items, item_ids = pd.factorize(as_ids(table["item_id"], f"{origin}.item_id"), sort=True)
    split = pd.Index(SPLITS).get_indexer(table["split"])
    if (split < 0).any():
        unknown = sorted(map(str, pd.unique(table["split"][split < 0])))
        raise ValueError(f"{origin}: unknown split value(s) {unknown}; expected {list(SPLITS)}")
    weight = table["weight"].to_numpy(dtype=np.float64)
    if not (np.isfinite(weight) & (weight >= 0)).all():
        raise ValueError(f"{origin}: weights must be finite and >= 0")
    try:
        return InteractionSplits(
            user_ids=np.asarray(user_ids, dtype=object),
            item_ids=np.asarray(item_ids, dtype=object),
            rows=users.astype(np.int64),
            cols=items.astype(np.int64),
            weight=weight,
            split=split.astype(np.int8),
            weighting=weighting,
        )
    except ValueError as exc:
        raise ValueError(f"{origin}: {exc}") from None


def _pairs_in(
    bundle: RecommenderBundle, users: pd.Series, items: pd.Series
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bundle matrix (rows, cols) of the pairs, and which of them the bundle can represent."""
    rows = bundle.user_index.get_indexer(users)
    cols = bundle.item_index.get_indexer(items)
    return rows, cols, (rows >= 0) & (cols >= 0)


def seen_in(bundle: RecommenderBundle, data: InteractionData) -> sp.csr_matrix:
    """``data``'s training pairs in the bundle's own user/item index (pairs it cannot
    represent are dropped), so any bundle filters exactly what the holdout's users had."""
    coo = data.train.tocoo()
    users = pd.Series(data.user_ids[coo.row])
    items = pd.Series(data.item_ids[coo.col])
    rows, cols, known = _pairs_in(bundle, users, items)
    seen = sp.csr_matrix(
        (coo.data[known], (rows[known], cols[known])),
        shape=(len(bundle.user_ids), len(bundle.item_ids)),
        dtype=np.float32,
    )
    seen.sort_indices()
    return seen


def trained_on(bundle: RecommenderBundle, pairs: pd.DataFrame) -> np.ndarray:
    """Per (user_id, item_id) row of ``pairs``: was it in the bundle's training matrix?"""
    rows, cols, known = _pairs_in(bundle, pairs["user_id"], pairs["item_id"])
    trained = np.zeros(len(pairs), dtype=bool)
    trained[known] = np.asarray(bundle.user_items[rows[known], cols[known]]).ravel() != 0
    return trained


def holdout_unseen_by(bundle: RecommenderBundle, data: InteractionData) -> InteractionData:
    """``data`` with only the held-out pairs ``bundle`` never trained on.

    A champion's training window overlaps the challenger's holdout (its served fit trained on
    its whole window), so on the full holdout it would be graded on answers it memorised; on
    this subset both models are blind.
    """
    keep = ~trained_on(bundle, data.holdout)
    return replace(data, holdout=data.holdout.loc[keep].reset_index(drop=True))


def evaluate_bundle(bundle: RecommenderBundle, data: InteractionData, k: int) -> RankingMetrics:
    """Metrics of a bundle on ``data``'s holdout users, via ``recommend_users``.

    Challenger and champion are judged alike: the same users, the same held-out items, and the
    same seen-item filter (``data``'s training pairs), whatever the bundle serves with. Users a
    bundle does not know get its fallback, exactly as in production.
    """
    bundle = replace(bundle, user_items=seen_in(bundle, data))
    local, users = pd.factorize(data.holdout["user_id"])
    recs = recommend_users(bundle, users, k)
    slot = np.full((len(users), k), -1, dtype=np.int64)
    row = pd.Index(users).get_indexer(recs["user_id"])
    # Items outside data's catalogue cannot be a hit; -1 leaves the slot empty.
    slot[row, recs["rank"].to_numpy() - 1] = data.item_index.get_indexer(recs["item_id"])
    hold_items = data.item_index.get_indexer(data.holdout["item_id"])
    return metrics_from_pairs(slot, local.astype(np.int64), hold_items, data.n_items, k)


def active_users(events: pd.DataFrame, days: pd.DatetimeIndex, window: int) -> pd.DataFrame:
    """(as_of_date, user_id) for every user with an event in (D - window, D], each D in days.

    A dense user × day grid with a cumulative sum: one subtraction per (day, user).
    """
    first = days.min() - pd.Timedelta(days=window - 1)
    n_days = (days.max() - first).days + 1
    col, users = pd.factorize(as_ids(events["user_id"], "interactions.user_id"), sort=True)
    day = (pd.to_datetime(events["event_date"]) - first).dt.days.to_numpy()
    inside = (day >= 0) & (day < n_days)
    grid = np.zeros((n_days + 1, len(users)), dtype=np.int32)
    np.add.at(grid, (day[inside] + 1, col[inside]), 1)
    cum = np.cumsum(grid, axis=0)
    rows = np.asarray((days - first).days, dtype=np.int64)
    active = (cum[rows + 1] - cum[np.maximum(rows + 1 - window, 0)]) > 0
    r, c = np.nonzero(active)
    return pd.DataFrame({"as_of_date": days[r], "user_id": np.asarray(users, dtype=object)[c]})


def recommendation_table(
    active: pd.DataFrame, bundle: RecommenderBundle, k: int, model_version: str
) -> pd.DataFrame:
    """Top-k for each active (day, user); the model is fixed, so each user is scored once."""
    recs = recommend_users(bundle, active["user_id"].unique(), k)
    table = active.merge(recs, on="user_id", how="inner").assign(model_version=model_version)
    table["rank"] = table["rank"].astype("int64")
    return table.sort_values(["as_of_date", "user_id", "rank"], ignore_index=True).loc[
        :, list(RECOMMENDATION_COLUMNS)
    ]
