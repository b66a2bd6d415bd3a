"""Sensors, one module per concern: new files → ingest their days and redo the days they feed
(sensors/drop.py); failed runs and checks → alerts (sensors/alerts.py); score drift → retrain
a challenger, never a champion (sensors/drift.py). sensors/common.py holds the run tags and
the cursor-kept reading of check evaluations that alerts and drift share.

Every sensor keeps its own cursor, so a restarted daemon neither repeats nor skips work; run
keys make a repeated request a no-op on top of that.
"""

from __future__ import annotations

from collections.abc import Iterable

import dagster as dg

from assets.common import Partitions, partition_exists
from assets.keys import FamilyKeys, raw_keys
from jobs import Jobs
from lifecycle.settings import Settings
from sensors.alerts import (
    build_check_failure_alert_sensor,
    build_run_failure_alert_sensor,
    check_alert,
    metadata_details,
)
from sensors.common import (
    PARTITION_TAG,
    RANGE_END_TAG,
    RANGE_START_TAG,
    TRIGGER_TAG,
    CheckEvent,
    check_events,
    run_partition,
)
from sensors.drift import FAMILY_TAG, build_drift_retrain_sensor, month_of
from sensors.drop import build_files_drop_sensor

__all__ = [
    "FAMILY_TAG",
    "PARTITION_TAG",
    "RANGE_END_TAG",
    "RANGE_START_TAG",
    "TRIGGER_TAG",
    "CheckEvent",
    "build_check_failure_alert_sensor",
    "build_drift_retrain_sensor",
    "build_files_drop_sensor",
    "build_run_failure_alert_sensor",
    "build_sensors",
    "check_alert",
    "check_events",
    "metadata_details",
    "month_of",
    "partition_exists",
    "raw_keys",
    "run_partition",
]


def build_sensors(
    settings: Settings,
    partitions: Partitions,
    jobs: Jobs,
    drift_checks: Iterable[tuple[FamilyKeys, str]] = (),
) -> list[dg.SensorDefinition]:
    """Alerts always; a drift → retrain sensor per family with a daily prediction check."""
    sensors = [
        build_files_drop_sensor(settings, partitions, jobs),
        build_run_failure_alert_sensor(),
        build_check_failure_alert_sensor(),
    ]
    for family, check in drift_checks:
        sensors.append(build_drift_retrain_sensor(settings, partitions, jobs, family, check))
    return sensors
