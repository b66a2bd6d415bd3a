"""A long daily history from files: ``python -m benchmarks.long_history --years 20``.

Writes a ratings export spanning ``--years`` of days (sparse: most days hold a few rows, some
none), points a files source at it (interactions only, so one family), and times the ingest of
every day in one ranged run through the real assets (``build_defs``, the project's instance in a
fresh DAGSTER_HOME, ``jobs.cli._run``: what ``lifecycle demo`` does) against the direct read +
validation with the same lifecycle functions. This is what a user with a long history does: one
ranged run (or one UI backfill) over all the days, never a run per day.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from benchmarks.instances import write_home
from benchmarks.measure import forked
from benchmarks.raw_settings import demo_raw, with_files


def write_ratings(path: Path, start: dt.date, days: int, rows: int, seed: int = 3) -> pd.DataFrame:
    """A MovieLens-like export: ``userId,movieId,rating,timestamp`` (epoch seconds)."""
    rng = np.random.default_rng(seed)
    # Activity grows over the years, as a real catalogue's does: later days hold more rows.
    day = np.sort((days * np.sqrt(rng.random(rows))).astype(np.int64))
    seconds = day * 86_400 + rng.integers(0, 86_400, rows)
    epoch = int(pd.Timestamp(start).timestamp())
    frame = pd.DataFrame(
        {
            "userId": rng.integers(1, max(2, rows // 20), rows),
            "movieId": rng.integers(1, max(2, rows // 50), rows),
            "rating": rng.integers(1, 11, rows) / 2,
            "timestamp": epoch + seconds,
        }
    )
    frame.to_csv(path, index=False)
    return frame


def write_orders(path: Path, start: dt.date, days: int, rows: int, seed: int = 3) -> pd.DataFrame:
    """An orders export: ``CustomerID,Amount,InvoiceDate`` (epoch seconds), customers arriving
    over the years, a long tail of one-time buyers, growing activity."""
    rng = np.random.default_rng(seed)
    day = np.sort((days * np.sqrt(rng.random(rows))).astype(np.int64))
    customers = max(2, rows // 20)
    # Later customers appear later: a customer's id is drawn among those already signed up.
    signed_up = np.maximum(1, (customers * day / max(days, 1)).astype(np.int64))
    frame = pd.DataFrame(
        {
            "CustomerID": [f"{c:07d}" for c in rng.integers(0, signed_up)],
            "Amount": np.round(rng.gamma(2.0, 25.0, rows), 2),
            "InvoiceDate": int(pd.Timestamp(start).timestamp())
            + day * 86_400
            + rng.integers(0, 86_400, rows),
        }
    )
    frame.to_csv(path, index=False)
    return frame.rename(columns={"InvoiceDate": "timestamp"})


def settings_for(root: Path, glob: str, start: dt.date, end: dt.date, table: str) -> dict:
    files: dict = (
        {
            "interactions_glob": glob,
            "columns": {
                "user_id": "userId",
                "item_id": "movieId",
                "weight": "rating",
                "interactions_timestamp": "timestamp",
            },
            "interactions_timestamp_unit": "s",
        }
        if table == "interactions"
        else {
            "transactions_glob": glob,
            "columns": {
                "customer_id": "CustomerID",
                "amount": "Amount",
                "transactions_timestamp": "InvoiceDate",
            },
            "transactions_timestamp_unit": "s",
        }
    )
    raw = with_files(demo_raw(start.isoformat(), end.isoformat()), root, files)
    raw["families"] = ["churn" if table == "transactions" else "recommender"]
    raw.setdefault("validation", {})["on_empty_day"] = "allow"  # sparse history: quiet days
    return raw


def through_assets(settings_path: Path, home: Path) -> tuple[float, str]:
    """One ranged ingest run over every day, in this process (the caller forks per path)."""
    os.environ["DAGSTER_HOME"] = str(home)
    from definitions import build_defs
    from jobs.cli import _instance, _run
    from lifecycle.settings import load_settings

    settings = load_settings(str(settings_path))
    defs = build_defs(settings)
    # Files → raw tables (and, for orders, → daily activity → features): every day in one run.
    keys = [k for k in defs.resolve_all_asset_keys() if k.path[0] in ("raw", "features")]
    first = settings.partitions.start_date.isoformat()
    assert settings.partitions.end_date is not None
    last = (settings.partitions.end_date - dt.timedelta(days=1)).isoformat()
    started = time.perf_counter()
    outcome = _run(
        defs, _instance(), "daily_refresh", "ingest all days", keys=keys, days=(first, last)
    )
    if not outcome.ok:
        raise RuntimeError(f"ingest failed: {outcome.causes}")
    return time.perf_counter() - started, outcome.status


def direct(settings_path: Path) -> float:
    """The same file read, validated and shared out per day with the lifecycle functions (for
    orders, then daily activity and every day's features, a chunk of customers at a time)."""
    from lifecycle.features import customer_feature_chunks, daily_activity
    from lifecycle.settings import load_settings
    from lifecycle.validation import Limits, quarantine_share_by_day, validate_rows
    from resources.sources import SPECS, source_from_settings

    settings = load_settings(str(settings_path))
    assert settings.partitions.end_date is not None
    first = pd.Timestamp(settings.partitions.start_date)
    end = pd.Timestamp(settings.partitions.end_date)
    (table,) = settings.source.tables
    started = time.perf_counter()
    frame = source_from_settings(settings).fetch(table, first, end)  # type: ignore[attr-defined]
    limits = Limits(settings.validation.max_amount, settings.validation.max_weight)
    batch = validate_rows(frame, SPECS[table], first, end, origin="direct", limits=limits)
    quarantine_share_by_day(batch.clean, batch.quarantine, first, end)
    if table == "transactions":
        days = pd.date_range(first, end - pd.Timedelta(days=1), freq="D")
        activity = daily_activity(batch.clean)
        for _ in customer_feature_chunks(activity, days, settings.features.windows):
            pass
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--years", type=int, default=20)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument(
        "--table",
        choices=["interactions", "transactions"],
        default="interactions",
        help="a ratings export (files → raw) or an orders export (files → raw → features)",
    )
    parser.add_argument("--json", type=Path, dest="json_path", help="also the raw numbers")
    args = parser.parse_args()
    end = dt.date(2026, 1, 1)
    start = end - dt.timedelta(days=round(365.25 * args.years))
    days = (end - start).days
    root = Path(tempfile.mkdtemp(prefix="long_history_"))
    export = root / f"{args.table}.csv"
    write = write_ratings if args.table == "interactions" else write_orders
    frame = write(export, start, days, args.rows)
    settings_path = root / "settings.yaml"
    settings_path.write_text(
        yaml.safe_dump(settings_for(root, str(export), start, end, args.table))
    )
    home = root / "home"
    write_home(home, "sqlite")
    assets_result, assets_peak = forked(through_assets, settings_path, home)
    direct_result, direct_peak = forked(direct, settings_path)
    assets_s, status = float(assets_result[0]), str(assets_result[1])  # type: ignore[index]
    direct_s = float(direct_result)  # type: ignore[arg-type]
    quiet = days - frame["timestamp"].floordiv(86_400).nunique()
    if args.json_path:
        numbers = {"table": args.table, "days": days, "rows": len(frame), "quiet_days": int(quiet)}
        numbers |= {"assets_s": assets_s, "status": status, "direct_s": direct_s}
        numbers |= {"assets_peak_mb": assets_peak, "direct_peak_mb": direct_peak}
        args.json_path.write_text(json.dumps(numbers, default=str))
    print(
        f"| {args.table}: days | rows | quiet days | through the assets s | direct s | ratio | "
        "peak RSS MiB (assets / direct) |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|")
    print(
        f"| {days:,} | {len(frame):,} | {quiet:,} | {assets_s:.1f} ({status}) | {direct_s:.2f} "
        f"| {assets_s / direct_s:.0f}× | {assets_peak:,} / {direct_peak:,} |"
    )


if __name__ == "__main__":
    main()
