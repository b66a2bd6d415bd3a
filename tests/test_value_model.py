"""Customer value family, pure core: labels, training, baseline, metrics and gates.

Real XGBoost fits on logs generated here; the platform is held against a brute-force label loop,
the trailing-spend baseline and the short script a data scientist would write instead.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb
from pydantic import ValidationError
from scipy.stats import spearmanr

import lifecycle.value_model as vm
from benchmarks.realistic import RealisticConfig, generate_realistic
from lifecycle import feature_kernel, out_of_time
from lifecycle.churn_model import load_booster, save_booster
from lifecycle.datasets import (
    ChurnWindow,
    build_churn_training_set,
    churn_window,
    selection_split,
    snapshot_days,
)
from lifecycle.features import (
    churn_labels,
    customer_features,
    daily_activity,
    feature_columns,
    future_spend,
)

T0 = pd.Timestamp("2026-01-01")
WINDOWS = (7, 30, 90)
FEATURES = feature_columns(WINDOWS)
SETTINGS = vm.ValueSettings()
H = SETTINGS.horizon_days


# --- Labels: future_spend against a brute-force loop ---


def _random_log(seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A small activity log with same-day repeat rows and gaps, plus a population to label."""
    rng = np.random.default_rng(seed)
    ids = np.array([f"{i:03d}" for i in range(14)] + ["7"], dtype=object)  # "7" is not "007"
    n = 160
    activity = pd.DataFrame(
        {
            "activity_date": T0 + pd.to_timedelta(rng.integers(0, 45, n), unit="D"),
            "customer_id": rng.choice(ids[:-3], n),  # the last three never buy
            "txn_count": rng.integers(1, 4, n).astype("int64"),
            "spend": np.round(rng.lognormal(3, 1, n), 2),
        }
    )
    repeats = activity.sample(25, random_state=seed)  # same customer, same day, another row
    activity = pd.concat([activity, repeats.assign(spend=repeats["spend"] + 1.5)])
    days = T0 + pd.to_timedelta(np.arange(5, 30, 3), unit="D")
    population = pd.DataFrame(
        [(d, c) for d in days for c in ids if rng.random() < 0.7],
        columns=["as_of_date", "customer_id"],
    )
    return activity.assign(max_amount=activity["spend"]).reset_index(drop=True), population


def _brute_force(population: pd.DataFrame, activity: pd.DataFrame, horizon: int) -> np.ndarray:
    out = []
    for d, c in population[["as_of_date", "customer_id"]].itertuples(index=False):
        mine = activity[activity["customer_id"] == c]
        after = mine["activity_date"] > d
        until = mine["activity_date"] <= d + pd.Timedelta(days=horizon)
        out.append(mine.loc[after & until, "spend"].sum())
    return np.array(out)


@pytest.mark.parametrize("chunk", [2, 1000])
def test_future_spend_matches_a_brute_force_loop(
    chunk: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(feature_kernel, "CHUNK_CUSTOMERS", chunk)
    activity, population = _random_log(seed=3)
    horizon = 6
    got = future_spend(population, activity, horizon)
    want = population.sort_values(["as_of_date", "customer_id"]).reset_index(drop=True)
    np.testing.assert_allclose(got["future_spend"], _brute_force(want, activity, horizon))
    assert got[["as_of_date", "customer_id"]].equals(want[["as_of_date", "customer_id"]])
    never = got["customer_id"].isin(["012", "013", "7"])
    assert (got.loc[never, "future_spend"] == 0).all() and never.any()
    assert (got["future_spend"] > 0).any()
    # The churn label's window exactly: no spend ⇔ churned.
    churned = churn_labels(population, activity, horizon)["churned"].to_numpy()
    np.testing.assert_array_equal(got["future_spend"].to_numpy() == 0, churned == 1)


def test_future_spend_window_is_after_d_through_d_plus_h() -> None:
    d = T0 + pd.Timedelta(days=10)
    activity = pd.DataFrame(
        {
            "activity_date": d + pd.to_timedelta([0, 1, 4, 4, 5], unit="D"),
            "customer_id": ["a", "a", "a", "a", "a"],
            "txn_count": [1, 1, 1, 1, 1],
            "spend": [100.0, 1.0, 10.0, 20.0, 1000.0],  # D itself and D + H + 1 are outside
        }
    ).assign(max_amount=0.0)
    population = pd.DataFrame({"as_of_date": [d], "customer_id": ["a"]})
    assert future_spend(population, activity, 4)["future_spend"].tolist() == [31.0]
    empty = future_spend(population.iloc[:0], activity, 4)
    assert list(empty.columns) == ["as_of_date", "customer_id", "future_spend"] and empty.empty


def test_churn_and_value_sets_share_rows_and_splits() -> None:
    """``target`` only swaps the label column: same rows, features, splits and flags as churn."""
    activity, _ = _random_log(seed=5)
    daily = activity.groupby(["activity_date", "customer_id"], as_index=False).sum()
    days = pd.date_range(T0 + pd.Timedelta(days=7), periods=25)
    features = customer_features(daily, days, (7,))
    pop = features[["as_of_date", "customer_id"]]
    window = ChurnWindow(*(T0 + pd.Timedelta(days=k) for k in (7, 15, 20, 27)))
    args = (window, feature_columns((7,)), np.array(["001"], dtype=object), {days[3]}, T0)
    churn = build_churn_training_set(features, churn_labels(pop, daily, 5), *args)
    value = build_churn_training_set(features, future_spend(pop, daily, 5), *args, target=vm.TARGET)
    assert set(churn["split"]) == {"train", "purged", "valid"} and not churn["verified"].all()
    pd.testing.assert_frame_equal(churn.drop(columns="churned"), value.drop(columns=vm.TARGET))
    assert (value.loc[churn["churned"] == 1, vm.TARGET] == 0).all()
    assert (value.loc[churn["churned"] == 0, vm.TARGET] > 0).all()


# --- A realistic log: one-time buyers, dormant customers, heavy buyers, same-day repeats ---


@pytest.fixture(scope="module")
def sets() -> dict[str, pd.DataFrame]:
    cfg = RealisticConfig(
        seed=11, n_customers=4000, n_users=40, n_items=40, ratings_per_user=5.0,
        years=2, end=dt.date(2025, 3, 1), future_days=0,
    )  # fmt: skip
    log = generate_realistic(cfg)
    orders = pd.DataFrame(
        {
            "event_date": log.transactions_local.dt.normalize().astype("datetime64[ns]"),
            "customer_id": log.transactions["CustomerID"].astype(object),
            "amount": log.transactions["Amount"].astype(float),
        }
    )
    activity = daily_activity(orders)
    month = pd.Timestamp("2025-01-01")
    earliest = pd.Timestamp(cfg.start) + pd.Timedelta(days=max(WINDOWS) - 1)
    window = churn_window(month, H, SETTINGS.train_months, SETTINGS.validation_days, earliest)
    snaps = snapshot_days(window, SETTINGS.snapshot_every_days)
    features = customer_features(activity[activity["activity_date"] <= snaps.max()], snaps, WINDOWS)
    labels = future_spend(features[["as_of_date", "customer_id"]], activity, H)
    no_one = np.array([], dtype=object)
    data = build_churn_training_set(
        features, labels, window, FEATURES, no_one, set(), month, snaps, target=vm.TARGET
    )
    assert vm.TARGET in data.columns and "churned" not in data.columns
    train = data[data["split"] == "train"]
    fit, select = selection_split(train, SETTINGS.validation_days)
    return {"all": data, "train": train, "fit": fit, "select": select,
            "holdout": data[data["split"] == "valid"]}  # fmt: skip


@pytest.fixture(scope="module")
def trained(sets: dict[str, pd.DataFrame]) -> vm.TrainedValue:
    return vm.train_value_model(sets["fit"], sets["select"], FEATURES, SETTINGS)


def direct_script(train: pd.DataFrame, holdout: pd.DataFrame) -> np.ndarray:
    """What a data scientist would write instead: the metric is MAE, so the loss is MAE; early
    stopping on the last two weeks of the training days; library defaults otherwise."""
    cut = train["as_of_date"].max() - pd.Timedelta(days=14)
    early, late = train[train["as_of_date"] <= cut], train[train["as_of_date"] > cut]
    model = xgb.XGBRegressor(
        objective="reg:absoluteerror",
        n_estimators=1000,
        learning_rate=0.1,
        early_stopping_rounds=30,
        n_jobs=2,
        random_state=0,
    )
    model.fit(
        early[FEATURES], early["future_spend"],
        eval_set=[(late[FEATURES], late["future_spend"])], verbose=False,
    )  # fmt: skip
    return np.clip(model.predict(holdout[FEATURES]), 0, None)


def test_the_value_model_beats_the_baseline_and_the_direct_script(
    sets: dict[str, pd.DataFrame], trained: vm.TrainedValue
) -> None:
    holdout = sets["holdout"]
    assert holdout["as_of_date"].min() > sets["train"]["as_of_date"].max()
    y = holdout[vm.TARGET].to_numpy()
    assert 0.6 < np.mean(y == 0) < 0.98 and y.max() > 10 * np.median(y[y > 0])  # zero-inflated
    pred = vm.predict_value(trained.booster, holdout, FEATURES)
    naive = vm.naive_prediction(holdout, WINDOWS, H)
    direct = direct_script(sets["train"], holdout)
    m = vm.regression_metrics(y, pred, naive)
    direct_mae = float(np.mean(np.abs(y - direct)))
    print(
        f"\nholdout {len(y)} rows: model MAE {m['mae']:.3f}, naive {m['naive_mae']:.3f}, "
        f"direct script {direct_mae:.3f}; spearman {m['spearman']:.3f}, "
        f"mean pred {m['mean_pred']:.2f} vs actual {m['mean_actual']:.2f}"
    )
    assert m["mae_ratio_to_naive"] < 0.9
    assert m["mae"] <= 1.03 * direct_mae
    assert vm.beats_naive(y, pred, naive, SETTINGS.checks.max_mae_ratio_to_naive).passed
    assert vm.prediction_sanity(pred).passed
    assert 0 <= trained.best_iteration < SETTINGS.search.num_boost_round - 1  # it stopped early
    assert trained.booster.num_boosted_rounds() == trained.best_iteration + 1


def test_refit_and_save_load_round_trip(
    sets: dict[str, pd.DataFrame], trained: vm.TrainedValue, tmp_path: Path
) -> None:
    everything = sets["all"]
    served = vm.refit_value(trained, everything)
    assert served.num_boosted_rounds() == trained.best_iteration + 1
    assert not np.array_equal(
        vm.predict_value(served, sets["holdout"], FEATURES),
        vm.predict_value(trained.booster, sets["holdout"], FEATURES),
    )  # the served fit has seen more rows
    path = tmp_path / "value.ubj"
    save_booster(served, path)
    assert path.read_bytes()[:1] == b"{"  # UBJSON object, not a pickle stream (b"\x80")
    loaded = load_booster(path)
    np.testing.assert_array_equal(
        vm.predict_value(loaded, everything, FEATURES),
        vm.predict_value(served, everything, FEATURES),
    )
    with pytest.raises(ValueError, match="feature order"):
        vm.predict_value(loaded, everything, FEATURES[::-1])


def test_training_refuses_a_bad_target(sets: dict[str, pd.DataFrame]) -> None:
    bad = sets["fit"].assign(future_spend=-1.0)
    with pytest.raises(ValueError, match="finite and >= 0"):
        vm.train_value_model(bad, sets["select"], FEATURES, SETTINGS)
    with pytest.raises(KeyError, match="future_spend"):
        vm.train_value_model(
            sets["fit"].drop(columns=vm.TARGET), sets["select"], FEATURES, SETTINGS
        )


# --- Baseline, metrics, settings ---


def test_naive_prediction_uses_the_window_nearest_the_horizon() -> None:
    frame = pd.DataFrame({"spend_7d": [7.0], "spend_30d": [30.0], "spend_90d": [90.0]})
    assert vm.naive_prediction(frame, WINDOWS, 30).tolist() == [30.0]
    assert vm.naive_prediction(frame, WINDOWS, 14).tolist() == [14.0]  # 7d is nearer than 30d
    assert vm.naive_prediction(frame, WINDOWS, 60).tolist() == [60.0]  # tie: the longer window


def test_regression_metrics_match_their_definitions() -> None:
    rng = np.random.default_rng(0)
    y = np.where(rng.random(500) < 0.7, 0.0, rng.lognormal(3, 1, 500))
    pred, naive = y * 0.8 + rng.random(500), y + rng.normal(0, 20, 500)
    m = vm.regression_metrics(y, pred, naive)
    assert m["mae"] == pytest.approx(np.abs(y - pred).mean())
    assert m["rmse"] == pytest.approx(np.sqrt(((y - pred) ** 2).mean()))
    assert m["naive_mae"] == pytest.approx(np.abs(y - naive).mean())
    assert m["mae_ratio_to_naive"] == pytest.approx(m["mae"] / m["naive_mae"])
    assert m["spearman"] == pytest.approx(spearmanr(y, pred).statistic)
    assert (m["mean_pred"], m["mean_actual"]) == pytest.approx((pred.mean(), y.mean()))
    with pytest.raises(ValueError, match="1-D"):
        vm.regression_metrics(y, pred[:-1], naive)


def test_settings_are_strict() -> None:
    assert vm.ValueSettings.model_validate({"checks": {"tolerance": 0.05}}).checks.tolerance == 0.05
    for bad in ({"horizon_days": 0}, {"search": {"learning_rate": 0}}, {"colour": 1}):
        with pytest.raises(ValidationError):
            vm.ValueSettings.model_validate(bad)


# --- Gates: each passes and fails for the right reason ---


def _spend(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.where(rng.random(n) < 0.8, 0.0, rng.lognormal(3.5, 1.2, n))


def test_beats_naive_passes_and_fails_on_the_ratio() -> None:
    y = _spend(2000, 1)
    rng = np.random.default_rng(2)
    good, bad = y + rng.normal(0, 5, y.size), y + rng.normal(0, 50, y.size)
    ok = vm.beats_naive(y, good, bad, 0.95)
    assert ok.name == "beats_naive" and ok.passed and ok.observed < 0.2
    assert "MAE" in ok.detail and "≤ 0.95" in ok.detail
    no = vm.beats_naive(y, bad, good, 0.95)
    assert not no.passed and no.observed > 5 and "> 0.95" in no.detail
    assert not vm.beats_naive(y, good, good, 0.95).passed  # equal is not better enough
    assert vm.beats_naive(y, good, good, 1.0).passed


def test_beats_champion_is_judged_on_the_relative_tolerance() -> None:
    y = _spend(3000, 4)
    first = vm.beats_champion_mae(y, y, None, 0.02, 100)
    assert first.name == "beats_champion" and first.passed and "first model" in first.detail
    old = y + np.random.default_rng(5).normal(0, 10, y.size)
    slightly_worse = y + (old - y) * 1.01  # 1% larger error on every row
    assert vm.beats_champion_mae(y, slightly_worse, old, 0.02, 300).passed
    strict = vm.beats_champion_mae(y, slightly_worse, old, 0.0, 300)
    assert not strict.passed and "upper end is above" in strict.detail
    assert strict.observed > 0 and strict.threshold == 0
    better = vm.beats_champion_mae(y, y + (old - y) * 0.5, old, 0.0, 300)
    assert better.passed and float(better.extra["ci_upper"]) < 0 and "vs champion" in better.detail
    worse = vm.beats_champion_mae(y, y + (old - y) * 1.5, old, 0.02, 300)
    assert not worse.passed and float(worse.extra["ci_lower"]) > 0


def test_the_bootstrap_is_paired_and_matches_a_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    """Per-row errors vary hugely but the new model is better by 0.05 on *every* row: resampling
    rows for both models together sees only that; resampling them apart would see noise."""
    y = _spend(1000, 6)
    old = y + np.random.default_rng(7).normal(0, 30, y.size)
    new = y + (old - y) * np.maximum(1 - 0.05 / np.maximum(np.abs(old - y), 1e-9), 0)
    # Several blocks (the bootstrap is out_of_time's paired_mean_diff_ci).
    monkeypatch.setattr(out_of_time, "_BOOT_BLOCK_CELLS", 7 * y.size)
    paired = vm.paired_bootstrap_mae_diff(y, new, old, n_boot=200, seed=1)
    rng, diffs = np.random.default_rng(1), []
    for _ in range(200):  # the reference: one resample at a time, same rows for both models
        idx = rng.integers(0, y.size, y.size)
        diffs.append(np.abs(y - new)[idx].mean() - np.abs(y - old)[idx].mean())
    assert (paired.lower, paired.upper) == pytest.approx(tuple(np.quantile(diffs, [0.025, 0.975])))
    assert paired.upper < 0 and paired.upper - paired.lower < 0.02
    rng = np.random.default_rng(1)
    apart = [
        np.abs(y - new)[rng.integers(0, y.size, y.size)].mean()
        - np.abs(y - old)[rng.integers(0, y.size, y.size)].mean()
        for _ in range(200)
    ]
    assert np.quantile(apart, 0.975) > 0  # unpaired, the same models could not be told apart
    assert vm.beats_champion_mae(y, new, old, 0.0, 200).passed


def test_prediction_sanity_names_what_is_wrong() -> None:
    ok = vm.prediction_sanity(np.array([0.0, 1.5, 20.0]))
    assert ok.name == "prediction_sanity" and ok.passed
    cases = {
        "1 non-finite": np.array([0.0, np.nan, 3.0]),
        "1 negative": np.array([0.0, -0.5, 3.0]),
        "(constant)": np.full(5, 12.0),
    }
    for words, pred in cases.items():
        out = vm.prediction_sanity(pred)
        assert not out.passed and words in out.detail, out.detail
