"""Interaction data for the recommender: verbatim ids, confidence weighting, and three slices.

Per user, the ``holdout_k`` most recently touched distinct items are the *gate* slice (what the
promotion gates judge on), the ``holdout_k`` before them the *selection* slice (what the grid
search picks on), the rest *train*. One set of pairs gives three views sharing one user/item
index: ``selection`` (fit on train, score on selection), ``judged`` (fit on train + selection,
score on gate) and ``served`` (fit on everything, score on nothing). Selecting and judging on
different slices keeps the gate numbers free of the search's optimism; the served view puts the
most recent history, the best predictor of what comes next, back into the model that serves.

Ids stay the user's text: models work on dense indices (``pd.factorize``) and map back.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any, Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp
from implicit.nearest_neighbours import bm25_weight, tfidf_weight

TRAIN, SELECTION, GATE = 0, 1, 2
SPLITS = ("train", "selection", "gate")  # split code -> name, as stored in the warehouse
_INTERACTION_COLUMNS = ("user_id", "item_id", "timestamp", "weight")


def as_ids(values: Any, what: str) -> np.ndarray:
    """Ids as an object array of ``str``, exactly as given; integers become their decimal text.

    Floats (which would print as "42.0"), missing values and mixed types are refused with
    ``what`` named: an id reformatted on the way would no longer match the user's systems.
    """
    series = values if isinstance(values, pd.Series) else pd.Series(np.asarray(values))
    if series.empty:
        return np.empty(0, dtype=object)
    missing = int(series.isna().sum())
    if missing:
        raise ValueError(f"{what}: {missing} missing id(s)")
    dtype = series.dtype
    if pd.api.types.is_integer_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype):
        return series.astype(str).to_numpy(dtype=object)
    if dtype.kind == "O" or isinstance(dtype, pd.StringDtype):
        kind = pd.api.types.infer_dtype(series, skipna=False)
        if kind == "string":
            return series.to_numpy(dtype=object)
        if kind == "integer":
            return series.astype(str).to_numpy(dtype=object)
        raise ValueError(f"{what}: ids must be text (or integers); found {kind} values")
    raise ValueError(f"{what}: ids must be text (or integers); got dtype {dtype}")


@dataclass(frozen=True)
class Weighting:
    """How raw interaction weights become ALS confidences.

    ``scheme`` transforms the aggregated weight ``r`` into ``w`` (``alpha``: ``w = r``;
    ``bm25``/``tfidf``: implicit's weighting, which damps heavy users and popular items),
    then confidence ``= 1 + alpha * max(w, 0)`` as in Hu et al. Keeping every observed
    entry >= 1 means no observed pair silently vanishes from the matrix (it is also the
    "seen" filter at serving time) and negative idf values cannot flip a positive signal.
    """

    scheme: Literal["alpha", "bm25", "tfidf"] = "alpha"
    alpha: float = 20.0
    bm25_k1: float = 1.2
    bm25_b: float = 0.75

    def __post_init__(self) -> None:
        if self.scheme not in ("alpha", "bm25", "tfidf"):
            raise ValueError(f"unknown weighting scheme {self.scheme!r}")
        if not np.isfinite(self.alpha) or self.alpha < 0:
            raise ValueError("alpha must be finite and >= 0")
        if self.bm25_k1 < 0 or not 0.0 <= self.bm25_b <= 1.0:
            raise ValueError("bm25_k1 must be >= 0 and bm25_b in [0, 1]")


def apply_weighting(raw: sp.csr_matrix, weighting: Weighting) -> sp.csr_matrix:
    """Turn aggregated weights into float32 confidences without changing the sparsity pattern."""
    raw = sp.csr_matrix(raw, dtype=np.float64, copy=True)
    raw.sort_indices()
    if weighting.scheme == "alpha":
        values = raw.data
    else:
        if weighting.scheme == "bm25":
            weighted = bm25_weight(raw, K1=weighting.bm25_k1, B=weighting.bm25_b)
        else:
            weighted = tfidf_weight(raw)
        weighted = sp.csr_matrix(weighted)
        weighted.sort_indices()
        # implicit's functions work on the COO view element-wise, so the pattern (explicit
        # zeros included) is preserved; verify rather than assume.
        if weighted.nnz != raw.nnz or not np.array_equal(weighted.indices, raw.indices):
            raise RuntimeError("weighting changed the sparsity pattern")
        values = weighted.data
    values = np.nan_to_num(np.asarray(values, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    confidence = 1.0 + weighting.alpha * np.clip(values, 0.0, None)
    return sp.csr_matrix(
        (confidence.astype(np.float32), raw.indices.copy(), raw.indptr.copy()), shape=raw.shape
    )


class IdLookup:
    """Ids → dense row/column positions, built once per object (``pd.Index.get_indexer``)."""

    user_ids: np.ndarray
    item_ids: np.ndarray

    @cached_property
    def user_index(self) -> pd.Index:
        return pd.Index(self.user_ids)

    @cached_property
    def item_index(self) -> pd.Index:
        return pd.Index(self.item_ids)


@dataclass(frozen=True, eq=False)
class InteractionData(IdLookup):
    """One view: the confidences a model is fitted on and the held-out pairs it is scored on."""

    train: sp.csr_matrix  # users x items confidence matrix (float32), after weighting
    user_ids: np.ndarray  # row index -> external user_id (object array of str)
    item_ids: np.ndarray  # col index -> external item_id (object array of str)
    holdout: pd.DataFrame  # user_id, item_id (str): the pairs this view is scored on

    @property
    def n_users(self) -> int:
        return int(self.train.shape[0])

    @property
    def n_items(self) -> int:
        return int(self.train.shape[1])


@dataclass(frozen=True, eq=False)
class InteractionSplits:
    """Every distinct (user, item) pair of the window once, with its raw weight and slice."""

    user_ids: np.ndarray  # dense index -> external user_id (object array of str, sorted)
    item_ids: np.ndarray  # dense index -> external item_id (object array of str, sorted)
    rows: np.ndarray  # int64 user index per pair
    cols: np.ndarray  # int64 item index per pair
    weight: np.ndarray  # float64 aggregated raw weight per pair (weighting is per view)
    split: np.ndarray  # int8 slice code per pair: TRAIN, SELECTION or GATE
    weighting: Weighting

    def __post_init__(self) -> None:
        n = len(self.rows)
        if not len(self.cols) == len(self.weight) == len(self.split) == n:
            raise ValueError("rows, cols, weight and split must have one entry per pair")
        if n and not ((self.split >= TRAIN) & (self.split <= GATE)).all():
            raise ValueError("split codes must be 0 (train), 1 (selection) or 2 (gate)")
        keys = np.sort(self.rows.astype(np.int64) * max(len(self.item_ids), 1) + self.cols)
        duplicated = int((keys[1:] == keys[:-1]).sum())
        if duplicated:
            raise ValueError(
                f"{duplicated} duplicate (user_id, item_id) row(s): each pair is stored once"
            )

    def view(self, fit_on: tuple[int, ...], score_on: int | None) -> InteractionData:
        """Confidences of the ``fit_on`` slices, weighted on their own (bm25/idf statistics
        never count held-out pairs), and the ``score_on`` slice as the holdout."""
        fit = np.isin(self.split, fit_on)
        shape = (len(self.user_ids), len(self.item_ids))
        raw = sp.csr_matrix((self.weight[fit], (self.rows[fit], self.cols[fit])), shape=shape)
        held = self.split == score_on if score_on is not None else np.zeros(len(self.split), bool)
        order = np.lexsort((self.cols[held], self.rows[held]))
        holdout = pd.DataFrame(
            {
                "user_id": self.user_ids[self.rows[held][order]],
                "item_id": self.item_ids[self.cols[held][order]],
            }
        )
        return InteractionData(
            train=apply_weighting(raw, self.weighting),
            user_ids=self.user_ids,
            item_ids=self.item_ids,
            holdout=holdout,
        )

    @cached_property
    def selection(self) -> InteractionData:
        """The grid search's view: fit on train, score on the selection slice."""
        return self.view((TRAIN,), SELECTION)

    @cached_property
    def judged(self) -> InteractionData:
        """The gates' view: fit on train + selection, score on the untouched gate slice."""
        return self.view((TRAIN, SELECTION), GATE)

    @cached_property
    def served(self) -> InteractionData:
        """The served model's view: every pair of the window, nothing held out."""
        return self.view((TRAIN, SELECTION, GATE), None)

    def summary(self) -> dict[str, int]:
        """Counts for metadata: every pair is in exactly one slice, every user is counted."""
        with_gate = np.unique(self.rows[self.split == GATE]).size
        return {
            "users": len(self.user_ids),
            "items": len(self.item_ids),
            **{
                f"{name}_pairs": int((self.split == code).sum()) for code, name in enumerate(SPLITS)
            },
            "users_with_slices": int(with_gate),
            "users_train_only": len(self.user_ids) - int(with_gate),
        }


def _time_keys(stamps: pd.Series) -> np.ndarray:
    """Timestamps as sortable numbers (datetimes as UTC nanoseconds)."""
    if pd.api.types.is_datetime64_any_dtype(stamps):
        return np.asarray(pd.DatetimeIndex(stamps).asi8, dtype=np.int64)
    if pd.api.types.is_numeric_dtype(stamps):
        return stamps.to_numpy(dtype=np.float64)
    raise ValueError(f"interactions.timestamp: expected datetimes or numbers, got {stamps.dtype}")


def build_interaction_data(
    interactions: pd.DataFrame,
    holdout_k: int,
    min_user_interactions: int,
    weighting: Weighting,
) -> InteractionSplits:
    """Aggregate events per (user, item) and cut each eligible user's recent history in two.

    Recency of a pair is its latest timestamp; ties go to the larger id so the cut is
    deterministic. A user is eligible with at least ``max(min_user_interactions,
    2 * holdout_k + 1)`` distinct items, so both slices are full and one train item remains;
    other users are train only (counted in :meth:`InteractionSplits.summary`).
    """
    missing = [c for c in _INTERACTION_COLUMNS if c not in interactions.columns]
    if missing:
        raise ValueError(f"interactions missing columns: {missing}")
    if interactions.empty:
        raise ValueError("interactions is empty")
    if holdout_k < 0:
        raise ValueError("holdout_k must be >= 0")

    user_text = as_ids(interactions["user_id"], "interactions.user_id")
    item_text = as_ids(interactions["item_id"], "interactions.item_id")
    users, user_ids = pd.factorize(user_text, sort=True)
    items, item_ids = pd.factorize(item_text, sort=True)
    row, col = users.astype(np.int64), items.astype(np.int64)
    stamp = _time_keys(interactions["timestamp"])
    weight = interactions["weight"].to_numpy(dtype=np.float64)

    # Events by pair, then time: sums add up in one order whatever order the warehouse
    # returned rows in, and each pair's last event is its recency.
    order = np.lexsort((weight, stamp, col, row))
    row, col, stamp, weight = row[order], col[order], stamp[order], weight[order]
    new_pair = np.r_[True, (row[1:] != row[:-1]) | (col[1:] != col[:-1])]
    first = np.flatnonzero(new_pair)
    last = np.r_[first[1:], len(row)] - 1
    pair_row, pair_col, pair_ts = row[first], col[first], stamp[last]
    pair_weight = np.add.reduceat(weight, first)

    # Per user, most recent pair first (ties: larger id first); rank 0 is the latest.
    order = np.lexsort((-pair_col, -pair_ts, pair_row))
    pair_row, pair_col, pair_weight = pair_row[order], pair_col[order], pair_weight[order]
    per_user = np.bincount(pair_row, minlength=len(user_ids))
    user_start = np.r_[0, np.cumsum(per_user)[:-1]]
    recency = np.arange(len(pair_row)) - user_start[pair_row]
    eligible = per_user[pair_row] >= max(min_user_interactions, 2 * holdout_k + 1)
    split = np.full(len(pair_row), TRAIN, dtype=np.int8)
    split[eligible & (recency < 2 * holdout_k)] = SELECTION
    split[eligible & (recency < holdout_k)] = GATE
    return InteractionSplits(
        user_ids=np.asarray(user_ids, dtype=object),
        item_ids=np.asarray(item_ids, dtype=object),
        rows=pair_row,
        cols=pair_col,
        weight=pair_weight,
        split=split,
        weighting=weighting,
    )


def window_start(
    month: pd.Timestamp, lookback_months: int | None, first_day: pd.Timestamp
) -> pd.Timestamp:
    """First day of month M's training window, which ends the day before M: ``lookback_months``
    before M, or all history (``None``); never before the first day of data."""
    if lookback_months is None:
        return first_day
    return max(month - pd.DateOffset(months=lookback_months), first_day)
