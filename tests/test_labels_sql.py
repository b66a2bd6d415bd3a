"""The churn-labels SELECT run in a real DuckDB equals the pandas reference
(:func:`lifecycle.features.churn_labels`) row for row: exact text ids, horizon edges, the
as-of window, typed empty results, and refused input."""

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import uuid
from collections.abc import Iterator
from datetime import date, timedelta

import duckdb
import numpy as np
import pandas as pd
import pytest

from lifecycle.features import LABELS_SCHEMA, churn_labels
from lifecycle.labels_sql import LABEL_COLUMNS, churn_labels_select

POPULATION = "features.customer_features"
ACTIVITY = "features.customer_activity"
HISTORY_START = date(2026, 1, 1)
HISTORY_DAYS = 120  # 2026-01-01 … 2026-04-30
POP_FIRST, POP_LAST = date(2026, 2, 1), date(2026, 3, 20)  # what the population table holds
FIRST, LAST = date(2026, 2, 5), date(2026, 3, 12)  # what the labels are asked for
HORIZON = 14
SAME_DAY = "000777"  # two activity rows on one day, which must add up
SPECIAL_IDS = ["000123", "123", "98765432109876543210987654321", SAME_DAY]


def ts(d: date) -> pd.Timestamp:
    return pd.Timestamp(d)


def activity_frame(rows: list[tuple[date, str, int]]) -> pd.DataFrame:
    """Activity rows like the warehouse's (datetime64[ns] days, text ids, spend columns)."""
    return pd.DataFrame(
        {
            "activity_date": pd.to_datetime([d for d, _, _ in rows]).astype("datetime64[ns]"),
            "customer_id": pd.Series([c for _, c, _ in rows], dtype=object),
            "txn_count": np.array([n for _, _, n in rows], dtype=np.int64),
            "spend": np.array([10.0 * n for _, _, n in rows]),
            "max_amount": np.array([10.0 for _ in rows]),
        }
    )


def realistic_log(seed: int = 7) -> pd.DataFrame:
    """A seeded purchase log: many one-time buyers, regulars, long-dormant customers, days
    nobody buys, repeated rows of one customer-day, and ids that only survive as exact text."""
    rng = np.random.default_rng(seed)
    ids = [f"{i:06d}" for i in rng.choice(999_999, size=260, replace=False) if i != 123]
    ids += [str(uuid.UUID(bytes=rng.bytes(16))) for _ in range(25)]
    ids += SPECIAL_IDS
    ids = list(dict.fromkeys(ids))
    closed = {5, 6, 30, 47, 48, 49, 60, 75, 90, 104}  # days with no activity at all
    open_days = [d for d in range(HISTORY_DAYS) if d not in closed]
    rows: list[tuple[date, str, int]] = []
    for i, cid in enumerate(ids):
        kind = ("once", "regular", "dormant", "regular", "once")[i % 5]
        if cid in SPECIAL_IDS:
            kind = "regular"
        if kind == "once":
            days = [int(rng.choice(open_days))]
        elif kind == "dormant":  # a few purchases early on, then silence for months
            days = list(rng.choice([d for d in open_days if d < 25], size=3, replace=False))
        else:
            rate = rng.uniform(0.03, 0.3)
            days = [d for d in open_days if rng.random() < rate] or [int(rng.choice(open_days))]
        for d in days:
            rows.append((HISTORY_START + timedelta(days=int(d)), cid, int(rng.integers(1, 4))))
    # Repeated rows of a customer-day (a late-arriving batch, say), always for SAME_DAY.
    same_day = [r for r in rows if r[1] == SAME_DAY and FIRST < r[0] <= LAST]
    rows += [(d, cid, 2) for d, cid, _ in same_day[:3]]
    picks = rng.choice(len(rows), size=len(rows) // 30, replace=False)
    rows += [rows[int(p)] for p in picks]
    order = rng.permutation(len(rows))
    return activity_frame([rows[int(o)] for o in order])


def population_like_features(activity: pd.DataFrame, first: date, last: date) -> pd.DataFrame:
    """Every customer whose first purchase is on or before D, for each D in [first, last],
    with feature-like extra columns, typed as the warehouse stores it."""
    first_seen = activity.groupby("customer_id")["activity_date"].min()
    frames = []
    for d in pd.date_range(first, last, freq="D"):
        known = sorted(first_seen.index[first_seen <= d])
        frames.append(pd.DataFrame({"as_of_date": d, "customer_id": known}))
    out = pd.concat(frames, ignore_index=True)
    out["as_of_date"] = out["as_of_date"].astype("datetime64[ns]")
    out["customer_id"] = out["customer_id"].astype(object)
    out["recency_days"] = np.arange(len(out), dtype=np.float64) % 17
    out["lifetime_spend"] = 1.5
    return out


def store(con: duckdb.DuckDBPyConnection, name: str, frame: pd.DataFrame) -> None:
    """Written like the warehouse IO manager writes a pandas frame (create from the frame)."""
    con.register("_frame", frame)
    con.execute(f"create or replace table {name} as select * from _frame")
    con.unregister("_frame")


@pytest.fixture
def con() -> Iterator[duckdb.DuckDBPyConnection]:
    connection = duckdb.connect()
    connection.execute("create schema features")
    connection.execute("create schema labels")
    yield connection
    connection.close()


def sql_labels(
    con: duckdb.DuckDBPyConnection, first: date, last: date, horizon: int = HORIZON
) -> pd.DataFrame:
    sql = churn_labels_select(POPULATION, ACTIVITY, first, last, horizon)
    return con.execute(f"{sql} order by as_of_date, customer_id").df()


def in_window(population: pd.DataFrame, first: date, last: date) -> pd.DataFrame:
    keep = population["as_of_date"].between(ts(first), ts(last))
    return population.loc[keep, ["as_of_date", "customer_id"]].reset_index(drop=True)


def test_equals_pandas_reference_on_a_realistic_log(con: duckdb.DuckDBPyConnection) -> None:
    activity = realistic_log()
    population = population_like_features(activity, POP_FIRST, POP_LAST)
    store(con, ACTIVITY, activity)
    store(con, POPULATION, population)
    assert con.execute(f"select typeof(as_of_date) from {POPULATION} limit 1").fetchone() == (
        "TIMESTAMP_NS",
    )

    got = sql_labels(con, FIRST, LAST)
    want = churn_labels(in_window(population, FIRST, LAST), activity, HORIZON)

    pd.testing.assert_frame_equal(got, want)
    LABELS_SCHEMA.validate(got)
    assert got["customer_id"].map(type).eq(str).all()
    # The log exercises what it claims to: both label values, every special id verbatim
    # ("000123" and "123" stay two customers), long dormant customers, many-purchase horizons.
    assert set(got["churned"]) == {0, 1}
    assert set(SPECIAL_IDS) <= set(got["customer_id"])
    assert got["purchases_in_horizon"].max() > 5
    dormant_churned = got.groupby("customer_id")["churned"].min()
    assert (dormant_churned == 1).sum() > 20  # churned on every day of the window
    assert got["as_of_date"].nunique() == (LAST - FIRST).days + 1


def test_repeated_rows_of_one_day_add_up(con: duckdb.DuckDBPyConnection) -> None:
    d = date(2026, 3, 1)
    activity = activity_frame(
        [
            (d - timedelta(days=3), SAME_DAY, 1),
            (d + timedelta(days=2), SAME_DAY, 2),
            (d + timedelta(days=2), SAME_DAY, 3),  # same customer, same day
            (d + timedelta(days=2), "other", 4),
            (d - timedelta(days=1), "other", 1),
        ]
    )
    store(con, ACTIVITY, activity)
    store(con, POPULATION, population_like_features(activity, d, d))
    got = sql_labels(con, d, d, horizon=7)
    assert got["purchases_in_horizon"].tolist() == [5, 4]
    assert got["customer_id"].tolist() == [SAME_DAY, "other"]
    want = churn_labels(population_like_features(activity, d, d), activity, 7)
    pd.testing.assert_frame_equal(got, want.loc[:, list(LABEL_COLUMNS)])


def test_horizon_edges(con: duckdb.DuckDBPyConnection) -> None:
    """(D, D + H]: a purchase on D is out, on D + 1 and D + H in, on D + H + 1 out."""
    d, h = date(2026, 3, 10), 7
    before = d - timedelta(days=20)
    rows = [(before, c, 1) for c in ("on_d", "d_plus_1", "on_end", "after_end", "silent")]
    rows += [
        (d, "on_d", 1),
        (d + timedelta(days=1), "d_plus_1", 1),
        (d + timedelta(days=h), "on_end", 1),
        (d + timedelta(days=h + 1), "after_end", 1),
    ]
    activity = activity_frame(rows)
    population = population_like_features(activity, d, d)
    store(con, ACTIVITY, activity)
    store(con, POPULATION, population)
    got = sql_labels(con, d, d, horizon=h).set_index("customer_id")
    assert got["purchases_in_horizon"].to_dict() == {
        "after_end": 0,
        "d_plus_1": 1,
        "on_d": 0,
        "on_end": 1,
        "silent": 0,
    }
    assert got["churned"].to_dict() == {
        "after_end": 1,
        "d_plus_1": 0,
        "on_d": 1,
        "on_end": 0,
        "silent": 1,
    }
    want = churn_labels(population, activity, h).set_index("customer_id")
    pd.testing.assert_frame_equal(got, want)


def test_only_population_rows_inside_the_window(con: duckdb.DuckDBPyConnection) -> None:
    activity = realistic_log(seed=3)
    population = population_like_features(activity, POP_FIRST, POP_LAST)
    store(con, ACTIVITY, activity)
    store(con, POPULATION, population)
    first, last = date(2026, 2, 10), date(2026, 2, 12)
    got = sql_labels(con, first, last)
    assert sorted(got["as_of_date"].unique()) == [ts(first + timedelta(days=i)) for i in range(3)]
    assert len(got) == len(in_window(population, first, last)) < len(population)
    # One day at the population's very edges, and a window beyond it.
    assert set(sql_labels(con, POP_LAST, POP_LAST)["as_of_date"]) == {ts(POP_LAST)}
    assert sql_labels(con, POP_LAST + timedelta(days=1), date(2026, 4, 30)).empty


def test_date_typed_population_and_insert_by_name(con: duckdb.DuckDBPyConnection) -> None:
    """A DATE population works too, and the SELECT inserts by name into a labels table the
    pandas path created, inside a transaction, as the warehouse IO manager runs it."""
    activity = realistic_log(seed=5)
    population = population_like_features(activity, FIRST, LAST)
    store(con, ACTIVITY, activity)
    store(con, POPULATION, population)
    con.execute(
        f"create table features.population_dates as "
        f"select cast(as_of_date as date) as as_of_date, customer_id from {POPULATION}"
    )
    want = churn_labels(population, activity, HORIZON)
    store(con, "labels.churn_labels", want)  # typed from the pandas frame, then emptied
    con.execute("delete from labels.churn_labels")
    sql = churn_labels_select("features.population_dates", ACTIVITY, FIRST, LAST, HORIZON)
    con.execute("begin transaction")
    con.execute(f"insert into labels.churn_labels by name {sql}")
    con.execute("commit")
    got = con.execute("select * from labels.churn_labels order by as_of_date, customer_id").df()
    pd.testing.assert_frame_equal(got, want)


def test_empty_population_gives_typed_empty_result(con: duckdb.DuckDBPyConnection) -> None:
    store(con, ACTIVITY, activity_frame([(date(2026, 3, 2), "000001", 1)]))
    store(con, POPULATION, population_like_features(realistic_log(), FIRST, FIRST))
    con.execute(f"delete from {POPULATION}")
    sql = churn_labels_select(POPULATION, ACTIVITY, FIRST, LAST, HORIZON)
    described = con.execute(f"describe {sql}").fetchall()
    assert [(name, kind) for name, kind, *_ in described] == [
        ("as_of_date", "TIMESTAMP_NS"),
        ("customer_id", "VARCHAR"),
        ("purchases_in_horizon", "BIGINT"),
        ("churned", "BIGINT"),
    ]
    got = con.execute(sql).df()
    assert got.empty
    assert list(got.columns) == list(LABEL_COLUMNS)
    assert got.dtypes.astype(str).tolist() == ["datetime64[ns]", "object", "int64", "int64"]


@pytest.mark.parametrize("horizon", [0, -1, -90, 1.5, True, "14"])
def test_bad_horizon_is_refused(horizon: object) -> None:
    with pytest.raises(ValueError, match="horizon_days"):
        churn_labels_select(POPULATION, ACTIVITY, FIRST, LAST, horizon)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "name",
    ["", "1table", "features.x; drop table labels.churn_labels", "a-b", "a b", "t'", '"t"', "t--"],
)
def test_bad_relation_name_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match="population"):
        churn_labels_select(name, ACTIVITY, FIRST, LAST, HORIZON)
    with pytest.raises(ValueError, match="activity"):
        churn_labels_select(POPULATION, name, FIRST, LAST, HORIZON)


def test_dates_are_rendered_as_literals_from_date_objects() -> None:
    sql = churn_labels_select(POPULATION, ACTIVITY, FIRST, LAST, HORIZON)
    assert "DATE '2026-02-05'" in sql and "DATE '2026-03-13'" in sql  # [first, last + 1)
    assert "DATE '2026-03-27'" in sql  # activity up to last + H, exclusive bound last + H + 1
    assert not sql.rstrip().endswith(";")
    with pytest.raises(TypeError):
        churn_labels_select(POPULATION, ACTIVITY, "2026-02-05", LAST, HORIZON)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="before"):
        churn_labels_select(POPULATION, ACTIVITY, LAST, FIRST, HORIZON)
