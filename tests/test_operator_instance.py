"""The operator's instance: killed runs are failed by run monitoring, a change of feature
windows migrates the feature table, and no piece of a database password leaks.

Real parts only: the shipped dagster.yaml files, a real run worker killed with SIGKILL and one
iteration of Dagster's own run-monitoring function, real materialisations into DuckDB, and
real failing connections to the PostgreSQL server on 127.0.0.1:5432.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import traceback
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
import pytest
from dagster._core.instance.config import dagster_instance_config
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._core.workspace.load_target import EmptyWorkspaceTarget
from dagster._daemon.monitoring.run_monitoring import execute_run_monitoring_iteration
from dagster._serdes import serialize_value

from assets.keys import ACTIVITY, FEATURES, RAW_TRANSACTIONS
from definitions import build_defs
from lifecycle.feature_schema import BackfillNeeded, day_ranges, require_filled
from lifecycle.features import feature_columns
from lifecycle.publish import PublishError, publish_partition
from lifecycle.sources import SourceQueryError, read_event_sql
from lifecycle.urls import DatabaseUrlError, check_url, redact
from lifecycle.validation import TRANSACTIONS
from resources.publisher import PostgresPublisher
from resources.run_launcher import LocalRunLauncher, worker_alive
from tests.conftest import failure_text, run, small_settings

ROOT = Path(__file__).resolve().parent.parent
LOCAL_INSTANCE = ROOT / "dagster_home" / "dagster.yaml"
DEPLOY_INSTANCE = ROOT / "deploy" / "dagster.yaml"


# --- run monitoring ---------------------------------------------------------------------------


@pytest.fixture
def local_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A DAGSTER_HOME holding a copy of the shipped dagster_home/dagster.yaml."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(LOCAL_INSTANCE, home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    return home


def test_local_instance_turns_run_monitoring_on(local_home: Path) -> None:
    with dg.DagsterInstance.get() as instance:
        assert instance.run_monitoring_enabled
        assert instance.run_monitoring_max_resume_run_attempts == 0
        assert instance.run_monitoring_poll_interval_seconds == 30
        assert instance.run_monitoring_start_timeout_seconds == 300
        launcher = instance.run_launcher
        # Without a health check the daemon cannot see a dead worker (Dagster's default).
        assert isinstance(launcher, LocalRunLauncher)
        assert launcher.supports_check_run_worker_health


def test_deploy_instance_turns_run_monitoring_on(tmp_path: Path) -> None:
    home = tmp_path / "deploy_home"
    home.mkdir()
    shutil.copy(DEPLOY_INSTANCE, home / "dagster.yaml")
    config, _ = dagster_instance_config(str(home))  # validates against Dagster's schema
    assert config["run_monitoring"] == {
        "enabled": True,
        "poll_interval_seconds": 120,
        "start_timeout_seconds": 300,
        "max_resume_run_attempts": 0,
    }


WORKER = textwrap.dedent(
    """
    import time
    import dagster as dg

    @dg.asset
    def slow_asset() -> None:
        time.sleep(300)

    with dg.DagsterInstance.get() as instance:
        dg.materialize([slow_asset], instance=instance)
    """
)


def _wait_for_started_step(instance: dg.DagsterInstance, timeout: float = 120) -> dg.DagsterRun:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for found in instance.get_runs():
            steps = instance.all_logs(found.run_id, of_type=dg.DagsterEventType.STEP_START)
            if found.status == dg.DagsterRunStatus.STARTED and steps:
                return found
        time.sleep(0.2)
    raise AssertionError("the worker did not start its run")


def _monitor_once(instance: dg.DagsterInstance) -> None:
    """One iteration of the run monitoring daemon, exactly as `dagster-daemon` runs it."""
    with WorkspaceProcessContext(instance, EmptyWorkspaceTarget()) as context:
        errors = list(execute_run_monitoring_iteration(context, logging.getLogger("monitor")))
    assert [e for e in errors if e is not None] == []


def test_killed_run_is_marked_failed_by_one_monitoring_iteration(
    local_home: Path, tmp_path: Path
) -> None:
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    worker = subprocess.Popen(
        [sys.executable, str(script)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        with dg.DagsterInstance.get() as instance:
            started = _wait_for_started_step(instance)
            _monitor_once(instance)  # a live worker is left alone
            assert instance.get_run_by_id(started.run_id).status == dg.DagsterRunStatus.STARTED

            worker.send_signal(signal.SIGKILL)
            worker.wait(timeout=30)
            assert instance.get_run_by_id(started.run_id).status == dg.DagsterRunStatus.STARTED
            _monitor_once(instance)

            after = instance.get_run_by_id(started.run_id)
            assert after.status == dg.DagsterRunStatus.FAILURE
            failures = instance.all_logs(started.run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
            assert f"pid {worker.pid}" in (failures[-1].dagster_event.message or "")
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(timeout=30)


def test_a_recycled_pid_is_not_the_worker() -> None:
    """A process that started after the run began is another program with the same pid."""
    assert worker_alive(os.getpid(), time.time())
    assert not worker_alive(os.getpid(), time.time() - 10 * 365 * 86400)


# --- feature table schema changes -------------------------------------------------------------


def _features(root: Path, instance: dg.DagsterInstance, windows: list[int], days: tuple[str, str]):
    settings = small_settings(root, {"features": {"windows": windows}})
    keys = [RAW_TRANSACTIONS, ACTIVITY, FEATURES]
    return run(build_defs(settings), instance, keys, partition_range=days, raise_on_error=False)


def _feature_metadata(result: dg.ExecuteInProcessResult) -> dict[str, object]:
    """The metadata of the run's feature materialisations (one per day, all alike)."""
    found = result.asset_materializations_for_node("features__customer_features")
    metas = [{k: v.value for k, v in m.metadata.items()} for m in found]
    keys = ("schema_added_columns", "days_to_backfill")
    assert metas and all({k: m[k] for k in keys} == {k: metas[0][k] for k in keys} for m in metas)
    return metas[0]


def _columns(database: Path) -> list[str]:
    with duckdb.connect(str(database)) as con:
        return [r[0] for r in con.execute("describe features.customer_features").fetchall()]


@pytest.fixture
def feature_world(tmp_path: Path) -> Iterator[tuple[Path, dg.DagsterInstance]]:
    (tmp_path / "home").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "home")) as instance:
        yield tmp_path, instance


def test_a_new_window_migrates_the_feature_table_and_names_the_backfill(
    feature_world: tuple[Path, dg.DagsterInstance],
) -> None:
    root, instance = feature_world
    database = root / "warehouse.duckdb"
    assert _features(root, instance, [7, 30], ("2026-01-01", "2026-01-10")).success

    added = _features(root, instance, [7, 14, 30], ("2026-01-11", "2026-01-12"))
    assert added.success, failure_text(added)  # was: Binder Error … "txn_count_14d"
    assert {"txn_count_14d", "spend_14d"} <= set(_columns(database))
    meta = _feature_metadata(added)
    assert meta["schema_added_columns"] == "txn_count_14d, spend_14d"
    assert meta["days_to_backfill"] == 10
    warnings = [
        e.user_message
        for e in instance.all_logs(added.run_id)
        if e.level == logging.WARNING and "gained columns" in e.user_message
    ]
    assert len(warnings) == 1
    assert "txn_count_14d, spend_14d" in warnings[0]
    assert "10 stored day(s) (2026-01-01…2026-01-10)" in warnings[0]
    assert "--partition-range 2026-01-01...2026-01-10" in warnings[0]

    with duckdb.connect(str(database)) as con:
        stored = con.execute(
            "select as_of_date::date d, count(*) n, count(txn_count_14d) filled "
            "from features.customer_features group by d order by d"
        ).fetchdf()
    cut = pd.to_datetime(stored["d"]) < pd.Timestamp("2026-01-11")
    old, new = stored[cut], stored[~cut]
    assert len(old) == 10 and len(new) == 2
    assert (old["filled"] == 0).all() and (new["filled"] == new["n"]).all()

    # A reader of old days is stopped with the range to backfill, not fed NULLs.
    with duckdb.connect(str(database)) as con:
        frame = con.execute("select * from features.customer_features").fetchdf()
    with pytest.raises(BackfillNeeded) as stopped:
        require_filled(frame, feature_columns([7, 14, 30]), "the churn training set for 2026-02")
    message = str(stopped.value)
    assert "txn_count_14d" in message and "spend_14d" in message
    assert "2026-01-01…2026-01-10" in message
    assert "--partition-range 2026-01-01...2026-01-10" in message

    # The next daily run still reports what is left; the backfill clears it.
    daily = _features(root, instance, [7, 14, 30], ("2026-01-13", "2026-01-13"))
    assert daily.success and _feature_metadata(daily)["days_to_backfill"] == 10
    backfill = _features(root, instance, [7, 14, 30], ("2026-01-01", "2026-01-10"))
    assert backfill.success and _feature_metadata(backfill)["days_to_backfill"] == 0
    with duckdb.connect(str(database)) as con:
        frame = con.execute("select * from features.customer_features").fetchdf()
    require_filled(frame, feature_columns([7, 14, 30]), "the churn training set for 2026-02")


def test_a_removed_window_keeps_its_columns_and_new_days_write(
    feature_world: tuple[Path, dg.DagsterInstance],
) -> None:
    root, instance = feature_world
    assert _features(root, instance, [7, 14, 30], ("2026-01-01", "2026-01-05")).success
    fewer = _features(root, instance, [7, 30], ("2026-01-06", "2026-01-06"))
    assert fewer.success, failure_text(fewer)
    assert "txn_count_14d" in _columns(root / "warehouse.duckdb")  # left in place
    meta = _feature_metadata(fewer)
    assert meta["schema_added_columns"] == "none" and meta["days_to_backfill"] == 0
    with duckdb.connect(str(root / "warehouse.duckdb")) as con:
        frame = con.execute("select * from features.customer_features").fetchdf()
    require_filled(frame, feature_columns([7, 30]), "scores")  # the current windows are whole


def test_day_ranges_group_consecutive_days() -> None:
    days = [dt.date(2026, 1, d) for d in (5, 1, 2, 3, 9, 2)]
    assert day_ranges(days) == [
        (dt.date(2026, 1, 1), dt.date(2026, 1, 3)),
        (dt.date(2026, 1, 5), dt.date(2026, 1, 5)),
        (dt.date(2026, 1, 9), dt.date(2026, 1, 9)),
    ]


# --- no piece of a password leaks -------------------------------------------------------------

# Passwords written raw into the URL, with every character a URL reserves.
BRIEF = "p@ss:w/rd"  # SQLAlchemy cannot even parse the port of this one
SPLITS_HOST = "s3cr@t-Pw"  # SQLAlchemy takes "t-Pw@127.0.0.1" as the host
PARSES = "Qx#7 z%K9:w/"  # parses right: the server itself refuses the connection
PG = "127.0.0.1:5432"


def url_with(password: str, database: str = "test") -> str:
    return f"postgresql+psycopg2://postgres:{password}@{PG}/{database}"


def assert_no_piece(password: str, *texts: str) -> None:
    """No 3-character piece of ``password`` appears in any of ``texts``."""
    pieces = {password[i : i + 3] for i in range(len(password) - 2)}
    for text in texts:
        leaked = sorted(p for p in pieces if p in text)
        assert not leaked, f"{leaked} of the password leaked into: {text[:2000]}"


@pytest.mark.parametrize(
    ("password", "driver_text"),
    [
        (BRIEF, 'could not translate host name "ss:w/rd@127.0.0.1" to address'),
        (BRIEF, "invalid literal for int() with base 10: 'w/rd@127.0.0.1:5432'"),
        (SPLITS_HOST, 'could not translate host name "t-Pw@127.0.0.1" to address'),
        (PARSES, 'FATAL: password "Qx#7 z%K9:w/" for user postgres; database "z%K9:w/"'),
        ("p%40ss%2Fw", "could not connect (p@ss/w); p%40ss%2Fw"),
    ],
)
def test_redact_removes_every_piece_of_the_password(password: str, driver_text: str) -> None:
    url = url_with(password)
    text = f"{driver_text} with {url}"
    cleaned = redact(text, url)
    assert_no_piece(password, cleaned)
    assert "//***@" in cleaned and "postgres:" not in cleaned  # the whole userinfo goes


def test_redact_leaves_ordinary_words_of_short_passwords_alone() -> None:
    url = url_with("a@b")
    cleaned = redact("a role named b@127.0.0.1 is missing; abba", url)
    assert "abba" in cleaned and "role named" in cleaned


@pytest.mark.parametrize("password", [BRIEF, SPLITS_HOST])
def test_urls_split_by_a_raw_at_are_refused_before_connecting(password: str) -> None:
    with pytest.raises(DatabaseUrlError) as refused:
        check_url(url_with(password), "SOURCE_DATABASE_URL")
    assert "percent-encode" in str(refused.value)
    assert_no_piece(password, str(refused.value))
    check_url(url_with(PARSES), "SOURCE_DATABASE_URL")  # SQLAlchemy splits these right
    check_url(url_with("p%40ss%3Aw%2Frd"), "SOURCE_DATABASE_URL")


def _full_text(error: BaseException) -> str:
    return "".join(traceback.format_exception(error))


@pytest.mark.postgres
@pytest.mark.parametrize("password", [BRIEF, SPLITS_HOST, PARSES])
def test_sql_source_errors_hold_no_piece_of_the_password(password: str) -> None:
    url = url_with(password, "no_such_database_d")
    with pytest.raises(SourceQueryError) as failed:
        read_event_sql(
            url,
            "select * from t where ts >= :start and ts < :end",
            TRANSACTIONS,
            pd.Timestamp("2026-01-01"),
            pd.Timestamp("2026-01-02"),
            "UTC",
        )
    assert_no_piece(password, _full_text(failed.value))
    assert failed.value.__cause__ is None and failed.value.__context__ is None
    # A raw '@' is refused before any host is looked up; the others reach the server.
    expected = "percent-encode" if "@" in password else 'database "no_such_database_d"'
    assert expected in str(failed.value)


@pytest.mark.postgres
@pytest.mark.parametrize("password", [BRIEF, SPLITS_HOST, PARSES])
def test_publisher_errors_hold_no_piece_of_the_password(password: str) -> None:
    day = pd.Timestamp("2026-01-01")
    frame = pd.DataFrame({"as_of_date": [day], "score": [0.5]})
    with pytest.raises(PublishError) as failed:
        publish_partition(
            url_with(password, "no_such_database_d"),
            "leak_test.t",
            frame,
            "as_of_date",
            day,
            day + pd.Timedelta(days=1),
        )
    assert_no_piece(password, _full_text(failed.value))
    expected = "percent-encode" if "@" in password else 'database "no_such_database_d"'
    assert expected in str(failed.value)


def _event_log_text(instance: dg.DagsterInstance, run_id: str) -> str:
    return "\n".join(serialize_value(entry) for entry in instance.all_logs(run_id))


@pytest.mark.postgres
@pytest.mark.parametrize("password", [BRIEF, SPLITS_HOST, PARSES])
def test_failed_ingest_run_leaks_no_piece_of_the_password(
    password: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """The real raw/transactions asset on the SQL source, its URL from the environment."""
    monkeypatch.setenv("LEAK_TEST_SOURCE_URL", url_with(password, "no_such_database_d"))
    sql = {
        "url_env": "LEAK_TEST_SOURCE_URL",
        "transactions_query": "select * from t where ts >= :start and ts < :end",
    }
    settings = small_settings(tmp_path, {"source": {"kind": "sql", "sql": sql}})
    (tmp_path / "home").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "home")) as instance:
        result = run(
            build_defs(settings),
            instance,
            [RAW_TRANSACTIONS],
            partition="2026-01-05",
            raise_on_error=False,
        )
        assert not result.success
        assert "source query failed" in failure_text(result)
        log_text = _event_log_text(instance, result.run_id)
    captured = capfd.readouterr()
    assert_no_piece(password, failure_text(result), log_text, captured.out, captured.err)


@pytest.mark.postgres
@pytest.mark.parametrize("password", [BRIEF, SPLITS_HOST, PARSES])
def test_failed_publish_run_leaks_no_piece_of_the_password(
    password: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture
) -> None:
    """The real publisher resource in a real run, its URL from the environment."""
    monkeypatch.setenv("LEAK_TEST_PUBLISH_URL", url_with(password, "no_such_database_d"))
    day = pd.Timestamp("2026-01-01")

    @dg.asset
    def published_scores(publisher: PostgresPublisher) -> None:
        frame = pd.DataFrame({"as_of_date": [day], "score": [0.5]})
        publisher.publish("scores", frame, "as_of_date", day, day + pd.Timedelta(days=1))

    publisher = PostgresPublisher(
        url=dg.EnvVar("LEAK_TEST_PUBLISH_URL"), enabled=True, schema="leak_test"
    )
    (tmp_path / "home").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "home")) as instance:
        result = dg.materialize(
            [published_scores],
            resources={"publisher": publisher},
            instance=instance,
            raise_on_error=False,
        )
        assert not result.success
        assert "publishing leak_test.scores failed" in failure_text(result)
        log_text = _event_log_text(instance, result.run_id)
    captured = capfd.readouterr()
    assert_no_piece(password, failure_text(result), log_text, captured.out, captured.err)
