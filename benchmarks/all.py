"""Every target of the orchestration-cost issue re-measured by one command, in one report.

    python -m benchmarks.all --out /tmp/all.md        # ~40 min on this 2-core machine

Runs one after another, each in processes of its own (nothing else should run meanwhile):

1. ``benchmarks.orchestration --sizes 5000:365,10000,100000,1000000:90 --storage
   sqlite,postgres --demo``: raw → features → labels through the assets and direct, per size
   and instance storage, peak RSS per stage, and ``scripts/demo.sh``;
2. ``benchmarks.scale --users 1000000``: all-user top-10, the churn fit at 1M and 5M rows, one
   feature day directly and through the assets;
3. ``benchmarks.long_history --years 20 --rows 100000 --table transactions``: an orders export
   of twenty years from files to features.

The report starts with the targets table, whose "met" column is computed here from the numbers
of this run (:func:`targets`), then holds each command's own tables. ``--quick`` runs the same
commands at toy sizes (minutes), to try the command itself.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.machine import describe
from benchmarks.measure import progress

ROOT = Path(__file__).resolve().parent.parent
GB = 1e9 / 2**20  # the "6 GB" in MiB (bytes, not GiB)

FULL = {
    "sizes": "5000:365,10000,100000,1000000:90",
    "users": "1000000",
    "churn_rows": ["1000000", "5000000"],
    "years": "20",
    "history_rows": "100000",
}
QUICK = {
    "sizes": "2000:60,4000:40",
    "users": "20000",
    "churn_rows": ["50000"],
    "years": "2",
    "history_rows": "3000",
}


def _total(rows: list[dict[str, Any]], size: int, storage: str) -> dict[str, Any] | None:
    return next(
        (r for r in rows if (r["size"], r["storage"], r["stage"]) == (size, storage, "total")),
        None,
    )


def _part(scale: list[dict[str, Any]], part: str) -> list[dict[str, Any]]:
    return [r for r in scale if r["part"] == part]


def targets(
    orch: dict[str, Any], scale: list[dict[str, Any]], history: dict[str, Any], full: bool = True
) -> list[dict[str, Any]]:
    """The issue's targets against this run's numbers: (target, measured, met). A target whose
    measurement this run did not make is left out, not passed."""
    rows, out = orch["rows"], []
    smallest, largest = min(r["size"] for r in rows), max(r["size"] for r in rows)
    mid = 100_000 if full else largest

    def add(target: str, measured: str, met: bool) -> None:
        out.append({"target": target, "measured": measured, "met": met})

    demo = orch.get("demo")
    if demo:
        ok = demo["exit"] == 0
        add(
            "`scripts/demo.sh` ≤ 90 s after install",
            f"{demo['wall_s']:.1f} s, exit {demo['exit']}, peak {demo['peak_rss_mb']:,.0f} MiB",
            ok and demo["wall_s"] <= 90,
        )
    for size, bounds in (
        (smallest, {"sqlite": 5.0, "postgres": 5.0}),
        (mid, {"sqlite": 1.5, "postgres": 1.25}),
    ):
        for storage, bound in bounds.items():
            r = _total(rows, size, storage)
            if r is not None:
                add(
                    f"raw → features → labels, {size:,} × {r['days']} days, {storage}: ≤ {bound}×",
                    f"{r['ratio']:.2f}× ({r['assets_s']:.1f} s against {r['direct_s']:.1f} s)",
                    r["ratio"] <= bound,
                )
    for storage in ("sqlite", "postgres"):
        ingest = next(
            (
                x
                for x in rows
                if (x["size"], x["storage"], x["stage"]) == (largest, storage, "ingest")
            ),
            None,
        )
        if ingest is not None:
            add(
                f"{largest:,} × {ingest['days']} days backfill through the assets, {storage}: "
                "≤ 6 GB peak RSS",
                f"{ingest['assets_rss_mb']:,.0f} MiB (direct {ingest['direct_rss_mb']:,.0f} MiB; "
                f"its time {ingest['ratio']:.2f}× direct)",
                ingest["assets_rss_mb"] <= 6 * GB,
            )
    if history:
        add(
            f"{history['days']:,}-day history from files to features ≤ 2 min",
            f"{history['assets_s']:.1f} s ({history['status']}; direct {history['direct_s']:.1f} s)",
            history["status"] == "ok" and history["assets_s"] <= 120,
        )
    for part, bound, name in (
        ("features_assets", 1.5, "one feature day through the assets"),
        ("topk", 0.5, "all-user top-10 against implicit's recommend"),
    ):
        for r in _part(scale, part):
            ratio = r["platform_s"] / r["direct_s"]
            add(
                f"{name}: ≤ {bound}×",
                f"{ratio:.2f}× ({r['platform_s']:.1f} s against {r['direct_s']:.1f} s)",
                ratio <= bound,
            )
    churn = sorted(_part(scale, "churn"), key=lambda r: r["rows"] or 0)
    if churn:
        big = churn[-1]
        add(
            f"churn fit in bounded memory ({big['rows']:,} rows): below a plain DMatrix's peak",
            f"{big['platform_rss_mb']:,.0f} MiB against {big['direct_rss_mb']:,.0f} MiB",
            big["platform_rss_mb"] < big["direct_rss_mb"],
        )
    for storage in ("sqlite", "postgres"):
        per_m = {
            r["size"]: r["assets_s"] / (r["size"] * r["days"] / 1e6)
            for r in rows
            if r["storage"] == storage and r["stage"] == "total"
        }
        if mid in per_m and largest in per_m and largest != mid:
            growth = per_m[largest] / per_m[mid]
            add(
                f"cost linear in customers ({storage}): s per million customer-days at "
                f"{largest:,} ≤ 1.5× that at {mid:,}",
                " → ".join(f"{s:,}: {v:.2f}" for s, v in sorted(per_m.items()))
                + f" ({growth:.2f}×)",
                growth <= 1.5,
            )
    return out


def _run(args: list[str], log: Path) -> None:
    """One benchmark command, its output kept; a failed command stops the report."""
    progress("python -m " + " ".join(args))
    with log.open("w") as out:
        code = subprocess.call([sys.executable, "-m", *args], cwd=ROOT, stdout=out, stderr=out)
    if code != 0:
        raise SystemExit(f"{' '.join(args[:1])} exited {code}; its output: {log}")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.all",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", type=Path, required=True, help="the markdown report")
    p.add_argument("--quick", action="store_true", help="toy sizes: tries the command itself")
    p.add_argument("--note", default="", help="a line under the header")
    args = p.parse_args(argv)
    size = QUICK if args.quick else FULL
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-all-") as tmp:
        work = Path(tmp)
        orch_md, orch_json = work / "orchestration.md", work / "orchestration.json"
        _run(
            [
                "benchmarks.orchestration",
                "--sizes",
                size["sizes"],
                "--storage",
                "sqlite,postgres",
                "--demo",
                "--out",
                str(orch_md),
                "--json",
                str(orch_json),
            ],
            work / "orchestration.log",
        )
        scale_md, scale_json = work / "scale.md", work / "scale.json"
        _run(
            [
                "benchmarks.scale",
                "--users",
                size["users"],
                "--churn-rows",
                *size["churn_rows"],
                "--out",
                str(scale_md),
                "--json",
                str(scale_json),
            ],
            work / "scale.log",
        )
        history_json = work / "history.json"
        history_log = work / "history.log"
        _run(
            [
                "benchmarks.long_history",
                "--years",
                size["years"],
                "--rows",
                size["history_rows"],
                "--table",
                "transactions",
                "--json",
                str(history_json),
            ],
            history_log,
        )
        orch = json.loads(orch_json.read_text())
        scale = json.loads(scale_json.read_text())
        history = json.loads(history_json.read_text())
        met = targets(orch, scale, history, full=not args.quick)
        history_table = [ln for ln in history_log.read_text().splitlines() if ln.startswith("|")]
        orch_body = orch_md.read_text().split("\n## ", 1)[1]
        text = "\n".join(
            [
                "# Orchestration cost: every target in one run",
                "",
                f"Command: `python -m benchmarks.all {shlex.join(sys.argv[1:] if argv is None else argv)}`"
                f" ({(time.perf_counter() - started) / 60:.1f} min in all).",
                "",
                "Machine: "
                + "; ".join(f"{k} {v}" for k, v in describe(orch.get("machine")).items())
                + ".",
                *(["", args.note] if args.note else []),
                "",
                "## Targets",
                "",
                "| target | measured | met |",
                "|---|---|---|",
                *(
                    f"| {t['target']} | {t['measured']} | {'yes' if t['met'] else 'no'} |"
                    for t in met
                ),
                "",
                "## " + orch_body.strip(),
                "",
                "## A million users and customers (`benchmarks.scale`)",
                "",
                scale_md.read_text().strip(),
                "",
                "## A long daily history from files (`benchmarks.long_history --table transactions`)",
                "",
                *history_table,
                "",
            ]
        )
    args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
