"""ALS on implicit feedback: training, top-k on dense indices, ranking metrics, grid search.

Works on :class:`~lifecycle.rec_data.InteractionData` views (dense indices only); mapping to
the user's ids and serving live in :mod:`lifecycle.recommender`.
"""

from __future__ import annotations

import os

# Must happen before numpy loads OpenBLAS: implicit runs its own thread pool and a threaded
# BLAS underneath it oversubscribes the CPU (implicit warns about exactly this).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import implicit.als
import numpy as np
import pandas as pd
import scipy.sparse as sp
from implicit.cpu.als import AlternatingLeastSquares as CpuAls

from lifecycle.rec_data import InteractionData
from lifecycle.topk import top_k_unseen

# --------------------------------------------------------------------------------------
# Value types
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AlsParams:
    """ALS hyper-parameters searched over; the confidence scale lives in :class:`Weighting`."""

    factors: int = 32
    regularization: float = 0.05
    iterations: int = 15

    def __post_init__(self) -> None:
        if self.factors <= 0 or self.iterations <= 0:
            raise ValueError("factors and iterations must be positive")
        if self.regularization < 0:
            raise ValueError("regularization must be >= 0")


@dataclass(frozen=True)
class RankingMetrics:
    """Top-k ranking quality averaged over users that have at least one holdout item."""

    precision: float
    recall: float
    ndcg: float
    map: float
    coverage: float
    n_users: int
    k: int

    def as_dict(self) -> dict[str, float]:
        """Flat float dict, ready for metadata / metric logging."""
        return {key: float(value) for key, value in asdict(self).items()}


# --------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------


def item_user_counts(train: sp.csr_matrix) -> np.ndarray:
    """Number of users with a stored entry per item (pairs are unique, so entries = users)."""
    return np.bincount(train.indices, minlength=train.shape[1]).astype(np.int64)


def popularity_items(train: sp.csr_matrix, n: int) -> np.ndarray:
    """Item column indices by number of users (desc), ties by index: the baseline and fallback."""
    counts = item_user_counts(train)
    return np.argsort(-counts, kind="stable")[: max(n, 0)].astype(np.int64)


def train_als(data: InteractionData, params: AlsParams, seed: int, num_threads: int = 0) -> CpuAls:
    """Fit CPU ALS on the weighted train matrix; seeded so reruns give identical factors."""
    model = implicit.als.AlternatingLeastSquares(
        factors=params.factors,
        regularization=params.regularization,
        iterations=params.iterations,
        alpha=1.0,  # confidence scaling is already applied by Weighting
        use_gpu=False,
        num_threads=num_threads,
        random_state=seed,
    )
    if not isinstance(model, CpuAls):  # the factory must honour use_gpu=False
        raise TypeError(f"expected CPU ALS, got {type(model)!r}")
    model.fit(data.train, show_progress=False)
    return model


def _pairs_key(rows: np.ndarray, cols: np.ndarray, n_cols: int) -> np.ndarray:
    return rows.astype(np.int64) * np.int64(n_cols) + cols.astype(np.int64)


def _member(sorted_keys: np.ndarray, query: np.ndarray) -> np.ndarray:
    """``np.isin`` for an already sorted haystack: a binary search, no re-sort or hashing."""
    if sorted_keys.size == 0:
        return np.zeros(query.shape, dtype=bool)
    pos = np.minimum(np.searchsorted(sorted_keys, query), sorted_keys.size - 1)
    return sorted_keys[pos] == query


def recommend_indices(
    model: CpuAls, user_items: sp.csr_matrix, rows: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k unseen items for the fit's users ``rows`` (their stored factors), filtering each
    one's row of ``user_items``; (len(rows) x k) item indices / scores, -1 / NaN unfilled."""
    rows = np.asarray(rows, dtype=np.int64)
    return top_k_unseen(model.user_factors[rows], model.item_factors, user_items[rows], k)


def fold_in_top_k(model: CpuAls, history: sp.csr_matrix, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k unseen items per row of ``history`` (users x items, confidences as in training),
    each row's factor solved from that row against the fit's item factors (one exact ALS
    half-step), so users and events newer than the fit count."""
    history = sp.csr_matrix(history, dtype=np.float32)
    if history.shape[0] == 0:
        return top_k_unseen(np.zeros((0, model.factors)), model.item_factors, history, k)
    factors = model.recalculate_user(np.arange(history.shape[0]), history)
    return top_k_unseen(np.atleast_2d(factors), model.item_factors, history, k)


def popular_unseen(train: sp.csr_matrix, rows: np.ndarray, k: int) -> np.ndarray:
    """Top-k popular items per user excluding that user's train items, without a user loop.

    Only the first ``k + max(seen per user)`` popular items can ever be needed, so the seen
    mask is (users x that many) rather than (users x catalogue).
    """
    n_rows, n_items = len(rows), train.shape[1]
    out = np.full((n_rows, k), -1, dtype=np.int64)
    if n_rows == 0 or k == 0:
        return out
    selected = train[rows]
    per_row = np.diff(selected.indptr)
    m = int(min(n_items, k + int(per_row.max(initial=0))))
    candidates = popularity_items(train, m)
    position = np.full(n_items, -1, dtype=np.int64)
    position[candidates] = np.arange(m)
    seen_pos = position[selected.indices]
    seen_rows = np.repeat(np.arange(n_rows), per_row)
    keep = seen_pos >= 0
    seen = np.zeros((n_rows, m), dtype=bool)
    seen[seen_rows[keep], seen_pos[keep]] = True
    take = min(k, m)
    order = np.argsort(seen, axis=1, kind="stable")[:, :take]
    picked_seen = np.take_along_axis(seen, order, axis=1)
    out[:, :take] = np.where(picked_seen, -1, candidates[order])
    return out


# --------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------


def metrics_from_pairs(
    recommended: np.ndarray,
    hold_rows: np.ndarray,
    hold_items: np.ndarray,
    n_items: int,
    k: int,
) -> RankingMetrics:
    """Vectorised precision/recall/nDCG/MAP@k; users without holdout items are skipped."""
    if k <= 0 or n_items <= 0:
        raise ValueError("k and n_items must be positive")
    rec = np.asarray(recommended, dtype=np.int64)
    if rec.ndim != 2:
        raise ValueError("recommended must be 2-D (users x K)")
    n_users = rec.shape[0]
    if rec.shape[1] < k:
        rec = np.hstack([rec, np.full((n_users, k - rec.shape[1]), -1, dtype=np.int64)])
    rec = rec[:, :k]

    hold_key = np.unique(_pairs_key(hold_rows, hold_items, n_items))
    n_rel = np.bincount(hold_key // n_items, minlength=n_users)[:n_users]
    rec_key = np.where(rec >= 0, _pairs_key(np.arange(n_users)[:, None], rec, n_items), -1)
    hits = _member(hold_key, rec_key)

    active = n_rel > 0
    hits, n_rel, rec = hits[active], n_rel[active], rec[active]
    n_eval = int(active.sum())
    if n_eval == 0:
        return RankingMetrics(0.0, 0.0, 0.0, 0.0, 0.0, 0, k)

    hit_count = hits.sum(axis=1)
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    ideal_len = np.minimum(n_rel, k)
    dcg = hits @ discounts
    idcg = np.cumsum(discounts)[ideal_len - 1]
    precision_at_i = np.cumsum(hits, axis=1) / np.arange(1, k + 1)
    average_precision = (precision_at_i * hits).sum(axis=1) / ideal_len
    shown = rec[rec >= 0]
    return RankingMetrics(
        precision=float(np.mean(hit_count / k)),
        recall=float(np.mean(hit_count / n_rel)),
        ndcg=float(np.mean(dcg / idcg)),
        map=float(np.mean(average_precision)),
        coverage=float(np.unique(shown).size / n_items) if n_items else 0.0,
        n_users=n_eval,
        k=k,
    )


def evaluate_recommendations(
    recommended: np.ndarray,
    holdout_sets: Sequence[Iterable[int]],
    n_items: int,
    k: int,
) -> RankingMetrics:
    """Score a (users x K) matrix of item indices (-1 = empty slot) against per-user holdouts.

    Coverage = distinct recommended items / ``n_items`` (the catalogue size).
    """
    rec = np.asarray(recommended, dtype=np.int64)
    if rec.ndim != 2 or rec.shape[0] != len(holdout_sets):
        raise ValueError("recommended must be (len(holdout_sets) x K)")
    arrays = [np.fromiter(s, dtype=np.int64) for s in holdout_sets]
    lengths = np.array([a.size for a in arrays], dtype=np.int64)
    hold_items = np.concatenate(arrays) if arrays else np.empty(0, dtype=np.int64)
    hold_rows = np.repeat(np.arange(len(arrays), dtype=np.int64), lengths)
    return metrics_from_pairs(rec, hold_rows, hold_items, n_items, k)


def _holdout_index(data: InteractionData) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(matrix rows of holdout users, their local 0..n-1 index per pair, item columns)."""
    rows = data.user_index.get_indexer(data.holdout["user_id"])
    cols = data.item_index.get_indexer(data.holdout["item_id"])
    if (rows < 0).any() or (cols < 0).any():
        raise ValueError("holdout names users or items outside the data's index")
    eval_rows, local = np.unique(rows, return_inverse=True)
    return eval_rows.astype(np.int64), local.astype(np.int64), cols.astype(np.int64)


def evaluate_model(model: CpuAls, data: InteractionData, k: int) -> RankingMetrics:
    """Ranking metrics of the model for holdout users, with their train items filtered out."""
    eval_rows, local, cols = _holdout_index(data)
    recommended, _ = recommend_indices(model, data.train, eval_rows, k)
    return metrics_from_pairs(recommended, local, cols, data.n_items, k)


def evaluate_popularity(data: InteractionData, k: int) -> RankingMetrics:
    """Most-popular baseline on the same users and the same seen-item filtering as ALS."""
    eval_rows, local, cols = _holdout_index(data)
    recommended = popular_unseen(data.train, eval_rows, k)
    return metrics_from_pairs(recommended, local, cols, data.n_items, k)


def search_als(
    data: InteractionData,
    grid: Sequence[AlsParams],
    k: int,
    seed: int,
    num_threads: int = 0,
) -> tuple[AlsParams, pd.DataFrame]:
    """Train each grid point with the same seed; best = precision@k, then nDCG, then grid order.

    ``data`` should be the selection view: the slice it scores on is then used for choosing
    only, never for judging. The trials frame marks the winner in ``chosen``.
    """
    if not grid:
        raise ValueError("grid is empty")
    trials: list[dict[str, Any]] = []
    for trial, params in enumerate(grid):
        start = time.perf_counter()
        model = train_als(data, params, seed=seed, num_threads=num_threads)
        fit_seconds = time.perf_counter() - start
        metrics = evaluate_model(model, data, k)
        trials.append(
            {
                "trial": trial,
                **asdict(params),
                "precision": metrics.precision,
                "recall": metrics.recall,
                "ndcg": metrics.ndcg,
                "map": metrics.map,
                "coverage": metrics.coverage,
                "fit_seconds": fit_seconds,
            }
        )
    frame = pd.DataFrame(trials)
    best = int(
        frame.sort_values(
            ["precision", "ndcg", "trial"], ascending=[False, False, True], kind="mergesort"
        ).iloc[0]["trial"]
    )
    frame["chosen"] = frame["trial"] == best
    return grid[best], frame
