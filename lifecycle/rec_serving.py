"""The daily top-K table: every user with any interaction on or before day D, each answered
from their whole history up to D.

The champion was fitted weeks before D (monthly training, mid-month promotion), so serving from
its stored user factors would ignore what users did since, answer users who arrived since with
popularity, and show them items they already have. Instead each user's history up to D is
folded in (their factor solved against the fit's item factors) and filtered out; only a user
none of whose items the fit knows gets the popularity fallback.

A user's list changes only on days they act, so it is computed for the first day of the range
and again on each later day with an event of theirs; the table repeats the latest list.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from lifecycle.interactions import RECOMMENDATION_COLUMNS
from lifecycle.rec_data import Weighting, apply_weighting, as_ids
from lifecycle.recommender import RecommenderBundle, recommend_from_history

EVENT_COLUMNS = ("user_id", "item_id", "event_date", "weight")
_DAY_NS = 86_400 * 10**9


def _empty_table() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "as_of_date": pd.Series(dtype="datetime64[ns]"),
            "user_id": pd.Series(dtype=object),
            "rank": pd.Series(dtype="int64"),
            "item_id": pd.Series(dtype=object),
            "score": pd.Series(dtype="float64"),
            "model_version": pd.Series(dtype=object),
            "is_fallback": pd.Series(dtype=bool),
        }
    ).loc[:, list(RECOMMENDATION_COLUMNS)]


def _history(
    codes: np.ndarray,
    cols: np.ndarray,
    weight: np.ndarray,
    day: np.ndarray,
    chosen: np.ndarray,
    upto: int,
    shape: tuple[int, int],
    weighting: Weighting,
) -> sp.csr_matrix:
    """Confidences of the ``chosen`` users' catalogue pairs dated on or before ``upto``,
    weights summed per pair as in training; one row per chosen user, in order."""
    if weighting.scheme == "alpha":  # element-wise: the chosen rows alone give the same values
        member = np.zeros(shape[0], dtype=bool)
        member[chosen] = True
        take = member[codes] & (day <= upto)
        rows = np.searchsorted(chosen, codes[take])
        raw = sp.csr_matrix((weight[take], (rows, cols[take])), shape=(len(chosen), shape[1]))
        return apply_weighting(raw, weighting)
    # bm25 / tf-idf weigh by statistics of everyone's history up to the day.
    take = day <= upto
    raw = sp.csr_matrix((weight[take], (codes[take], cols[take])), shape=shape)
    return apply_weighting(raw, weighting)[chosen]


def daily_recommendations(
    events: pd.DataFrame,
    days: pd.DatetimeIndex,
    bundle: RecommenderBundle,
    k: int,
    weighting: Weighting,
    model_version: str,
    active_days: int | None = None,
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Top-k for each day of ``days`` (consecutive) and each user with an event on or before
    it (only those active in the last ``active_days`` days when set; the rest are counted).

    ``events`` holds ``user_id, item_id, event_date, weight`` for all history up to the last
    day (later rows are ignored). Returns the table, sorted by day, user, rank, and counts for
    metadata (``*_last_day`` counts are of the range's last day).
    """
    missing = [c for c in EVENT_COLUMNS if c not in events.columns]
    if missing:
        raise ValueError(f"interaction history is missing column(s) {missing}")
    if k <= 0:
        raise ValueError("k must be positive")
    days = pd.DatetimeIndex(days)
    if len(days) == 0 or (np.diff(days.asi8) != _DAY_NS).any():
        raise ValueError("days must be one or more consecutive days")
    n_days = len(days)
    offset = (pd.to_datetime(events["event_date"]) - days[0]).dt.days.to_numpy(dtype=np.int64)
    keep = offset < n_days
    day = offset[keep]
    codes, users = pd.factorize(
        as_ids(events["user_id"].to_numpy()[keep], "interactions.user_id"), sort=True
    )
    users = np.asarray(users, dtype=object)
    cols = bundle.item_index.get_indexer(
        as_ids(events["item_id"].to_numpy()[keep], "interactions.item_id")
    )
    weight = events["weight"].to_numpy(dtype=np.float64)[keep]
    stats = {
        "known_users_last_day": len(users),
        "events_outside_catalogue": int((cols < 0).sum()),
    }
    if len(users) == 0:
        return _empty_table(), stats | {"users_last_day": 0, "lists_computed": 0}

    # A list per (user, day the user's history last changed); days before the range count as
    # its first day.
    point = np.unique(codes.astype(np.int64) * n_days + np.maximum(day, 0))
    point_user, point_day = np.divmod(point, n_days)
    ids = np.full((len(point), k), -1, dtype=np.int64)
    scores = np.full((len(point), k), np.nan)
    fallback = np.zeros(len(point), dtype=bool)
    known = cols >= 0
    shape = (len(users), len(bundle.item_ids))
    for upto in np.unique(point_day):
        at = np.flatnonzero(point_day == upto)
        history = _history(
            codes[known],
            cols[known],
            weight[known],
            day[known],
            point_user[at],
            upto,
            shape,
            weighting,
        )
        ids[at], scores[at], fallback[at] = recommend_from_history(bundle, history, k)

    # Every (user, day) from the user's first day on, answered by their latest list.
    first = point_day[np.searchsorted(point_user, np.arange(len(users)))]
    span = n_days - first
    q_user = np.repeat(np.arange(len(users), dtype=np.int64), span)
    q_day = np.repeat(first, span) + np.arange(span.sum()) - np.repeat(np.cumsum(span) - span, span)
    left_out = np.zeros(0, dtype=np.int64)
    if active_days is not None:
        base = int(day.min())
        width = n_days - base
        acted = np.unique(codes.astype(np.int64) * width + (day - base))
        query = q_user * width + (q_day - base)
        last = acted[np.searchsorted(acted, query, side="right") - 1] - q_user * width + base
        active = q_day - last < active_days
        left_out = q_day[~active]
        q_user, q_day = q_user[active], q_day[active]
    order = np.lexsort((q_user, q_day))
    q_user, q_day = q_user[order], q_day[order]
    pos = np.searchsorted(point, q_user * n_days + q_day, side="right") - 1

    slot = ids[pos].ravel()
    valid = slot >= 0
    table = pd.DataFrame(
        {
            "as_of_date": np.repeat(days.to_numpy()[q_day], k)[valid],
            "user_id": np.repeat(users[q_user], k)[valid],
            "rank": np.tile(np.arange(1, k + 1, dtype=np.int64), len(pos))[valid],
            "item_id": np.asarray(bundle.item_ids, dtype=object)[slot[valid]],
            "score": scores[pos].ravel()[valid],
            "model_version": model_version,
            "is_fallback": np.repeat(fallback[pos], k)[valid],
        }
    ).loc[:, list(RECOMMENDATION_COLUMNS)]

    last_day = q_day == n_days - 1
    served = q_user[last_day]
    fitted = bundle.user_index.get_indexer(users[served]) >= 0
    on_fallback = fallback[pos[last_day]]
    stats |= {
        "users_last_day": int(last_day.sum()),
        "users_known_to_fit_last_day": int((fitted & ~on_fallback).sum()),
        "users_folded_in_last_day": int((~fitted & ~on_fallback).sum()),
        "users_fallback_last_day": int(on_fallback.sum()),
        "users_left_out_last_day": int((left_out == n_days - 1).sum()),
        "user_days_left_out": len(left_out),
        "lists_computed": len(point),
    }
    return table, stats
