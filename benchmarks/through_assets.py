"""One measured stage through the real assets, in its own process (``python -m
benchmarks.orchestration`` starts it): the project's code location built by ``build_defs``,
the project's instance (``jobs.cli._instance`` under the DAGSTER_HOME it is given) and the
project's run call (``jobs.cli._run``, what ``lifecycle demo`` uses), so whatever those set up
is what is measured. Nothing of an asset body is repeated here.
"""

from __future__ import annotations

import time
import warnings
from typing import Any

import pandas as pd

from assets.keys import CHURN_CHALLENGER, CHURN_DATASET, Selection
from benchmarks.run_profile import profile_run
from lifecycle.settings import Settings

FMT = "%Y-%m-%d"


def stage_request(settings: Settings, stage: str) -> dict[str, Any]:
    """The job, selection and partitions of a stage, as ``lifecycle demo`` runs it."""
    keys = Selection.of(settings)
    first = pd.Timestamp(settings.partitions.start_date)
    end = pd.Timestamp(settings.partitions.end_date)
    last = end - pd.Timedelta(days=1)
    matured = last - pd.Timedelta(days=settings.labels.horizon_days)
    if stage == "ingest":
        days = (first.strftime(FMT), last.strftime(FMT))
        return {"job": "daily_refresh", "keys": keys.ingest, "days": days}
    if stage == "labels":
        days = (first.strftime(FMT), matured.strftime(FMT))
        return {"job": "daily_refresh", "keys": keys.labels, "days": days}
    if stage == "churn":
        month = end.to_period("M").to_timestamp().strftime(FMT)
        return {
            "job": "monthly_training",
            "keys": [CHURN_DATASET, CHURN_CHALLENGER],
            "partition": month,
        }
    raise ValueError(f"unknown stage {stage!r}")


def run_stage(settings: Settings, stage: str) -> dict[str, Any]:
    """Run one stage in the instance of $DAGSTER_HOME; its wall clock and event-log profile."""
    from jobs.cli import _instance, _run

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from definitions import build_defs

        defs = build_defs(settings)
    instance = _instance()
    request = stage_request(settings, stage)
    job = request.pop("job")
    start = time.perf_counter()
    outcome = _run(defs, instance, job, f"bench {stage}", **request)
    wall = time.perf_counter() - start
    if not outcome.ok:
        raise RuntimeError(f"stage {stage} failed: {outcome.causes}")
    run = instance.get_runs(limit=1)[0]
    return {
        "status": outcome.status,
        "seconds": wall,
        **profile_run(instance, run.run_id, wall).breakdown(),
    }
