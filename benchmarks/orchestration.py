"""Orchestration tax: a ranged raw → features → labels backfill through the real assets vs the
direct computation with the same lifecycle functions, per size and instance storage.

    python -m benchmarks.orchestration --sizes 10000,100000 --storage sqlite,postgres \\
        --out BENCHMARKS.md [--churn] [--demo] [--days 273] [--repeats 1]

Every measured path runs in a fresh subprocess (so peaks do not mix): each assets stage is one
Dagster run in a fresh warehouse and a fresh DAGSTER_HOME (PostgreSQL: a dedicated database,
dropped and created again), its peak RSS the child's ru_maxrss; the direct path is one
subprocess whose stages each reset and read the high-water mark. Per size the paths run
interleaved (order flipped each repetition), best of N; ratios are assets / direct of the
same run of this command. Absolute seconds move with the machine's load; read the ratios.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from benchmarks import report
from benchmarks.instances import STORAGES, Postgres, write_home
from benchmarks.measure import progress
from benchmarks.raw_settings import warehouse_under
from lifecycle.settings import Settings, load_settings, parse_settings

ROOT = Path(__file__).resolve().parent.parent
DIRECT_FOR = {
    "ingest": ("generate", "validate", "features"),
    "labels": ("labels",),
    "churn": ("churn",),
}


def bench_settings(
    base: Settings, size: int, days: int, root: Path, tables: Sequence[str]
) -> dict[str, Any]:
    """``base`` with ``size`` customers over the last ``days`` days of its range, only
    ``tables``, no planted incident, warehouse and artifacts under ``root`` (the raw asset and
    the direct path then generate exactly the same shop)."""
    raw = base.model_dump(mode="json")
    end = pd.Timestamp(raw["partitions"]["end_date"])
    raw["partitions"]["start_date"] = (end - pd.Timedelta(days=days)).strftime("%Y-%m-%d")
    raw["source"]["synthetic"].update(n_customers=size, incident=None, tables=list(tables))
    raw["warehouse"] = {**raw["warehouse"], **warehouse_under(root)}
    parse_settings(raw, "benchmark settings")  # fail here, not in a subprocess
    return raw


def _spawn(args: list[str], env: dict[str, str], result: Path) -> dict[str, Any]:
    """Run a worker; its JSON result plus the child's own peak RSS (wait4 on that pid)."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.orchestration", *args, "--result", str(result)],
        cwd=ROOT,
        env={**os.environ, "OPENBLAS_NUM_THREADS": "1", **env},
    )
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark worker {' '.join(args[:4])} exited {proc.returncode}")
    out = json.loads(result.read_text())
    out["process_s"] = time.perf_counter() - start
    out["peak_rss_mb"] = usage.ru_maxrss / 1024  # KiB on Linux
    return out


def measure_assets(
    raw: dict[str, Any], storage: str, stages: Sequence[str], pg: Postgres, work: Path
) -> dict[str, dict[str, Any]]:
    """Each stage one run in its own process, sharing one fresh warehouse and instance."""
    root = Path(tempfile.mkdtemp(prefix=f"assets-{storage}-", dir=work))
    raw = {**raw, "warehouse": {**raw["warehouse"], **warehouse_under(root)}}
    settings_file = root / "settings.json"
    settings_file.write_text(json.dumps(raw))
    home = root / "dagster_home"
    write_home(home, storage)
    env = {"DAGSTER_HOME": str(home)}
    if storage == "postgres":
        pg.recreate()
        env.update(pg.env())
    out = {}
    for stage in stages:
        args = ["--worker", "assets", "--stage", stage, "--settings-file", str(settings_file)]
        out[stage] = _spawn(args, env, root / f"{stage}.json")
        progress(
            f"  assets {storage} {stage}: {out[stage]['seconds']:.1f} s, peak {out[stage]['peak_rss_mb']:.0f} MiB"
        )
    return out


def measure_direct(
    raw: dict[str, Any], stages: Sequence[str], work: Path
) -> dict[str, dict[str, Any]]:
    """The direct path in one process; per stage seconds and its own peak RSS."""
    root = Path(tempfile.mkdtemp(prefix="direct-", dir=work))
    settings_file = root / "settings.json"
    settings_file.write_text(json.dumps(raw))
    args = [
        "--worker",
        "direct",
        "--stage",
        ",".join(stages),
        "--settings-file",
        str(settings_file),
    ]
    done = _spawn(args, {}, root / "direct.json")
    out = {}
    for stage in stages:
        parts = [done["stages"][name] for name in DIRECT_FOR[stage]]
        out[stage] = {
            "seconds": sum(p["seconds"] for p in parts),
            "peak_rss_mb": max(p["peak_rss_mb"] for p in parts),
            "parts": {name: done["stages"][name] for name in DIRECT_FOR[stage]},
            **({"train_rows": done["train_rows"]} if stage == "churn" else {}),
        }
    progress("  direct: " + ", ".join(f"{s} {out[s]['seconds']:.1f} s" for s in stages))
    return out


def _best(a: dict[str, Any] | None, b: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Keep the faster measurement of the whole path (its stages stay together)."""
    if a is None:
        return b
    return b if sum(v["seconds"] for v in b.values()) < sum(v["seconds"] for v in a.values()) else a


def measure_size(
    base: Settings, size: int, args: argparse.Namespace, pg: Postgres, work: Path
) -> list[dict[str, Any]]:
    """All storages and the direct path at one size, interleaved, best of N."""
    stages = ["ingest", "labels", *(["churn"] if args.churn else [])]
    days = args.days_for.get(size, args.days)
    raw = bench_settings(base, size, days, work, args.tables)
    paths = [("direct", None), *(("assets", s) for s in args.storage)]
    best: dict[str, Any] = {}
    for rep in range(args.repeats):
        for what, storage in paths if rep % 2 == 0 else paths[::-1]:
            progress(
                f"{size} customers x {days} days, repetition {rep + 1}: {what} {storage or ''}"
            )
            key = storage or "direct"
            if what == "direct":
                best[key] = _best(best.get(key), measure_direct(raw, stages, work))
            else:
                best[key] = _best(best.get(key), measure_assets(raw, storage, stages, pg, work))
    rows = []
    for storage in args.storage:
        for stage in stages:
            rows.append(
                report.row(size, days, storage, stage, best[storage][stage], best["direct"][stage])
            )
        rows.append(
            report.total(size, days, storage, best[storage], best["direct"], ("ingest", "labels"))
        )
    return rows


def demo_row(work: Path) -> dict[str, Any]:
    """`scripts/demo.sh` wall and peak RSS, in a fresh DAGSTER_HOME and warehouse."""
    root = Path(tempfile.mkdtemp(prefix="demo-", dir=work))
    raw = load_settings().model_dump(mode="json")
    raw["warehouse"] = warehouse_under(root)
    settings_file = root / "settings.json"
    settings_file.write_text(json.dumps(raw))
    env = {
        **os.environ,
        "DAGSTER_HOME": str(root / "dagster_home"),
        "LIFECYCLE_SETTINGS": str(settings_file),
    }
    write_home(root / "dagster_home", "sqlite")
    progress("scripts/demo.sh")
    start = time.perf_counter()
    proc = subprocess.Popen(
        ["bash", "scripts/demo.sh"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL
    )
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    return {
        "wall_s": wall,
        "exit": os.waitstatus_to_exitcode(status),
        "peak_rss_mb": usage.ru_maxrss / 1024,
    }


def worker(args: argparse.Namespace) -> int:
    """One measured path in this process; writes its JSON result."""
    settings = parse_settings(
        json.loads(Path(args.settings_file).read_text()), "benchmark settings"
    )
    result: dict[str, Any]
    if args.worker == "assets":
        from benchmarks.through_assets import run_stage

        result = run_stage(settings, args.stage)
    else:
        from benchmarks import direct

        stages = args.stage.split(",")
        timer = direct.Stages()
        churn = "churn" in stages
        # Written to a DuckDB file like the assets' warehouse (features a chunk of customers at
        # a time, labels by the same SQL), unless the in-memory churn stage needs the frames.
        store = None if churn else Path(args.result).with_suffix(".duckdb")
        _, rows = direct.run_stages(
            settings, timer, labels="labels" in stages, churn=churn, store=store
        )
        result = {} if rows is None else {"train_rows": rows}
        result["stages"] = {
            n: {"seconds": s.seconds, "peak_rss_mb": s.peak_rss_mb} for n, s in timer.done.items()
        }
    Path(args.result).write_text(json.dumps(result, default=str))
    return 0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.orchestration",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--sizes",
        default="10000,100000,1000000:90",
        help="customers, comma-separated; SIZE:DAYS gives that size its own --days",
    )
    p.add_argument(
        "--storage", default="sqlite,postgres", help=f"instance storages: {','.join(STORAGES)}"
    )
    p.add_argument(
        "--days",
        type=int,
        default=273,
        help="days of the backfill (ending at the settings' end_date)",
    )
    p.add_argument(
        "--tables",
        default="transactions",
        help="synthetic tables (comma-separated): raw → features → labels reads transactions; "
        "add interactions to also ingest the clickstream",
    )
    p.add_argument("--repeats", type=int, default=1, help="N: best of N per path")
    p.add_argument("--churn", action="store_true", help="also month M's churn challenger")
    p.add_argument("--demo", action="store_true", help="also time scripts/demo.sh")
    p.add_argument(
        "--settings", help="base settings file (default: $LIFECYCLE_SETTINGS or the demo)"
    )
    p.add_argument("--out", type=Path, help="write the markdown report here")
    p.add_argument("--json", type=Path, dest="json_path", help="also write the raw numbers here")
    p.add_argument("--note", default="", help="a line under the header (who measured, load)")
    p.add_argument("--pg-host", default="127.0.0.1")
    p.add_argument("--pg-port", type=int, default=5432)
    p.add_argument("--pg-user", default="postgres")
    p.add_argument(
        "--pg-db", default="lifecycle_bench", help="dropped and re-created each measurement"
    )
    p.add_argument("--worker", choices=["assets", "direct"], help=argparse.SUPPRESS)
    p.add_argument("--stage", help=argparse.SUPPRESS)
    p.add_argument("--settings-file", help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker is None:
        sized = [s.split(":") for s in str(args.sizes).split(",") if s]
        args.sizes = [int(s[0]) for s in sized]
        args.days_for = {int(s[0]): int(s[1]) for s in sized if len(s) == 2}
        args.storage = [s for s in str(args.storage).split(",") if s]
        args.tables = [t for t in str(args.tables).split(",") if t]
        unknown = set(args.storage) - set(STORAGES)
        if unknown or not args.sizes or args.repeats < 1 or args.days < 2:
            p.error(f"bad --storage {sorted(unknown)} / --sizes / --repeats / --days")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        return worker(args)
    base = load_settings(args.settings)
    pg = Postgres(args.pg_host, args.pg_port, args.pg_user, args.pg_db)
    extra = {"postgres server": pg.recreate()} if "postgres" in args.storage else {}
    started = time.perf_counter()
    rows: list[dict[str, Any]] = []
    demo: dict[str, Any] | None = None
    with tempfile.TemporaryDirectory(prefix="orchestration-bench-") as tmp:
        for size in args.sizes:
            rows += measure_size(base, size, args, pg, Path(tmp))
        if args.demo:
            demo = demo_row(Path(tmp))
    command = "python -m benchmarks.orchestration " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    text = report.markdown(
        rows, demo, report.header(command, args, extra, time.perf_counter() - started)
    )
    print("\n" + text)
    if args.out:
        args.out.write_text(text)
    if args.json_path:
        numbers = {"rows": rows, "demo": demo, "machine": extra}
        args.json_path.write_text(json.dumps(numbers, indent=2, default=str))
    failed = demo is not None and demo["exit"] != 0
    return 1 if failed or any(not math.isfinite(r["ratio"]) for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
