"""Who measured: the machine and the software versions, for the report's header."""

from __future__ import annotations

import os
import platform
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path


def _first(path: str, prefix: str) -> str:
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(prefix):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "?"


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "?"


def describe(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Cores, RAM, CPU model, OS, Python and the library versions that matter here."""
    mem = _first("/proc/meminfo", "MemTotal")
    ram = f"{int(mem.split()[0]) / 1024**2:.1f} GiB" if mem != "?" else "?"
    return {
        "cpu": _first("/proc/cpuinfo", "model name")
        if platform.system() == "Linux"
        else platform.processor(),
        "cores": str(os.cpu_count()),
        "ram": ram,
        "os": platform.platform(),
        "python": platform.python_version(),
        "dagster": _version("dagster"),
        "dagster-postgres": _version("dagster-postgres"),
        "duckdb": _version("duckdb"),
        "pandas": _version("pandas"),
        "xgboost": _version("xgboost"),
        **(extra or {}),
    }
