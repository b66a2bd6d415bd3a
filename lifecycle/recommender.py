"""The recommender's serving side: a fitted model packaged with its id maps, the items each
user already has, and a popularity fallback; saved without pickle and answered by user id.

Ids are the user's text throughout (see :mod:`lifecycle.rec_data`); models see dense indices
only (:mod:`lifecycle.als`). Persistence never uses pickle: the model goes through implicit's
own ``.npz`` format, the id maps (unicode arrays) and the seen-items matrix through
``np.savez`` (loaded with ``allow_pickle=False``), and the hyper-parameters through JSON.
This module also re-exports the pieces callers need, so one import serves them.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy loads OpenBLAS (see als)

import copy
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from lifecycle.als import (
    AlsParams,
    CpuAls,
    RankingMetrics,
    evaluate_model,
    evaluate_popularity,
    evaluate_recommendations,
    fold_in_top_k,
    item_user_counts,
    metrics_from_pairs,
    popularity_items,
    recommend_indices,
    search_als,
    train_als,
)
from lifecycle.rec_data import (
    IdLookup,
    InteractionData,
    InteractionSplits,
    Weighting,
    apply_weighting,
    as_ids,
    build_interaction_data,
)

__all__ = [
    "AlsParams",
    "CpuAls",
    "InteractionData",
    "InteractionSplits",
    "RankingMetrics",
    "RecommenderBundle",
    "Weighting",
    "apply_weighting",
    "as_ids",
    "build_bundle",
    "build_interaction_data",
    "evaluate_model",
    "evaluate_popularity",
    "evaluate_recommendations",
    "load_bundle",
    "metrics_from_pairs",
    "popularity_items",
    "recommend_from_history",
    "recommend_users",
    "save_bundle",
    "search_als",
    "train_als",
]

MODEL_FILE = "model.npz"
ARRAYS_FILE = "ids_and_items.npz"
PARAMS_FILE = "params.json"
# 1: integer ids (read back as their decimal text); 2: ids stored as unicode text.
BUNDLE_FORMAT_VERSION = 2
_READABLE_FORMATS = (1, 2)


@dataclass(frozen=True, eq=False)
class RecommenderBundle(IdLookup):
    """Everything serving needs: model, id maps, seen items to filter, cold-start fallback."""

    model: CpuAls
    user_ids: np.ndarray  # row index -> external user_id (object array of str)
    item_ids: np.ndarray  # col index -> external item_id (object array of str)
    user_items: sp.csr_matrix  # the fit's training matrix, used to filter already-seen items
    fallback_items: np.ndarray  # external item ids in popularity order (cold start)
    fallback_scores: np.ndarray  # popularity / max popularity, aligned with fallback_items
    params: AlsParams


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
    """Package a model with its view's id maps, training pairs (the seen filter) and a
    popularity fallback counted on the same pairs."""
    if fallback_size <= 0:
        raise ValueError("fallback_size must be positive")
    cpu_model = _as_cpu(model)
    if cpu_model.user_factors.shape[0] != data.n_users:
        raise ValueError("model users do not match data")
    if cpu_model.item_factors.shape[0] != data.n_items:
        raise ValueError("model items do not match data")
    counts = item_user_counts(data.train)
    top = popularity_items(data.train, min(fallback_size, data.n_items))
    peak = counts.max(initial=0)
    scores = counts[top] / peak if peak > 0 else np.zeros(top.size)
    return RecommenderBundle(
        model=cpu_model,
        user_ids=np.asarray(data.user_ids, dtype=object),
        item_ids=np.asarray(data.item_ids, dtype=object),
        user_items=data.train,
        fallback_items=np.asarray(data.item_ids, dtype=object)[top],
        fallback_scores=np.asarray(scores, dtype=np.float64),
        params=params,
    )


def _text_array(ids: np.ndarray, what: str) -> np.ndarray:
    """A unicode array (no pickle needed to read it back), verified to hold the ids exactly."""
    text = np.asarray(ids, dtype=str)
    if not np.array_equal(text.astype(object), np.asarray(ids, dtype=object)):
        # numpy's fixed-width strings drop trailing NUL characters.
        raise ValueError(f"{what}: an id ending in a NUL character cannot be stored")
    return text


def _ids_from(stored: np.ndarray, what: str) -> np.ndarray:
    if stored.dtype.kind == "U":
        return stored.astype(object)
    if stored.dtype.kind in "iu":  # format 1 stored integer ids: they are their decimal text
        return stored.astype(str).astype(object)
    raise ValueError(f"{what}: unexpected id array type {stored.dtype}")


def save_bundle(bundle: RecommenderBundle, directory: Path, prefix: str = "") -> list[Path]:
    """Write ``<prefix>model.npz`` (implicit's format), ``<prefix>ids_and_items.npz`` and
    ``<prefix>params.json``; no pickle. A prefix lets two fits share one version folder."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model = _as_cpu(bundle.model)
    if model.random_state is not None and not isinstance(model.random_state, int | np.integer):
        # A RandomState object would be stored as a pickled object array; drop it on a copy.
        model = copy.copy(model)
        model.random_state = None
    model_path = directory / f"{prefix}{MODEL_FILE}"
    model.save(str(model_path))

    arrays_path = directory / f"{prefix}{ARRAYS_FILE}"
    ui = bundle.user_items.tocsr()
    np.savez(
        arrays_path,
        user_ids=_text_array(bundle.user_ids, "user_ids"),
        item_ids=_text_array(bundle.item_ids, "item_ids"),
        fallback_items=_text_array(bundle.fallback_items, "fallback_items"),
        fallback_scores=np.asarray(bundle.fallback_scores, dtype=np.float64),
        ui_data=np.asarray(ui.data, dtype=np.float32),
        ui_indices=np.asarray(ui.indices, dtype=np.int64),
        ui_indptr=np.asarray(ui.indptr, dtype=np.int64),
        ui_shape=np.asarray(ui.shape, dtype=np.int64),
    )

    params_path = directory / f"{prefix}{PARAMS_FILE}"
    payload = {
        "format_version": BUNDLE_FORMAT_VERSION,
        "params": asdict(bundle.params),
        "n_users": len(bundle.user_ids),
        "n_items": len(bundle.item_ids),
    }
    params_path.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
    return [model_path, arrays_path, params_path]


def load_bundle(directory: Path, prefix: str = "") -> RecommenderBundle:
    """Inverse of :func:`save_bundle`, validating that the pieces belong together."""
    directory = Path(directory)
    payload = json.loads((directory / f"{prefix}{PARAMS_FILE}").read_text())
    if payload.get("format_version") not in _READABLE_FORMATS:
        raise ValueError(f"unsupported bundle format {payload.get('format_version')!r}")
    params = AlsParams(**payload["params"])
    model = CpuAls.load(str(directory / f"{prefix}{MODEL_FILE}"))
    if not isinstance(model, CpuAls):
        raise TypeError(f"{prefix}{MODEL_FILE} did not load as CPU ALS")
    with np.load(directory / f"{prefix}{ARRAYS_FILE}", allow_pickle=False) as arrays:
        shape = tuple(int(x) for x in arrays["ui_shape"])
        user_items = sp.csr_matrix(
            (arrays["ui_data"], arrays["ui_indices"], arrays["ui_indptr"]), shape=shape
        )
        bundle = RecommenderBundle(
            model=model,
            user_ids=_ids_from(arrays["user_ids"], "user_ids"),
            item_ids=_ids_from(arrays["item_ids"], "item_ids"),
            user_items=user_items,
            fallback_items=_ids_from(arrays["fallback_items"], "fallback_items"),
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
        raise ValueError(f"inconsistent recommender bundle {prefix!r} in {directory}")
    return bundle


def _empty_recommendations() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user_id": np.empty(0, dtype=object),
            "rank": np.empty(0, dtype=np.int32),
            "item_id": np.empty(0, dtype=object),
            "score": np.empty(0, dtype=np.float64),
            "is_fallback": np.empty(0, dtype=bool),
        }
    )


def recommend_from_history(
    bundle: RecommenderBundle, history: sp.csr_matrix, k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Top-k per row of ``history`` (users x the bundle's items, confidences as in training):
    (item indices, scores, is_fallback per row); unfillable slots are -1 / NaN.

    A row holding any catalogue item is folded in: its factor is solved from that history
    against the fit's item factors, so what a user did after the fit (or a user the fit never
    saw) counts without retraining, and everything in the row is filtered. An empty row (none
    of the user's items is in the catalogue, so nothing to filter) gets the popularity fallback.
    """
    if history.shape[1] != len(bundle.item_ids):
        raise ValueError(
            f"history has {history.shape[1]} item columns; the bundle has {len(bundle.item_ids)}"
        )
    history = sp.csr_matrix(history, dtype=np.float32)
    n = history.shape[0]
    ids = np.full((n, k), -1, dtype=np.int64)
    scores = np.full((n, k), np.nan, dtype=np.float64)
    fallback = np.diff(history.indptr) == 0
    rows = np.flatnonzero(~fallback)
    ids[rows], scores[rows] = fold_in_top_k(bundle.model, history[rows], k)
    take = min(k, len(bundle.fallback_items))
    ids[fallback, :take] = bundle.item_index.get_indexer(bundle.fallback_items[:take])
    scores[fallback, :take] = bundle.fallback_scores[:take]
    return ids, scores, fallback


def recommend_users(bundle: RecommenderBundle, user_ids: Any, k: int) -> pd.DataFrame:
    """Top-k per requested user: ALS for known users, popularity fallback for unknown ones.

    Ids are matched as text (integers as their decimal text). Duplicated request ids are
    answered once; rows come sorted by user id, then rank. Known users get one batched
    ``recommend`` call with their seen items filtered; a known user whose unseen catalogue is
    smaller than k gets fewer rows rather than repeats of items they already have.
    """
    if k <= 0:
        raise ValueError("k must be positive")
    if len(bundle.fallback_items) < k:
        raise ValueError(f"fallback has {len(bundle.fallback_items)} items, need >= k={k}")
    requested = np.sort(pd.unique(as_ids(user_ids, "requested user_id")))
    if requested.size == 0:
        return _empty_recommendations()

    pos = bundle.user_index.get_indexer(requested)
    known = pos >= 0
    order_of = np.arange(requested.size, dtype=np.int64)
    rec, scores = recommend_indices(bundle.model, bundle.user_items, pos[known], k)
    valid = (rec >= 0).ravel()
    ranks = np.arange(1, k + 1, dtype=np.int32)
    n_known, n_unknown = int(known.sum()), int((~known).sum())
    user_code = np.concatenate(
        [np.repeat(order_of[known], k)[valid], np.repeat(order_of[~known], k)]
    )
    rank = np.concatenate([np.tile(ranks, n_known)[valid], np.tile(ranks, n_unknown)])
    item_id = np.concatenate(
        [bundle.item_ids[rec.ravel()[valid]], np.tile(bundle.fallback_items[:k], n_unknown)]
    )
    score = np.concatenate([scores.ravel()[valid], np.tile(bundle.fallback_scores[:k], n_unknown)])
    is_fallback = np.concatenate(
        [np.zeros(int(valid.sum()), dtype=bool), np.ones(n_unknown * k, dtype=bool)]
    )
    order = np.lexsort((rank, user_code))
    return pd.DataFrame(
        {
            "user_id": requested[user_code[order]],
            "rank": rank[order].astype(np.int32),
            "item_id": item_id[order].astype(object),
            "score": score[order].astype(np.float64),
            "is_fallback": is_fallback[order],
        }
    )
