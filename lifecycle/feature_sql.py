"""The feature kernel's input read from the warehouse by SQL, customers as integer codes.

DuckDB numbers the customers (in id order) and returns only numbers for the window's rows and
the lifetime state before it, so a million customers' 90 days of activity reach numpy without
a Python string per row; each id is fetched once, for the output rows, exactly as stored.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from lifecycle.feature_kernel import CodedActivity

_IDS = "_feature_ids"


def coded_window(
    con: Any, table: str, first_day: pd.Timestamp, last_day: pd.Timestamp
) -> CodedActivity:
    """Activity of ``table`` (activity_date, customer_id, txn_count, spend) from ``first_day``
    to ``last_day`` inclusive, and every earlier day folded into the lifetime state."""
    first = first_day.date()
    # Day bounds as timestamps on the column itself (``date(t) < d`` is ``t < d 00:00``): no
    # cast per row, and DuckDB can skip the row groups outside the window.
    bounds = {
        "first": first,
        "from": pd.Timestamp(first_day).normalize().to_pydatetime(),
        "to": (pd.Timestamp(last_day).normalize() + pd.Timedelta(days=1)).to_pydatetime(),
    }
    before = "activity_date < $from"
    try:
        # One pass over the history: every customer up to the window's end, numbered in id
        # order, with the lifetime state before the window beside it (zero rows: no state).
        con.execute(
            f"create or replace temp table {_IDS} as select customer_id, "
            "cast(row_number() over (order by customer_id) - 1 as bigint) code, "
            f"cast(min(activity_date) filter ({before}) as date) first_date, "
            f"cast(max(activity_date) filter ({before}) as date) last_date, "
            f"sum(txn_count) filter ({before}) txn_count, "
            f"sum(spend) filter ({before}) spend, count(*) filter ({before}) active_days "
            f"from {table} where activity_date < $to group by customer_id",
            {k: bounds[k] for k in ("from", "to")},
        )
        # As Arrow strings, straight from DuckDB: no Python string per customer.
        ids = con.sql(f"select customer_id from {_IDS} order by code").to_arrow_table()
        customers = ids.column("customer_id").combine_chunks().cast(pa.string())
        rows = con.execute(
            "select cast(cast(a.activity_date as date) - $first as bigint) day_offset, i.code, "
            "cast(a.txn_count as double) txn_count, cast(a.spend as double) spend "
            f"from {table} a join {_IDS} i using (customer_id) "
            "where a.activity_date >= $from and a.activity_date < $to order by i.code",
            bounds,
        ).fetchnumpy()
        prior = con.execute(
            "select code, cast(first_date - $first as double) first_offset, "
            "cast(last_date - $first as double) last_offset, cast(txn_count as double) n, "
            "cast(spend as double) spend, cast(active_days as double) active_days "
            f"from {_IDS} where active_days > 0",
            {"first": first},
        ).fetchnumpy()
    finally:
        con.execute(f"drop table if exists {_IDS}")
    n = len(customers)
    code = np.asarray(prior["code"], dtype=np.int64)

    def spread(values: Any, missing: float) -> np.ndarray:
        out = np.full(n, missing)
        out[code] = np.asarray(values, dtype=np.float64)
        return out

    return CodedActivity(
        customers=customers,
        first_day=pd.Timestamp(first_day).normalize(),
        day=np.asarray(rows["day_offset"], dtype=np.int64),
        code=np.asarray(rows["code"], dtype=np.int64),
        txn_count=np.asarray(rows["txn_count"], dtype=np.float64),
        spend=np.asarray(rows["spend"], dtype=np.float64),
        prior_first=spread(prior["first_offset"], np.nan),
        prior_last=spread(prior["last_offset"], np.nan),
        prior_count=spread(prior["n"], 0.0),
        prior_spend=spread(prior["spend"], 0.0),
        prior_days=spread(prior["active_days"], 0.0),
    )
