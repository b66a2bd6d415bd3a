"""The files drop sensor: new or changed files → re-ingest their days and redo, in ranged runs,
every materialised day downstream that read them; a file that keeps failing to read → one alert.

The plan itself is pure (lifecycle/late_data.py); this module reads the files, the instance's
materialised partitions and the cursor, and turns the plan into run requests.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from zoneinfo import ZoneInfo

import dagster as dg

from assets.common import Partitions
from assets.keys import ACTIVITY, FEATURES, LABELS, Selection, raw_keys
from assets.per_day import days_tag
from jobs import Jobs
from lifecycle.alerts import Alert
from lifecycle.drops import (
    Fingerprint,
    ReadFailure,
    alert_due,
    changed_paths,
    dump_cursor,
    load_state,
    record_failure,
    scan_files,
    version_digest,
)
from lifecycle.late_data import Dependent, PlannedRange, Reach, plan_ranges
from lifecycle.settings import Settings
from lifecycle.sources import file_days
from resources.alerts import AlertDeliveryError, AlertResource
from resources.sources import FilesSource, source_from_settings
from sensors.common import RANGE_END_TAG, RANGE_START_TAG, TRIGGER_TAG

STAGE_TAG = "lifecycle/drop_stage"
STAGES = {0: "ingest", 1: "labels"}

DESCRIPTION = (
    "New or changed source files → re-ingest exactly the local days their rows cover and "
    "re-materialise every day that read them, as ranged runs (one per stretch of consecutive "
    "days needing the same assets, never one per day): features, churn and shadow scores and "
    "recommendations of every later day already materialised (features carry lifetime "
    "aggregates and recommendations read all history, so a changed day reaches every later day, "
    "not just its look-back window), then churn labels from the day minus the horizon on "
    "(horizon and population) whose horizon has matured. Ingest/feature/score ranges are "
    "requested oldest first and label ranges after them; the instance runs one run at a time "
    "(max_concurrent_runs: 1), oldest first. Re-materialisation is the mechanism: no data or "
    "code versions are declared, and Dagster's own stale status (default data versions) marks "
    "only the declared windows (features of the next look-back days, labels of the previous "
    "horizon days), not the lifetime history read by SQL nor windows of 100+ days "
    "(recommendations), so its stale marks are a subset of what this redoes. A file version is "
    "never ingested twice (run keys). A file that cannot be read is retried every tick and "
    "alerted once after source.files.alert_after_failures consecutive failures of the same bytes."
)


def late_dependents(settings: Settings, keys: Selection) -> list[Dependent]:
    """What each daily asset reads of its raw table, for the assets this location has."""
    history = Reach(None, 0)  # every day up to D
    horizon = settings.labels.horizon_days
    wanted = [
        Dependent(FEATURES.to_user_string(), "transactions", history, on_changed=True),
        # Every family's prediction tables (and shadows) read their table's history up to D.
        *(
            Dependent(key.to_user_string(), family.table, history)
            for family in keys.family_keys
            for key in family.daily
        ),
        # Population of day D (features D) and purchases in D+1 … D+horizon.
        Dependent(LABELS.to_user_string(), "transactions", Reach(None, horizon), stage=1),
    ]
    present = {*keys.daily, *keys.labels}
    return [dep for dep in wanted if dg.AssetKey.from_user_string(dep.name) in present]


def range_selection(names: frozenset[str], keys: Selection) -> list[dg.AssetKey]:
    """Asset keys of a planned range, in the daily job's fixed order."""
    chosen: set[dg.AssetKey] = set()
    for name in names:
        if name.startswith("raw:"):
            table = name.removeprefix("raw:")
            chosen.update(raw_keys(table))
            if table == "transactions" and ACTIVITY in keys.ingest:
                chosen.add(ACTIVITY)
        else:
            chosen.add(dg.AssetKey.from_user_string(name))
    return [key for key in [*keys.daily, *keys.labels] if key in chosen]


def run_requests(
    plan: Sequence[PlannedRange], keys: Selection, digest: str, files: int
) -> list[dg.RunRequest]:
    """One request per planned range; a one-day range is a plain partition run."""
    requests = []
    for planned in plan:
        start, end = planned.start.isoformat(), planned.end.isoformat()
        span = start if planned.days == 1 else f"{start}-{end}"
        prefix = "drop" if planned.stage == 0 else f"drop-{STAGES[planned.stage]}"
        tags = {
            TRIGGER_TAG: "files_drop",
            "lifecycle/drop_files": str(files),
            STAGE_TAG: STAGES[planned.stage],
        }
        if planned.days > 1:
            tags |= {RANGE_START_TAG: start, RANGE_END_TAG: end, **days_tag(start, end)}
        requests.append(
            dg.RunRequest(
                run_key=f"{prefix}-{span}-{digest}",
                partition_key=start if planned.days == 1 else None,
                asset_selection=range_selection(planned.names, keys),
                tags=tags,
            )
        )
    return requests


def drop_alert(path: str, failure: ReadFailure) -> Alert:
    return Alert(
        title=f"Drop file {Path(path).name} failed to read {failure.count} times in a row",
        failed="drop_file",
        key=path,
        severity="error",
        message=f"{failure.error}\nIts rows are not ingested; it is retried every tick, with no "
        "further alert until its bytes change.",
        details={
            "path": path,
            "consecutive_failures": str(failure.count),
            "sha256": failure.sha256[:16],
        },
    )


def _alert_failures(
    context: dg.SensorEvaluationContext,
    alerts: AlertResource,
    failures: dict[str, ReadFailure],
    after: int,
) -> None:
    """Alert each file version due; one that cannot be delivered is tried again next tick."""
    for path, failure in sorted(failures.items()):
        if not alert_due(failure, after):
            continue
        try:
            alerts.send(drop_alert(path, failure))
        except AlertDeliveryError as exc:
            context.log.error(f"{path}: alert not delivered ({exc}); tried again next tick")
            continue
        failures[path] = replace(failure, alerted=True)


def _forget(current: dict[str, Fingerprint], previous: Mapping[str, Fingerprint], path: str):
    if path in previous:
        current[path] = previous[path]
    else:
        current.pop(path, None)


def build_files_drop_sensor(
    settings: Settings, partitions: Partitions, jobs: Jobs
) -> dg.SensorDefinition:
    files, tz = settings.source.files, settings.timezone
    active = settings.source.kind == "files" and files is not None
    reader = source_from_settings(settings) if active else None
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
    keys = jobs.keys
    dependents = late_dependents(settings, keys)
    horizon = dt.timedelta(days=settings.labels.horizon_days)

    def materialised(
        instance: dg.DagsterInstance, dep: Dependent, existing: set[str], last: dt.date
    ) -> set[dt.date]:
        """Days of ``dep`` already materialised whose partition still exists (labels: whose
        horizon has matured, as the labels asset requires)."""
        done = instance.get_materialized_partitions(dg.AssetKey.from_user_string(dep.name))
        days = {dt.date.fromisoformat(key) for key in done & existing}
        if dep.name == LABELS.to_user_string():
            days = {day for day in days if day + horizon <= last}
        return days

    @dg.sensor(
        name="files_drop_sensor",
        job=jobs.daily,
        minimum_interval_seconds=60,
        default_status=(
            dg.DefaultSensorStatus.RUNNING if active else dg.DefaultSensorStatus.STOPPED
        ),
        description=DESCRIPTION,
    )
    def files_drop_sensor(context: dg.SensorEvaluationContext, alerts: AlertResource):
        if not active or files is None or not isinstance(reader, FilesSource):
            return dg.SkipReason(f"source.kind is {settings.source.kind!r}, not 'files'")
        previous, failing = load_state(context.cursor)
        current, tables_of = scan_files(globs, previous)
        now = dt.datetime.now(ZoneInfo(tz))
        with dg.partition_loading_context(effective_dt=now):
            existing = set(partitions.daily.get_partition_keys())
            last_key = partitions.daily.get_last_partition_key()
        changed: dict[str, set[dt.date]] = {}
        versions: set[tuple[str, str]] = set()
        outside: set[str] = set()
        failures: dict[str, ReadFailure] = {}
        for path in changed_paths(current, previous):
            sha = current[path].sha256
            try:
                # Read exactly as the files source will (per-table column, format, encoding).
                days = {
                    table: file_days(
                        Path(path),
                        str(reader.mapping(table)["timestamp"]),
                        tz,
                        reader.options(table),
                    )
                    for table in sorted(tables_of[path])
                }
            except Exception as exc:
                # Unreadable (or still being written): not marked as seen, looked at next tick.
                error = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
                context.log.warning(f"{path}: cannot read its timestamps: {error}")
                failures[path] = record_failure(failing.get(path), sha, error)
                _forget(current, previous, path)
                continue
            for table, table_days in days.items():
                for day in table_days:
                    if day not in existing:
                        outside.add(day)
                        continue
                    versions.add((path, sha))
                    changed.setdefault(table, set()).add(dt.date.fromisoformat(day))
        _alert_failures(context, alerts, failures, files.alert_after_failures)
        if outside:
            context.log.info(
                f"{len(outside)} day(s) outside the daily partitions (or not over yet) skipped: "
                f"{', '.join(sorted(outside)[:5])}"
            )
        cursor = dump_cursor(current, failures)
        if not changed or last_key is None:
            return dg.SensorResult(skip_reason="no new or changed file rows", cursor=cursor)
        last = dt.date.fromisoformat(last_key)
        done = {
            dep.name: materialised(context.instance, dep, existing, last)
            for dep in dependents
            if dep.table in changed
        }
        plan = plan_ranges(changed, dependents, done)
        requests = run_requests(plan, keys, version_digest(versions), len(versions))
        context.log.info(
            "; ".join(f"{r.start}…{r.end}: {', '.join(sorted(r.names))}" for r in plan)
        )
        return dg.SensorResult(run_requests=requests, cursor=cursor)

    return files_drop_sensor
