"""Seeded generator of a believable online shop.

Why this exists: the platform needs a demo data source that works out of the box *and* a
ground truth against which model quality can be tested. Everything that drives behaviour
(purchase rates, basket values, churn hazards, latent tastes, item popularity) is sampled
explicitly and returned alongside the event logs, so tests can check that a churn model or
a recommender recovers signal that is known to be there.

Generative story (all randomness from ``np.random.default_rng`` streams derived from
``SyntheticConfig.seed`` via ``SeedSequence.spawn``; no global state):

* **Customers.** A share ``initial_share`` already exists at ``start`` (their signup dates
  are spread over ``prior_tenure_days`` before it); the rest sign up uniformly over
  ``[start, end)``. Customer ids are ``1..n_customers`` in signup order (auto-increment).
  Each customer has a ``segment`` (see :data:`SEGMENTS`), an ``engagement`` in (0, 1)
  (Beta(2, 2)), a ``price_sensitivity`` in (0, 1) (segment-specific Beta), a base daily
  ``purchase_rate`` (Gamma, times segment and engagement multipliers), a browse ratio
  ``views_per_purchase`` and a ``basket_mean`` (lognormal, lower for price-sensitive
  customers).
* **Churn.** Constant daily hazard per customer::

      hazard = h0 * segment_hazard * exp(engagement_churn_coef * (0.5 - engagement)
                                         + price_churn_coef * (price_sensitivity - 0.35))

  ``h0`` is solved so that the population-average probability of churning within 182 days
  equals ``churn_6m``. The churn day is geometric from signup (or from ``start`` for
  customers who already existed). From the churn day on, the customer never buys or
  browses again. Churn dates at or after ``end`` are reported as ``NaT`` (still active),
  but their pre-churn decay may already be visible at the end of the log.
* **Disengagement before churn.** Over the ``decay_days`` days before the churn day every
  activity rate is multiplied by a factor falling linearly from 1 to ``decay_floor``; this
  is what makes churn predictable from recency/frequency/trend features.
* **Daily activity.** Per (customer, day) Poisson counts of purchases (rate x weekday
  factor), add-to-cart events (``carts_per_purchase`` x that) and views
  (``views_per_purchase`` x that). Times of day are uniform (whole seconds).
* **Items.** Popularity is Zipf-like (``rank ** -zipf_exponent``, ranks randomly assigned
  to item ids, normalised to sum 1). Every event's item is drawn with probability
  ``∝ popularity ** popularity_beta * exp(user_factor · item_factor / affinity_temperature)``
  where factors are N(0, 1/n_factors) (users) and N(0, 1) (items), so the affinity has unit
  scale. Purchases, carts and views share this taste model, so interactions carry a real
  personal signal for collaborative filtering.
* **Interactions** contain views (weight 1), add-to-carts (weight 3) and every purchase
  (weight 5, same timestamp and item as its transaction row).
* **Incident** (optional, :class:`Incident`): a tracking bug that multiplies the recorded
  ``amount`` of a share of customers' orders in ``[start, end)`` (e.g. x100: cents sent as
  units). Only the recorded amounts change; behaviour, churn dates and every other row are
  those of the same shop without the incident (the bug draws from its own stream), and the
  affected customers are returned, so the ground truth stays what the shop did.

Same seed and config produce bit-for-bit identical frames and arrays.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

__all__ = [
    "CART_WEIGHT",
    "PURCHASE_WEIGHT",
    "SEGMENTS",
    "VIEW_WEIGHT",
    "Incident",
    "Segment",
    "SyntheticConfig",
    "SyntheticShop",
    "generate_shop",
]

VIEW_WEIGHT = 1.0
"""Interaction weight of a product view (weakest implicit signal)."""
CART_WEIGHT = 3.0
"""Interaction weight of an add-to-cart (intent without a completed purchase)."""
PURCHASE_WEIGHT = 5.0
"""Interaction weight of a purchase (strongest implicit signal)."""

_NS_PER_DAY = 86_400 * 1_000_000_000
_NS_PER_SECOND = 1_000_000_000
_SIX_MONTHS_DAYS = 182
# Bound the (customers x items) probability matrix of one chunk to ~this many cells.
_CHUNK_CELLS = 4_000_000


@dataclass(frozen=True)
class Segment:
    """A customer archetype; multipliers are relative to an average customer.

    Kept as explicit ground truth so tests can assert that segment drives churn.
    """

    name: str
    share: float  # population share
    rate_mult: float  # multiplies the base purchase rate
    hazard_mult: float  # multiplies the churn hazard
    price_beta: tuple[float, float]  # Beta(a, b) of price sensitivity


SEGMENTS: tuple[Segment, ...] = (
    Segment("loyal", 0.15, 1.6, 0.35, (2.0, 6.0)),
    Segment("regular", 0.45, 1.0, 0.9, (2.0, 4.0)),
    Segment("deal_seeker", 0.20, 0.9, 1.4, (6.0, 2.0)),
    Segment("casual", 0.20, 0.55, 1.8, (2.0, 3.0)),
)
"""Customer segments; shares sum to 1 and the share-weighted rate multiplier is ~1."""


@dataclass(frozen=True)
class Incident:
    """A planted data incident, so a demo can show a gate saying no on data it should refuse."""

    start: datetime.date
    end: datetime.date  # exclusive
    share: float = 0.5  # share of customers whose orders the bug hits
    factor: float = 100.0  # recorded amount = true amount x factor

    def __post_init__(self) -> None:
        if self.end <= self.start:
            raise ValueError(f"incident end ({self.end}) must be after start ({self.start})")
        if not 0.0 < self.share <= 1.0 or self.factor <= 0:
            raise ValueError("incident share must be in (0, 1] and factor > 0")


@dataclass(frozen=True)
class SyntheticConfig:
    """All knobs of the synthetic shop; the defaults give a plausible mid-size shop.

    Changing any field (including ``seed``) changes the generated data; identical configs
    always give identical data.
    """

    start: datetime.date  # first day of data
    end: datetime.date  # exclusive end day
    seed: int = 7
    n_customers: int = 5000
    n_items: int = 1000
    n_factors: int = 8  # latent taste dimensions
    # False: purchases only (an orders export with no clickstream); the interactions frame is
    # empty and memory holds one chunk's events at most. Transactions are the same either way.
    interactions: bool = True
    # --- population -----------------------------------------------------------------
    initial_share: float = 0.5  # share of customers already signed up at `start`
    prior_tenure_days: int = 365  # their signup dates are spread over this many prior days
    # --- purchasing -----------------------------------------------------------------
    purchase_rate: float = 0.12  # mean daily purchase rate of an active customer (~1/8 days)
    purchase_rate_shape: float = 2.0  # Gamma shape of per-customer rates (lower = more spread)
    engagement_rate_coef: float = 1.5  # log-rate per unit engagement (engaged buy more)
    weekend_boost: float = 1.25  # Sat/Sun activity relative to weekdays (weekly mean kept)
    basket_mean: float = 40.0  # mean basket value of an average customer
    basket_sigma: float = 0.5  # lognormal sd of per-customer basket means
    amount_sigma: float = 0.35  # lognormal sd of single amounts around the customer's mean
    price_basket_coef: float = 0.6  # log-basket drop per unit price sensitivity
    min_amount: float = 1.0  # floor for an order amount
    # --- browsing -------------------------------------------------------------------
    views_per_purchase: float = 6.0  # mean views per purchase (per-customer, lognormal)
    views_sigma: float = 0.4  # lognormal sd of the per-customer browse ratio
    carts_per_purchase: float = 0.8  # add-to-cart events per purchase
    # --- churn ----------------------------------------------------------------------
    churn_6m: float = 0.33  # population-average probability of churning within 182 days
    engagement_churn_coef: float = 3.0  # log-hazard per unit *drop* in engagement
    price_churn_coef: float = 1.5  # log-hazard per unit price sensitivity
    decay_days: int = 40  # activity decays over this many days before the churn day
    decay_floor: float = 0.1  # activity multiplier reached on the last day before churn
    # --- items & tastes -------------------------------------------------------------
    zipf_exponent: float = 1.0  # popularity ∝ rank ** -zipf_exponent
    popularity_beta: float = 1.0  # exponent on popularity in the choice model
    affinity_temperature: float = 0.6  # lower = more personal (taste dominates popularity)
    incident: Incident | None = None  # off by default: the shop records what happened

    def __post_init__(self) -> None:
        """Fail early on configs that would silently produce nonsense."""
        if self.end <= self.start:
            raise ValueError(f"end ({self.end}) must be after start ({self.start})")
        if self.n_customers < 1 or self.n_items < 1 or self.n_factors < 1:
            raise ValueError("n_customers, n_items and n_factors must be positive")
        if not 0.0 <= self.initial_share <= 1.0:
            raise ValueError("initial_share must be in [0, 1]")
        if not 0.0 < self.churn_6m < 1.0:
            raise ValueError("churn_6m must be in (0, 1)")
        if not 0.0 <= self.decay_floor <= 1.0:
            raise ValueError("decay_floor must be in [0, 1]")
        positives = {
            "purchase_rate": self.purchase_rate,
            "purchase_rate_shape": self.purchase_rate_shape,
            "basket_mean": self.basket_mean,
            "min_amount": self.min_amount,
            "weekend_boost": self.weekend_boost,
            "affinity_temperature": self.affinity_temperature,
        }
        for name, value in positives.items():
            if value <= 0:
                raise ValueError(f"{name} must be > 0, got {value}")
        if self.views_per_purchase < 0 or self.carts_per_purchase < 0:
            raise ValueError("views_per_purchase and carts_per_purchase must be >= 0")
        if self.decay_days < 0 or self.prior_tenure_days < 0:
            raise ValueError("decay_days and prior_tenure_days must be >= 0")

    @property
    def n_days(self) -> int:
        """Number of days in ``[start, end)``."""
        return (self.end - self.start).days


@dataclass(frozen=True)
class SyntheticShop:
    """Generated event logs plus the ground truth that produced them."""

    transactions: pd.DataFrame  # customer_id, timestamp, amount, item_id
    interactions: pd.DataFrame  # user_id, item_id, timestamp, weight
    customers: pd.DataFrame  # one row per customer: drivers and true churn date
    user_factors: np.ndarray  # (n_customers, n_factors); row i <-> customers.customer_id[i]
    item_factors: np.ndarray  # (n_items, n_factors); row j <-> item_id j + 1
    item_popularity: np.ndarray  # (n_items,) popularity weights, sum 1; index j <-> item j + 1
    # Customer ids whose recorded amounts the incident multiplied (empty without one).
    incident_customers: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))


@dataclass(frozen=True)
class _Population:
    """Per-customer drivers, as arrays indexed by customer position (id - 1)."""

    signup_idx: np.ndarray  # int64 day index relative to start (negative = before start)
    churn_idx: np.ndarray  # int64 latent churn day index (may be >= n_days)
    segment: np.ndarray  # int64 index into SEGMENTS
    engagement: np.ndarray
    price_sensitivity: np.ndarray
    purchase_rate: np.ndarray
    views_ratio: np.ndarray
    basket_mean: np.ndarray
    hazard: np.ndarray


def _solve_base_hazard(mult: np.ndarray, target: float, horizon: int) -> float:
    """Find h0 with mean(1 - exp(-horizon * h0 * mult)) == target by bisection in log space.

    Calibrating the base hazard (instead of exposing it) keeps the churn share stable while
    the driver coefficients are tuned.
    """
    lo, hi = -30.0, 5.0
    for _ in range(80):
        mid = 0.5 * (lo + hi)
        share = float(np.mean(-np.expm1(-horizon * np.exp(mid) * mult)))
        if share < target:
            lo = mid
        else:
            hi = mid
    return float(np.exp(0.5 * (lo + hi)))


def _sample_population(cfg: SyntheticConfig, rng: np.random.Generator) -> _Population:
    """Sample signup, drivers and the latent churn day of every customer."""
    n, n_days = cfg.n_customers, cfg.n_days
    n_initial = round(cfg.initial_share * n)
    if cfg.prior_tenure_days > 0:
        prior = rng.integers(-cfg.prior_tenure_days, 0, size=n_initial)
    else:
        prior = np.zeros(n_initial, dtype=np.int64)
    arrivals = rng.integers(0, n_days, size=n - n_initial)
    # Auto-increment ids: sort by signup day so customer_id grows with signup date.
    signup_idx = np.sort(np.concatenate([prior, arrivals]).astype(np.int64), kind="stable")

    shares = np.array([s.share for s in SEGMENTS])
    segment = rng.choice(len(SEGMENTS), size=n, p=shares / shares.sum()).astype(np.int64)
    engagement = rng.beta(2.0, 2.0, size=n)
    price_a = np.array([s.price_beta[0] for s in SEGMENTS])[segment]
    price_b = np.array([s.price_beta[1] for s in SEGMENTS])[segment]
    price_sensitivity = rng.beta(price_a, price_b)

    rate_mult = np.array([s.rate_mult for s in SEGMENTS])[segment]
    base_rate = rng.gamma(cfg.purchase_rate_shape, 1.0 / cfg.purchase_rate_shape, size=n)
    # exp(c*(e-0.5)) with e~Beta(2,2) has mean slightly > 1; normalise it back to 1
    # (midpoint rule on the Beta(2, 2) density 6x(1-x)).
    grid = (np.arange(2000) + 0.5) / 2000
    eng_norm = np.mean(6 * grid * (1 - grid) * np.exp(cfg.engagement_rate_coef * (grid - 0.5)))
    eng_mult = np.exp(cfg.engagement_rate_coef * (engagement - 0.5)) / eng_norm
    purchase_rate = cfg.purchase_rate * base_rate * rate_mult * eng_mult

    views_ratio = cfg.views_per_purchase * rng.lognormal(
        -0.5 * cfg.views_sigma**2, cfg.views_sigma, size=n
    )
    basket_mean = cfg.basket_mean * rng.lognormal(
        -0.5 * cfg.basket_sigma**2 - cfg.price_basket_coef * (price_sensitivity - 0.35),
        cfg.basket_sigma,
    )

    hazard_mult = np.array([s.hazard_mult for s in SEGMENTS])[segment] * np.exp(
        cfg.engagement_churn_coef * (0.5 - engagement)
        + cfg.price_churn_coef * (price_sensitivity - 0.35)
    )
    hazard = _solve_base_hazard(hazard_mult, cfg.churn_6m, _SIX_MONTHS_DAYS) * hazard_mult
    # Days until churn, counted from signup (or from `start` for pre-existing customers).
    days_to_churn = rng.geometric(-np.expm1(-hazard)).astype(np.int64)
    churn_idx = np.maximum(signup_idx, 0) + days_to_churn

    return _Population(
        signup_idx=signup_idx,
        churn_idx=churn_idx,
        segment=segment,
        engagement=engagement,
        price_sensitivity=price_sensitivity,
        purchase_rate=purchase_rate,
        views_ratio=views_ratio,
        basket_mean=basket_mean,
        hazard=hazard,
    )


def _sample_catalogue(
    cfg: SyntheticConfig, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sample true user tastes, item factors and Zipf popularity (ranks shuffled over ids)."""
    user_factors = rng.normal(0.0, 1.0 / np.sqrt(cfg.n_factors), (cfg.n_customers, cfg.n_factors))
    item_factors = rng.normal(0.0, 1.0, (cfg.n_items, cfg.n_factors))
    ranks = rng.permutation(cfg.n_items) + 1
    popularity = ranks.astype(np.float64) ** -cfg.zipf_exponent
    popularity /= popularity.sum()
    return user_factors, item_factors, popularity


def _day_multipliers(cfg: SyntheticConfig) -> np.ndarray:
    """Weekday activity factors with weekly mean 1, so rates keep their meaning."""
    weekday = (cfg.start.weekday() + np.arange(cfg.n_days)) % 7
    base = 7.0 / (5.0 + 2.0 * cfg.weekend_boost)
    return np.where(weekday >= 5, cfg.weekend_boost * base, base)


def _activity_multiplier(
    cfg: SyntheticConfig, signup_idx: np.ndarray, churn_idx: np.ndarray
) -> np.ndarray:
    """(customers, days) multiplier: 0 outside [signup, churn), linear decay before churn."""
    days = np.arange(cfg.n_days, dtype=np.int64)[None, :]
    active = (days >= signup_idx[:, None]) & (days < churn_idx[:, None])
    if cfg.decay_days > 0:
        to_churn = (churn_idx[:, None] - days).astype(np.float64)  # 1 on the last active day
        frac = np.clip((to_churn - 1.0) / cfg.decay_days, 0.0, 1.0)
        decay = cfg.decay_floor + (1.0 - cfg.decay_floor) * frac
    else:
        decay = np.ones((signup_idx.size, cfg.n_days))
    return np.where(active, decay, 0.0)


def _expand_counts(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Turn a (customers, days) count matrix into one (row, day) pair per event."""
    rows, days = np.nonzero(counts)
    reps = counts[rows, days]
    return np.repeat(rows, reps), np.repeat(days, reps)


def _sample_items(logits: np.ndarray, rows: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Draw one item index per event from the softmax of its row of ``logits``.

    Vectorised inverse-CDF sampling: each row's normalised CDF is offset by its row number,
    so a single ``searchsorted`` serves all rows.
    """
    n_rows, n_items = logits.shape
    cdf = logits  # transformed in place: the chunk's largest array is touched only once
    cdf -= cdf.max(axis=1, keepdims=True)
    np.exp(cdf, out=cdf)
    np.cumsum(cdf, axis=1, out=cdf)
    cdf /= cdf[:, -1:]
    cdf += np.arange(n_rows, dtype=np.float64)[:, None]
    u = rng.random(rows.size) + rows
    # Searching in sorted order is cache-friendly (several times faster on big chunks).
    order = np.argsort(u)
    flat = np.empty(u.size, dtype=np.int64)
    flat[order] = np.searchsorted(cdf.ravel(), u[order], side="right")
    # Rounding of `u + row` can spill into the next row; clamp back to the last item.
    return np.minimum(flat - rows * n_items, n_items - 1).astype(np.int64)


def _timestamps(cfg: SyntheticConfig, days: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Naive timestamps (ns since epoch) at a uniform whole second within each day."""
    start_ns = np.datetime64(cfg.start, "ns").astype(np.int64)
    seconds = rng.integers(0, 86_400, size=days.size, dtype=np.int64)
    return start_ns + days.astype(np.int64) * _NS_PER_DAY + seconds * _NS_PER_SECOND


@dataclass(frozen=True)
class _Catalogue:
    """True tastes and popularity, shared by all chunks."""

    user_factors: np.ndarray
    item_factors: np.ndarray
    popularity: np.ndarray


@dataclass(frozen=True)
class _Events:
    """Events of one chunk: the first ``n_buy`` rows are purchases (with ``amount``)."""

    user: np.ndarray
    item: np.ndarray
    ts: np.ndarray
    weight: np.ndarray
    amount: np.ndarray
    n_buy: int


def _generate_chunk(
    cfg: SyntheticConfig,
    pop: _Population,
    cat: _Catalogue,
    rows_slice: slice,
    rng: np.random.Generator,
) -> _Events:
    """Generate all events of the customers in ``rows_slice`` (bounded memory, own stream)."""
    lo = int(rows_slice.start)
    mult = _activity_multiplier(cfg, pop.signup_idx[rows_slice], pop.churn_idx[rows_slice])
    rate = pop.purchase_rate[rows_slice, None] * _day_multipliers(cfg)[None, :] * mult
    buy_counts = rng.poisson(rate)
    cart_counts = rng.poisson(rate * cfg.carts_per_purchase)
    view_counts = rng.poisson(rate * pop.views_ratio[rows_slice, None])

    buy_rows, buy_days = _expand_counts(buy_counts)
    cart_rows, cart_days = _expand_counts(cart_counts)
    view_rows, view_days = _expand_counts(view_counts)
    rows = np.concatenate([buy_rows, cart_rows, view_rows])
    days = np.concatenate([buy_days, cart_days, view_days])

    logits = cat.user_factors[rows_slice] @ cat.item_factors.T
    logits /= cfg.affinity_temperature
    logits += cfg.popularity_beta * np.log(cat.popularity)[None, :]
    items = _sample_items(logits, rows, rng)
    ts = _timestamps(cfg, days, rng)
    weight = np.concatenate(
        [
            np.full(buy_rows.size, PURCHASE_WEIGHT),
            np.full(cart_rows.size, CART_WEIGHT),
            np.full(view_rows.size, VIEW_WEIGHT),
        ]
    )
    noise = rng.lognormal(-0.5 * cfg.amount_sigma**2, cfg.amount_sigma, size=buy_rows.size)
    amount = np.maximum(np.round(pop.basket_mean[lo + buy_rows] * noise, 2), cfg.min_amount)
    return _Events(
        user=rows.astype(np.int64) + lo + 1,
        item=items + 1,
        ts=ts,
        weight=weight,
        amount=amount,
        n_buy=int(buy_rows.size),
    )


def _time_order(cfg: SyntheticConfig, ts: np.ndarray, user: np.ndarray) -> np.ndarray:
    """Stable permutation sorting events by (timestamp, user).

    One int64 key with a stable argsort is ~4x faster than ``np.lexsort`` on millions of rows;
    stability keeps the remaining ties in (deterministic) generation order.
    """
    start_ns = np.datetime64(cfg.start, "ns").astype(np.int64)
    n_users = cfg.n_customers + 1
    if cfg.n_days * 86_400 * n_users < np.iinfo(np.int64).max:
        key = (ts - start_ns) // _NS_PER_SECOND * n_users + user
        return np.argsort(key, kind="stable")
    return np.lexsort((user, ts))


def _customers_frame(cfg: SyntheticConfig, pop: _Population) -> pd.DataFrame:
    """Ground-truth customer table; churn_date is NaT when the churn day is not before end."""
    start_ns = np.datetime64(cfg.start, "ns").astype(np.int64)
    signup = (start_ns + pop.signup_idx * _NS_PER_DAY).view("datetime64[ns]")
    churned = pop.churn_idx < cfg.n_days
    churn = (start_ns + np.where(churned, pop.churn_idx, 0) * _NS_PER_DAY).view("datetime64[ns]")
    churn = np.where(churned, churn, np.datetime64("NaT", "ns"))
    names = np.array([s.name for s in SEGMENTS], dtype=object)
    return pd.DataFrame(
        {
            "customer_id": np.arange(1, cfg.n_customers + 1, dtype=np.int64),
            "signup_date": pd.Series(signup, dtype="datetime64[ns]"),
            "churn_date": pd.Series(churn, dtype="datetime64[ns]"),
            "segment": names[pop.segment],
            "engagement": pop.engagement,
            "price_sensitivity": pop.price_sensitivity,
            "purchase_rate": pop.purchase_rate,
            "views_per_purchase": pop.views_ratio,
            "basket_mean": pop.basket_mean,
            "churn_hazard": pop.hazard,
        }
    )


def _apply_incident(
    cfg: SyntheticConfig, transactions: pd.DataFrame, rng: np.random.Generator
) -> tuple[pd.DataFrame, np.ndarray]:
    """Multiply the recorded amounts of the hit customers' orders inside the incident days."""
    incident = cfg.incident
    if incident is None:
        return transactions, np.empty(0, np.int64)
    n_hit = max(1, round(incident.share * cfg.n_customers))
    hit = np.sort(rng.choice(np.arange(1, cfg.n_customers + 1), size=n_hit, replace=False))
    stamps = transactions["timestamp"]
    inside = (stamps >= pd.Timestamp(incident.start)) & (stamps < pd.Timestamp(incident.end))
    rows = inside.to_numpy() & np.isin(transactions["customer_id"].to_numpy(), hit)
    amount = transactions["amount"].to_numpy().copy()
    amount[rows] = np.round(amount[rows] * incident.factor, 2)
    return transactions.assign(amount=amount), hit


def _kept(cfg: SyntheticConfig, events: _Events) -> _Events:
    """A chunk's events as kept: all of them, or only its purchases (the first ``n_buy``)."""
    if cfg.interactions:
        return events
    n = events.n_buy
    return _Events(
        events.user[:n], events.item[:n], events.ts[:n], events.weight[:n], events.amount, n
    )


def generate_shop(cfg: SyntheticConfig) -> SyntheticShop:
    """Generate the shop described by ``cfg``; deterministic in ``cfg`` (seed included)."""
    root = np.random.SeedSequence(cfg.seed)
    pop_ss, cat_ss, events_ss = root.spawn(3)
    pop = _sample_population(cfg, np.random.default_rng(pop_ss))
    cat = _Catalogue(*_sample_catalogue(cfg, np.random.default_rng(cat_ss)))

    chunk = max(1, _CHUNK_CELLS // max(cfg.n_items, cfg.n_days))
    bounds = range(0, cfg.n_customers, chunk)
    parts = [
        _kept(cfg, _generate_chunk(cfg, pop, cat, slice(lo, lo + chunk), np.random.default_rng(ss)))
        for lo, ss in zip(bounds, events_ss.spawn(len(bounds)), strict=True)
    ]

    t_user = np.concatenate([p.user[: p.n_buy] for p in parts])
    t_item = np.concatenate([p.item[: p.n_buy] for p in parts])
    t_ts = np.concatenate([p.ts[: p.n_buy] for p in parts])
    t_amount = np.concatenate([p.amount for p in parts])
    order = _time_order(cfg, t_ts, t_user)
    transactions = pd.DataFrame(
        {
            "customer_id": t_user[order],
            "timestamp": t_ts[order].view("datetime64[ns]"),
            "amount": t_amount[order],
            "item_id": t_item[order],
        }
    )

    i_user = np.concatenate([p.user for p in parts])
    i_item = np.concatenate([p.item for p in parts])
    i_ts = np.concatenate([p.ts for p in parts])
    i_weight = np.concatenate([p.weight for p in parts])
    # Ties (same user, same second) keep generation order: purchase, then cart, then view.
    order = _time_order(cfg, i_ts, i_user)
    interactions = pd.DataFrame(
        {
            "user_id": i_user[order],
            "item_id": i_item[order],
            "timestamp": i_ts[order].view("datetime64[ns]"),
            "weight": i_weight[order],
        }
    )
    if not cfg.interactions:  # the chunks kept purchases only: no clickstream at all
        interactions = interactions.iloc[:0]

    # A fourth child stream: the first three (and so every row) are unchanged by an incident.
    (incident_ss,) = root.spawn(1)
    transactions, hit = _apply_incident(cfg, transactions, np.random.default_rng(incident_ss))
    return SyntheticShop(
        transactions=transactions,
        interactions=interactions,
        customers=_customers_frame(cfg, pop),
        user_factors=cat.user_factors,
        item_factors=cat.item_factors,
        item_popularity=cat.popularity,
        incident_customers=hit,
    )
