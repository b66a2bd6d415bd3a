"""Tests for lifecycle.recommender on small synthetic implicit-feedback data."""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from lifecycle.recommender import (
    AlsParams,
    CpuAls,
    InteractionData,
    RankingMetrics,
    Weighting,
    _popular_unseen,
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


def make_interactions(
    n_users: int = 600, n_items: int = 150, dim: int = 8, seed: int = 0, shuffle: bool = False
) -> pd.DataFrame:
    """Latent-factor preferences plus Zipf popularity, ~40 events per user with repeats.

    Items are drawn without replacement per user by Gumbel top-k on the logits; a few users
    get fewer than MIN_ITEMS distinct items so the eligibility rule is exercised. With
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
    n_distinct[:15] = rng.integers(3, MIN_ITEMS, size=15)  # ineligible for holdout
    take = np.arange(n_items)[None, :] < n_distinct[:, None]
    user_col = np.broadcast_to(np.arange(n_users)[:, None], order.shape)[take]
    item_col = order[take]
    repeat = rng.random(item_col.size) < 0.25  # some items are touched more than once
    user_col = np.concatenate([user_col, user_col[repeat]])
    item_col = np.concatenate([item_col, item_col[repeat]])
    frame = pd.DataFrame(
        {
            "user_id": (user_col + 1000).astype(np.int64),
            "item_id": (item_col * 3 + 5).astype(np.int64),  # non-contiguous external ids
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
def data(interactions: pd.DataFrame) -> InteractionData:
    return build_interaction_data(interactions, HOLDOUT_K, MIN_ITEMS, WEIGHTING)


@pytest.fixture(scope="module")
def model(data: InteractionData) -> CpuAls:
    return train_als(data, PARAMS, seed=SEED, num_threads=1)


def _train_keys(data: InteractionData) -> set[tuple[int, int]]:
    coo = data.train.tocoo()
    return set(zip(data.user_ids[coo.row].tolist(), data.item_ids[coo.col].tolist(), strict=True))


# ----------------------------------------------------------------------------- data prep


def test_holdout_is_last_k_distinct_items_and_removed_from_train(
    interactions: pd.DataFrame, data: InteractionData
) -> None:
    holdout = data.holdout
    assert list(holdout.columns) == ["user_id", "item_id"]
    assert holdout.dtypes.tolist() == [np.int64, np.int64]
    assert not holdout.duplicated().any()

    per_user = holdout.groupby("user_id").size()
    assert per_user.max() <= HOLDOUT_K
    distinct = interactions.groupby("user_id")["item_id"].nunique()
    eligible = distinct[distinct >= MIN_ITEMS].index
    assert set(per_user.index) == set(eligible)
    assert (per_user == HOLDOUT_K).all()

    train_keys = _train_keys(data)
    holdout_keys = set(zip(holdout["user_id"], holdout["item_id"], strict=True))
    assert not train_keys & holdout_keys
    # Nothing is lost: train + holdout are exactly the distinct observed pairs.
    observed = set(zip(interactions["user_id"], interactions["item_id"], strict=True))
    assert train_keys | holdout_keys == observed

    # Temporal: every holdout item was last touched no earlier than any train item.
    last = interactions.groupby(["user_id", "item_id"])["timestamp"].max().rename("last")
    tagged = last.reset_index().merge(holdout.assign(held=True), how="left")
    tagged["held"] = tagged["held"].notna()
    tagged = tagged[tagged["user_id"].isin(eligible)]
    bounds = tagged.groupby(["user_id", "held"])["last"].agg(["min", "max"]).unstack()
    assert (bounds[("min", True)] >= bounds[("max", False)]).all()

    # Every user keeps at least one train item; ids are sorted int64.
    assert (np.diff(data.train.indptr) > 0).all()
    assert data.user_ids.dtype == np.int64 and data.item_ids.dtype == np.int64
    assert (np.diff(data.user_ids) > 0).all() and (np.diff(data.item_ids) > 0).all()


@pytest.mark.parametrize("scheme", SCHEMES)
def test_weighting_schemes_give_finite_non_negative_confidences(
    interactions: pd.DataFrame, data: InteractionData, scheme: Scheme
) -> None:
    weighted = build_interaction_data(
        interactions, HOLDOUT_K, MIN_ITEMS, Weighting(scheme=scheme, alpha=5.0)
    )
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
        out = build_interaction_data(frame, 0, 1, Weighting(scheme=scheme))
        assert out.holdout.empty
        assert np.isfinite(out.train.data).all() and (out.train.data >= 1.0).all()
        assert out.train.nnz == 5


def test_popularity_items_orders_by_user_count_then_index() -> None:
    train = sp.csr_matrix(np.array([[1, 0, 1, 1], [0, 0, 1, 1], [1, 0, 0, 0]], dtype=np.float32))
    assert popularity_items(train, 4).tolist() == [0, 2, 3, 1]
    assert popularity_items(train, 2).tolist() == [0, 2]


def test_popular_unseen_skips_each_users_train_items(data: InteractionData) -> None:
    rows = np.arange(data.n_users)
    recs = _popular_unseen(data.train, rows, K)
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
    )
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


def test_search_als_picks_best_precision(data: InteractionData) -> None:
    grid = [
        AlsParams(factors=2, regularization=0.05, iterations=3),
        AlsParams(factors=16, regularization=0.05, iterations=10),
    ]
    best, trials = search_als(data, grid, k=K, seed=SEED, num_threads=1)
    assert len(trials) == 2
    assert {"factors", "regularization", "iterations", "precision", "ndcg"} <= set(trials)
    top = trials.sort_values(["precision", "ndcg"], ascending=False).iloc[0]
    assert best == grid[int(top["trial"])]
    with pytest.raises(ValueError):
        search_als(data, [], k=K, seed=SEED)


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
    np.testing.assert_array_equal(loaded.fallback_items, bundle.fallback_items)
    assert (loaded.user_items != bundle.user_items).nnz == 0
    users = np.concatenate([data.user_ids[::7], [-1, 10**9]])
    pd.testing.assert_frame_equal(
        recommend_users(bundle, users, K), recommend_users(loaded, users, K)
    )


def test_recommend_users_mixes_known_and_fallback(data: InteractionData, model: CpuAls) -> None:
    bundle = build_bundle(model, data, PARAMS, fallback_size=15)
    known = data.user_ids[::3]
    unknown = np.array([-5, 1, 10**9], dtype=np.int64)
    request = np.concatenate([unknown, known, known[:4]])  # unsorted, with duplicates
    recs = recommend_users(bundle, request, K)

    assert list(recs.columns) == ["user_id", "rank", "item_id", "score", "is_fallback"]
    assert recs.dtypes.astype(str).tolist() == ["int64", "int32", "int64", "float64", "bool"]
    assert recs.groupby("user_id").size().eq(K).all()
    assert set(recs["user_id"]) == set(known) | set(unknown)
    assert (recs["rank"] == recs.groupby("user_id").cumcount() + 1).all()
    keys = recs[["user_id", "rank"]].to_numpy()
    assert np.array_equal(keys, keys[np.lexsort((keys[:, 1], keys[:, 0]))])

    fallback = recs[recs["user_id"].isin(unknown)]
    assert fallback["is_fallback"].all()
    expected = np.tile(bundle.fallback_items[:K], len(unknown))
    assert np.array_equal(fallback["item_id"].to_numpy(), expected)
    assert np.allclose(fallback["score"], np.tile(bundle.fallback_scores[:K], len(unknown)))
    assert fallback["score"].between(0, 1).all()

    personal = recs[recs["user_id"].isin(known)]
    assert not personal["is_fallback"].any()
    assert not personal.duplicated(["user_id", "item_id"]).any()
    train_keys = _train_keys(data)
    pairs = zip(personal["user_id"], personal["item_id"], strict=True)
    assert not any(pair in train_keys for pair in pairs)
    # Scores are non-increasing within each user.
    assert (personal.groupby("user_id")["score"].diff().dropna() <= 1e-6).all()

    pd.testing.assert_frame_equal(recs, recommend_users(bundle, request, K))  # deterministic
    with pytest.raises(ValueError):
        recommend_users(bundle, known, k=16)  # fallback shorter than k
    assert recommend_users(bundle, np.array([], dtype=np.int64), K).empty


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
    data = build_interaction_data(frame, 0, 1, Weighting())
    model = train_als(data, AlsParams(factors=2, iterations=2), seed=0, num_threads=1)
    bundle = build_bundle(model, data, AlsParams(factors=2, iterations=2), fallback_size=5)
    recs = recommend_users(bundle, np.array([1]), k=3)
    assert recs["item_id"].tolist() == [14]
    assert recs["rank"].tolist() == [1]
