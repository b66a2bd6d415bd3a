"""Tests for the recommender core on small synthetic implicit-feedback data with text ids."""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import json
import uuid
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from lifecycle.als import popular_unseen
from lifecycle.rec_data import GATE, SELECTION, TRAIN, InteractionSplits, as_ids
from lifecycle.recommender import (
    AlsParams,
    CpuAls,
    InteractionData,
    RankingMetrics,
    Weighting,
    build_bundle,
    build_interaction_data,
    evaluate_model,
    evaluate_popularity,
    evaluate_recommendations,
    load_bundle,
    popularity_items,
    recommend_users,
    save_bundle,
    search_als,
    train_als,
)

HOLDOUT_K = 5
MIN_ITEMS = 10
K = 10
SEED = 7
PARAMS = AlsParams(factors=8, regularization=0.1, iterations=10)
SCALE = 3.0  # strength of the latent user-item signal relative to popularity
WEIGHTING = Weighting(alpha=5.0)
Scheme = Literal["alpha", "bm25", "tfidf"]
SCHEMES: tuple[Scheme, ...] = ("alpha", "bm25", "tfidf")


def user_names(n: int) -> np.ndarray:
    """Zero-padded text ids: an integer round trip would turn "00042" into "42"."""
    return np.array([f"{i:05d}" for i in range(40, 40 + n)], dtype=object)


def item_names(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed + 1)
    return np.array([str(uuid.UUID(bytes=rng.bytes(16), version=4)) for _ in range(n)], object)


def make_interactions(
    n_users: int = 600, n_items: int = 150, dim: int = 8, seed: int = 0, shuffle: bool = False
) -> pd.DataFrame:
    """Latent-factor preferences plus Zipf popularity, ~40 events per user with repeats.

    Items are drawn without replacement per user by Gumbel top-k on the logits; a few users
    get fewer distinct items than eligibility needs, so that rule is exercised. With
    ``shuffle`` the item column is permuted across all rows: popularity survives but the
    user-item association (the only thing ALS can exploit beyond popularity) is destroyed.
    """
    rng = np.random.default_rng(seed)
    users = rng.normal(size=(n_users, dim))
    items = rng.normal(size=(n_items, dim))
    zipf = -1.0 * np.log(np.arange(1, n_items + 1))[rng.permutation(n_items)]
    logits = SCALE * users @ items.T / np.sqrt(dim) + zipf
    order = np.argsort(-(logits + rng.gumbel(size=logits.shape)), axis=1)
    n_distinct = rng.integers(20, 36, size=n_users)
    n_distinct[:15] = rng.integers(3, 2 * HOLDOUT_K + 1, size=15)  # ineligible for slices
    take = np.arange(n_items)[None, :] < n_distinct[:, None]
    user_col = np.broadcast_to(np.arange(n_users)[:, None], order.shape)[take]
    item_col = order[take]
    repeat = rng.random(item_col.size) < 0.25  # some items are touched more than once
    user_col = np.concatenate([user_col, user_col[repeat]])
    item_col = np.concatenate([item_col, item_col[repeat]])
    frame = pd.DataFrame(
        {
            "user_id": user_names(n_users)[user_col],
            "item_id": item_names(n_items, seed)[item_col],
            "timestamp": pd.Timestamp("2024-01-01")
            + pd.to_timedelta(rng.integers(0, 10**7, size=item_col.size), unit="s"),
            "weight": rng.integers(1, 4, size=item_col.size).astype(np.float64),
        }
    )
    if shuffle:
        frame["item_id"] = rng.permutation(frame["item_id"].to_numpy())
    return frame


@pytest.fixture(scope="module")
def interactions() -> pd.DataFrame:
    return make_interactions()


@pytest.fixture(scope="module")
def splits(interactions: pd.DataFrame) -> InteractionSplits:
    return build_interaction_data(interactions, HOLDOUT_K, MIN_ITEMS, WEIGHTING)


@pytest.fixture(scope="module")
def data(splits: InteractionSplits) -> InteractionData:
    """The judged view: fit on train + selection, scored on the gate slice."""
    return splits.judged


@pytest.fixture(scope="module")
def model(data: InteractionData) -> CpuAls:
    return train_als(data, PARAMS, seed=SEED, num_threads=1)


def _keys(data: InteractionData) -> set[tuple[str, str]]:
    coo = data.train.tocoo()
    return set(zip(data.user_ids[coo.row].tolist(), data.item_ids[coo.col].tolist(), strict=True))


def _pairs(frame: pd.DataFrame) -> set[tuple[str, str]]:
    return set(zip(frame["user_id"], frame["item_id"], strict=True))


# ----------------------------------------------------------------------------- ids


def test_ids_stay_text_and_integers_become_their_decimal_text() -> None:
    kept = as_ids(pd.Series(["00042", "42", "1e5", "9223372036854775808"]), "x")
    assert kept.tolist() == ["00042", "42", "1e5", "9223372036854775808"]
    assert all(type(v) is str for v in kept)
    assert as_ids(np.array([42, 7], dtype=np.int64), "x").tolist() == ["42", "7"]
    assert as_ids(pd.Series([3, 4], dtype=object), "x").tolist() == ["3", "4"]
    for bad, why in (
        (pd.Series([1.0, 2.0]), "float64"),
        (pd.Series(["a", None]), "missing"),
        (pd.Series(["a", 3], dtype=object), "mixed"),
    ):
        with pytest.raises(ValueError, match=why) as err:
            as_ids(bad, "raw/interactions.user_id")
        assert "raw/interactions.user_id" in str(err.value)


def test_00042_and_42_are_two_users_end_to_end() -> None:
    # Same item set up so both users are known; an integer cast would merge them into one.
    frame = pd.DataFrame(
        {
            "user_id": ["00042", "00042", "42", "42", "7", "7"],
            "item_id": ["a", "b", "b", "c", "a", "c"],
            "timestamp": pd.to_datetime(np.arange(6), unit="D"),
            "weight": np.ones(6),
        }
    )
    served = build_interaction_data(frame, 0, 1, Weighting()).served
    assert sorted(served.user_ids.tolist()) == ["00042", "42", "7"]
    model = train_als(served, AlsParams(factors=2, iterations=2), seed=0, num_threads=1)
    bundle = build_bundle(model, served, AlsParams(factors=2, iterations=2), fallback_size=3)
    recs = recommend_users(bundle, ["00042", "42", "042"], k=3)
    per_user = recs.groupby("user_id")["item_id"].apply(list).to_dict()
    assert per_user["00042"] == ["c"]  # had a and b
    assert per_user["42"] == ["a"]  # had b and c
    assert per_user["042"] == bundle.fallback_items.tolist()  # unknown: the fallback
    assert recs.loc[recs["user_id"] == "042", "is_fallback"].all()  # unknown: fallback
    assert not recs.loc[recs["user_id"] != "042", "is_fallback"].any()


# ----------------------------------------------------------------------------- data prep


def test_gate_and_selection_slices_are_the_last_items_and_disjoint(
    interactions: pd.DataFrame, splits: InteractionSplits
) -> None:
    frame = pd.DataFrame(
        {
            "user_id": splits.user_ids[splits.rows],
            "item_id": splits.item_ids[splits.cols],
            "split": splits.split,
        }
    )
    assert frame["user_id"].map(type).eq(str).all() and frame["item_id"].map(type).eq(str).all()
    assert set(frame["user_id"]) == set(interactions["user_id"])  # verbatim, "00040" kept
    # Nothing lost: the slices partition the distinct observed pairs.
    assert (
        _pairs(frame) == _pairs(interactions) and not frame.duplicated(["user_id", "item_id"]).any()
    )

    distinct = interactions.groupby("user_id")["item_id"].nunique()
    eligible = set(distinct[distinct >= max(MIN_ITEMS, 2 * HOLDOUT_K + 1)].index)
    per_user = frame.groupby(["user_id", "split"]).size().unstack(fill_value=0)
    with_slices = per_user[(per_user[GATE] > 0) | (per_user[SELECTION] > 0)]
    assert set(with_slices.index) == eligible and len(eligible) < len(per_user)
    assert (with_slices[GATE] == HOLDOUT_K).all() and (with_slices[SELECTION] == HOLDOUT_K).all()
    assert (per_user[TRAIN] > 0).all()  # every user keeps train items

    # Temporal: gate items were last touched no earlier than selection items, and those no
    # earlier than train items.
    last = interactions.groupby(["user_id", "item_id"])["timestamp"].max().rename("last")
    tagged = frame.merge(last.reset_index(), on=["user_id", "item_id"])
    tagged = tagged[tagged["user_id"].isin(eligible)]
    bounds = tagged.groupby(["user_id", "split"])["last"].agg(["min", "max"]).unstack()
    assert (bounds[("min", GATE)] >= bounds[("max", SELECTION)]).all()
    assert (bounds[("min", SELECTION)] >= bounds[("max", TRAIN)]).all()
    summary = splits.summary()
    assert summary["users_with_slices"] == len(eligible)
    assert summary["gate_pairs"] == summary["selection_pairs"] == HOLDOUT_K * len(eligible)
    assert sum(summary[f"{s}_pairs"] for s in ("train", "selection", "gate")) == len(frame)


def test_views_fit_on_their_slices_and_score_on_the_next(splits: InteractionSplits) -> None:
    gate = _pairs(splits.judged.holdout)
    selection = _pairs(splits.selection.holdout)
    assert gate and selection and not gate & selection
    assert not _keys(splits.selection) & (gate | selection)
    assert selection <= _keys(splits.judged) and not gate & _keys(splits.judged)
    assert (gate | selection) <= _keys(splits.served) and splits.served.holdout.empty
    assert splits.served.train.nnz == len(splits.rows)
    for view in (splits.selection, splits.judged, splits.served):
        assert view.user_ids is splits.user_ids and view.item_ids is splits.item_ids


@pytest.mark.parametrize("scheme", SCHEMES)
def test_weighting_schemes_give_finite_non_negative_confidences(
    interactions: pd.DataFrame, data: InteractionData, scheme: Scheme
) -> None:
    weighted = build_interaction_data(
        interactions, HOLDOUT_K, MIN_ITEMS, Weighting(scheme=scheme, alpha=5.0)
    ).judged
    train = weighted.train
    assert isinstance(train, sp.csr_matrix) and train.dtype == np.float32
    assert np.isfinite(train.data).all() and (train.data >= 0).all()
    # Same pattern whatever the scheme: weighting must never drop an observed pair.
    assert train.nnz == data.train.nnz
    assert np.array_equal(train.indices, data.train.indices)


def test_bm25_with_an_item_everyone_saw_stays_non_negative() -> None:
    # idf = log(N) - log1p(N) < 0 for a universal item; confidences must not go negative.
    frame = pd.DataFrame(
        {
            "user_id": [1, 1, 2, 2, 3],
            "item_id": [10, 11, 10, 12, 10],
            "timestamp": [1, 2, 3, 4, 5],
            "weight": [1.0, 0.0, 2.0, 1.0, 1.0],
        }
    )
    for scheme in SCHEMES:
        out = build_interaction_data(frame, 0, 1, Weighting(scheme=scheme)).judged
        assert out.holdout.empty
        assert np.isfinite(out.train.data).all() and (out.train.data >= 1.0).all()
        assert out.train.nnz == 5


def test_popularity_items_orders_by_user_count_then_index() -> None:
    train = sp.csr_matrix(np.array([[1, 0, 1, 1], [0, 0, 1, 1], [1, 0, 0, 0]], dtype=np.float32))
    assert popularity_items(train, 4).tolist() == [0, 2, 3, 1]
    assert popularity_items(train, 2).tolist() == [0, 2]


def test_popular_unseen_skips_each_users_train_items(data: InteractionData) -> None:
    rows = np.arange(data.n_users)
    recs = popular_unseen(data.train, rows, K)
    assert recs.shape == (data.n_users, K) and (recs >= 0).all()
    seen = data.train[rows].toarray() > 0
    assert not np.take_along_axis(seen, recs, axis=1).any()


# ----------------------------------------------------------------------------- metrics


@pytest.mark.parametrize(
    ("recommended", "holdout", "expected"),
    [
        # precision, recall, ndcg, map, coverage (n_items = 4, k = 2)
        pytest.param([[0, 1]], [{0, 1}], (1.0, 1.0, 1.0, 1.0, 0.5), id="perfect"),
        pytest.param(
            [[0, 2]], [{0, 1}], (0.5, 0.5, 1 / (1 + 1 / np.log2(3)), 0.5, 0.5), id="half-first"
        ),
        pytest.param(
            [[2, 0]],
            [{0, 1}],
            (0.5, 0.5, (1 / np.log2(3)) / (1 + 1 / np.log2(3)), 0.25, 0.5),
            id="half-second",
        ),
        pytest.param([[2, 3]], [{0, 1}], (0.0, 0.0, 0.0, 0.0, 0.5), id="none"),
    ],
)
def test_metrics_match_hand_computed(
    recommended: list[list[int]], holdout: list[set[int]], expected: tuple[float, ...]
) -> None:
    metrics = evaluate_recommendations(np.array(recommended), holdout, n_items=4, k=2)
    got = (metrics.precision, metrics.recall, metrics.ndcg, metrics.map, metrics.coverage)
    assert got == pytest.approx(expected)
    assert metrics.n_users == 1 and metrics.k == 2


def test_metrics_multi_user_padding_and_empty_holdouts() -> None:
    recommended = np.array([[0, 1, -1], [3, -1, -1], [2, 4, 5]])
    holdout = [[1], [3, 4], []]  # third user has no holdout: skipped, also for coverage
    metrics = evaluate_recommendations(recommended, holdout, n_items=10, k=3)
    assert metrics.n_users == 2
    assert metrics.precision == pytest.approx((1 / 3 + 1 / 3) / 2)
    assert metrics.recall == pytest.approx((1.0 + 0.5) / 2)
    ndcg_user2 = 1.0 / (1.0 + 1 / np.log2(3))
    assert metrics.ndcg == pytest.approx((1 / np.log2(3) + ndcg_user2) / 2)
    assert metrics.map == pytest.approx((0.5 + 0.5) / 2)
    assert metrics.coverage == pytest.approx(3 / 10)
    as_dict = metrics.as_dict()
    assert set(as_dict) == {"precision", "recall", "ndcg", "map", "coverage", "n_users", "k"}
    assert all(isinstance(v, float) for v in as_dict.values())


# ----------------------------------------------------------------------------- models


def test_als_beats_popularity_on_signal(data: InteractionData, model: CpuAls) -> None:
    als = evaluate_model(model, data, K)
    pop = evaluate_popularity(data, K)
    assert als.n_users == pop.n_users == data.holdout["user_id"].nunique()
    assert als.precision > 1.5 * pop.precision
    assert als.ndcg > pop.ndcg
    assert isinstance(als, RankingMetrics) and 0.0 < als.coverage <= 1.0


def test_als_does_not_beat_popularity_on_shuffled_items() -> None:
    shuffled = build_interaction_data(
        make_interactions(seed=0, shuffle=True), HOLDOUT_K, MIN_ITEMS, WEIGHTING
    ).judged
    model = train_als(shuffled, PARAMS, seed=SEED, num_threads=1)
    als = evaluate_model(model, shuffled, K)
    pop = evaluate_popularity(shuffled, K)
    assert pop.precision > 0
    assert als.precision / pop.precision < 1.2


def test_training_is_deterministic(data: InteractionData, model: CpuAls) -> None:
    again = train_als(data, PARAMS, seed=SEED, num_threads=1)
    np.testing.assert_array_equal(model.user_factors, again.user_factors)
    np.testing.assert_array_equal(model.item_factors, again.item_factors)
    assert evaluate_model(model, data, K) == evaluate_model(again, data, K)


def test_search_als_picks_best_precision(splits: InteractionSplits) -> None:
    grid = [
        AlsParams(factors=2, regularization=0.05, iterations=3),
        AlsParams(factors=16, regularization=0.05, iterations=10),
    ]
    best, trials = search_als(splits.selection, grid, k=K, seed=SEED, num_threads=1)
    assert len(trials) == 2
    assert {"factors", "regularization", "iterations", "precision", "ndcg"} <= set(trials)
    top = trials.sort_values(["precision", "ndcg"], ascending=False).iloc[0]
    assert best == grid[int(top["trial"])]
    assert trials["chosen"].tolist() == [t == top["trial"] for t in trials["trial"]]
    with pytest.raises(ValueError):
        search_als(splits.selection, [], k=K, seed=SEED)


# ----------------------------------------------------------------------------- serving


def test_save_load_round_trip_gives_identical_recommendations(
    tmp_path: Path, data: InteractionData, model: CpuAls
) -> None:
    bundle = build_bundle(model, data, PARAMS, fallback_size=20)
    written = save_bundle(bundle, tmp_path / "bundle")
    assert sorted(p.name for p in written) == ["ids_and_items.npz", "model.npz", "params.json"]
    assert all(p.exists() for p in written)
    for path in written:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as arrays:  # no object arrays anywhere
                assert all(arrays[name].dtype != object for name in arrays.files)

    loaded = load_bundle(tmp_path / "bundle")
    assert loaded.params == PARAMS
    assert loaded.user_ids.tolist() == bundle.user_ids.tolist()
    assert all(type(v) is str for v in loaded.item_ids)
    np.testing.assert_array_equal(loaded.fallback_items, bundle.fallback_items)
    assert (loaded.user_items != bundle.user_items).nnz == 0
    users = np.concatenate([data.user_ids[::7], ["-1", "00000", "no-such-user"]])
    pd.testing.assert_frame_equal(
        recommend_users(bundle, users, K), recommend_users(loaded, users, K)
    )
    prefixed = save_bundle(bundle, tmp_path / "bundle", prefix="judged_")
    assert {p.name for p in prefixed} == {f"judged_{p.name}" for p in written}
    assert load_bundle(tmp_path / "bundle", prefix="judged_").user_ids.tolist() == (
        bundle.user_ids.tolist()
    )


def test_a_format_1_bundle_with_integer_ids_still_serves(tmp_path: Path) -> None:
    frame = make_interactions(n_users=80, n_items=40, seed=3)
    frame = frame.assign(
        user_id=frame["user_id"].str.lstrip("0").astype(np.int64),
        item_id=pd.factorize(frame["item_id"])[0] + 100,
    )
    served = build_interaction_data(frame, 0, 1, WEIGHTING).served
    model = train_als(served, PARAMS, seed=SEED, num_threads=1)
    bundle = build_bundle(model, served, PARAMS, fallback_size=K)
    save_bundle(bundle, tmp_path)
    # Rewrite the files as the previous release did: int64 id arrays, format_version 1.
    with np.load(tmp_path / "ids_and_items.npz", allow_pickle=False) as arrays:
        old = {name: arrays[name] for name in arrays.files}
    for name in ("user_ids", "item_ids", "fallback_items"):
        old[name] = old[name].astype(np.int64)
    np.savez(tmp_path / "ids_and_items.npz", **old)
    params = json.loads((tmp_path / "params.json").read_text())
    (tmp_path / "params.json").write_text(json.dumps({**params, "format_version": 1}))
    loaded = load_bundle(tmp_path)
    assert loaded.user_ids.tolist() == bundle.user_ids.tolist()
    pd.testing.assert_frame_equal(
        recommend_users(loaded, [40, "41"], K), recommend_users(bundle, ["40", "41"], K)
    )


def test_recommend_users_mixes_known_and_fallback(data: InteractionData, model: CpuAls) -> None:
    bundle = build_bundle(model, data, PARAMS, fallback_size=15)
    known = data.user_ids[::3]
    unknown = np.array(["40", "0040", "f47ac10b-58cc-4372-a567-0e02b2c3d479"], dtype=object)
    assert not set(unknown) & set(data.user_ids)  # "00040" is known; "40" and "0040" are not
    request = np.concatenate([unknown, known, known[:4]])  # unsorted, with duplicates
    recs = recommend_users(bundle, request, K)

    assert list(recs.columns) == ["user_id", "rank", "item_id", "score", "is_fallback"]
    assert recs.dtypes.astype(str).tolist() == ["object", "int32", "object", "float64", "bool"]
    assert recs.groupby("user_id").size().eq(K).all()
    assert set(recs["user_id"]) == set(known) | set(unknown)
    assert (recs["rank"] == recs.groupby("user_id").cumcount() + 1).all()
    assert recs["user_id"].is_monotonic_increasing

    fallback = recs[recs["user_id"].isin(unknown)]
    assert fallback["is_fallback"].all()
    expected = np.tile(bundle.fallback_items[:K], len(unknown))
    assert np.array_equal(fallback["item_id"].to_numpy(), expected)
    assert set(fallback["item_id"]) <= set(data.item_ids)  # UUIDs come back verbatim
    assert np.allclose(fallback["score"], np.tile(bundle.fallback_scores[:K], len(unknown)))
    assert fallback["score"].between(0, 1).all()

    personal = recs[recs["user_id"].isin(known)]
    assert not personal["is_fallback"].any()
    assert not personal.duplicated(["user_id", "item_id"]).any()
    assert not _pairs(personal) & _keys(data)
    # Scores are non-increasing within each user.
    assert (personal.groupby("user_id")["score"].diff().dropna() <= 1e-6).all()

    pd.testing.assert_frame_equal(recs, recommend_users(bundle, request, K))  # deterministic
    with pytest.raises(ValueError):
        recommend_users(bundle, known, k=16)  # fallback shorter than k
    with pytest.raises(ValueError, match="requested user_id"):
        recommend_users(bundle, np.array([1.5]), K)
    assert recommend_users(bundle, np.array([], dtype=object), K).empty


def test_known_user_with_almost_whole_catalogue_gets_only_unseen_items() -> None:
    # User 1 has seen 4 of 5 items: with k=3 only the single unseen item may come back.
    frame = pd.DataFrame(
        {
            "user_id": [1, 1, 1, 1, 2, 2, 3, 3],
            "item_id": [10, 11, 12, 13, 10, 14, 11, 12],
            "timestamp": np.arange(8),
            "weight": np.ones(8),
        }
    )
    data = build_interaction_data(frame, 0, 1, Weighting()).served
    model = train_als(data, AlsParams(factors=2, iterations=2), seed=0, num_threads=1)
    bundle = build_bundle(model, data, AlsParams(factors=2, iterations=2), fallback_size=5)
    recs = recommend_users(bundle, np.array([1]), k=3)
    assert recs["item_id"].tolist() == ["14"]
    assert recs["rank"].tolist() == [1]
