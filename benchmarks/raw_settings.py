"""The settings a benchmark writes, as a dict: the demo's, with its own calendar, warehouse and
files source. One builder, so a benchmark's settings differ from the demo's only where it says.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


def warehouse_under(root: Path) -> dict[str, str]:
    """A warehouse and artifact root of its own under ``root``: no measured run shares state."""
    return {"database": str(root / "warehouse.duckdb"), "artifact_root": str(root / "artifacts")}


def demo_raw(start: str, end: str) -> dict[str, Any]:
    """The demo settings file with partitions ``[start, end)`` (ISO dates)."""
    from lifecycle.settings import DEMO_SETTINGS

    raw: dict[str, Any] = yaml.safe_load(DEMO_SETTINGS.read_text())
    raw["partitions"] = {"start_date": start, "end_date": end}
    # The measured families, as BENCHMARKS.md reports them; and no out-of-time gate, since a
    # benchmark keeps every day after its cut-off from the platform (its last month would wait).
    raw["families"] = ["churn", "recommender"]
    raw["schedules"]["out_of_time_gate"] = False
    return raw


def with_files(raw: dict[str, Any], root: Path, files: dict[str, Any]) -> dict[str, Any]:
    """``raw`` reading the ``source.files`` block ``files`` into a warehouse under ``root``."""
    raw["warehouse"] = warehouse_under(root)
    raw["source"] = {"kind": "files", "files": files}
    return raw
