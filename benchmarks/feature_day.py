"""One feature day at scale through the real features asset, against one DuckDB query.

A warehouse holds a year of daily activity (``benchmarks.scale.build_activity``: ~30 purchase
days per customer) as ``features.customer_activity``; a fresh instance records that year's
activity partitions as materialised (the asset refuses to run over a hole). Then:

- assets: the project's code location (``build_defs``) materialises ``features/customer_features``
  for the last day with the project's run call (``jobs.cli._run``), instance and IO manager:
  lifetime state by SQL, the 90-day input window read into pandas, the numpy kernel, pandera on
  every chunk, the chunked write, per-day metadata and events;
- direct: ``benchmarks.scale.DIRECT_SQL`` (the same columns in one query) written to a table
  with ``create table … as``, in a copy of the same warehouse file.

Each side runs in its own spawned process (``benchmarks.measure.isolated``), so its peak RSS is
its own. The same customers' values are compared on a sample.
"""

from __future__ import annotations

import shutil
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import pandas as pd

from benchmarks.measure import isolated, peak_rss_mb

FMT = "%Y-%m-%d"


def _prepare(root: Path, customers: int) -> tuple[Path, int]:
    """The warehouse file with a year of activity in the asset's table; its row count."""
    import duckdb

    from benchmarks.scale import build_activity

    scratch = root / "activity.duckdb"
    rows = build_activity(scratch, customers)
    warehouse = root / "warehouse.duckdb"
    with duckdb.connect(str(warehouse)) as con:
        con.execute(f"attach '{scratch}' as scratch (read_only)")
        con.execute("create schema features")
        con.execute(
            "create table features.customer_activity as select "
            "cast(activity_date as timestamp_ns) activity_date, customer_id, "
            "cast(txn_count as bigint) txn_count, spend, spend max_amount "
            "from scratch.activity order by activity_date, customer_id"
        )
    scratch.unlink()
    return warehouse, rows


def _settings(root: Path, warehouse: Path, first: pd.Timestamp, day: pd.Timestamp) -> Any:
    from benchmarks.raw_settings import demo_raw
    from lifecycle.settings import parse_settings

    raw = demo_raw(first.strftime(FMT), (day + pd.Timedelta(days=1)).strftime(FMT))
    raw["warehouse"] = {"database": str(warehouse), "artifact_root": str(root / "artifacts")}
    raw["families"] = ["churn"]
    return parse_settings(raw, "feature-day benchmark settings")


def assets_job(root_dir: str, first_day: str, day: str) -> dict[str, Any]:
    """Materialise one feature day through the code location; seconds, rows, sample."""
    import os

    import dagster as dg

    from assets.keys import ACTIVITY, FEATURES
    from benchmarks.instances import write_home

    root, first, as_of = Path(root_dir), pd.Timestamp(first_day), pd.Timestamp(day)
    home = root / "dagster_home"
    write_home(home, "sqlite")
    os.environ["DAGSTER_HOME"] = str(home)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from definitions import build_defs
        from jobs.cli import _instance, _run

        defs = build_defs(_settings(root, root / "warehouse.duckdb", first, as_of))
    instance = _instance()
    for key in pd.date_range(first, as_of, freq="D").strftime(FMT):
        instance.report_runless_asset_event(dg.AssetMaterialization(ACTIVITY, partition=key))
    start = time.perf_counter()
    outcome = _run(defs, instance, "daily_refresh", "feature day", keys=[FEATURES], partition=day)
    seconds = time.perf_counter() - start
    if not outcome.ok:
        raise RuntimeError(f"feature day failed: {outcome.causes}")
    import duckdb

    with duckdb.connect(str(root / "warehouse.duckdb"), read_only=True) as con:
        out = con.execute(
            "select * from features.customer_features where as_of_date = ? order by customer_id",
            [as_of.to_pydatetime()],
        ).df()
    return _result(seconds, out)


def direct_job(root_dir: str, day: str) -> dict[str, Any]:
    """The same day by one query, kept as a table: what a script would do."""
    import duckdb

    from benchmarks.scale import DIRECT_SQL

    path = Path(root_dir) / "direct.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute("create view activity as select * from features.customer_activity")
        start = time.perf_counter()
        con.execute(
            "create table direct_features as " + DIRECT_SQL, {"d": pd.Timestamp(day).date()}
        )
        seconds = time.perf_counter() - start
        out = con.execute("select * from direct_features order by customer_id").df()
    return _result(seconds, out)


def _result(seconds: float, out: pd.DataFrame) -> dict[str, Any]:
    check = out.set_index("customer_id")[["lifetime_txn_count", "spend_30d", "recency_days"]]
    return {"s": seconds, "rss": peak_rss_mb(), "rows": len(out), "check": check.iloc[::997]}


def feature_day_row(customers: int, day: pd.Timestamp, history_days: int) -> dict[str, Any]:
    """Both sides on the same warehouse; the raw results for ``benchmarks.scale``'s table."""
    first = day - pd.Timedelta(days=history_days - 1)
    with tempfile.TemporaryDirectory(prefix="feature-day-") as tmp:
        root = Path(tmp)
        warehouse, rows = _prepare(root, customers)
        shutil.copy(warehouse, root / "direct.duckdb")
        mine = isolated(assets_job, str(root), first.strftime(FMT), day.strftime(FMT))
        theirs = isolated(direct_job, str(root), day.strftime(FMT))
    return {"assets": mine, "direct": theirs, "activity_rows": rows}
