"""Real export shapes through the real raw assets: verbatim ids, header-only files, DST offsets,
absurd numbers, rows outside the partition range, empty days, errors that name the file."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
import pytest
from conftest import run

from assets.common import build_partitions
from assets.ingest import build_ingest_assets
from definitions import build_defs
from lifecycle.registry import DAGSTER_DUCKDB_CONFIG
from lifecycle.settings import Settings
from lifecycle.sources import UnreadableFileError

RAW_TX = dg.AssetKey(["raw", "transactions"])
RAW_INT = dg.AssetKey(["raw", "interactions"])
RANGE = {"start_date": "2026-03-01", "end_date": "2026-03-08"}
TX_COLUMNS = {"customer_id": "client", "timestamp": "at", "amount": "value"}
INT_COLUMNS = {"user_id": "user", "item_id": "item", "timestamp": "at", "weight": "w"}


@pytest.fixture(scope="module")
def shared_instance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test(temp_dir=str(tmp_path_factory.mktemp("home"))) as inst:
        yield inst


def files_settings(
    make_settings: Callable[..., Settings], files: dict, extra: dict | None = None
) -> Settings:
    return make_settings(
        {"partitions": RANGE, "source": {"kind": "files", "files": files}, **(extra or {})}
    )


def sql(settings: Settings, query: str) -> pd.DataFrame:
    with duckdb.connect(settings.warehouse.database, config=dict(DAGSTER_DUCKDB_CONFIG)) as con:
        return con.execute(query).df()


def metadata(result: dg.ExecuteInProcessResult, key: dg.AssetKey) -> dict:
    event = next(
        e.materialization
        for e in result.get_asset_materialization_events()
        if e.materialization.asset_key == key
    )
    return {k: v.value for k, v in event.metadata.items()}


def tx_rows(days: list[str], clients: list[str] | None = None) -> pd.DataFrame:
    clients = clients or ["1", "2", "3"]
    return pd.DataFrame(
        [{"client": c, "at": f"{d} 12:00:00", "value": "9.5"} for d in days for c in clients]
    )


def test_ids_come_back_byte_identical(
    tmp_path: Path, make_settings: Callable[..., Settings], shared_instance: dg.DagsterInstance
) -> None:
    """ "00042" next to "42", UUIDs, 19-digit ids and "1e5" go into DuckDB and come back exactly;
    a Parquet export with integer and integral-float id columns gives the same text."""
    users = ["00042", "42", "1e5", "1234567890123456789", "3f2b8a4e-9c1d-4e6b-8a7f-0d1c2b3a4e5f"]
    items = ["0007", "7", "9999999999999999999", "1E5", "ABC-001"]
    folder = tmp_path / "in"
    folder.mkdir()
    pd.DataFrame(
        {"user": users, "item": items, "at": ["2026-03-02 10:00:00"] * 5, "w": ["1"] * 5}
    ).to_csv(folder / "a.csv", index=False)
    pd.DataFrame(
        {
            "user": pd.Series([9223372036854775807, 5], dtype="int64"),
            "item": pd.Series([12.0, 13.0]),
            "at": pd.to_datetime(["2026-03-02 11:00", "2026-03-02 11:00"]),
            "w": [2.0, 2.0],
        }
    ).to_parquet(folder / "b.parquet")
    settings = files_settings(
        make_settings, {"interactions_glob": str(folder / "*.*"), "columns": INT_COLUMNS}
    )
    assert run(build_defs(settings), shared_instance, [RAW_INT], partition="2026-03-02").success
    stored = sql(settings, "select user_id, item_id from raw.interactions")
    pairs = set(zip(stored["user_id"], stored["item_id"], strict=True))
    assert pairs == {*zip(users, items, strict=True), ("9223372036854775807", "12"), ("5", "13")}
    assert sql(settings, "select count(*) n from raw.interactions_quarantine")["n"][0] == 0
    types = sql(
        settings,
        "select data_type from information_schema.columns where column_name"
        " in ('user_id', 'item_id') and table_name = 'interactions'",
    )
    assert set(types["data_type"]) == {"VARCHAR"}


def test_header_only_files_and_empty_days_warn_by_default(
    tmp_path: Path, make_settings: Callable[..., Settings], shared_instance: dg.DagsterInstance
) -> None:
    """A header-only export adds nothing; days without rows load (on_empty_day: warn), are
    flagged in the quality table and named by the (WARN) quarantine check, which fails."""
    folder = tmp_path / "in"
    folder.mkdir()
    tx_rows(["2026-03-01", "2026-03-03"]).to_csv(folder / "a.csv", index=False)
    (folder / "b.csv").write_text("client,at,value\n")
    settings = files_settings(
        make_settings, {"transactions_glob": str(folder / "*.csv"), "columns": TX_COLUMNS}
    )
    assert settings.validation.on_empty_day == "warn"
    result = run(
        build_defs(settings),
        shared_instance,
        [RAW_TX],
        partition_range=("2026-03-01", "2026-03-04"),
    )
    assert result.success
    quality = sql(settings, "select * from raw.transactions_daily_quality order by event_date")
    assert quality["empty"].tolist() == [False, True, False, True]
    assert quality["kept"].tolist() == [3, 0, 3, 0]
    meta = metadata(result, RAW_TX)
    assert meta["empty_days"] == 2
    assert meta["empty_day_list"] == "2026-03-02, 2026-03-04"
    assert meta["files"][str(folder / "b.csv")]["rows_read"] == 0
    checks = {str(c.partition): c for c in result.get_asset_check_evaluations()}
    # One result per day: the empty days fail (on_empty_day: warn), the others pass.
    assert [d for d, c in sorted(checks.items()) if not c.passed] == ["2026-03-02", "2026-03-04"]
    assert all(c.severity == dg.AssetCheckSeverity.WARN for c in checks.values())
    assert checks["2026-03-02"].metadata["empty"].value is True
    assert checks["2026-03-01"].metadata["range_max_share"].value == 0.0


def test_glob_of_only_header_only_files_is_fine_when_empty_days_are_allowed(
    tmp_path: Path, make_settings: Callable[..., Settings], shared_instance: dg.DagsterInstance
) -> None:
    """Nothing but headers: the run succeeds with empty days; with allow the check passes."""
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.csv").write_text("client,at,value\n")
    settings = files_settings(
        make_settings,
        {"transactions_glob": str(folder / "*.csv"), "columns": TX_COLUMNS},
        {"validation": {"on_empty_day": "allow"}},
    )
    result = run(
        build_defs(settings),
        shared_instance,
        [RAW_TX],
        partition_range=("2026-03-01", "2026-03-02"),
    )
    assert result.success
    assert metadata(result, RAW_TX)["empty_days"] == 2
    checks = result.get_asset_check_evaluations()  # one per day
    assert len(checks) == 2 and all(check.passed for check in checks)
    assert sql(settings, "select count(*) n from raw.transactions")["n"][0] == 0


def test_mixed_offsets_across_dst_land_in_amsterdam_days(
    tmp_path: Path, make_settings: Callable[..., Settings], shared_instance: dg.DagsterInstance
) -> None:
    """One file with +01:00 and +02:00 offsets (the 2025-03-30 DST change), Z times and naive
    local times: each row is stored in its Amsterdam day, at its Amsterdam wall-clock time."""
    rows = {
        "a": ("2025-03-29T10:00:00+01:00", "2025-03-29 10:00"),
        "b": ("2025-03-29T23:30:00Z", "2025-03-30 00:30"),
        "c": ("2025-03-30T10:00:00+02:00", "2025-03-30 10:00"),
        "d": ("2025-03-30 02:30:00", "2025-03-30 02:30"),
        "e": ("2025-03-30T23:59:59+02:00", "2025-03-30 23:59:59"),
        "f": ("2025-03-30T22:30:00Z", "2025-03-31 00:30"),
    }
    folder = tmp_path / "in"
    folder.mkdir()
    pd.DataFrame({"client": list(rows), "at": [r[0] for r in rows.values()], "value": "1"}).to_csv(
        folder / "tx.csv", index=False
    )
    settings = make_settings(
        {
            "timezone": "Europe/Amsterdam",
            "partitions": {"start_date": "2025-03-29", "end_date": "2025-04-01"},
            "source": {
                "kind": "files",
                "files": {"transactions_glob": str(folder / "*.csv"), "columns": TX_COLUMNS},
            },
        }
    )
    result = run(
        build_defs(settings),
        shared_instance,
        [RAW_TX],
        partition_range=("2025-03-29", "2025-03-31"),
    )
    assert result.success
    stored = sql(settings, "select * from raw.transactions order by customer_id")
    assert stored["customer_id"].tolist() == list(rows)
    assert stored["timestamp"].tolist() == [pd.Timestamp(r[1]) for r in rows.values()]
    assert stored["event_date"].tolist() == [pd.Timestamp(r[1]).normalize() for r in rows.values()]


def test_non_finite_and_absurd_amounts_are_quarantined(
    tmp_path: Path, make_settings: Callable[..., Settings], shared_instance: dg.DagsterInstance
) -> None:
    """inf, -inf, nan and 1e308 never reach the table; the configured bound is named."""
    folder = tmp_path / "in"
    folder.mkdir()
    bad = ["inf", "-inf", "nan", "1e308", "5000"]
    rows = pd.concat(
        [
            tx_rows(["2026-03-02"]),
            pd.DataFrame({"client": "x", "at": "2026-03-02 13:00:00", "value": bad}),
        ]
    )
    rows.to_csv(folder / "tx.csv", index=False)
    settings = files_settings(
        make_settings,
        {"transactions_glob": str(folder / "*.csv"), "columns": TX_COLUMNS},
        {"validation": {"max_amount": 1000}},
    )
    assert run(build_defs(settings), shared_instance, [RAW_TX], partition="2026-03-02").success
    assert sql(settings, "select max(amount) m from raw.transactions")["m"][0] == 9.5
    quarantine = sql(settings, "select * from raw.transactions_quarantine")
    by_value = {
        json.loads(r)["amount"]: why
        for r, why in zip(quarantine["record"], quarantine["reason"], strict=True)
    }
    assert set(by_value) == {"inf", "-inf", None, "1e308", "5000"}
    assert "not finite" in by_value["inf"] and "not finite" in by_value["-inf"]
    assert "amount" in by_value[None]
    assert by_value["5000"] == "amount: above validation.max_amount (1000)"
    assert set(quarantine["source"]) == {str(folder / "tx.csv")}


def test_rows_outside_the_range_are_counted_and_future_rows_quarantined_once(
    tmp_path: Path, make_settings: Callable[..., Settings], shared_instance: dg.DagsterInstance
) -> None:
    """Rows before the first partition are counted per file, never stored; rows after the last
    are quarantined exactly once (on the last day) however the range is run and re-run."""
    folder = tmp_path / "in"
    folder.mkdir()
    days = [f"2026-03-0{d}" for d in range(1, 8)]
    pd.concat([tx_rows(["2026-02-27", "2026-02-28"]), tx_rows(days)]).to_csv(
        folder / "old.csv", index=False
    )
    tx_rows(["2026-03-07", "2026-03-08", "2027-01-01"], ["9"]).to_csv(
        folder / "new.csv", index=False
    )
    settings = files_settings(
        make_settings, {"transactions_glob": str(folder / "*.csv"), "columns": TX_COLUMNS}
    )
    defs = build_defs(settings)
    first = run(defs, shared_instance, [RAW_TX], partition_range=("2026-03-01", "2026-03-04"))
    last = run(defs, shared_instance, [RAW_TX], partition_range=("2026-03-05", "2026-03-07"))
    again = run(defs, shared_instance, [RAW_TX], partition="2026-03-07")
    assert all(r.success for r in (first, last, again))

    quarantine = sql(settings, "select * from raw.transactions_quarantine order by record")
    assert quarantine["event_date"].tolist() == [pd.Timestamp("2026-03-07")] * 2
    assert quarantine["reason"].str.contains("future-dated").all()
    assert quarantine["source"].tolist() == [str(folder / "new.csv")] * 2
    assert [json.loads(r)["timestamp"] for r in quarantine["record"]] == [
        "2026-03-08 12:00:00",
        "2027-01-01 12:00:00",
    ]
    assert sql(settings, "select count(*) n from raw.transactions")["n"][0] == 7 * 3 + 1

    files = metadata(first, RAW_TX)["files"]
    assert files[str(folder / "old.csv")] == {
        "rows_read": 27,
        "stored": 12,
        "quarantined": 0,
        "before_start": 6,
        "future_dated": 0,
        "other_days": 9,
    }
    assert files[str(folder / "new.csv")]["quarantined"] == 0  # not the last day's run
    latest = metadata(again, RAW_TX)["files"][str(folder / "new.csv")]
    assert latest == {
        "rows_read": 3,
        "stored": 1,
        "quarantined": 2,
        "before_start": 0,
        "future_dated": 2,
        "other_days": 0,
    }
    for counts in [*files.values(), latest]:
        assert counts["rows_read"] == (
            counts["stored"] + counts["quarantined"] + counts["before_start"] + counts["other_days"]
        )
    assert metadata(first, RAW_TX)["rows_before_start"] == 6


def test_unreadable_file_error_starts_with_its_path(
    tmp_path: Path, make_settings: Callable[..., Settings], shared_instance: dg.DagsterInstance
) -> None:
    """An encoding problem in one of several files stops the run with the path first."""
    folder = tmp_path / "in"
    folder.mkdir()
    tx_rows(["2026-03-02"]).to_csv(folder / "a.csv", index=False)
    bad = folder / "b.csv"
    bad.write_bytes("client,at,value\nJos\xe9,2026-03-02 10:00:00,1\n".encode("latin-1"))
    settings = files_settings(
        make_settings, {"transactions_glob": str(folder / "*.csv"), "columns": TX_COLUMNS}
    )
    with pytest.raises(UnreadableFileError) as err:
        run(build_defs(settings), shared_instance, [RAW_TX], partition="2026-03-02")
    assert str(err.value).startswith(f"{bad}: ")
    assert "source.files.encoding" in str(err.value)


@pytest.mark.parametrize(
    ("source", "tables"),
    [
        ({"kind": "synthetic"}, {"transactions", "interactions"}),
        ({"kind": "files", "files": {"interactions_glob": "x/*.csv"}}, {"interactions"}),
        ({"kind": "files", "files": {"transactions_glob": "x/*.csv"}}, {"transactions"}),
        ({"kind": "sql", "sql": {"transactions_query": "select 1"}}, {"transactions"}),
        ({"kind": "sql", "sql": {"interactions_query": "select 1"}}, {"interactions"}),
    ],
)
def test_raw_assets_only_for_the_tables_the_source_provides(
    make_settings: Callable[..., Settings], source: dict, tables: set[str]
) -> None:
    """build_ingest_assets builds raw assets for settings.source.tables and nothing else."""
    settings = make_settings({"partitions": RANGE, "source": source})
    assets = build_ingest_assets(build_partitions(settings), settings)
    keys = {key for asset in assets for key in asset.keys}
    expected = {
        dg.AssetKey(["raw", f"{t}{suffix}"])
        for t in tables
        for suffix in ("", "_quarantine", "_daily_quality")
    }
    assert keys == expected
