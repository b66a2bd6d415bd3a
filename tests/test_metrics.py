"""Metrics against scikit-learn as the reference implementation, plus bootstrap and PSI."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from lifecycle.metrics import (
    BinaryMetrics,
    DiffInterval,
    binary_metrics,
    brier,
    calibration_bins,
    calibration_error,
    feature_psi,
    log_loss,
    paired_bootstrap_auc_diff,
    pr_auc,
    psi,
    psi_by_group,
    roc_auc,
    roc_curve,
    top_decile_lift,
)


def _data(
    n: int, positive_rate: float, levels: int | None, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Informative but noisy probabilities; ``levels`` rounds them to force ties."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < positive_rate).astype(np.int64)
    s = 1.0 / (1.0 + np.exp(-(1.2 * y + rng.normal(size=n) - 1.0)))
    if levels is not None:
        s = np.round(s * levels) / levels
    return y, s


CASES = [
    pytest.param(500, 0.5, None, id="balanced-continuous"),
    pytest.param(2000, 0.1, None, id="imbalanced-continuous"),
    pytest.param(1000, 0.3, 100, id="ties-100-levels"),
    pytest.param(1000, 0.3, 10, id="ties-10-levels"),
    pytest.param(800, 0.2, 1, id="ties-binary-scores"),
    pytest.param(50, 0.5, 4, id="small-heavy-ties"),
]


@pytest.mark.parametrize(("n", "rate", "levels"), CASES)
def test_matches_sklearn(n: int, rate: float, levels: int | None) -> None:
    y, s = _data(n, rate, levels, seed=n)
    assert roc_auc(y, s) == pytest.approx(skm.roc_auc_score(y, s), abs=1e-12)
    assert pr_auc(y, s) == pytest.approx(skm.average_precision_score(y, s), abs=1e-12)
    assert brier(y, s) == pytest.approx(skm.brier_score_loss(y, s), abs=1e-12)
    clipped = np.clip(s, 0.01, 0.99)
    assert log_loss(y, clipped) == pytest.approx(skm.log_loss(y, clipped), abs=1e-12)
    fpr, tpr = roc_curve(y, s)
    ref_fpr, ref_tpr, _ = skm.roc_curve(y, s, drop_intermediate=False)
    np.testing.assert_allclose(fpr, ref_fpr)
    np.testing.assert_allclose(tpr, ref_tpr)


def test_auc_accepts_bool_labels_and_unbounded_scores() -> None:
    y, s = _data(400, 0.4, None, seed=3)
    margins = np.log(s / (1 - s)) * 7.0
    assert roc_auc(y.astype(bool), margins) == pytest.approx(roc_auc(y, s))


def test_log_loss_clips_extremes() -> None:
    y = np.array([1, 0])
    assert np.isfinite(log_loss(y, np.array([0.0, 1.0])))
    assert log_loss(y, np.array([1.0, 0.0])) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize(
    ("y", "s", "match"),
    [
        (np.ones(10), np.linspace(0, 1, 10), "one class"),
        (np.array([0, 1, 2]), np.array([0.1, 0.2, 0.3]), "0/1"),
        (np.array([0, 1]), np.array([0.1, np.nan]), "NaN"),
        (np.array([0, 1, 1]), np.array([0.1, 0.2]), "length"),
        (np.array([], dtype=int), np.array([]), "at least one"),
    ],
)
def test_invalid_inputs_raise(y: np.ndarray, s: np.ndarray, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        roc_auc(y, s)


def test_probability_metrics_reject_margins() -> None:
    with pytest.raises(ValueError, match="probabilities"):
        brier(np.array([0, 1]), np.array([-1.0, 2.0]))


def _reference_ece(y: np.ndarray, s: np.ndarray, bins: int) -> float:
    total = 0.0
    for b in range(bins):
        lo, hi = b / bins, (b + 1) / bins
        mask = (s >= lo) & ((s < hi) if b < bins - 1 else (s <= hi))
        if mask.any():
            total += mask.sum() * abs(y[mask].mean() - s[mask].mean())
    return total / len(y)


@pytest.mark.parametrize("bins", [5, 10, 15])
def test_calibration_error_matches_loop(bins: int) -> None:
    y, s = _data(3000, 0.3, None, seed=bins)
    assert calibration_error(y, s, bins) == pytest.approx(_reference_ece(y, s, bins), abs=1e-12)
    mean_score, observed, counts = calibration_bins(y, s, bins)
    assert counts.sum() == len(y)
    assert np.all((mean_score >= 0) & (mean_score <= 1) & (observed >= 0) & (observed <= 1))


def test_calibrated_scores_have_small_ece() -> None:
    rng = np.random.default_rng(0)
    s = rng.random(200_000)
    y = (rng.random(s.size) < s).astype(int)
    assert calibration_error(y, s) < 0.01
    assert calibration_error(y, np.clip(s * 0.5, 0, 1)) > 0.2


def test_top_decile_lift() -> None:
    y = np.r_[np.ones(100), np.zeros(900)]
    perfect = np.r_[np.linspace(0.9, 1.0, 100), np.linspace(0.0, 0.5, 900)]
    assert top_decile_lift(y, perfect) == pytest.approx(10.0)
    assert top_decile_lift(y, np.full(1000, 0.3)) == pytest.approx(1.0)
    assert top_decile_lift(y, perfect, frac=0.2) == pytest.approx(5.0)
    # Ties straddling the cut share the remaining slots pro rata.
    y2 = np.array([1, 0, 1, 0, 0, 0, 0, 0, 0, 0])
    s2 = np.array([0.9, 0.5, 0.5, 0.5, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1])
    # top 2 = row 0 (pos) + one of three tied rows (1/3 positive) -> 4/3 positives / 2 rows
    assert top_decile_lift(y2, s2, frac=0.2) == pytest.approx((4 / 3 / 2) / 0.2)
    with pytest.raises(ValueError, match="frac"):
        top_decile_lift(y, perfect, frac=0.0)


def test_binary_metrics_bundle() -> None:
    y, s = _data(2000, 0.25, None, seed=11)
    m = binary_metrics(y, s)
    assert isinstance(m, BinaryMetrics)
    d = m.as_dict()
    assert set(d) == {
        "roc_auc",
        "pr_auc",
        "log_loss",
        "brier",
        "top_decile_lift",
        "calibration_error",
        "n_rows",
        "positive_rate",
    }
    assert d["roc_auc"] == pytest.approx(skm.roc_auc_score(y, s))
    assert d["n_rows"] == 2000
    assert d["positive_rate"] == pytest.approx(y.mean())
    with pytest.raises(AttributeError):
        m.roc_auc = 0.0  # type: ignore[misc]


# --------------------------------------------------------------------------- bootstrap


def _two_models(n: int, seed: int, gap: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.3).astype(int)
    signal = y + rng.normal(size=n)
    new = signal + rng.normal(size=n) * 0.5
    old = signal + rng.normal(size=n) * (0.5 + gap)
    return y, new, old


def test_bootstrap_matches_naive_resampling() -> None:
    """Same RNG draws, AUCs recomputed row-by-row with sklearn: identical interval."""
    y, new, old = _two_models(300, seed=5, gap=0.5)
    old = np.round(old, 1)  # exercise ties in one model only
    n_boot, seed, alpha = 60, 9, 0.1
    draws = np.random.default_rng(seed).integers(0, len(y), size=(n_boot, len(y)))
    ref = np.array(
        [skm.roc_auc_score(y[i], new[i]) - skm.roc_auc_score(y[i], old[i]) for i in draws]
    )
    got = paired_bootstrap_auc_diff(y, new, old, n_boot=n_boot, alpha=alpha, seed=seed)
    lo, hi = np.quantile(ref, [alpha / 2, 1 - alpha / 2])
    assert got.lower == pytest.approx(lo, abs=1e-12)
    assert got.upper == pytest.approx(hi, abs=1e-12)
    assert got.estimate == pytest.approx(
        skm.roc_auc_score(y, new) - skm.roc_auc_score(y, old), abs=1e-12
    )
    assert got.n_boot == n_boot


def test_bootstrap_interval_contains_estimate_and_shrinks_with_n() -> None:
    small = paired_bootstrap_auc_diff(*_two_models(1_000, seed=1, gap=0.3), n_boot=300)
    large = paired_bootstrap_auc_diff(*_two_models(20_000, seed=1, gap=0.3), n_boot=300)
    for iv in (small, large):
        assert isinstance(iv, DiffInterval)
        assert iv.lower <= iv.estimate <= iv.upper
        assert iv.alpha == 0.05
    assert (large.upper - large.lower) < 0.5 * (small.upper - small.lower)
    assert large.lower > 0  # the better model is detectably better at 20k rows


def test_bootstrap_perfect_vs_random() -> None:
    rng = np.random.default_rng(2)
    y = (rng.random(2_000) < 0.4).astype(int)
    iv = paired_bootstrap_auc_diff(y, y + 0.1 * rng.random(y.size), rng.random(y.size))
    assert iv.estimate > 0.4
    assert iv.lower > 0.4


def test_bootstrap_identical_and_equivalent_models_straddle_zero() -> None:
    y, new, _ = _two_models(3_000, seed=3, gap=0.0)
    same = paired_bootstrap_auc_diff(y, new, new.copy(), n_boot=200)
    assert same.estimate == same.lower == same.upper == 0.0
    y, new, old = _two_models(3_000, seed=4, gap=0.0)
    equal = paired_bootstrap_auc_diff(y, new, old, n_boot=300)
    assert equal.lower < 0.0 < equal.upper


def test_bootstrap_is_deterministic_and_drops_single_class_resamples() -> None:
    y, new, old = _two_models(2_000, seed=6, gap=0.2)
    a = paired_bootstrap_auc_diff(y, new, old, n_boot=100, seed=42)
    b = paired_bootstrap_auc_diff(y, new, old, n_boot=100, seed=42)
    assert a == b
    # 1 positive in 8 rows: many resamples miss it and must be dropped, not poison the interval.
    tiny = paired_bootstrap_auc_diff(
        np.array([1, 0, 0, 0, 0, 0, 0, 0]), np.arange(8.0), np.arange(8.0)[::-1], n_boot=200
    )
    assert 0 < tiny.n_boot < 200
    assert np.isfinite([tiny.lower, tiny.upper]).all()


def test_bootstrap_validates_arguments() -> None:
    y, new, old = _two_models(100, seed=7, gap=0.0)
    with pytest.raises(ValueError, match="n_boot"):
        paired_bootstrap_auc_diff(y, new, old, n_boot=0)
    with pytest.raises(ValueError, match="alpha"):
        paired_bootstrap_auc_diff(y, new, old, alpha=1.5)
    with pytest.raises(ValueError, match="length"):
        paired_bootstrap_auc_diff(y, new, old[:-1])


# --------------------------------------------------------------------------------- PSI


def test_psi_same_distribution_is_near_zero() -> None:
    rng = np.random.default_rng(0)
    assert psi(rng.normal(size=20_000), rng.normal(size=20_000)) < 0.01
    assert psi(rng.exponential(size=20_000), rng.exponential(size=20_000)) < 0.01


def test_psi_shifted_distribution_is_large() -> None:
    rng = np.random.default_rng(1)
    assert psi(rng.normal(size=20_000), rng.normal(loc=1.0, size=20_000)) > 0.25
    assert psi(rng.normal(size=20_000), rng.normal(scale=3.0, size=20_000)) > 0.25


def test_psi_handles_nans_discrete_and_empty() -> None:
    rng = np.random.default_rng(2)
    base = rng.normal(size=5_000)
    with_nans = np.r_[base, np.full(500, np.nan)]
    assert psi(with_nans, base) == pytest.approx(0.0, abs=1e-12)
    # A 0/1 flag: quantile edges would collapse to one bin and hide the shift.
    flag_ref = (rng.random(5_000) < 0.1).astype(float)
    flag_now = (rng.random(5_000) < 0.5).astype(float)
    assert psi(flag_ref, flag_ref) == pytest.approx(0.0)
    assert psi(flag_ref, flag_now) > 0.25
    # A value never seen in the reference counts as drift.
    assert psi(flag_ref, np.full(1_000, 2.0)) > 1.0
    assert np.isnan(psi(base, np.full(10, np.nan)))


def test_feature_psi_mixed_columns() -> None:
    rng = np.random.default_rng(3)
    n = 5_000
    ref = pd.DataFrame(
        {
            "tenure": rng.gamma(2.0, 10.0, n),
            "plan": rng.choice(["basic", "pro"], n, p=[0.8, 0.2]),
            "active": rng.random(n) < 0.7,
            "spend": rng.normal(size=n),
        }
    )
    cur = pd.DataFrame(
        {
            "tenure": rng.gamma(2.0, 10.0, n),
            "plan": rng.choice(["basic", "pro", "enterprise"], n, p=[0.3, 0.4, 0.3]),
            "active": rng.random(n) < 0.7,
            "spend": rng.normal(loc=1.5, size=n),
        }
    )
    out = feature_psi(ref, cur, ["tenure", "plan", "active", "spend"])
    assert list(out) == ["tenure", "plan", "active", "spend"]
    assert out["tenure"] < 0.02
    assert out["active"] < 0.02
    assert out["plan"] > 0.25
    assert out["spend"] > 0.25
    with pytest.raises(KeyError, match="missing"):
        feature_psi(ref, cur, ["nope"])


@pytest.mark.parametrize("kind", ["continuous", "few_levels", "with_nan"])
def test_psi_by_group_is_psi_of_each_group(kind: str) -> None:
    """One pass over a range's days gives each day the PSI it would get alone (empty days:
    NaN), for quantile bins, one-bin-per-level references and missing values alike."""
    rng = np.random.default_rng(5)
    if kind == "continuous":
        expected, actual = rng.normal(size=400), rng.normal(0.3, 1.2, size=300)
    elif kind == "few_levels":
        expected = rng.integers(0, 5, size=200).astype(float)
        actual = rng.integers(0, 7, size=150).astype(float)  # levels 5, 6 unseen
    else:
        expected = np.r_[rng.normal(size=80), [np.nan] * 5]
        actual = np.r_[rng.normal(size=60), [np.nan] * 4]
    groups = rng.integers(0, 4, size=actual.size)  # group 4 stays empty
    by_group = psi_by_group(expected, actual, groups, 5)
    for g in range(4):
        assert by_group[g] == pytest.approx(psi(expected, actual[groups == g]), abs=1e-12)
    assert np.isnan(by_group[4])
    assert len({round(v, 6) for v in by_group[:4]}) > 1  # the groups differ
