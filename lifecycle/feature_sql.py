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
        # As Arrow strings, straight from DuckDB: no Python string per customer; the lifetime
        # state beside them in the same fetch (NULL: nothing before the window).
        ids = con.sql(
            "select customer_id, cast(first_date - $first as double) first_offset, "
            "cast(last_date - $first as double) last_offset, "
            "coalesce(cast(txn_count as double), 0) n, coalesce(cast(spend as double), 0) spend, "
            f"cast(active_days as double) active_days from {_IDS} order by code",
            params={"first": first},
        ).to_arrow_table()
        customers = ids.column("customer_id").combine_chunks().cast(pa.string())
        rows = con.execute(
            "select cast(cast(a.activity_date as date) - $first as bigint) day_offset, i.code, "
            "cast(a.txn_count as double) txn_count, cast(a.spend as double) spend "
            f"from {table} a join {_IDS} i using (customer_id) "
            "where a.activity_date >= $from and a.activity_date < $to order by i.code",
            bounds,
        ).fetchnumpy()
    finally:
        con.execute(f"drop table if exists {_IDS}")

    def column(name: str) -> np.ndarray:
        """A float column of ``ids``, NULL as NaN (one array per customer, in code order)."""
        values = ids.column(name).combine_chunks()
        return np.asarray(values.to_numpy(zero_copy_only=False), dtype=np.float64)

    return CodedActivity(
        customers=customers,
        first_day=pd.Timestamp(first_day).normalize(),
        day=np.asarray(rows["day_offset"], dtype=np.int64),
        code=np.asarray(rows["code"], dtype=np.int64),
        txn_count=np.asarray(rows["txn_count"], dtype=np.float64),
        spend=np.asarray(rows["spend"], dtype=np.float64),
        prior_first=column("first_offset"),
        prior_last=column("last_offset"),
        prior_count=column("n"),
        prior_spend=column("spend"),
        prior_days=column("active_days"),
    )
