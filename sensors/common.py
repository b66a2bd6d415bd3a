"""What every sensor shares: run tags, a run's partition, and reading completed asset check
evaluations from the instance with a cursor (the alert and the drift sensors both do).

Not `instance.get_event_records(EventRecordsFilter(ASSET_CHECK_EVALUATION, after_cursor=N))`:
on the default (run-sharded) SQLite storage of `dagster dev` that raises for any integer
cursor, and it never sees runless evaluations there. The per-check execution table
(`get_asset_check_execution_history`) lives in the index shard (SQLite) or the one database
(PostgreSQL), holds run and runless evaluations alike, and has global row ids. A row is
created when a run *plans* the check and completed in place when it is evaluated, so ids are
in planning order: the cursor keeps, per check, a watermark below which every row is done,
plus the ids above it already handled while an earlier row was still running.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import dagster as dg

TRIGGER_TAG = "lifecycle/trigger"
PARTITION_TAG = "dagster/partition"
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"
PAGE = 200
IN_FLIGHT = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


def run_partition(tags: Mapping[str, str]) -> str | None:
    """A run's partition key, or ``start…end`` for a single-run range backfill."""
    if tags.get(PARTITION_TAG):
        return tags[PARTITION_TAG]
    if tags.get(RANGE_START_TAG) and tags.get(RANGE_END_TAG):
        return f"{tags[RANGE_START_TAG]}…{tags[RANGE_END_TAG]}"
    return None


@dataclass(frozen=True)
class CheckRow:
    """One row of a check's execution history, in public types only."""

    id: int
    run_id: str
    planned: bool
    partition: str | None
    event: dg.EventLogEntry | None


def check_history(
    instance: dg.DagsterInstance, key: dg.AssetCheckKey, limit: int, before: int | None = None
) -> list[CheckRow]:
    """Up to ``limit`` rows of one check with id < ``before``, newest first.

    Why internals: per-check execution rows are served only by the event log storage, and
    neither their record type nor its status enum is exported by ``dagster``; the public
    ``get_latest_asset_check_evaluation_record`` gives the newest evaluation only (no history,
    no planned rows), and event-record queries fail on run-sharded SQLite (module docstring).
    This is the one place that touches them; the rest of the sensors read ``CheckRow``.
    """
    from dagster._core.storage.asset_check_execution_record import (
        AssetCheckExecutionRecordStatus,
    )

    planned = AssetCheckExecutionRecordStatus.PLANNED
    page = instance.event_log_storage.get_asset_check_execution_history(
        key, limit=limit, cursor=before
    )
    return [
        CheckRow(row.id, row.run_id, row.status == planned, row.partition, row.event)
        for row in page
    ]


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
) -> list[CheckRow]:
    """Rows of one check with id > ``after``, oldest first."""
    rows: list[CheckRow] = []
    before = None
    while True:
        page = check_history(instance, key, PAGE, before)
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


def _event(row: CheckRow, runs: _Runs) -> CheckEvent | None:
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
            newest = check_history(instance, key, 1)
            state[name] = [newest[0].id if newest else 0, []]
            continue
        watermark, handled = state.get(name, [0, []])
        done, blocked, still_open = set(handled), False, []
        for row in _history_after(instance, key, watermark):
            if row.planned and runs.in_flight(row.run_id):
                blocked = True  # evaluated later: keep the watermark below it
                continue
            if row.id not in done and not row.planned:
                event = _event(row, runs)
                if event is not None:
                    events.append(event)
            if blocked:
                still_open.append(row.id)
            else:
                watermark = row.id
        state[name] = [watermark, still_open]
    return sorted(events, key=lambda e: e.id), json.dumps(state, separators=(",", ":"))
