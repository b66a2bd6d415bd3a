"""Security against the real parts: hostile identifiers in settings, files, partition keys and
version ids are refused or stay data (never SQL); secrets planted in the environment (SQL source
URL, publisher URL, alert webhook) never reach a run's stored records, its metadata or an alert.

PostgreSQL tests use 127.0.0.1:5432 (database ``test``) and fail, never skip, without it.
"""

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
import pytest

from definitions import build_defs
from lifecycle.settings import Settings, SettingsError
from resources.publisher import PostgresPublisher, publisher_from_settings
from tests.conftest import WEBHOOK_TOKEN, Webhook, failure_text, run, small_settings
from tests.reliability_support import (
    D1,
    D2,
    DAY,
    NOW,
    PUBLISH_ENV,
    SECRET,
    TX_RAW,
    assert_registry_untouched,
    fresh_schema,
    pg,
    pg_url,
    registry_with_champion,
    scores,
)

HOOK_SECRET = WEBHOOK_TOKEN  # the token in the receiver's URL
SOURCE_ENV, HOOK_ENV = "E13_SOURCE_URL", "E13_WEBHOOK_URL"


@pytest.fixture
def pg_schema() -> Iterator[str]:
    with fresh_schema() as name:
        yield name


# --- hostile identifiers -------------------------------------------------------------------------

HOSTILE = "'); drop table main.keep; --"


def test_hostile_column_names_and_ids_in_a_files_source_are_data_not_sql(
    make_settings: Callable[..., Settings], instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    columns = {
        "customer_id": 'cust"; drop table main.keep; --',
        "timestamp": "ts'); drop schema raw cascade; --",
        "amount": 'amt"" x',
    }
    ids = ["00042", HOSTILE, 'quote"inside', "Robert'); DROP TABLE Students;--"]
    drop = tmp_path / "drop"
    drop.mkdir()
    pd.DataFrame(
        {
            columns["customer_id"]: ids,
            columns["timestamp"]: [f"{DAY} 1{i}:00" for i in range(len(ids))],
            columns["amount"]: ["1.5", "2.5", "3.5", "4.5"],
        }
    ).to_csv(drop / "tx_1.csv", index=False)
    files = {"transactions_glob": str(drop / "tx_*.csv"), "columns": columns}
    settings = make_settings({"source": {"kind": "files", "files": files}})
    with duckdb.connect(settings.warehouse.database) as con:
        con.execute("create table main.keep as select 1 as x")

    assert run(build_defs(settings), instance, TX_RAW, partition=DAY).success
    with duckdb.connect(settings.warehouse.database) as con:
        stored = [r[0] for r in con.execute("select customer_id from raw.transactions").fetchall()]
        kept = con.execute("select x from main.keep").fetchall()
    assert sorted(stored) == sorted(ids)  # verbatim, every one
    assert kept == [(1,)]


@pytest.mark.postgres
def test_a_hostile_publish_schema_is_refused_before_it_reaches_postgres(pg_schema: str) -> None:
    pg(f'create schema "{pg_schema}"')
    pg(f'create table "{pg_schema}".keep as select 1 as x')
    hostile = f'{pg_schema}"; drop table "{pg_schema}".keep; --'
    publisher = PostgresPublisher(enabled=True, url=pg_url(), schema=hostile)
    with pytest.raises(ValueError, match="letters, digits and underscores"):
        publisher.publish("churn_scores", scores(["00001"], 0.1), "as_of_date", D1, D2)
    assert pg(f'select x from "{pg_schema}".keep') == [(1,)]
    schemas = pg(
        "select schema_name from information_schema.schemata where schema_name like %s",
        (f"{pg_schema}%",),
    )
    assert schemas == [(pg_schema,)]


def test_a_hostile_publish_schema_is_a_settings_error_naming_the_key(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=r"publish\.schema_name"):
        small_settings(tmp_path, {"publish": {"schema_name": 'x"; drop table keep; --'}})


def test_partition_keys_that_are_not_days_are_refused_before_any_run(
    small_defs: tuple[Settings, dg.Definitions], instance: dg.DagsterInstance
) -> None:
    settings, defs = small_defs
    assert run(defs, instance, TX_RAW, partition=DAY).success
    with duckdb.connect(settings.warehouse.database) as con:
        before = con.execute("select count(*), sum(amount) from raw.transactions").fetchall()
    runs = instance.get_runs_count()
    job = defs.resolve_job_def("daily_refresh")
    for key in (
        "../../etc",
        f"{DAY}'; drop table raw.transactions; --",
        "2026-02-30",
        "2025-12-31",
    ):
        with pytest.raises(dg.DagsterUnknownPartitionError, match="Could not find a partition"):
            job.execute_in_process(instance=instance, partition_key=key, asset_selection=TX_RAW)
    for start, end in ((DAY, f"{DAY}'; drop table raw.transactions; --"), ("../../etc", DAY)):
        with pytest.raises(ValueError, match="does not match format"):
            run(defs, instance, TX_RAW, partition_range=(start, end))
    assert instance.get_runs_count() == runs  # refused before a run was even created
    with duckdb.connect(settings.warehouse.database) as con:
        assert (
            con.execute("select count(*), sum(amount) from raw.transactions").fetchall() == before
        )


def test_hostile_version_ids_are_bound_as_values_not_sql(tmp_path: Path) -> None:
    reg, champion = registry_with_champion(tmp_path)
    hostile = "v_1'; drop table registry.aliases; --"
    with pytest.raises(KeyError) as unknown:
        reg.get("churn", hostile)
    assert hostile in str(unknown.value)
    with pytest.raises(KeyError):
        reg.set_alias("churn", "champion", hostile, "rollback", "r2", "hostile", NOW)
    assert reg.latest_for_partition("churn", "x' or '1'='1") is None
    assert_registry_untouched(reg, champion)


# --- planted secrets -----------------------------------------------------------------------------


def everything_stored(instance: dg.DagsterInstance, run_id: str) -> str:
    """Every event record of the run (messages, errors, metadata), the run record (config,
    tags) and its job snapshot (resource config defaults), as stored."""
    record = instance.get_run_by_id(run_id)
    assert record is not None
    parts = [dg.serialize_value(entry) for entry in instance.all_logs(run_id)]
    parts.append(dg.serialize_value(record))
    if record.job_snapshot_id:
        parts.append(dg.serialize_value(instance.get_job_snapshot(record.job_snapshot_id)))
    return "\n".join(parts)


@pytest.mark.postgres
def test_planted_source_and_webhook_secrets_stay_out_of_logs_metadata_and_alerts(
    make_settings: Callable[..., Settings],
    instance: dg.DagsterInstance,
    pg_schema: str,
    webhook: Webhook,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pg(f'create schema "{pg_schema}"')
    pg(f'create table "{pg_schema}".orders (cust text, ts timestamp, amt double precision)')
    pg(
        f'insert into "{pg_schema}".orders values '
        f"('00001', '{DAY} 09:00', 5), ('00002', '{DAY} 10:00', 7), ('00001', '{DAY} 11:00', 9)"
    )
    query = (
        "select cust as customer_id, ts as timestamp, amt as amount "
        f'from "{pg_schema}".orders where ts >= :start and ts < :end'
    )
    settings = make_settings(
        {
            "source": {"kind": "sql", "sql": {"url_env": SOURCE_ENV, "transactions_query": query}},
            "alerts": {"kind": "webhook", "webhook_url_env": HOOK_ENV},
        }
    )
    monkeypatch.setenv(SOURCE_ENV, pg_url())
    monkeypatch.setenv(HOOK_ENV, webhook.url)
    defs = build_defs(settings)
    ok = run(defs, instance, TX_RAW, partition=DAY)
    assert ok.success
    (materialised,) = [
        m
        for m in ok.asset_materializations_for_node("raw_transactions")
        if m.asset_key == TX_RAW[0]
    ]

    monkeypatch.setenv(SOURCE_ENV, pg_url(port=1))  # the source database goes down
    failed = defs.resolve_job_def("daily_refresh").execute_in_process(
        instance=instance, partition_key=DAY, asset_selection=TX_RAW, raise_on_error=False
    )
    assert not failed.success
    with duckdb.connect(settings.warehouse.database) as con:  # the day keeps its rows
        assert con.execute("select count(*) from raw.transactions").fetchone() == (3,)
    context = dg.build_run_status_sensor_context(
        sensor_name="run_failure_alert",
        dagster_instance=instance,
        dagster_run=failed.dagster_run,
        dagster_event=failed.get_run_failure_event(),
        resources={"alerts": (defs.resources or {})["alerts"]},  # its URL from the env
    ).for_run_failure()
    defs.resolve_sensor_def("run_failure_alert")(context)

    (post,) = webhook.received
    posted = json.dumps(post["json"]).encode()  # the body the alert sent
    stored = everything_stored(instance, ok.run_id) + everything_stored(instance, failed.run_id)
    # The texts searched are the real ones: they name the failure and carry the row counts.
    assert "source query failed" in stored and "port 1" in stored
    assert "source query failed" in posted.decode()
    assert materialised.metadata["dagster/partition_row_count"].value == 3
    for secret in (SECRET, HOOK_SECRET):
        assert secret not in stored
        assert secret not in posted.decode()
        assert secret not in failure_text(failed)


@pytest.mark.postgres
def test_planted_publisher_secret_stays_out_of_the_event_log_and_metadata(
    make_settings: Callable[..., Settings],
    instance: dg.DagsterInstance,
    pg_schema: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The publisher resource the definitions wire, used by a run that succeeds and one that
    fails (server down): neither run's stored records hold the password."""
    settings = make_settings(
        {"publish": {"enabled": True, "url_env": PUBLISH_ENV, "schema_name": pg_schema}}
    )

    @dg.asset(key=["predictions", "publish_probe"])
    def probe(context: dg.AssetExecutionContext, publisher: PostgresPublisher) -> None:
        written = publisher.publish("churn_scores", scores(["00001"], 0.5), "as_of_date", D1, D2)
        context.add_output_metadata({"published_rows": written, "target": publisher.schema_})

    def publish_run() -> dg.ExecuteInProcessResult:
        return dg.materialize(
            [probe],
            resources={"publisher": publisher_from_settings(settings)},
            instance=instance,
            raise_on_error=False,
        )

    monkeypatch.setenv(PUBLISH_ENV, pg_url())
    ok = publish_run()
    monkeypatch.setenv(PUBLISH_ENV, pg_url(port=1))
    down = publish_run()
    assert ok.success and not down.success
    stored = everything_stored(instance, ok.run_id) + everything_stored(instance, down.run_id)
    assert f"published 1 rows to {pg_schema}.churn_scores" in stored
    assert f"publishing {pg_schema}.churn_scores failed" in stored
    assert SECRET not in stored
