"""How the rows of :mod:`benchmarks.realistic`'s two exports are drawn, and written as text.

Kept apart from the configuration and the files/settings side so each module reads on its own;
every function takes the :class:`~benchmarks.realistic.RealisticConfig` and a seeded generator,
so identical configs still give identical rows.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from benchmarks.realistic import RealisticConfig

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


def closed_days(cfg: RealisticConfig, rng: np.random.Generator) -> np.ndarray:
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


def draw_transactions(
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


def draw_ratings(
    cfg: RealisticConfig, rng: np.random.Generator, closed: np.ndarray
) -> pd.DataFrame:
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
