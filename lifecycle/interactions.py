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
    recommend_from_history,
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


def history_in(bundle: RecommenderBundle, data: InteractionData, rows: np.ndarray) -> sp.csr_matrix:
    """``data``'s training pairs of the given rows, in the bundle's item index (items the
    bundle does not know are dropped: it can neither use nor recommend them)."""
    sub = data.train[rows].tocoo()
    cols = bundle.item_index.get_indexer(data.item_ids)[sub.col]
    keep = cols >= 0
    return sp.csr_matrix(
        (sub.data[keep], (sub.row[keep], cols[keep])),
        shape=(len(rows), len(bundle.item_ids)),
        dtype=np.float32,
    )


def evaluate_bundle(bundle: RecommenderBundle, data: InteractionData, k: int) -> RankingMetrics:
    """Metrics of a bundle on ``data``'s holdout users, through the serving path.

    Challenger and champion are judged alike, as they would serve: each holdout user's history
    is ``data``'s training pairs, folded into the bundle and filtered out, whatever the bundle
    itself was fitted on; a user none of whose items it knows gets its fallback.
    """
    local, users = pd.factorize(data.holdout["user_id"])
    rows = data.user_index.get_indexer(users)
    if (rows < 0).any():
        raise ValueError("holdout names users outside the data's index")
    ids, _, _ = recommend_from_history(bundle, history_in(bundle, data, rows), k)
    # Items outside data's catalogue cannot be a hit; -1 leaves the slot empty.
    to_data = data.item_index.get_indexer(bundle.item_ids)
    slot = np.where(ids >= 0, to_data[np.maximum(ids, 0)], -1)
    hold_items = data.item_index.get_indexer(data.holdout["item_id"])
    return metrics_from_pairs(slot, local.astype(np.int64), hold_items, data.n_items, k)
