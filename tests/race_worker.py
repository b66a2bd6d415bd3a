"""A process that moves an alias with compare-and-set, for the cross-process race test. Kept
apart from the test module so a spawned child imports only the registry, not Dagster."""

from __future__ import annotations

import datetime as dt
from multiprocessing.synchronize import Barrier
from typing import Any

from lifecycle.registry import AliasConflict, ModelRegistry


def move_champion(
    database: str,
    artifact_root: str,
    target: str,
    event: str,
    expected: str,
    barrier: Barrier,
    results: Any,  # multiprocessing queue
) -> None:
    """Wait for the other process, then try to move the champion; report the outcome."""
    reg = ModelRegistry(database, artifact_root)
    barrier.wait()
    try:
        done = reg.set_alias(
            "churn",
            "champion",
            target,
            event,
            f"run-{event}",
            "race",
            dt.datetime.now(dt.UTC),
            expected=expected,
        )
        results.put(("won", target, done.from_version))
    except AliasConflict as lost:
        results.put(("lost", target, str(lost)))
