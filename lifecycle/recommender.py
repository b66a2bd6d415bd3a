"""Implicit-feedback recommender: data prep, ALS training, ranking evaluation, serving bundle.

Pure library code (no Dagster) so assets, the CLI and tests share one implementation.
Persistence never uses pickle: the model goes through implicit's own ``.npz`` format, the
id maps and the seen-items matrix through ``np.savez`` (loaded with ``allow_pickle=False``),
and the hyper-parameters through JSON.
"""

from __future__ import annotations

import os

# Must happen before numpy loads OpenBLAS: implicit runs its own thread pool and a threaded
# BLAS underneath it oversubscribes the CPU (implicit warns about exactly this).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import copy
import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import implicit.als
import numpy as np
import pandas as pd
import scipy.sparse as sp
from implicit.cpu.als import AlternatingLeastSquares as CpuAls
from implicit.nearest_neighbours import bm25_weight, tfidf_weight

__all__ = [
    "AlsParams",
    "CpuAls",
    "InteractionData",
    "RankingMetrics",
    "RecommenderBundle",
    "Weighting",
    "apply_weighting",
    "build_bundle",
    "build_interaction_data",
    "evaluate_model",
    "evaluate_popularity",
    "evaluate_recommendations",
    "load_bundle",
    "popularity_items",
    "recommend_users",
    "save_bundle",
    "search_als",
    "train_als",
]

MODEL_FILE = "model.npz"
ARRAYS_FILE = "ids_and_items.npz"
PARAMS_FILE = "params.json"
BUNDLE_FORMAT_VERSION = 1

# implicit's top-k marks slots it could not fill (already-liked items when fewer than N
# candidates remain) with -FLT_MAX instead of dropping them; anything this low is invalid.
_INVALID_SCORE = float(np.finfo(np.float32).min) / 2.0
_INTERACTION_COLUMNS = ("user_id", "item_id", "timestamp", "weight")


# --------------------------------------------------------------------------------------
# Value types
# --------------------------------------------------------------------------------------


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


@dataclass(frozen=True, eq=False)
class InteractionData:
    """Train confidences plus the temporal holdout used to score models on unseen items."""

    train: sp.csr_matrix  # users x items confidence matrix (float32), after weighting
    user_ids: np.ndarray  # row index -> external user_id (int64), sorted
    item_ids: np.ndarray  # col index -> external item_id (int64), sorted
    holdout: pd.DataFrame  # user_id, item_id: each eligible user's last k distinct items

    @property
    def n_users(self) -> int:
        return int(self.train.shape[0])

    @property
    def n_items(self) -> int:
        return int(self.train.shape[1])


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


@dataclass(frozen=True, eq=False)
class RecommenderBundle:
    """Everything serving needs: model, id maps, seen items to filter, cold-start fallback."""

    model: CpuAls
    user_ids: np.ndarray  # row index -> external user_id (int64), sorted
    item_ids: np.ndarray  # col index -> external item_id (int64), sorted
    user_items: sp.csr_matrix  # train matrix, used to filter already-seen items
    fallback_items: np.ndarray  # external item ids in popularity order (cold start)
    fallback_scores: np.ndarray  # popularity / max popularity, aligned with fallback_items
    params: AlsParams


# --------------------------------------------------------------------------------------
# Data preparation
# --------------------------------------------------------------------------------------


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


def build_interaction_data(
    interactions: pd.DataFrame,
    holdout_k: int,
    min_user_interactions: int,
    weighting: Weighting,
) -> InteractionData:
    """Aggregate events per (user, item), split off a per-user temporal holdout, weight the rest.

    The holdout is each eligible user's ``holdout_k`` most recently touched distinct items
    (recency = the latest timestamp of that item for the user; ties broken by the larger
    item_id so the split is deterministic). A user is eligible with at least
    ``max(min_user_interactions, holdout_k + 1)`` distinct items, so every user keeps at
    least one train item and stays a row of the matrix. Holdout pairs are removed from train,
    so evaluation measures prediction of genuinely unseen items.
    """
    missing = [c for c in _INTERACTION_COLUMNS if c not in interactions.columns]
    if missing:
        raise ValueError(f"interactions missing columns: {missing}")
    if interactions.empty:
        raise ValueError("interactions is empty")
    if holdout_k < 0:
        raise ValueError("holdout_k must be >= 0")

    frame = pd.DataFrame(
        {
            "user_id": interactions["user_id"].to_numpy(dtype=np.int64),
            "item_id": interactions["item_id"].to_numpy(dtype=np.int64),
            "timestamp": interactions["timestamp"].to_numpy(),
            "weight": interactions["weight"].to_numpy(dtype=np.float64),
        }
    )
    agg = frame.groupby(["user_id", "item_id"], sort=True, as_index=False).agg(
        weight=("weight", "sum"), last_ts=("timestamp", "max")
    )
    user_ids = np.unique(agg["user_id"].to_numpy(dtype=np.int64))
    item_ids = np.unique(agg["item_id"].to_numpy(dtype=np.int64))

    # Most recent first within each user; cumcount gives the 0-based recency rank.
    agg = agg.sort_values(
        ["user_id", "last_ts", "item_id"], ascending=[True, False, False], kind="mergesort"
    ).reset_index(drop=True)
    recency = agg.groupby("user_id", sort=False).cumcount().to_numpy()
    n_distinct = agg.groupby("user_id", sort=False)["item_id"].transform("size").to_numpy()
    eligible = n_distinct >= max(min_user_interactions, holdout_k + 1)
    is_holdout = eligible & (recency < holdout_k)

    holdout = (
        agg.loc[is_holdout, ["user_id", "item_id"]]
        .sort_values(["user_id", "item_id"], kind="mergesort")
        .reset_index(drop=True)
        .astype({"user_id": np.int64, "item_id": np.int64})
    )
    train_pairs = agg.loc[~is_holdout]
    rows = np.searchsorted(user_ids, train_pairs["user_id"].to_numpy(dtype=np.int64))
    cols = np.searchsorted(item_ids, train_pairs["item_id"].to_numpy(dtype=np.int64))
    raw = sp.csr_matrix(
        (train_pairs["weight"].to_numpy(dtype=np.float64), (rows, cols)),
        shape=(len(user_ids), len(item_ids)),
    )
    return InteractionData(
        train=apply_weighting(raw, weighting),
        user_ids=user_ids,
        item_ids=item_ids,
        holdout=holdout,
    )


# --------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------


def _item_user_counts(train: sp.csr_matrix) -> np.ndarray:
    """Number of users with a stored entry per item (pairs are unique, so entries = users)."""
    return np.bincount(train.indices, minlength=train.shape[1]).astype(np.int64)


def popularity_items(train: sp.csr_matrix, n: int) -> np.ndarray:
    """Item column indices by number of users (desc), ties by index: the baseline and fallback."""
    counts = _item_user_counts(train)
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


def _recommend_indices(
    model: CpuAls, user_items: sp.csr_matrix, rows: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """One batched ``model.recommend``; returns (len(rows) x k) item indices / scores.

    Unfillable slots are -1 / NaN and pushed to the end of the row. implicit pads rows whose
    unseen catalogue is smaller than N with already-seen items scored -FLT_MAX (and asks for
    N <= n_items), so both the score and an explicit seen-pair check guard the output.
    """
    n_rows, n_items = len(rows), user_items.shape[1]
    out_ids = np.full((n_rows, k), -1, dtype=np.int64)
    out_scores = np.full((n_rows, k), np.nan, dtype=np.float64)
    n = min(k, n_items)
    if n_rows == 0 or n == 0:
        return out_ids, out_scores
    selected = user_items[rows]
    if not selected.has_sorted_indices:
        selected.sort_indices()  # makes the seen keys below sorted (row-major)
    ids, scores = model.recommend(rows, selected, N=n, filter_already_liked_items=True)
    ids = np.asarray(ids, dtype=np.int64).reshape(n_rows, n)
    scores = np.asarray(scores, dtype=np.float64).reshape(n_rows, n)

    seen_rows = np.repeat(np.arange(n_rows, dtype=np.int64), np.diff(selected.indptr))
    seen_key = _pairs_key(seen_rows, selected.indices, n_items)
    rec_key = _pairs_key(np.arange(n_rows)[:, None], ids, n_items)
    valid = (scores > _INVALID_SCORE) & (ids >= 0) & (ids < n_items)
    valid &= ~_member(seen_key, rec_key)

    order = np.argsort(~valid, axis=1, kind="stable")
    ids = np.take_along_axis(ids, order, axis=1)
    scores = np.take_along_axis(scores, order, axis=1)
    valid = np.take_along_axis(valid, order, axis=1)
    out_ids[:, :n] = np.where(valid, ids, -1)
    out_scores[:, :n] = np.where(valid, scores, np.nan)
    return out_ids, out_scores


def _popular_unseen(train: sp.csr_matrix, rows: np.ndarray, k: int) -> np.ndarray:
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


def _metrics_from_pairs(
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
    return _metrics_from_pairs(rec, hold_rows, hold_items, n_items, k)


def _holdout_index(data: InteractionData) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(matrix rows of holdout users, their local 0..n-1 index per pair, item columns)."""
    users = data.holdout["user_id"].to_numpy(dtype=np.int64)
    items = data.holdout["item_id"].to_numpy(dtype=np.int64)
    rows = np.searchsorted(data.user_ids, users)
    cols = np.searchsorted(data.item_ids, items)
    eval_rows, local = np.unique(rows, return_inverse=True)
    return eval_rows.astype(np.int64), local.astype(np.int64), cols.astype(np.int64)


def evaluate_model(model: CpuAls, data: InteractionData, k: int) -> RankingMetrics:
    """Ranking metrics of the model for holdout users, with their train items filtered out."""
    eval_rows, local, cols = _holdout_index(data)
    recommended, _ = _recommend_indices(model, data.train, eval_rows, k)
    return _metrics_from_pairs(recommended, local, cols, data.n_items, k)


def evaluate_popularity(data: InteractionData, k: int) -> RankingMetrics:
    """Most-popular baseline on the same users and the same seen-item filtering as ALS."""
    eval_rows, local, cols = _holdout_index(data)
    recommended = _popular_unseen(data.train, eval_rows, k)
    return _metrics_from_pairs(recommended, local, cols, data.n_items, k)


def search_als(
    data: InteractionData,
    grid: Sequence[AlsParams],
    k: int,
    seed: int,
    num_threads: int = 0,
) -> tuple[AlsParams, pd.DataFrame]:
    """Train each grid point with the same seed; best = precision@k, then nDCG, then grid order."""
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
    best = frame.sort_values(
        ["precision", "ndcg", "trial"], ascending=[False, False, True], kind="mergesort"
    ).iloc[0]
    return grid[int(best["trial"])], frame


# --------------------------------------------------------------------------------------
# Serving bundle
# --------------------------------------------------------------------------------------


def _as_cpu(model: Any) -> CpuAls:
    """GPU models cannot be saved/served on CPU hosts; implicit converts them with to_cpu()."""
    if isinstance(model, CpuAls):
        return model
    if hasattr(model, "to_cpu"):
        converted = model.to_cpu()
        if isinstance(converted, CpuAls):
            return converted
    raise TypeError(f"unsupported model type {type(model)!r}; expected implicit ALS")


def build_bundle(
    model: Any, data: InteractionData, params: AlsParams, fallback_size: int
) -> RecommenderBundle:
    """Package a trained model with its id maps, seen items and a popularity fallback."""
    if fallback_size <= 0:
        raise ValueError("fallback_size must be positive")
    cpu_model = _as_cpu(model)
    if cpu_model.user_factors.shape[0] != data.n_users:
        raise ValueError("model users do not match data")
    if cpu_model.item_factors.shape[0] != data.n_items:
        raise ValueError("model items do not match data")
    counts = _item_user_counts(data.train)
    top = popularity_items(data.train, min(fallback_size, data.n_items))
    peak = counts.max(initial=0)
    scores = counts[top] / peak if peak > 0 else np.zeros(top.size)
    return RecommenderBundle(
        model=cpu_model,
        user_ids=np.asarray(data.user_ids, dtype=np.int64),
        item_ids=np.asarray(data.item_ids, dtype=np.int64),
        user_items=data.train,
        fallback_items=np.asarray(data.item_ids[top], dtype=np.int64),
        fallback_scores=np.asarray(scores, dtype=np.float64),
        params=params,
    )


def save_bundle(bundle: RecommenderBundle, directory: Path) -> list[Path]:
    """Write model.npz (implicit's format), ids_and_items.npz and params.json; no pickle."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model = _as_cpu(bundle.model)
    if model.random_state is not None and not isinstance(model.random_state, int | np.integer):
        # A RandomState object would be stored as a pickled object array; drop it on a copy.
        model = copy.copy(model)
        model.random_state = None
    model_path = directory / MODEL_FILE
    model.save(str(model_path))

    arrays_path = directory / ARRAYS_FILE
    ui = bundle.user_items.tocsr()
    np.savez(
        arrays_path,
        user_ids=np.asarray(bundle.user_ids, dtype=np.int64),
        item_ids=np.asarray(bundle.item_ids, dtype=np.int64),
        fallback_items=np.asarray(bundle.fallback_items, dtype=np.int64),
        fallback_scores=np.asarray(bundle.fallback_scores, dtype=np.float64),
        ui_data=np.asarray(ui.data, dtype=np.float32),
        ui_indices=np.asarray(ui.indices, dtype=np.int64),
        ui_indptr=np.asarray(ui.indptr, dtype=np.int64),
        ui_shape=np.asarray(ui.shape, dtype=np.int64),
    )

    params_path = directory / PARAMS_FILE
    payload = {
        "format_version": BUNDLE_FORMAT_VERSION,
        "params": asdict(bundle.params),
        "n_users": len(bundle.user_ids),
        "n_items": len(bundle.item_ids),
    }
    params_path.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
    return [model_path, arrays_path, params_path]


def load_bundle(directory: Path) -> RecommenderBundle:
    """Inverse of :func:`save_bundle`, validating that the pieces belong together."""
    directory = Path(directory)
    payload = json.loads((directory / PARAMS_FILE).read_text())
    if payload.get("format_version") != BUNDLE_FORMAT_VERSION:
        raise ValueError(f"unsupported bundle format {payload.get('format_version')!r}")
    params = AlsParams(**payload["params"])
    model = CpuAls.load(str(directory / MODEL_FILE))
    if not isinstance(model, CpuAls):
        raise TypeError("model.npz did not load as CPU ALS")
    with np.load(directory / ARRAYS_FILE, allow_pickle=False) as arrays:
        shape = tuple(int(x) for x in arrays["ui_shape"])
        user_items = sp.csr_matrix(
            (arrays["ui_data"], arrays["ui_indices"], arrays["ui_indptr"]), shape=shape
        )
        bundle = RecommenderBundle(
            model=model,
            user_ids=arrays["user_ids"].astype(np.int64),
            item_ids=arrays["item_ids"].astype(np.int64),
            user_items=user_items,
            fallback_items=arrays["fallback_items"].astype(np.int64),
            fallback_scores=arrays["fallback_scores"].astype(np.float64),
            params=params,
        )
    n_users, n_items = len(bundle.user_ids), len(bundle.item_ids)
    if (
        shape != (n_users, n_items)
        or model.user_factors.shape[0] != n_users
        or model.item_factors.shape[0] != n_items
        or len(bundle.fallback_items) != len(bundle.fallback_scores)
    ):
        raise ValueError(f"inconsistent recommender bundle in {directory}")
    return bundle


def _empty_recommendations() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user_id": np.empty(0, dtype=np.int64),
            "rank": np.empty(0, dtype=np.int32),
            "item_id": np.empty(0, dtype=np.int64),
            "score": np.empty(0, dtype=np.float64),
            "is_fallback": np.empty(0, dtype=bool),
        }
    )


def recommend_users(bundle: RecommenderBundle, user_ids: np.ndarray, k: int) -> pd.DataFrame:
    """Top-k per requested user: ALS for known users, popularity fallback for unknown ones.

    Duplicated request ids are answered once. Known users get one batched ``recommend`` call
    with their train items filtered; a known user whose unseen catalogue is smaller than k gets
    fewer rows rather than repeats of items they already have.
    """
    if k <= 0:
        raise ValueError("k must be positive")
    if len(bundle.fallback_items) < k:
        raise ValueError(f"fallback has {len(bundle.fallback_items)} items, need >= k={k}")
    requested = np.unique(np.asarray(user_ids, dtype=np.int64))
    if requested.size == 0:
        return _empty_recommendations()

    pos = np.searchsorted(bundle.user_ids, requested)
    known = np.zeros(requested.size, dtype=bool)
    in_range = pos < len(bundle.user_ids)
    known[in_range] = bundle.user_ids[pos[in_range]] == requested[in_range]
    known_users, rows = requested[known], pos[known].astype(np.int64)
    unknown_users = requested[~known]

    rec, scores = _recommend_indices(bundle.model, bundle.user_items, rows, k)
    valid = (rec >= 0).ravel()
    ranks = np.arange(1, k + 1, dtype=np.int32)
    known_part = {
        "user_id": np.repeat(known_users, k)[valid],
        "rank": np.tile(ranks, len(known_users))[valid],
        "item_id": bundle.item_ids[rec.ravel()[valid]],
        "score": scores.ravel()[valid],
    }
    n_unknown = len(unknown_users)
    unknown_part = {
        "user_id": np.repeat(unknown_users, k),
        "rank": np.tile(ranks, n_unknown),
        "item_id": np.tile(bundle.fallback_items[:k], n_unknown),
        "score": np.tile(bundle.fallback_scores[:k], n_unknown),
    }
    columns = {name: np.concatenate([known_part[name], unknown_part[name]]) for name in known_part}
    is_fallback = np.concatenate(
        [np.zeros(int(valid.sum()), dtype=bool), np.ones(n_unknown * k, dtype=bool)]
    )
    order = np.lexsort((columns["rank"], columns["user_id"]))
    return pd.DataFrame(
        {
            "user_id": columns["user_id"][order].astype(np.int64),
            "rank": columns["rank"][order].astype(np.int32),
            "item_id": columns["item_id"][order].astype(np.int64),
            "score": columns["score"][order].astype(np.float64),
            "is_fallback": is_fallback[order],
        }
    )
