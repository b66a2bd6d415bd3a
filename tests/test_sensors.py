"""Sensors against a real instance, a real drop folder and a real webhook on 127.0.0.1."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import pandas as pd
import pytest
from dagster._core.events import AssetCheckEvaluationPlanned, DagsterEvent, DagsterEventType

from assets.keys import (
    ACTIVITY,
    CHAMPIONS,
    CHURN_CHALLENGER,
    CHURN_DATASET,
    CHURN_SCORES,
    CHURN_SHADOW,
    FEATURES,
)
from definitions import build_defs
from lifecycle.alerts import Alert
from lifecycle.drops import load_cursor, version_digest
from lifecycle.settings import Settings
from lifecycle.sources import FileOptions, file_days
from resources.alerts import AlertDeliveryError, AlertResource, alerts_from_settings
from sensors import RANGE_END_TAG, RANGE_START_TAG, check_events, raw_keys
from tests.conftest import Webhook

TX_RAW = raw_keys("transactions")


# --- helpers ----------------------------------------------------------------------------------


def write_csv(path: Path, rows: list[tuple[int, str, float]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame(rows, columns=["customer_id", "timestamp", "amount"])
    frame.to_csv(path, index=False)
    return path


def files_settings(make_settings: Callable[..., Settings], drop: Path, **extra: Any) -> Settings:
    files = {"transactions_glob": str(drop / "tx_*.csv"), **extra.pop("files", {})}
    return make_settings({"source": {"kind": "files", "files": files}, **extra})


def tick(
    defs: dg.Definitions,
    name: str,
    instance: dg.DagsterInstance,
    cursor: str | None,
    resources: dict[str, Any] | None = None,
) -> dg.SensorResult:
    sensor = defs.resolve_sensor_def(name)
    # A directly invoked sensor gets only the resources passed here, not the definitions' ones.
    resources = resources if resources is not None else {"alerts": defs.resources["alerts"]}
    with dg.build_sensor_context(
        instance=instance, cursor=cursor, resources=resources, definitions=defs
    ) as ctx:
        result = sensor(ctx)
    assert isinstance(result, dg.SensorResult), result
    return result


def by_partition(result: dg.SensorResult) -> dict[str, dg.RunRequest]:
    return {r.partition_key: r for r in result.run_requests or []}  # type: ignore[misc]


def report_check(
    instance: dg.DagsterInstance,
    key: dg.AssetKey,
    name: str,
    passed: bool,
    partition: str | None = None,
) -> None:
    instance.report_runless_asset_event(
        dg.AssetCheckEvaluation(
            asset_key=key,
            check_name=name,
            passed=passed,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"score_psi": 0.41, "bound": 0.25},
            partition=partition,
        )
    )


# --- new-data (drop) sensor -----------------------------------------------------------------


def test_days_covered_parses_like_the_source(tmp_path: Path) -> None:
    csv = tmp_path / "events.csv"
    csv.write_text("ts,amount\n2026-02-03T23:30:00Z,1\n2026-02-04T10:00:00Z,2\nnot a time,3\n")
    assert file_days(csv, "ts", "UTC") == ["2026-02-03", "2026-02-04"]
    # 23:30 UTC is already the next day in Amsterdam.
    assert file_days(csv, "ts", "Europe/Amsterdam") == ["2026-02-04"]
    epoch = tmp_path / "epoch.parquet"
    stamps = pd.to_datetime(["2026-02-03 12:00", "2026-02-05 00:00"]).astype("int64") // 10**9
    pd.DataFrame({"at": stamps.astype(str)}).to_parquet(epoch)
    assert file_days(epoch, "at", "UTC", FileOptions(timestamp_unit="s")) == [
        "2026-02-03",
        "2026-02-05",
    ]


def test_drop_sensor_requests_exactly_the_days_of_new_or_changed_files(
    make_settings: Callable[..., Settings], instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    drop = tmp_path / "drop"
    drop.mkdir()
    defs = build_defs(files_settings(make_settings, drop))
    sensor = defs.resolve_sensor_def("files_drop_sensor")
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert sensor.job_name == "daily_refresh"

    first = tick(defs, "files_drop_sensor", instance, None)
    assert not first.run_requests and first.cursor is not None
    assert load_cursor(first.cursor) == {}

    a = write_csv(
        drop / "tx_a.csv",
        [(1, "2026-02-03 09:00", 10.0), (2, "2026-02-03 17:00", 5.0), (1, "2026-02-04 08:00", 7.5)],
    )
    added = tick(defs, "files_drop_sensor", instance, first.cursor)
    (request,) = added.run_requests or []  # consecutive days: one ranged run, not one per day
    assert request.partition_key is None
    assert (request.tags[RANGE_START_TAG], request.tags[RANGE_END_TAG]) == (
        "2026-02-03",
        "2026-02-04",
    )
    assert request.run_key is not None and request.run_key.startswith("drop-2026-02-03-2026-02-04-")
    assert request.asset_selection == [*TX_RAW, ACTIVITY, FEATURES]
    assert request.tags["lifecycle/trigger"] == "files_drop"
    assert set(load_cursor(added.cursor)) == {str(a)}

    again = tick(defs, "files_drop_sensor", instance, added.cursor)
    assert not again.run_requests

    # The same bytes written again (new mtime): not a new version, no run.
    a.write_bytes(a.read_bytes())
    os.utime(a, ns=(a.stat().st_atime_ns, a.stat().st_mtime_ns + 10**9))
    touched = tick(defs, "files_drop_sensor", instance, again.cursor)
    assert not touched.run_requests

    write_csv(a, [(1, "2026-02-03 09:00", 10.0), (2, "2026-02-03 17:00", 6.0)])
    rewritten = tick(defs, "files_drop_sensor", instance, touched.cursor)
    changed = by_partition(rewritten)
    assert sorted(changed) == ["2026-02-03"]  # the file's days now
    assert changed["2026-02-03"].run_key != request.run_key

    # A second file: only its days (and not the one before the partitions start).
    b = write_csv(drop / "tx_b.csv", [(3, "2026-02-10 12:00", 3.0), (3, "2025-12-31 12:00", 1.0)])
    second = tick(defs, "files_drop_sensor", instance, rewritten.cursor)
    assert sorted(by_partition(second)) == ["2026-02-10"]
    digest = version_digest([(str(b), load_cursor(second.cursor)[str(b)].sha256)])
    assert by_partition(second)["2026-02-10"].run_key == f"drop-2026-02-10-{digest}"

    # Unreadable file (no timestamp column): skipped, not remembered, no crash.
    (drop / "tx_bad.csv").write_text("customer_id,when,amount\n1,2026-02-11,3\n")
    bad = tick(defs, "files_drop_sensor", instance, second.cursor)
    assert not bad.run_requests and str(drop / "tx_bad.csv") not in load_cursor(bad.cursor)


def test_drop_run_request_ingests_the_file(
    make_settings: Callable[..., Settings], instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    """The requested selection runs as is (transactions only: no interactions glob needed)."""
    drop = tmp_path / "drop"
    write_csv(drop / "tx_1.csv", [(c, f"2026-01-01 {8 + c}:00", 2.0 * c) for c in range(1, 6)])
    settings = files_settings(make_settings, drop)
    defs = build_defs(settings)
    (request,) = tick(defs, "files_drop_sensor", instance, None).run_requests or []
    result = defs.resolve_job_def("daily_refresh").execute_in_process(
        instance=instance,
        partition_key=request.partition_key,
        asset_selection=request.asset_selection,
        tags=request.tags,
    )
    assert result.success
    materialized = {e.asset_key for e in result.get_asset_materialization_events()}
    assert materialized == {*TX_RAW, ACTIVITY, FEATURES}
    rows = result.asset_materializations_for_node("raw_transactions")[0].metadata["rows"]
    assert rows.value == 5


def test_a_ratings_drop_alone_ingests_interactions_and_nothing_of_churn(
    make_settings: Callable[..., Settings], instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    """Interactions-only source: the drop ingests the ratings; there is no churn to retrain."""
    drop = tmp_path / "drop"
    drop.mkdir()
    rows = [("u-007", "00042", "2026-01-02 10:00", 5.0), ("u-008", "1e5", "2026-01-02 11:00", 3.0)]
    pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp", "weight"]).to_csv(
        drop / "ratings_1.csv", index=False
    )
    files = {"interactions_glob": str(drop / "ratings_*.csv")}
    settings = make_settings({"source": {"kind": "files", "files": files}})
    defs = build_defs(settings)
    assert {s.name for s in defs.sensors or []} == {
        "files_drop_sensor",
        "run_failure_alert",
        "failed_check_alert",
        # Every family has a daily prediction check and its drift sensor (issue 15); churn's
        # is absent here.
        "recommender_drift_retrain",
    }
    (request,) = tick(defs, "files_drop_sensor", instance, None).run_requests or []
    assert request.partition_key == "2026-01-02"
    assert request.asset_selection == raw_keys("interactions")
    result = defs.resolve_job_def("daily_refresh").execute_in_process(
        instance=instance,
        partition_key=request.partition_key,
        asset_selection=request.asset_selection,
        tags=request.tags,
    )
    assert result.success
    materialized = {e.asset_key for e in result.get_asset_materialization_events()}
    assert materialized == set(raw_keys("interactions"))
    rows_meta = result.asset_materializations_for_node("raw_interactions")[0].metadata["rows"]
    assert rows_meta.value == 2
    with duckdb.connect(settings.warehouse.database, read_only=True) as con:
        stored = con.execute("select user_id, item_id from raw.interactions order by 1").fetchall()
    assert stored == [("u-007", "00042"), ("u-008", "1e5")]  # ids exactly as in the file


def test_drop_sensor_is_stopped_and_skips_without_files_source(
    small_defs: tuple[Settings, dg.Definitions], instance: dg.DagsterInstance
) -> None:
    _, defs = small_defs
    sensor = defs.resolve_sensor_def("files_drop_sensor")
    assert sensor.default_status == dg.DefaultSensorStatus.STOPPED
    with dg.build_sensor_context(instance=instance, resources={"alerts": AlertResource()}) as ctx:
        assert isinstance(sensor(ctx), dg.SkipReason)


# --- drift → retrain ------------------------------------------------------------------------


def test_score_drift_requests_a_challenger_for_the_month_never_a_champion(
    small_defs: tuple[Settings, dg.Definitions], instance: dg.DagsterInstance
) -> None:
    _, defs = small_defs
    name = "churn_drift_retrain"
    assert defs.resolve_sensor_def(name).default_status == dg.DefaultSensorStatus.RUNNING
    report_check(instance, CHURN_SCORES, "score_drift", False, "2026-02-20")  # before it started
    start = tick(defs, name, instance, None)
    assert not start.run_requests and start.cursor

    report_check(instance, CHURN_SCORES, "score_drift", True, "2026-03-13")
    report_check(instance, CHURN_SHADOW, "score_drift", False, "2026-03-13")
    report_check(instance, CHURN_SCORES, "score_drift", False, "2026-03-14")
    report_check(instance, CHURN_SCORES, "score_drift", False, "2026-03-15")
    result = tick(defs, name, instance, start.cursor)
    (request,) = result.run_requests or []
    assert request.partition_key == "2026-03-01"
    assert request.asset_selection == [CHURN_DATASET, CHURN_CHALLENGER]
    assert not set(CHAMPIONS.values()) & set(request.asset_selection or [])
    assert request.run_key is not None and request.run_key.startswith("drift-retrain-2026-03-01-")
    assert request.tags["lifecycle/drift_partition"] == "2026-03-15"
    assert defs.resolve_sensor_def(name).job_name == "monthly_training"

    # The job subset this request launches trains and gates, and promotes nothing.
    job = defs.resolve_job_def("monthly_training")
    subset = job.get_subset(asset_selection=set(request.asset_selection or []))
    assert subset.asset_layer.executable_asset_keys == {CHURN_DATASET, CHURN_CHALLENGER}
    assert "churn_promotion_gates" in subset.graph.node_dict  # the blocking gates run too

    repeat = tick(defs, name, instance, result.cursor)
    assert not repeat.run_requests

    report_check(instance, CHURN_SCORES, "score_drift", False, "2026-08-02")  # past the months
    assert not tick(defs, name, instance, repeat.cursor).run_requests


def test_drift_without_partition_retrains_the_current_month(
    make_settings: Callable[..., Settings], instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    open_ended = {"partitions": {"end_date": None}, "timezone": "Asia/Tokyo"}
    defs = build_defs(files_settings(make_settings, tmp_path / "drop", **open_ended))
    start = tick(defs, "churn_drift_retrain", instance, None)
    report_check(instance, CHURN_SCORES, "score_drift", False)
    (request,) = tick(defs, "churn_drift_retrain", instance, start.cursor).run_requests or []
    month = pd.Timestamp.now(tz="Asia/Tokyo").strftime("%Y-%m-01")
    assert request.partition_key == month


# --- alerts -----------------------------------------------------------------------------------


def test_run_failure_alert_posts_job_partition_and_run(
    make_settings: Callable[..., Settings],
    instance: dg.DagsterInstance,
    tmp_path: Path,
    webhook: Webhook,
) -> None:
    # A files source whose folder is empty: ingest fails for real.
    defs = build_defs(files_settings(make_settings, tmp_path / "empty"))
    result = defs.resolve_job_def("daily_refresh").execute_in_process(
        instance=instance,
        partition_key="2026-01-05",
        asset_selection=TX_RAW,
        raise_on_error=False,
    )
    assert not result.success
    alerts = AlertResource(kind="webhook", webhook_url=webhook.url)
    context = dg.build_run_status_sensor_context(
        sensor_name="run_failure_alert",
        dagster_instance=instance,
        dagster_run=result.dagster_run,
        dagster_event=result.get_run_failure_event(),
        resources={"alerts": alerts},
    ).for_run_failure()
    sensor = defs.resolve_sensor_def("run_failure_alert")
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    sensor(context)

    (post,) = webhook.received
    payload = post["json"]
    assert post["path"] == "/hooks/secret-token-123" and post["type"] == "application/json"
    assert payload["failed"] == "run" and payload["severity"] == "error"
    assert payload["job"] == "daily_refresh"
    assert payload["partition"] == "2026-01-05"
    assert payload["run_id"] == result.run_id
    assert payload["run_path"] == f"/runs/{result.run_id}"
    assert "raw_transactions" in payload["details"]["failed_steps"]
    assert "no source files match" in payload["details"]["error"]


def test_failed_check_alert_from_a_real_run(
    make_settings: Callable[..., Settings],
    instance: dg.DagsterInstance,
    tmp_path: Path,
    webhook: Webhook,
) -> None:
    """A day with too many malformed rows fails the quarantine-share check (WARN)."""
    drop = tmp_path / "drop"
    rows: list[tuple[Any, str, Any]] = [(c, "2026-01-02 10:00", 1.0 + c) for c in range(1, 9)]
    write_csv(drop / "tx_1.csv", [*rows, (9, "2026-01-02 11:00", "lots"), (10, "x", 1.0)])  # type: ignore[list-item]
    defs = build_defs(files_settings(make_settings, drop))
    resources = {"alerts": AlertResource(kind="webhook", webhook_url=webhook.url)}
    report_check(instance, CHURN_SCORES, "score_drift", False, "2026-01-01")  # old history
    start = tick(defs, "failed_check_alert", instance, None, resources)
    assert not webhook.received

    result = defs.resolve_job_def("daily_refresh").execute_in_process(
        instance=instance, partition_key="2026-01-02", asset_selection=TX_RAW
    )
    (evaluation,) = result.get_asset_check_evaluations()
    assert not evaluation.passed
    report_check(instance, CHURN_SCORES, "score_drift", True, "2026-01-02")  # passing: no alert
    first = tick(defs, "failed_check_alert", instance, start.cursor, resources)

    (post,) = webhook.received
    payload = post["json"]
    assert payload["failed"] == "asset_check" and payload["severity"] == "warning"
    assert payload["key"] == "raw/transactions:transactions_quarantine_share"
    assert payload["partition"] == "2026-01-02"
    assert payload["run_id"] == result.run_id
    assert float(payload["details"]["share"]) > 0.05

    assert tick(defs, "failed_check_alert", instance, first.cursor, resources).skip_reason
    assert len(webhook.received) == 1

    report_check(instance, CHURN_SCORES, "score_drift", False, "2026-01-03")
    tick(defs, "failed_check_alert", instance, first.cursor, resources)
    runless = webhook.received[-1]["json"]
    assert runless["key"] == "predictions/churn_scores:score_drift"
    assert runless["run_id"] is None and runless["partition"] == "2026-01-03"
    assert runless["details"] == {"score_psi": "0.41", "bound": "0.25"}


def test_webhook_retries_then_fails_without_leaking_the_url(webhook: Webhook) -> None:
    alert = Alert(title="t", failed="run", run_id="abc")
    alerts = AlertResource(kind="webhook", webhook_url=webhook.url, backoff_s=0.01)
    webhook.statuses[:] = [503, 502]
    alerts.send(alert)  # two retries: the third attempt gets through
    assert len(webhook.received) == 3

    webhook.statuses[:] = [500, 500, 500]
    with pytest.raises(AlertDeliveryError) as failed:
        alerts.send(alert)
    assert "HTTP 500" in str(failed.value) and "3 attempt" in str(failed.value)
    assert "secret-token" not in str(failed.value) and "127.0.0.1" not in str(failed.value)

    webhook.statuses[:] = [400]
    with pytest.raises(AlertDeliveryError, match="1 attempt"):
        alerts.send(alert)  # a refusal is not retried

    closed = AlertResource(
        kind="webhook", webhook_url="http://127.0.0.1:9/hook?token=s3cr3t", backoff_s=0.01
    )
    with pytest.raises(AlertDeliveryError) as refused:
        closed.send(alert)
    assert "s3cr3t" not in str(refused.value) and refused.value.__cause__ is None


def test_slack_alert_goes_through_the_slack_client(webhook: Webhook) -> None:
    alerts = AlertResource(
        kind="slack",
        slack_channel="#ml-alerts",
        slack_token="xoxb-test",
        slack_base_url=webhook.url.rsplit("/hooks", 1)[0] + "/api/",
        webserver_url="http://dagster.local",
    )
    alerts.send(Alert(title="Run failed", failed="run", run_id="r1", partition="2026-01-05"))
    (post,) = webhook.received
    assert post["path"] == "/api/chat.postMessage"
    assert post["json"]["channel"] == "#ml-alerts"
    assert "partition: 2026-01-05" in post["json"]["text"]
    assert "http://dagster.local/runs/r1" in post["json"]["text"]


def test_alert_text_payload_and_log_channel(caplog: pytest.LogCaptureFixture) -> None:
    alert = Alert(
        title="Check failed",
        failed="asset_check",
        key="predictions/churn_scores:score_drift",
        partition="2026-03-14",
        run_id="r9",
        severity="warning",
        details={"score_psi": "0.41"},
    )
    payload = alert.to_payload()
    assert json.loads(json.dumps(payload)) == payload
    assert payload["run_path"] == "/runs/r9" and payload["severity"] == "warning"
    assert "[WARNING] Check failed" in alert.to_text()
    with pytest.raises(ValueError, match="severity"):
        Alert(title="x", failed="run", severity="fatal")  # type: ignore[arg-type]

    AlertResource().send(alert)
    assert "predictions/churn_scores:score_drift" in caplog.text


def test_alerts_from_settings_defaults_to_the_log(
    small_defs: tuple[Settings, dg.Definitions],
) -> None:
    settings, defs = small_defs
    assert alerts_from_settings(settings).kind == "log"
    assert isinstance(defs.resources["alerts"], AlertResource)


@pytest.fixture
def postgres_instance(tmp_path: Path) -> Iterator[dg.DagsterInstance]:
    """An instance on a fresh database of the PostgreSQL server on 127.0.0.1 (production's
    storage), dropped afterwards."""
    import psycopg2

    name = f"sensors_test_{uuid.uuid4().hex[:12]}"
    try:
        admin = psycopg2.connect(
            host="127.0.0.1", port=5432, user="postgres", dbname="postgres", connect_timeout=5
        )
    except psycopg2.OperationalError as exc:
        pytest.fail(f"PostgreSQL at 127.0.0.1:5432 is not reachable: {exc}")
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'create database "{name}"')
    url = f"postgresql+psycopg2://postgres@127.0.0.1:5432/{name}"
    try:
        with dg.instance_for_test(
            temp_dir=str(tmp_path), overrides={"storage": {"postgres": {"postgres_url": url}}}
        ) as inst:
            yield inst
    finally:
        with admin.cursor() as cur:
            cur.execute(f'drop database if exists "{name}" with (force)')
        admin.close()


def test_check_cursor_waits_for_evaluations_still_running(instance: dg.DagsterInstance) -> None:
    """On the default (run-sharded) SQLite storage of `dagster dev`."""
    exercise_check_cursor(instance)


@pytest.mark.postgres
def test_check_cursor_on_postgres(postgres_instance: dg.DagsterInstance) -> None:
    """On PostgreSQL, the storage deploy/dagster.yaml uses."""
    exercise_check_cursor(postgres_instance)


def exercise_check_cursor(instance: dg.DagsterInstance) -> None:
    """A run plans a check (its row gets an id), a later evaluation lands first, the planned one
    is evaluated afterwards: each failure is seen exactly once, none is skipped."""
    key = dg.AssetCheckKey(CHURN_SCORES, "score_drift")
    _, cursor = check_events(instance, [key], None)

    def planned_in(status: dg.DagsterRunStatus, partition: str) -> dg.DagsterRun:
        run = instance.add_run(
            dg.DagsterRun(
                job_name="daily_refresh", status=status, tags={"dagster/partition": partition}
            )
        )
        planned = AssetCheckEvaluationPlanned(asset_key=CHURN_SCORES, check_name="score_drift")
        instance.report_dagster_event(
            DagsterEvent(
                event_type_value=DagsterEventType.ASSET_CHECK_EVALUATION_PLANNED.value,
                job_name=run.job_name,
                event_specific_data=planned,
            ),
            run_id=run.run_id,
        )
        return run

    running = planned_in(dg.DagsterRunStatus.STARTED, "2026-03-01")
    report_check(instance, CHURN_SCORES, "score_drift", False, "2026-03-02")
    first, cursor = check_events(instance, [key], cursor)
    assert [e.partition for e in first] == ["2026-03-02"]

    instance.report_dagster_event(
        DagsterEvent(
            event_type_value=DagsterEventType.ASSET_CHECK_EVALUATION.value,
            job_name=running.job_name,
            event_specific_data=dg.AssetCheckEvaluation(
                asset_key=CHURN_SCORES, check_name="score_drift", passed=False
            ),
        ),
        run_id=running.run_id,
    )
    second, cursor = check_events(instance, [key], cursor)
    assert [(e.partition, e.run_id) for e in second] == [("2026-03-01", running.run_id)]

    # A run that died before evaluating its planned check does not hold the cursor back.
    dead = planned_in(dg.DagsterRunStatus.STARTED, "2026-03-03")
    instance.report_run_failed(dead)
    report_check(instance, CHURN_SCORES, "score_drift", False, "2026-03-04")
    third, cursor = check_events(instance, [key], cursor)
    assert [e.partition for e in third] == ["2026-03-04"]
    assert json.loads(cursor)[key.to_user_string()][1] == []  # nothing left open
    assert check_events(instance, [key], cursor)[0] == []
