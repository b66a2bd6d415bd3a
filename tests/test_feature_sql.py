"""The features asset's SQL read (customers numbered by DuckDB) gives exactly the rows of the
pure frame path, for any range of days, with every id back as it was stored."""

from __future__ import annotations

import duckdb
import pandas as pd
from hypothesis import given
from hypothesis import strategies as st
from test_features import N_DAYS, PROPERTY, activity_frame, day, rows_strategy, windows_strategy

from lifecycle.feature_kernel import TEXT_IDS, breakpoints
from lifecycle.feature_sql import coded_window
from lifecycle.features import coded_feature_chunks, customer_features, empty_features

# Ids as real exports have them: leading zeros, a UUID, a 20-digit integer, accents.
ODD_IDS = {
    "001": "000042",
    "2": "42",
    "003": "9f1c2b7e-7d3a-4c55-9a8e-0f6c1d2e3b4a",
    "4": "18446744073709551615",
    "005": "Zoë",
    "6": "zoe",
    "007": "-0",
    "8": "0",
}


def _table(con: duckdb.DuckDBPyConnection, activity: pd.DataFrame) -> None:
    """The asset's table as the IO manager stores it (timestamp_ns days, bigint counts)."""
    con.register("frame", activity)
    con.execute(
        "create or replace table customer_activity as select "
        "cast(activity_date as timestamp_ns) activity_date, customer_id, txn_count, spend, "
        "max_amount from frame"
    )
    con.unregister("frame")


def _sql_features(activity: pd.DataFrame, days: pd.DatetimeIndex, windows) -> pd.DataFrame:
    with duckdb.connect() as con:
        _table(con, activity)
        first = days.min() - pd.Timedelta(days=max(windows) - 1)
        coded = coded_window(con, "customer_activity", first, days.max())
        chunks = list(coded_feature_chunks(coded, days, windows, chunk_rows=7))
    if not chunks:
        return empty_features(windows, ids=object)
    out = pd.concat(chunks, ignore_index=True)
    assert out["customer_id"].dtype == TEXT_IDS  # what the asset writes
    out["customer_id"] = out["customer_id"].astype(object)  # as the frame path returns them
    return out.sort_values(["as_of_date", "customer_id"], kind="stable").reset_index(drop=True)


@PROPERTY
@given(
    rows=rows_strategy,
    windows=windows_strategy,
    first=st.integers(0, N_DAYS - 1),
    length=st.integers(1, 12),
)
def test_sql_read_equals_the_frame_path(rows, windows, first, length) -> None:
    """Any range (one day or several; history before the window and activity after the last
    day in the table): the same rows, bit for bit, ids verbatim."""
    activity = activity_frame(rows)
    activity["customer_id"] = activity["customer_id"].map(ODD_IDS)
    days = pd.date_range(day(first), day(min(first + length, N_DAYS) - 1))
    expected = customer_features(activity[activity["activity_date"] <= days.max()], days, windows)
    got = _sql_features(activity, days, windows)
    if expected.empty:
        assert got.empty
        return
    pd.testing.assert_frame_equal(got, expected, check_exact=True)
    assert set(got["customer_id"]) <= set(ODD_IDS.values())


def test_one_day_reads_a_few_segments_a_range_every_day() -> None:
    """Why one day is cheap: four running-sum rows for windows (7, 30, 90), not 90."""
    one = breakpoints(pd.Index([89]).to_numpy(), (7, 30, 90))
    assert one.tolist() == [0, 60, 83, 90]
    ranged = breakpoints(pd.RangeIndex(89, 179).to_numpy(), (7, 30, 90))
    assert ranged.tolist() == list(range(0, 180))
