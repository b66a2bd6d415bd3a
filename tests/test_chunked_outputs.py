"""Outputs written without being held whole: feature chunks and SQL-computed rows.

The features asset hands the warehouse IO manager a ``FrameChunks`` (customers in chunks) and
the labels asset a ``SqlRows`` (one SELECT). Both must give the rows the whole-frame path gave,
replace a partition range atomically (a failure in the middle keeps the old rows), and report
their counts.
"""

from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import duckdb
import numpy as np
import pandas as pd
import pytest

from lifecycle.features import customer_feature_chunks, customer_features
from resources.lazy_outputs import FrameChunks, SqlRows
from resources.warehouse import WarehouseIOManager

DAYS = dg.DailyPartitionsDefinition(start_date="2026-01-01", end_date="2026-01-11")


def realistic_activity(seed: int = 3, customers: int = 300) -> pd.DataFrame:
    """Sparse daily activity: one-time buyers, regulars, text ids with leading zeros."""
    rng = np.random.default_rng(seed)
    ids = np.array([f"{i:05d}" if i % 3 else str(i) for i in range(customers)], dtype=object)
    per = rng.geometric(0.3, customers)  # most buy once or twice
    cust = np.repeat(np.arange(customers), per)
    days = rng.integers(0, 60, len(cust))
    frame = pd.DataFrame({"c": cust, "d": days}).drop_duplicates()
    return pd.DataFrame(
        {
            "activity_date": pd.Timestamp("2026-01-01") + pd.to_timedelta(frame["d"], unit="D"),
            "customer_id": ids[frame["c"]],
            "txn_count": rng.integers(1, 3, len(frame)),
            "spend": np.round(rng.gamma(2.0, 20.0, len(frame)), 2),
            "max_amount": 50.0,
        }
    ).sort_values(["activity_date", "customer_id"], ignore_index=True)


def test_feature_chunks_are_the_whole_frame_in_disjoint_customer_chunks() -> None:
    activity = realistic_activity()
    days = pd.date_range("2026-02-01", "2026-02-20", freq="D")
    whole = customer_features(activity, days, (7, 30), max_dormant_days=25)
    chunks = list(customer_feature_chunks(activity, days, (7, 30), None, 25, chunk_rows=400))
    assert len(chunks) > 3
    ids = [set(c["customer_id"]) for c in chunks]
    assert sum(len(i) for i in ids) == len(set().union(*ids))  # disjoint
    joined = pd.concat(chunks, ignore_index=True).sort_values(["as_of_date", "customer_id"])
    joined["customer_id"] = joined["customer_id"].astype(object)  # chunks: Arrow strings
    pd.testing.assert_frame_equal(joined.reset_index(drop=True), whole)
    assert sum(c.attrs["left_out_dormant"] for c in chunks) == whole.attrs["left_out_dormant"] > 0
    assert [c.attrs["customers"] for c in chunks] == [len(i) for i in ids]


def _io(tmp_path: Path) -> WarehouseIOManager:
    return WarehouseIOManager(database=str(tmp_path / "w.duckdb"))


def _rows(tmp_path: Path, table: str) -> pd.DataFrame:
    with duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True) as con:
        return con.execute(f"select * from {table} order by day, id").df()


def _frame(day: str, ids: list[str], value: float) -> pd.DataFrame:
    return pd.DataFrame({"day": pd.Timestamp(day), "id": ids, "value": value})


def chunked_asset(fail_after: int | None, value: float) -> dg.AssetsDefinition:
    @dg.asset(
        key=["t", "chunked"],
        partitions_def=DAYS,
        metadata={"partition_expr": "day"},
    )
    def chunked(context: dg.AssetExecutionContext) -> FrameChunks:
        seen: list[int] = []

        def chunks() -> Iterator[pd.DataFrame]:
            for i, ids in enumerate([["007", "7"], ["0000001"], ["uuid-a"]]):
                if fail_after is not None and i == fail_after:
                    raise RuntimeError("source went away in the middle of the range")
                yield _frame(context.partition_key, ids, value)

        return FrameChunks(
            chunks(),
            empty=_frame(context.partition_key, [], value).astype({"id": object}),
            on_chunk=lambda frame: seen.append(len(frame)),
            on_done=lambda rows: context.add_asset_metadata({"chunks": len(seen), "n": rows}),
        )

    return chunked


def _write(
    tmp_path: Path, day: str, fail_after: int | None, value: float
) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [chunked_asset(fail_after, value)],
        partition_key=day,
        resources={"io_manager": _io(tmp_path)},
        raise_on_error=False,
    )


def _tables(tmp_path: Path) -> set[str]:
    with duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True) as con:
        return {r[0] for r in con.execute("select table_name from duckdb_tables()").fetchall()}


def test_frame_chunks_replace_a_partition_atomically(tmp_path: Path) -> None:
    ok = _write(tmp_path, "2026-01-03", None, 1.0)
    assert ok.success
    meta = ok.asset_materializations_for_node("t__chunked")[0].metadata
    assert meta["chunks"].value == 3 and meta["n"].value == 4
    assert meta["dagster/partition_row_count"].value == 4
    first = _rows(tmp_path, "t.chunked")
    assert sorted(first["id"]) == ["0000001", "007", "7", "uuid-a"]  # verbatim

    assert not _write(tmp_path, "2026-01-03", 2, 2.0).success
    # Two chunks were staged before the failure; the day keeps its old rows and no staging
    # table is left behind.
    pd.testing.assert_frame_equal(_rows(tmp_path, "t.chunked"), first)
    assert _tables(tmp_path) == {"chunked"}


def test_sql_rows_are_computed_in_the_warehouse_and_replace_the_range(tmp_path: Path) -> None:
    with duckdb.connect(str(tmp_path / "w.duckdb")) as con:
        con.execute("create schema src")
        con.execute(
            "create table src.events as select timestamp '2026-01-02' + to_days(cast(i % 4 as "
            "integer)) as day, lpad(cast(i % 5 as varchar), 3, '0') id, 1.0 value "
            "from range(40) t(i)"
        )

    @dg.asset(key=["t", "by_sql"], partitions_def=DAYS, metadata={"partition_expr": "day"})
    def by_sql(context: dg.AssetExecutionContext) -> SqlRows:
        lo, hi = context.partition_time_window
        select = (
            "select day, id, sum(value) value from src.events "
            f"where day >= timestamp '{lo:%Y-%m-%d}' and day < timestamp '{hi:%Y-%m-%d}' "
            "group by day, id"
        )

        def done(connection: object, table: str) -> None:
            n = connection.execute(f"select count(*) from {table}").fetchone()[0]  # type: ignore[attr-defined]
            context.add_asset_metadata({"table_rows_after": n})

        return SqlRows(select, on_done=done)

    for _ in range(2):  # a re-run replaces the day, it does not append
        result = dg.materialize(
            [by_sql], partition_key="2026-01-03", resources={"io_manager": _io(tmp_path)}
        )
    meta = result.asset_materializations_for_node("t__by_sql")[0].metadata
    assert meta["dagster/partition_row_count"].value == 5 == meta["table_rows_after"].value
    rows = _rows(tmp_path, "t.by_sql")
    assert sorted(rows["id"]) == ["000", "001", "002", "003", "004"]
    assert rows["value"].sum() == 10.0  # 40 events over 4 days, one day's worth


def test_chunked_outputs_cannot_be_read_back_as_themselves(tmp_path: Path) -> None:
    from resources.lazy_outputs import ChunksTypeHandler, SqlRowsTypeHandler

    for handler in (ChunksTypeHandler(), SqlRowsTypeHandler()):
        with pytest.raises(TypeError, match="output type"):
            handler.load_input(None, None, None)  # type: ignore[arg-type]


def test_first_write_becomes_the_table_and_later_days_are_added(tmp_path: Path) -> None:
    """The table's first write renames its staging table; a failed first write leaves no
    table at all; a later day goes through the copy and both days are there."""
    assert not _write(tmp_path, "2026-01-03", 1, 1.0).success
    assert _tables(tmp_path) == set()
    for day, value in (("2026-01-03", 1.0), ("2026-01-04", 2.0)):
        assert _write(tmp_path, day, None, value).success
    rows = _rows(tmp_path, "t.chunked")
    assert rows.groupby("day")["value"].agg(["size", "max"]).to_dict("list") == {
        "size": [4, 4],
        "max": [1.0, 2.0],
    }
    assert _tables(tmp_path) == {"chunked"}
    with duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True) as con:
        types = dict(
            con.execute(
                "select column_name, data_type from duckdb_columns() where table_name = ?",
                ["chunked"],
            ).fetchall()
        )
    assert types["day"].startswith("TIMESTAMP") and (types["id"], types["value"]) == (
        "VARCHAR",
        "DOUBLE",
    )


def test_in_memory_features_share_each_customers_id_and_refuse_non_text_ids() -> None:
    """customer_features points every row at its customer's one id string (a copy per row
    cost ~10x the memory); ids that are not text fail naming why, not deep in pyarrow."""
    activity = realistic_activity()
    days = pd.date_range("2026-02-01", "2026-02-20", freq="D")
    whole = customer_features(activity, days, (7, 30))
    ids = whole["customer_id"]
    assert ids.dtype == object and ids.map(type).eq(str).all()
    assert ids.map(id).nunique() == ids.nunique()
    numeric = activity.assign(customer_id=np.arange(len(activity)) % 7)
    with pytest.raises(TypeError, match="customer ids must be text"):
        customer_features(numeric, days, (7, 30))
