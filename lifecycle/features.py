"""Point-in-time customer features and churn labels, computed for a range of days at once.

Both work on a dense day × customer grid of daily activity with cumulative sums, so a window
sum for every (day, customer) is one subtraction: a year of days costs about what one day does.
Customers are processed in chunks to bound memory. A feature row for day D reads only activity
in (D - W, D], where W is the longest window, and a label for D reads only (D, D + H]; that is
what makes them point-in-time correct and makes a one-day run give the same rows as a range run.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pandera.pandas as pa

CHUNK_CUSTOMERS = 200_000
ACTIVITY_COLUMNS = ("activity_date", "customer_id", "txn_count", "spend", "max_amount")


def daily_activity(transactions: pd.DataFrame) -> pd.DataFrame:
    """One row per customer per local day with at least one purchase."""
    grouped = transactions.groupby(["event_date", "customer_id"], sort=True)["amount"]
    out = grouped.agg(txn_count="size", spend="sum", max_amount="max").reset_index()
    out = out.rename(columns={"event_date": "activity_date"})
    out["txn_count"] = out["txn_count"].astype("int64")
    return out.loc[:, list(ACTIVITY_COLUMNS)]


def feature_columns(windows: Sequence[int]) -> list[str]:
    """The model's input columns, in a fixed order shared by training and scoring."""
    longest = max(windows)
    cols = ["recency_days", f"days_since_first_seen_{longest}d", f"active_days_{longest}d"]
    for w in windows:
        cols += [f"txn_count_{w}d", f"spend_{w}d"]
    cols += [f"avg_basket_{longest}d", "trend_short_long"]
    return cols


def features_schema(windows: Sequence[int]) -> pa.DataFrameSchema:
    """A feature row: one customer as of one day, every value a finite non-negative number."""
    longest = max(windows)
    columns = {
        "as_of_date": pa.Column("datetime64[ns]"),
        "customer_id": pa.Column("int64", pa.Check.ge(0)),
        **{name: pa.Column("float64", pa.Check.ge(0)) for name in feature_columns(windows)},
    }
    columns["recency_days"] = pa.Column("float64", pa.Check.in_range(0, longest - 1))
    return pa.DataFrameSchema(
        columns, unique=["as_of_date", "customer_id"], strict=True, name="CustomerFeatures"
    )


LABELS_SCHEMA = pa.DataFrameSchema(
    {
        "as_of_date": pa.Column("datetime64[ns]"),
        "customer_id": pa.Column("int64", pa.Check.ge(0)),
        "purchases_in_horizon": pa.Column("int64", pa.Check.ge(0)),
        "churned": pa.Column("int64", pa.Check.isin([0, 1])),
    },
    unique=["as_of_date", "customer_id"],
    strict=True,
    name="ChurnLabels",
)


@dataclass(frozen=True)
class _Grid:
    """Daily activity of a chunk of customers as dense (day, customer) arrays."""

    customers: np.ndarray
    count: np.ndarray
    spend: np.ndarray


def _grids(activity: pd.DataFrame, first_day: pd.Timestamp, n_days: int) -> Iterator[_Grid]:
    customers = np.unique(activity["customer_id"].to_numpy())
    day = ((activity["activity_date"] - first_day).dt.days).to_numpy()
    keep = (day >= 0) & (day < n_days)
    for lo in range(0, len(customers), CHUNK_CUSTOMERS):
        chunk = customers[lo : lo + CHUNK_CUSTOMERS]
        col = np.searchsorted(chunk, activity["customer_id"].to_numpy())
        inside = keep & (col < len(chunk))
        inside[inside] &= chunk[col[inside]] == activity["customer_id"].to_numpy()[inside]
        shape = (n_days, len(chunk))
        count = np.zeros(shape, dtype=np.float64)
        spend = np.zeros(shape, dtype=np.float64)
        idx = (day[inside], col[inside])
        count[idx] = activity["txn_count"].to_numpy()[inside]
        spend[idx] = activity["spend"].to_numpy()[inside]
        yield _Grid(chunk, count, spend)


def _window_sum(cum: np.ndarray, rows: np.ndarray, start: np.ndarray) -> np.ndarray:
    """Sum of days start..row (inclusive) from a cumulative sum with a leading zero row."""
    return cum[rows + 1] - cum[start]


def _cumsum0(values: np.ndarray) -> np.ndarray:
    out = np.zeros((values.shape[0] + 1, values.shape[1]), dtype=np.float64)
    np.cumsum(values, axis=0, out=out[1:])
    return out


def customer_features(
    activity: pd.DataFrame, as_of_days: pd.DatetimeIndex, windows: Sequence[int]
) -> pd.DataFrame:
    """Features for every customer with a purchase in (D - W, D], for each D in ``as_of_days``.

    ``activity`` must cover (min D - W, max D]; rows outside are ignored.
    """
    longest = max(windows)
    first_day = as_of_days.min() - pd.Timedelta(days=longest - 1)
    n_days = (as_of_days.max() - first_day).days + 1
    rows = np.asarray((as_of_days - first_day).days, dtype=np.int64)
    window_start = {w: np.maximum(rows + 1 - w, 0) for w in windows}
    frames = []
    for grid in _grids(activity, first_day, n_days):
        cum_count, cum_spend = _cumsum0(grid.count), _cumsum0(grid.spend)
        active = grid.count > 0
        day_idx = np.arange(n_days, dtype=np.float64)[:, None]
        last_active = np.maximum.accumulate(np.where(active, day_idx, -np.inf), axis=0)[rows]
        next_active = np.flipud(
            np.minimum.accumulate(np.flipud(np.where(active, day_idx, np.inf)), axis=0)
        )
        first_in_window = next_active[window_start[longest]]
        cols: dict[str, np.ndarray] = {
            "recency_days": rows[:, None] - last_active,
            f"days_since_first_seen_{longest}d": rows[:, None] - first_in_window,
            f"active_days_{longest}d": _window_sum(
                _cumsum0(active.astype(np.float64)), rows, window_start[longest]
            ),
        }
        for w in windows:
            cols[f"txn_count_{w}d"] = _window_sum(cum_count, rows, window_start[w])
            # Rounded so a one-day run and a range run give identical money, not ~1e-12 apart.
            cols[f"spend_{w}d"] = np.round(_window_sum(cum_spend, rows, window_start[w]), 6)
        n_long = cols[f"txn_count_{longest}d"]
        cols[f"avg_basket_{longest}d"] = cols[f"spend_{longest}d"] / np.maximum(n_long, 1)
        short = min(windows)
        # Purchase rate in the shortest window relative to the longest: < 1 means slowing down.
        cols["trend_short_long"] = (cols[f"txn_count_{short}d"] / short) / (
            np.maximum(n_long, 1) / longest
        )
        present = n_long > 0
        r, c = np.nonzero(present)
        frame = pd.DataFrame(
            {
                "as_of_date": as_of_days[r],
                "customer_id": grid.customers[c].astype("int64"),
                **{name: values[r, c].astype(np.float64) for name, values in cols.items()},
            }
        )
        frames.append(frame)
    out = pd.concat(frames, ignore_index=True) if frames else _empty_features(windows)
    return out.sort_values(["as_of_date", "customer_id"], kind="stable").reset_index(drop=True)


def _empty_features(windows: Sequence[int]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "as_of_date": pd.Series(dtype="datetime64[ns]"),
            "customer_id": pd.Series(dtype="int64"),
            **{c: pd.Series(dtype="float64") for c in feature_columns(windows)},
        }
    )


def churn_labels(
    population: pd.DataFrame, activity: pd.DataFrame, horizon_days: int
) -> pd.DataFrame:
    """``churned`` = 1 when a customer in ``population`` (as_of_date, customer_id) makes no purchase
    in (D, D + H]. ``activity`` must cover (min D, max D + H]; rows outside are ignored.
    """
    if population.empty:
        return pd.DataFrame(
            {
                "as_of_date": pd.Series(dtype="datetime64[ns]"),
                "customer_id": pd.Series(dtype="int64"),
                "purchases_in_horizon": pd.Series(dtype="int64"),
                "churned": pd.Series(dtype="int64"),
            }
        )
    days = pd.DatetimeIndex(population["as_of_date"].unique()).sort_values()
    first_day = days.min()
    n_days = (days.max() - first_day).days + horizon_days + 1
    # Every customer of the population gets a (zero) row so the grid has a column for them.
    placeholders = population[["customer_id"]].assign(
        activity_date=first_day, txn_count=0, spend=0.0
    )
    future = pd.concat([activity, placeholders], ignore_index=True)
    frames = []
    for grid in _grids(future, first_day, n_days):
        cum = _cumsum0(grid.count)
        sub = population[population["customer_id"].isin(grid.customers)]
        row = (sub["as_of_date"] - first_day).dt.days.to_numpy()
        col = np.searchsorted(grid.customers, sub["customer_id"].to_numpy())
        purchases = cum[row + horizon_days + 1, col] - cum[row + 1, col]
        frames.append(
            pd.DataFrame(
                {
                    "as_of_date": sub["as_of_date"].to_numpy(),
                    "customer_id": sub["customer_id"].to_numpy().astype("int64"),
                    "purchases_in_horizon": purchases.astype("int64"),
                    "churned": (purchases == 0).astype("int64"),
                }
            )
        )
    out = pd.concat(frames, ignore_index=True)
    return out.sort_values(["as_of_date", "customer_id"], kind="stable").reset_index(drop=True)
