"""Point-in-time customer features and churn labels, computed for a range of days at once.

Both work on a dense day × customer grid of daily activity with cumulative sums, so a window
sum for every (day, customer) is one subtraction: a year of days costs about what one day does.
Customers are processed in chunks that bound the grid's cells, so memory does not grow with
customers × days. A feature row for day D reads only activity up to and including D: windowed
sums over (D - W, D] and lifetime aggregates (first/last purchase, lifetime count and spend)
carried in from a ``prior`` state of everything before the grid. That is what makes them
point-in-time correct and makes a one-day run give the same rows as a range run.

The population of day D is every customer with a purchase on or before D (optionally leaving
out those dormant for more than ``max_dormant_days``): a long-dormant customer is the likeliest
churner, so dropping them would hide exactly the customers a score table is for.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import pandas as pd
import pandera.pandas as pa
import pyarrow
import pyarrow.compute as pc

from lifecycle.feature_kernel import (
    TEXT_IDS,
    CodedActivity,
    cumsum0,
    daily_grids,
    feature_blocks,
    text_ids,
)

ACTIVITY_COLUMNS = ("activity_date", "customer_id", "txn_count", "spend", "max_amount")
PRIOR_COLUMNS = ("customer_id", "first_date", "last_date", "txn_count", "spend", "active_days")


def daily_activity(transactions: pd.DataFrame) -> pd.DataFrame:
    """One row per customer per local day with at least one purchase."""
    grouped = transactions.groupby(["event_date", "customer_id"], sort=True)["amount"]
    out = grouped.agg(txn_count="size", spend="sum", max_amount="max").reset_index()
    out = out.rename(columns={"event_date": "activity_date"})
    out["txn_count"] = out["txn_count"].astype("int64")
    out["customer_id"] = out["customer_id"].astype(object)
    return out.loc[:, list(ACTIVITY_COLUMNS)]


def lifetime_columns() -> list[str]:
    return [
        "recency_days",
        "tenure_days",
        "lifetime_active_days",
        "lifetime_txn_count",
        "lifetime_spend",
        "lifetime_avg_basket",
    ]


def feature_columns(windows: Sequence[int]) -> list[str]:
    """The model's input columns, in a fixed order shared by training and scoring."""
    longest = max(windows)
    cols = [*lifetime_columns(), f"active_days_{longest}d"]
    for w in windows:
        cols += [f"txn_count_{w}d", f"spend_{w}d"]
    cols += [f"avg_basket_{longest}d", "trend_short_long"]
    return cols


def in_day_order(day: np.ndarray, rising: np.ndarray) -> bool:
    """Every row after its neighbour: a later day, or the same day and a larger key (``rising``:
    each row's key above the previous row's). One vectorised pass, no sort."""
    return bool(np.all((day[1:] > day[:-1]) | ((day[1:] == day[:-1]) & rising)))


def unique_day_rows(frame: pd.DataFrame) -> bool | pd.Series:
    """Each (as_of_date, customer_id) at most once. Rows sorted by both, as the kernel yields
    them, prove it by comparing neighbours in one vectorised pass: pandera's ``unique`` hashes
    every row (80% of validating a 500k-row chunk). Any other order gets the hash test, which
    marks every duplicated row as a failure case."""
    if len(frame) < 2:
        return True
    day = frame["as_of_date"].to_numpy()
    try:
        ids = pyarrow.array(frame["customer_id"], from_pandas=True)
        rising = pc.fill_null(pc.greater(ids[1:], ids[:-1]), False).to_numpy(zero_copy_only=False)
        if in_day_order(day, rising):
            return True
    except (pyarrow.ArrowInvalid, pyarrow.ArrowNotImplementedError, TypeError):
        pass  # ids Arrow cannot compare (mixed types): the hash test below decides
    return ~frame.duplicated(["as_of_date", "customer_id"], keep=False)


UNIQUE_DAY_ROWS = pa.Check(
    unique_day_rows,
    name="unique_as_of_date_customer_id",
    error="a customer appears more than once on one as_of_date",
)


def features_schema(windows: Sequence[int]) -> pa.DataFrameSchema:
    """A feature row: one customer as of one day, every value a finite non-negative number."""
    columns = {
        "as_of_date": pa.Column("datetime64[ns]"),
        "customer_id": pa.Column(TEXT_IDS),
        **{name: pa.Column("float64", pa.Check.ge(0)) for name in feature_columns(windows)},
    }
    return pa.DataFrameSchema(
        columns, checks=[UNIQUE_DAY_ROWS], strict=True, name="CustomerFeatures"
    )


LABELS_SCHEMA = pa.DataFrameSchema(
    {
        "as_of_date": pa.Column("datetime64[ns]"),
        "customer_id": pa.Column(str),
        "purchases_in_horizon": pa.Column("int64", pa.Check.ge(0)),
        "churned": pa.Column("int64", pa.Check.isin([0, 1])),
    },
    checks=[UNIQUE_DAY_ROWS],
    strict=True,
    name="ChurnLabels",
)


def lifetime_before(activity: pd.DataFrame, day: pd.Timestamp) -> pd.DataFrame:
    """Per customer, the lifetime aggregates of activity strictly before ``day``.

    The asset gets the same frame from one SQL group-by over the warehouse; this pure version
    is the reference it is tested against.
    """
    before = activity[activity["activity_date"] < day]
    grouped = before.groupby("customer_id", sort=True)
    out = grouped.agg(
        first_date=("activity_date", "min"),
        last_date=("activity_date", "max"),
        txn_count=("txn_count", "sum"),
        spend=("spend", "sum"),
        active_days=("activity_date", "size"),
    ).reset_index()
    return _typed_prior(out)


def _typed_prior(prior: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": prior["customer_id"].astype(object),
            "first_date": pd.to_datetime(prior["first_date"]).astype("datetime64[ns]"),
            "last_date": pd.to_datetime(prior["last_date"]).astype("datetime64[ns]"),
            "txn_count": prior["txn_count"].astype("float64"),
            "spend": prior["spend"].astype("float64"),
            "active_days": prior["active_days"].astype("float64"),
        }
    )


def empty_prior() -> pd.DataFrame:
    return _typed_prior(pd.DataFrame({c: [] for c in PRIOR_COLUMNS}))


def _customer_codes(
    activity_ids: pd.Series, prior_ids: pd.Series
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sorted unique ids and each row's position among them, hashing every text id once
    (at 1M customers, hashing and sorting text ids again and again was half a feature day)."""
    both = pd.concat([activity_ids.astype(object), prior_ids.astype(object)], ignore_index=True)
    codes, uniques = pd.factorize(both, sort=True)
    n = len(activity_ids)
    return np.asarray(uniques, dtype=object), codes[:n], codes[n:]


def _sorted_ids(*columns: pd.Series) -> np.ndarray:
    ids = pd.unique(pd.concat([c.astype(object) for c in columns], ignore_index=True))
    return np.sort(np.asarray(ids, dtype=object))


def customer_features(
    activity: pd.DataFrame,
    as_of_days: pd.DatetimeIndex,
    windows: Sequence[int],
    prior: pd.DataFrame | None = None,
    max_dormant_days: int | None = None,
) -> pd.DataFrame:
    """Features of every known customer as of each D in ``as_of_days``, in (day, customer) order.

    ``activity`` must cover (min D - W, max D] (W the longest window); rows before that are
    folded into the lifetime state. ``prior`` holds the lifetime aggregates of activity before
    the earliest row of ``activity`` (see :func:`lifetime_before`); omit it when ``activity``
    starts at the beginning of the data. A customer belongs to day D once their first purchase
    is on or before D, and is left out when ``max_dormant_days`` is set and they have not bought
    for longer than that (``attrs["left_out_dormant"]`` counts those (day, customer) pairs).
    """
    coded = code_activity(activity, as_of_days, windows, prior)
    blocks = list(feature_blocks(coded, as_of_days, windows, max_dormant_days))
    if not blocks:
        out = empty_features(windows, ids=object)
        out.attrs["left_out_dormant"] = 0
        return out
    out = pd.concat([b.frame for b in blocks], ignore_index=True)
    # (day, customer) order by integer positions: customers are sorted ids, and sorting a
    # million text ids again cost more than computing the features.
    days_at = np.concatenate([b.day_rows for b in blocks])
    customers_at = np.concatenate([b.customer_positions for b in blocks])
    # In memory: plain str ids, each row pointing at its customer's one string (not a copy).
    out["customer_id"] = coded.customers.to_numpy(zero_copy_only=False)[customers_at]
    out = out.take(np.lexsort((customers_at, days_at))).reset_index(drop=True)
    out.attrs["left_out_dormant"] = sum(b.left_out for b in blocks)
    return out


def customer_feature_chunks(
    activity: pd.DataFrame,
    as_of_days: pd.DatetimeIndex,
    windows: Sequence[int],
    prior: pd.DataFrame | None = None,
    max_dormant_days: int | None = None,
    chunk_rows: int = 500_000,
) -> Iterator[pd.DataFrame]:
    """The rows of :func:`customer_features` as frames of about ``chunk_rows`` rows each (whole
    customers, every day of ``as_of_days``; each frame in (day, customer) order, customers of
    different frames disjoint), so a million customers over months is written without ever
    holding the whole table. Ids are Arrow strings (:data:`TEXT_IDS`): the frames are written,
    not worked on. Each frame's ``attrs`` count its own ``left_out_dormant`` (day, customer)
    pairs and its ``customers``."""
    coded = code_activity(activity, as_of_days, windows, prior)
    yield from coded_feature_chunks(coded, as_of_days, windows, max_dormant_days, chunk_rows)


def coded_feature_chunks(
    coded: CodedActivity,
    as_of_days: pd.DatetimeIndex,
    windows: Sequence[int],
    max_dormant_days: int | None = None,
    chunk_rows: int = 500_000,
) -> Iterator[pd.DataFrame]:
    """:func:`customer_feature_chunks` of activity already coded (the warehouse's SQL read,
    :func:`lifecycle.feature_sql.coded_window`, whose window starts W - 1 days before the
    first as-of day)."""
    per_chunk = max(1, chunk_rows // max(len(as_of_days), 1))
    for block in feature_blocks(coded, as_of_days, windows, max_dormant_days, per_chunk):
        frame = block.frame
        positions = block.customer_positions
        if not in_day_order(block.day_rows, positions[1:] > positions[:-1]):  # the kernel's order
            order = np.lexsort((block.customer_positions, block.day_rows))
            frame = frame.take(order).reset_index(drop=True)
        frame.attrs["left_out_dormant"] = block.left_out
        positions = block.customer_positions
        frame.attrs["customers"] = (
            int(np.count_nonzero(np.bincount(positions - positions.min()))) if len(positions) else 0
        )
        yield frame


def code_activity(
    activity: pd.DataFrame,
    as_of_days: pd.DatetimeIndex,
    windows: Sequence[int],
    prior: pd.DataFrame | None,
) -> CodedActivity:
    """The frame path into the kernel: rows before the longest window folded into the
    lifetime state, text ids hashed into codes once."""
    first_day = as_of_days.min() - pd.Timedelta(days=max(windows) - 1)
    earlier = activity[activity["activity_date"] < first_day]
    state = empty_prior() if prior is None else _typed_prior(prior)
    if len(earlier):
        state = _merge_prior(state, lifetime_before(earlier, first_day))
    activity = activity[activity["activity_date"] >= first_day]
    customers, codes, prior_codes = _customer_codes(activity["customer_id"], state["customer_id"])
    base = state.drop(columns="customer_id").set_axis(prior_codes).reindex(range(len(customers)))

    def offset(column: str) -> np.ndarray:
        return ((base[column] - first_day).dt.days).to_numpy(dtype=np.float64)

    def total(column: str) -> np.ndarray:
        return np.nan_to_num(base[column].to_numpy(dtype=np.float64))

    return CodedActivity(
        customers=text_ids(customers),
        first_day=first_day,
        day=((activity["activity_date"] - first_day).dt.days).to_numpy(dtype=np.int64),
        code=np.asarray(codes, dtype=np.int64),
        txn_count=activity["txn_count"].to_numpy(dtype=np.float64),
        spend=activity["spend"].to_numpy(dtype=np.float64),
        prior_first=offset("first_date"),
        prior_last=offset("last_date"),
        prior_count=total("txn_count"),
        prior_spend=total("spend"),
        prior_days=total("active_days"),
    )


def _merge_prior(a: pd.DataFrame, b: pd.DataFrame) -> pd.DataFrame:
    """Combine two lifetime states (of disjoint day ranges)."""
    both = pd.concat([a, b], ignore_index=True)
    grouped = both.groupby("customer_id", sort=True)
    out = grouped.agg(
        first_date=("first_date", "min"),
        last_date=("last_date", "max"),
        txn_count=("txn_count", "sum"),
        spend=("spend", "sum"),
        active_days=("active_days", "sum"),
    ).reset_index()
    return _typed_prior(out)


def empty_features(windows: Sequence[int], ids: object = TEXT_IDS) -> pd.DataFrame:
    """No feature rows, with the columns and types of a chunk (``ids``: the id column's type)."""
    return pd.DataFrame(
        {
            "as_of_date": pd.Series(dtype="datetime64[ns]"),
            "customer_id": pd.Series(dtype=ids),
            **{c: pd.Series(dtype="float64") for c in feature_columns(windows)},
        }
    )


def _horizon_sums(
    population: pd.DataFrame, activity: pd.DataFrame, horizon_days: int, field: str
) -> np.ndarray:
    """Per population row (as_of_date D, customer_id), the sum of the activity grid's ``field``
    (``count`` or ``spend``) over (D, D + H]: one cumulative grid, no loop over days or
    customers. Several rows of one customer-day add up first (the grid keeps one per cell)."""
    days = pd.DatetimeIndex(population["as_of_date"].unique()).sort_values()
    first_day = days.min()
    n_days = (days.max() - first_day).days + horizon_days + 1
    customers = _sorted_ids(population["customer_id"])
    daily = activity.groupby(["activity_date", "customer_id"], sort=False, as_index=False).agg(
        txn_count=("txn_count", "sum"), spend=("spend", "sum")
    )
    day_of = (population["as_of_date"] - first_day).dt.days.to_numpy()
    col_of = pd.Index(customers).get_indexer(population["customer_id"].to_numpy())
    sums = np.zeros(len(population), dtype=np.float64)
    day = ((daily["activity_date"] - first_day).dt.days).to_numpy()
    code = pd.Index(customers).get_indexer(daily["customer_id"].to_numpy())
    counts, spends = daily["txn_count"].to_numpy(), daily["spend"].to_numpy()
    for lo, grid in daily_grids(day, code, counts, spends, customers, n_days):
        cum = cumsum0(getattr(grid, field))
        mine = (col_of >= lo) & (col_of < lo + len(grid.customers))
        row, col = day_of[mine], col_of[mine] - lo
        sums[mine] = cum[row + horizon_days + 1, col] - cum[row + 1, col]
    return sums


def _per_row(population: pd.DataFrame, columns: dict[str, pd.Series | np.ndarray]) -> pd.DataFrame:
    out = pd.DataFrame(
        {
            "as_of_date": pd.to_datetime(population["as_of_date"]).to_numpy(),
            "customer_id": population["customer_id"].astype(object).to_numpy(),
            **columns,
        }
    )
    return out.sort_values(["as_of_date", "customer_id"], kind="stable").reset_index(drop=True)


def churn_labels(
    population: pd.DataFrame, activity: pd.DataFrame, horizon_days: int
) -> pd.DataFrame:
    """``churned`` = 1 when a customer in ``population`` (as_of_date, customer_id) makes no purchase
    in (D, D + H]. ``activity`` must cover (min D, max D + H]; rows outside are ignored.
    """
    if population.empty:
        empty = {"purchases_in_horizon": np.array([], "int64"), "churned": np.array([], "int64")}
        return _per_row(population, empty)  # type: ignore[arg-type]
    purchases = np.rint(_horizon_sums(population, activity, horizon_days, "count")).astype(np.int64)
    return _per_row(
        population,
        {"purchases_in_horizon": purchases, "churned": (purchases == 0).astype("int64")},
    )


def future_spend(
    population: pd.DataFrame, activity: pd.DataFrame, horizon_days: int
) -> pd.DataFrame:
    """``future_spend`` = what a customer in ``population`` (as_of_date, customer_id) spends in
    (D, D + H], the value family's label; the same window as :func:`churn_labels`, so every
    churned row has no spend. ``activity`` must cover (min D, max D + H]; rows outside
    are ignored.
    """
    if population.empty:
        return _per_row(population, {"future_spend": np.array([], "float64")})
    spend = _horizon_sums(population, activity, horizon_days, "spend")
    # Rounded like the spend features: money, not cumulative-sum noise (and never -0.0).
    return _per_row(population, {"future_spend": np.maximum(np.round(spend, 6), 0.0)})
