"""Jobs and schedules. Each scheduled run names its partition (yesterday, this month), never
"latest"; the time zone and times come from the settings file."""

import os

# implicit runs its own thread pool; a threaded OpenBLAS under it oversubscribes the CPU. This
# must be set before numpy loads, and this package is what the `lifecycle` command imports first.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import datetime as dt
from dataclasses import dataclass
from typing import TypeAlias

import dagster as dg
import pandas as pd
from dagster._core.definitions.unresolved_asset_job_definition import (
    UnresolvedAssetJobDefinition,
)

from assets.common import Partitions, partition_exists
from assets.keys import FAMILIES, Selection
from assets.promotion import WAITING, rollback_job_name
from lifecycle.settings import Settings

# Only a type annotation, named once: `dg.define_asset_job` returns this class and `dagster`
# exports no public name for it (`dg.JobDefinition` is what `Definitions` resolves it to, not
# what it is here); sensors, schedules and `Definitions` take it as it is.
AssetJob: TypeAlias = UnresolvedAssetJobDefinition


@dataclass(frozen=True)
class Jobs:
    """The jobs of one code location; their selections hold only the families that exist."""

    keys: Selection
    daily: AssetJob
    monthly_training: AssetJob
    promotion: AssetJob
    rollbacks: dict[str, AssetJob]

    def all(self) -> list[AssetJob]:
        return [self.daily, self.monthly_training, self.promotion, *self.rollbacks.values()]


def champion_op_name(model: str) -> str:
    return FAMILIES[model].champion.to_python_identifier()


def rollback_run_config(
    model: str, version: str, reason: str, override_reason: str | None = None
) -> dict:
    """Run config of a rollback job; the CLI and the README's one-liner use the same shape.

    ``reason`` is recorded in the alias history (the champion asset refuses an empty one);
    ``override_reason`` restores a version that was itself rolled back from."""
    config: dict[str, object] = {"version": version, "rollback": True, "reason": reason}
    if override_reason is not None:
        config |= {"override": True, "override_reason": override_reason}
    return {"ops": {champion_op_name(model): {"config": config}}}


def build_jobs(keys: Selection | None = None) -> Jobs:
    """Jobs for the families present in ``keys`` (default: both); every job selects only
    assets that exist, so a transactions-only or interactions-only source loads cleanly."""
    keys = keys or Selection()
    families = " and ".join(keys.families)
    labels = "; labels run for the day whose horizon has just matured" if keys.labels else ""
    return Jobs(
        keys=keys,
        daily=dg.define_asset_job(
            "daily_refresh",
            selection=dg.AssetSelection.assets(*keys.daily, *keys.labels),
            description=f"Ingest a day and score it ({families}){labels}.",
        ),
        monthly_training=dg.define_asset_job(
            "monthly_training",
            selection=dg.AssetSelection.assets(*keys.monthly),
            description="Candidate datasets and challengers (with their blocking checks) "
            f"for {families}.",
        ),
        promotion=dg.define_asset_job(
            "promote_champions",
            selection=dg.AssetSelection.assets(*keys.champions.values()),
            description="Promote each challenger whose blocking checks passed; a refused "
            "promotion fails its step and leaves the champion unchanged.",
        ),
        rollbacks={
            model: dg.define_asset_job(
                rollback_job_name(model),
                selection=dg.AssetSelection.assets(key),
                config={"ops": {key.to_python_identifier(): {"config": {"rollback": True}}}},
                description=f"Make an earlier {model} champion current again; set `version` "
                "and `reason` (and `override` + `override_reason` to restore a version that "
                "was itself rolled back from).",
            )
            for model, key in keys.champions.items()
        },
    )


def _cron(hhmm: str, day_of_month: str = "*") -> str:
    hour, minute = hhmm.split(":")
    return f"{int(minute)} {int(hour)} {day_of_month} * *"


def daily_run_requests(
    scheduled: dt.datetime,
    settings: Settings,
    partitions: Partitions,
    keys: Selection | None = None,
) -> list[dg.RunRequest]:
    """Yesterday's ingest/features/scores, and (with churn) the label day whose horizon ended
    yesterday."""
    keys = keys or Selection.of(settings)
    yesterday = pd.Timestamp(scheduled.date()) - pd.Timedelta(days=1)
    label_day = yesterday - pd.Timedelta(days=settings.labels.horizon_days)
    wanted = [(yesterday, keys.daily, "daily")]
    if keys.labels:
        wanted.append((label_day, keys.labels, "labels"))
    requests = []
    for day, selected, kind in wanted:
        key = day.strftime("%Y-%m-%d")
        if partition_exists(partitions.daily, key, scheduled):
            requests.append(
                dg.RunRequest(
                    run_key=f"{kind}-{key}", partition_key=key, asset_selection=list(selected)
                )
            )
    return requests


def build_schedules(settings: Settings, partitions: Partitions, jobs: Jobs) -> list:
    tz, times = settings.timezone, settings.schedules

    @dg.schedule(
        job=jobs.daily,
        cron_schedule=_cron(times.daily_time),
        execution_timezone=tz,
        name="daily_refresh_schedule",
        description="Every morning: yesterday's data through to scores and recommendations.",
    )
    def daily(context: dg.ScheduleEvaluationContext):
        requests = daily_run_requests(
            context.scheduled_execution_time, settings, partitions, jobs.keys
        )
        return requests or dg.SkipReason("no daily partition for yesterday")

    @dg.schedule(
        job=jobs.monthly_training,
        cron_schedule=_cron(times.monthly_time, str(times.train_day)),
        execution_timezone=tz,
        name="monthly_training_schedule",
        description="Train this month's challengers from the data before the month.",
    )
    def monthly(context: dg.ScheduleEvaluationContext):
        month = context.scheduled_execution_time.date().replace(day=1).isoformat()
        if not partition_exists(partitions.monthly, month, context.scheduled_execution_time):
            return dg.SkipReason(f"no monthly partition {month}")
        return dg.RunRequest(run_key=f"train-{month}", partition_key=month)

    @dg.schedule(
        job=jobs.promotion,
        cron_schedule=_cron(times.monthly_time, str(times.promote_day)),
        execution_timezone=tz,
        name="promotion_window_schedule",
        description="Mid-month review window closes: promote challengers whose checks passed.",
    )
    def promotion(context: dg.ScheduleEvaluationContext):
        stamp = context.scheduled_execution_time.date().isoformat()
        return dg.RunRequest(run_key=f"promote-{stamp}")

    if not settings.schedules.out_of_time_days():
        return [daily, monthly, promotion]

    @dg.schedule(
        job=jobs.promotion,
        cron_schedule=_cron(times.monthly_time),
        execution_timezone=tz,
        name="promotion_retry_schedule",
        description="Every day: if the last promotion waited for its out-of-time window (a day "
        "of it was not in yet), run it again; otherwise skip and say so.",
    )
    def retry(context: dg.ScheduleEvaluationContext):
        waiting = waiting_promotion(context.instance, jobs.promotion.name)
        if waiting is None:
            return dg.SkipReason("no promotion is waiting for its out-of-time window")
        context.log.info(f"re-running the promotion that was {waiting}")
        stamp = context.scheduled_execution_time.date().isoformat()
        return dg.RunRequest(run_key=f"promote-retry-{stamp}")

    return [daily, monthly, promotion, retry]


def waiting_promotion(instance: dg.DagsterInstance, job_name: str) -> str | None:
    """What the newest finished promotion run waited for (its log line), else None."""
    runs = instance.get_runs(filters=dg.RunsFilter(job_name=job_name), limit=1)
    if not runs or not runs[0].is_finished:
        return None
    said = [e.user_message for e in instance.all_logs(runs[0].run_id) if WAITING in e.user_message]
    return said[0][:200] if said else None
