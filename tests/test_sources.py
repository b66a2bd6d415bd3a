"""Tests for event sources: the user's files or SQL database, mapped onto our columns."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
import pytest
from conftest import run

from definitions import build_defs
from lifecycle.registry import DAGSTER_DUCKDB_CONFIG
from lifecycle.settings import Settings
from lifecycle.sources import (
    FILE_COUNTS,
    FileOptions,
    FilesRead,
    UnreadableFileError,
    Window,
    file_days,
    parse_timestamps,
    partition_window,
    read_event_files,
    read_event_sql,
    read_files,
)
from lifecycle.validation import (
    INTERACTIONS,
    ROW_SOURCE,
    SOURCE_TIMESTAMP,
    TRANSACTIONS,
    MissingColumnsError,
    validate_rows,
)
from resources.sources import FilesSource, SqlSource, SyntheticSource, source_from_settings

RAW_TX = dg.AssetKey(["raw", "transactions"])
RAW_INT = dg.AssetKey(["raw", "interactions"])
TX_COLUMNS = {"customer_id": "cust_no", "timestamp": "txn_day", "amount": "total_eur"}
START, END = pd.Timestamp("2026-03-01"), pd.Timestamp("2026-03-04")


def write_csv(path: Path, frame: pd.DataFrame) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)
    return path


def transaction_log() -> pd.DataFrame:
    """A shop's export: its own column names, dates as YYYYMMDD, a day outside each window."""
    days = ["20260228", "20260301", "20260301", "20260302", "20260303", "20260303", "20260304"]
    return pd.DataFrame(
        {
            "cust_no": [9, 1, 2, 1, 3, 4, 5],
            "txn_day": days,
            "total_eur": ["1.00", "12.50", "3.20", "8.00", "5.55", "7.10", "2.00"],
            "store": ["a"] * len(days),
        }
    )


def warehouse(settings: Settings, sql: str) -> pd.DataFrame:
    with duckdb.connect(settings.warehouse.database, config=dict(DAGSTER_DUCKDB_CONFIG)) as con:
        return con.execute(sql).df()


# --------------------------------------------------------------------------------------------
# Timestamp parsing
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "fmt", "unit", "zone", "expected"),
    [
        (["20260301", "2026-03-01"], "%Y%m%d", None, "UTC", ["2026-03-01", None]),
        ([1772323200, 1772341200], None, "s", "UTC", ["2026-03-01 00:00", "2026-03-01 05:00"]),
        # 03:30 UTC on Mar 2 is 22:30 on Mar 1 in New York (EST, UTC-5).
        (["1772422200"], None, "s", "America/New_York", ["2026-03-01 22:30"]),
        (["1772422200000"], None, "ms", "Europe/Berlin", ["2026-03-02 04:30"]),
        (["2026-03-02T03:30:00Z"], None, None, "America/New_York", ["2026-03-01 22:30"]),
        (
            ["2026-03-02 03:30:00", "not a time"],
            None,
            None,
            "Asia/Tokyo",
            ["2026-03-02 03:30", None],
        ),
    ],
    ids=["yyyymmdd", "epoch-s-utc", "epoch-s-local", "epoch-ms-local", "iso-aware", "naive-local"],
)
def test_parse_timestamps_gives_naive_local_time(values, fmt, unit, zone, expected) -> None:
    """Formats, epoch units and aware strings all end as naive wall-clock time of the zone;
    naive input is already local; garbage becomes NaT (to be quarantined, not dropped)."""
    parsed = parse_timestamps(pd.Series(values), fmt, unit, zone)
    assert parsed.dt.tz is None
    assert parsed.tolist() == [pd.NaT if e is None else pd.Timestamp(e) for e in expected]


# --------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------


def test_files_map_columns_and_keep_only_the_window(tmp_path: Path) -> None:
    """The user's names map onto ours; rows outside [start, end) and extra columns are dropped."""
    write_csv(tmp_path / "tx.csv", transaction_log())
    frame = read_event_files(
        str(tmp_path / "*.csv"), TRANSACTIONS, TX_COLUMNS, START, END, "UTC", "%Y%m%d"
    )
    assert list(frame.columns) == [
        "customer_id",
        "timestamp",
        "amount",
        SOURCE_TIMESTAMP,
        ROW_SOURCE,
    ]
    assert set(frame[ROW_SOURCE]) == {str(tmp_path / "tx.csv")}
    assert frame["customer_id"].tolist() == ["1", "2", "1", "3", "4"]
    assert frame["amount"].tolist() == ["12.50", "3.20", "8.00", "5.55", "7.10"]
    assert frame["timestamp"].min() == START
    assert frame["timestamp"].max() < END


def test_files_glob_reads_every_matching_file(tmp_path: Path) -> None:
    """Every file matching the (recursive) glob contributes rows, CSV and Parquet alike."""
    log = transaction_log()
    write_csv(tmp_path / "2026" / "03" / "a.csv", log.iloc[:3])
    (tmp_path / "2026" / "04").mkdir(parents=True)
    log.iloc[3:].astype(str).to_parquet(tmp_path / "2026" / "04" / "b.parquet")
    frame = read_event_files(
        str(tmp_path / "**" / "*.*"), TRANSACTIONS, TX_COLUMNS, START, END, "UTC", "%Y%m%d"
    )
    assert sorted(frame["customer_id"].astype(int)) == [1, 1, 2, 3, 4]


def test_files_without_weight_column_get_weight_one(tmp_path: Path) -> None:
    """An event log without weights (weight mapped to null) gets weight 1.0 on every row."""
    write_csv(
        tmp_path / "views.csv",
        pd.DataFrame({"u": [1, 2], "sku": [5, 6], "t": ["2026-03-01 10:00", "2026-03-02 11:00"]}),
    )
    mapping = {"user_id": "u", "item_id": "sku", "timestamp": "t", "weight": None}
    frame = read_event_files(str(tmp_path / "views.csv"), INTERACTIONS, mapping, START, END, "UTC")
    assert frame["weight"].tolist() == [1.0, 1.0]
    assert list(frame.columns) == [
        "user_id",
        "item_id",
        "timestamp",
        "weight",
        SOURCE_TIMESTAMP,
        ROW_SOURCE,
    ]


def test_files_keep_unparseable_timestamps_for_quarantine_once(tmp_path: Path) -> None:
    """A row whose time does not parse is passed on (as NaT) in the window holding the file's
    first day — not silently dropped, and not repeated in every other window."""
    log = transaction_log()
    log.loc[1, "txn_day"] = "2026/03/01"
    write_csv(tmp_path / "tx.csv", log)
    first_window = read_event_files(
        str(tmp_path / "tx.csv"),
        TRANSACTIONS,
        TX_COLUMNS,
        pd.Timestamp("2026-02-28"),
        END,
        "UTC",
        "%Y%m%d",
    )
    assert first_window["timestamp"].isna().sum() == 1
    assert len(first_window) == 6
    later = read_event_files(
        str(tmp_path / "tx.csv"), TRANSACTIONS, TX_COLUMNS, START, END, "UTC", "%Y%m%d"
    )
    assert later["timestamp"].notna().all() and len(later) == 4


def test_unparseable_file_timestamp_is_quarantined_verbatim(tmp_path: Path) -> None:
    """The quarantine keeps what the file said, so the user can find and fix the line."""
    log = transaction_log()
    log.loc[1, "txn_day"] = "2026/03/01"
    write_csv(tmp_path / "tx.csv", log)
    first = pd.Timestamp("2026-02-28")
    raw = read_event_files(
        str(tmp_path / "tx.csv"), TRANSACTIONS, TX_COLUMNS, first, END, "UTC", "%Y%m%d"
    )
    batch = validate_rows(raw, TRANSACTIONS, first, END, origin="tx.csv")
    (record,) = batch.quarantine["record"]
    assert json.loads(record)["timestamp"] == "2026/03/01"


def test_files_missing_column_names_file_and_column(tmp_path: Path) -> None:
    """A file lacking a mapped column raises MissingColumnsError naming the file and column."""
    path = write_csv(tmp_path / "tx.csv", transaction_log().drop(columns=["total_eur"]))
    with pytest.raises(MissingColumnsError, match=rf"{path}: missing column\(s\) total_eur"):
        read_event_files(str(path), TRANSACTIONS, TX_COLUMNS, START, END, "UTC", "%Y%m%d")


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("broken.parquet", b"PAR1 this is not parquet at all"),
        ("ragged.csv", b"cust_no,txn_day,total_eur\n1,20260301,1.0\n2,20260301,1.0,9,9,9\n"),
    ],
)
def test_unreadable_file_names_the_file(tmp_path: Path, name: str, content: bytes) -> None:
    """A file that cannot be parsed raises UnreadableFileError naming it."""
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(UnreadableFileError, match=rf"^{path}: cannot read"):
        read_event_files(str(path), TRANSACTIONS, TX_COLUMNS, START, END, "UTC", "%Y%m%d")


def test_no_matching_files_names_the_pattern(tmp_path: Path) -> None:
    """A glob that matches nothing is an error naming the pattern, not an empty day."""
    with pytest.raises(FileNotFoundError, match="no source files match"):
        read_event_files(str(tmp_path / "*.csv"), TRANSACTIONS, TX_COLUMNS, START, END, "UTC")


# --------------------------------------------------------------------------------------------
# SQL
# --------------------------------------------------------------------------------------------


def sqlite_shop(path: Path) -> str:
    """A real SQLite database with an orders table in the shop's own names; returns its URL."""
    with sqlite3.connect(path) as con:
        con.execute("create table orders (cust integer, ts text, amt real)")
        con.executemany(
            "insert into orders values (?, ?, ?)",
            [
                (7, "2026-02-28 23:59:59", 1.0),
                (1, "2026-03-01 00:00:00", 10.0),
                (2, "2026-03-01 13:00:00", 4.5),
                (1, "2026-03-02 09:00:00", 2.0),
                (3, "2026-03-03 23:59:59", 8.0),
                (4, "2026-03-04 00:00:00", 3.0),
            ],
        )
    return f"sqlite:///{path}"


ORDERS_QUERY = (
    "select cust as customer_id, ts as timestamp, amt as amount from orders"
    " where ts >= :start and ts < :end order by ts"
)


def test_sql_binds_window_parameters(tmp_path: Path) -> None:
    """The query receives the window as :start/:end and returns canonical, typed timestamps."""
    url = sqlite_shop(tmp_path / "shop.db")
    frame = read_event_sql(url, ORDERS_QUERY, TRANSACTIONS, START, END, "UTC")
    assert frame["customer_id"].tolist() == ["1", "2", "1", "3"]
    assert (
        frame["timestamp"].tolist()
        == pd.to_datetime(
            [
                "2026-03-01 00:00:00",
                "2026-03-01 13:00:00",
                "2026-03-02 09:00:00",
                "2026-03-03 23:59:59",
            ]
        ).tolist()
    )


def test_sql_missing_column_is_reported(tmp_path: Path) -> None:
    """A query that does not return the canonical columns fails naming what is missing."""
    url = sqlite_shop(tmp_path / "shop.db")
    query = "select cust as customer_id, ts as timestamp from orders"
    with pytest.raises(MissingColumnsError, match=r"sql query: missing column\(s\) amount"):
        read_event_sql(url, query, TRANSACTIONS, START, END, "UTC")


# --------------------------------------------------------------------------------------------
# From settings to resources to partitioned raw tables
# --------------------------------------------------------------------------------------------

SHORT = {"partitions": {"start_date": "2026-03-01", "end_date": "2026-03-04"}}


@pytest.mark.parametrize(
    ("source", "cls"),
    [
        ({"kind": "synthetic"}, SyntheticSource),
        ({"kind": "files", "files": {"transactions_glob": "x/*.csv"}}, FilesSource),
        ({"kind": "sql", "sql": {"transactions_query": "select 1"}}, SqlSource),
    ],
)
def test_source_kind_picks_the_resource(make_settings, source, cls) -> None:
    """source.kind chooses the resource class, carrying the configured time zone."""
    settings = make_settings({**SHORT, "timezone": "Europe/Berlin", "source": source})
    resource = source_from_settings(settings)
    assert type(resource) is cls
    assert resource.timezone == "Europe/Berlin"


def test_transaction_log_csv_becomes_partitioned_raw_table(
    tmp_path: Path, make_settings: Callable[..., Settings], instance: dg.DagsterInstance
) -> None:
    """A user's CSV (own column names, YYYYMMDD dates) lands as one raw partition per day."""
    write_csv(tmp_path / "exports" / "tx_2026.csv", transaction_log())
    settings = make_settings(
        {
            **SHORT,
            "source": {
                "kind": "files",
                "files": {
                    "transactions_glob": str(tmp_path / "exports" / "tx_*.csv"),
                    "columns": TX_COLUMNS,
                    "timestamp_format": "%Y%m%d",
                },
            },
        }
    )
    result = run(
        build_defs(settings), instance, [RAW_TX], partition_range=("2026-03-01", "2026-03-03")
    )
    assert result.success
    assert instance.get_materialized_partitions(RAW_TX) == {
        "2026-03-01",
        "2026-03-02",
        "2026-03-03",
    }
    table = warehouse(settings, "select * from raw.transactions order by timestamp, customer_id")
    assert table["event_date"].dt.strftime("%Y-%m-%d").tolist() == [
        "2026-03-01",
        "2026-03-01",
        "2026-03-02",
        "2026-03-03",
        "2026-03-03",
    ]
    assert table["customer_id"].tolist() == ["1", "2", "1", "3", "4"]
    assert table["amount"].tolist() == [12.5, 3.2, 8.0, 5.55, 7.1]
    # Mar 4 is after the last partition: quarantined once, on the last day, naming the file;
    # Feb 28 is before the first: counted, never stored.
    quarantine = warehouse(settings, "select * from raw.transactions_quarantine")
    assert quarantine["reason"].str.contains("future-dated").tolist() == [True]
    assert quarantine["event_date"].tolist() == [pd.Timestamp("2026-03-03")]
    assert quarantine["source"].tolist() == [str(tmp_path / "exports" / "tx_2026.csv")]
    clean = next(
        e.materialization
        for e in result.get_asset_materialization_events()
        if e.materialization.asset_key == RAW_TX
    )
    files = clean.metadata["files"].value
    assert files == {
        str(tmp_path / "exports" / "tx_2026.csv"): {
            "rows_read": 7,
            "stored": 5,
            "quarantined": 1,
            "before_start": 1,
            "future_dated": 1,
            "other_days": 0,
        }
    }


def test_ratings_file_with_epoch_seconds_in_local_days(
    tmp_path: Path, make_settings: Callable[..., Settings], instance: dg.DagsterInstance
) -> None:
    """A ratings file (userId, movieId, rating, epoch seconds) splits into local-time days."""
    utc = pd.to_datetime(
        [
            "2026-03-01 05:00:00",  # Mar 1, 00:00 in New York: first second of the first day
            "2026-03-02 03:30:00",  # still Mar 1 in New York
            "2026-03-02 05:00:00",  # Mar 2, 00:00 local
            "2026-03-03 12:00:00",
            "2026-03-04 04:59:59",  # Mar 3, 23:59:59 local
            "2026-03-04 05:00:00",  # Mar 4 local: after the last partition
        ]
    )
    ratings = pd.DataFrame(
        {
            "userId": [1, 2, 3, 4, 5, 6],
            "movieId": [10, 20, 30, 40, 50, 60],
            "rating": [4.0, 3.5, 5.0, 1.0, 2.5, 4.0],
            "timestamp": (utc.astype("int64") // 10**9).astype(str),
        }
    )
    write_csv(tmp_path / "ratings.csv", ratings)
    settings = make_settings(
        {
            **SHORT,
            "timezone": "America/New_York",
            "source": {
                "kind": "files",
                "files": {
                    "interactions_glob": str(tmp_path / "ratings.csv"),
                    "columns": {
                        "user_id": "userId",
                        "item_id": "movieId",
                        "weight": "rating",
                        "timestamp": "timestamp",
                    },
                    "timestamp_unit": "s",
                },
            },
        }
    )
    result = run(
        build_defs(settings), instance, [RAW_INT], partition_range=("2026-03-01", "2026-03-03")
    )
    assert result.success
    table = warehouse(settings, "select * from raw.interactions order by user_id")
    assert table["user_id"].tolist() == ["1", "2", "3", "4", "5"]
    assert table["item_id"].tolist() == ["10", "20", "30", "40", "50"]
    assert table["event_date"].dt.strftime("%Y-%m-%d").tolist() == [
        "2026-03-01",
        "2026-03-01",
        "2026-03-02",
        "2026-03-03",
        "2026-03-03",
    ]
    assert table["timestamp"].tolist()[:2] == [
        pd.Timestamp("2026-03-01 00:00"),
        pd.Timestamp("2026-03-01 22:30"),
    ]
    assert table["weight"].tolist() == [4.0, 3.5, 5.0, 1.0, 2.5]
    # User 6's Mar 4 (local) rating is after the last partition: quarantined on Mar 3.
    quarantine = warehouse(settings, "select * from raw.interactions_quarantine")
    assert [json.loads(r)["user_id"] for r in quarantine["record"]] == ["6"]
    assert quarantine["event_date"].tolist() == [pd.Timestamp("2026-03-03")]
    checks = {str(c.partition): c for c in result.get_asset_check_evaluations()}
    check = checks["2026-03-03"]  # one result per day; the quarantined row is on Mar 3
    assert check.check_name == "interactions_quarantine_share"
    assert check.metadata["range_worst_day"].value == "2026-03-03"
    assert not check.passed


def sql_settings(make_settings, query: str) -> Settings:
    return make_settings(
        {
            **SHORT,
            "source": {
                "kind": "sql",
                "sql": {"url_env": "SHOP_DB_URL_FOR_TESTS", "transactions_query": query},
            },
        }
    )


def test_sql_source_fills_day_partitions(
    tmp_path: Path,
    make_settings: Callable[..., Settings],
    instance: dg.DagsterInstance,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """kind: sql reads the URL from the named env var and binds each partition's window."""
    monkeypatch.setenv("SHOP_DB_URL_FOR_TESTS", sqlite_shop(tmp_path / "shop.db"))
    settings = sql_settings(make_settings, ORDERS_QUERY)
    defs = build_defs(settings)
    assert run(defs, instance, [RAW_TX], partition="2026-03-02").success
    assert run(defs, instance, [RAW_TX], partition_range=("2026-03-01", "2026-03-03")).success
    table = warehouse(settings, "select * from raw.transactions order by timestamp")
    assert table["customer_id"].tolist() == ["1", "2", "1", "3"]
    assert table["event_date"].dt.day.tolist() == [1, 1, 2, 3]


def test_sql_query_that_overfetches_is_quarantined_not_loaded(
    tmp_path: Path,
    make_settings: Callable[..., Settings],
    instance: dg.DagsterInstance,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Rows a query returns from outside the partition never land in it: they are quarantined."""
    monkeypatch.setenv("SHOP_DB_URL_FOR_TESTS", sqlite_shop(tmp_path / "shop.db"))
    query = "select cust as customer_id, ts as timestamp, amt as amount from orders"
    settings = sql_settings(make_settings, query)
    result = run(build_defs(settings), instance, [RAW_TX], partition="2026-03-02")
    assert result.success
    clean = warehouse(settings, "select * from raw.transactions")
    assert clean["customer_id"].tolist() == ["1"]
    assert (clean["event_date"] == pd.Timestamp("2026-03-02")).all()
    quarantine = warehouse(settings, "select * from raw.transactions_quarantine")
    assert len(quarantine) == 5
    assert quarantine["reason"].str.contains("timestamp outside").all()
    assert (quarantine["source"] == "sql").all()
    (check,) = result.get_asset_check_evaluations()
    assert not check.passed


def test_sql_without_url_env_var_fails_naming_it(
    make_settings: Callable[..., Settings],
    instance: dg.DagsterInstance,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An unset URL variable stops the run with an error naming the variable."""
    monkeypatch.delenv("SHOP_DB_URL_FOR_TESTS", raising=False)
    settings = sql_settings(make_settings, ORDERS_QUERY)
    with pytest.raises(Exception, match="SHOP_DB_URL_FOR_TESTS"):
        run(build_defs(settings), instance, [RAW_TX], partition="2026-03-02")
    assert instance.get_materialized_partitions(RAW_TX) == set()


# --------------------------------------------------------------------------------------------
# Real export shapes: offsets and DST, header-only files, encodings, ids, every row accounted
# --------------------------------------------------------------------------------------------


def test_mixed_offsets_across_dst_land_in_local_days() -> None:
    """ISO offsets may differ row by row (CET +01:00, CEST +02:00): each instant lands on its
    Amsterdam wall clock; naive text is already local, even in the hour DST skips or repeats."""
    values = pd.Series(
        [
            "2025-03-29T10:00:00+01:00",
            "2025-03-30T10:00:00+02:00",
            "2025-03-29T23:30:00Z",  # 00:30 on Mar 30 in Amsterdam (UTC+1)
            "2025-03-30T22:30:00Z",  # 00:30 on Mar 31 (UTC+2 since 02:00 on Mar 30)
            "2025-03-30 02:30",  # naive, in the skipped hour: kept as written
            "2025-10-26 02:30:00",  # naive, in the repeated hour: kept as written
            "2025-10-26T00:30:00Z",  # 02:30 CEST
            "2025-10-26T01:30:00Z",  # 02:30 CET
        ]
    )
    parsed = parse_timestamps(values, None, None, "Europe/Amsterdam")
    assert parsed.dt.tz is None
    assert (
        parsed.tolist()
        == pd.to_datetime(
            [
                "2025-03-29 10:00",
                "2025-03-30 10:00",
                "2025-03-30 00:30",
                "2025-03-31 00:30",
                "2025-03-30 02:30",
                "2025-10-26 02:30",
                "2025-10-26 02:30",
                "2025-10-26 02:30",
            ]
        ).tolist()
    )


def test_naive_text_after_aware_text_keeps_its_wall_clock() -> None:
    """A naive value is never given the offset of an aware value before it (pandas does that
    when both are parsed in one call)."""
    values = pd.Series(["2025-03-29T10:00:00+05:00", "2025-03-29 10:00:00"])
    parsed = parse_timestamps(values, None, None, "UTC")
    assert parsed.tolist() == [pd.Timestamp("2025-03-29 05:00"), pd.Timestamp("2025-03-29 10:00")]


def test_format_with_offset_converts_each_row() -> None:
    """A strftime format with %z converts every row by its own offset."""
    values = pd.Series(["20250329 10:00 +0100", "20250330 10:00 +0200"])
    parsed = parse_timestamps(values, "%Y%m%d %H:%M %z", None, "Europe/Amsterdam")
    assert parsed.tolist() == pd.to_datetime(["2025-03-29 10:00", "2025-03-30 10:00"]).tolist()


@pytest.mark.parametrize("content", ["cust_no,txn_day,total_eur\n", ""], ids=["header", "0-byte"])
def test_header_only_or_empty_file_contributes_no_rows(tmp_path: Path, content: str) -> None:
    """An export of a quiet day (only a header, or nothing) adds zero rows and no error."""
    write_csv(tmp_path / "a.csv", transaction_log())
    (tmp_path / "b.csv").write_text(content)
    found = read_files(
        str(tmp_path / "*.csv"),
        TRANSACTIONS,
        TX_COLUMNS,
        Window(START, END),
        "UTC",
        FileOptions("%Y%m%d"),
    )
    assert len(found.frame) == 5
    assert found.files.loc[str(tmp_path / "b.csv")].to_dict() == dict.fromkeys(FILE_COUNTS, 0)


def test_glob_of_header_only_files_gives_an_empty_typed_frame(tmp_path: Path) -> None:
    """Only header-only files: zero rows with the canonical columns, validation copes."""
    (tmp_path / "a.csv").write_text("cust_no,txn_day,total_eur\n")
    frame = read_event_files(
        str(tmp_path / "*.csv"), TRANSACTIONS, TX_COLUMNS, START, END, "UTC", "%Y%m%d"
    )
    assert frame.empty
    batch = validate_rows(frame, TRANSACTIONS, START, END, origin="test")
    assert batch.clean.empty and batch.quarantine.empty


def test_parquet_integer_and_float_ids_become_integer_text(tmp_path: Path) -> None:
    """Parquet integer ids give decimal text (all 19 digits); a float id column (integers with
    a gap) gives "7", not "7.0"; text ids stay as written."""
    pd.DataFrame(
        {
            "u": pd.Series([1234567890123456789, 42], dtype="int64"),
            "i": pd.Series([7.0, None]),
            "t": pd.to_datetime(["2026-03-01 10:00", "2026-03-02 10:00"]),
        }
    ).to_parquet(tmp_path / "a.parquet")
    pd.DataFrame({"u": ["00042"], "i": ["1e5"], "t": ["2026-03-02 11:00"]}).to_parquet(
        tmp_path / "b.parquet"
    )
    mapping = {"user_id": "u", "item_id": "i", "timestamp": "t", "weight": None}
    frame = read_event_files(str(tmp_path / "*.parquet"), INTERACTIONS, mapping, START, END, "UTC")
    assert frame["user_id"].tolist() == ["1234567890123456789", "42", "00042"]
    assert frame["item_id"].tolist() == ["7", None, "1e5"]


def test_every_row_of_a_file_is_accounted_for(tmp_path: Path) -> None:
    """Per file: rows before the first partition are counted (never handed on); rows after the
    last are handed on only by the run holding the last day; the rest wait for their own day."""
    log = transaction_log()  # Feb 28, Mar 1 ×2, Mar 2, Mar 3 ×2, Mar 4
    write_csv(tmp_path / "tx.csv", log)
    first, last_end = pd.Timestamp("2026-03-01"), pd.Timestamp("2026-03-04")

    def read(start: str, end: str) -> FilesRead:
        window = Window(pd.Timestamp(start), pd.Timestamp(end), first, last_end, last_end)
        return read_files(
            str(tmp_path / "tx.csv"), TRANSACTIONS, TX_COLUMNS, window, "UTC", FileOptions("%Y%m%d")
        )

    early, late = read("2026-03-01", "2026-03-02"), read("2026-03-03", "2026-03-04")
    path = str(tmp_path / "tx.csv")
    assert early.files.loc[path].to_dict() == {
        "rows_read": 7,
        "before_start": 1,
        "future_dated": 1,
        "other_days": 4,
        "handed_on": 2,
    }
    assert early.frame["customer_id"].tolist() == ["1", "2"]
    assert late.files.loc[path, "handed_on"] == 3
    assert late.frame["customer_id"].tolist() == ["3", "4", "5"]  # Mar 3 ×2 and the Mar 4 row


def test_undatable_rows_are_handed_on_inside_the_partition_range(tmp_path: Path) -> None:
    """A file whose first day is before the first partition still gets its unparseable rows
    quarantined — in the first partition, not in a day no run covers."""
    log = transaction_log()
    log.loc[3, "txn_day"] = "someday"
    write_csv(tmp_path / "tx.csv", log)
    first = pd.Timestamp("2026-03-01")
    window = Window(first, pd.Timestamp("2026-03-02"), first, END, END)
    found = read_files(
        str(tmp_path / "tx.csv"), TRANSACTIONS, TX_COLUMNS, window, "UTC", FileOptions("%Y%m%d")
    )
    assert found.frame["timestamp"].isna().sum() == 1


def test_partition_window_for_fixed_and_open_ranges() -> None:
    """Fixed range: future-dated from end_date, handed on by the run holding its last day.
    Open range: the last partition is yesterday; rows dated today wait; after today, future."""
    today = pd.Timestamp("2026-03-10 15:00")
    fixed = partition_window(
        pd.Timestamp("2026-03-01"),
        pd.Timestamp("2026-03-04"),
        pd.Timestamp("2026-03-01").date(),
        pd.Timestamp("2026-03-04").date(),
        today,
    )
    assert fixed.holds_last_day and fixed.future_here == pd.Timestamp("2026-03-04")
    opened = partition_window(
        pd.Timestamp("2026-03-08"),
        pd.Timestamp("2026-03-10"),
        pd.Timestamp("2026-03-01").date(),
        None,
        today,
    )
    assert opened.holds_last_day
    assert opened.future_here == pd.Timestamp("2026-03-11")
    earlier = partition_window(
        pd.Timestamp("2026-03-01"),
        pd.Timestamp("2026-03-03"),
        pd.Timestamp("2026-03-01").date(),
        None,
        today,
    )
    assert earlier.future_here is None


def test_non_utf8_file_names_file_and_encoding_setting(tmp_path: Path) -> None:
    """A Latin-1 export read as UTF-8 fails naming the file first and the setting to change;
    with the encoding (and the ; separator) set, it reads."""
    path = tmp_path / "tx.csv"
    path.write_bytes("cust_no;txn_day;total_eur\nJosé;20260301;1,5\n".encode("latin-1"))
    with pytest.raises(UnreadableFileError, match=rf"^{path}: .*source\.files\.encoding"):
        read_files(str(path), TRANSACTIONS, TX_COLUMNS, Window(START, END), "UTC")
    found = read_files(
        str(path),
        TRANSACTIONS,
        TX_COLUMNS,
        Window(START, END),
        "UTC",
        FileOptions("%Y%m%d", encoding="latin-1", delimiter=";"),
    )
    assert found.frame["customer_id"].tolist() == ["José"]


def test_all_unparseable_timestamps_name_the_file(tmp_path: Path) -> None:
    """A file whose time column never parses (a wrong format setting) names file and column."""
    path = write_csv(tmp_path / "tx.csv", transaction_log())
    with pytest.raises(UnreadableFileError, match=rf"^{path}: no timestamp in column 'txn_day'"):
        read_files(
            str(path), TRANSACTIONS, TX_COLUMNS, Window(START, END), "UTC", FileOptions("%d.%m.%Y")
        )


def test_per_table_timestamp_style_and_column(make_settings) -> None:
    """An orders export (YYYYMMDD, column 'day') and a ratings file (epoch seconds, column
    'ts') configured side by side."""
    settings = make_settings(
        {
            **SHORT,
            "source": {
                "kind": "files",
                "files": {
                    "transactions_glob": "x/*.csv",
                    "interactions_glob": "y/*.csv",
                    "timestamp_format": "%Y%m%d",
                    "interactions_timestamp_unit": "s",
                    "columns": {"transactions_timestamp": "day", "interactions_timestamp": "ts"},
                },
            },
        }
    )
    source = source_from_settings(settings)
    assert isinstance(source, FilesSource)
    assert source.options("transactions").timestamp_format == "%Y%m%d"
    assert source.options("transactions").timestamp_unit is None
    assert source.options("interactions").timestamp_format is None
    assert source.options("interactions").timestamp_unit == "s"
    assert source.mapping("transactions")["timestamp"] == "day"
    assert source.mapping("interactions")["timestamp"] == "ts"


def test_synthetic_source_gives_text_ids(make_settings) -> None:
    """The demo shop numbers its customers; the source hands them on as text."""
    source = source_from_settings(make_settings(SHORT))
    frame = source.fetch("interactions", START, START + pd.Timedelta(days=1))
    assert len(frame) > 0
    assert all(type(v) is str for v in frame["user_id"]) and all(
        type(v) is str for v in frame["item_id"]
    )


def test_file_days_reads_like_the_source(tmp_path: Path) -> None:
    """The days a file covers, read with the source's encoding, separator and timestamp style
    (what a drop sensor should ask); a header-only file covers none."""
    path = tmp_path / "tx.csv"
    path.write_bytes(
        "cust_no;txn_day;total_eur\nJosé;20260301;1\nAnn;20260303;2\n".encode("latin-1")
    )
    options = FileOptions("%Y%m%d", encoding="latin-1", delimiter=";")
    assert file_days(path, "txn_day", "UTC", options) == ["2026-03-01", "2026-03-03"]
    (tmp_path / "empty.csv").write_text("cust_no;txn_day;total_eur\n")
    assert file_days(tmp_path / "empty.csv", "txn_day", "UTC", options) == []
