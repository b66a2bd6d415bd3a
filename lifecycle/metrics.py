"""Binary-classification and drift metrics, vectorised with numpy.

These run inside bootstraps and per-partition asset checks, so every function is a
handful of array passes (no Python loops over rows) and validates its inputs loudly:
a silently wrong metric is worse than a failed materialisation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

import numpy as np
import pandas as pd

__all__ = [
    "BinaryMetrics",
    "DiffInterval",
    "binary_metrics",
    "brier",
    "calibration_bins",
    "calibration_error",
    "feature_psi",
    "log_loss",
    "paired_bootstrap_auc_diff",
    "pr_auc",
    "psi",
    "roc_auc",
    "roc_curve",
    "top_decile_lift",
]

# Floor for empty PSI bins: keeps the log finite while still penalising a bin that
# went from populated to empty (or vice versa) heavily.
_PSI_EPS = 1e-4
# Upper bound on the (resamples x rows) block held in memory by the bootstrap.
_BOOT_BLOCK_CELLS = 2_000_000


def _as_labels_scores(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Coerce to 1-D float64 arrays and reject anything that is not 0/1 labels + finite scores."""
    y_arr = np.asarray(y)
    s_arr = np.asarray(s, dtype=np.float64)
    if y_arr.ndim != 1 or s_arr.ndim != 1:
        raise ValueError(f"y and s must be 1-D, got shapes {y_arr.shape} and {s_arr.shape}")
    if y_arr.shape[0] != s_arr.shape[0]:
        raise ValueError(f"y and s differ in length: {y_arr.shape[0]} != {s_arr.shape[0]}")
    if y_arr.shape[0] == 0:
        raise ValueError("metrics need at least one row")
    y_f = y_arr.astype(np.float64)
    if not np.all((y_f == 0.0) | (y_f == 1.0)):
        raise ValueError("y must contain only 0/1 labels")
    if not np.all(np.isfinite(s_arr)):
        raise ValueError("s contains NaN or infinite scores")
    return y_f, s_arr


def _require_both_classes(y: np.ndarray) -> tuple[int, int]:
    n_pos = int(y.sum())
    n_neg = int(y.shape[0] - n_pos)
    if n_pos == 0 or n_neg == 0:
        raise ValueError("metric is undefined when y contains only one class")
    return n_pos, n_neg


def _require_probabilities(s: np.ndarray) -> None:
    if s.min() < 0.0 or s.max() > 1.0:
        raise ValueError("scores must be probabilities in [0, 1] for this metric")


def _grouped_auc(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """AUC from per-tie-group positive/negative weights (groups in ascending score order).

    Works on the last axis so a (resamples, groups) block yields one AUC per resample;
    ties count one half, exactly as in the Mann-Whitney U statistic.
    """
    neg_below = np.cumsum(neg, axis=-1) - neg
    numerator = np.sum(pos * (neg_below + 0.5 * neg), axis=-1)
    w_pos = pos.sum(axis=-1)
    w_neg = neg.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray(numerator / (w_pos * w_neg), dtype=np.float64)


def roc_auc(y: np.ndarray, s: np.ndarray) -> float:
    """Area under the ROC curve via the rank (Mann-Whitney) formula; ties count one half."""
    y_f, s_f = _as_labels_scores(y, s)
    _require_both_classes(y_f)
    _, group = np.unique(s_f, return_inverse=True)
    n_groups = int(group.max()) + 1
    pos = np.bincount(group, weights=y_f, minlength=n_groups)
    neg = np.bincount(group, minlength=n_groups) - pos
    return float(_grouped_auc(pos, neg))


def roc_curve(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(fpr, tpr) at every distinct score threshold, starting at (0, 0); used for plotting."""
    y_f, s_f = _as_labels_scores(y, s)
    n_pos, n_neg = _require_both_classes(y_f)
    order = np.argsort(-s_f, kind="stable")
    s_sorted = s_f[order]
    last = np.r_[np.flatnonzero(np.diff(s_sorted)), s_sorted.shape[0] - 1]
    tps = np.cumsum(y_f[order])[last]
    fps = (last + 1) - tps
    return np.r_[0.0, fps / n_neg], np.r_[0.0, tps / n_pos]


def pr_auc(y: np.ndarray, s: np.ndarray) -> float:
    """Average precision: sum of precision at each distinct threshold weighted by recall gain.

    This is the step-wise (non-interpolated) definition, which unlike trapezoidal PR-AUC
    does not reward a model for optimistic interpolation between thresholds.
    """
    y_f, s_f = _as_labels_scores(y, s)
    n_pos, _ = _require_both_classes(y_f)
    order = np.argsort(-s_f, kind="stable")
    s_sorted = s_f[order]
    last = np.r_[np.flatnonzero(np.diff(s_sorted)), s_sorted.shape[0] - 1]
    tps = np.cumsum(y_f[order])[last]
    precision = tps / (last + 1)
    recall_gain = np.diff(np.r_[0.0, tps / n_pos])
    return float(np.sum(recall_gain * precision))


def log_loss(y: np.ndarray, s: np.ndarray, eps: float = 1e-15) -> float:
    """Mean binary cross-entropy; scores are clipped to [eps, 1 - eps] so 0/1 stay finite."""
    y_f, s_f = _as_labels_scores(y, s)
    _require_probabilities(s_f)
    p = np.clip(s_f, eps, 1.0 - eps)
    return float(-np.mean(y_f * np.log(p) + (1.0 - y_f) * np.log1p(-p)))


def brier(y: np.ndarray, s: np.ndarray) -> float:
    """Mean squared error of the probabilities: a proper score sensitive to calibration."""
    y_f, s_f = _as_labels_scores(y, s)
    _require_probabilities(s_f)
    return float(np.mean((s_f - y_f) ** 2))


def top_decile_lift(y: np.ndarray, s: np.ndarray, frac: float = 0.1) -> float:
    """Positive rate among the top ``frac`` of rows by score, divided by the base rate.

    Rows tied at the cut-off score share the remaining slots pro rata, so the result
    does not depend on the arbitrary order of tied rows.
    """
    if not 0.0 < frac <= 1.0:
        raise ValueError(f"frac must be in (0, 1], got {frac}")
    y_f, s_f = _as_labels_scores(y, s)
    n_pos, _ = _require_both_classes(y_f)
    n = y_f.shape[0]
    k = max(1, round(frac * n))
    cutoff = np.partition(s_f, n - k)[n - k]
    above = s_f > cutoff
    tied = s_f == cutoff
    n_above = int(above.sum())
    positives = y_f[above].sum() + (k - n_above) * y_f[tied].mean()
    return float((positives / k) / (n_pos / n))


def calibration_bins(
    y: np.ndarray, s: np.ndarray, bins: int = 10
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Equal-width reliability bins on [0, 1]: (mean score, observed rate, count), non-empty."""
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    y_f, s_f = _as_labels_scores(y, s)
    _require_probabilities(s_f)
    idx = np.minimum((s_f * bins).astype(np.int64), bins - 1)
    counts = np.bincount(idx, minlength=bins).astype(np.float64)
    score_sum = np.bincount(idx, weights=s_f, minlength=bins)
    label_sum = np.bincount(idx, weights=y_f, minlength=bins)
    keep = counts > 0
    return score_sum[keep] / counts[keep], label_sum[keep] / counts[keep], counts[keep]


def calibration_error(y: np.ndarray, s: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error: count-weighted |observed rate - mean score| over bins."""
    mean_score, observed, counts = calibration_bins(y, s, bins)
    return float(np.sum(counts * np.abs(observed - mean_score)) / counts.sum())


@dataclass(frozen=True)
class BinaryMetrics:
    """The evaluation bundle attached to every scored partition and promotion decision."""

    roc_auc: float
    pr_auc: float
    log_loss: float
    brier: float
    top_decile_lift: float
    calibration_error: float
    n_rows: int
    positive_rate: float

    def as_dict(self) -> dict[str, float]:
        """Flat mapping for Dagster metadata / JSON reports."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


def binary_metrics(y: np.ndarray, s: np.ndarray) -> BinaryMetrics:
    """Compute the full metric bundle; raises ValueError if y has a single class."""
    y_f, s_f = _as_labels_scores(y, s)
    return BinaryMetrics(
        roc_auc=roc_auc(y_f, s_f),
        pr_auc=pr_auc(y_f, s_f),
        log_loss=log_loss(y_f, s_f),
        brier=brier(y_f, s_f),
        top_decile_lift=top_decile_lift(y_f, s_f),
        calibration_error=calibration_error(y_f, s_f),
        n_rows=int(y_f.shape[0]),
        positive_rate=float(y_f.mean()),
    )


@dataclass(frozen=True)
class DiffInterval:
    """Point estimate and percentile bootstrap interval for a metric difference.

    ``n_boot`` is the number of resamples that entered the interval (resamples that
    happened to draw a single class are dropped, so it can be below the requested count).
    """

    estimate: float
    lower: float
    upper: float
    n_boot: int
    alpha: float


def paired_bootstrap_auc_diff(
    y: np.ndarray,
    s_new: np.ndarray,
    s_old: np.ndarray,
    n_boot: int = 500,
    alpha: float = 0.05,
    seed: int = 0,
) -> DiffInterval:
    """Bootstrap AUC(new) - AUC(old) with the same row resample for both models.

    Pairing removes the between-sample variance the two models share, so the interval
    reflects only how differently they rank the same customers. Each model's rows are
    sorted into tie groups once; a resample is then just a vector of row multiplicities,
    and per-group sums via ``np.add.reduceat`` give the weighted Mann-Whitney AUC for a
    whole block of resamples without re-sorting.
    """
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    y_f, new_f = _as_labels_scores(y, s_new)
    _, old_f = _as_labels_scores(y, s_old)
    _require_both_classes(y_f)
    estimate = roc_auc(y_f, new_f) - roc_auc(y_f, old_f)

    n = y_f.shape[0]
    layouts = []
    for scores in (new_f, old_f):
        order = np.argsort(scores, kind="stable")
        sorted_scores = scores[order]
        starts = np.r_[0, np.flatnonzero(np.diff(sorted_scores)) + 1]
        layouts.append((order, y_f[order], starts))

    rng = np.random.default_rng(seed)
    block = max(1, min(n_boot, _BOOT_BLOCK_CELLS // n))
    diffs: list[np.ndarray] = []
    done = 0
    while done < n_boot:
        b = min(block, n_boot - done)
        draws = rng.integers(0, n, size=(b, n)) + (np.arange(b) * n)[:, None]
        counts = np.bincount(draws.ravel(), minlength=b * n).reshape(b, n).astype(np.float64)
        aucs = []
        for order, y_sorted, starts in layouts:
            c_sorted = counts[:, order]
            pos = np.add.reduceat(c_sorted * y_sorted, starts, axis=1)
            neg = np.add.reduceat(c_sorted, starts, axis=1) - pos
            aucs.append(_grouped_auc(pos, neg))
        diffs.append(aucs[0] - aucs[1])
        done += b

    all_diffs = np.concatenate(diffs)
    valid = all_diffs[np.isfinite(all_diffs)]
    if valid.size == 0:
        raise ValueError("every bootstrap resample contained a single class")
    lower, upper = np.quantile(valid, [alpha / 2.0, 1.0 - alpha / 2.0])
    return DiffInterval(
        estimate=float(estimate),
        lower=float(lower),
        upper=float(upper),
        n_boot=int(valid.size),
        alpha=float(alpha),
    )


def _psi_from_shares(expected: np.ndarray, actual: np.ndarray) -> float:
    e = np.maximum(expected, _PSI_EPS)
    a = np.maximum(actual, _PSI_EPS)
    return float(np.sum((a - e) * np.log(a / e)))


def psi(expected: np.ndarray, actual: np.ndarray, bins: int = 10) -> float:
    """Population stability index of ``actual`` against quantile bins of ``expected``.

    Quantile bins give each reference bin ~equal mass, so PSI is comparable across
    features with different scales. Features with at most ``bins`` distinct reference
    values (flags, small counts) get one bin per value, because quantile edges would
    collapse them into a single bin and hide any shift. NaNs are dropped; returns NaN
    when either side has no values left, so an all-missing partition is visible rather
    than a crash or a fake zero.
    """
    a = np.asarray(actual, dtype=np.float64).ravel()
    return float(psi_by_group(expected, a, np.zeros(a.size, dtype=np.int64), 1, bins)[0])


def psi_by_group(
    expected: np.ndarray, actual: np.ndarray, groups: np.ndarray, n_groups: int, bins: int = 10
) -> np.ndarray:
    """``psi(expected, actual[groups == g])`` for each g in ``range(n_groups)``, with the
    reference binned once (a range's days in one pass, not one quantile sort per day)."""
    if bins < 2:
        raise ValueError(f"bins must be >= 2, got {bins}")
    e = np.asarray(expected, dtype=np.float64).ravel()
    a = np.asarray(actual, dtype=np.float64).ravel()
    g = np.asarray(groups, dtype=np.int64).ravel()
    if a.size != g.size:
        raise ValueError(f"{a.size} values but {g.size} group codes")
    e = e[~np.isnan(e)]
    g = g[~np.isnan(a)]
    a = a[~np.isnan(a)]
    out = np.full(n_groups, np.nan)
    if e.size == 0:
        return out
    levels = np.unique(e)
    if levels.size <= bins:
        # One bin per reference level plus an "unseen value" bin (the last) for actual.
        pos = np.searchsorted(levels, a)
        seen = (pos < levels.size) & (levels[np.minimum(pos, levels.size - 1)] == a)
        n_bins = levels.size + 1
        e_bin = np.searchsorted(levels, e)
        a_bin = np.where(seen, pos, levels.size)
    else:
        edges = np.unique(np.quantile(e, np.linspace(0.0, 1.0, bins + 1))[1:-1])
        n_bins = edges.size + 1
        e_bin = np.searchsorted(edges, e, side="left")
        a_bin = np.searchsorted(edges, a, side="left")
    e_share = np.maximum(np.bincount(e_bin, minlength=n_bins) / e.size, _PSI_EPS)
    counts = np.bincount(g * n_bins + a_bin, minlength=n_groups * n_bins).reshape(n_groups, -1)
    sizes = counts.sum(axis=1)
    seen = sizes > 0  # a group without values keeps NaN
    a_share = np.maximum(counts[seen] / sizes[seen, None], _PSI_EPS)
    out[seen] = ((a_share - e_share) * np.log(a_share / e_share)).sum(axis=1)
    return out


def _categorical_psi(expected: pd.Series, actual: pd.Series) -> float:
    e = expected.dropna().astype(str)
    a = actual.dropna().astype(str)
    if e.empty or a.empty:
        return float("nan")
    e_share = e.value_counts(normalize=True)
    a_share = a.value_counts(normalize=True)
    e_al, a_al = e_share.align(a_share, fill_value=0.0)
    return _psi_from_shares(e_al.to_numpy(np.float64), a_al.to_numpy(np.float64))


def feature_psi(
    expected: pd.DataFrame,
    actual: pd.DataFrame,
    columns: Sequence[str],
    bins: int = 10,
) -> dict[str, float]:
    """PSI per column; numeric/bool columns use :func:`psi`, others compare category shares."""
    missing = [c for c in columns if c not in expected.columns or c not in actual.columns]
    if missing:
        raise KeyError(f"columns missing from expected/actual frames: {missing}")
    out: dict[str, float] = {}
    for col in columns:
        e_col, a_col = expected[col], actual[col]
        numeric = pd.api.types.is_numeric_dtype(e_col) and pd.api.types.is_numeric_dtype(a_col)
        if numeric:
            out[col] = psi(
                e_col.to_numpy(dtype=np.float64, na_value=np.nan),
                a_col.to_numpy(dtype=np.float64, na_value=np.nan),
                bins=bins,
            )
        else:
            out[col] = _categorical_psi(e_col, a_col)
    return out
