"""Exact top-k by dot product for many users at once, skipping each user's seen items.

Serving scores every user against the whole catalogue. The matrix product is the floor; what
made the naive kernel (and implicit's ``recommend``) slow is selecting k of n_items per row.
Here the items are cut into groups: the k best groups by their maximum score hold the k best
items (an item beating the k-th best group maximum lies in one of those groups), so a full-row
pass is one vectorised ``max`` and the exact selection runs on k groups only. Chunks of users
run on a small thread pool (numpy releases the GIL), so memory stays bounded by chunk size x
threads and both cores work on the product and the selection.

Ties are broken by the lower item index: scores and indices are packed into one int64 key, so
the answer does not depend on the partition algorithm.
"""

from __future__ import annotations

import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import scipy.sparse as sp

_LOW = np.int64(0xFFFFFFFF)


def _keys(scores: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Order-preserving int64 key: float32 score in the high half, a reversed index in the low
    half, so a larger key is a better score and, among equal scores, a lower index."""
    bits = np.ascontiguousarray(scores, dtype=np.float32).view(np.int32)
    ordered = np.where(bits < 0, bits ^ np.int32(0x7FFFFFFF), bits).astype(np.int64)
    return (ordered << np.int64(32)) | (_LOW - index.astype(np.int64))


def _best(keys: np.ndarray, take: int) -> np.ndarray:
    """Positions of the ``take`` largest keys per row, best first (keys are unique per row)."""
    width = keys.shape[1]
    part = np.argpartition(keys, width - take, axis=1)[:, width - take :]
    order = np.argsort(-np.take_along_axis(keys, part, axis=1), axis=1)
    return np.take_along_axis(part, order, axis=1)


def _select(
    block: np.ndarray, n_items: int, groups: int, take: int
) -> tuple[np.ndarray, np.ndarray]:
    """Top ``take`` (item indices, float32 scores) per row of ``block`` (rows x groups*members,
    seen and padding cells already -inf); group g holds items g, g + groups, g + 2*groups, ..."""
    rows = block.shape[0]
    members = block.shape[1] // groups
    group_max = block.reshape(rows, members, groups).max(axis=1)
    top_groups = np.argpartition(group_max, groups - take, axis=1)[:, groups - take :]
    threshold = np.take_along_axis(group_max, top_groups, axis=1).min(axis=1)
    # Exact unless another group ties the threshold (then an item outside could tie into the
    # top k with a lower index); rows with fewer than k finite groups hold all finite items.
    tied = (group_max >= threshold[:, None]).sum(axis=1) > take
    safe = ~tied | ~np.isfinite(threshold)
    ids = np.empty((rows, take), dtype=np.int64)
    scores = np.empty((rows, take), dtype=np.float32)
    fast = np.flatnonzero(safe)
    if fast.size:
        cand = (top_groups[fast][:, :, None] + groups * np.arange(members)).reshape(fast.size, -1)
        cand_scores = block[fast[:, None], cand]
        pick = _best(_keys(cand_scores, cand), take)
        ids[fast] = np.take_along_axis(cand, pick, axis=1)
        scores[fast] = np.take_along_axis(cand_scores, pick, axis=1)
    slow = np.flatnonzero(~safe)
    if slow.size:
        full = block[slow, :n_items]
        pick = _best(_keys(full, np.broadcast_to(np.arange(n_items), full.shape)), take)
        ids[slow] = pick
        scores[slow] = np.take_along_axis(full, pick, axis=1)
    return ids, scores


def top_k_unseen(
    factors: np.ndarray,
    item_factors: np.ndarray,
    seen: sp.csr_matrix,
    k: int,
    chunk_cells: int = 1 << 20,
    num_threads: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k items by dot product per row of ``factors``, skipping that row's entries of
    ``seen``; (rows x k) item indices / scores, unfillable slots -1 / NaN at the end.

    Score blocks of about ``chunk_cells`` (users x items; 4 MiB by default, so a block stays
    in cache between the product and the selection) each, ``num_threads`` of them at once
    (0: one per CPU). Ties go to the lower item index, so the order is reproducible.
    """
    seen = sp.csr_matrix(seen)
    n_rows, n_items = seen.shape
    ids = np.full((n_rows, k), -1, dtype=np.int64)
    scores = np.full((n_rows, k), np.nan, dtype=np.float64)
    take = min(k, n_items)
    if n_rows == 0 or take == 0:
        return ids, scores
    members = max(1, math.isqrt(n_items // take))
    groups = -(-n_items // members)
    if groups <= take:  # tiny catalogue: one group per item
        members, groups = 1, n_items
    width = members * groups
    items = np.zeros((width, np.shape(item_factors)[1]), dtype=np.float32)
    items[:n_items] = item_factors
    items_t = np.ascontiguousarray(items.T)
    step = max(1, min(chunk_cells // width, n_rows))
    local = threading.local()

    def run(lo: int) -> None:
        hi = min(lo + step, n_rows)
        # One cache-sized buffer per thread: fresh large arrays cost a page fault per 4 KiB.
        if not hasattr(local, "buffer"):
            local.buffer = np.empty((step, width), dtype=np.float32)
        block = local.buffer[: hi - lo]
        np.matmul(np.asarray(factors[lo:hi], dtype=np.float32), items_t, out=block)
        block[:, n_items:] = -np.inf
        part = seen[lo:hi]
        block[np.repeat(np.arange(hi - lo), np.diff(part.indptr)), part.indices] = -np.inf
        top, top_scores = _select(block, n_items, groups, take)
        valid = np.isfinite(top_scores)
        ids[lo:hi, :take] = np.where(valid, top, -1)
        scores[lo:hi, :take] = np.where(valid, top_scores, np.nan)

    threads = num_threads or os.cpu_count() or 1
    starts = range(0, n_rows, step)
    if threads == 1 or len(starts) == 1:
        for lo in starts:
            run(lo)
    else:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            list(pool.map(run, starts))
    return ids, scores
