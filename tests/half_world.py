"""A user's own files holding only one of the two raw tables: transactions alone (churn) or
interactions alone (recommender), written as CSV with string ids the way a user's export has
them ("00042", "SKU-0007"), so the ids must come back verbatim."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from lifecycle.settings import DEMO_SETTINGS, Settings, parse_settings
from lifecycle.synthetic import SyntheticConfig, generate_shop
from tests.conftest import SMALL, deep_merge

START, END = dt.date(2026, 1, 1), dt.date(2026, 5, 1)  # the small world's partitions
GLOB = {"transactions": "transactions_glob", "interactions": "interactions_glob"}


def customer_id(number: int) -> str:
    return f"{number:05d}"  # leading zeros: an integer round trip would lose them


def item_id(number: int) -> str:
    return f"SKU-{number:04d}"


def shop_csvs(
    folder: Path, table: str, n_customers: int = 400, n_items: int = 60, seed: int = 5
) -> pd.DataFrame:
    """One CSV per month of the small world's calendar for ``table``; returns every row written
    (ids as the strings in the files)."""
    shop = generate_shop(
        SyntheticConfig(start=START, end=END, seed=seed, n_customers=n_customers, n_items=n_items)
    )
    if table == "transactions":
        rows = shop.transactions.loc[:, ["customer_id", "timestamp", "amount"]].assign(
            customer_id=lambda f: f["customer_id"].map(customer_id)
        )
    else:
        rows = shop.interactions.loc[:, ["user_id", "item_id", "timestamp", "weight"]].assign(
            user_id=lambda f: f["user_id"].map(customer_id),
            item_id=lambda f: f["item_id"].map(item_id),
        )
    folder.mkdir(parents=True, exist_ok=True)
    rows = rows.assign(timestamp=rows["timestamp"].dt.strftime("%Y-%m-%d %H:%M:%S"))
    for month, part in rows.groupby(rows["timestamp"].str[:7]):
        part.to_csv(folder / f"{table}_{month}.csv", index=False)
    return rows.reset_index(drop=True)


def half_raw(root: Path, table: str, override: dict[str, Any] | None = None) -> dict[str, Any]:
    """The small world's settings (tests/conftest.py) with a files source that configures only
    ``table``'s glob, the warehouse under ``root``."""
    raw = deep_merge(yaml.safe_load(DEMO_SETTINGS.read_text()), SMALL)
    files = {GLOB[table]: str(root / "drop" / f"{table}_*.csv")}
    local = {
        "warehouse": {
            "database": str(root / "warehouse.duckdb"),
            "artifact_root": str(root / "artifacts"),
        },
        "source": {"kind": "files", "files": files, "synthetic": None},
    }
    raw = deep_merge(raw, local)
    raw["source"].pop("synthetic")
    return deep_merge(raw, override or {})


def half_settings(root: Path, table: str, override: dict[str, Any] | None = None) -> Settings:
    return parse_settings(half_raw(root, table, override), f"{table}-only test settings")


def settings_file(root: Path, table: str, override: dict[str, Any] | None = None) -> Path:
    """The same settings as a YAML file, for the `lifecycle` command."""
    path = root / f"{table}_only.yaml"
    path.write_text(yaml.safe_dump(half_raw(root, table, override)))
    return path
