"""The bench command runs end to end on a tiny shop. It checks that the command works and
reports every measurement; it never asserts on speed (that is what the command is for)."""

import json
import math
from pathlib import Path

import pytest

from jobs.bench import markdown_table, run_benchmarks
from jobs.cli import main
from tests.conftest import small_settings


def test_run_benchmarks_reports_every_measurement(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    rows = run_benchmarks(small_settings(tmp_path), scale=1, repeats=1, out=out, scaled=False)

    names = [row.name for row in rows]
    for expected in (
        "backfill: raw+features, one ranged run",
        "backfill: labels, one ranged run",
        "backfill: total (both runs)",
        "ALS training (demo)",
        "recommend_users (demo)",
        "recommendation_table (demo)",
        "churn training",
        "churn scoring, 1 day",
        "churn scoring, full feature table",
    ):
        assert expected in names
    steps = [name for name in names if name.strip().startswith("step ")]
    assert {"step raw_transactions", "step labels__churn_labels"} <= {s.strip() for s in steps}
    for row in rows:
        assert row.wrapped_s > 0 and row.baseline_s > 0, row
        assert math.isfinite(row.ratio) and row.ratio > 0, row
        assert row.size and row.notes

    payload = json.loads(out.read_text())
    assert payload["repeats"] == 1 and len(payload["rows"]) == len(rows)
    assert {"name", "size", "wrapped_s", "baseline_s", "ratio", "notes"} <= set(payload["rows"][0])
    table = markdown_table(rows).splitlines()
    assert table[0].startswith("| benchmark |") and len(table) == len(rows) + 2


def test_bench_subcommand_is_wired(capsys: pytest.CaptureFixture[str]) -> None:
    """Only the wiring: the subcommand and its options exist (``--help`` runs nothing)."""
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "--help"])
    assert exit_info.value.code == 0
    help_text = capsys.readouterr().out
    for option in ("--scale", "--repeats", "--json"):
        assert option in help_text
