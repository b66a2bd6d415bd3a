"""One job run as the terminal reports it: a status that tells a gate doing its job (blocked,
refused, waiting) from a failure, each failed step's root cause, and the failed gates."""

import contextlib
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import dagster as dg
from dagster_shared.error import SerializableErrorInfo

from assets.per_day import days_tag
from assets.promotion import OUT_OF_TIME, WAITING
from jobs.demo_story import gate_line
from resources.registry import Warehouse


@dataclass
class RunOutcome:
    """What the terminal needs from one run: its status, each failed step's root cause, and
    the blocking checks that failed (per asset), so a missing champion can be explained."""

    status: str
    causes: list[tuple[str, str]] = field(default_factory=list)
    failed_gates: dict[dg.AssetKey, list[str]] = field(default_factory=dict)
    # One line per failed blocking check: asset, version judged, check and its numbers.
    gate_details: list[str] = field(default_factory=list)
    # One line per out-of-time check that passed (a failed one is a blocked gate above).
    judged_after: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status != "FAILED"


def _run(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    job: str,
    what: str,
    *,
    keys: Sequence[dg.AssetKey] | None = None,
    partition: str | None = None,
    days: tuple[str, str] | None = None,
    run_config: dict | None = None,
) -> RunOutcome:
    tags = {}
    if days is not None:
        tags = {
            "dagster/asset_partition_range_start": days[0],
            "dagster/asset_partition_range_end": days[1],
            **days_tag(*days),
        }
    started = time.perf_counter()
    # The UI keeps every event and traceback; the terminal gets one line per run and, for a
    # failure, the root cause.
    quiet = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
    with _held_open(defs):
        result = defs.resolve_job_def(job).execute_in_process(
            instance=instance,
            partition_key=partition,
            tags=tags,
            asset_selection=list(keys) if keys else None,
            run_config={**(run_config or {}), **quiet},
            raise_on_error=False,
        )
    causes = [
        (event.step_key or "?", root_cause(event.step_failure_data.error))
        for event in result.all_events
        if event.is_step_failure and event.step_failure_data.error
    ]
    failed_gates: dict[dg.AssetKey, list[str]] = {}
    details: list[str] = []
    for evaluation in result.get_asset_check_evaluations():
        if not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.ERROR:
            failed_gates.setdefault(evaluation.asset_key, []).append(evaluation.check_name)
            details.append(gate_line(evaluation))
    status = _status(result.success, [c for _, c in causes])
    # A promotion waiting for its out-of-time window is a clean skip; say what it waits for.
    # Only a champion (promotion) step logs that: the run's log is read back only then (a
    # ranged ingest of 20 years holds ~22,000 events, 28 s to read back).
    promoted = any((e.step_key or "").endswith("_champion") for e in result.all_events)
    waiting = [
        entry.user_message
        for entry in (instance.all_logs(result.run_id) if promoted else [])
        if WAITING in entry.user_message
    ]
    causes += [("promotion", line) for line in waiting]
    if waiting and status == "ok":
        status = "waiting"
    after = [
        gate_line(e)
        for e in result.get_asset_check_evaluations()
        if e.check_name == OUT_OF_TIME and e.passed
    ]
    outcome = RunOutcome(status, causes, failed_gates, details, after)
    elapsed = time.perf_counter() - started
    print(f"  {what:<66} {outcome.status:>8}  {elapsed:6.1f} s  run {result.run_id[:8]}")
    # The hint names a failed check only when one did; a refusal's own reasons follow it.
    if outcome.status == "blocked":
        print(
            "    (a blocking check failed: the champion stays as it was; see the checks in the UI)"
        )
    elif outcome.status == "refused":
        print("    (refused: the champion stays as it was, for these reasons)")
    elif outcome.status == "waiting":
        print("    (nothing to do yet: the champion stays as it was until the window is in)")
    for step, cause in causes:
        print(f"    {step}: {cause}")
    return outcome


def _held_open(defs: dg.Definitions) -> contextlib.AbstractContextManager[None]:
    """The warehouse held open for the run (see :meth:`Warehouse.held_open`), if it has one."""
    warehouse = (defs.resources or {}).get("warehouse")
    return warehouse.held_open() if isinstance(warehouse, Warehouse) else contextlib.nullcontext()


def _status(success: bool, causes: Sequence[str]) -> str:
    """A gate doing its job is an outcome, not an error: `blocked` when a blocking check failed,
    `refused` when the registry's rules refused a promotion or rollback; anything else is a
    failure. Both are still non-zero exits for a command asked to change the champion."""
    if success:
        return "ok"
    if causes and all("refused to make" in c for c in causes):
        return "refused"
    if causes and all("blocking asset check" in c for c in causes):
        return "blocked"
    return "FAILED"


def _is_wrapper(error: SerializableErrorInfo) -> bool:
    """Dagster's own "Error occurred while executing op …" around the user's exception."""
    return (
        error.cause is not None
        and (error.cls_name or "").startswith("Dagster")
        and "Error occurred while" in error.message
    )


def _text(error: SerializableErrorInfo) -> str:
    """``Class: message`` on one line, without the module path Dagster puts in front."""
    name, message = error.cls_name or "Error", error.message.strip()
    qualified = re.match(r"^(?:[\w.]+\.)?" + re.escape(name) + r": ", message)
    if qualified:
        message = message[qualified.end() :]
    return f"{name}: {' '.join(message.split())}"


def root_cause(error: SerializableErrorInfo, limit: int = 400) -> str:
    """The user's exception as one line: the outermost one below Dagster's wrappers, since code
    that re-raises adds context (``UnreadableFileError: cannot read tx.csv: …`` around a bare
    ``ParserError``); the innermost is appended when the outer message does not contain it."""
    while _is_wrapper(error) and error.cause is not None:
        error = error.cause
    line = _text(error)
    innermost = error
    while innermost.cause is not None:
        innermost = innermost.cause
    if innermost is not error:
        inner = _text(innermost)
        if inner.split(": ", 1)[-1] not in line:
            line = f"{line} (caused by {inner})"
    return line if len(line) <= limit else line[: limit - 1] + "…"
