"""All history, every known user: training sets read every day since the first partition, and
the daily table answers every user with any interaction up to D from their whole history."""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from assets.keys import REC_DATASET, RECOMMENDATIONS
from definitions import build_defs
from lifecycle.als import fold_in_top_k, recommend_indices
from lifecycle.rec_data import window_start
from lifecycle.rec_serving import daily_recommendations
from lifecycle.recommender import (
    AlsParams,
    RecommenderBundle,
    Weighting,
    build_bundle,
    build_interaction_data,
    train_als,
)
from tests.conftest import small_settings

K = 5
START = pd.Timestamp("2026-01-01")
CUT = START + pd.Timedelta(days=60)  # the fit sees [START, CUT)
DAYS = pd.date_range(CUT + pd.Timedelta(days=5), periods=6, freq="D")
WEIGHTING = Weighting(alpha=2.0)
NEWCOMER, STRANGER, IDLE = "new-1", "new-2", "u-0"


def _events() -> pd.DataFrame:
    """Latent tastes over Zipf popularity across 80 days, plus three special users: one who
    arrives after the fit (on known items), one who only touches items the fit never saw, and
    one whose last event is on the first day."""
    rng = np.random.default_rng(3)
    n_users, n_items, dim = 200, 80, 4
    users, items = rng.normal(size=(n_users, dim)), rng.normal(size=(n_items, dim))
    zipf = -np.log(np.arange(1, n_items + 1))[rng.permutation(n_items)]
    order = np.argsort(-(2.0 * users @ items.T + zipf + rng.gumbel(size=(n_users, n_items))), 1)
    take = np.arange(n_items)[None, :] < rng.integers(8, 20, size=n_users)[:, None]
    user_col = np.broadcast_to(np.arange(n_users)[:, None], order.shape)[take]
    day = START + pd.to_timedelta(rng.integers(1, 80, size=user_col.size), unit="D")
    frame = pd.DataFrame(
        {
            "user_id": np.char.add("u-", user_col.astype(str)).astype(object),
            "item_id": np.char.add("i-", order[take].astype(str)).astype(object),
            "event_date": day,
            "weight": rng.integers(1, 4, size=user_col.size).astype(float),
        }
    )
    frame = frame[frame["user_id"] != IDLE]
    special = pd.DataFrame(
        {
            "user_id": [IDLE, NEWCOMER, NEWCOMER, NEWCOMER, STRANGER],
            "item_id": ["i-1", "i-1", "i-2", "i-3", "brand-new"],
            "event_date": [START, DAYS[2], DAYS[2], DAYS[4], DAYS[1]],
            "weight": 1.0,
        }
    )
    return pd.concat([frame, special], ignore_index=True)


EVENTS = _events()


@pytest.fixture(scope="module")
def bundle() -> RecommenderBundle:
    window = EVENTS[EVENTS["event_date"] < CUT].rename(columns={"event_date": "timestamp"})
    view = build_interaction_data(window, 2, 5, WEIGHTING).served
    params = AlsParams(4, 0.1, 10)
    return build_bundle(train_als(view, params, 0, 1), view, params, 20)


def _serve(bundle: RecommenderBundle, days: pd.DatetimeIndex, **kwargs) -> pd.DataFrame:
    history = EVENTS[EVENTS["event_date"] <= days[-1]]
    return daily_recommendations(history, days, bundle, K, WEIGHTING, "v_1", **kwargs)[0]


def test_every_user_known_by_each_day_gets_a_list_without_anything_they_had(
    bundle: RecommenderBundle,
) -> None:
    table = _serve(bundle, DAYS)
    for day, rows in table.groupby("as_of_date"):
        history = EVENTS[EVENTS["event_date"] <= day]
        # Everyone with an event on or before D, however long ago (IDLE: only on day one).
        assert set(rows["user_id"]) == set(history["user_id"]), day
        assert (rows.groupby("user_id").size() == K).all()
        assert rows.merge(history[["user_id", "item_id"]], on=["user_id", "item_id"]).empty
    assert IDLE in set(table["user_id"])
    # The newcomer exists from their first day and is folded in from the items they touched.
    newcomer = table[table["user_id"] == NEWCOMER]
    assert newcomer["as_of_date"].min() == DAYS[2] and not newcomer["is_fallback"].any()
    # Their list changes on the day they act again, and item i-3 never follows it.
    by_day = newcomer.groupby("as_of_date")["item_id"].apply(tuple)
    assert by_day[DAYS[2]] == by_day[DAYS[3]] != by_day[DAYS[4]]
    assert "i-3" not in set(by_day[DAYS[4]])
    # A user none of whose items the fit knows gets the popularity list.
    stranger = table[table["user_id"] == STRANGER].sort_values(["as_of_date", "rank"])
    assert stranger["is_fallback"].all()
    assert list(stranger["item_id"][:K]) == list(bundle.fallback_items[:K])


def test_a_range_gives_the_rows_of_its_days_one_by_one(bundle: RecommenderBundle) -> None:
    whole = _serve(bundle, DAYS)
    single = pd.concat([_serve(bundle, DAYS[i : i + 1]) for i in range(len(DAYS))])
    pd.testing.assert_frame_equal(whole, single.reset_index(drop=True))
    pd.testing.assert_frame_equal(whole, _serve(bundle, DAYS))  # deterministic


def test_active_days_leaves_users_out_and_counts_them(bundle: RecommenderBundle) -> None:
    history = EVENTS[EVENTS["event_date"] <= DAYS[-1]]
    table, counts = daily_recommendations(history, DAYS, bundle, K, WEIGHTING, "v_1", active_days=7)
    last = history.groupby("user_id")["event_date"].max()
    active = set(last[last > DAYS[-1] - pd.Timedelta(days=7)].index)
    served = set(table.loc[table["as_of_date"] == DAYS[-1], "user_id"])
    assert served == active and IDLE not in served
    assert counts["users_left_out_last_day"] == len(last) - len(active) > 0
    _, everyone = daily_recommendations(history, DAYS, bundle, K, WEIGHTING, "v_1")
    assert everyone["users_left_out_last_day"] == 0
    assert everyone["users_last_day"] == everyone["known_users_last_day"] == len(last)
    assert everyone["users_fallback_last_day"] == 1  # the stranger
    assert everyone["users_folded_in_last_day"] == 1  # the newcomer


def _upstream(graph, key: dg.AssetKey, partition: str) -> list[str]:
    node = graph.get(key)
    raw = dg.AssetKey(["raw", "interactions"])
    mapping = graph.get_partition_mapping(key, raw)
    return mapping.get_upstream_mapped_partitions_result_for_partitions(
        node.partitions_def.subset_with_partition_keys([partition]),
        node.partitions_def,
        graph.get(raw).partitions_def,
    ).partitions_subset.get_partition_keys()


@pytest.mark.parametrize("end_date", ["2026-05-01", None])
def test_lineage_reaches_back_to_the_first_partition(tmp_path: Path, end_date) -> None:
    """By default month M's set maps to every day before M, and day D's recommendations to
    every day up to D, with a closed calendar and an open-ended one alike."""
    override: dict = {"partitions": {"end_date": end_date}}
    if end_date is None:  # the synthetic shop needs an end; a user's files do not
        files = {"interactions_glob": str(tmp_path / "*.csv")}
        override["source"] = {"kind": "files", "files": files}
    settings = small_settings(tmp_path, override)
    graph = build_defs(settings).resolve_asset_graph()
    may = _upstream(graph, REC_DATASET, "2026-05-01")
    assert may[0] == "2026-01-01" and may[-1] == "2026-04-30" and len(may) == 120
    day = _upstream(graph, RECOMMENDATIONS, "2026-03-20")
    assert day[0] == "2026-01-01" and day[-1] == "2026-03-20"
    assert window_start(pd.Timestamp("2026-05-01"), None, START) == START


def test_a_bounded_window_is_still_an_option(tmp_path: Path) -> None:
    settings = small_settings(tmp_path, {"recommender": {"lookback_months": 1}})
    graph = build_defs(settings).resolve_asset_graph()
    assert _upstream(graph, REC_DATASET, "2026-04-01")[0] == "2026-03-01"
    assert window_start(pd.Timestamp("2026-04-01"), 1, START) == pd.Timestamp("2026-03-01")
    assert window_start(pd.Timestamp("2026-02-01"), 3, START) == START


def test_own_top_k_agrees_with_implicit_and_fold_in_with_the_fit(
    bundle: RecommenderBundle,
) -> None:
    """Serving scores dense blocks itself (implicit's per-user filtering was the bottleneck):
    it must pick implicit's items; folding in an unchanged history must give the fit's
    answer back, near enough (an exact solve instead of the fit's last CG steps)."""
    model, seen = bundle.model, bundle.user_items
    rows = np.arange(seen.shape[0])
    ours, _ = recommend_indices(model, seen, rows, K)
    theirs, _ = model.recommend(rows, seen[rows], N=K, filter_already_liked_items=True)
    same = [set(a) == set(b) for a, b in zip(ours, theirs, strict=True)]
    assert np.mean(same) > 0.98
    folded, _ = fold_in_top_k(model, seen, K)
    overlap = [len(set(a) & set(b)) / K for a, b in zip(ours, folded, strict=True)]
    assert np.mean(overlap) > 0.8
