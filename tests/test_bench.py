"""The benchmark harness (``python -m benchmarks.orchestration``) at a tiny size: real Dagster
runs of the real definitions in subprocesses, a real direct path, real instances. It checks the
tables' shape and that every ratio comes from the two measured numbers; never speed itself."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path
from typing import Any

import pytest

from benchmarks import report
from benchmarks.orchestration import main
from jobs.cli import main as cli_main
from tests.conftest import small_settings

TINY = ["--sizes", "150", "--days", "18", "--repeats", "1"]


def _settings_file(tmp_path: Path) -> Path:
    path = tmp_path / "base.json"
    path.write_text(json.dumps(small_settings(tmp_path).model_dump(mode="json")))
    return path


def _run(tmp_path: Path, storage: str, extra: list[str] | None = None) -> tuple[list, str]:
    out, raw = tmp_path / "BENCH.md", tmp_path / "bench.json"
    argv = [*TINY, "--storage", storage, "--settings", str(_settings_file(tmp_path))]
    assert main([*argv, "--out", str(out), "--json", str(raw), *(extra or [])]) == 0
    return json.loads(raw.read_text())["rows"], out.read_text()


def _check_rows(rows: list[dict[str, Any]], storage: str) -> None:
    assert [(r["storage"], r["stage"]) for r in rows] == [
        (storage, "ingest"),
        (storage, "labels"),
        (storage, "total"),
    ]
    for r in rows:
        assert r["assets_s"] > 0 and r["direct_s"] > 0, r
        # Measured, not typed in: the ratio is exactly the quotient of the measured seconds.
        assert r["ratio"] == pytest.approx(r["assets_s"] / r["direct_s"], rel=1e-12)
        assert r["assets_rss_mb"] > 50 and r["direct_rss_mb"] > 50, r
        assert r["planned_events"] > 0 and r["materializations"] > 0, r
    ingest, labels, total = rows
    assert total["assets_s"] == pytest.approx(ingest["assets_s"] + labels["assets_s"])
    assert total["direct_s"] == pytest.approx(ingest["direct_s"] + labels["direct_s"])
    assert ingest["process_s"] > ingest["assets_s"]  # the run is timed inside its process


def _check_markdown(text: str, rows: list[dict[str, Any]]) -> None:
    assert text.startswith("# Benchmarks")
    assert "cores 2" in text or "cores " in text
    for needle in ("cpu ", "ram ", "python ", "dagster "):
        assert needle in text
    lines = text.splitlines()
    main_table = lines.index(
        "| customers | days | storage | what | through the assets s | "
        "direct s | ratio | assets peak RSS MiB | direct peak RSS MiB |"
    )
    body = lines[main_table + 2 : main_table + 2 + len(rows)]
    assert all(line.startswith("| 150 | 18 |") for line in body)
    for line, r in zip(body, rows, strict=True):
        assert line.split(" | ")[6] == f"{r['ratio']:.2f}×"
    breakdown = [line for line in lines if line.startswith("| 150 | ") and " | 18 | " not in line]
    assert len(breakdown) == 2  # one line per run: ingest, labels


def test_orchestration_bench_sqlite_reports_measured_ratios(tmp_path: Path) -> None:
    rows, text = _run(tmp_path, "sqlite")
    _check_rows(rows, "sqlite")
    _check_markdown(text, rows)


@pytest.mark.postgres
def test_orchestration_bench_postgres_instance(tmp_path: Path) -> None:
    """The PostgreSQL path writes its runs to a dedicated database it re-creates."""
    import psycopg2

    db = "lifecycle_bench_pytest"
    rows, _ = _run(tmp_path, "postgres", ["--pg-db", db])
    _check_rows(rows, "postgres")
    conn = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname=db)
    try:
        with conn.cursor() as cur:
            cur.execute("select count(*) from runs")
            assert cur.fetchone()[0] == 2  # the ranged raw → features run and the labels run
    finally:
        conn.close()


def test_report_ratio_follows_the_numbers() -> None:
    direct = {"seconds": 2.0, "peak_rss_mb": 100.0}
    for assets_s in (3.0, 7.5):
        r = report.row(10, 5, "sqlite", "ingest", {"seconds": assets_s, "peak_rss_mb": 1.0}, direct)
        assert r["ratio"] == assets_s / 2.0
    zero = report.row(
        10,
        5,
        "sqlite",
        "ingest",
        {"seconds": 1.0, "peak_rss_mb": 1.0},
        {"seconds": 0.0, "peak_rss_mb": 1.0},
    )
    assert math.isinf(zero["ratio"])


def test_benchmarks_are_not_in_the_runtime_package(capsys: pytest.CaptureFixture[str]) -> None:
    """The installed package has no benchmark code; `lifecycle bench` is gone."""
    assert importlib.util.find_spec("jobs.bench") is None
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["bench"])
    assert exit_info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_wrapper_benchmarks_report_every_measurement(tmp_path: Path) -> None:
    """The function-level benchmarks moved out of the runtime package still run end to end."""
    from benchmarks.wrappers import markdown_table, run_benchmarks

    out = tmp_path / "wrappers.json"
    rows = run_benchmarks(small_settings(tmp_path), scale=1, repeats=1, out=out, scaled=False)
    names = [row.name for row in rows]
    assert names == [
        "ALS training (demo)",
        "recommend_users (demo)",
        "recommendation_table (demo)",
        "churn training",
        "churn scoring, 1 day",
        "churn scoring, full feature table",
    ]
    for row in rows:
        assert row.wrapped_s > 0 and row.baseline_s > 0, row
        assert row.ratio == row.wrapped_s / row.baseline_s
    assert len(json.loads(out.read_text())["rows"]) == len(rows)
    assert len(markdown_table(rows).splitlines()) == len(rows) + 2


def _orch_row(size: int, days: int, storage: str, stage: str, a: float, d: float) -> dict:
    return {
        "size": size,
        "days": days,
        "storage": storage,
        "stage": stage,
        "assets_s": a,
        "direct_s": d,
        "ratio": a / d,
        "assets_rss_mb": 5_000.0,
        "direct_rss_mb": 4_000.0,
    }


def test_all_targets_are_judged_from_the_numbers() -> None:
    """`benchmarks.all`'s "met" column follows the measured numbers and each bound: a ratio
    just over its bound fails, one at it passes, a peak over 6e9 bytes fails."""
    from benchmarks.all import targets

    rows = [
        _orch_row(5_000, 365, "sqlite", "total", 10.0, 2.0),  # 5.0x: at the bound
        _orch_row(100_000, 273, "sqlite", "total", 30.0, 20.0),  # 1.5x: at the bound
        _orch_row(100_000, 273, "postgres", "total", 25.2, 20.0),  # 1.26x: over 1.25
        _orch_row(1_000_000, 90, "sqlite", "ingest", 100.0, 90.0),
        _orch_row(1_000_000, 90, "sqlite", "total", 150.0, 100.0),
    ]
    rows[3]["assets_rss_mb"] = 6e9 / 2**20 + 1  # one MiB over 6 GB
    orch = {"rows": rows, "demo": {"wall_s": 90.0, "exit": 0, "peak_rss_mb": 1.0}}
    scale = [
        {
            "part": "topk",
            "platform_s": 51.0,
            "direct_s": 100.0,
            "platform_rss_mb": 1.0,
            "direct_rss_mb": 1.0,
            "what": "",
            "rows": None,
        },
        {
            "part": "features_assets",
            "platform_s": 4.5,
            "direct_s": 3.0,
            "platform_rss_mb": 1.0,
            "direct_rss_mb": 1.0,
            "what": "",
            "rows": None,
        },
    ]
    history = {"days": 7305, "assets_s": 120.5, "status": "ok", "direct_s": 5.0}
    met = {t["target"].split(":")[0]: t["met"] for t in targets(orch, scale, history)}
    assert met["`scripts/demo.sh` ≤ 90 s after install"] is True
    assert met["raw → features → labels, 5,000 × 365 days, sqlite"] is True
    assert met["raw → features → labels, 100,000 × 273 days, sqlite"] is True
    assert met["raw → features → labels, 100,000 × 273 days, postgres"] is False
    assert met["1,000,000 × 90 days backfill through the assets, sqlite"] is False
    assert met["7,305-day history from files to features ≤ 2 min"] is False
    assert met["one feature day through the assets"] is True
    assert met["all-user top-10 against implicit's recommend"] is False
    # Linear growth: 100k at 30/27.3 = 1.10 s per M customer-days, 1M at 150/90 = 1.67: 1.52x.
    assert met["cost linear in customers (sqlite)"] is False
    # Not measured (no PostgreSQL at 5k, no churn rows): left out, never passed.
    assert not any("5,000 × 365 days, postgres" in k or "churn" in k for k in met)
