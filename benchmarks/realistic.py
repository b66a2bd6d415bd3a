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

Style = Literal["native", "compatible"]
# Our canonical names (keys) → the export's names (values), as the settings' column map wants.
COLUMN_MAP = {
    "customer_id": "CustomerID",
    "amount": "Amount",
    "user_id": "userId",
    "item_id": "movieId",
    "weight": "rating",
}
TIME_COLUMN = {
    "native": {"transactions": "InvoiceDate", "interactions": "timestamp"},
    "compatible": {"transactions": "timestamp", "interactions": "timestamp"},
}
ISO_FORMAT = "%Y-%m-%dT%H:%M:%S%z"
# Share of orders by local hour: a shop is busiest in the evening, but nights are not empty,
# so some orders fall between 00:00 and 01:00 local, i.e. on the previous day in UTC in summer.
_HOUR_WEIGHTS = np.array(
    [2, 1, 1, 1, 1, 1, 2, 3, 4, 5, 6, 6, 7, 6, 6, 6, 6, 7, 8, 9, 9, 8, 6, 4], dtype=float
)
_COUNTRIES = ("United Kingdom", "Ireland", "France", "Germany", "Netherlands")
_COUNTRY_P = (0.85, 0.05, 0.04, 0.04, 0.02)


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


def _closed_days(cfg: RealisticConfig, rng: np.random.Generator) -> np.ndarray:
    """Boolean per day: True where the log has no rows at all."""
    days = pd.date_range(cfg.start, periods=cfg.n_days, freq="D")
    closed = (days.month == 12) & (days.day == 25)
    closed |= rng.random(cfg.n_days) < cfg.closed_day_share
    closed[0] = False
    return np.asarray(closed)


def _customer_ids(cfg: RealisticConfig, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Zero-padded auto-increment numbers with gaps, plus a few unpadded copies of them."""
    n_collide = max(1, round(cfg.collision_share * cfg.n_customers))
    n_main = cfg.n_customers - n_collide
    numbers = np.cumsum(rng.integers(1, 30, size=n_main))
    padded = np.char.zfill(numbers.astype(str), cfg.id_width)
    copied = rng.choice(n_main, size=n_collide, replace=False)
    ids = np.concatenate([padded, numbers[copied].astype(str)]).astype(object)
    kind = np.array(["padded"] * n_main + ["unpadded"] * n_collide, dtype=object)
    return ids, kind


def _local_stamps(cfg: RealisticConfig, day: np.ndarray, seconds: np.ndarray) -> pd.DatetimeIndex:
    """Zone-aware moments of local days and times (a time skipped by DST moves forward)."""
    naive = pd.Timestamp(cfg.start) + pd.to_timedelta(day * 86_400 + seconds, unit="s")
    return pd.DatetimeIndex(naive).tz_localize(
        cfg.timezone, ambiguous=np.ones(len(naive), dtype=bool), nonexistent="shift_forward"
    )


def iso_text(moments: pd.DatetimeIndex) -> np.ndarray:
    """ISO 8601 with the offset of each moment, ``+01:00`` style, the way exports write it."""
    text = pd.Series(moments.strftime(ISO_FORMAT))
    return (text.str[:-2] + ":" + text.str[-2:]).to_numpy(dtype=object)


def epoch_text(moments: pd.DatetimeIndex) -> np.ndarray:
    return (moments.asi8 // 10**9).astype(str).astype(object)


def _time_of_day(rng: np.random.Generator, n: int) -> np.ndarray:
    hour = rng.choice(24, size=n, p=_HOUR_WEIGHTS / _HOUR_WEIGHTS.sum())
    return hour * 3600 + rng.integers(0, 3600, size=n)


def _transactions(
    cfg: RealisticConfig, rng: np.random.Generator, closed: np.ndarray
) -> tuple[pd.DataFrame, pd.DataFrame]:
    n = cfg.n_customers
    ids, id_kind = _customer_ids(cfg, rng)
    open_days = np.flatnonzero(~closed)
    arrival = np.sort(rng.choice(open_days, size=n))
    order = rng.permutation(n)  # padded numbers grow with arrival; legacy ids arrive any time
    ids, id_kind = ids[order], id_kind[order]
    one_time = rng.random(n) < cfg.one_time_share
    heavy = ~one_time & (rng.random(n) < cfg.heavy_share)
    rate = cfg.order_rate * rng.gamma(1.5, 1 / 1.5, size=n) * np.where(heavy, 6.0, 1.0)
    basket = cfg.basket_mean * rng.lognormal(-0.18, 0.6, size=n)
    # Frequent and big-basket customers stay longer; tenure lowers the hazard (shape < 1).
    scale = cfg.lifetime_days * (rate / cfg.order_rate) ** 0.6 * (basket / cfg.basket_mean) ** 0.4
    life = np.where(one_time, 0.0, scale * rng.weibull(cfg.lifetime_shape, size=n))
    dormant = ~one_time & (rng.random(n) < cfg.dormant_share)
    gap_at = rng.uniform(0, 1, size=n) * life
    gap_len = np.where(dormant, rng.integers(180, 541, size=n), 0)

    k = rng.poisson(rate * life)
    who = np.repeat(np.arange(n), k)
    t = rng.uniform(0, 1, size=who.size) * life[who]
    remaining = life[who] - t
    fade = np.clip(remaining / max(cfg.decay_days, 1), 0, 1)
    keep = rng.random(who.size) < cfg.decay_floor + (1 - cfg.decay_floor) * fade
    who, t = who[keep], t[keep]
    t = t + np.where(t >= gap_at[who], gap_len[who], 0)
    who = np.concatenate([np.arange(n), who])  # everyone's first order, on arrival
    day = np.concatenate([arrival, arrival[who[n:]] + np.floor(t).astype(np.int64)])
    repeat = rng.random(who.size) < cfg.same_day_repeat
    who = np.concatenate([who, who[repeat]])
    day = np.concatenate([day, day[repeat]])
    inside = day < cfg.n_days
    inside[inside] &= ~closed[day[inside]]
    who, day = who[inside], day[inside]

    moments = _local_stamps(cfg, day, _time_of_day(rng, who.size))
    amount = basket[who] * rng.lognormal(-0.08, 0.4, size=who.size)
    country = rng.choice(len(_COUNTRIES), size=n, p=_COUNTRY_P)
    frame = pd.DataFrame(
        {
            TIME_COLUMN[cfg.style]["transactions"]: iso_text(moments),
            "CustomerID": ids[who],
            "Amount": np.maximum(np.round(amount, 2), 0.5).astype(str),
            "Country": np.asarray(_COUNTRIES, dtype=object)[country[who]],
            "_local": moments.tz_localize(None),
        }
    ).sort_values(["_local", "CustomerID"], kind="stable", ignore_index=True)
    frame.insert(0, "InvoiceNo", (536_365 + np.arange(len(frame))).astype(str))
    last_life_day = arrival + np.ceil(life + gap_len).astype(np.int64)
    customers = pd.DataFrame(
        {
            "customer_id": ids,
            "id_kind": id_kind,
            "kind": np.select(
                [one_time, heavy, dormant], ["one_time", "heavy", "dormant"], "repeat"
            ),
            "first_day": arrival,
            "last_life_day": last_life_day,
        }
    )
    return frame, customers


def _ratings(cfg: RealisticConfig, rng: np.random.Generator, closed: np.ndarray) -> pd.DataFrame:
    n_users, n_items, f = cfg.n_users, cfg.n_items, cfg.n_factors
    movie_ids = np.cumsum(rng.integers(1, 40, size=n_items)).astype(str).astype(object)
    popularity = (rng.permutation(n_items) + 1.0) ** -cfg.zipf_exponent
    users = rng.normal(0, 1 / np.sqrt(f), (n_users, f))
    items = rng.normal(0, 1, (n_items, f))
    count = 5 + np.round(rng.lognormal(np.log(cfg.ratings_per_user), 1.0, size=n_users))
    count = np.minimum(count, n_items // 3).astype(np.int64)
    rows, cols = [], []
    for lo in range(0, n_users, 1000):
        affinity = users[lo : lo + 1000] @ items.T
        noisy = np.log(popularity) + affinity / cfg.taste_temperature
        noisy = noisy + rng.gumbel(size=noisy.shape)  # Gumbel top-n = sampling w/o replacement
        ranked = np.argsort(-noisy, axis=1)
        for i, row in enumerate(ranked):
            rows.append(np.full(count[lo + i], lo + i))
            cols.append(row[: count[lo + i]])
    user, item = np.concatenate(rows), np.concatenate(cols)
    z = np.einsum("ij,ij->i", users[user], items[item])
    stars = np.clip(np.round((2.5 + 0.8 * z + rng.normal(0, 0.7, size=z.size)) * 2) / 2, 0.5, 5.0)

    # Each user rates in sessions spread over an active span; each rating joins one session.
    first = rng.integers(0, cfg.n_days - 30, size=n_users)
    span = np.minimum(rng.lognormal(np.log(250), 1.0, size=n_users), cfg.n_days - 1 - first)
    n_sessions = 1 + rng.poisson(count / 6)
    session_of = (rng.random(user.size) * n_sessions[user]).astype(np.int64)
    # Session day and start time are a hash of (user, session): same session, same moment.
    session_key = user * 10_000 + session_of
    keys, inverse = np.unique(session_key, return_inverse=True)
    s_user = keys // 10_000
    s_day = first[s_user] + np.floor(rng.random(keys.size) * (span[s_user] + 1)).astype(np.int64)
    s_day = np.where(closed[s_day] & (s_day + 1 < cfg.n_days), s_day + 1, s_day)
    s_time = np.minimum(_time_of_day(rng, keys.size), 80_000)
    day = s_day[inverse]
    seconds = np.minimum(s_time[inverse] + rng.integers(20, 6_000, size=user.size), 86_399)
    keep = ~closed[day]
    moments = _local_stamps(cfg, day[keep], seconds[keep])
    frame = pd.DataFrame(
        {
            "userId": (user[keep] + 1).astype(str).astype(object),
            "movieId": movie_ids[item[keep]],
            "rating": pd.Series(stars[keep]).map("{:.1f}".format).to_numpy(dtype=object),
            TIME_COLUMN[cfg.style]["interactions"]: (
                epoch_text(moments) if cfg.style == "native" else iso_text(moments)
            ),
            "_local": moments.tz_localize(None),
        }
    )
    return frame.sort_values(["_local", "userId"], kind="stable", ignore_index=True)


def generate_realistic(cfg: RealisticConfig) -> RealisticLog:
    """Both logs for ``cfg``; every value is text, as an export would have it."""
    root = np.random.SeedSequence(cfg.seed)
    cal_ss, tx_ss, rt_ss = root.spawn(3)
    closed = _closed_days(cfg, np.random.default_rng(cal_ss))
    transactions, customers = _transactions(cfg, np.random.default_rng(tx_ss), closed)
    ratings = _ratings(cfg, np.random.default_rng(rt_ss), closed)
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
    from lifecycle.settings import DEMO_SETTINGS

    raw = yaml.safe_load(DEMO_SETTINGS.read_text())
    raw["timezone"] = cfg.timezone
    raw["partitions"] = {"start_date": cfg.start.isoformat(), "end_date": cfg.end.isoformat()}
    raw["warehouse"] = {
        "database": str(workdir / "warehouse.duckdb"),
        "artifact_root": str(workdir / "artifacts"),
    }
    raw["source"] = {"kind": "files", "files": files_source(cfg, globs)}
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
