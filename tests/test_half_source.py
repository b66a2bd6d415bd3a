"""A source with only one raw table builds only that table's model family: the graph, its jobs,
schedules and sensors, the ingest run on the user's files, and the `lifecycle` command."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from zoneinfo import ZoneInfo

import dagster as dg
import duckdb
import pytest

from assets.keys import (
    BOTH,
    CHAMPIONS,
    DAILY,
    FAMILY_TABLE,
    INGEST,
    LABELS,
    MONTHLY,
    PREDICTIONS,
    Selection,
)
from definitions import build_defs
from jobs import cli
from tests.conftest import deep_merge, small_settings
from tests.half_world import half_settings, settings_file, shop_csvs

TABLES = ("transactions", "interactions")
OTHER = {"transactions": "interactions", "interactions": "transactions"}
FAMILY = {table: family for family, table in FAMILY_TABLE.items()}


def other_family_keys(table: str) -> set[dg.AssetKey]:
    return Selection((OTHER[table],)).all - Selection((table,)).all


@pytest.fixture(scope="module", params=TABLES)
def half(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """(table, settings, defs) for a files source configuring only ``table``; built once."""
    table = request.param
    root = tmp_path_factory.mktemp(f"{table}_only")
    settings = half_settings(root, table)
    return table, settings, build_defs(settings)


# --- the graph ---------------------------------------------------------------------------------


def test_the_graph_holds_exactly_the_configured_family(half) -> None:
    table, settings, defs = half
    assert settings.source.tables == (table,)
    graph = defs.resolve_asset_graph()
    keys = graph.get_all_asset_keys()
    assert keys == Selection((table,)).all
    assert not keys & other_family_keys(table)
    assert keys == set(graph.materializable_asset_keys)  # nothing external, nothing stubbed
    for key in keys:
        missing = graph.get(key).parent_keys - keys
        assert not missing, f"{key.to_user_string()} reads absent {missing}"
    checks = graph.asset_check_keys
    assert checks and {check.asset_key for check in checks} <= keys


def test_every_job_schedule_and_sensor_resolves_within_the_graph(half) -> None:
    table, _, defs = half
    family = FAMILY[table]
    keys = defs.resolve_asset_graph().get_all_asset_keys()
    jobs = {job.name for job in defs.jobs or []}
    assert jobs == {"daily_refresh", "monthly_training", "promote_champions", f"{family}_rollback"}
    for name in jobs:
        job = defs.resolve_job_def(name)
        selected = job.asset_layer.executable_asset_keys
        assert selected and selected <= keys, name
    assert defs.resolve_job_def("daily_refresh").asset_layer.executable_asset_keys == {
        *Selection((table,)).daily,
        *Selection((table,)).labels,
    }
    for schedule in defs.schedules or []:
        assert defs.resolve_schedule_def(schedule.name).job_name in jobs
    sensors = {sensor.name for sensor in defs.sensors or []}
    # Every family has a daily prediction check and its drift sensor (issue 15).
    drift = {f"{family}_drift_retrain"}
    assert sensors == {"files_drop_sensor", "run_failure_alert", "failed_check_alert", *drift}
    for name in sensors:
        sensor = defs.resolve_sensor_def(name)
        for target in sensor.targets:
            assert target.job_name in jobs, name
    dg.Definitions.validate_loadable(defs)


def test_the_daily_schedule_requests_only_present_assets(half) -> None:
    table, _, defs = half
    keys = Selection((table,))
    schedule = defs.resolve_schedule_def("daily_refresh_schedule")
    when = dt.datetime(2026, 3, 10, 8, tzinfo=ZoneInfo("UTC"))
    with dg.instance_for_test() as instance:
        requests = schedule(
            dg.build_schedule_context(instance=instance, scheduled_execution_time=when)
        )
    assert isinstance(requests, list)
    selections = {r.run_key: r.asset_selection for r in requests}
    expected = {"daily-2026-03-09": keys.daily}
    if keys.labels:
        expected["labels-2026-02-23"] = [LABELS]
    assert selections == expected


def test_ingest_runs_on_the_users_files_with_ids_verbatim(
    tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    """The run that failed before ("no interactions_glob configured"), for each half."""
    for table in TABLES:
        root = tmp_path / table
        written = shop_csvs(root / "drop", table)
        settings = half_settings(root, table)
        defs = build_defs(settings)
        keys = Selection((table,))
        days = ("2026-01-01", "2026-01-05")
        result = defs.resolve_job_def("daily_refresh").execute_in_process(
            instance=instance,
            asset_selection=keys.ingest,
            tags={
                "dagster/asset_partition_range_start": days[0],
                "dagster/asset_partition_range_end": days[1],
            },
        )
        assert result.success
        materialized = {e.asset_key for e in result.get_asset_materialization_events()}
        assert materialized == set(keys.ingest)
        in_range = written[written["timestamp"] < "2026-01-06"]
        id_columns = ["customer_id"] if table == "transactions" else ["user_id", "item_id"]
        with duckdb.connect(settings.warehouse.database, read_only=True) as con:
            stored = con.execute(f"select {', '.join(id_columns)} from raw.{table}").fetchdf()
            tables = {
                r[0]
                for r in con.execute("select table_name from information_schema.tables").fetchall()
            }
        assert len(stored) == len(in_range)
        for column in id_columns:
            assert sorted(stored[column]) == sorted(in_range[column]), column
        assert OTHER[table] not in tables


# --- both tables: the graph as it was ----------------------------------------------------------


def test_with_both_tables_the_graph_is_unchanged(tmp_path: Path) -> None:
    settings = small_settings(tmp_path)
    assert settings.source.tables == TABLES
    defs = build_defs(settings)
    graph = defs.resolve_asset_graph()
    assert {k.to_user_string() for k in graph.get_all_asset_keys()} == {
        *(f"raw/{t}{s}" for t in TABLES for s in ("", "_quarantine", "_daily_quality")),
        "features/customer_activity",
        "features/customer_features",
        "labels/churn_labels",
        "datasets/churn_training_set",
        "models/churn_challenger",
        "models/churn_champion",
        "predictions/churn_scores",
        "predictions/churn_scores_shadow",
        "datasets/interactions_training_set",
        "models/recommender_challenger",
        "models/recommender_champion",
        "predictions/recommendations",
        # Every family has the same shape (issue 15): the recommender gained its shadow.
        "predictions/recommendations_shadow",
    }
    assert (BOTH.ingest, BOTH.predictions, BOTH.daily, BOTH.monthly, BOTH.champions) == (
        INGEST,
        PREDICTIONS,
        DAILY,
        MONTHLY,
        CHAMPIONS,
    )
    selected = {
        job.name: defs.resolve_job_def(job.name).asset_layer.executable_asset_keys
        for job in defs.jobs or []
    }
    assert selected == {
        "daily_refresh": {*DAILY, LABELS},
        "monthly_training": set(MONTHLY),
        "promote_champions": set(CHAMPIONS.values()),
        "churn_rollback": {CHAMPIONS["churn"]},
        "recommender_rollback": {CHAMPIONS["recommender"]},
    }
    assert {s.name for s in defs.sensors or []} == {
        "files_drop_sensor",
        "run_failure_alert",
        "failed_check_alert",
        "churn_drift_retrain",
        # Every family has a daily prediction check and its drift sensor (issue 15).
        "recommender_drift_retrain",
    }
    assert {s.name for s in defs.schedules or []} == {
        "daily_refresh_schedule",
        "monthly_training_schedule",
        "promotion_window_schedule",
    }


def test_an_unknown_table_is_refused() -> None:
    with pytest.raises(ValueError, match="ratings"):
        Selection(("transactions", "ratings"))


# --- the `lifecycle` command -------------------------------------------------------------------


@pytest.fixture
def dagster_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "dagster_home"
    home.mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    return home


def test_cli_names_the_unreadable_file_in_one_line(
    tmp_path: Path, dagster_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    drop = tmp_path / "drop"
    drop.mkdir()
    bad = drop / "transactions_2026-01.csv"
    bad.write_text(
        'customer_id,timestamp,amount\n00001,2026-01-01 10:00,3\n00002,"2026-01-01 11:00,4\n'
    )
    short = {"partitions": {"end_date": "2026-01-15"}}  # a failing run needs no long calendar
    path = settings_file(tmp_path, "transactions", short)
    assert cli.main(["--settings", str(path), "demo", "--months", "1"]) == 1
    out = capsys.readouterr().out
    assert "FAILED" in out
    lines = [line for line in out.splitlines() if "ParserError" in line]
    assert lines and all(str(bad) in line for line in lines), out
    # The failed step's cause, then why the family ended without a champion: the same cause.
    step, summary = lines
    assert step.strip().startswith("raw_transactions: UnreadableFileError: ")
    assert summary.startswith("No churn champion: UnreadableFileError: ")
    assert "Error occurred while" not in out
    assert "monthly_training" not in out  # stopped at the failed ingest


def test_cli_verbs_offer_only_the_present_families(
    tmp_path: Path, dagster_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = settings_file(tmp_path, "transactions")
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--settings", str(path), "rollback", "recommender", "v_1"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'recommender'" in capsys.readouterr().err
    assert cli.main(["--settings", str(path), "recommend", "00042"]) == 2
    assert "no recommender for this source" in capsys.readouterr().out
    assert cli.main(["--settings", str(path), "versions"]) == 0
    assert "no model versions registered yet" in capsys.readouterr().out
    assert cli.main(["--settings", str(tmp_path / "missing.yaml"), "versions"]) == 2
    assert "missing.yaml" in capsys.readouterr().err


# --- the demo end to end, on each half (the slowest tests here) --------------------------------

# Two months of data, trained for 2026-03 on windows shrunk to fit (ingest dominates the time).
SHORT = {"partitions": {"end_date": "2026-03-01"}}
SHORT_CHURN = {
    **SHORT,
    "features": {"windows": [7, 14]},
    "labels": {"horizon_days": 7},
    "churn": {"train_months": 1, "validation_days": 7, "min_train_days": 14},
}
SHORT_RECOMMENDER = {**SHORT, "recommender": {"lookback_months": 1}}


def test_demo_on_transactions_alone_names_the_gate_that_left_no_champion(
    tmp_path: Path, dagster_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shop_csvs(tmp_path / "drop", "transactions")
    unreachable = {"churn": {"checks": {"min_auc": 0.999}}}
    path = settings_file(tmp_path, "transactions", deep_merge(SHORT_CHURN, unreachable))
    assert cli.main(["--settings", str(path), "demo", "--months", "1"]) == 1
    out = capsys.readouterr().out
    assert "model families: churn (source tables: transactions)" in out
    statuses = {line.split()[0]: line.split()[-5] for line in out.splitlines() if " run " in line}
    assert statuses == {
        "ingest": "ok",
        "churn": "ok",  # labels
        "datasets": "blocked",
        "scores,": "ok",
        "promote": "refused",
    }, out
    assert "FAILED" not in out and "recommend" not in out
    assert "No churn champion: 2026-03-01: blocking gates failed: auc_floor" in out


def test_demo_on_interactions_alone_promotes_and_recommends_ids_verbatim(
    tmp_path: Path, dagster_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    written = shop_csvs(tmp_path / "drop", "interactions")
    # 60 items is a catalogue where popularity is hard to beat by the demo's 1.2×.
    lenient = {"recommender": {"checks": {"min_lift_over_popularity": 0.5}}}
    path = settings_file(tmp_path, "interactions", deep_merge(SHORT_RECOMMENDER, lenient))
    assert cli.main(["--settings", str(path), "demo", "--months", "1"]) == 0
    out = capsys.readouterr().out
    assert "model families: recommender (source tables: interactions)" in out
    assert "churn" not in out.replace("churn_", "") and "FAILED" not in out
    assert "recommender_rollback" not in out and "No recommender champion" not in out

    busiest = written["user_id"].value_counts().index[0]
    assert busiest.startswith("00")  # an integer round trip would show it without the zeros
    assert cli.main(["--settings", str(path), "recommend", busiest, "-k", "3"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()[1:]]
    assert [row[0] for row in rows] == [busiest] * 3
    assert {row[2] for row in rows} <= set(written["item_id"])
    assert [row[-1] for row in rows] == ["False"] * 3  # a user the model knows, not the fallback


def test_root_cause_keeps_the_context_the_user_code_added() -> None:
    """Below Dagster's wrapper, the outermost user error carries the context (the file); the
    innermost is appended only when the outer message does not already say it."""
    from dagster_shared.error import SerializableErrorInfo

    def info(cls: str, message: str, cause: SerializableErrorInfo | None = None):
        return SerializableErrorInfo(f"{message}\n", [], cls, cause)

    parser = info("ParserError", "pandas.errors.ParserError: Expected 3 fields in line 5, saw 4")
    wrapper = 'dagster._core.errors.DagsterExecutionStepExecutionError: Error occurred while executing op "raw_x":'
    told = info(
        "UnreadableFileError", "lifecycle.sources.UnreadableFileError: tx.csv: bad CSV", parser
    )
    assert (
        cli.root_cause(info("DagsterExecutionStepExecutionError", wrapper, told))
        == "UnreadableFileError: tx.csv: bad CSV "
        "(caused by ParserError: Expected 3 fields in line 5, saw 4)"
    )
    quoted = info(
        "UnreadableFileError",
        "UnreadableFileError: tx.csv: Expected 3 fields in line 5, saw 4",
        parser,
    )
    assert (
        cli.root_cause(quoted) == "UnreadableFileError: tx.csv: Expected 3 fields in line 5, saw 4"
    )
    blocked = info(
        "DagsterAssetCheckFailedError",
        "dagster._core.errors.DagsterAssetCheckFailedError: 1 blocking asset check failed with "
        "ERROR severity:\nmodels/churn_challenger: auc_floor",
    )
    assert cli.root_cause(blocked) == (
        "DagsterAssetCheckFailedError: 1 blocking asset check failed with ERROR severity: "
        "models/churn_challenger: auc_floor"
    )
