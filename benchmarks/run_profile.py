"""Where a Dagster run's seconds go, read back from its own event log (no profiler needed).

Each step's time is split into in-step compute, warehouse reads and writes, and per-partition
event bookkeeping; what happens before the first step (planned-materialization events) is
counted apart. Moved here from the former ``jobs/bench.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import dagster as dg


@dataclass
class StepProfile:
    """One step's time from its events: what is not read, write or bookkeeping is compute."""

    step: str
    start: float
    last: float
    duration: float = 0.0
    read: float = 0.0  # IO manager loads (DuckDB reads)
    input_check: float = 0.0  # Dagster type checks of loaded inputs
    write: float = 0.0  # IO manager handle_output (DuckDB writes)
    events: float = 0.0  # one ASSET_MATERIALIZATION event per partition per output
    materializations: int = 0
    phase: str = ""

    @property
    def compute(self) -> float:
        """Asset body plus output type checks and metadata (no event separates them)."""
        return max(self.duration - self.read - self.input_check - self.write - self.events, 0.0)


@dataclass
class RunProfile:
    """A run's wall clock and its steps; ``planned`` events are written before RUN_START."""

    wall: float
    steps: dict[str, StepProfile] = field(default_factory=dict)
    planned: int = 0
    before_start: float = 0.0  # run creation (planned events) until RUN_START

    @property
    def in_steps(self) -> float:
        return sum(s.duration for s in self.steps.values())

    def breakdown(self) -> dict[str, Any]:
        """Seconds per kind of work, JSON-ready."""
        steps = self.steps.values()
        return {
            "wall_s": self.wall,
            "steps_s": self.in_steps,
            "compute_s": sum(s.compute for s in steps),
            "read_s": sum(s.read + s.input_check for s in steps),
            "write_s": sum(s.write for s in steps),
            "events_s": sum(s.events for s in steps),
            "outside_steps_s": max(self.wall - self.in_steps, 0.0),
            "before_start_s": self.before_start,
            "planned_events": self.planned,
            "materializations": sum(s.materializations for s in steps),
            "steps": {
                name: {"duration_s": s.duration, "compute_s": s.compute, "write_s": s.write}
                for name, s in self.steps.items()
            },
        }


def _on_step_event(step: StepProfile, kind: dg.DagsterEventType, gap: float) -> None:
    kinds = dg.DagsterEventType
    if kind == kinds.LOADED_INPUT:
        step.read += gap
    elif kind == kinds.STEP_INPUT:
        step.input_check += gap
    elif kind == kinds.STEP_OUTPUT:
        step.phase = "output"  # the gap before it is the body (and the output type check)
    elif kind == kinds.ASSET_MATERIALIZATION:
        step.materializations += 1
        if step.phase == "output":
            step.write += gap
            step.phase = "events"
        elif step.phase == "events":
            step.events += gap
    elif kind == kinds.HANDLED_OUTPUT:
        if step.phase == "events":
            step.events += gap
        elif step.phase == "output":
            step.write += gap
        step.phase = ""


def profile_run(instance: dg.DagsterInstance, run_id: str, wall: float) -> RunProfile:
    """The profile of one finished run from its stored events."""
    kinds = dg.DagsterEventType
    profile = RunProfile(wall=wall)
    first: float | None = None
    for record in instance.all_logs(run_id):
        event = record.dagster_event
        if event is None:
            continue
        now = record.timestamp
        first = now if first is None else first
        kind = event.event_type
        if kind == kinds.ASSET_MATERIALIZATION_PLANNED:
            profile.planned += 1
        elif kind == kinds.RUN_START:
            profile.before_start = now - first
        if kind == kinds.STEP_START and event.step_key:
            profile.steps[event.step_key] = StepProfile(event.step_key, start=now, last=now)
            continue
        step = profile.steps.get(event.step_key or "")
        if step is None:
            continue
        gap, step.last = now - step.last, now
        if kind == kinds.STEP_SUCCESS:
            data = event.event_specific_data
            step.duration = float(getattr(data, "duration_ms", 0.0) or 0.0) / 1000.0
        else:
            _on_step_event(step, kind, gap)
    return profile
