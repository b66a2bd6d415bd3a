"""Glue between the warehouse's long tables and the recommender's matrices.

A training set is stored long (user, item, confidence, split) so it is queryable and hashable;
it round-trips exactly to the ``InteractionData`` the recommender trains on. Evaluation of any
bundle (challenger or champion) goes through the same serving path on the same holdout, so the
champion is re-evaluated, not quoted.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import scipy.sparse as sp

from lifecycle.recommender import (
    InteractionData,
    RankingMetrics,
    RecommenderBundle,
    evaluate_recommendations,
    recommend_users,
)

TABLE_COLUMNS = ("user_id", "item_id", "confidence", "split")
RECOMMENDATION_COLUMNS = (
    "user_id",
    "as_of_date",
    "rank",
    "item_id",
    "score",
    "model_version",
    "is_fallback",
)


def to_table(data: InteractionData) -> pd.DataFrame:
    coo = data.train.tocoo()
    train = pd.DataFrame(
        {
            "user_id": data.user_ids[coo.row],
            "item_id": data.item_ids[coo.col],
            "confidence": coo.data.astype("float64"),
            "split": "train",
        }
    )
    holdout = data.holdout.assign(confidence=0.0, split="holdout")
    table = pd.concat([train, holdout.loc[:, list(TABLE_COLUMNS)]], ignore_index=True)
    return table.sort_values(["split", "user_id", "item_id"], kind="stable", ignore_index=True)


def from_table(table: pd.DataFrame) -> InteractionData:
    """Inverse of ``to_table``: every user has train rows, every item appears somewhere."""
    user_ids = np.unique(table["user_id"].to_numpy(dtype=np.int64))
    item_ids = np.unique(table["item_id"].to_numpy(dtype=np.int64))
    train = table[table["split"] == "train"]
    matrix = sp.csr_matrix(
        (
            train["confidence"].to_numpy(dtype=np.float32),
            (
                np.searchsorted(user_ids, train["user_id"].to_numpy(dtype=np.int64)),
                np.searchsorted(item_ids, train["item_id"].to_numpy(dtype=np.int64)),
            ),
        ),
        shape=(len(user_ids), len(item_ids)),
    )
    matrix.sort_indices()
    holdout = (
        table.loc[table["split"] == "holdout", ["user_id", "item_id"]]
        .astype("int64")
        .sort_values(["user_id", "item_id"], ignore_index=True)
    )
    return InteractionData(train=matrix, user_ids=user_ids, item_ids=item_ids, holdout=holdout)


def seen_matrix(data: InteractionData) -> sp.csr_matrix:
    """Everything each user had in the training window: train entries plus the held-out items.

    The served bundle filters with this, so a known user is never shown an item they already
    had, including the most recent ones that were held out for evaluation.
    """
    holdout = data.holdout
    marks = sp.csr_matrix(
        (
            np.ones(len(holdout), dtype=np.float32),
            (
                np.searchsorted(data.user_ids, holdout["user_id"].to_numpy(dtype=np.int64)),
                np.searchsorted(data.item_ids, holdout["item_id"].to_numpy(dtype=np.int64)),
            ),
        ),
        shape=data.train.shape,
    )
    seen = (data.train + marks).tocsr()
    seen.sort_indices()
    return seen


def serving_bundle(bundle: RecommenderBundle, data: InteractionData) -> RecommenderBundle:
    return replace(bundle, user_items=seen_matrix(data))


def seen_in(bundle: RecommenderBundle, data: InteractionData) -> sp.csr_matrix:
    """``data``'s training pairs in the bundle's own user/item index (pairs it cannot
    represent are dropped), so any bundle filters exactly what the holdout's users had."""
    coo = data.train.tocoo()
    users, items = data.user_ids[coo.row], data.item_ids[coo.col]
    n_users, n_items = len(bundle.user_ids), len(bundle.item_ids)
    rows = np.minimum(np.searchsorted(bundle.user_ids, users), max(n_users - 1, 0))
    cols = np.minimum(np.searchsorted(bundle.item_ids, items), max(n_items - 1, 0))
    known = (bundle.user_ids[rows] == users) & (bundle.item_ids[cols] == items)
    seen = sp.csr_matrix(
        (coo.data[known], (rows[known], cols[known])), shape=(n_users, n_items), dtype=np.float32
    )
    seen.sort_indices()
    return seen


def holdout_unseen_by(bundle: RecommenderBundle, data: InteractionData) -> InteractionData:
    """``data`` with only the held-out pairs ``bundle`` never trained on.

    An older champion's training window overlaps the challenger's holdout, so on the full
    holdout it would be graded on answers it memorised; on this subset both models are blind.
    """
    holdout = data.holdout
    users = holdout["user_id"].to_numpy(dtype=np.int64)
    items = holdout["item_id"].to_numpy(dtype=np.int64)
    n_users, n_items = len(bundle.user_ids), len(bundle.item_ids)
    rows = np.minimum(np.searchsorted(bundle.user_ids, users), max(n_users - 1, 0))
    cols = np.minimum(np.searchsorted(bundle.item_ids, items), max(n_items - 1, 0))
    known = (bundle.user_ids[rows] == users) & (bundle.item_ids[cols] == items)
    trained = np.zeros(len(holdout), dtype=bool)
    trained[known] = np.asarray(bundle.user_items[rows[known], cols[known]]).ravel() != 0
    return replace(data, holdout=holdout.loc[~trained].reset_index(drop=True))


def evaluate_bundle(bundle: RecommenderBundle, data: InteractionData, k: int) -> RankingMetrics:
    """Metrics of a bundle on ``data``'s holdout users, via ``recommend_users``.

    Challenger and champion are judged alike: the same users, the same held-out items, and the
    same seen-item filter (``data``'s training pairs), whatever the bundle serves with. Users a
    bundle does not know get its fallback, exactly as in production.
    """
    bundle = replace(bundle, user_items=seen_in(bundle, data))
    holdout = data.holdout.sort_values(["user_id", "item_id"], ignore_index=True)
    users, starts = np.unique(holdout["user_id"].to_numpy(dtype=np.int64), return_index=True)
    recs = recommend_users(bundle, users, k)
    slot = np.full((len(users), k), -1, dtype=np.int64)
    row = np.searchsorted(users, recs["user_id"].to_numpy(dtype=np.int64))
    item_pos = np.searchsorted(data.item_ids, recs["item_id"].to_numpy(dtype=np.int64))
    item_pos = np.minimum(item_pos, len(data.item_ids) - 1)
    known = data.item_ids[item_pos] == recs["item_id"].to_numpy(dtype=np.int64)
    slot[row, recs["rank"].to_numpy() - 1] = np.where(known, item_pos, -1)
    hold_items = np.searchsorted(data.item_ids, holdout["item_id"].to_numpy(dtype=np.int64))
    holdout_sets = np.split(hold_items, starts[1:])
    return evaluate_recommendations(slot, holdout_sets, len(data.item_ids), k)


def active_users(events: pd.DataFrame, days: pd.DatetimeIndex, window: int) -> pd.DataFrame:
    """(as_of_date, user_id) for every user with an event in (D - window, D], each D in days.

    A dense user × day grid with a cumulative sum: one subtraction per (day, user).
    """
    first = days.min() - pd.Timedelta(days=window - 1)
    n_days = (days.max() - first).days + 1
    users, col = np.unique(events["user_id"].to_numpy(dtype=np.int64), return_inverse=True)
    day = (pd.to_datetime(events["event_date"]) - first).dt.days.to_numpy()
    inside = (day >= 0) & (day < n_days)
    grid = np.zeros((n_days + 1, len(users)), dtype=np.int32)
    np.add.at(grid, (day[inside] + 1, col[inside]), 1)
    cum = np.cumsum(grid, axis=0)
    rows = np.asarray((days - first).days, dtype=np.int64)
    active = (cum[rows + 1] - cum[np.maximum(rows + 1 - window, 0)]) > 0
    r, c = np.nonzero(active)
    return pd.DataFrame({"as_of_date": days[r], "user_id": users[c]})


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
