"""Rows and markdown of the orchestration benchmark: every ratio is computed here from the two
measured seconds of the same run, never typed in."""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from typing import Any

from benchmarks.machine import describe

STAGE_NAMES = {
    "ingest": "raw → features, one ranged run",
    "labels": "labels, one ranged run (matured days)",
    "churn": "monthly churn challenger",
    "total": "raw → features → labels (both runs)",
}
BREAKDOWN = ("compute_s", "read_s", "write_s", "events_s", "outside_steps_s", "before_start_s")


def ratio(assets_s: float, direct_s: float) -> float:
    return assets_s / direct_s if direct_s > 0 else math.inf


def row(
    size: int, days: int, storage: str, stage: str, assets: dict[str, Any], direct: dict[str, Any]
) -> dict[str, Any]:
    """One stage: the run's wall clock (not the process start) against the direct stage."""
    return {
        "size": size,
        "days": days,
        "storage": storage,
        "stage": stage,
        "assets_s": assets["seconds"],
        "direct_s": direct["seconds"],
        "ratio": ratio(assets["seconds"], direct["seconds"]),
        "assets_rss_mb": assets["peak_rss_mb"],
        "direct_rss_mb": direct["peak_rss_mb"],
        "process_s": assets.get("process_s", math.nan),
        "planned_events": assets.get("planned_events", 0),
        "materializations": assets.get("materializations", 0),
        **{k: assets.get(k, math.nan) for k in BREAKDOWN},
        **({"train_rows": direct["train_rows"]} if "train_rows" in direct else {}),
    }


def total(
    size: int,
    days: int,
    storage: str,
    assets: dict[str, dict[str, Any]],
    direct: dict[str, dict[str, Any]],
    stages: Sequence[str],
) -> dict[str, Any]:
    """The stages summed (peaks: the largest of them)."""

    def summed(parts: dict[str, dict[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {
            "seconds": sum(parts[s]["seconds"] for s in stages),
            "peak_rss_mb": max(parts[s]["peak_rss_mb"] for s in stages),
        }
        for key in (*BREAKDOWN, "process_s", "planned_events", "materializations"):
            if all(key in parts[s] for s in stages):
                out[key] = sum(parts[s][key] for s in stages)
        return out

    return row(size, days, storage, "total", summed(assets), summed(direct))


def header(command: str, args: argparse.Namespace, extra: dict[str, str], wall: float) -> str:
    machine = describe(extra)
    lines = [
        "# Benchmarks: orchestration cost of the lifecycle",
        "",
        f"Command: `{command}` ({wall / 60:.1f} min in all).",
        "",
        "Machine: " + "; ".join(f"{k} {v}" for k, v in machine.items()) + ".",
    ]
    if args.note:
        lines += ["", args.note]
    return "\n".join(lines)


def _f(value: float, digits: int = 1) -> str:
    return "—" if value is None or not math.isfinite(value) else f"{value:,.{digits}f}"


def growth(rows: list[dict[str, Any]]) -> list[str]:
    """Seconds per million customer-days of the whole backfill, per size: flat means linear."""
    totals = [r for r in rows if r["stage"] == "total"]
    if len({r["size"] for r in totals}) < 2:
        return []
    out = [
        "",
        "## Growth with customers (raw → features → labels, both runs)",
        "",
        "| storage | customers | days | customer-days (M) | assets s per M | direct s per M | "
        "assets peak RSS MiB | direct peak RSS MiB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in sorted(totals, key=lambda r: (r["storage"], r["size"])):
        m = r["size"] * r["days"] / 1e6
        out.append(
            f"| {r['storage']} | {r['size']:,} | {r['days']} | {_f(m)} | "
            f"{_f(r['assets_s'] / m, 2)} | {_f(r['direct_s'] / m, 2)} | "
            f"{_f(r['assets_rss_mb'], 0)} | {_f(r['direct_rss_mb'], 0)} |"
        )
    return out


def markdown(rows: list[dict[str, Any]], demo: dict[str, Any] | None, head: str) -> str:
    """The header, the ratio table, the per-run breakdown and the demo row."""
    out = [
        head,
        "",
        "## Through the assets vs direct, same data, same run of the command",
        "",
        "| customers | days | storage | what | through the assets s | direct s | ratio | "
        "assets peak RSS MiB | direct peak RSS MiB |",
        "|---:|---:|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        what = STAGE_NAMES[r["stage"]]
        if "train_rows" in r:
            what += f" ({r['train_rows']:,} train rows)"
        out.append(
            f"| {r['size']:,} | {r['days']} | {r['storage']} | {what} | {_f(r['assets_s'])} | "
            f"{_f(r['direct_s'])} | {_f(r['ratio'], 2)}× | {_f(r['assets_rss_mb'], 0)} | "
            f"{_f(r['direct_rss_mb'], 0)} |"
        )
    out += growth(rows)
    out += [
        "",
        "## Where the seconds of each run go (from the run's own event log)",
        "",
        "| customers | storage | run | wall s | compute | read+typecheck | write | "
        "materialization events | outside steps | of which before RUN_START | planned events | "
        "materializations | process s |",
        "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        if r["stage"] == "total":
            continue
        cells = " | ".join(_f(r[k]) for k in BREAKDOWN)
        out.append(
            f"| {r['size']:,} | {r['storage']} | {r['stage']} | {_f(r['assets_s'])} | {cells} | "
            f"{r['planned_events']:,} | {r['materializations']:,} | {_f(r['process_s'])} |"
        )
    if demo is not None:
        status = "ok" if demo["exit"] == 0 else f"FAILED (exit {demo['exit']})"
        out += [
            "",
            "## Demo",
            "",
            "| what | wall s | peak RSS MiB | status |",
            "|---|---:|---:|---|",
            f"| `scripts/demo.sh` (installed venv) | {_f(demo['wall_s'])} | "
            f"{_f(demo['peak_rss_mb'], 0)} | {status} |",
        ]
    out += [
        "",
        "Ratio = through the assets / direct. Assets seconds are the Dagster run's wall clock "
        "(`jobs.cli._run`, as `lifecycle demo`), without the process start and code-location "
        "load (`process s`). Direct = the same lifecycle functions with no Dagster: generate_shop "
        "+ validate_rows with per-day quarantine shares for the benchmark's tables + daily_activity + "
        "customer_feature_chunks appended to a DuckDB file (raw → features, the table a script "
        "would keep too), the labels asset's SQL statement in that file (labels); with --churn, "
        "in memory instead (customer_features, churn_labels, churn training set + search + "
        "served refit). Peak RSS: each assets run is its own process (ru_maxrss); the direct stages "
        "share one process and reset its high-water mark before each stage. The features asset "
        "returns its rows lazily (chunks computed as the IO manager stages them), so its "
        "compute is counted under *write*; the labels are computed by the warehouse inside "
        "the write too.",
        "",
    ]
    return "\n".join(out)
