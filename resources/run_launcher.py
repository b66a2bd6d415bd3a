"""The local instance's run launcher: Dagster's default one plus a run-worker health check.

Run monitoring fails a run whose worker died only when the run launcher can tell that it died,
and Dagster's ``DefaultRunLauncher`` cannot (it has no health check): a run whose process was
killed (``kill -9``, an out-of-memory kill, ``dagster dev`` or the ``lifecycle`` command stopped
hard) stayed STARTED forever and, with ``max_concurrent_runs: 1``, blocked the queue behind it.

Every run worker of the local instance runs on this machine and records its process id in the
run's RUN_START event (the UI's, the daemon's and ``execute_in_process``'s alike). The worker
is alive while that process exists, is not a zombie and was started before the run began (a
recycled pid is another program). Only for an instance whose runs all execute on the machine
of its daemon: ``deploy/dagster.yaml`` uses the Kubernetes launcher's own check instead.
"""

from __future__ import annotations

import os
from pathlib import Path

from dagster import DagsterEventType, DagsterRun, DefaultRunLauncher

# Internal on purpose: run monitoring calls `check_run_worker_health` and reads these two types
# back; Dagster exports no public name for them (its own launchers import them the same way).
from dagster._core.launcher import CheckRunHealthResult, WorkerStatus

# Clock ticks and boot time are whole numbers: allow this much between the worker's start
# (as /proc reports it) and its RUN_START event.
START_SLACK_SECONDS = 2.0


def _proc_start(pid: int) -> tuple[str, float] | None:
    """(state, start time as epoch seconds) of ``pid`` from Linux's /proc; None elsewhere or
    when the process does not exist."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        boot = next(
            float(line.split()[1])
            for line in Path("/proc/stat").read_text().splitlines()
            if line.startswith("btime ")
        )
    except (OSError, StopIteration, ValueError):
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # the name may hold spaces and parentheses
    return fields[0], boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")


def worker_alive(pid: int, run_started_at: float) -> bool:
    """Whether the process ``pid`` that started a run at ``run_started_at`` still runs."""
    found = _proc_start(pid)
    if found is not None:
        state, started = found
        return state not in {"Z", "X"} and started <= run_started_at + START_SLACK_SECONDS
    try:
        os.kill(pid, 0)  # gone, or no /proc (macOS, hidden pids): existence only
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class LocalRunLauncher(DefaultRunLauncher):
    """``DefaultRunLauncher`` whose workers the run monitoring daemon can check (see above)."""

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: DagsterRun) -> CheckRunHealthResult:
        starts = self._instance.all_logs(run.run_id, of_type=DagsterEventType.RUN_START)
        event = starts[-1].dagster_event if starts else None
        if event is None or event.pid is None:
            # Nothing to check yet: the start timeout and max runtime still apply.
            return CheckRunHealthResult(WorkerStatus.RUNNING, "no worker pid recorded")
        if worker_alive(event.pid, starts[-1].timestamp):
            return CheckRunHealthResult(WorkerStatus.RUNNING, f"worker pid {event.pid} is running")
        return CheckRunHealthResult(
            WorkerStatus.FAILED,
            f"the run worker (pid {event.pid} on this machine) is gone: it was killed or "
            "crashed without reporting",
        )
