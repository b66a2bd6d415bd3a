"""Choose on the selection slice, judge on the gate slice, serve a fit of the whole window."""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lifecycle.interactions import evaluate_bundle, trained_on
from lifecycle.rec_data import InteractionData, InteractionSplits
from lifecycle.rec_training import (
    JUDGED_NOTE,
    ChallengerFits,
    judge_challenger,
    load_fit,
    save_fits,
    train_challenger,
    version_record,
)
from lifecycle.recommender import (
    AlsParams,
    Weighting,
    build_bundle,
    build_interaction_data,
    evaluate_model,
    train_als,
)
from lifecycle.settings import RecommenderCheckSettings

K = 10
HOLDOUT_K = 5
START = pd.Timestamp("2026-01-01")
CUT = START + pd.Timedelta(days=80)  # the window is [START, CUT); what follows is "next"
GRID = [AlsParams(4, 1.0, 4), AlsParams(8, 0.1, 15)]
WEIGHTING = Weighting(alpha=5.0)


def world(n_users: int = 800, n_items: int = 300, dim: int = 8, seed: int = 0) -> pd.DataFrame:
    """Users pick items by a latent taste on top of Zipf popularity, at uniform times over 100
    days; ids are text (prefixed, so an integer cast would fail loudly)."""
    rng = np.random.default_rng(seed)
    users, items = rng.normal(size=(n_users, dim)), rng.normal(size=(n_items, dim))
    zipf = -np.log(np.arange(1, n_items + 1))[rng.permutation(n_items)]
    logits = 3.0 * users @ items.T / np.sqrt(dim) + zipf
    order = np.argsort(-(logits + rng.gumbel(size=logits.shape)), axis=1)
    take = np.arange(n_items)[None, :] < rng.integers(25, 45, size=n_users)[:, None]
    user_col = np.broadcast_to(np.arange(n_users)[:, None], order.shape)[take]
    item_col = order[take]
    seconds = rng.uniform(0, 100 * 86400, size=item_col.size)
    return pd.DataFrame(
        {
            "user_id": np.char.add("u-", user_col.astype(str)).astype(object),
            "item_id": np.char.add("i-", item_col.astype(str)).astype(object),
            "timestamp": START + pd.to_timedelta(seconds, unit="s"),
            "weight": 1.0,
        }
    )


@pytest.fixture(scope="module")
def events() -> pd.DataFrame:
    return world()


@pytest.fixture(scope="module")
def splits(events: pd.DataFrame) -> InteractionSplits:
    return build_interaction_data(events[events["timestamp"] < CUT], HOLDOUT_K, 10, WEIGHTING)


@pytest.fixture(scope="module")
def fits(splits: InteractionSplits) -> ChallengerFits:
    return train_challenger(splits, GRID, K, seed=0, fallback_size=20, num_threads=1)


def _trained(bundle, pairs: pd.DataFrame) -> int:
    return int(trained_on(bundle, pairs).sum())


def test_the_judged_fit_never_saw_the_gate_slice_and_the_served_fit_did(
    splits: InteractionSplits, fits: ChallengerFits
) -> None:
    gate, selection = splits.judged.holdout, splits.selection.holdout
    assert len(gate) == len(selection) > 0
    assert not set(zip(gate["user_id"], gate["item_id"], strict=True)) & set(
        zip(selection["user_id"], selection["item_id"], strict=True)
    )
    assert _trained(fits.judged, gate) == 0
    assert _trained(fits.judged, selection) == len(selection)
    assert _trained(fits.served, gate) == len(gate)
    assert fits.served.user_items.nnz == len(splits.rows) > fits.judged.user_items.nnz
    assert fits.judged.params == fits.served.params == fits.params


def test_the_grid_point_is_chosen_on_the_selection_slice(
    splits: InteractionSplits, fits: ChallengerFits
) -> None:
    # The trials are the train-only fits scored on the selection slice, nothing else.
    assert fits.trials["chosen"].sum() == 1
    chosen = fits.trials.loc[fits.trials["chosen"]].iloc[0]
    assert GRID[int(chosen["trial"])] == fits.params
    again = evaluate_model(train_als(splits.selection, fits.params, 0, 1), splits.selection, K)
    assert again.precision == pytest.approx(chosen["precision"]) == fits.selection.precision
    assert fits.selection.n_users == splits.selection.holdout["user_id"].nunique()
    # The gate numbers are the judged fit's on the gate slice.
    assert fits.gate == evaluate_bundle(fits.judged, splits.judged, K)
    assert fits.gate.precision > 1.2 * fits.popularity.precision


def test_the_version_records_both_fits(fits: ChallengerFits, tmp_path: Path) -> None:
    params, metrics = version_record(fits, {"weighting": "alpha"})
    assert params["factors"] == params["served_factors"] == fits.params.factors
    assert params["trained_on"] == "train+selection"
    assert params["served_trained_on"] == "train+selection+gate"
    assert metrics["precision"] == fits.gate.precision
    assert metrics["popularity_precision"] == fits.popularity.precision
    assert metrics["selection_precision"] == fits.selection.precision
    assert metrics["served_train_pairs"] > metrics["train_pairs"] > 0
    assert all(isinstance(v, float) for v in metrics.values())

    files = save_fits(fits, tmp_path)
    plain = ["model.npz", "ids_and_items.npz", "params.json"]
    assert sorted(p.name for p in files) == sorted([*plain, *(f"judged_{n}" for n in plain)])
    served, judged = load_fit(tmp_path, "served"), load_fit(tmp_path, "judged")
    assert (served.user_items != fits.served.user_items).nnz == 0
    assert (judged.user_items != fits.judged.user_items).nnz == 0
    np.testing.assert_array_equal(served.model.item_factors, fits.served.model.item_factors)
    with pytest.raises(ValueError, match="unknown fit"):
        load_fit(tmp_path, "latest")


def test_gates_judge_the_judged_fit_and_refuse_one_that_saw_the_gate(
    events: pd.DataFrame, splits: InteractionSplits, fits: ChallengerFits
) -> None:
    checks = RecommenderCheckSettings()
    outcomes = judge_challenger(fits.judged, fits.served, None, splits.judged, K, checks)
    assert [o.name for o in outcomes] == [
        "precision_floor",
        "beats_popularity",
        "beats_champion",
        "coverage_floor",
        "fallback_present",
    ]
    assert all(o.extra["fit"] == JUDGED_NOTE for o in outcomes)
    assert outcomes[0].observed == pytest.approx(fits.gate.precision)
    assert all(o.passed for o in outcomes)
    with pytest.raises(ValueError, match=r"trained on \d+ gate pair"):
        judge_challenger(fits.served, fits.served, None, splits.judged, K, checks)

    # A champion whose served fit ended 20 days earlier trained on some of the gate pairs:
    # those are left out of the head-to-head, and only those.
    older = build_interaction_data(
        events[events["timestamp"] < CUT - pd.Timedelta(days=20)], HOLDOUT_K, 10, WEIGHTING
    ).served
    champion = build_bundle(train_als(older, fits.params, 0, 1), older, fits.params, 20)
    overlap = _trained(champion, splits.judged.holdout)
    assert 0 < overlap < len(splits.judged.holdout)
    versus = judge_challenger(fits.judged, fits.served, champion, splits.judged, K, checks)[2]
    assert versus.extra["gate_pairs_champion_trained_on"] == overlap
    assert versus.extra["blind_pairs"] == len(splits.judged.holdout) - overlap
    assert versus.passed, versus.detail


def _next_interactions(splits: InteractionSplits, later: pd.DataFrame) -> InteractionData:
    """After the cut-off: new (user, item) pairs of users and items the window knows; the seen
    filter is everything in the window, for both fits alike."""
    served = splits.served
    later = later.loc[:, ["user_id", "item_id"]].drop_duplicates(ignore_index=True)
    rows = served.user_index.get_indexer(later["user_id"])
    cols = served.item_index.get_indexer(later["item_id"])
    keep = (rows >= 0) & (cols >= 0)
    seen = np.zeros(len(later), dtype=bool)
    seen[keep] = np.asarray(served.train[rows[keep], cols[keep]]).ravel() != 0
    return replace(served, holdout=later.loc[keep & ~seen].reset_index(drop=True))


def test_the_served_fit_predicts_what_users_do_next_better_than_the_judged_fit(
    events: pd.DataFrame, splits: InteractionSplits, fits: ChallengerFits
) -> None:
    future = _next_interactions(splits, events[events["timestamp"] >= CUT])
    judged = evaluate_bundle(fits.judged, future, K)
    served = evaluate_bundle(fits.served, future, K)
    assert judged.n_users == served.n_users > 700
    # Measured on 4 seeds: served ≈ judged + 0.012 (≈ 0.31 vs 0.30); serving the judged fit,
    # as before, throws that away.
    assert served.precision > judged.precision, (served, judged)
    assert served.ndcg > judged.ndcg
