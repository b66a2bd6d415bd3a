"""A seeded transaction log and ratings log that look like real public exports.

Why: the platform's synthetic shop is tidy (integer ids, one year, a row every day). Real exports
break pipelines in quieter ways, and this generator has each of them on purpose:

* customer ids are text zero-padded to 8 digits, and a few legacy ids are the *unpadded* form of
  another customer's number ("00000042" and "42" are two people);
* about half the customers buy once and never again; some repeat customers go quiet for 6–18
  months and come back; a few heavy buyers order every few days;
* a customer sometimes places several orders on one day;
* some days have no rows at all (Christmas, outages);
* several years of history, with timestamps written in ISO 8601 with the UTC offset of
  Europe/London, which changes with daylight saving time (+00:00 in winter, +01:00 in summer).

Churn has learnable drivers: order rate, basket value and tenure set each customer's lifetime
(a Weibull with falling hazard), and activity fades before the last order, so recency,
frequency, tenure and spend all carry signal. The ratings log has latent tastes (``n_factors``)
and a Zipf popularity skew, each user rates an item at most once, in sessions.

Two export styles. ``native``: the orders export has ``InvoiceDate`` in ISO 8601 with offsets
and the ratings file has MovieLens-style ``timestamp`` in epoch seconds; this needs a files
source with per-table timestamp columns and styles. ``compatible``: both files call the column
``timestamp`` and write ISO 8601 with offsets, for a files source with one column map and one
timestamp format for both tables. :func:`supported_style` asks the platform's settings which.

The log runs past the platform's last day (``future_days``): :func:`write_realistic` puts the
history in the drop folder the platform reads and the rest in a separate folder that only the
evaluation reads, so outcomes after the scored day exist without the platform ever seeing them.
"""

from __future__ import annotations

import datetime as dt
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import yaml

from benchmarks.raw_settings import demo_raw, with_files
from benchmarks.realistic_rows import (
    ISO_FORMAT,
    TIME_COLUMN,
    closed_days,
    draw_ratings,
    draw_transactions,
)

Style = Literal["native", "compatible"]
# Our canonical names (keys) → the export's names (values), as the settings' column map wants.
COLUMN_MAP = {
    "customer_id": "CustomerID",
    "amount": "Amount",
    "user_id": "userId",
    "item_id": "movieId",
    "weight": "rating",
}


@dataclass(frozen=True)
class RealisticConfig:
    """Size and behaviour knobs; identical configs give identical files."""

    seed: int = 2024
    n_customers: int = 20_000
    n_users: int = 5_000
    n_items: int = 1_500
    years: int = 3
    end: dt.date = dt.date(2026, 1, 1)  # the platform's exclusive end day (history before it)
    future_days: int = 120  # rows after `end`, so outcomes after the last scored day exist
    timezone: str = "Europe/London"
    id_width: int = 8
    one_time_share: float = 0.42  # never come back (plus repeaters whose life ends first)
    heavy_share: float = 0.06  # order rate x6
    dormant_share: float = 0.06  # repeat customers with a 180–540 day gap inside their life
    collision_share: float = 0.02  # customers whose id is another's number without padding
    same_day_repeat: float = 0.07  # orders followed by another order the same day
    closed_day_share: float = 0.01  # random days with no rows at all (besides 25 December)
    order_rate: float = 1 / 30  # mean daily order rate of a repeat customer
    lifetime_days: float = 420.0  # Weibull scale of an average repeat customer's lifetime
    lifetime_shape: float = 0.7  # < 1: the longer a customer stayed, the less likely to leave
    decay_days: int = 60  # activity fades over this many days before the end of a lifetime
    decay_floor: float = 0.15
    basket_mean: float = 35.0
    n_factors: int = 10
    zipf_exponent: float = 1.0
    taste_temperature: float = 0.5  # lower = tastes dominate popularity
    ratings_per_user: float = 40.0  # median of a heavy-tailed count (at least 5)
    style: Style = "native"

    @property
    def start(self) -> dt.date:
        return self.end.replace(year=self.end.year - self.years)

    @property
    def n_days(self) -> int:
        """Days written, history and future: ``[start, end + future_days)``."""
        return (self.end - self.start).days + self.future_days


@dataclass(frozen=True)
class RealisticLog:
    """The two exports as written to CSV (all text), plus the truth behind the transactions."""

    transactions: pd.DataFrame
    ratings: pd.DataFrame
    transactions_local: pd.Series  # naive local time of each row (for the history/future cut)
    ratings_local: pd.Series
    customers: pd.DataFrame  # customer_id, kind, first_day, last_life_day (day indices)
    closed_days: pd.DatetimeIndex


def generate_realistic(cfg: RealisticConfig) -> RealisticLog:
    """Both logs for ``cfg``; every value is text, as an export would have it."""
    root = np.random.SeedSequence(cfg.seed)
    cal_ss, tx_ss, rt_ss = root.spawn(3)
    closed = closed_days(cfg, np.random.default_rng(cal_ss))
    transactions, customers = draw_transactions(cfg, np.random.default_rng(tx_ss), closed)
    ratings = draw_ratings(cfg, np.random.default_rng(rt_ss), closed)
    days = pd.date_range(cfg.start, periods=cfg.n_days, freq="D")
    return RealisticLog(
        transactions=transactions.drop(columns="_local"),
        ratings=ratings.drop(columns="_local"),
        transactions_local=transactions["_local"],
        ratings_local=ratings["_local"],
        customers=customers,
        closed_days=days[closed],
    )


def write_realistic(log: RealisticLog, folder: Path, cut: dt.date) -> dict[str, str]:
    """CSV files as a shop would export them: orders one file per year, ratings one file.

    Rows before local midnight of ``cut`` go to ``folder/drop`` (what the platform reads), the
    rest to ``folder/future`` (what only the evaluation reads). Returns the four globs.
    """
    cut_ts = pd.Timestamp(cut)
    globs = {}
    for part, keep_tx, keep_rt in (
        ("drop", log.transactions_local < cut_ts, log.ratings_local < cut_ts),
        ("future", log.transactions_local >= cut_ts, log.ratings_local >= cut_ts),
    ):
        where = folder / part
        where.mkdir(parents=True, exist_ok=True)
        orders = log.transactions[keep_tx.to_numpy()]
        for year, rows in orders.groupby(log.transactions_local[keep_tx].dt.year.to_numpy()):
            rows.to_csv(where / f"transactions_{year}.csv", index=False)
        log.ratings[keep_rt.to_numpy()].to_csv(where / "ratings.csv", index=False)
        globs[f"{part}_transactions"] = str(where / "transactions_*.csv")
        globs[f"{part}_interactions"] = str(where / "ratings.csv")
    return globs


def supported_style() -> Style:
    """``native`` where the platform's files settings have per-table timestamp columns/styles."""
    from lifecycle.settings import ColumnMap, FilesSettings

    per_table = "transactions_timestamp" in ColumnMap.model_fields
    per_table &= "interactions_timestamp_unit" in FilesSettings.model_fields
    return "native" if per_table else "compatible"


def files_source(cfg: RealisticConfig, globs: dict[str, str]) -> dict[str, Any]:
    """The settings' ``source.files`` block that reads this export."""
    names = TIME_COLUMN[cfg.style]
    block: dict[str, Any] = {
        "transactions_glob": globs["drop_transactions"],
        "interactions_glob": globs["drop_interactions"],
    }
    if cfg.style == "native":
        block["columns"] = {
            **COLUMN_MAP,
            "transactions_timestamp": names["transactions"],
            "interactions_timestamp": names["interactions"],
        }
        block["transactions_timestamp_format"] = ISO_FORMAT
        block["interactions_timestamp_unit"] = "s"
    else:
        block["columns"] = {**COLUMN_MAP, "timestamp": "timestamp"}
        block["timestamp_format"] = ISO_FORMAT
    return block


def _empty_day_choice() -> str:
    """'warn' where the settings know it, else 'allow': a quiet day is not a broken feed here."""
    from lifecycle.settings import ValidationSettings

    allowed = typing.get_args(ValidationSettings.model_fields["on_empty_day"].annotation)
    return "warn" if "warn" in allowed else "allow"


def platform_settings(cfg: RealisticConfig, globs: dict[str, str], workdir: Path) -> dict[str, Any]:
    """The demo settings with this log as a files source, 90-day churn horizon, local days."""
    raw = demo_raw(cfg.start.isoformat(), cfg.end.isoformat())
    raw["timezone"] = cfg.timezone
    with_files(raw, workdir, files_source(cfg, globs))
    raw.setdefault("validation", {})["on_empty_day"] = _empty_day_choice()
    raw.setdefault("labels", {})["horizon_days"] = 90
    # The recommender runs on the demo's (the platform's) defaults: no tuning for this log.
    return raw


def write_settings(raw: dict[str, Any], path: Path) -> Path:
    """Validate with the platform's own loader first, so a bad key fails here, not mid-run."""
    from lifecycle.settings import parse_settings

    parse_settings(raw, str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path
