"""Sensors: new files → ingest their days; failed runs and checks → alerts; score drift →
retrain a challenger (never a champion: promotion stays with the promotion job).

Every sensor keeps its own cursor, so a restarted daemon neither repeats nor skips work; run
keys make a repeated request a no-op on top of that.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

import dagster as dg
import pandas as pd
from dagster import DagsterEventType, EventRecordsFilter

from assets.common import Partitions
from assets.keys import ACTIVITY, CHURN_CHALLENGER, CHURN_DATASET, CHURN_SCORES, FEATURES, RAW
from jobs import Jobs
from lifecycle.alerts import Alert
from lifecycle.drops import (
    Fingerprint,
    changed_paths,
    days_covered,
    dump_cursor,
    load_cursor,
    scan_files,
    version_digest,
)
from lifecycle.settings import Settings
from resources.alerts import AlertResource

TRIGGER_TAG = "lifecycle/trigger"
PARTITION_TAG = "dagster/partition"
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"
DRIFT_CHECK = "score_drift"
PAGE = 200
IN_FLIGHT = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


def raw_keys(table: str) -> list[dg.AssetKey]:
    """The raw table with its quarantine and quality outputs (one multi-asset, not subsettable)."""
    return [key for key in RAW if key.path[1].split("_")[0] == table]


def partition_exists(
    partitions_def: dg.TimeWindowPartitionsDefinition, key: str, now: dt.datetime
) -> bool:
    """Whether ``key`` is a partition as of ``now`` (a day exists once it is over)."""
    with dg.partition_loading_context(effective_dt=now):
        return partitions_def.has_partition_key(key)


def run_partition(tags: Mapping[str, str]) -> str | None:
    """A run's partition key, or ``start…end`` for a single-run range backfill."""
    if tags.get(PARTITION_TAG):
        return tags[PARTITION_TAG]
    if tags.get(RANGE_START_TAG) and tags.get(RANGE_END_TAG):
        return f"{tags[RANGE_START_TAG]}…{tags[RANGE_END_TAG]}"
    return None


# --- asset check evaluations, read from the instance's event log --------------------------


@dataclass(frozen=True)
class CheckEvent:
    storage_id: int
    evaluation: dg.AssetCheckEvaluation
    run_id: str | None
    partition: str | None

    @property
    def key(self) -> str:
        return f"{self.evaluation.asset_key.to_user_string()}:{self.evaluation.check_name}"

    @property
    def severity(self) -> str:
        return "error" if self.evaluation.severity == dg.AssetCheckSeverity.ERROR else "warning"


def _check_records(
    instance: dg.DagsterInstance, after: int | None, limit: int, ascending: bool = True
) -> Sequence[dg.EventLogRecord]:
    # 1.13 has no fetch_* method for check evaluations; get_event_records is the public way
    # (marked deprecated for 2.0, without a replacement yet).
    return instance.get_event_records(
        EventRecordsFilter(event_type=DagsterEventType.ASSET_CHECK_EVALUATION, after_cursor=after),
        limit=limit,
        ascending=ascending,
    )


def check_events_after(
    instance: dg.DagsterInstance, after: int, limit: int = PAGE
) -> list[CheckEvent]:
    """Check evaluations stored after ``after``, oldest first, with the partition they were
    evaluated on (from the evaluation, else from the run's tags)."""
    events = []
    runs: dict[str, Mapping[str, str]] = {}
    for record in _check_records(instance, after, limit):
        event = record.event_log_entry.dagster_event
        evaluation = event.event_specific_data if event else None
        if not isinstance(evaluation, dg.AssetCheckEvaluation):
            continue
        run_id = record.run_id or None
        partition = evaluation.partition
        if partition is None and run_id:
            if run_id not in runs:
                run = instance.get_run_by_id(run_id)
                runs[run_id] = run.tags if run else {}
            partition = run_partition(runs[run_id])
        events.append(CheckEvent(record.storage_id, evaluation, run_id, partition))
    return events


def latest_check_storage_id(instance: dg.DagsterInstance) -> int:
    records = _check_records(instance, None, 1, ascending=False)
    return records[0].storage_id if records else 0


def check_cursor(context: dg.SensorEvaluationContext) -> int | None:
    """The stored cursor; ``None`` on the first tick, which starts after the existing history
    instead of alerting (or retraining) for every old failure."""
    return int(context.cursor) if context.cursor else None


def metadata_details(evaluation: dg.AssetCheckEvaluation, limit: int = 8) -> dict[str, str]:
    """The check's scalar metadata (e.g. score_psi and its bound) as short strings."""
    details = {}
    for name, value in evaluation.metadata.items():
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


def build_files_drop_sensor(
    settings: Settings, partitions: Partitions, jobs: Jobs
) -> dg.SensorDefinition:
    files, tz = settings.source.files, settings.timezone
    active = settings.source.kind == "files" and files is not None
    globs = (
        {
            table: pattern
            for table, pattern in (
                ("transactions", files.transactions_glob),
                ("interactions", files.interactions_glob),
            )
            if pattern
        }
        if files is not None
        else {}
    )

    @dg.sensor(
        name="files_drop_sensor",
        job=jobs.daily,
        minimum_interval_seconds=60,
        default_status=(
            dg.DefaultSensorStatus.RUNNING if active else dg.DefaultSensorStatus.STOPPED
        ),
        description="New or changed source files → ingest and featurise exactly the local days "
        "their rows cover (one run per day; a file version is never ingested twice).",
    )
    def files_drop_sensor(context: dg.SensorEvaluationContext):
        if not active or files is None:
            return dg.SkipReason(f"source.kind is {settings.source.kind!r}, not 'files'")
        previous = load_cursor(context.cursor)
        current, tables_of = scan_files(globs, previous)
        now = dt.datetime.now(ZoneInfo(tz))
        versions: dict[str, set[tuple[str, str]]] = {}
        tables: dict[str, set[str]] = {}
        outside: set[str] = set()
        for path in changed_paths(current, previous):
            try:
                days = days_covered(
                    Path(path),
                    files.columns.timestamp,
                    tz,
                    files.timestamp_format,
                    files.timestamp_unit,
                )
            except Exception as exc:
                # Unreadable (or still being written): not marked as seen, looked at next tick.
                context.log.warning(f"{path}: cannot read its timestamps: {exc}")
                _forget(current, previous, path)
                continue
            for day in days:
                if not partition_exists(partitions.daily, day, now):
                    outside.add(day)
                    continue
                versions.setdefault(day, set()).add((path, current[path].sha256))
                tables.setdefault(day, set()).update(tables_of[path])
        if outside:
            context.log.info(
                f"{len(outside)} day(s) outside the daily partitions (or not over yet) skipped: "
                f"{', '.join(sorted(outside)[:5])}"
            )
        requests = [
            dg.RunRequest(
                run_key=f"drop-{day}-{version_digest(versions[day])}",
                partition_key=day,
                asset_selection=_drop_selection(tables[day]),
                tags={TRIGGER_TAG: "files_drop", "lifecycle/drop_files": str(len(versions[day]))},
            )
            for day in sorted(versions)
        ]
        cursor = dump_cursor(current)
        if not requests:
            return dg.SensorResult(skip_reason="no new or changed file rows", cursor=cursor)
        return dg.SensorResult(run_requests=requests, cursor=cursor)

    return files_drop_sensor


def _forget(current: dict[str, Fingerprint], previous: Mapping[str, Fingerprint], path: str):
    if path in previous:
        current[path] = previous[path]
    else:
        current.pop(path, None)


def _drop_selection(tables: set[str]) -> list[dg.AssetKey]:
    """Raw assets of the tables whose files changed; features when transactions changed
    (features are computed from transactions only)."""
    keys = [key for table in sorted(tables) for key in raw_keys(table)]
    return [*keys, ACTIVITY, FEATURES] if "transactions" in tables else keys


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
            if error is not None and error.message:
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
        after = check_cursor(context)
        if after is None:
            start = latest_check_storage_id(context.instance)
            return dg.SensorResult(skip_reason=f"starting after event {start}", cursor=str(start))
        events = check_events_after(context.instance, after)
        failed = [e for e in events if not e.evaluation.passed]
        # At-least-once: the cursor moves only when the whole page was delivered.
        for event in failed:
            alerts.send(check_alert(event))
        cursor = str(events[-1].storage_id) if events else str(after)
        if not failed:
            return dg.SensorResult(skip_reason="no failed checks", cursor=cursor)
        context.log.info(f"alerted {len(failed)} failed check(s)")
        return dg.SensorResult(skip_reason=f"alerted {len(failed)} failed check(s)", cursor=cursor)

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
        after = check_cursor(context)
        if after is None:
            start = latest_check_storage_id(context.instance)
            return dg.SensorResult(skip_reason=f"starting after event {start}", cursor=str(start))
        events = check_events_after(context.instance, after)
        cursor = str(events[-1].storage_id) if events else str(after)
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
                    run_key=f"drift-retrain-{month}-{event.storage_id}",
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
    return [
        build_files_drop_sensor(settings, partitions, jobs),
        build_run_failure_alert_sensor(),
        build_check_failure_alert_sensor(),
        build_drift_retrain_sensor(settings, partitions, jobs),
    ]
