"""The shipped production instance config (deploy/dagster.yaml) on a real PostgreSQL server.

A fresh database is created for each test and dropped afterwards. The instance is built from
deploy/dagster.yaml itself, credentials supplied the way production supplies them (DAGSTER_PG_*
environment variables), minus the K8sRunLauncher (no cluster here; tests/test_deploy_config.py
validates its config). An unreachable server fails the test; it never skips.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import dagster as dg
import psycopg2
import pytest
import yaml
from conftest import run
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus
from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage, PostgresScheduleStorage

from definitions import build_defs
from lifecycle.settings import Settings
from resources.pg_storage import PooledPostgresStorage

DEPLOY_INSTANCE = Path(__file__).resolve().parent.parent / "deploy" / "dagster.yaml"
HOST, PORT, ADMIN_USER = "127.0.0.1", 5432, "postgres"
TRANSACTIONS = dg.AssetKey(["raw", "transactions"])
RAW_KEYS = [
    TRANSACTIONS,
    dg.AssetKey(["raw", "transactions_quarantine"]),
    dg.AssetKey(["raw", "transactions_daily_quality"]),
]
QUARANTINE_CHECK = dg.AssetCheckKey(TRANSACTIONS, "transactions_quarantine_share")
DAYS = ("2026-01-01", "2026-01-02")
COMPLETED = {AssetCheckExecutionRecordStatus.SUCCEEDED, AssetCheckExecutionRecordStatus.FAILED}

pytestmark = pytest.mark.postgres


def admin_connection(dbname: str) -> psycopg2.extensions.connection:
    try:
        conn = psycopg2.connect(
            host=HOST, port=PORT, user=ADMIN_USER, dbname=dbname, connect_timeout=5
        )
    except psycopg2.OperationalError as exc:
        pytest.fail(f"PostgreSQL at {HOST}:{PORT} is not reachable: {exc}")
    conn.autocommit = True
    return conn


@pytest.fixture
def pg_database(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A new, empty database; DAGSTER_PG_* point at it, as the deployment's secrets would."""
    name = f"dagster_test_{uuid.uuid4().hex[:12]}"
    conn = admin_connection("postgres")
    with conn.cursor() as cur:
        cur.execute(f'create database "{name}"')
    monkeypatch.setenv("DAGSTER_PG_USERNAME", ADMIN_USER)
    monkeypatch.setenv("DAGSTER_PG_PASSWORD", "unused-under-trust-auth")
    monkeypatch.setenv("DAGSTER_PG_HOST", HOST)
    monkeypatch.setenv("DAGSTER_PG_DB", name)
    monkeypatch.setenv("DAGSTER_PG_PORT", str(PORT))
    try:
        yield name
    finally:
        with conn.cursor() as cur:
            cur.execute(f'drop database if exists "{name}" with (force)')
        conn.close()


@pytest.fixture
def instance_dir(pg_database: str, tmp_path: Path) -> Path:
    """deploy/dagster.yaml as shipped, without the run launcher (it needs a cluster)."""
    config = yaml.safe_load(DEPLOY_INSTANCE.read_text())
    assert config["run_launcher"]["class"] == "K8sRunLauncher"
    del config["run_launcher"]
    home = tmp_path / "pg_instance"
    home.mkdir()
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))
    return home


def table_counts(dbname: str) -> dict[str, int]:
    conn = admin_connection(dbname)
    try:
        with conn.cursor() as cur:
            cur.execute("select count(*) from runs")
            runs = cur.fetchone()[0]
            cur.execute(
                "select count(*) from event_logs where dagster_event_type = 'ASSET_MATERIALIZATION'"
            )
            materialisations = cur.fetchone()[0]
            cur.execute(
                "select count(*) from asset_check_executions "
                "where execution_status in ('SUCCEEDED', 'FAILED')"
            )
            checks = cur.fetchone()[0]
    finally:
        conn.close()
    return {"runs": runs, "materialisations": materialisations, "checks": checks}


def test_assets_materialise_on_the_shipped_postgres_instance(
    instance_dir: Path, pg_database: str, make_settings: Callable[..., Settings]
) -> None:
    defs = build_defs(make_settings())

    with dg.DagsterInstance.from_config(str(instance_dir)) as instance:
        ref = instance.get_ref()
        assert ref.storage_data is not None
        assert ref.storage_data.class_name == PooledPostgresStorage.__name__
        storage = ref.storage
        assert isinstance(storage, PooledPostgresStorage)
        assert isinstance(storage.run_storage, PostgresRunStorage)
        assert isinstance(storage.event_log_storage, PostgresEventLogStorage)
        assert isinstance(storage.schedule_storage, PostgresScheduleStorage)
        queue = instance.get_concurrency_config().run_queue_config
        assert queue is not None and queue.max_concurrent_runs == 1

        result = run(defs, instance, RAW_KEYS, partition_range=DAYS)
        assert result.success
        run_id = result.run_id

    # A second instance from the same file: everything below is read back from PostgreSQL.
    with dg.DagsterInstance.from_config(str(instance_dir)) as instance:
        record = instance.get_run_record_by_id(run_id)
        assert record is not None
        assert record.dagster_run.status == dg.DagsterRunStatus.SUCCESS

        for key in RAW_KEYS:
            assert instance.get_materialized_partitions(key) == set(DAYS)
            events = instance.fetch_materializations(key, limit=10).records
            assert sorted(str(e.partition_key) for e in events) == list(DAYS)
            assert {e.run_id for e in events} == {run_id}
        clean = instance.fetch_materializations(TRANSACTIONS, limit=1).records[0]
        assert clean.asset_materialization is not None
        quarantined = clean.asset_materialization.metadata["quarantined_rows"].value
        assert isinstance(quarantined, int) and quarantined >= 0

        # A range run plans the (partitioned) check once per partition and evaluates it once
        # per partition: one completed execution per day, none left planned.
        checks = instance.event_log_storage.get_asset_check_execution_history(
            QUARANTINE_CHECK, limit=10
        )
        assert sorted(str(c.partition) for c in checks) == list(DAYS)
        assert all(c.status in COMPLETED for c in checks)
        execution = checks[0]
        assert execution.run_id == run_id
        assert execution.event is not None
        evaluation = execution.event.asset_check_evaluation
        assert evaluation is not None
        assert evaluation.asset_check_key == QUARANTINE_CHECK
        assert evaluation.passed == (execution.status == AssetCheckExecutionRecordStatus.SUCCEEDED)
        assert evaluation.metadata["bound"].value == pytest.approx(0.05)
        max_share = evaluation.metadata["range_max_share"].value
        assert isinstance(max_share, float) and 0 <= max_share <= 1
        assert evaluation.metadata["range_worst_day"].value in DAYS

    # And the rows really are in the new database, not in a SQLite fallback.
    assert table_counts(pg_database) == {"runs": 1, "materialisations": 6, "checks": 2}


def _sessions(dbname: str) -> int:
    """Server sessions ever opened on the database (pg_stat_database.sessions, PostgreSQL 14+)."""
    conn = admin_connection(dbname)
    try:
        with conn.cursor() as cur:
            cur.execute("select pg_stat_clear_snapshot()")
            cur.execute("select sessions from pg_stat_database where datname = %s", (dbname,))
            return int(cur.fetchone()[0])
    finally:
        conn.close()


def test_event_log_keeps_its_connection_between_events(
    instance_dir: Path, pg_database: str
) -> None:
    """dagster-postgres alone opens a server session per event outside the webserver (one
    check evaluation: three); the shipped storage keeps one for the process."""
    key = dg.AssetKey("pooled")
    with dg.DagsterInstance.from_config(str(instance_dir)) as instance:
        instance.report_runless_asset_event(dg.AssetMaterialization(key))  # connection opened
        before = _sessions(pg_database)
        for day in range(1, 21):
            instance.report_runless_asset_event(
                dg.AssetCheckEvaluation(
                    asset_key=key, check_name="c", passed=True, partition=f"2026-01-{day:02d}"
                )
            )
        opened = _sessions(pg_database) - before
        history = instance.event_log_storage.get_asset_check_execution_history(
            dg.AssetCheckKey(key, "c"), limit=50
        )
    assert len(history) == 20
    assert opened <= 3, f"{opened} sessions for 20 check evaluations"
