"""The 15th-of-month out-of-time gate: both models judged on what happened after training.

The challenger of month M (trained on M-01 from data before M) and the champion are scored on
days M-01 … M-14, which neither saw: a paired comparison on the same customers or users with a
bootstrap CI of the difference, so two weeks of data do not promote on noise. ``observed`` is
the point estimate of new - old, ``threshold`` the bound the deciding CI end is held to.

No outcome data means nothing recorded in the window at all (no unit, purchase, spend or
interaction): a real population idle for two weeks does not happen, unloaded days do, so that
fails with "ingest those days". A churn window where *everyone* purchased has one outcome
class: AUC is undefined, the data is there and nothing points at the challenger, so it passes
saying "cannot judge"; blocking would refuse a model for the wrong reason.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from lifecycle.gates import CheckOutcome
from lifecycle.metrics import DiffInterval, paired_bootstrap_auc_diff, roc_auc
from lifecycle.numbers import sig, signed
from lifecycle.rec_data import as_ids

NAME = "out_of_time"
# Upper bound on the (resamples x units) index block held in memory by the bootstrap.
_BOOT_BLOCK_CELLS = 2_000_000


@dataclass(frozen=True)
class Window:
    """Days after training, both ends inclusive."""

    first_day: pd.Timestamp
    last_day: pd.Timestamp
    days: int

    @property
    def label(self) -> str:
        return f"days {self.first_day:%Y-%m-%d}…{self.last_day:%Y-%m-%d}"


def window_after(month: pd.Timestamp, days: int) -> Window:
    """M-01 … M-01 + days - 1; any day of the month names the month (the 15th may pass itself)."""
    if days < 1:
        raise ValueError(f"days must be >= 1, got {days}")
    first = pd.Timestamp(month).normalize().replace(day=1)
    return Window(first, first + pd.Timedelta(days=days - 1), days)


def as_of(window: Window) -> pd.Timestamp:
    """The last day both models could have seen: scores and lists are taken as of it."""
    return window.first_day - pd.Timedelta(days=1)


def paired_mean_diff_ci(
    a: np.ndarray, b: np.ndarray, n_boot: int, alpha: float = 0.05, seed: int = 0
) -> DiffInterval:
    """Percentile bootstrap of mean(a - b), units resampled jointly so shared noise cancels."""
    a_f, b_f = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if n_boot < 1 or not 0.0 < alpha < 1.0:
        raise ValueError(f"need n_boot >= 1 and alpha in (0, 1), got {n_boot} and {alpha}")
    if a_f.ndim != 1 or a_f.shape != b_f.shape or a_f.size == 0:
        raise ValueError(f"a and b must be 1-D, non-empty, one length: {a_f.shape}, {b_f.shape}")
    if not (np.isfinite(a_f).all() and np.isfinite(b_f).all()):
        raise ValueError("a and b must be finite")
    diff = a_f - b_f
    n = diff.size
    rng = np.random.default_rng(seed)
    block = max(1, min(n_boot, _BOOT_BLOCK_CELLS // n))
    means = np.empty(n_boot)
    for lo in range(0, n_boot, block):
        hi = min(lo + block, n_boot)
        means[lo:hi] = diff[rng.integers(0, n, size=(hi - lo, n))].mean(axis=1)
    lower, upper = np.quantile(means, [alpha / 2.0, 1.0 - alpha / 2.0])
    return DiffInterval(float(diff.mean()), float(lower), float(upper), n_boot, float(alpha))


def _window_extra(window: Window, units: int) -> dict[str, float | int | str]:
    first, last = f"{window.first_day:%Y-%m-%d}", f"{window.last_day:%Y-%m-%d}"
    return {"first_day": first, "last_day": last, "days": window.days, "units": units}


def _no_outcomes(window: Window, units: int, threshold: float, why: str) -> CheckOutcome:
    detail = f"no outcomes in {window.label} ({why}): ingest those days before promoting"
    return CheckOutcome(NAME, False, float("nan"), threshold, detail, _window_extra(window, units))


def _bound(value: float) -> str:
    return f"{sig(value):g}".replace("-", "−")


@dataclass(frozen=True)
class _Family:
    metric: str  # as the detail names it
    key: str  # extra keys: {key}_challenger, {key}_champion
    units: str
    upper_decides: bool  # an error (lower is better): the CI upper end meets the bound


def _compared(
    window: Window,
    family: _Family,
    new: float,
    old: float | None,
    interval: DiffInterval | None,
    threshold: float,
    units: int,
) -> CheckOutcome:
    """One outcome, same shape for every family: the estimate, its CI, the bound it meets."""
    extra = _window_extra(window, units) | {f"{family.key}_challenger": new}
    on = f"on {units:,} {family.units}"
    if old is None or interval is None:
        detail = f"{window.label}: {family.metric} {new:.4f}, no champion to compare {on}"
        return CheckOutcome(NAME, True, float("nan"), threshold, detail, extra)
    if family.upper_decides:
        passed = interval.upper <= threshold
        relation = "≤" if passed else ">"
    else:
        passed = interval.lower >= threshold
        relation = "≥" if passed else "<"
    detail = (
        f"{window.label}: {family.metric} {new:.4f} vs champion {old:.4f} "
        f"(diff {signed(interval.estimate)}, {1 - interval.alpha:.0%} CI "
        f"[{signed(interval.lower)}, {signed(interval.upper)}] {relation} {_bound(threshold)}) "
        f"{on}"
    )
    extra |= {
        f"{family.key}_champion": old,
        "ci_lower": interval.lower,
        "ci_upper": interval.upper,
        "n_boot": interval.n_boot,
    }
    return CheckOutcome(NAME, bool(passed), interval.estimate, threshold, detail, extra)


def churn_early_outcome(
    population_ids: np.ndarray, purchases_in_window: pd.DataFrame
) -> np.ndarray:
    """1 where a customer scored as of ``as_of(window)`` made no purchase in the window (any row
    of ``purchases_in_window`` with their ``customer_id``), else 0; in ``population_ids`` order.
    Ids compare as text, so 42 and "42" are one customer."""
    population = as_ids(population_ids, "population customer_id")
    bought = as_ids(purchases_in_window["customer_id"], "purchases customer_id")
    return (~pd.Index(population).isin(bought)).astype(np.int64)


def spend_in_window(
    population_ids: np.ndarray, activity_in_window: pd.DataFrame, amount_column: str = "spend"
) -> np.ndarray:
    """Spend per customer of the population over the window's rows (0 without any)."""
    population = pd.Index(as_ids(population_ids, "population customer_id"))
    ids = as_ids(activity_in_window["customer_id"], "activity customer_id")
    amount = activity_in_window[amount_column].to_numpy(dtype=np.float64)
    at = population.get_indexer(ids)
    mine = at >= 0
    return np.bincount(at[mine], weights=amount[mine], minlength=len(population))


def churn_out_of_time(
    y: np.ndarray,
    new_scores: np.ndarray,
    old_scores: np.ndarray | None,
    window: Window,
    tolerance: float,
    n_boot: int,
    seed: int = 0,
) -> CheckOutcome:
    """AUC of each model on the early outcome; passes when the CI lower end of AUC(new) -
    AUC(old) is at least -tolerance."""
    y_arr = np.asarray(y)
    units = int(y_arr.size)
    if units == 0:
        return _no_outcomes(window, 0, -tolerance, "no customers scored")
    churned = int(y_arr.sum())
    if churned == units:
        return _no_outcomes(window, units, -tolerance, f"none of {units:,} customers purchased")
    if churned == 0:
        detail = (
            f"{window.label}: cannot judge: only one outcome class in the window (all "
            f"{units:,} customers purchased, nobody to rank as churned); not blocking"
        )
        extra = _window_extra(window, units)
        return CheckOutcome(NAME, True, float("nan"), -tolerance, detail, extra)
    interval = old_auc = None
    if old_scores is not None:
        interval = paired_bootstrap_auc_diff(y_arr, new_scores, old_scores, n_boot, seed=seed)
        old_auc = roc_auc(y_arr, old_scores)
    family = _Family("early-churn AUC", "auc", "customers", upper_decides=False)
    new_auc = roc_auc(y_arr, new_scores)
    return _compared(window, family, new_auc, old_auc, interval, -tolerance, units)


def _ids(frame: pd.DataFrame, what: str) -> tuple[np.ndarray, np.ndarray]:
    return as_ids(frame["user_id"], f"{what}.user_id"), as_ids(frame["item_id"], f"{what}.item_id")


def _pair_codes(ids: tuple[np.ndarray, np.ndarray], users: pd.Index, items: pd.Index) -> np.ndarray:
    """One int64 code per (user, item) row; -1 where the user or item is outside the indexes."""
    u, i = users.get_indexer(ids[0]), items.get_indexer(ids[1])
    return np.where((u >= 0) & (i >= 0), u.astype(np.int64) * len(items) + i, -1)


def _distinct(codes: np.ndarray) -> np.ndarray:
    """Sorted distinct codes: a sort beats numpy's and pandas' hashing on millions of ints."""
    ordered = np.sort(codes)
    return ordered[np.r_[True, ordered[1:] != ordered[:-1]]] if ordered.size else ordered


def _within(codes: np.ndarray, sorted_set: np.ndarray) -> np.ndarray:
    if sorted_set.size == 0:
        return np.zeros(codes.shape, dtype=bool)
    return sorted_set[np.minimum(np.searchsorted(sorted_set, codes), sorted_set.size - 1)] == codes


def _top(lists: pd.DataFrame, k: int) -> pd.DataFrame:
    """Each user's first ``k`` entries: by ``rank`` when given, else in the order given."""
    if "rank" in lists.columns:
        return lists.loc[lists["rank"].to_numpy() <= k]
    return lists.loc[lists.groupby("user_id", sort=False).cumcount().to_numpy() < k]


def recommender_out_of_time(
    new_lists: pd.DataFrame,
    old_lists: pd.DataFrame | None,
    future: pd.DataFrame,
    k: int,
    window: Window,
    tolerance: float,
    n_boot: int,
    seed: int = 0,
    seen: pd.DataFrame | None = None,
) -> CheckOutcome:
    """Per-user precision@k of lists taken as of ``as_of(window)`` on the items users took up in
    the window; passes when the CI lower end of the mean per-user difference is >= -tolerance.

    A user counts when they interacted with an item in the window and either model served them
    a list (a user who arrived in the window had no list to judge); one model's missing list
    counts as no hits. The lists leave out what users already had, so a hit is a new item;
    ``seen`` (user_id, item_id up to as_of) also drops repeats from ``future``, so users who
    only came back to old items do not dilute the difference.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    lists = [_ids(_top(new_lists, k), "new_lists")]
    lists += [] if old_lists is None else [_ids(_top(old_lists, k), "old_lists")]
    after = _ids(future, "future")
    # Text ids: hashed uniques (sorting millions of strings would dominate the run).
    users = pd.Index(pd.unique(np.concatenate([u for u, _ in lists])))
    items = pd.Index(pd.unique(np.concatenate([i for _, i in [*lists, after]])))
    took = _pair_codes(after, users, items)
    took = _distinct(took[took >= 0])
    if seen is not None:
        took = took[~_within(took, _distinct(_pair_codes(_ids(seen, "seen"), users, items)))]
    counted = _distinct(took // len(items))
    if counted.size == 0:
        why = "no interactions" if len(future) == 0 else "no served user took up a new item"
        return _no_outcomes(window, 0, -tolerance, why)

    def precision(ids: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        pairs = _distinct(_pair_codes(ids, users, items))  # an item listed twice counts once
        hits = np.bincount(pairs[_within(pairs, took)] // len(items), minlength=len(users))
        return hits[counted] / k

    new_p = precision(lists[0])
    interval = old_mean = None
    if old_lists is not None:
        old_p = precision(lists[1])
        interval = paired_mean_diff_ci(new_p, old_p, n_boot=n_boot, seed=seed)
        old_mean = float(old_p.mean())
    family = _Family(f"precision@{k}", "precision", "users", upper_decides=False)
    units = int(counted.size)
    return _compared(window, family, float(new_p.mean()), old_mean, interval, -tolerance, units)


def _abs_error(pred: np.ndarray, spend: np.ndarray, scale: float, what: str) -> np.ndarray:
    values = np.asarray(pred, dtype=np.float64)
    if values.shape != spend.shape or not np.isfinite(values).all():
        raise ValueError(f"{what} must hold one finite prediction per observed customer")
    return np.abs(values * scale - spend)


def value_out_of_time(
    observed: np.ndarray,
    new_pred: np.ndarray,
    old_pred: np.ndarray | None,
    horizon_days: int,
    window: Window,
    tolerance: float,
    n_boot: int,
    seed: int = 0,
) -> CheckOutcome:
    """Per-customer absolute error of H-day spend predictions scaled to the elapsed days;
    passes when the CI upper end of MAE(new) - MAE(old) is at most tolerance x MAE(old)."""
    if horizon_days < 1:
        raise ValueError(f"horizon_days must be >= 1, got {horizon_days}")
    spend = np.asarray(observed, dtype=np.float64)
    units = int(spend.size)
    if not np.isfinite(spend).all():
        raise ValueError("observed spend must be finite")
    if units == 0:
        return _no_outcomes(window, 0, 0.0, "no customers scored")
    if not (spend != 0).any():
        return _no_outcomes(window, units, 0.0, f"no spend by any of {units:,} customers")
    scale = window.days / horizon_days
    new_err = _abs_error(new_pred, spend, scale, "new_pred")
    interval = old_mae = None
    bound = float("nan")
    if old_pred is not None:
        old_err = _abs_error(old_pred, spend, scale, "old_pred")
        interval = paired_mean_diff_ci(new_err, old_err, n_boot=n_boot, seed=seed)
        old_mae = float(old_err.mean())
        bound = tolerance * old_mae
    family = _Family("spend MAE", "mae", "customers", upper_decides=True)
    return _compared(window, family, float(new_err.mean()), old_mae, interval, bound, units)
