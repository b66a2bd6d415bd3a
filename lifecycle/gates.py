"""Pure evaluators behind the promotion gates: each returns the numbers a reviewer decides on.

A gate is a comparison of a real number computed on held-out data with a threshold from the
settings. The Dagster layer only turns a ``CheckOutcome`` into an asset check result.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from lifecycle.metrics import feature_psi, paired_bootstrap_auc_diff, psi, roc_auc
from lifecycle.numbers import sig, signed


def _bound(value: float) -> str:
    """A configured threshold as written in the settings: 0.7, 0.05, 1.2 (not 0.7000)."""
    return f"{sig(value):g}"


def _tolerance(tolerance: float) -> str:
    return signed(-tolerance, 3)


@dataclass(frozen=True)
class CheckOutcome:
    name: str
    passed: bool
    observed: float
    threshold: float
    detail: str
    extra: Mapping[str, float | int | str] = field(default_factory=dict)


def at_least(name: str, observed: float, minimum: float, what: str) -> CheckOutcome:
    return CheckOutcome(
        name,
        passed=bool(observed >= minimum),
        observed=float(observed),
        threshold=float(minimum),
        detail=f"{what} {observed:.4f} {'≥' if observed >= minimum else '<'} floor {_bound(minimum)}",
    )


def beats_champion_auc(
    y: np.ndarray,
    challenger: np.ndarray,
    champion: np.ndarray | None,
    tolerance: float,
    n_boot: int,
    seed: int = 0,
) -> CheckOutcome:
    """Paired bootstrap on the same holdout rows: the CI lower bound of AUC(new) − AUC(old)
    must not fall below −tolerance. With no champion yet, the first model passes and says so."""
    name = "beats_champion"
    if champion is None:
        return CheckOutcome(name, True, float("nan"), -tolerance, "no champion yet: first model")
    interval = paired_bootstrap_auc_diff(y, challenger, champion, n_boot=n_boot, seed=seed)
    passed = interval.lower >= -tolerance
    auc_new, auc_old = roc_auc(y, challenger), roc_auc(y, champion)
    verdict = "" if passed else ": the interval's lower end is below the tolerance"
    return CheckOutcome(
        name,
        passed=bool(passed),
        observed=float(interval.lower),
        threshold=-tolerance,
        detail=(
            f"AUC {auc_new:.4f} vs champion {auc_old:.4f}: {signed(interval.estimate)}, "
            f"{1 - interval.alpha:.0%} CI [{signed(interval.lower)}, {signed(interval.upper)}] "
            f"(tolerance {_tolerance(tolerance)}){verdict}"
        ),
        extra={
            "auc_challenger": auc_new,
            "auc_champion": auc_old,
            "auc_diff": float(interval.estimate),
            "ci_lower": float(interval.lower),
            "ci_upper": float(interval.upper),
            "n_boot": int(interval.n_boot),
            "holdout_rows": len(y),
        },
    )


def input_drift(
    reference: pd.DataFrame | None,
    candidate: pd.DataFrame,
    columns: Sequence[str],
    max_psi: float,
    informational: Sequence[str] = (),
) -> CheckOutcome:
    """Population stability of each feature between the champion's and the challenger's
    training data; the worst gated feature decides.

    ``informational`` features are measured and shown but do not decide: cumulative features
    (tenure, lifetime counts, uncapped recency) drift with the age of the history itself, so
    gating on them would block every month while the history is young.
    """
    name = "input_drift"
    if reference is None:
        return CheckOutcome(name, True, 0.0, max_psi, "no champion training data to compare yet")
    per_feature = feature_psi(reference, candidate, columns)
    gated = [c for c in columns if c not in set(informational)] or list(columns)
    # A NaN PSI (a feature missing on one side) counts as the worst drift, never as none.
    worst = max(gated, key=lambda c: (np.isnan(per_feature[c]), per_feature[c]))
    over = [c for c in gated if not per_feature[c] <= max_psi]
    value = per_feature[worst]
    shown_value = "n/a (missing on one side)" if np.isnan(value) else f"{value:.3f}"
    shown: dict[str, float | str] = {f"psi_{c}": float(v) for c, v in per_feature.items()}
    if informational:
        shown["not_gated"] = ", ".join(c for c in columns if c in set(informational))
    return CheckOutcome(
        name,
        passed=bool(per_feature[worst] <= max_psi),  # False for NaN
        observed=float(per_feature[worst]),
        threshold=max_psi,
        detail=(
            f"worst gated feature {worst}: PSI {shown_value} (bound {_bound(max_psi)}); "
            f"{len(over)} of {len(gated)} gated features over"
            + (f": {', '.join(over[:5])}{', …' if len(over) > 5 else ''}" if over else "")
        ),
        extra=shown,
    )


def score_sanity(scores: np.ndarray) -> CheckOutcome:
    """Scores are probabilities, finite, and not constant (a constant model ranks nobody)."""
    finite = np.isfinite(scores)
    in_range = bool(finite.all() and (scores >= 0).all() and (scores <= 1).all())
    spread = float(np.nanstd(scores)) if scores.size else 0.0
    passed = in_range and spread > 1e-6
    return CheckOutcome(
        "score_sanity",
        passed=passed,
        observed=spread,
        threshold=1e-6,
        detail=(
            f"{int((~finite).sum())} non-finite, "
            f"{'all in [0, 1]' if in_range else 'some outside [0, 1]'}, std {spread:.4g}"
        ),
        extra={
            "nan_count": int((~finite).sum()),
            "min_score": float(np.nanmin(scores)) if scores.size else float("nan"),
            "max_score": float(np.nanmax(scores)) if scores.size else float("nan"),
        },
    )


def lift_over_baseline(
    model_value: float, baseline_value: float, factor: float, metric: str
) -> CheckOutcome:
    ratio = model_value / baseline_value if baseline_value > 0 else float("inf")
    return CheckOutcome(
        "beats_popularity",
        passed=bool(ratio >= factor),
        observed=float(ratio),
        threshold=factor,
        detail=(
            f"{metric} {model_value:.4f} vs popularity {baseline_value:.4f}: "
            f"×{ratio:.2f} (need ×{_bound(factor)})"
        ),
        extra={"model": float(model_value), "popularity": float(baseline_value)},
    )


def not_worse_than_champion(
    challenger_value: float, champion_value: float | None, tolerance: float, metric: str
) -> CheckOutcome:
    name = "beats_champion"
    if champion_value is None:
        return CheckOutcome(name, True, float("nan"), -tolerance, "no champion yet: first model")
    diff = challenger_value - champion_value
    return CheckOutcome(
        name,
        passed=bool(diff >= -tolerance),
        observed=float(diff),
        threshold=-tolerance,
        detail=(
            f"{metric}: {challenger_value:.4f} vs champion {champion_value:.4f}: "
            f"{signed(diff)} (tolerance {_tolerance(tolerance)})"
        ),
        extra={"challenger": float(challenger_value), "champion": float(champion_value)},
    )


def non_empty(name: str, count: int, needed: int, what: str) -> CheckOutcome:
    return CheckOutcome(
        name,
        passed=count >= needed,
        observed=float(count),
        threshold=float(needed),
        detail=f"{what}: {count} (need ≥ {needed})",
    )


def score_drift(reference: np.ndarray, current: np.ndarray, max_psi: float) -> CheckOutcome:
    value = psi(reference, current)
    return CheckOutcome(
        "score_drift",
        passed=bool(value <= max_psi),
        observed=float(value),
        threshold=max_psi,
        detail=(
            f"PSI of scores vs the model's training scores: {value:.3f} (bound {_bound(max_psi)})"
        ),
    )


def completeness_by_day(scores: pd.DataFrame, population: pd.DataFrame) -> pd.DataFrame:
    """Per ``as_of_date``: finite scores, active customers (expected), customers with no
    finite score (missing) and repeated scores (duplicated); one pass over the range."""
    keys = ["as_of_date", "customer_id"]
    expected = population[keys].drop_duplicates()
    scored = scores.loc[np.isfinite(scores["score"].to_numpy()), keys]
    repeated = scored.duplicated()
    merged = expected.merge(scored.loc[~repeated], on=keys, how="left", indicator=True)
    counts = pd.DataFrame(
        {
            "scored": scored.groupby("as_of_date").size(),
            "expected": expected.groupby("as_of_date").size(),
            "missing": (merged["_merge"] == "left_only").groupby(merged["as_of_date"]).sum(),
            "duplicated": repeated.groupby(scored["as_of_date"]).sum(),
        },
        columns=["scored", "expected", "missing", "duplicated"],
    )
    return counts.fillna(0).astype("int64")


def completeness_detail(scored: int, expected: int, missing: int, duplicated: int) -> str:
    return (
        f"{scored} scores for {expected} active customer-days: {missing} missing, "
        f"{duplicated} duplicated"
    )


def scores_complete(scores: pd.DataFrame, population: pd.DataFrame) -> CheckOutcome:
    """Exactly one finite score per active (day, customer): nobody missed, nobody twice."""
    n = completeness_by_day(scores, population).sum()
    return CheckOutcome(
        "scores_complete",
        passed=bool(n["duplicated"] == 0 and n["missing"] == 0),
        observed=float(n["scored"]),
        threshold=float(n["expected"]),
        detail=completeness_detail(*(int(n[c]) for c in n.index)),
    )
