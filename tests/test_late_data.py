"""Late or corrected files reach every day they change (ranged runs), and a file that keeps
failing to read is alerted once. Real files, real sensor ticks on a real instance, real runs."""

from __future__ import annotations

import datetime as dt
import itertools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st

from assets.keys import ACTIVITY, CHURN_SCORES, CHURN_SHADOW, FEATURES, LABELS, raw_keys
from definitions import build_defs
from lifecycle.drops import load_cursor, load_state
from lifecycle.late_data import Dependent, PlannedRange, Reach, day_ranges, plan_ranges, stale_days
from lifecycle.settings import Settings, SettingsError
from resources.alerts import AlertResource
from sensors import RANGE_END_TAG, RANGE_START_TAG
from tests.conftest import Webhook

TX_RAW = raw_keys("transactions")
INGEST = [*TX_RAW, ACTIVITY, FEATURES]
D0 = dt.date(2026, 1, 1)


def day(n: int) -> dt.date:
    return D0 + dt.timedelta(days=n - 1)  # day(12) is 2026-01-12


# --- the plan (pure) ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reach", "changed", "expected"),
    [
        (Reach(-2, 0), [10], [10, 11, 12]),  # a 3-day look-back: D reads D-2 … D
        (Reach(1, 5), [10], [5, 6, 7, 8, 9]),  # a 5-day horizon: D reads D+1 … D+5
        (Reach(None, 0), [10], list(range(10, 21))),  # lifetime history: every later day
        (Reach(None, 5), [10], list(range(5, 21))),  # labels: horizon and population
        (Reach(-2, 0), [3, 4, 15], [3, 4, 5, 6, 15, 16, 17]),
        (Reach(-2, 0), [], []),
    ],
)
def test_stale_days_follow_the_reach(reach: Reach, changed: list[int], expected: list[int]) -> None:
    candidates = [day(n) for n in range(1, 21)]
    assert sorted(stale_days([day(n) for n in changed], reach, candidates)) == [
        day(n) for n in expected
    ]
    with pytest.raises(ValueError, match="after last"):
        Reach(2, 1)


@hyp_settings(max_examples=200, deadline=None)
@given(
    changed=st.sets(st.integers(0, 60), max_size=6),
    candidates=st.sets(st.integers(0, 60)),
    first=st.one_of(st.none(), st.integers(-10, 3)),
    width=st.integers(0, 10),
)
def test_stale_days_and_ranges_match_brute_force(
    changed: set[int], candidates: set[int], first: int | None, width: int
) -> None:
    last = (first or 0) + width
    reach = Reach(first, last)
    as_day = {n: D0 + dt.timedelta(days=n) for n in range(-20, 100)}
    got = stale_days({as_day[n] for n in changed}, reach, {as_day[n] for n in candidates})
    brute = {
        as_day[d]
        for d in candidates
        if any((first is None or d + first <= c) and c <= d + last for c in changed)
    }
    assert got == brute
    ranges = day_ranges(got)
    covered = [a + dt.timedelta(days=i) for a, b in ranges for i in range((b - a).days + 1)]
    assert sorted(covered) == sorted(got) and len(covered) == len(set(covered))
    assert all(b1 + dt.timedelta(days=1) < a2 for (_, b1), (a2, _) in itertools.pairwise(ranges))


def test_plan_merges_days_into_ranges_stage_by_stage() -> None:
    deps = [
        Dependent("features", "tx", Reach(None, 0), on_changed=True),
        Dependent("scores", "tx", Reach(None, 0)),
        Dependent("labels", "tx", Reach(None, 5), stage=1),
        Dependent("recs", "ix", Reach(None, 0)),
    ]
    done = {
        "features": [day(n) for n in range(1, 25)],
        "scores": [day(n) for n in [*range(15, 20), *range(21, 25)]],  # a hole on the 20th
        "labels": [day(n) for n in range(1, 20)],
        "recs": [day(n) for n in range(1, 25)],
    }
    plan = plan_ranges({"tx": {day(12), day(13)}, "ix": {day(23)}}, deps, done)
    assert plan == [
        PlannedRange(0, day(12), day(13), frozenset({"raw:tx", "features"})),
        PlannedRange(0, day(14), day(14), frozenset({"features"})),
        PlannedRange(0, day(15), day(19), frozenset({"features", "scores"})),
        PlannedRange(0, day(20), day(20), frozenset({"features"})),
        PlannedRange(0, day(21), day(22), frozenset({"features", "scores"})),
        PlannedRange(0, day(23), day(23), frozenset({"features", "scores", "raw:ix", "recs"})),
        PlannedRange(0, day(24), day(24), frozenset({"features", "scores", "recs"})),
        PlannedRange(1, day(7), day(19), frozenset({"labels"})),
    ]
    # A never-materialised day still gets its features when its raw rows change.
    assert plan_ranges({"tx": {day(30)}}, deps, done) == [
        PlannedRange(0, day(30), day(30), frozenset({"raw:tx", "features"}))
    ]


# --- a small files world ------------------------------------------------------------------------


def write_rows(path: Path, rows: list[tuple[int, str, float]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows, columns=["customer_id", "timestamp", "amount"]).to_csv(path, index=False)
    return path


def base_rows() -> list[tuple[int, str, float]]:
    """Days 1 … 24 of January: customer c buys every c-th day; customer 4 stops on the 10th."""
    rows = []
    for n in range(1, 25):
        for c in (1, 2, 3, 4):
            if n % c == 0 and (c != 4 or n <= 10):
                rows.append((c, f"{day(n)} {8 + c}:00", 10.0 + c + n / 2))
    return rows


# Day 12 arrives late: customer 1 bought more, and customer 99 bought for the first time.
LATE_ROWS = [(1, f"{day(12)} 15:00", 100.0), (99, f"{day(12)} 16:00", 42.0)]


def world_settings(make_settings: Callable[..., Settings], drop: Path, **files: Any) -> Settings:
    return make_settings(
        {
            "source": {
                "kind": "files",
                "files": {"transactions_glob": str(drop / "tx_*.csv"), **files},
            },
            # A 3-day look-back, so days past the window are in the 24 days.
            "features": {"windows": [2, 3]},
            "labels": {"horizon_days": 5},
        }
    )


def tick(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    cursor: str | None,
    alerts: AlertResource | None = None,
) -> dg.SensorResult:
    resources = {"alerts": alerts or defs.resources["alerts"]}
    sensor = defs.resolve_sensor_def("files_drop_sensor")
    with dg.build_sensor_context(
        instance=instance, cursor=cursor, resources=resources, definitions=defs
    ) as ctx:
        result = sensor(ctx)
    assert isinstance(result, dg.SensorResult), result
    return result


def execute(defs: dg.Definitions, instance: dg.DagsterInstance, request: dg.RunRequest) -> None:
    """Run a request as the daemon would launch it (same job, partition or range, selection)."""
    result = defs.resolve_job_def("daily_refresh").execute_in_process(
        instance=instance,
        partition_key=request.partition_key,
        asset_selection=request.asset_selection,
        tags=request.tags,
    )
    assert result.success


def labels_until(defs: dg.Definitions, instance: dg.DagsterInstance, last: int) -> None:
    tags = {RANGE_START_TAG: str(day(1)), RANGE_END_TAG: str(day(last))}
    execute(defs, instance, dg.RunRequest(asset_selection=[LABELS], tags=tags))


def ingested_world(
    settings: Settings, instance: dg.DagsterInstance, drop: Path
) -> tuple[dg.Definitions, str]:
    """Days 1 … 24 dropped and ingested through the sensor, labels 1 … 19 (matured)."""
    defs = build_defs(settings)
    write_rows(drop / "tx_base.csv", base_rows())
    first = tick(defs, instance, None)
    (request,) = first.run_requests or []
    assert (request.tags[RANGE_START_TAG], request.tags[RANGE_END_TAG]) == (
        str(day(1)),
        str(day(24)),
    )
    execute(defs, instance, request)
    labels_until(defs, instance, 19)
    assert first.cursor is not None
    return defs, first.cursor


def span(request: dg.RunRequest) -> tuple[str, str]:
    if request.partition_key:
        return request.partition_key, request.partition_key
    return request.tags[RANGE_START_TAG], request.tags[RANGE_END_TAG]


# --- late data through the sensor ---------------------------------------------------------------


def test_a_late_day_requests_ranges_for_features_scores_and_labels(
    make_settings: Callable[..., Settings], instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    drop = tmp_path / "drop"
    defs, cursor = ingested_world(world_settings(make_settings, drop), instance, drop)
    # Scores written by earlier daily runs (recorded on the instance; a champion is not needed
    # to know which days hold scores): the 15th … 24th except the 20th; shadow on 22 … 24.
    for n in [*range(15, 20), *range(21, 25)]:
        instance.report_runless_asset_event(
            dg.AssetMaterialization(CHURN_SCORES, partition=str(day(n)))
        )
    for n in range(22, 25):
        instance.report_runless_asset_event(
            dg.AssetMaterialization(CHURN_SHADOW, partition=str(day(n)))
        )

    write_rows(drop / "tx_late.csv", LATE_ROWS)
    late = tick(defs, instance, cursor)
    requests = late.run_requests or []
    got = [(span(r), r.asset_selection, r.tags["lifecycle/drop_stage"]) for r in requests]
    d = str
    assert got == [
        ((d(day(12)), d(day(12))), INGEST, "ingest"),
        ((d(day(13)), d(day(14))), [FEATURES], "ingest"),
        ((d(day(15)), d(day(19))), [FEATURES, CHURN_SCORES], "ingest"),
        ((d(day(20)), d(day(20))), [FEATURES], "ingest"),
        ((d(day(21)), d(day(21))), [FEATURES, CHURN_SCORES], "ingest"),
        ((d(day(22)), d(day(24))), [FEATURES, CHURN_SCORES, CHURN_SHADOW], "ingest"),
        # Labels from day 12 - 5 on: their horizon (7 … 11) and population (12 …) changed;
        # only the matured, materialised ones (… 19).
        ((d(day(7)), d(day(19))), [LABELS], "labels"),
    ]
    assert all(r.tags["lifecycle/trigger"] == "files_drop" for r in requests)
    keys = [r.run_key for r in requests]
    assert len(set(keys)) == len(keys)
    # The same tick again (e.g. after a crash before the cursor was saved): the same run keys,
    # so the daemon launches nothing twice; with the new cursor: nothing to do.
    assert [r.run_key for r in tick(defs, instance, cursor).run_requests or []] == keys
    assert not tick(defs, instance, late.cursor).run_requests


def features_table(settings: Settings) -> pd.DataFrame:
    with duckdb.connect(settings.warehouse.database, read_only=True) as con:
        frame = con.execute("select * from features.customer_features").fetchdf()
    return frame.sort_values(["as_of_date", "customer_id"]).reset_index(drop=True)


def labels_table(settings: Settings) -> pd.DataFrame:
    with duckdb.connect(settings.warehouse.database, read_only=True) as con:
        frame = con.execute("select * from labels.churn_labels").fetchdf()
    return frame.sort_values(["as_of_date", "customer_id"]).reset_index(drop=True)


def test_ranged_runs_bring_every_later_day_to_a_full_recompute(
    make_settings: Callable[..., Settings], instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    drop = tmp_path / "drop"
    settings = world_settings(make_settings, drop)
    defs, cursor = ingested_world(settings, instance, drop)
    before = features_table(settings)
    labels_before = labels_table(settings)

    write_rows(drop / "tx_late.csv", LATE_ROWS)
    for request in tick(defs, instance, cursor).run_requests or []:
        execute(defs, instance, request)  # in the order requested, as the run queue would
    after = features_table(settings)
    labels_after = labels_table(settings)

    def spend(frame: pd.DataFrame, n: int, customer: str = "1") -> float:
        row = frame[
            (frame["as_of_date"] == pd.Timestamp(day(n))) & (frame["customer_id"] == customer)
        ]
        return float(row["lifetime_spend"].iloc[0])

    assert spend(after, 13) == pytest.approx(spend(before, 13) + 100.0)  # d+1
    # Past the 3-day look-back: lifetime features changed too, and were redone.
    assert spend(after, 20) == pytest.approx(spend(before, 20) + 100.0)
    assert spend(after, 11) == spend(before, 11)  # days before d are untouched
    newcomer = after[after["customer_id"] == "99"]["as_of_date"]
    assert sorted(newcomer.dt.date) == [day(n) for n in range(12, 25)]

    # Same answer as ingesting both files from scratch, features and labels alike.
    fresh_root = tmp_path / "fresh"
    fresh_root.mkdir()
    fresh_settings = world_settings(make_settings, drop).model_copy(
        update={
            "warehouse": settings.warehouse.model_copy(
                update={
                    "database": str(fresh_root / "warehouse.duckdb"),
                    "artifact_root": str(fresh_root / "artifacts"),
                }
            )
        }
    )
    with dg.instance_for_test(temp_dir=str(fresh_root)) as fresh:
        fresh_defs = build_defs(fresh_settings)
        (request,) = tick(fresh_defs, fresh, None).run_requests or []
        execute(fresh_defs, fresh, request)
        labels_until(fresh_defs, fresh, 19)
    pd.testing.assert_frame_equal(after, features_table(fresh_settings))
    pd.testing.assert_frame_equal(labels_after, labels_table(fresh_settings))
    # The horizon of days 7 … 11 covers day 12: customer 1 bought once more in it.
    horizon = labels_after[labels_after["customer_id"] == "1"].set_index("as_of_date")
    old = labels_before[labels_before["customer_id"] == "1"].set_index("as_of_date")
    changed = horizon["purchases_in_horizon"] - old["purchases_in_horizon"]
    assert sorted(changed[changed != 0].index.date) == [day(n) for n in range(7, 12)]


# --- a file that keeps failing ------------------------------------------------------------------


def test_a_file_failing_three_ticks_alerts_once_until_it_changes(
    make_settings: Callable[..., Settings],
    instance: dg.DagsterInstance,
    tmp_path: Path,
    webhook: Webhook,
) -> None:
    drop = tmp_path / "drop"
    defs = build_defs(world_settings(make_settings, drop))
    alerts = AlertResource(kind="webhook", webhook_url=webhook.url, backoff_s=0.01)
    good = write_rows(drop / "tx_good.csv", [(1, f"{day(3)} 10:00", 5.0)])
    # The cursor of the sensor before this change (a flat {path: fingerprint}) still reads.
    legacy = json.dumps(
        {p: fp.as_dict() for p, fp in load_cursor(tick(defs, instance, None).cursor).items()}
    )
    assert str(good) in load_cursor(legacy)
    bad = drop / "tx_bad.csv"
    bad.write_text("customer_id,when,amount\n1,2026-01-11,3\n")  # no timestamp column

    cursor: str | None = legacy
    for n in range(1, 6):
        result = tick(defs, instance, cursor, alerts)
        assert not result.run_requests  # the good file was seen; the bad one never ingests
        cursor = result.cursor
        assert len(webhook.received) == (0 if n < 3 else 1), n
    (alert,) = webhook.received
    assert alert["json"]["failed"] == "drop_file" and alert["json"]["severity"] == "error"
    assert (
        alert["json"]["key"] == str(bad) and alert["json"]["details"]["consecutive_failures"] == "3"
    )
    assert "timestamp" in alert["json"]["message"]  # the reader's error, naming the missing column
    _, failures = load_state(cursor)
    assert failures[str(bad)].count == 5 and failures[str(bad)].alerted

    # New bytes, still unreadable: counted afresh; the webhook is down at first, so the alert
    # goes out on the next tick instead (at least once, never blocking the other files).
    bad.write_text("customer_id,when,amount\n1,2026-01-12,4\n")
    webhook.statuses[:] = [500, 500, 500]
    for n in range(1, 5):
        cursor = tick(defs, instance, cursor, alerts).cursor
        assert len(webhook.received) == {1: 1, 2: 1, 3: 4, 4: 5}[n], n
    assert webhook.received[-1]["json"]["details"]["consecutive_failures"] == "4"

    # Fixed: it is ingested and no longer counted.
    write_rows(bad, [(1, f"{day(11)} 10:00", 3.0)])
    fixed = tick(defs, instance, cursor, alerts)
    (request,) = fixed.run_requests or []
    assert request.partition_key == str(day(11))
    assert load_state(fixed.cursor)[1] == {}
    assert len(webhook.received) == 5


def test_alert_after_failures_is_a_validated_setting(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    drop = tmp_path / "drop"
    assert world_settings(make_settings, drop).source.files.alert_after_failures == 3  # type: ignore[union-attr]
    assert (
        world_settings(
            make_settings, drop, alert_after_failures=1
        ).source.files.alert_after_failures
        == 1
    )  # type: ignore[union-attr]
    for wrong in (0, -2, "often"):
        with pytest.raises(SettingsError, match="alert_after_failures"):
            world_settings(make_settings, drop, alert_after_failures=wrong)
