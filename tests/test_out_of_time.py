"""The 15th-of-month out-of-time gate on simulated customers and users: real fits of nothing,
real outcomes drawn from known rates, so a model that knows the rates must win."""

import time

import numpy as np
import pandas as pd
import pytest

from lifecycle import out_of_time as oot
from lifecycle.features import churn_labels
from lifecycle.metrics import roc_auc

WINDOW = oot.window_after(pd.Timestamp("2026-06-01"), 14)
DAYS = "days 2026-06-01…2026-06-14"


def _customers(n: int = 3000, seed: int = 0) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """Ids, daily purchase rates, and one activity row per (customer, day) with a purchase
    over two months around the window (amounts ~ 20 per purchase)."""
    rng = np.random.default_rng(seed)
    ids = np.array([f"c{i:05d}" for i in range(n)], dtype=object)
    rate = rng.gamma(0.8, 0.12, n)
    days = pd.date_range("2026-05-01", "2026-06-30")
    bought = rng.random((len(days), n)) < 1 - np.exp(-rate)
    day, who = np.nonzero(bought)
    activity = pd.DataFrame(
        {
            "activity_date": days[day],
            "customer_id": ids[who],
            "txn_count": np.ones(len(day), dtype=np.int64),
            "spend": rng.gamma(4.0, 5.0, len(day)),
            "max_amount": 0.0,
        }
    )
    return ids, rate, activity


def _in_window(activity: pd.DataFrame) -> pd.DataFrame:
    date = activity["activity_date"]
    return activity.loc[(date >= WINDOW.first_day) & (date <= WINDOW.last_day)]


def test_window_is_the_days_after_training() -> None:
    assert (WINDOW.first_day, WINDOW.last_day, WINDOW.days) == (
        pd.Timestamp("2026-06-01"),
        pd.Timestamp("2026-06-14"),
        14,
    )
    assert oot.as_of(WINDOW) == pd.Timestamp("2026-05-31")
    assert oot.window_after(pd.Timestamp("2026-06-15"), 14) == WINDOW  # the 15th names June
    with pytest.raises(ValueError, match="days"):
        oot.window_after(pd.Timestamp("2026-06-01"), 0)


def test_early_outcome_is_churn_labels_over_the_elapsed_days() -> None:
    """Same convention as training labels: (D, D + days] with D = as_of(window)."""
    ids, _, activity = _customers(800)
    population = pd.DataFrame({"as_of_date": oot.as_of(WINDOW), "customer_id": ids})
    labels = churn_labels(population, activity, horizon_days=WINDOW.days)
    y = oot.churn_early_outcome(ids, _in_window(activity))
    expected = labels.set_index("customer_id").loc[list(ids), "churned"].to_numpy()
    assert 0 < y.sum() < len(y)
    np.testing.assert_array_equal(y, expected)


def test_early_outcome_matches_ids_as_text_and_ignores_strangers() -> None:
    purchases = pd.DataFrame({"customer_id": [42, 7, 99]})
    y = oot.churn_early_outcome(np.array(["7", "8", "42"], dtype=object), purchases)
    np.testing.assert_array_equal(y, [0, 1, 0])


def test_paired_mean_diff_estimate_and_coverage() -> None:
    """Estimate is the mean difference; the 95% CI covers the true difference about 95% of
    the time, and pairing removes the large noise both sides share."""
    rng = np.random.default_rng(3)
    covered, widths = 0, []
    for rep in range(200):
        shared = rng.normal(0, 5.0, 120)
        a, b = shared + rng.normal(0.3, 1.0, 120), shared + rng.normal(0.0, 1.0, 120)
        ci = oot.paired_mean_diff_ci(a, b, n_boot=400, seed=rep)
        assert ci.estimate == pytest.approx(float(np.mean(a - b)))
        assert ci.lower <= ci.estimate <= ci.upper
        covered += ci.lower <= 0.3 <= ci.upper
        widths.append(ci.upper - ci.lower)
    assert 0.88 <= covered / 200 <= 0.99
    # Unpaired, the shared noise alone would give a width of ~4 * 5 * sqrt(2 / 120) = 2.6.
    assert np.mean(widths) < 4 * np.sqrt(2 / 120) * 1.2


def test_paired_mean_diff_blocks_give_a_full_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    """Resamples come in blocks bounded in memory; every requested resample is used."""
    rng = np.random.default_rng(4)
    a, b = rng.normal(1.0, 1.0, 500), rng.normal(0.0, 1.0, 500)
    whole = oot.paired_mean_diff_ci(a, b, n_boot=300)
    monkeypatch.setattr(oot, "_BOOT_BLOCK_CELLS", 7 * 500)
    blocked = oot.paired_mean_diff_ci(a, b, n_boot=300)
    assert blocked.n_boot == whole.n_boot == 300
    assert blocked.lower == pytest.approx(whole.lower, abs=0.05)
    assert blocked.upper == pytest.approx(whole.upper, abs=0.05)
    with pytest.raises(ValueError, match="1-D"):
        oot.paired_mean_diff_ci(a, b[:-1], n_boot=10)
    with pytest.raises(ValueError, match="finite"):
        oot.paired_mean_diff_ci(np.r_[a[:-1], np.nan], b, n_boot=10)


def _churn_case() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Early outcome plus an informed score (30-day churn probability from the true rate,
    with noise) and a shuffled one."""
    ids, rate, activity = _customers()
    y = oot.churn_early_outcome(ids, _in_window(activity))
    rng = np.random.default_rng(1)
    informed = np.clip(np.exp(-30 * rate) + rng.normal(0, 0.05, len(rate)), 0, 1)
    return y, informed, rng.permutation(informed)


def test_churn_better_model_passes_shuffled_one_fails() -> None:
    y, informed, shuffled = _churn_case()
    good = oot.churn_out_of_time(y, informed, shuffled, WINDOW, tolerance=0.01, n_boot=300)
    bad = oot.churn_out_of_time(y, shuffled, informed, WINDOW, tolerance=0.01, n_boot=300)
    assert good.passed and not bad.passed
    assert good.name == bad.name == "out_of_time"
    assert good.extra["auc_challenger"] == roc_auc(y, informed)
    assert good.extra["auc_champion"] == roc_auc(y, shuffled)
    assert good.observed == pytest.approx(roc_auc(y, informed) - roc_auc(y, shuffled))
    assert good.threshold == bad.threshold == -0.01
    assert float(good.extra["ci_lower"]) >= -0.01 > float(bad.extra["ci_lower"])
    assert good.extra["units"] == len(y) and good.extra["days"] == 14
    assert (good.extra["first_day"], good.extra["last_day"]) == ("2026-06-01", "2026-06-14")
    assert good.detail.startswith(f"{DAYS}: early-churn AUC") and "≥ −0.01" in good.detail
    assert "< −0.01" in bad.detail and f"on {len(y):,} customers" in bad.detail


def test_churn_without_champion_passes_with_its_own_auc() -> None:
    y, informed, _ = _churn_case()
    outcome = oot.churn_out_of_time(y, informed, None, WINDOW, tolerance=0.01, n_boot=100)
    assert outcome.passed and outcome.extra["auc_challenger"] == roc_auc(y, informed)
    assert "no champion" in outcome.detail and f"{roc_auc(y, informed):.4f}" in outcome.detail


def test_churn_without_outcomes_refuses_and_names_the_days() -> None:
    _, informed, shuffled = _churn_case()
    empty = oot.churn_out_of_time(np.array([]), np.array([]), None, WINDOW, 0.01, 100)
    # Nobody bought anything for two weeks: the window's purchases are not loaded.
    unloaded = oot.churn_early_outcome(np.array(["a", "b"]), pd.DataFrame({"customer_id": []}))
    nothing = oot.churn_out_of_time(unloaded, informed[:2], shuffled[:2], WINDOW, 0.01, 100)
    for outcome in (empty, nothing):
        assert not outcome.passed
        assert outcome.detail.startswith(f"no outcomes in {DAYS}")
        assert outcome.detail.endswith("ingest those days before promoting")
    assert (empty.extra["units"], nothing.extra["units"]) == (0, 2)


def test_churn_everyone_purchased_cannot_judge_and_does_not_block() -> None:
    y, informed, shuffled = _churn_case()
    outcome = oot.churn_out_of_time(np.zeros_like(y), shuffled, informed, WINDOW, 0.01, 100)
    assert outcome.passed and "cannot judge: only one outcome class" in outcome.detail


def _lists(frame: dict[str, list]) -> pd.DataFrame:
    return pd.DataFrame(frame)


def test_precision_counts_new_items_of_users_with_a_list() -> None:
    """u1: 1 of 2 listed items taken → 0.5; u2: nothing taken → 0; u3: no activity, u4: no
    list (arrived in the window) → not counted; u2 has no challenger list → 0 for it."""
    new = _lists({"user_id": ["u1", "u1", "u1"], "item_id": ["a", "b", "z"], "rank": [1, 2, 3]})
    old = _lists({"user_id": ["u1", "u1", "u2", "u2", "u3"], "item_id": list("cdcda")})
    future = _lists({"user_id": ["u1", "u1", "u1", "u2", "u4"], "item_id": list("aazxa")})
    outcome = oot.recommender_out_of_time(new, old, future, 2, WINDOW, 0.5, 200)
    assert outcome.extra["units"] == 2  # u1, u2
    assert outcome.extra["precision_challenger"] == pytest.approx((0.5 + 0.0) / 2)
    assert outcome.extra["precision_champion"] == 0.0  # and the challenger's z was 3rd of k=2
    # When u2 already had "x" before the window, u2 took up nothing new and drops out.
    seen = _lists({"user_id": ["u2"], "item_id": ["x"]})
    only_u1 = oot.recommender_out_of_time(new, old, future, 2, WINDOW, 0.5, 200, seen=seen)
    assert only_u1.extra["units"] == 1 and only_u1.extra["precision_challenger"] == 0.5
    # An item listed twice is one hit, not two: precision stays a share of k slots.
    twice = _lists({"user_id": ["u1", "u1"], "item_id": ["a", "a"]})
    once = oot.recommender_out_of_time(twice, None, future, 2, WINDOW, 0.5, 200)
    assert once.extra["precision_challenger"] == 0.5


def _users(
    n_users: int, seed: int = 0, text: bool = False
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Users with a favourite genre of 20 items among 400; in the window each takes up 3
    items, from their genre 80% of the time. Informed lists: 10 genre items; random: any."""
    rng = np.random.default_rng(seed)
    names = np.arange(n_users).astype(str).astype(object) if text else np.arange(n_users)
    genre = rng.integers(0, 20, n_users)
    users = np.repeat(np.arange(n_users), 3)
    from_genre = rng.random(len(users)) < 0.8
    in_genre = genre[users] * 20 + rng.integers(0, 20, len(users))
    item = np.where(from_genre, in_genre, rng.integers(0, 400, len(users)))
    future = pd.DataFrame({"user_id": names[users], "item_id": item.astype(str).astype(object)})
    listed = np.repeat(np.arange(n_users), 10)
    picks = np.argsort(rng.random((n_users, 20)), axis=1)[:, :10].ravel()
    informed = pd.DataFrame(
        {
            "user_id": names[listed],
            "item_id": (genre[listed] * 20 + picks).astype(str).astype(object),
        }
    )
    other = rng.integers(0, 20, n_users)[listed] * 20 + picks
    random = pd.DataFrame({"user_id": names[listed], "item_id": other.astype(str).astype(object)})
    return informed, random, future


def _precision_by_merge(lists: pd.DataFrame, future: pd.DataFrame, k: int) -> float:
    """Independent reference: join, count hits per user, average over users with activity."""
    hits = lists.merge(future.drop_duplicates(), on=["user_id", "item_id"])
    per_user = hits.groupby("user_id").size().reindex(future["user_id"].unique(), fill_value=0)
    return float((per_user / k).mean())


def test_recommender_better_lists_pass_random_ones_fail() -> None:
    informed, random, future = _users(3000)
    good = oot.recommender_out_of_time(informed, random, future, 10, WINDOW, 0.005, 300)
    bad = oot.recommender_out_of_time(random, informed, future, 10, WINDOW, 0.005, 300)
    assert good.passed and not bad.passed
    assert good.extra["units"] == 3000
    assert good.extra["precision_challenger"] == pytest.approx(
        _precision_by_merge(informed, future, 10)
    )
    assert good.extra["precision_champion"] == pytest.approx(
        _precision_by_merge(random, future, 10)
    )
    assert float(bad.extra["ci_lower"]) < -0.005 and f"{DAYS}: precision@10" in bad.detail
    assert "on 3,000 users" in bad.detail
    alone = oot.recommender_out_of_time(random, None, future, 10, WINDOW, 0.005, 300)
    assert alone.passed and "no champion" in alone.detail


def test_recommender_without_window_interactions_refuses() -> None:
    informed, random, future = _users(50)
    outcome = oot.recommender_out_of_time(informed, random, future.iloc[:0], 10, WINDOW, 0.01, 50)
    assert not outcome.passed and outcome.detail.startswith(f"no outcomes in {DAYS}")
    assert outcome.extra["units"] == 0


def test_recommender_scales_without_a_per_user_loop() -> None:
    """200k users x 10 items, twice, in seconds (a per-user pandas loop would take minutes)."""
    informed, random, future = _users(200_000, seed=5, text=True)
    start = time.perf_counter()
    outcome = oot.recommender_out_of_time(informed, random, future, 10, WINDOW, 0.005, 100)
    assert outcome.extra["units"] == 200_000 and outcome.passed
    assert time.perf_counter() - start < 30


def _spend_case() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Observed 14-day spend, an informed 28-day prediction (rate x mean amount) and a
    shuffled one."""
    ids, rate, activity = _customers(seed=2)
    observed = oot.spend_in_window(ids, _in_window(activity))
    informed = 28 * (1 - np.exp(-rate)) * 20.0
    return observed, informed, np.random.default_rng(2).permutation(informed)


def test_value_better_model_passes_shuffled_one_fails() -> None:
    observed, informed, shuffled = _spend_case()
    good = oot.value_out_of_time(observed, informed, shuffled, 28, WINDOW, 0.02, 300)
    bad = oot.value_out_of_time(observed, shuffled, informed, 28, WINDOW, 0.02, 300)
    assert good.passed and not bad.passed
    mae = float(np.mean(np.abs(informed * 14 / 28 - observed)))
    assert good.extra["mae_challenger"] == pytest.approx(mae)
    assert bad.threshold == pytest.approx(0.02 * mae)  # tolerance x MAE(champion)
    assert float(good.extra["ci_upper"]) <= good.threshold
    assert float(bad.extra["ci_upper"]) > bad.threshold
    assert f"{DAYS}: spend MAE" in bad.detail and " > " in bad.detail


def test_value_scales_horizon_predictions_to_the_elapsed_days() -> None:
    """A 28-day prediction of twice the 14-day spend is exact; predicting the 14-day spend
    itself for 28 days is off by half of it."""
    observed, _, _ = _spend_case()
    outcome = oot.value_out_of_time(observed, 2 * observed, observed, 28, WINDOW, 0.0, 50)
    assert outcome.passed and outcome.extra["mae_challenger"] == 0.0
    assert outcome.extra["mae_champion"] == pytest.approx(0.5 * float(np.mean(observed)))


def test_value_without_spend_refuses() -> None:
    _, informed, shuffled = _spend_case()
    unloaded = np.zeros_like(informed)
    outcome = oot.value_out_of_time(unloaded, informed, shuffled, 28, WINDOW, 0.02, 50)
    assert not outcome.passed and outcome.detail.startswith(f"no outcomes in {DAYS}")


def test_spend_in_window_sums_per_customer_by_text_id() -> None:
    rows = pd.DataFrame({"customer_id": [7, 7, 9, 3], "spend": [1.5, 2.0, 4.0, 8.0]})
    np.testing.assert_allclose(oot.spend_in_window(np.array(["3", "5", "7"]), rows), [8, 0, 3.5])


def test_churn_gate_turns_on_the_ci_lower_end() -> None:
    """A slightly noisier challenger: the same numbers pass with a tolerance just past the
    CI's lower end and fail with one just short of it."""
    y, informed, _ = _churn_case()
    noisier = np.clip(informed + np.random.default_rng(8).normal(0, 0.08, len(y)), 0, 1)
    probe = oot.churn_out_of_time(y, noisier, informed, WINDOW, 0.0, 300)
    lower = float(probe.extra["ci_lower"])
    assert lower < 0
    assert oot.churn_out_of_time(y, noisier, informed, WINDOW, -lower + 1e-4, 300).passed
    assert not oot.churn_out_of_time(y, noisier, informed, WINDOW, -lower - 1e-4, 300).passed


def test_value_gate_turns_on_the_ci_upper_end_relative_to_the_champion() -> None:
    observed, informed, _ = _spend_case()
    noisier = informed * np.random.default_rng(9).lognormal(0, 0.3, len(informed))
    probe = oot.value_out_of_time(observed, noisier, informed, 28, WINDOW, 0.0, 300)
    ratio = float(probe.extra["ci_upper"]) / float(probe.extra["mae_champion"])
    assert ratio > 0
    assert oot.value_out_of_time(observed, noisier, informed, 28, WINDOW, ratio + 1e-4, 300).passed
    assert not oot.value_out_of_time(
        observed, noisier, informed, 28, WINDOW, ratio - 1e-4, 300
    ).passed
