"""The million-customer paths: exact top-k serving and the scale benchmark's like-for-like work."""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from benchmarks.scale import build_activity, features_job
from lifecycle.als import AlsParams, recommend_indices
from lifecycle.topk import top_k_unseen

K = 10


def _seen(users: int, items: int, per_user: int, seed: int) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    rows = np.repeat(np.arange(users), per_user)
    cols = rng.integers(0, items, users * per_user)
    matrix = sp.csr_matrix((np.ones(rows.size, np.float32), (rows, cols)), shape=(users, items))
    matrix.sum_duplicates()
    return matrix


def _reference(user_f: np.ndarray, item_f: np.ndarray, seen: sp.csr_matrix, k: int) -> np.ndarray:
    """Brute force: every score, seen ones dropped, best first and lower index on ties."""
    scores = user_f.astype(np.float64) @ item_f.astype(np.float64).T
    scores[seen.toarray() > 0] = -np.inf
    out = np.full((len(scores), k), -1, dtype=np.int64)
    for row, values in enumerate(scores):
        order = np.lexsort((np.arange(values.size), -values))[:k]
        keep = order[np.isfinite(values[order])]
        out[row, : keep.size] = keep
    return out


def test_all_user_top_k_equals_implicit_recommend() -> None:
    """The serving kernel (grouped selection, chunks on threads) returns implicit's lists,
    item for item and in order, on a trained model."""
    import implicit.als

    seen = _seen(600, 900, 15, seed=1)
    params = AlsParams(factors=16, regularization=0.1, iterations=5)
    model = implicit.als.AlternatingLeastSquares(
        factors=params.factors, iterations=params.iterations, random_state=0, num_threads=1
    )
    model.fit(seen, show_progress=False)
    users = np.arange(seen.shape[0])
    theirs, their_scores = model.recommend(users, seen, N=K, filter_already_liked_items=True)
    for cells, threads in [(1 << 20, 0), (5_000, 2), (900, 1)]:
        ours, scores = top_k_unseen(model.user_factors, model.item_factors, seen, K, cells, threads)
        np.testing.assert_array_equal(ours, theirs)
        np.testing.assert_allclose(scores, their_scores, rtol=1e-5, atol=1e-5)
    served, _ = recommend_indices(model, seen, users, K)
    np.testing.assert_array_equal(served, theirs)


@pytest.mark.parametrize("items", [7, 40, 3_000])
def test_ties_go_to_the_lower_item_index_and_unfillable_slots_stay_empty(items: int) -> None:
    """Integer factors make scores exact and ties everywhere (duplicated items, a zero user):
    the answer is the brute-force order, whatever the chunking and tiling; a user who has seen
    all but a few items gets only those, the rest -1 / NaN."""
    rng = np.random.default_rng(items)
    base = rng.integers(-2, 3, size=(max(items // 3, 1), 4)).astype(np.float32)
    item_f = base[rng.integers(0, len(base), items)]
    user_f = rng.integers(-2, 3, size=(300, 4)).astype(np.float32)
    user_f[0] = 0.0
    seen = _seen(300, items, 5, seed=items).tolil()
    seen[1, : max(items - 3, 0)] = 1.0
    # Every item of the first tiles seen: the user's slots stay free past them (more than one
    # product tile of 512 items at 3,000).
    seen[2, : max(items - 20, 0) and min(items - 20, 1_100)] = 1.0
    seen = seen.tocsr()
    expected = _reference(user_f, item_f, seen, K)
    for cells, threads in [(1 << 20, 0), (64, 2), (1, 1)]:
        ids, scores = top_k_unseen(user_f, item_f, seen, K, cells, threads)
        np.testing.assert_array_equal(ids, expected)
        assert np.array_equal(np.isnan(scores), ids < 0)
    assert (ids[1] >= 0).sum() == min(K, items - seen[1].nnz) <= 3


def test_benchmark_feature_day_direct_query_computes_the_platform_columns(tmp_path: Path) -> None:
    """The scale benchmark's direct DuckDB query and the platform's one-day path give the same
    rows, so their time ratio compares like with like."""
    path = tmp_path / "activity.duckdb"
    build_activity(path, 400)
    platform = features_job("platform", str(path))
    direct = features_job("direct", str(path))
    assert platform["rows"] == direct["rows"] > 300
    a, b = platform["check"], direct["check"]
    assert list(a.index) == list(b.index)
    np.testing.assert_allclose(a.to_numpy(float), b.to_numpy(float))


def test_feature_running_sums_and_maxima_are_numpy_s_bit_for_bit() -> None:
    """The row-by-row running sums / maxima (fast at 1M customers) give exactly the floats of
    ``np.cumsum`` / ``np.maximum.accumulate`` down the days, so feature values do not move."""
    from lifecycle.feature_kernel import cumsum0 as _cumsum0
    from lifecycle.feature_kernel import running_max as _running_max

    rng = np.random.default_rng(3)
    spend = np.round(rng.gamma(2.0, 20.0, (91, 1_000)) * (rng.random((91, 1_000)) < 0.1), 2)
    expected = np.zeros((92, 1_000))
    np.cumsum(spend, axis=0, out=expected[1:])
    assert np.array_equal(_cumsum0(spend), expected)
    seen_day = np.where(spend > 0, np.arange(91.0)[:, None], -np.inf)
    assert np.array_equal(_running_max(seen_day), np.maximum.accumulate(seen_day, axis=0))
    assert _running_max(np.empty((0, 3))).shape == (0, 3)


def test_chunked_training_matrix_keeps_holdout_auc(monkeypatch: pytest.MonkeyPatch) -> None:
    """The challenger's training matrix, quantised from row chunks (no full copy of the
    frame), scores a holdout within 0.002 AUC of a plain DMatrix fit with the same settings."""
    import xgboost as xgb

    from benchmarks.scale import N_FEATURES, _churn_frame
    from lifecycle import churn_model
    from lifecycle.metrics import roc_auc

    monkeypatch.setattr(churn_model, "CHUNK_ROWS", 7_000)  # 6 chunks
    train, valid, hold = _churn_frame(40_000, 1), _churn_frame(8_000, 2), _churn_frame(20_000, 3)
    names = [f"f{i}" for i in range(N_FEATURES)]
    space = churn_model.SearchSpace(
        max_depth=(4,), learning_rate=(0.1,), min_child_weight=(1.0,), subsample=(1.0,),
        colsample_bytree=(1.0,), num_boost_round=40, early_stopping_rounds=40, n_trials=1,
    )  # fmt: skip
    trained = churn_model.train_churn_model(train, valid, names, "churned", space)
    y_hold = hold["churned"].to_numpy()
    ours = roc_auc(y_hold, churn_model.predict_scores(trained.booster, hold, names))
    params = {k: v for k, v in trained.params.items() if k != "num_boost_round"}
    plain = xgb.train(params, xgb.DMatrix(train[names], label=train["churned"]), 40)
    theirs = roc_auc(y_hold, plain.predict(xgb.DMatrix(hold[names])).astype(np.float64))
    assert trained.best_iteration == 39
    assert abs(ours - theirs) <= 0.002
    served = churn_model.refit(trained, train, "churned")
    assert abs(roc_auc(y_hold, churn_model.predict_scores(served, hold, names)) - theirs) <= 0.002
    with pytest.raises(KeyError, match="train frame"):
        churn_model.train_churn_model(train.drop(columns="f3"), valid, names, "churned", space)


def test_feature_rows_come_sorted_by_day_then_customer_across_chunks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Rows are ordered by integer positions now, not by re-sorting text ids: with several
    customer chunks and days asked out of order, the order is still (day, customer id)."""
    import pandas as pd

    from lifecycle import feature_kernel, features

    monkeypatch.setattr(feature_kernel, "CHUNK_CUSTOMERS", 7)
    rng = np.random.default_rng(4)
    n = 400
    activity = pd.DataFrame(
        {
            "activity_date": pd.Timestamp("2026-01-01")
            + pd.to_timedelta(rng.integers(0, 60, n), unit="D"),
            "customer_id": [f"c{i:03d}" for i in rng.integers(0, 50, n)],
            "txn_count": 1,
            "spend": 10.0,
            "max_amount": 10.0,
        }
    ).drop_duplicates(["activity_date", "customer_id"])
    days = pd.DatetimeIndex(["2026-02-20", "2026-01-20", "2026-02-01"])
    out = features.customer_features(activity, days, (7, 30))
    expected = out.sort_values(["as_of_date", "customer_id"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(out, expected)
    assert out["as_of_date"].nunique() == 3 and len(out) > 60
