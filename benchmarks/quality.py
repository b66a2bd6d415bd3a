"""``python -m benchmarks.quality``: is the platform at least as good as a plain script?

For each data set: write the export files and a settings file into a temp folder, run the whole
lifecycle through the real assets (``lifecycle demo`` in a subprocess with its own
``LIFECYCLE_SETTINGS`` and ``DAGSTER_HOME``), run the direct reference on the same files, and
judge both at the platform's last scored day D on what happened after D (rows the platform never
saw): churn ROC-AUC on the same customers with each side's coverage and a recency-only floor,
precision@10 on each user's next 5 new items with a popularity floor, and training time.

    python -m benchmarks.quality --data both --customers 5000 --out data/quality
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from benchmarks.data import Bench, prepare_realistic, prepare_synthetic
from benchmarks.evaluate import evaluate_churn, evaluate_recommender, markdown
from benchmarks.reference import churn_reference, read_export, recommender_reference

ROOT = Path(__file__).resolve().parent.parent


def run_platform(bench: Bench, months: int, fast_events: bool, timeout: int) -> dict[str, Any]:
    """``lifecycle demo`` in its own process, instance and warehouse; its output is kept."""
    home = bench.workdir / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {
        **os.environ,
        "LIFECYCLE_SETTINGS": str(bench.settings),
        "DAGSTER_HOME": str(home),
        "OPENBLAS_NUM_THREADS": "1",
        "PYTHONUNBUFFERED": "1",  # the log shows each run as it finishes
    }
    if fast_events:
        # One planned event per asset instead of one per day (see DESIGN.md, Storage).
        env["DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS"] = "true"
    command = [sys.executable, "-m", "jobs.cli", "demo", "--months", str(months)]
    log = bench.workdir / "platform.log"
    print(f"[{bench.name}] platform output streams to {log}", flush=True)
    started = time.perf_counter()
    with log.open("w") as sink:
        try:
            code = subprocess.run(
                command,
                check=False,
                cwd=ROOT,
                env=env,
                stdout=sink,
                stderr=subprocess.STDOUT,
                timeout=timeout,
            ).returncode
        except subprocess.TimeoutExpired:
            code = -1
            sink.write(f"\nTIMEOUT after {timeout} s\n")
    if code == 0:
        # The demo scores D before its last monthly promotion; re-score D with the champion of
        # the month after D, which (like the reference) has learned from every label known at
        # the end of D. Both sides then use exactly the information available on day D.
        rescore = [
            sys.executable,
            "-m",
            "dagster",
            "asset",
            "materialize",
            "-m",
            "definitions",
            "--select",
            "predictions/churn_scores,predictions/recommendations",
            "--partition",
            str(bench.as_of.date()),
        ]
        with log.open("a") as sink:
            sink.write(f"\n$ {' '.join(rescore)}\n")
            sink.flush()
            code = subprocess.run(
                rescore, check=False, cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT
            ).returncode
    output = log.read_text()
    return {
        "command": " ".join(command),
        "returncode": code,
        "seconds": round(time.perf_counter() - started, 1),
        "output": output,
    }


def _predictions(database: Path, table: str, day: pd.Timestamp) -> pd.DataFrame | None:
    """One day of a prediction table, or None when the platform never wrote it."""
    if not database.exists():
        return None
    with duckdb.connect(str(database), read_only=True) as con:
        found = con.execute(
            "select count(*) from information_schema.tables "
            "where table_schema = 'predictions' and table_name = ?",
            [table],
        ).fetchone()
        if not found or not found[0]:
            return None
        return con.execute(
            f"select * from predictions.{table} where cast(as_of_date as date) = ?",
            [day.date()],
        ).df()


def challenger_seconds(home: Path) -> dict[str, list[float]]:
    """Step durations of each challenger step in the instance's runs, oldest run first."""
    import dagster as dg

    out: dict[str, list[float]] = {"churn": [], "recommender": []}
    with dg.DagsterInstance.from_config(str(home)) as instance:
        for run in reversed(list(instance.get_runs())):  # newest first → oldest first
            for step in instance.get_run_step_stats(run.run_id):
                for family, seconds in out.items():
                    if f"{family}_challenger" in step.step_key and step.end_time:
                        seconds.append(round(step.end_time - (step.start_time or 0), 2))
    return out


def run_one(
    name: str, workdir: Path, customers: int | None, months: int, fast: bool, timeout: int
) -> dict[str, Any]:
    prepare = prepare_synthetic if name == "synthetic" else prepare_realistic
    print(f"[{name}] writing data and settings to {workdir}", flush=True)
    bench = prepare(workdir, customers)
    print(f"[{name}] running `lifecycle demo --months {months}` …", flush=True)
    platform = run_platform(bench, months, fast, timeout)
    print(f"[{name}] platform exit {platform['returncode']} in {platform['seconds']} s", flush=True)

    def read(table: str, which: dict[str, str]) -> pd.DataFrame:
        unit = bench.epoch_unit[table]
        return read_export([which[table]], bench.columns[table], bench.timezone, unit)

    tx, events = read("transactions", bench.history), read("interactions", bench.history)
    tx_all = pd.concat([tx, read("transactions", bench.future)], ignore_index=True)
    events_after = read("interactions", bench.future)
    print(f"[{name}] reference fits …", flush=True)
    ref_churn = churn_reference(tx, bench.as_of, bench.horizon)
    ref_rec = recommender_reference(events, bench.as_of)

    database = Path(yaml_value(bench.settings, "warehouse", "database"))
    churn = evaluate_churn(
        tx_all,
        bench.as_of,
        bench.horizon,
        _predictions(database, "churn_scores", bench.as_of),
        ref_churn,
    )
    rec = evaluate_recommender(
        events,
        events_after,
        bench.as_of,
        _predictions(database, "recommendations", bench.as_of),
        ref_rec,
    )
    seconds = challenger_seconds(bench.workdir / "dagster_home")
    return {
        "data": name,
        "as_of": str(bench.as_of.date()),
        "horizon_days": bench.horizon,
        "sizes": bench.sizes,
        "workdir": str(workdir),
        "platform_run": {k: v for k, v in platform.items() if k != "output"},
        "platform_steps": step_lines(platform["output"], platform["returncode"]),
        "churn": churn,
        "recommender": rec,
        "training_seconds": {
            "platform_churn_challenger": seconds["churn"],
            "platform_recommender_challenger": seconds["recommender"],
            "reference_churn": round(ref_churn.fit_seconds, 2),
            "reference_recommender": round(ref_rec.fit_seconds, 2),
        },
        "reference": {
            "churn_rounds": ref_churn.rounds,
            "churn_snapshots": ref_churn.snapshots,
            "churn_train_rows": ref_churn.train_rows,
            "churn_valid_auc": round(ref_churn.valid_auc, 4),
            "als_chosen": ref_rec.chosen,
            "als_selection": ref_rec.selection,
        },
        "platform_log": platform["output"],
    }


def step_lines(output: str, returncode: int) -> list[str]:
    """The demo's line per run (with causes), any "No … champion" line, and for a crash the
    last lines of the traceback."""
    lines = [line.rstrip() for line in output.splitlines()]
    steps: list[str] = []
    if "Running the lifecycle:" in lines:
        for line in lines[lines.index("Running the lifecycle:") + 1 :]:
            if not line.startswith("  "):
                break
            steps.append(line)
    steps += [line for line in lines if line.startswith("No ") and "champion" in line]
    if returncode not in (0, 1) or not steps:
        steps += [line for line in lines[-5:] if line.strip()]
    return steps


def yaml_value(path: Path, *keys: str) -> Any:
    import yaml

    value: Any = yaml.safe_load(path.read_text())
    for key in keys:
        value = value[key]
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.quality", description=__doc__)
    parser.add_argument("--data", choices=["synthetic", "realistic", "both"], default="both")
    parser.add_argument(
        "--customers", type=int, help="customers (default: demo's 5,000 / realistic 20,000)"
    )
    parser.add_argument("--months", type=int, default=4, help="monthly challengers (demo)")
    parser.add_argument("--out", type=Path, default=ROOT / "data" / "quality")
    parser.add_argument("--keep", action="store_true", help="keep the temp folders")
    parser.add_argument(
        "--fast-events",
        action="store_true",
        help="one planned Dagster event per asset per range run (faster on SQLite)",
    )
    parser.add_argument("--timeout", type=int, default=3600, help="seconds for the platform run")
    args = parser.parse_args(argv)
    names = ["synthetic", "realistic"] if args.data == "both" else [args.data]
    args.out.mkdir(parents=True, exist_ok=True)
    results = []
    for name in names:
        workdir = Path(tempfile.mkdtemp(prefix=f"quality-{name}-"))
        try:
            result = run_one(
                name, workdir, args.customers, args.months, args.fast_events, args.timeout
            )
        finally:
            if not args.keep:
                shutil.rmtree(workdir, ignore_errors=True)
        (args.out / f"{name}-platform.log").write_text(result.pop("platform_log"))
        table = markdown(result)
        print("\n" + table, flush=True)
        (args.out / f"{name}.md").write_text(table + "\n")
        (args.out / f"{name}.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
        results.append(result)
    print(f"\nwritten to {args.out}")
    failed = [r["data"] for r in results if r["platform_run"]["returncode"] != 0]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
