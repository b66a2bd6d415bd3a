"""Tests for the DuckDB warehouse IO manager: atomic partition replace, by-name insert."""

# No "from __future__ import annotations": Dagster reads the Config annotation at runtime.

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import pandas as pd
import pytest

from lifecycle.registry import DAGSTER_DUCKDB_CONFIG
from resources.warehouse import ByNamePandasTypeHandler, WarehouseIOManager

DAILY = dg.DailyPartitionsDefinition(start_date="2026-03-01", end_date="2026-03-06")
KEY = dg.AssetKey(["wh", "events"])


class FrameConfig(dg.Config):
    variant: str = "v1"


def frame_for(days: pd.DatetimeIndex, variant: str) -> pd.DataFrame:
    """Rows for ``days``: v1 has three per day, v2 two per day with other values."""
    per_day = 2 if variant.startswith("v2") or variant in {"reordered", "bad_type"} else 3
    base = 1000 if per_day == 2 else 0
    rows = [
        {
            "event_date": d,
            "id": int(d.day) * 10 + i,
            "value": float(base + d.day * 10 + i),
            "label": f"{variant}-{d.day}-{i}",
        }
        for d in days
        for i in range(per_day)
    ]
    frame = pd.DataFrame(rows, columns=["event_date", "id", "value", "label"])
    if variant == "reordered":
        frame = frame[["label", "value", "id", "event_date"]]
    if variant == "bad_type":
        frame["value"] = "not a number"
    if variant == "empty":
        frame = frame.iloc[:0].astype({"id": "int64", "value": "float64", "label": "string"})
        frame["event_date"] = frame["event_date"].astype("datetime64[ns]")
    if variant == "empty_object":
        frame = pd.DataFrame(
            {
                "event_date": pd.Series(dtype="datetime64[ns]"),
                "id": pd.Series(dtype="int64"),
                "value": pd.Series(dtype="float64"),
                "label": pd.Series(dtype=object),
            }
        )
    return frame


@dg.asset(
    key=KEY,
    partitions_def=DAILY,
    metadata={"partition_expr": "event_date"},
    backfill_policy=dg.BackfillPolicy.single_run(),
)
def events(context: dg.AssetExecutionContext, config: FrameConfig) -> pd.DataFrame:
    window = context.partition_time_window
    days = pd.date_range(
        pd.Timestamp(window.start).tz_localize(None),
        pd.Timestamp(window.end).tz_localize(None) - pd.Timedelta(days=1),
    )
    return frame_for(days, config.variant)


@dg.asset(key=["wh", "snapshot"])
def snapshot(config: FrameConfig) -> pd.DataFrame:
    """An unpartitioned table: each materialisation replaces it entirely."""
    return frame_for(pd.date_range("2026-03-01", periods=1), config.variant)


@pytest.fixture(scope="module")
def shared_instance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test(temp_dir=str(tmp_path_factory.mktemp("home"))) as inst:
        yield inst


class Warehouse:
    def __init__(self, path: Path, instance: dg.DagsterInstance) -> None:
        self.path = path
        self.instance = instance

    def write(
        self,
        variant: str = "v1",
        *,
        partition: str | None = None,
        days: tuple[str, str] | None = None,
        asset: Any = events,
        raise_on_error: bool = True,
    ) -> dg.ExecuteInProcessResult:
        tags = None
        if days is not None:
            tags = {
                "dagster/asset_partition_range_start": days[0],
                "dagster/asset_partition_range_end": days[1],
            }
        op = "wh__events" if asset is events else "wh__snapshot"
        return dg.materialize(
            [asset],
            resources={"io_manager": WarehouseIOManager(database=str(self.path))},
            instance=self.instance,
            partition_key=partition,
            tags=tags,
            run_config={"ops": {op: {"config": {"variant": variant}}}},
            raise_on_error=raise_on_error,
        )

    def read(self, table: str = "wh.events") -> pd.DataFrame:
        with duckdb.connect(str(self.path), config=dict(DAGSTER_DUCKDB_CONFIG)) as con:
            return con.execute(f"select * from {table} order by event_date, id").df()

    def day(self, day: str) -> pd.DataFrame:
        frame = self.read()
        return frame[frame["event_date"] == pd.Timestamp(day)].reset_index(drop=True)


@pytest.fixture
def wh(tmp_path: Path, shared_instance: dg.DagsterInstance) -> Warehouse:
    """A fresh warehouse file (in a folder that does not exist yet) with days 1-4 written."""
    warehouse = Warehouse(tmp_path / "not_yet" / "warehouse.duckdb", shared_instance)
    warehouse.write("v1", days=("2026-03-01", "2026-03-04"))
    return warehouse


def expected(day: str, variant: str) -> pd.DataFrame:
    frame = frame_for(pd.DatetimeIndex([pd.Timestamp(day)]), variant)
    return frame[["event_date", "id", "value", "label"]].reset_index(drop=True)


def assert_day(wh: Warehouse, day: str, variant: str) -> None:
    pd.testing.assert_frame_equal(wh.day(day), expected(day, variant), check_dtype=False)


def test_rematerialising_a_partition_replaces_exactly_it(wh: Warehouse) -> None:
    """Writing day 2 again replaces day 2's rows only; its neighbours are untouched."""
    before = wh.read()
    assert len(before) == 12
    wh.write("v2", partition="2026-03-02")
    assert_day(wh, "2026-03-02", "v2")
    for day in ("2026-03-01", "2026-03-03", "2026-03-04"):
        assert_day(wh, day, "v1")
    assert len(wh.read()) == 11


def test_rerun_with_same_data_is_idempotent(wh: Warehouse) -> None:
    """Re-running a partition (or a range) with the same data leaves identical rows."""
    before = wh.read()
    wh.write("v1", partition="2026-03-03")
    wh.write("v1", days=("2026-03-02", "2026-03-03"))
    pd.testing.assert_frame_equal(wh.read(), before)


def test_range_rewrite_replaces_exactly_the_range(wh: Warehouse) -> None:
    """A ranged run replaces every day of its range and nothing outside it."""
    wh.write("v2", days=("2026-03-02", "2026-03-03"))
    assert_day(wh, "2026-03-01", "v1")
    assert_day(wh, "2026-03-02", "v2")
    assert_day(wh, "2026-03-03", "v2")
    assert_day(wh, "2026-03-04", "v1")


def test_failing_insert_keeps_the_old_rows(wh: Warehouse) -> None:
    """An insert that fails (a column of the wrong type) rolls back its delete; the next good
    write to the same file then works."""
    before = wh.read()
    result = wh.write("bad_type", partition="2026-03-02", raise_on_error=False)
    assert not result.success
    pd.testing.assert_frame_equal(wh.read(), before)
    wh.write("v2", partition="2026-03-02")
    assert_day(wh, "2026-03-02", "v2")


def test_crash_between_delete_and_insert_keeps_the_old_rows(
    wh: Warehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If the process dies after the delete, before the insert, the delete is rolled back."""
    before = wh.read()
    seen_inside: list[int] = []

    def crash(self, context, table_slice, obj, connection) -> None:
        rows = connection.execute(
            "select count(*) from wh.events where event_date = '2026-03-02'"
        ).fetchone()[0]
        seen_inside.append(rows)
        raise RuntimeError("simulated crash after delete")

    monkeypatch.setattr(ByNamePandasTypeHandler, "handle_output", crash)
    result = wh.write("v2", partition="2026-03-02", raise_on_error=False)
    assert not result.success
    assert seen_inside == [0], "the delete should already have run inside the transaction"
    pd.testing.assert_frame_equal(wh.read(), before)


def test_insert_is_by_column_name(wh: Warehouse) -> None:
    """A frame whose columns come in another order lands in the right columns."""
    wh.write("reordered", partition="2026-03-02")
    stored = wh.day("2026-03-02")
    assert list(stored.columns) == ["event_date", "id", "value", "label"]
    assert stored["value"].tolist() == [1020.0, 1021.0]
    assert stored["label"].tolist() == ["reordered-2-0", "reordered-2-1"]
    assert stored["id"].tolist() == [20, 21]


def test_empty_frame_creates_the_table(tmp_path: Path, shared_instance: dg.DagsterInstance) -> None:
    """A first, empty output creates an empty table (readers see an empty slice), and later
    data lands in it with the right types."""
    wh = Warehouse(tmp_path / "warehouse.duckdb", shared_instance)
    wh.write("empty", partition="2026-03-01")
    assert wh.read().empty
    with duckdb.connect(str(wh.path), config=dict(DAGSTER_DUCKDB_CONFIG)) as con:
        types = dict(
            con.execute(
                "select column_name, data_type from duckdb_columns() where table_name = 'events'"
            ).fetchall()
        )
    assert types["id"] == "BIGINT"
    assert types["value"] == "DOUBLE"
    wh.write("v1", partition="2026-03-02")
    assert_day(wh, "2026-03-02", "v1")


def test_empty_partition_clears_old_rows(wh: Warehouse) -> None:
    """Writing an empty frame to a partition removes its old rows and only those."""
    wh.write("empty", partition="2026-03-03")
    assert wh.day("2026-03-03").empty
    assert len(wh.read()) == 9


def test_empty_object_column_then_data(tmp_path: Path, shared_instance: dg.DagsterInstance) -> None:
    """A first empty frame whose text column has object dtype must not block later text rows."""
    wh = Warehouse(tmp_path / "warehouse.duckdb", shared_instance)
    wh.write("empty_object", partition="2026-03-01")
    result = wh.write("v1", partition="2026-03-02", raise_on_error=False)
    assert result.success
    assert_day(wh, "2026-03-02", "v1")


def test_unpartitioned_asset_is_replaced_whole(
    tmp_path: Path, shared_instance: dg.DagsterInstance
) -> None:
    """Without partitions, each materialisation replaces the whole table."""
    wh = Warehouse(tmp_path / "warehouse.duckdb", shared_instance)
    wh.write("v1", asset=snapshot)
    wh.write("v2", asset=snapshot)
    stored = wh.read("wh.snapshot")
    assert stored["label"].tolist() == ["v2-1-0", "v2-1-1"]


def test_failed_write_releases_the_database_file(wh: Warehouse) -> None:
    """A failed write closes its connection: the file is free again for any other connection
    (DuckDB refuses a second in-process connection with another configuration while one is
    open, and another process could not lock the file)."""
    result = wh.write("bad_type", partition="2026-03-02", raise_on_error=False)
    assert not result.success
    with duckdb.connect(str(wh.path)) as con:
        assert con.execute("select count(*) from wh.events").fetchone() == (12,)


def test_run_holds_the_warehouse_open_and_the_registry_shares_it(
    small_defs: tuple[Any, dg.Definitions],
) -> None:
    """While a CLI run executes, the warehouse's database stays open (a connection with other
    settings is refused, as only an open file refuses it), every resource's connections share
    it (the registry's settings match the IO manager's), and the file is free after the run."""
    from jobs.runs import _held_open
    from resources.registry import RegistryResource

    settings, defs = small_defs
    path = settings.warehouse.database
    registry = defs.resources["registry"]
    assert isinstance(registry, RegistryResource)
    with _held_open(defs):
        with pytest.raises(duckdb.ConnectionException, match="different configuration"):
            duckdb.connect(path, config={"threads": 1})
        registry.registry().ensure_schema()  # same settings as the held connection: shares it
        with defs.resources["warehouse"].get_connection() as con:
            assert con.execute("select count(*) from registry.model_versions").fetchone() == (0,)
    with duckdb.connect(path, config={"threads": 1}) as con:  # released: any settings again
        assert con.execute("select 1").fetchone() == (1,)
