"""Choose, judge, serve: one monthly recommender challenger from one window of interactions.

1. Select: every grid point is fitted on *train* and scored on the *selection* slice.
2. Judge: the winning point is refit on train + selection and scored on the *gate* slice, which
   neither the search nor this fit saw; every promotion gate uses this fit's numbers. Refit
   rather than reuse the selection-time fit: the judged fit then lacks only the gate slice, as
   the served fit lacks only the future, so its gate numbers estimate the model that serves
   instead of one missing twice as much of each user's recent history.
3. Serve: the same point is refit on the whole window (gate slice included); the champion
   serves this fit, folding in each user's history up to the day and filtering all of it
   (:mod:`lifecycle.rec_serving`). Gates score fits the same way (``evaluate_bundle``).
Both fits go into one registry version: the served fit under the bundle's plain file names,
the judged fit under the same names with a ``judged_`` prefix.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd

from lifecycle import gates
from lifecycle.gates import CheckOutcome
from lifecycle.interactions import evaluate_bundle, holdout_unseen_by, trained_on
from lifecycle.rec_data import InteractionData, InteractionSplits
from lifecycle.recommender import (
    AlsParams,
    RankingMetrics,
    RecommenderBundle,
    build_bundle,
    evaluate_popularity,
    load_bundle,
    save_bundle,
    search_als,
    train_als,
)
from lifecycle.settings import RecommenderCheckSettings

JUDGED_PREFIX = "judged_"
JUDGED_NOTE = "judged fit: trained on train + selection slices, scored on the unseen gate slice"


@dataclass(frozen=True, eq=False)
class ChallengerFits:
    params: AlsParams
    trials: pd.DataFrame  # every grid point on the selection slice; the winner is `chosen`
    selection: RankingMetrics  # the winner on the selection slice (the search's own score)
    gate: RankingMetrics  # the judged fit on the gate slice
    popularity: RankingMetrics  # popularity counted on train + selection, on the gate slice
    judged: RecommenderBundle
    served: RecommenderBundle
    fit_seconds: Mapping[str, float]


def train_challenger(
    splits: InteractionSplits,
    grid: Sequence[AlsParams],
    k: int,
    seed: int,
    fallback_size: int,
    num_threads: int = 0,
) -> ChallengerFits:
    """Select on the selection slice, judge on the gate slice, refit on everything to serve."""
    best, trials = search_als(splits.selection, grid, k, seed, num_threads)
    chosen = trials.loc[trials["chosen"]].iloc[0]
    bundles: dict[str, RecommenderBundle] = {}
    seconds: dict[str, float] = {}
    for name, view in (("judged", splits.judged), ("served", splits.served)):
        start = time.perf_counter()
        model = train_als(view, best, seed, num_threads)
        seconds[name] = time.perf_counter() - start
        bundles[name] = build_bundle(model, view, best, fallback_size)
    return ChallengerFits(
        params=best,
        trials=trials,
        selection=RankingMetrics(
            **{f: float(chosen[f]) for f in ("precision", "recall", "ndcg", "map", "coverage")},
            n_users=int(splits.selection.holdout["user_id"].nunique()),
            k=k,
        ),
        gate=evaluate_bundle(bundles["judged"], splits.judged, k),
        popularity=evaluate_popularity(splits.judged, k),
        judged=bundles["judged"],
        served=bundles["served"],
        fit_seconds=seconds,
    )


def version_record(
    fits: ChallengerFits, extra_params: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, float]]:
    """(params, metrics) of the registry version. Unprefixed keys are the judged fit's (the
    gates' numbers); ``served_`` keys the served fit's; ``selection_`` the search's winner."""
    point = asdict(fits.params)
    params = {
        **point,
        **extra_params,
        "trained_on": "train+selection",
        **{f"served_{name}": value for name, value in point.items()},
        "served_trained_on": "train+selection+gate",
    }
    served = fits.served
    metrics = {
        **fits.gate.as_dict(),
        **{f"popularity_{name}": v for name, v in fits.popularity.as_dict().items()},
        **{f"selection_{name}": v for name, v in fits.selection.as_dict().items()},
        "train_pairs": float(fits.judged.user_items.nnz),
        "fit_seconds": fits.fit_seconds["judged"],
        "served_train_pairs": float(served.user_items.nnz),
        "served_users": float(len(served.user_ids)),
        "served_items": float(len(served.item_ids)),
        "served_fallback_items": float(len(served.fallback_items)),
        "served_fit_seconds": fits.fit_seconds["served"],
    }
    return params, metrics


def save_fits(fits: ChallengerFits, directory: Path) -> list[Path]:
    """Both fits' files in one folder: served under plain names, judged with the prefix."""
    return [
        *save_bundle(fits.served, directory),
        *save_bundle(fits.judged, directory, JUDGED_PREFIX),
    ]


def load_fit(directory: Path, fit: str) -> RecommenderBundle:
    """``fit`` is "served" or "judged"; versions from before the split hold the served one only."""
    if fit not in ("served", "judged"):
        raise ValueError(f"unknown fit {fit!r}; expected 'served' or 'judged'")
    return load_bundle(directory, JUDGED_PREFIX if fit == "judged" else "")


def judge_challenger(
    judged: RecommenderBundle,
    served: RecommenderBundle,
    champion: RecommenderBundle | None,
    view: InteractionData,
    k: int,
    checks: RecommenderCheckSettings,
) -> list[CheckOutcome]:
    """The promotion gates, all on the judged fit and ``view`` (the judged view: train +
    selection seen, gate slice held out); the champion is compared on gate pairs its own
    (served) fit never trained on."""
    leaked = int(trained_on(judged, view.holdout).sum())
    if leaked:
        raise ValueError(f"the judged fit trained on {leaked} gate pair(s): it cannot be judged")
    new = evaluate_bundle(judged, view, k)
    popularity = evaluate_popularity(view, k)
    if champion is None:
        versus = gates.not_worse_than_champion(new.precision, None, checks.tolerance, "precision@K")
    else:
        blind = holdout_unseen_by(champion, view)
        challenger_blind = evaluate_bundle(judged, blind, k)
        champion_blind = evaluate_bundle(champion, blind, k)
        versus = gates.not_worse_than_champion(
            challenger_blind.precision,
            champion_blind.precision,
            checks.tolerance,
            "precision@K on gate pairs neither model trained on",
        )
        versus = replace(
            versus,
            extra={
                **versus.extra,
                "blind_pairs": len(blind.holdout),
                "blind_users": challenger_blind.n_users,
                "gate_pairs_champion_trained_on": len(view.holdout) - len(blind.holdout),
            },
        )
    fallback = min(len(judged.fallback_items), len(served.fallback_items))
    outcomes = [
        gates.at_least("precision_floor", new.precision, checks.min_precision, "precision@K"),
        gates.lift_over_baseline(
            new.precision, popularity.precision, checks.min_lift_over_popularity, "precision@K"
        ),
        versus,
        gates.at_least("coverage_floor", new.coverage, checks.min_coverage, "coverage"),
        gates.non_empty("fallback_present", fallback, k, "fallback items (judged and served)"),
    ]
    context: dict[str, float | int | str] = {
        "fit": JUDGED_NOTE,
        "gate_users": new.n_users,
        "gate_pairs": len(view.holdout),
        "served_fallback_items": len(served.fallback_items),
    }
    return [replace(o, extra={**o.extra, **context}) for o in outcomes]
