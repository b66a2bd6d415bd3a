"""The two benchmark data sets, written as export files plus a platform settings file each.

Both are split at the platform's end day: history goes to a drop folder the platform ingests,
later rows to a folder only the evaluation reads. (The files source files rows dated after the
last partition as future-dated quarantine, and quarantined customers leave the verified training
set, so a shared folder would change what the platform trains on.)
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from benchmarks.raw_settings import demo_raw, with_files
from benchmarks.realistic import (
    COLUMN_MAP,
    TIME_COLUMN,
    RealisticConfig,
    generate_realistic,
    platform_settings,
    supported_style,
    write_realistic,
    write_settings,
)

CANONICAL = {
    "transactions": ("customer_id", "timestamp", "amount"),
    "interactions": ("user_id", "item_id", "timestamp", "weight"),
}
NAIVE_FORMAT = "%Y-%m-%d %H:%M:%S"


@dataclass(frozen=True)
class Bench:
    """Where one data set lives and how to read it; D is the platform's last day."""

    name: str
    workdir: Path
    settings: Path
    history: dict[str, str]  # table → glob the platform reads
    future: dict[str, str]  # table → glob only the evaluation reads
    columns: dict[str, dict[str, str]]  # table → our name → the export's name
    epoch_unit: dict[str, str | None]
    timezone: str
    horizon: int
    as_of: pd.Timestamp
    sizes: dict[str, Any]


def _demo_settings() -> dict[str, Any]:
    # The benchmark's own calendar (the README's figures were measured on it), and no planted
    # incident: the demo's story is not what the quality comparison is about.
    raw = demo_raw("2025-07-01", "2026-07-01")
    raw["source"]["synthetic"].pop("incident", None)
    return raw


def prepare_synthetic(workdir: Path, customers: int | None) -> Bench:
    """The platform's own synthetic shop and demo settings, extended past the end day.

    The synthetic source generates exactly the partition range, so there would be no outcome
    after the last scored day; instead the same generator (same seed and sizes, longer range)
    writes files, and the demo settings read them through the files source.
    """
    from lifecycle.synthetic import SyntheticConfig, generate_shop

    raw = _demo_settings()
    start = pd.Timestamp(raw["partitions"]["start_date"]).date()
    end = pd.Timestamp(raw["partitions"]["end_date"]).date()
    horizon = int(raw["labels"]["horizon_days"])
    synth = raw["source"]["synthetic"]
    n_customers = customers or int(synth["n_customers"])
    shop = generate_shop(
        SyntheticConfig(
            start=start,
            end=end + dt.timedelta(days=horizon + 60),
            seed=int(synth["seed"]),
            n_customers=n_customers,
            n_items=int(synth["n_items"]),
        )
    )
    cut = pd.Timestamp(end)
    history: dict[str, str] = {}
    future: dict[str, str] = {}
    for table, frame in (("transactions", shop.transactions), ("interactions", shop.interactions)):
        out = frame.loc[:, list(CANONICAL[table])].copy()
        for key in ("customer_id", "user_id", "item_id"):
            if key in out:
                out[key] = out[key].astype(str)
        stamps = out["timestamp"]
        out["timestamp"] = stamps.dt.strftime(NAIVE_FORMAT)
        for part, rows, where in (
            ("drop", out[stamps < cut], history),
            ("future", out[stamps >= cut], future),
        ):
            folder = workdir / "data" / part
            folder.mkdir(parents=True, exist_ok=True)
            rows.to_csv(folder / f"{table}.csv", index=False)
            where[table] = str(folder / f"{table}.csv")
    files = {
        "transactions_glob": history["transactions"],
        "interactions_glob": history["interactions"],
        "timestamp_format": NAIVE_FORMAT,
    }
    with_files(raw, workdir, files)
    settings = write_settings(raw, workdir / "settings.yaml")
    return Bench(
        name="synthetic",
        workdir=workdir,
        settings=settings,
        history=history,
        future=future,
        columns={t: {c: c for c in cols} for t, cols in CANONICAL.items()},
        epoch_unit={"transactions": None, "interactions": None},
        timezone=str(raw.get("timezone", "UTC")),
        horizon=horizon,
        as_of=cut - pd.Timedelta(days=1),
        sizes={
            "customers": n_customers,
            "items": int(synth["n_items"]),
            "history": f"{start} … {end - dt.timedelta(days=1)}",
            "source": "lifecycle.synthetic.generate_shop via the files source",
        },
    )


def prepare_realistic(workdir: Path, customers: int | None, seed: int = 2024) -> Bench:
    """The export-like log of :mod:`benchmarks.realistic` with its matching settings."""
    base = RealisticConfig(seed=seed, style=supported_style())
    n = customers or base.n_customers
    cfg = dataclasses.replace(base, n_customers=n, n_users=max(500, n // 4))
    log = generate_realistic(cfg)
    globs = write_realistic(log, workdir / "data", cfg.end)
    raw = platform_settings(cfg, globs, workdir)
    settings = write_settings(raw, workdir / "settings.yaml")
    names = TIME_COLUMN[cfg.style]
    columns = {
        table: {
            ours: names[table] if ours == "timestamp" else COLUMN_MAP[ours]
            for ours in CANONICAL[table]
        }
        for table in CANONICAL
    }
    native = cfg.style == "native"
    return Bench(
        name="realistic",
        workdir=workdir,
        settings=settings,
        history={t: globs[f"drop_{t}"] for t in CANONICAL},
        future={t: globs[f"future_{t}"] for t in CANONICAL},
        columns=columns,
        epoch_unit={"transactions": None, "interactions": "s" if native else None},
        timezone=cfg.timezone,
        horizon=int(raw["labels"]["horizon_days"]),
        as_of=pd.Timestamp(cfg.end) - pd.Timedelta(days=1),
        sizes={
            "customers": cfg.n_customers,
            "users": cfg.n_users,
            "items": cfg.n_items,
            "history": f"{cfg.start} … {cfg.end - dt.timedelta(days=1)}",
            "export_style": cfg.style,
        },
    )
