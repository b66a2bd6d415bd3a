"""Drift → retrain: a family's daily prediction check failed → train its challenger for the
month of the drifting day. Never a champion: promotion stays with the promotion job."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import dagster as dg
import pandas as pd

from assets.common import Partitions, partition_exists
from assets.keys import FamilyKeys
from jobs import Jobs
from lifecycle.settings import Settings
from sensors.common import IN_FLIGHT, PARTITION_TAG, TRIGGER_TAG, CheckEvent, check_events

FAMILY_TAG = "lifecycle/family"


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
    settings: Settings, partitions: Partitions, jobs: Jobs, family: FamilyKeys, check: str
) -> dg.SensorDefinition:
    """A family's daily prediction check failed → train its challenger for that month."""
    job, name = jobs.monthly_training, family.name
    drift_key = dg.AssetCheckKey(family.predictions, check)

    @dg.sensor(
        name=f"{name}_drift_retrain",
        job=job,
        minimum_interval_seconds=60,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"{drift_key.to_user_string()} failed → train a {name} challenger for "
        "the month of the drifting day. Only dataset + challenger (and its gates): a champion "
        "changes only through the promotion job.",
    )
    def drift_retrain(context: dg.SensorEvaluationContext):
        events, cursor = check_events(context.instance, [drift_key], context.cursor)
        if context.cursor is None:
            return dg.SensorResult(skip_reason="started: watching new evaluations", cursor=cursor)
        now = dt.datetime.now(ZoneInfo(settings.timezone))
        latest: dict[str, CheckEvent] = {}
        for event in events:
            ev = event.evaluation
            if ev.asset_key == family.predictions and ev.check_name == check and not ev.passed:
                latest[month_of(event.partition, now)] = event  # one run per month per tick
        requests = []
        for month, event in sorted(latest.items()):
            if not partition_exists(partitions.monthly, month, now):
                context.log.info(f"drift on {event.partition}: no monthly partition {month}")
                continue
            if _training_in_flight(context.instance, job.name, month, name):
                context.log.info(f"drift on {event.partition}: {month} training already queued")
                continue
            requests.append(
                dg.RunRequest(
                    run_key=f"drift-retrain-{month}-{event.id}",
                    partition_key=month,
                    asset_selection=family.monthly,
                    tags={
                        TRIGGER_TAG: check,
                        FAMILY_TAG: name,
                        "lifecycle/drift_partition": event.partition or "",
                        "lifecycle/drift_run_id": event.run_id or "",
                    },
                )
            )
        if not requests:
            return dg.SensorResult(skip_reason="no new score drift to act on", cursor=cursor)
        return dg.SensorResult(run_requests=requests, cursor=cursor)

    return drift_retrain


def _training_in_flight(
    instance: dg.DagsterInstance, job_name: str, month: str, family: str
) -> bool:
    """A queued or running training of this family's month: a second drift waits for it."""
    runs = instance.get_runs(
        filters=dg.RunsFilter(
            job_name=job_name,
            statuses=IN_FLIGHT,
            tags={PARTITION_TAG: month, FAMILY_TAG: family},
        ),
        limit=1,
    )
    return bool(runs)
