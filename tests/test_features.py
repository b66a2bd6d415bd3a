"""Tests for point-in-time features and labels, pure and as range-partitioned Dagster assets."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import dagster as dg
import duckdb
import pandas as pd
import pytest
import yaml
from conftest import SMALL, deep_merge, run
from hypothesis import HealthCheck, given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st

import lifecycle.features as lf
from assets.common import day_keys
from assets.keys import ACTIVITY, FEATURES, LABELS
from definitions import build_defs
from lifecycle import feature_kernel
from lifecycle.features import churn_labels, customer_features, daily_activity, feature_columns
from lifecycle.registry import DAGSTER_DUCKDB_CONFIG
from lifecycle.settings import DEMO_SETTINGS, Settings, parse_settings

T0 = pd.Timestamp("2026-03-01")


def day(offset: int) -> pd.Timestamp:
    return T0 + pd.Timedelta(days=offset)


def activity_frame(rows: list[tuple[int, int, int, float]]) -> pd.DataFrame:
    """(customer, day offset, txn_count, spend) tuples as a customer_activity frame."""
    frame = pd.DataFrame(rows, columns=["customer_id", "offset", "txn_count", "spend"])
    frame = frame.drop_duplicates(["customer_id", "offset"], keep="first")
    return (
        frame.assign(
            activity_date=T0 + pd.to_timedelta(frame["offset"], unit="D"),
            # Ids are strings as a user's export has them; leading zeros keep "007" apart from "7".
            customer_id=frame["customer_id"].map(lambda c: f"{c:03d}" if c % 2 else str(c)),
            txn_count=frame["txn_count"].astype("int64"),
            spend=frame["spend"].astype("float64"),
            max_amount=frame["spend"].astype("float64"),
        )
        .loc[:, ["activity_date", "customer_id", "txn_count", "spend", "max_amount"]]
        .sort_values(["activity_date", "customer_id"])
        .reset_index(drop=True)
    )


# --------------------------------------------------------------------------------------------
# Hand-computed example
# --------------------------------------------------------------------------------------------

HAND = activity_frame(
    [
        (1, 0, 2, 30.0),  # first day of D's 7-day window
        (1, 4, 1, 10.0),  # inside the 3-day window
        (1, 7, 1, 20.0),  # after D: must not count for features, counts for labels
        (2, -1, 1, 5.0),  # just before the 7-day window: customer 2 is not in D's population
        (3, 6, 1, 8.0),  # on D itself
        (3, 10, 1, 8.0),  # after the 3-day label horizon
        (4, 0, 1, 4.0),  # on the window's first day only
        (4, 9, 2, 6.0),  # last day of the label horizon
    ]
)
D = day(6)  # 2026-03-07


def test_daily_activity_hand_computed() -> None:
    """Transactions aggregate to one row per customer and local day: count, spend, max basket."""
    tx = pd.DataFrame(
        {
            "customer_id": [1, 1, 2, 1],
            "timestamp": pd.to_datetime(
                ["2026-03-01 09:00", "2026-03-01 18:00", "2026-03-01 10:00", "2026-03-02 08:00"]
            ),
            "amount": [10.0, 5.0, 7.0, 1.0],
            "event_date": pd.to_datetime(["2026-03-01", "2026-03-01", "2026-03-01", "2026-03-02"]),
        }
    )
    out = daily_activity(tx)
    assert out.to_dict("records") == [
        {
            "activity_date": day(0),
            "customer_id": 1,
            "txn_count": 2,
            "spend": 15.0,
            "max_amount": 10.0,
        },
        {
            "activity_date": day(0),
            "customer_id": 2,
            "txn_count": 1,
            "spend": 7.0,
            "max_amount": 7.0,
        },
        {
            "activity_date": day(1),
            "customer_id": 1,
            "txn_count": 1,
            "spend": 1.0,
            "max_amount": 1.0,
        },
    ]


def test_features_hand_computed() -> None:
    """Lifetime and windowed features for windows (3, 7) as of 2026-03-07; customer 2, dormant
    for 7 days (outside every window), is still in the population with uncapped recency."""
    features = customer_features(HAND, pd.DatetimeIndex([D]), (3, 7))
    assert list(features.columns) == ["as_of_date", "customer_id", *feature_columns((3, 7))]
    got = features.set_index("customer_id").drop(columns="as_of_date")
    expected = pd.DataFrame(
        {
            "recency_days": [2.0, 0.0, 7.0, 6.0],
            "tenure_days": [6.0, 0.0, 7.0, 6.0],
            "lifetime_active_days": [2.0, 1.0, 1.0, 1.0],
            "lifetime_txn_count": [3.0, 1.0, 1.0, 1.0],
            "lifetime_spend": [40.0, 8.0, 5.0, 4.0],
            "lifetime_avg_basket": [40 / 3, 8.0, 5.0, 4.0],
            "active_days_7d": [2.0, 1.0, 0.0, 1.0],
            "txn_count_3d": [1.0, 1.0, 0.0, 0.0],
            "spend_3d": [10.0, 8.0, 0.0, 0.0],
            "txn_count_7d": [3.0, 1.0, 0.0, 1.0],
            "spend_7d": [40.0, 8.0, 0.0, 4.0],
            "avg_basket_7d": [40 / 3, 8.0, 0.0, 4.0],
            "trend_short_long": [(1 / 3) / (3 / 7), (1 / 3) / (1 / 7), 0.0, 0.0],
        },
        index=pd.Index(["001", "003", "2", "4"], name="customer_id", dtype=object),
    )
    pd.testing.assert_frame_equal(got, expected)
    assert (features["as_of_date"] == D).all()


def test_dormant_rule_leaves_out_and_counts() -> None:
    """With max_dormant_days, customers without a purchase for longer are left out, counted."""
    features = customer_features(HAND, pd.DatetimeIndex([D]), (3, 7), max_dormant_days=6)
    assert list(features["customer_id"]) == ["001", "003", "4"]  # "2" left out
    assert features.attrs["left_out_dormant"] == 1


def test_prior_state_equals_full_history() -> None:
    """Lifetime aggregates carried in as a prior state give the rows full history gives."""
    later = D + pd.Timedelta(days=4)
    cut = D - pd.Timedelta(days=2)
    full = customer_features(HAND, pd.DatetimeIndex([later]), (3,))
    prior = lf.lifetime_before(HAND, cut)
    carried = customer_features(
        HAND[HAND["activity_date"] >= cut], pd.DatetimeIndex([later]), (3,), prior=prior
    )
    pd.testing.assert_frame_equal(full, carried)
    assert len(full) == 4


def test_labels_hand_computed() -> None:
    """churned = no purchase in (D, D+3]: purchases on D or after D+3 do not count."""
    population = customer_features(HAND, pd.DatetimeIndex([D]), (3, 7))[
        ["as_of_date", "customer_id"]
    ]
    labels = churn_labels(population, HAND, horizon_days=3)
    assert labels.to_dict("records") == [
        {"as_of_date": D, "customer_id": "001", "purchases_in_horizon": 1, "churned": 0},
        {"as_of_date": D, "customer_id": "003", "purchases_in_horizon": 0, "churned": 1},
        {"as_of_date": D, "customer_id": "2", "purchases_in_horizon": 0, "churned": 1},
        {"as_of_date": D, "customer_id": "4", "purchases_in_horizon": 2, "churned": 0},
    ]


def test_empty_inputs_give_typed_empty_frames() -> None:
    """No activity: an empty feature frame with the model's columns; no population: no labels."""
    empty = HAND.iloc[:0]
    features = customer_features(empty, pd.DatetimeIndex([D]), (3, 7))
    assert features.empty
    assert list(features.columns) == ["as_of_date", "customer_id", *feature_columns((3, 7))]
    labels = churn_labels(features[["as_of_date", "customer_id"]], HAND, 3)
    assert labels.empty
    assert list(labels.columns) == ["as_of_date", "customer_id", "purchases_in_horizon", "churned"]


# --------------------------------------------------------------------------------------------
# Properties (hypothesis): point-in-time correctness, range == one day, brute-force reference
# --------------------------------------------------------------------------------------------

N_DAYS = 30
rows_strategy = st.lists(
    st.tuples(
        st.integers(1, 8),
        st.integers(0, N_DAYS - 1),
        st.integers(1, 4),
        st.integers(1, 50_000).map(lambda cents: cents / 100),
    ),
    min_size=1,
    max_size=60,
)
windows_strategy = st.sampled_from([(3, 7), (2, 5, 10), (1, 4), (7,)])
PROPERTY = hyp_settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


def naive_features(activity: pd.DataFrame, as_of: pd.Timestamp, windows: tuple[int, ...]):
    """Brute force, one (D, customer) at a time, straight from the definitions."""
    longest, short = max(windows), min(windows)
    out = []
    for customer, rows in activity.groupby("customer_id"):
        age = (as_of - rows["activity_date"]).dt.days
        past = rows[age >= 0]
        if past.empty:
            continue
        in_long = rows[(age >= 0) & (age < longest)]
        age_past = (as_of - past["activity_date"]).dt.days
        life_n, life_spend = float(past["txn_count"].sum()), float(past["spend"].sum())
        rec = {
            "as_of_date": as_of,
            "customer_id": customer,
            "recency_days": float(age_past.min()),
            "tenure_days": float(age_past.max()),
            "lifetime_active_days": float(len(past)),
            "lifetime_txn_count": life_n,
            "lifetime_spend": life_spend,
            "lifetime_avg_basket": life_spend / life_n,
            f"active_days_{longest}d": float(len(in_long)),
        }
        for w in windows:
            in_w = rows[(age >= 0) & (age < w)]
            rec[f"txn_count_{w}d"] = float(in_w["txn_count"].sum())
            rec[f"spend_{w}d"] = float(in_w["spend"].sum())
        n_long = rec[f"txn_count_{longest}d"]
        rec[f"avg_basket_{longest}d"] = rec[f"spend_{longest}d"] / max(n_long, 1)
        rec["trend_short_long"] = (rec[f"txn_count_{short}d"] / short) / (max(n_long, 1) / longest)
        out.append(rec)
    return pd.DataFrame(out).sort_values("customer_id").reset_index(drop=True) if out else None


def rows_of(frame: pd.DataFrame, as_of: pd.Timestamp) -> pd.DataFrame:
    return frame[frame["as_of_date"] == as_of].reset_index(drop=True)


@PROPERTY
@given(rows=rows_strategy, windows=windows_strategy, d=st.integers(0, N_DAYS - 1))
def test_features_match_brute_force(rows, windows, d) -> None:
    """Every feature equals its definition computed directly, for any day of a range."""
    activity = activity_frame(rows)
    days = pd.date_range(day(0), day(N_DAYS - 1))
    got = rows_of(customer_features(activity, days, windows), day(d))
    expected = naive_features(activity, day(d), windows)
    if expected is None:
        assert got.empty
    else:
        pd.testing.assert_frame_equal(got, expected, check_dtype=False, rtol=1e-9)


@PROPERTY
@given(
    rows=rows_strategy,
    future=rows_strategy,
    windows=windows_strategy,
    d=st.integers(0, N_DAYS - 2),
)
def test_activity_after_d_never_changes_features_of_d(rows, future, windows, d) -> None:
    """Replacing all activity after D (in a range that reaches past D) leaves D's features alone."""
    activity = activity_frame(rows)
    past = activity[activity["activity_date"] <= day(d)]
    new_future = activity_frame(future)
    perturbed = pd.concat(
        [past, new_future[new_future["activity_date"] > day(d)]], ignore_index=True
    )
    days = pd.date_range(day(0), day(N_DAYS - 1))
    before = rows_of(customer_features(activity, days, windows), day(d))
    after = rows_of(customer_features(perturbed, days, windows), day(d))
    pd.testing.assert_frame_equal(before, after, check_exact=True)


@PROPERTY
@given(
    rows=rows_strategy,
    noise=rows_strategy,
    horizon=st.integers(1, 10),
    d=st.integers(0, N_DAYS - 1),
)
def test_activity_outside_horizon_never_changes_labels_of_d(rows, noise, horizon, d) -> None:
    """Activity on or before D, or after D+H, does not change D's labels; inside it does."""
    activity = activity_frame(rows)
    days = pd.date_range(day(0), day(N_DAYS - 1))
    population = customer_features(activity, days, (3, 7))[["as_of_date", "customer_id"]]
    inside = (activity["activity_date"] > day(d)) & (activity["activity_date"] <= day(d + horizon))
    extra = activity_frame(noise)
    extra_inside = (extra["activity_date"] > day(d)) & (extra["activity_date"] <= day(d + horizon))
    # Keep D's horizon exactly; replace everything else (outside the horizon) with noise.
    perturbed = pd.concat([activity[inside], extra[~extra_inside]], ignore_index=True)
    before = rows_of(churn_labels(population, activity, horizon), day(d))
    after = rows_of(churn_labels(population, perturbed, horizon), day(d))
    pd.testing.assert_frame_equal(before, after, check_exact=True)
    # And the labels are what the definition says.
    for rec in before.itertuples():
        mine = activity[inside & (activity["customer_id"] == rec.customer_id)]
        assert rec.purchases_in_horizon == mine["txn_count"].sum()
        assert rec.churned == int(mine["txn_count"].sum() == 0)


@PROPERTY
@given(rows=rows_strategy, windows=windows_strategy, d=st.integers(0, N_DAYS - 6))
def test_one_day_equals_same_day_of_a_range(rows, windows, d) -> None:
    """A one-day run gives the rows a range run gives for that day (features and labels).

    Same customers, same counts; money sums agree to rounding (a range differences longer
    cumulative sums than a single day does).
    """
    activity = activity_frame(rows)
    days = pd.date_range(day(0), day(N_DAYS - 6))
    ranged = customer_features(activity, days, windows)
    single = customer_features(activity, pd.DatetimeIndex([day(d)]), windows)
    same_day = rows_of(ranged, day(d))
    pd.testing.assert_frame_equal(single, same_day, check_exact=False, rtol=1e-9, atol=1e-9)
    counts = ["customer_id", "recency_days", *(f"txn_count_{w}d" for w in windows)]
    pd.testing.assert_frame_equal(single[counts], same_day[counts], check_exact=True)
    ranged_labels = churn_labels(ranged[["as_of_date", "customer_id"]], activity, 5)
    single_labels = churn_labels(single[["as_of_date", "customer_id"]], activity, 5)
    pd.testing.assert_frame_equal(single_labels, rows_of(ranged_labels, day(d)), check_exact=True)


@PROPERTY
@given(rows=rows_strategy, windows=windows_strategy)
def test_customer_chunking_does_not_change_results(rows, windows) -> None:
    """Processing customers in chunks (to bound memory) gives the same rows as one chunk."""
    activity = activity_frame(rows)
    days = pd.date_range(day(0), day(N_DAYS - 6))
    whole_f = customer_features(activity, days, windows)
    whole_l = churn_labels(whole_f[["as_of_date", "customer_id"]], activity, 4)
    with mock.patch.object(feature_kernel, "CHUNK_CUSTOMERS", 3):
        chunked_f = customer_features(activity, days, windows)
        chunked_l = churn_labels(chunked_f[["as_of_date", "customer_id"]], activity, 4)
    pd.testing.assert_frame_equal(whole_f, chunked_f, check_exact=True)
    pd.testing.assert_frame_equal(whole_l, chunked_l, check_exact=True)


@pytest.mark.parametrize("offset", [1, 2, 5])
def test_activity_inside_window_does_change_features(offset: int) -> None:
    """Sanity for the properties above: activity inside (D-W, D] is actually read."""
    base = customer_features(HAND, pd.DatetimeIndex([D]), (3, 7))
    extra = activity_frame([(1, 6 - offset, 1, 1.0)])
    changed = customer_features(
        pd.concat([HAND, extra]).drop_duplicates(["activity_date", "customer_id"], keep="last"),
        pd.DatetimeIndex([D]),
        (3, 7),
    )
    assert not base.equals(changed)


# --------------------------------------------------------------------------------------------
# Dagster assets: a whole range in one run, maturity of labels, missing look-back
# --------------------------------------------------------------------------------------------

RANGE_START, RANGE_END = "2026-01-01", "2026-01-20"  # the last daily partition
RANGE = {
    "partitions": {"start_date": "2026-01-01", "end_date": "2026-01-21"},
    "source": {"synthetic": {"seed": 5, "n_customers": 300, "n_items": 40}},
    "features": {"windows": [3, 7]},
    "labels": {"horizon_days": 5},
}
RAW_TX = dg.AssetKey(["raw", "transactions"])


def range_settings(root: Path) -> Settings:
    raw = deep_merge(yaml.safe_load(DEMO_SETTINGS.read_text()), SMALL)
    raw = deep_merge(raw, RANGE)
    raw = deep_merge(
        raw,
        {
            "warehouse": {
                "database": str(root / "warehouse.duckdb"),
                "artifact_root": str(root / "artifacts"),
            }
        },
    )
    return parse_settings(raw, "range test settings")


class Backfilled:
    def __init__(self, settings, defs, instance, result):
        self.settings: Settings = settings
        self.defs: dg.Definitions = defs
        self.instance: dg.DagsterInstance = instance
        self.result: dg.ExecuteInProcessResult = result

    def table(self, sql: str) -> pd.DataFrame:
        with duckdb.connect(
            self.settings.warehouse.database, config=dict(DAGSTER_DUCKDB_CONFIG)
        ) as con:
            return con.execute(sql).df()


@pytest.fixture(scope="module")
def backfilled() -> Iterator[Backfilled]:
    """raw → activity → features over every day partition, as one ranged run."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        settings = range_settings(root)
        defs = build_defs(settings)
        (root / "home").mkdir()
        with dg.instance_for_test(temp_dir=str(root / "home")) as instance:
            result = run(
                defs,
                instance,
                [RAW_TX, ACTIVITY, FEATURES],
                partition_range=(RANGE_START, RANGE_END),
            )
            yield Backfilled(settings, defs, instance, result)


def test_daily_assets_use_single_run_backfill(backfilled: Backfilled) -> None:
    """raw, activity, features and labels declare the single-run backfill policy."""
    for key in (RAW_TX, ACTIVITY, FEATURES, LABELS):
        policy = backfilled.defs.resolve_assets_def(key).backfill_policy
        assert policy == dg.BackfillPolicy.single_run(), key


def test_range_is_one_run_with_one_step_per_asset(backfilled: Backfilled) -> None:
    """The whole range is one run; each asset computes once and records every day partition."""
    instance, result = backfilled.instance, backfilled.result
    assert result.success
    assert len(instance.get_runs()) == 1
    successes = [e.step_key for e in result.all_events if e.event_type_value == "STEP_SUCCESS"]
    assert sorted(successes) == sorted(set(successes))
    all_days = set(day_keys(pd.Timestamp(RANGE_START), pd.Timestamp("2026-01-21")))
    assert len(all_days) == 20
    for key in (RAW_TX, ACTIVITY, FEATURES):
        assert instance.get_materialized_partitions(key) == all_days, key
        records = instance.fetch_materializations(key, limit=100).records
        assert {r.run_id for r in records} == {result.run_id}


def test_warehouse_features_equal_pure_one_day_computation(backfilled: Backfilled) -> None:
    """A day's features written by the range run equal the pure one-day computation."""
    as_of = pd.Timestamp("2026-01-12")
    activity = backfilled.table("select * from features.customer_activity")
    stored = backfilled.table(
        f"select * from features.customer_features where as_of_date = '{as_of.date()}'"
        " order by customer_id"
    )
    expected = customer_features(activity, pd.DatetimeIndex([as_of]), (3, 7))
    assert len(expected) > 50
    pd.testing.assert_frame_equal(
        stored.reset_index(drop=True), expected, check_dtype=False, rtol=1e-9, atol=1e-9
    )
    per_day = backfilled.table(
        "select count(distinct as_of_date) from features.customer_features"
    ).iloc[0, 0]
    assert per_day == 20


def test_a_later_range_carries_lifetime_state_from_the_warehouse(
    backfilled: Backfilled,
) -> None:
    """Re-running only the last days reads lifetime aggregates of earlier days by SQL; the rows
    equal the pure computation over all history, dormant customers (no purchase in the last
    7 days, outside every window) included with their uncapped recency."""
    assert run(
        backfilled.defs,
        backfilled.instance,
        [FEATURES],
        partition_range=("2026-01-17", RANGE_END),
    ).success
    activity = backfilled.table("select * from features.customer_activity")
    stored = backfilled.table(
        "select * from features.customer_features where as_of_date >= '2026-01-17'"
        " order by as_of_date, customer_id"
    )
    days = pd.date_range("2026-01-17", RANGE_END)
    expected = customer_features(activity, days, (3, 7))
    pd.testing.assert_frame_equal(
        stored.reset_index(drop=True), expected, check_dtype=False, rtol=1e-9, atol=1e-9
    )
    dormant = stored[stored["txn_count_7d"] == 0]
    assert len(dormant) > 0 and (dormant["recency_days"] >= 7).all()
    known = activity[activity["activity_date"] <= pd.Timestamp(RANGE_END)]["customer_id"]
    last_day = stored[stored["as_of_date"] == pd.Timestamp(RANGE_END)]
    assert set(last_day["customer_id"]) == set(known)


def test_labels_of_mature_days_succeed(backfilled: Backfilled) -> None:
    """Labels whose horizon ends on or before the last partition materialise."""
    result = run(
        backfilled.defs,
        backfilled.instance,
        [LABELS],
        partition_range=("2026-01-10", "2026-01-15"),
    )
    assert result.success
    labels = backfilled.table("select * from labels.churn_labels")
    assert sorted(labels["as_of_date"].dt.strftime("%Y-%m-%d").unique()) == day_keys(
        pd.Timestamp("2026-01-10"), pd.Timestamp("2026-01-16")
    )
    assert set(labels["churned"]) <= {0, 1}


def test_immature_labels_fail_naming_the_dates(backfilled: Backfilled) -> None:
    """Labels for days whose horizon passes the last partition fail, naming the dates."""
    result = run(
        backfilled.defs,
        backfilled.instance,
        [LABELS],
        partition_range=("2026-01-14", "2026-01-17"),
        raise_on_error=False,
    )
    assert not result.success
    failure = result.get_step_failure_events()[0].step_failure_data.error
    assert failure is not None
    message = failure.message
    assert "2026-01-14 … 2026-01-17 have not matured" in message
    assert "need activity up to 2026-01-22" in message
    assert "last day partition is 2026-01-20" in message
    assert "2026-01-17" not in backfilled.instance.get_materialized_partitions(LABELS)


def test_missing_history_partitions_fail_by_name(tmp_path: Path) -> None:
    """features for D fail, naming the activity days before D that do not exist."""
    settings = range_settings(tmp_path)
    defs = build_defs(settings)
    (tmp_path / "home").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "home")) as instance:
        run(defs, instance, [RAW_TX, ACTIVITY], partition_range=("2026-01-10", "2026-01-12"))
        result = run(defs, instance, [FEATURES], partition="2026-01-12", raise_on_error=False)
        assert not result.success
        error = result.get_step_failure_events()[0].step_failure_data.error
        assert error is not None
        # Lifetime features (tenure, lifetime spend) need every activity day since the start.
        assert (
            "features/customer_activity is missing partitions 2026-01-01, 2026-01-02, "
            "2026-01-03, 2026-01-04, 2026-01-05 … (9 in all): lifetime features read all history"
        ) in error.message
        assert instance.get_materialized_partitions(FEATURES) == set()
