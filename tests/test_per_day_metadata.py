"""Ranged runs carry each day's own figures and check results; range runs name their days."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
from conftest import run
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus
from test_ingest_assets import BAD_ON_MAR_3, files_settings, good_rows, write

from assets.keys import ACTIVITY, FEATURES, Selection, raw_keys
from assets.per_day import DAYS_TAG, days_tag
from definitions import build_defs
from jobs.cli import _run
from lifecycle.late_data import PlannedRange
from lifecycle.settings import Settings
from sensors.drop import run_requests

RAW_TX = dg.AssetKey(["raw", "transactions"])
QUARANTINE = dg.AssetKey(["raw", "transactions_quarantine"])
QUALITY = dg.AssetKey(["raw", "transactions_daily_quality"])
CHECK = dg.AssetCheckKey(RAW_TX, "transactions_quarantine_share")
RANGE = ("2026-03-02", "2026-03-04")
DAYS = ["2026-03-02", "2026-03-03", "2026-03-04"]


def latest_by_day(instance: dg.DagsterInstance, key: dg.AssetKey) -> dict[str, dict]:
    """The newest materialisation's metadata of each partition, read back from the instance."""
    found: dict[str, dict] = {}
    for record in instance.fetch_materializations(key, limit=100).records:
        mat = record.asset_materialization
        assert mat is not None and mat.partition is not None
        found.setdefault(mat.partition, {k: v.value for k, v in mat.metadata.items()})
    return found


def test_ranged_raw_run_records_each_days_figures_and_check(
    tmp_path: Path, make_settings: Callable[..., Settings], instance: dg.DagsterInstance
) -> None:
    """3-day range, 6 clean rows a day plus 4 bad rows on Mar 3 (other customers on Mar 4):
    each day's materialisation has its own rows, quarantined rows, customers and preview, and
    each day has one completed check record (Mar 3 failed, the others passed), none planned."""
    extra = good_rows(["2026-03-04"]).assign(client=lambda f: f["client"] + "9").head(2)
    write(tmp_path / "in", pd.concat([good_rows(DAYS), BAD_ON_MAR_3, extra]))
    settings = files_settings(make_settings, tmp_path / "in")
    result = run(build_defs(settings), instance, [RAW_TX], partition_range=RANGE)
    assert result.success

    clean = latest_by_day(instance, RAW_TX)
    assert sorted(clean) == DAYS
    assert [clean[d]["rows"] for d in DAYS] == [6, 6, 8]
    assert [clean[d]["quarantined_rows"] for d in DAYS] == [0, 4, 0]
    assert [clean[d]["customers"] for d in DAYS] == [6, 6, 8]
    assert clean["2026-03-03"]["quarantine_share"] == pytest.approx(0.4)
    for day in DAYS:  # each preview (Dagster's table) shows rows of its own day only
        preview = clean[day]["preview"]
        assert isinstance(preview, dg.TableMetadataValue)
        shown = {str(v)[:10] for record in preview.records for v in record.data.values()}
        assert day in shown
        assert not {d for d in DAYS if d != day} & shown
        assert clean[day]["range_rows"] == 20 and clean[day]["range"] == "2026-03-02…2026-03-04"
    quarantine = latest_by_day(instance, QUARANTINE)
    assert [quarantine[d]["rows"] for d in DAYS] == [0, 4, 0]
    quality = latest_by_day(instance, QUALITY)
    assert [quality[d]["passed"] for d in DAYS] == [True, False, True]
    # The column schema (the same every day) is stored once, on the range's last day.
    for table in (clean, quarantine, quality):
        assert [("dagster/column_schema" in table[d]) for d in DAYS] == [False, False, True]
    names = [c.name for c in clean[DAYS[-1]]["dagster/column_schema"].columns]
    assert {"customer_id", "amount", "event_date"} <= set(names)

    evaluations = result.get_asset_check_evaluations()
    assert sorted(str(e.partition) for e in evaluations) == DAYS
    history = instance.event_log_storage.get_asset_check_execution_history(CHECK, limit=50)
    by_day = {row.partition: row for row in history}
    assert len(history) == 3 and sorted(by_day) == DAYS  # one row per day, none range-wide
    status = {day: row.status for day, row in by_day.items()}
    assert status == {
        "2026-03-02": AssetCheckExecutionRecordStatus.SUCCEEDED,
        "2026-03-03": AssetCheckExecutionRecordStatus.FAILED,
        "2026-03-04": AssetCheckExecutionRecordStatus.SUCCEEDED,
    }
    bad = by_day["2026-03-03"].event
    assert bad is not None and bad.asset_check_evaluation is not None
    meta = {k: v.value for k, v in bad.asset_check_evaluation.metadata.items()}
    assert meta["share"] == pytest.approx(0.4) and meta["quarantined_rows"] == 4
    assert meta["range_worst_day"] == "2026-03-03" and meta["range_days_over_bound"] == 1
    good = by_day["2026-03-02"].event
    assert good is not None and good.asset_check_evaluation is not None
    assert good.asset_check_evaluation.metadata["share"].value == 0.0
    # Each evaluation points at its own day's materialisation.
    target = good.asset_check_evaluation.target_materialization_data
    assert target is not None and target.run_id == result.run_id
    mats = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=RAW_TX, asset_partitions=["2026-03-02"]), limit=1
    ).records
    assert target.storage_id == mats[0].storage_id


def test_ranged_feature_run_records_each_days_customers(
    tmp_path: Path, make_settings: Callable[..., Settings], instance: dg.DagsterInstance
) -> None:
    """Activity and features of a range: per day rows and customers, not the range's."""
    write(tmp_path / "in", pd.concat([good_rows(DAYS), good_rows(["2026-03-01"])]))
    settings = files_settings(make_settings, tmp_path / "in")
    defs = build_defs(settings)
    assert run(defs, instance, [RAW_TX, ACTIVITY], partition_range=("2026-03-01", "2026-03-04"))
    run(defs, instance, [FEATURES], partition_range=RANGE)
    activity = latest_by_day(instance, ACTIVITY)
    assert [activity[d]["customers"] for d in DAYS] == [6, 6, 6]
    features = latest_by_day(instance, FEATURES)
    # Every customer seen on or before D: 6 new customers a day since Mar 1.
    assert [features[d]["customers"] for d in DAYS] == [12, 18, 24]
    assert [features[d]["rows"] for d in DAYS] == [12, 18, 24]
    assert all(features[d]["range_rows"] == 54 for d in DAYS)
    assert [("dagster/column_schema" in features[d]) for d in DAYS] == [False, False, True]
    # A run of one day keeps its schema on its own event.
    run(defs, instance, [FEATURES], partition="2026-03-02")
    again = latest_by_day(instance, FEATURES)["2026-03-02"]
    assert "customer_id" in [c.name for c in again["dagster/column_schema"].columns]


def test_drop_sensor_range_requests_name_their_days() -> None:
    """A planned range of several days is tagged with its days; a one-day run is a partition."""
    three = PlannedRange(
        0, dt.date(2026, 3, 2), dt.date(2026, 3, 4), frozenset({"raw:transactions"})
    )
    one = PlannedRange(0, dt.date(2026, 3, 6), dt.date(2026, 3, 6), frozenset({"raw:transactions"}))
    ranged, single = run_requests([three, one], Selection(("transactions",)), "abc", 1)
    assert ranged.tags[DAYS_TAG] == "2026-03-02…2026-03-04"
    assert DAYS_TAG not in single.tags and single.partition_key == "2026-03-06"


def test_cli_range_launch_names_its_days(
    tmp_path: Path, make_settings: Callable[..., Settings], instance: dg.DagsterInstance
) -> None:
    """The CLI's ranged launches carry the same tag, stored on the run (the runs list)."""
    write(tmp_path / "in", good_rows(DAYS))
    settings = files_settings(make_settings, tmp_path / "in")
    outcome = _run(
        build_defs(settings),
        instance,
        "daily_refresh",
        "ingest",
        keys=raw_keys("transactions"),
        days=RANGE,
    )
    assert outcome.status == "ok"
    (launched,) = instance.get_runs()
    assert launched.tags[DAYS_TAG] == "2026-03-02…2026-03-04" == days_tag(*RANGE)[DAYS_TAG]


def test_partition_metadata_in_one_step_is_what_dagster_records_per_day(tmp_path: Path) -> None:
    """add_partition_metadata gives each day its own entries over the output's range-level
    ones, exactly as add_asset_metadata(partition_key=day) would, and refuses a day the run
    does not target."""
    from assets.per_day import add_partition_metadata

    parts = dg.DailyPartitionsDefinition(start_date="2026-03-01")
    asked: dict[str, dict] = {}

    @dg.asset(partitions_def=parts, backfill_policy=dg.BackfillPolicy.single_run())
    def daily(context) -> dg.MaterializeResult:  # unannotated: a string annotation is refused
        add_partition_metadata(context, None, asked)
        return dg.MaterializeResult(metadata={"rows": -1, "range_rows": 6})

    tags = {
        "dagster/asset_partition_range_start": DAYS[0],
        "dagster/asset_partition_range_end": DAYS[-1],
    }
    asked.update({day: {"rows": i + 1, "day": day} for i, day in enumerate(DAYS)})
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        assert dg.materialize([daily], instance=instance, tags=tags).success
        got = latest_by_day(instance, dg.AssetKey("daily"))
        assert got == {
            day: {"rows": i + 1, "day": day, "range_rows": 6} for i, day in enumerate(DAYS)
        }
        asked["2026-03-09"] = {"rows": 9}  # not a day of this run
        failed = dg.materialize([daily], instance=instance, tags=tags, raise_on_error=False)
        assert not failed.success
        (failure,) = [e for e in failed.all_events if e.is_step_failure]
        assert "2026-03-09" in str(failure.step_failure_data.error)


def test_day_summary_previews_keep_the_tables_columns_and_count_every_day() -> None:
    """The grouped top-n preview: at most n rows a day, all of a short day, the table's own
    columns (a struct column stays one column), and no previews when none are asked for."""
    import duckdb

    from assets.per_day import day_summary

    con = duckdb.connect()
    con.execute(
        "create table t as select (date '2026-03-02' + (i % 3)::int)::timestamp as_of_date, "
        "lpad(i::varchar, 4, '0') customer_id, {'a': i, 'b': 'x'} s, (i % 2) churned "
        "from range(11) r(i)"
    )
    con.execute("insert into t values ('2026-03-05', '0042', {'a': 0, 'b': 'y'}, 1)")
    start, end = pd.Timestamp("2026-03-02"), pd.Timestamp("2026-03-06")
    summary = day_summary(con, "t", "as_of_date", start, end, "avg(churned)", preview_rows=2)
    assert summary.tally.counts == {
        "2026-03-02": 4,
        "2026-03-03": 4,
        "2026-03-04": 3,
        "2026-03-05": 1,
    }
    assert {d: len(p) for d, p in summary.tally.previews.items()} == {
        "2026-03-02": 2,
        "2026-03-03": 2,
        "2026-03-04": 2,
        "2026-03-05": 1,
    }
    preview = summary.tally.previews["2026-03-05"]
    assert list(preview.columns) == ["as_of_date", "customer_id", "s", "churned"]
    assert preview["customer_id"].tolist() == ["0042"]
    none = day_summary(con, "t", "as_of_date", start, end, "avg(churned)", preview_rows=0)
    assert none.tally.rows == 12 and not none.tally.previews


def test_tally_of_day_sorted_chunks_equals_the_grouped_tally() -> None:
    """Chunks in (day, customer) order take the neighbour-comparing path; the same rows in
    any order give the same counts and the same first rows of each day."""
    from assets.per_day import DailyTally

    days = pd.to_datetime(["2026-03-01"] * 7 + ["2026-03-02"] * 2 + ["2026-03-04"] * 6)
    frame = pd.DataFrame({"as_of_date": days, "customer_id": [f"{i:04d}" for i in range(15)]})
    chunks = [frame.iloc[:4], frame.iloc[4:11], frame.iloc[11:]]  # days split across chunks
    fast = DailyTally("as_of_date", preview_rows=3)
    for chunk in chunks:
        fast.add(chunk.reset_index(drop=True))
    slow = DailyTally("as_of_date", preview_rows=3)
    for chunk in chunks:  # reversed rows: not sorted by day, so grouped by hashing
        slow.add(chunk.iloc[::-1].reset_index(drop=True))
    assert fast.counts == slow.counts == {"2026-03-01": 7, "2026-03-02": 2, "2026-03-04": 6}
    expect = {"2026-03-01": ["0000", "0001", "0002"], "2026-03-02": ["0007", "0008"]}
    expect["2026-03-04"] = ["0009", "0010", "0011"]
    assert {d: p["customer_id"].tolist() for d, p in fast.previews.items()} == expect
    # The grouped path keeps each day's first rows in the order given (here reversed).
    assert {d: len(p) for d, p in slow.previews.items()} == {d: len(v) for d, v in expect.items()}
