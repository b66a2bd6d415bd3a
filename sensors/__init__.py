"""Sensors: new files → ingest their days and redo the days they feed (sensors/drop.py);
failed runs and checks → alerts; score drift → retrain a challenger (never a champion:
promotion stays with the promotion job).

Every sensor keeps its own cursor, so a restarted daemon neither repeats nor skips work; run
keys make a repeated request a no-op on top of that.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import dagster as dg
import pandas as pd
from dagster._core.storage.asset_check_execution_record import (
    AssetCheckExecutionRecord,
    AssetCheckExecutionRecordStatus,
)

from assets.common import Partitions
from assets.keys import CHURN_CHALLENGER, CHURN_DATASET, CHURN_SCORES, raw_keys
from jobs import Jobs
from lifecycle.alerts import Alert
from lifecycle.settings import Settings
from resources.alerts import AlertResource
from sensors.common import (
    PARTITION_TAG,
    RANGE_END_TAG,
    RANGE_START_TAG,
    TRIGGER_TAG,
    partition_exists,
    run_partition,
)
from sensors.drop import build_files_drop_sensor

__all__ = [
    "PARTITION_TAG",
    "RANGE_END_TAG",
    "RANGE_START_TAG",
    "TRIGGER_TAG",
    "build_files_drop_sensor",
    "build_sensors",
    "check_events",
    "partition_exists",
    "raw_keys",
    "run_partition",
]

DRIFT_CHECK = "score_drift"
DRIFT_KEY = dg.AssetCheckKey(CHURN_SCORES, DRIFT_CHECK)
PAGE = 200
IN_FLIGHT = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


# --- asset check evaluations, read from the instance -----------------------------------------
#
# Not `instance.get_event_records(EventRecordsFilter(ASSET_CHECK_EVALUATION, after_cursor=N))`:
# on the default (run-sharded) SQLite storage of `dagster dev` that raises for any integer
# cursor, and it never sees runless evaluations there. The per-check execution table
# (`get_asset_check_execution_history`) lives in the index shard (SQLite) or the one database
# (PostgreSQL), holds run and runless evaluations alike, and has global row ids. A row is
# created when a run *plans* the check and completed in place when it is evaluated, so ids are
# in planning order: the cursor keeps, per check, a watermark below which every row is done,
# plus the ids above it already handled while an earlier row was still running.


@dataclass(frozen=True)
class CheckEvent:
    id: int
    evaluation: dg.AssetCheckEvaluation
    run_id: str | None
    partition: str | None

    @property
    def key(self) -> str:
        return f"{self.evaluation.asset_key.to_user_string()}:{self.evaluation.check_name}"

    @property
    def severity(self) -> str:
        return "error" if self.evaluation.severity == dg.AssetCheckSeverity.ERROR else "warning"


def _history_after(
    instance: dg.DagsterInstance, key: dg.AssetCheckKey, after: int
) -> list[AssetCheckExecutionRecord]:
    """Rows of one check with id > ``after``, oldest first."""
    rows: list[AssetCheckExecutionRecord] = []
    before = None
    while True:
        page = instance.event_log_storage.get_asset_check_execution_history(
            key, limit=PAGE, cursor=before
        )
        fresh = [row for row in page if row.id > after]
        rows.extend(fresh)
        if len(page) < PAGE or len(fresh) < len(page):
            return sorted(rows, key=lambda row: row.id)
        before = page[-1].id


class _Runs:
    """Run lookups, cached for one tick."""

    def __init__(self, instance: dg.DagsterInstance) -> None:
        self.instance = instance
        self.cache: dict[str, dg.DagsterRun | None] = {}

    def get(self, run_id: str) -> dg.DagsterRun | None:
        if run_id not in self.cache:
            self.cache[run_id] = self.instance.get_run_by_id(run_id)
        return self.cache[run_id]

    def in_flight(self, run_id: str) -> bool:
        run = self.get(run_id) if run_id else None
        return run is not None and run.status in IN_FLIGHT


def _event(row: AssetCheckExecutionRecord, runs: _Runs) -> CheckEvent | None:
    dagster_event = row.event.dagster_event if row.event else None
    evaluation = dagster_event.event_specific_data if dagster_event else None
    if not isinstance(evaluation, dg.AssetCheckEvaluation):
        return None
    partition = row.partition or evaluation.partition
    if partition is None and row.run_id:
        run = runs.get(row.run_id)
        partition = run_partition(run.tags) if run else None
    return CheckEvent(row.id, evaluation, row.run_id or None, partition)


def check_events(
    instance: dg.DagsterInstance, keys: Iterable[dg.AssetCheckKey], cursor: str | None
) -> tuple[list[CheckEvent], str]:
    """Check evaluations completed since ``cursor`` (oldest first) and the next cursor.

    Without a cursor (a sensor's first tick) it returns nothing and a cursor after the current
    history, so turning a sensor on never replays old failures.
    """
    runs = _Runs(instance)
    state: dict[str, list] = json.loads(cursor) if cursor else {}
    events: list[CheckEvent] = []
    for key in sorted(keys, key=lambda k: k.to_user_string()):
        name = key.to_user_string()
        if cursor is None:
            newest = instance.event_log_storage.get_asset_check_execution_history(key, limit=1)
            state[name] = [newest[0].id if newest else 0, []]
            continue
        watermark, handled = state.get(name, [0, []])
        done, blocked, still_open = set(handled), False, []
        for row in _history_after(instance, key, watermark):
            planned = row.status == AssetCheckExecutionRecordStatus.PLANNED
            if planned and runs.in_flight(row.run_id):
                blocked = True  # evaluated later: keep the watermark below it
                continue
            if row.id not in done and not planned:
                event = _event(row, runs)
                if event is not None:
                    events.append(event)
            if blocked:
                still_open.append(row.id)
            else:
                watermark = row.id
        state[name] = [watermark, still_open]
    return sorted(events, key=lambda e: e.id), json.dumps(state, separators=(",", ":"))


def metadata_details(evaluation: dg.AssetCheckEvaluation, limit: int = 8) -> dict[str, str]:
    """The check's scalar metadata (e.g. score_psi and its bound) as short strings; the day's
    own figures before the range-wide ``range*`` context (metadata comes back sorted by name)."""
    details = {}
    items = sorted(evaluation.metadata.items(), key=lambda kv: kv[0].startswith("range"))
    for name, value in items:
        raw = getattr(value, "value", value)
        if isinstance(raw, bool | int | float | str) and len(str(raw)) <= 80:
            details[name] = f"{raw:.4g}" if isinstance(raw, float) else str(raw)
        if len(details) >= limit:
            break
    return details


def check_alert(event: CheckEvent) -> Alert:
    evaluation = event.evaluation
    return Alert(
        title=f"Check {evaluation.check_name} failed on {evaluation.asset_key.to_user_string()}",
        failed="asset_check",
        key=event.key,
        partition=event.partition,
        run_id=event.run_id,
        severity=event.severity,  # type: ignore[arg-type]
        message=evaluation.description or "",
        details=metadata_details(evaluation),
    )


# --- the sensors ----------------------------------------------------------------------------


def build_run_failure_alert_sensor() -> dg.SensorDefinition:
    @dg.run_failure_sensor(
        name="run_failure_alert",
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Any failed run of this code location → an alert naming job, partition, run.",
    )
    def run_failure_alert(context: dg.RunFailureSensorContext, alerts: AlertResource):
        run = context.dagster_run
        failures = context.get_step_failure_events()
        details = {}
        if failures:
            details["failed_steps"] = ", ".join(e.step_key or "?" for e in failures[:10])
            error = failures[0].step_failure_data.error
            while error is not None and error.cause is not None:
                error = error.cause  # the user's exception, not Dagster's wrapper
            if error is not None and error.message.strip():
                details["error"] = error.message.strip().splitlines()[0][:300]
        alerts.send(
            Alert(
                title=f"Run of {run.job_name} failed",
                failed="run",
                key=None,
                partition=run_partition(run.tags),
                run_id=run.run_id,
                job=run.job_name,
                severity="error",
                message=(context.failure_event.message or "").strip()[:500],
                details=details,
            )
        )

    return run_failure_alert


def build_check_failure_alert_sensor() -> dg.SensorDefinition:
    @dg.sensor(
        name="failed_check_alert",
        minimum_interval_seconds=30,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Every failed asset check evaluation (WARN or ERROR) → an alert.",
    )
    def failed_check_alert(context: dg.SensorEvaluationContext, alerts: AlertResource):
        if context.repository_def is None:
            return dg.SkipReason("no code location to read the asset checks from")
        keys = context.repository_def.asset_graph.asset_check_keys
        events, cursor = check_events(context.instance, keys, context.cursor)
        if context.cursor is None:
            return dg.SensorResult(skip_reason="started: watching new evaluations", cursor=cursor)
        failed = [e for e in events if not e.evaluation.passed]
        # At least once: an alert that cannot be sent fails the tick and the cursor stays put.
        for event in failed:
            alerts.send(check_alert(event))
        note = f"alerted {len(failed)} failed check(s)" if failed else "no failed checks"
        return dg.SensorResult(skip_reason=note, cursor=cursor)

    return failed_check_alert


def month_of(partition: str | None, now: dt.datetime) -> str:
    """The first day of the month holding a daily partition (or a range's last day), else of
    ``now``."""
    day = None
    if partition:
        try:
            day = pd.Timestamp(partition.split("…")[-1][:10]).date()
        except ValueError:
            day = None
    return (day or now.date()).replace(day=1).isoformat()


def build_drift_retrain_sensor(
    settings: Settings, partitions: Partitions, jobs: Jobs
) -> dg.SensorDefinition:
    job = jobs.monthly_training

    @dg.sensor(
        name="churn_drift_retrain",
        job=job,
        minimum_interval_seconds=60,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="predictions/churn_scores:score_drift failed → train a churn challenger for "
        "the month of the drifting day. Only dataset + challenger (and its gates): a champion "
        "changes only through the promotion job.",
    )
    def churn_drift_retrain(context: dg.SensorEvaluationContext):
        events, cursor = check_events(context.instance, [DRIFT_KEY], context.cursor)
        if context.cursor is None:
            return dg.SensorResult(skip_reason="started: watching new evaluations", cursor=cursor)
        now = dt.datetime.now(ZoneInfo(settings.timezone))
        latest: dict[str, CheckEvent] = {}
        for event in events:
            ev = event.evaluation
            if ev.asset_key == CHURN_SCORES and ev.check_name == DRIFT_CHECK and not ev.passed:
                latest[month_of(event.partition, now)] = event  # one run per month per tick
        requests = []
        for month, event in sorted(latest.items()):
            if not partition_exists(partitions.monthly, month, now):
                context.log.info(f"drift on {event.partition}: no monthly partition {month}")
                continue
            if _training_in_flight(context.instance, job.name, month):
                context.log.info(f"drift on {event.partition}: {month} training already queued")
                continue
            requests.append(
                dg.RunRequest(
                    run_key=f"drift-retrain-{month}-{event.id}",
                    partition_key=month,
                    asset_selection=[CHURN_DATASET, CHURN_CHALLENGER],
                    tags={
                        TRIGGER_TAG: DRIFT_CHECK,
                        "lifecycle/drift_partition": event.partition or "",
                        "lifecycle/drift_run_id": event.run_id or "",
                    },
                )
            )
        if not requests:
            return dg.SensorResult(skip_reason="no new score drift to act on", cursor=cursor)
        return dg.SensorResult(run_requests=requests, cursor=cursor)

    return churn_drift_retrain


def _training_in_flight(instance: dg.DagsterInstance, job_name: str, month: str) -> bool:
    runs = instance.get_runs(
        filters=dg.RunsFilter(
            job_name=job_name,
            statuses=IN_FLIGHT,
            tags={PARTITION_TAG: month, TRIGGER_TAG: DRIFT_CHECK},
        ),
        limit=1,
    )
    return bool(runs)


def build_sensors(settings: Settings, partitions: Partitions, jobs: Jobs) -> list:
    """Alerts always; the drift → retrain sensor only where the churn family exists."""
    sensors = [
        build_files_drop_sensor(settings, partitions, jobs),
        build_run_failure_alert_sensor(),
        build_check_failure_alert_sensor(),
    ]
    if "churn" in jobs.keys.families:
        sensors.append(build_drift_retrain_sensor(settings, partitions, jobs))
    return sensors
