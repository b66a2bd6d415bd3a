"""Tests for the raw/* multi-assets: exact daily partitions, quarantine, quality, failures."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
import pytest
from conftest import run

from definitions import build_defs
from lifecycle.registry import DAGSTER_DUCKDB_CONFIG
from lifecycle.settings import Settings
from lifecycle.sources import UnreadableFileError
from lifecycle.validation import EmptyPartitionError, MissingColumnsError

RAW_TX = dg.AssetKey(["raw", "transactions"])
QUARANTINE = dg.AssetKey(["raw", "transactions_quarantine"])
QUALITY = dg.AssetKey(["raw", "transactions_daily_quality"])
DAYS = [f"2026-03-0{d}" for d in range(1, 8)]  # the seven day partitions
TIMES = ["00:00:00", "00:00:01", "06:15:00", "12:00:00", "18:45:30", "23:59:59"]
COLUMNS = {"customer_id": "client", "timestamp": "at", "amount": "value"}
FAIL_ON_EMPTY = {"validation": {"on_empty_day": "fail"}}


@pytest.fixture(scope="module")
def shared_instance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dg.DagsterInstance]:
    """One instance for the module (tests assert on their own run's events, not on history)."""
    home = tmp_path_factory.mktemp("dagster_home")
    with dg.instance_for_test(temp_dir=str(home)) as inst:
        yield inst


def good_rows(days: list[str] = DAYS) -> pd.DataFrame:
    """Six clean purchases per day, including the first and last second of the day."""
    rows = [
        {"client": str(100 * int(d[-2:]) + j), "at": f"{d} {t}", "value": f"{1 + j}.25"}
        for d in days
        for j, t in enumerate(TIMES)
    ]
    return pd.DataFrame(rows)


BAD_ON_MAR_3 = pd.DataFrame(
    [
        {"client": None, "at": "2026-03-03 08:00:00", "value": "4"},
        {"client": "501", "at": "2026-03-03 09:00:00", "value": "four"},
        {"client": "502", "at": "2026-03-03 10:00:00", "value": "-4"},
        {"client": "300", "at": "2026-03-03 00:00:00", "value": "1.25"},  # exact duplicate
    ]
)


def files_settings(make_settings, folder: Path, override: dict | None = None) -> Settings:
    return make_settings(
        {
            "partitions": {"start_date": "2026-03-01", "end_date": "2026-03-08"},
            "source": {
                "kind": "files",
                "files": {"transactions_glob": str(folder / "*.csv"), "columns": COLUMNS},
            },
            **(override or {}),
        }
    )


def write(folder: Path, frame: pd.DataFrame, name: str = "tx.csv") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    frame.to_csv(path, index=False)
    return path


def table(settings: Settings, sql: str) -> pd.DataFrame:
    with duckdb.connect(settings.warehouse.database, config=dict(DAGSTER_DUCKDB_CONFIG)) as con:
        return con.execute(sql).df()


def raw_tables(settings: Settings) -> list[str]:
    if not Path(settings.warehouse.database).exists():
        return []
    found = table(settings, "select table_name from information_schema.tables")
    return sorted(found["table_name"])


def materialized(result: dg.ExecuteInProcessResult) -> dict[dg.AssetKey, set[str]]:
    out: dict[dg.AssetKey, set[str]] = {}
    for event in result.get_asset_materialization_events():
        mat = event.materialization
        out.setdefault(mat.asset_key, set()).add(str(mat.partition))
    return out


def test_each_partition_holds_exactly_its_days_rows(
    tmp_path: Path, make_settings: Callable[..., Settings], shared_instance: dg.DagsterInstance
) -> None:
    """A day partition gets exactly the rows whose timestamp lies in that day, and a range run
    that covers an already materialised day replaces it instead of duplicating it."""
    source = good_rows()
    write(tmp_path / "in", source)
    settings = files_settings(make_settings, tmp_path / "in")
    defs = build_defs(settings)

    single = run(defs, shared_instance, [RAW_TX], partition="2026-03-04")
    assert materialized(single) == {key: {"2026-03-04"} for key in (RAW_TX, QUARANTINE, QUALITY)}
    stored = table(settings, "select * from raw.transactions order by timestamp")
    assert stored["timestamp"].dt.strftime("%H:%M:%S").tolist() == TIMES
    assert (stored["event_date"] == pd.Timestamp("2026-03-04")).all()

    ranged = run(defs, shared_instance, [RAW_TX], partition_range=("2026-03-01", "2026-03-07"))
    assert materialized(ranged)[RAW_TX] == set(DAYS)
    stored = table(settings, "select * from raw.transactions order by timestamp, customer_id")
    expected = source.assign(at=pd.to_datetime(source["at"]))
    assert stored["customer_id"].tolist() == expected["client"].tolist()
    assert stored["timestamp"].tolist() == expected["at"].tolist()
    assert (stored["event_date"] == stored["timestamp"].dt.normalize()).all()
    assert stored["amount"].tolist() == expected["value"].astype(float).tolist()

    quality = table(settings, "select * from raw.transactions_daily_quality order by event_date")
    assert quality["event_date"].dt.strftime("%Y-%m-%d").tolist() == DAYS
    assert quality["kept"].tolist() == [6] * 7
    assert quality["quarantined"].tolist() == [0] * 7
    assert quality["passed"].all()
    checks = ranged.get_asset_check_evaluations()  # one per day of the range
    assert sorted(str(c.partition) for c in checks) == DAYS
    assert all(c.passed for c in checks)


def test_bad_rows_are_quarantined_with_reasons_and_the_check_warns(
    tmp_path: Path, make_settings: Callable[..., Settings], shared_instance: dg.DagsterInstance
) -> None:
    """Bad rows go to raw/transactions_quarantine with a reason; the day's share (4 of 10)
    fails the 5% bound: a WARN check failure and passed=False in the quality table, while
    the run itself succeeds and the good rows load."""
    write(tmp_path / "in", pd.concat([good_rows(DAYS[1:3]), BAD_ON_MAR_3]))
    settings = files_settings(make_settings, tmp_path / "in")
    result = run(
        build_defs(settings),
        shared_instance,
        [RAW_TX],
        partition_range=("2026-03-02", "2026-03-03"),
    )
    assert result.success

    clean = table(settings, "select * from raw.transactions")
    assert len(clean) == 12
    assert not clean["customer_id"].isin(["501", "502"]).any()
    assert clean["customer_id"].isin(["200", "300"]).any()

    quarantine = table(settings, "select * from raw.transactions_quarantine order by record")
    assert (quarantine["event_date"] == pd.Timestamp("2026-03-03")).all()
    records = [json.loads(r) for r in quarantine["record"]]
    by_client = {
        None if pd.isna(r["customer_id"]) else r["customer_id"]: (r, why)
        for r, why in zip(records, quarantine["reason"], strict=True)
    }
    assert len(by_client) == 4
    assert "customer_id" in by_client[None][1]
    assert "amount: not a number" in by_client["501"][1]
    assert by_client["501"][0] == {
        "customer_id": "501",
        "timestamp": "2026-03-03 09:00:00",
        "amount": "four",
    }
    assert "amount: greater_than_or_equal_to(0)" in by_client["502"][1]
    assert by_client["300"][1] == "duplicate row"

    quality = table(settings, "select * from raw.transactions_daily_quality order by event_date")
    assert quality["kept"].tolist() == [6, 6]
    assert quality["quarantined"].tolist() == [0, 4]
    assert quality["share"].tolist() == pytest.approx([0.0, 0.4])
    assert quality["passed"].tolist() == [True, False]

    checks = {str(c.partition): c for c in result.get_asset_check_evaluations()}
    assert checks["2026-03-02"].passed
    check = checks["2026-03-03"]
    assert check.check_name == "transactions_quarantine_share"
    assert not check.passed
    assert check.severity == dg.AssetCheckSeverity.WARN
    assert check.metadata["range_worst_day"].value == "2026-03-03"
    assert check.metadata["range_days_over_bound"].value == 1
    assert check.metadata["range_max_share"].value == pytest.approx(0.4)
    assert check.metadata["share"].value == pytest.approx(0.4)


@pytest.mark.parametrize(("bound", "passed"), [(0.4, True), (0.39, False)])
def test_quarantine_bound_comes_from_settings(
    tmp_path: Path,
    make_settings: Callable[..., Settings],
    shared_instance: dg.DagsterInstance,
    bound: float,
    passed: bool,
) -> None:
    """The check fails only when a day's share exceeds validation.max_quarantine_share."""
    write(tmp_path / "in", pd.concat([good_rows(DAYS[2:3]), BAD_ON_MAR_3]))
    settings = files_settings(
        make_settings, tmp_path / "in", {"validation": {"max_quarantine_share": bound}}
    )
    result = run(build_defs(settings), shared_instance, [RAW_TX], partition="2026-03-03")
    (check,) = result.get_asset_check_evaluations()
    assert check.passed is passed
    quality = table(settings, "select passed from raw.transactions_daily_quality")
    assert quality["passed"].tolist() == [passed]


def test_missing_column_fails_naming_file_and_column_and_writes_nothing(
    tmp_path: Path, make_settings: Callable[..., Settings], shared_instance: dg.DagsterInstance
) -> None:
    """A file without a mapped column stops the run before any output is written."""
    path = write(tmp_path / "in", good_rows().drop(columns=["value"]))
    settings = files_settings(make_settings, tmp_path / "in")
    with pytest.raises(MissingColumnsError, match=rf"{path}: missing column\(s\) value"):
        run(build_defs(settings), shared_instance, [RAW_TX], partition="2026-03-02")
    assert raw_tables(settings) == []


def test_unreadable_file_fails_naming_the_file(
    tmp_path: Path, make_settings: Callable[..., Settings], shared_instance: dg.DagsterInstance
) -> None:
    """One corrupt file among good ones fails the run with UnreadableFileError naming it."""
    write(tmp_path / "in", good_rows())
    bad = tmp_path / "in" / "zz_corrupt.csv"
    bad.write_text('client,at,value\n1,"2026-03-02 10:00:00,2\n')
    settings = files_settings(make_settings, tmp_path / "in")
    with pytest.raises(UnreadableFileError, match=str(bad)):
        run(build_defs(settings), shared_instance, [RAW_TX], partition="2026-03-02")
    assert raw_tables(settings) == []


def test_empty_day_fails_naming_it_and_writes_nothing(
    tmp_path: Path, make_settings: Callable[..., Settings], shared_instance: dg.DagsterInstance
) -> None:
    """With on_empty_day: fail, a day without rows inside a range run fails the whole step,
    naming the day."""
    write(tmp_path / "in", good_rows([d for d in DAYS if d != "2026-03-05"]))
    settings = files_settings(make_settings, tmp_path / "in", FAIL_ON_EMPTY)
    with pytest.raises(EmptyPartitionError, match=r"no valid rows for day\(s\) 2026-03-05 "):
        run(
            build_defs(settings),
            shared_instance,
            [RAW_TX],
            partition_range=("2026-03-01", "2026-03-07"),
        )
    assert raw_tables(settings) == []


def test_day_of_only_bad_rows_counts_as_empty(
    tmp_path: Path, make_settings: Callable[..., Settings], shared_instance: dg.DagsterInstance
) -> None:
    """A day whose every row is quarantined has no valid rows: it fails like an empty day."""
    write(tmp_path / "in", pd.concat([good_rows(DAYS[:2]), BAD_ON_MAR_3.iloc[:3]]))
    settings = files_settings(make_settings, tmp_path / "in", FAIL_ON_EMPTY)
    with pytest.raises(EmptyPartitionError, match=r"no valid rows for day\(s\) 2026-03-03 "):
        run(build_defs(settings), shared_instance, [RAW_TX], partition="2026-03-03")
    assert raw_tables(settings) == []


def test_empty_day_allowed_by_settings(
    tmp_path: Path, make_settings: Callable[..., Settings], shared_instance: dg.DagsterInstance
) -> None:
    """With on_empty_day: allow, the quiet day is materialised with zero rows and a passing
    quality row, and the other days load as usual."""
    write(tmp_path / "in", good_rows([d for d in DAYS if d != "2026-03-05"]))
    settings = files_settings(
        make_settings, tmp_path / "in", {"validation": {"on_empty_day": "allow"}}
    )
    result = run(
        build_defs(settings),
        shared_instance,
        [RAW_TX],
        partition_range=("2026-03-04", "2026-03-06"),
    )
    assert result.success
    assert materialized(result)[RAW_TX] == {"2026-03-04", "2026-03-05", "2026-03-06"}
    counts = table(
        settings, "select strftime(event_date, '%d') d, count(*) n from raw.transactions group by 1"
    )
    assert dict(zip(counts["d"], counts["n"], strict=True)) == {"04": 6, "06": 6}
    quality = table(settings, "select * from raw.transactions_daily_quality order by event_date")
    assert quality["kept"].tolist() == [6, 0, 6]
    assert quality["empty"].tolist() == [False, True, False]
    assert quality["passed"].all()
    checks = {str(c.partition): c for c in result.get_asset_check_evaluations()}
    assert all(c.passed for c in checks.values())
    assert [d for d, c in checks.items() if c.metadata["empty"].value] == ["2026-03-05"]
    assert checks["2026-03-04"].metadata["range_empty_days"].value == 1


def test_clean_day_then_day_with_bad_rows(
    tmp_path: Path, make_settings: Callable[..., Settings], shared_instance: dg.DagsterInstance
) -> None:
    """The usual life of a feed: a first clean day, later a day with a bad row; both load."""
    write(tmp_path / "in", pd.concat([good_rows(DAYS[:3]), BAD_ON_MAR_3]))
    settings = files_settings(make_settings, tmp_path / "in")
    defs = build_defs(settings)
    assert run(defs, shared_instance, [RAW_TX], partition="2026-03-02").success
    result = run(defs, shared_instance, [RAW_TX], partition="2026-03-03", raise_on_error=False)
    assert result.success
    quarantine = table(settings, "select * from raw.transactions_quarantine")
    assert len(quarantine) == 4
