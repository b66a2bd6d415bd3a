"""Tests for row validation: good rows go on, bad rows go to quarantine with a reason."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from lifecycle.validation import (
    INTERACTIONS,
    ROW_SOURCE,
    TRANSACTIONS,
    InteractionsSchema,
    Limits,
    MissingColumnsError,
    QuarantineSchema,
    TransactionsSchema,
    daily_quality,
    empty_days,
    quarantine_share_by_day,
    validate_rows,
)

DAY = pd.Timestamp("2026-03-02")
NEXT = DAY + pd.Timedelta(days=1)

GOOD = [
    {"customer_id": "1", "timestamp": "2026-03-02 00:00:00", "amount": "10.5"},
    {"customer_id": "2", "timestamp": "2026-03-02 12:30:00", "amount": "0"},
    {"customer_id": "3", "timestamp": "2026-03-02 23:59:59", "amount": "99"},
]


def transactions(*extra: dict[str, object]) -> pd.DataFrame:
    """Three good rows of DAY followed by ``extra`` rows, all as strings (like a CSV)."""
    return pd.DataFrame([*GOOD, *extra], columns=["customer_id", "timestamp", "amount"])


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ({"customer_id": None, "timestamp": "2026-03-02 01:00", "amount": "5"}, "customer_id"),
        ({"customer_id": "7", "timestamp": "2026-03-02 01:00", "amount": "abc"}, "not a number"),
        ({"customer_id": "7", "timestamp": "2026-03-02 01:00", "amount": "-0.01"}, "amount"),
        ({"customer_id": "7", "timestamp": "2026-03-02 01:00", "amount": None}, "amount"),
        ({"customer_id": "7", "timestamp": "2026-03-01 23:59:59", "amount": "5"}, "outside"),
        ({"customer_id": "7", "timestamp": "2026-03-03 00:00:00", "amount": "5"}, "outside"),
        ({"customer_id": "7", "timestamp": "yesterday-ish", "amount": "5"}, "unparseable"),
        ({"customer_id": "7", "timestamp": None, "amount": "5"}, "timestamp"),
        ({"customer_id": "", "timestamp": "2026-03-02 01:00", "amount": "5"}, "blank id"),
        ({"customer_id": " \t ", "timestamp": "2026-03-02 01:00", "amount": "5"}, "blank id"),
        ({"customer_id": "7", "timestamp": "2026-03-02 01:00", "amount": "inf"}, "not finite"),
        ({"customer_id": "7", "timestamp": "2026-03-02 01:00", "amount": "-inf"}, "not finite"),
        ({"customer_id": "7", "timestamp": "2026-03-02 01:00", "amount": "nan"}, "amount"),
        (
            {"customer_id": "7", "timestamp": "2026-03-02 01:00", "amount": "1e308"},
            "above validation.max_amount (1e+07)",
        ),
        (dict(GOOD[1]), "duplicate row"),
    ],
    ids=[
        "null-key",
        "non-numeric-amount",
        "negative-amount",
        "null-amount",
        "before-partition",
        "at-exclusive-end",
        "unparseable-time",
        "null-time",
        "empty-id",
        "whitespace-id",
        "inf-amount",
        "minus-inf-amount",
        "nan-amount",
        "absurd-amount",
        "exact-duplicate",
    ],
)
def test_bad_row_goes_to_quarantine_with_reason(bad: dict[str, object], reason: str) -> None:
    """Each kind of bad row is quarantined (with why) and only it; good rows stay clean."""
    batch = validate_rows(transactions(bad), TRANSACTIONS, DAY, NEXT, origin="test")
    assert sorted(batch.clean["customer_id"]) == ["1", "2", "3"]
    assert len(batch.quarantine) == 1
    row = batch.quarantine.iloc[0]
    assert reason in row["reason"]
    assert json.loads(row["record"]) == bad
    assert row["event_date"] == DAY
    assert row["source"] == "test"


def test_clean_rows_are_typed_sorted_and_dated() -> None:
    """Clean rows match the pandera schema, get event_date = local midnight, sort by time."""
    shuffled = transactions().iloc[[2, 0, 1]]
    batch = validate_rows(shuffled, TRANSACTIONS, DAY, NEXT, origin="test")
    TransactionsSchema.validate(batch.clean)
    assert list(batch.clean.columns) == ["customer_id", "timestamp", "amount", "event_date"]
    assert batch.clean["customer_id"].tolist() == ["1", "2", "3"]
    assert batch.clean["amount"].tolist() == [10.5, 0.0, 99.0]
    assert (batch.clean["event_date"] == DAY).all()
    assert batch.quarantine.empty


def test_nothing_is_lost_or_doubled() -> None:
    """Every input row is either clean or quarantined, exactly once, with its values verbatim."""
    bad = [
        {"customer_id": None, "timestamp": "2026-03-02 01:00:00", "amount": "5"},
        {"customer_id": "4", "timestamp": "2026-03-02 02:00:00", "amount": "1,5"},
        {"customer_id": "5", "timestamp": "2026-03-04 02:00:00", "amount": "-3"},
        dict(GOOD[0]),
        dict(GOOD[0]),
    ]
    raw = transactions(*bad)
    batch = validate_rows(raw, TRANSACTIONS, DAY, NEXT, origin="test")
    assert len(batch.clean) + len(batch.quarantine) == len(raw)
    assert len(batch.quarantine) == len(bad)
    assert [json.loads(r) for r in batch.quarantine["record"]] == bad
    QuarantineSchema.validate(batch.quarantine)
    # The row with two problems lists both.
    two = batch.quarantine.iloc[2]["reason"]
    assert "outside" in two
    assert "greater_than_or_equal_to" in two


def test_duplicate_keeps_first_and_near_duplicates_stay() -> None:
    """Only exact duplicates are quarantined; a same-time purchase with another amount is kept."""
    again = dict(GOOD[0])
    near = {**GOOD[0], "amount": "10.6"}
    batch = validate_rows(transactions(again, near), TRANSACTIONS, DAY, NEXT, origin="test")
    assert len(batch.clean) == 4
    assert batch.quarantine["reason"].tolist() == ["duplicate row"]
    assert (batch.clean["customer_id"] == "1").sum() == 2


def test_interaction_rules() -> None:
    """Interactions need both ids and a strictly positive weight."""
    raw = pd.DataFrame(
        {
            "user_id": ["1", "2", "3", None],
            "item_id": ["10", None, "12", "13"],
            "timestamp": ["2026-03-02 10:00"] * 4,
            "weight": ["5", "1", "0", "3"],
        }
    )
    batch = validate_rows(raw, INTERACTIONS, DAY, NEXT, origin="test")
    InteractionsSchema.validate(batch.clean)
    assert batch.clean[["user_id", "item_id", "weight"]].values.tolist() == [["1", "10", 5.0]]
    reasons = batch.quarantine["reason"].tolist()
    assert len(reasons) == 3
    assert "item_id" in reasons[0]
    assert "weight: greater_than(0)" in reasons[1]
    assert "user_id" in reasons[2]


def test_quarantine_day_in_a_range_window() -> None:
    """In a multi-day window a bad row is filed under its own day, undatable ones on the first."""
    start, end = pd.Timestamp("2026-03-01"), pd.Timestamp("2026-03-04")
    raw = pd.DataFrame(
        {
            "customer_id": ["1", None, "3", "4"],
            "timestamp": ["2026-03-01 09:00", "2026-03-03 09:00", "garbage", "2026-03-09 09:00"],
            "amount": ["1", "1", "1", "1"],
        }
    )
    batch = validate_rows(raw, TRANSACTIONS, start, end, origin="test")
    assert batch.quarantine["event_date"].tolist() == [
        pd.Timestamp("2026-03-03"),
        start,
        start,
    ]


def test_extra_columns_are_dropped() -> None:
    """Columns beyond the canonical ones never reach the warehouse."""
    raw = transactions().assign(note="x")
    batch = validate_rows(raw, TRANSACTIONS, DAY, NEXT, origin="test")
    assert "note" not in batch.clean.columns


def test_missing_column_raises_naming_origin_and_column() -> None:
    """A structurally broken batch raises instead of quarantining every row."""
    raw = transactions().drop(columns=["amount"])
    with pytest.raises(MissingColumnsError, match=r"shop\.csv: missing column\(s\) amount"):
        validate_rows(raw, TRANSACTIONS, DAY, NEXT, origin="shop.csv")


def test_empty_batch_keeps_schema() -> None:
    """An empty batch still yields a clean frame of the right dtypes (for allowed empty days)."""
    raw = pd.DataFrame({c: pd.Series([], dtype=object) for c in TRANSACTIONS.columns})
    batch = validate_rows(raw, TRANSACTIONS, DAY, NEXT, origin="test")
    TransactionsSchema.validate(batch.clean)
    assert batch.clean.empty
    assert batch.quarantine.empty


def test_empty_days_lists_days_without_clean_rows() -> None:
    """Days of the window with no clean row are reported as YYYY-MM-DD."""
    clean = pd.DataFrame({"event_date": pd.to_datetime(["2026-03-01", "2026-03-01", "2026-03-03"])})
    days = empty_days(clean, pd.Timestamp("2026-03-01"), pd.Timestamp("2026-03-05"))
    assert days == ["2026-03-02", "2026-03-04"]


def test_quarantine_share_by_day_hand_computed() -> None:
    """Per-day kept/quarantined counts and share = quarantined / (kept + quarantined)."""
    clean = pd.DataFrame({"event_date": pd.to_datetime(["2026-03-01"] * 3 + ["2026-03-02"])})
    quarantine = pd.DataFrame({"event_date": pd.to_datetime(["2026-03-01", "2026-03-02"] * 1)})
    shares = quarantine_share_by_day(
        clean, quarantine, pd.Timestamp("2026-03-01"), pd.Timestamp("2026-03-04")
    )
    assert shares["day"].dt.strftime("%Y-%m-%d").tolist() == [
        "2026-03-01",
        "2026-03-02",
        "2026-03-03",
    ]
    assert shares["kept"].tolist() == [3, 1, 0]
    assert shares["quarantined"].tolist() == [1, 1, 0]
    assert shares["share"].tolist() == pytest.approx([0.25, 0.5, 0.0])


def _no_constants(name: str) -> object:
    raise ValueError(f"not strict JSON: {name}")


def test_quarantine_record_is_strict_json() -> None:
    """A quarantined row read from a CSV (missing values are NaN there) is stored as valid JSON."""
    raw = transactions(
        {"customer_id": float("nan"), "timestamp": "2026-03-02 01:00", "amount": "5"}
    )
    batch = validate_rows(raw, TRANSACTIONS, DAY, NEXT, origin="test")
    (record,) = batch.quarantine["record"]
    assert json.loads(record, parse_constant=_no_constants)["customer_id"] is None


@pytest.mark.parametrize(
    "ids",
    [
        ["00042", "42", "042"],
        ["1e5", "100000", "1E5"],
        ["9223372036854775807", "9223372036854775808", "1234567890123456789"],
        ["-4", "1.5", "x9"],
        ["3f2b8a4e-9c1d-4e6b-8a7f-0d1c2b3a4e5f", "3F2B8A4E-9C1D-4E6B-8A7F-0D1C2B3A4E5F"],
    ],
    ids=["leading-zeros", "exponent-text", "19-20-digits", "no-longer-numeric", "uuids"],
)
def test_ids_are_kept_verbatim_and_distinct(ids: list[str]) -> None:
    """Ids are text: "00042" and "42" are two customers (not duplicates), and no id passes
    through a float (19+ digits, "1e5")."""
    rows = [{"customer_id": i, "timestamp": "2026-03-02 10:00", "amount": "1"} for i in ids]
    batch = validate_rows(pd.DataFrame(rows), TRANSACTIONS, DAY, NEXT, origin="test")
    TransactionsSchema.validate(batch.clean)
    assert batch.quarantine.empty
    assert sorted(batch.clean["customer_id"]) == sorted(ids)
    assert all(type(v) is str for v in batch.clean["customer_id"])


def test_integer_and_float_id_columns_become_integer_text() -> None:
    """Integer columns (Parquet, SQL) give decimal text; integral floats (an integer column with
    a gap) give integer text, not "42.0"; the gap is quarantined as a missing id."""
    raw = pd.DataFrame(
        {
            "user_id": pd.Series([42.0, None, 7.0]),
            "item_id": pd.Series([1234567890123456789, 5, 6], dtype="int64"),
            "timestamp": pd.to_datetime(["2026-03-02 10:00"] * 3),
            "weight": [1.0, 1.0, 1.0],
        }
    )
    batch = validate_rows(raw, INTERACTIONS, DAY, NEXT, origin="test")
    assert batch.clean[["user_id", "item_id"]].values.tolist() == [
        ["42", "1234567890123456789"],
        ["7", "6"],
    ]
    (reason,) = batch.quarantine["reason"]
    assert reason == "user_id: missing id"
    assert json.loads(batch.quarantine["record"][0])["item_id"] == "5"


@pytest.mark.parametrize(("value", "kept"), [("100", True), ("100.01", False)])
def test_amount_bound_comes_from_limits(value: str, kept: bool) -> None:
    """The amount bound is inclusive and its settings key is named in the reason."""
    raw = transactions({"customer_id": "9", "timestamp": "2026-03-02 01:00", "amount": value})
    limits = Limits(max_amount=100.0)
    batch = validate_rows(raw, TRANSACTIONS, DAY, NEXT, origin="test", limits=limits)
    assert ("9" in set(batch.clean["customer_id"])) is kept
    if not kept:
        assert batch.quarantine["reason"].tolist() == ["amount: above validation.max_amount (100)"]


@pytest.mark.parametrize("weight", ["inf", "nan", "1e308", "-inf"])
def test_non_finite_or_absurd_weight_is_quarantined(weight: str) -> None:
    """A weight must be finite, positive and within validation.max_weight."""
    raw = pd.DataFrame(
        {
            "user_id": ["1", "2"],
            "item_id": ["10", "11"],
            "timestamp": ["2026-03-02 10:00"] * 2,
            "weight": ["2", weight],
        }
    )
    batch = validate_rows(raw, INTERACTIONS, DAY, NEXT, origin="test", limits=Limits(1.0, 5.0))
    assert batch.clean["user_id"].tolist() == ["1"]
    (reason,) = batch.quarantine["reason"]
    assert reason.startswith("weight")
    if weight == "1e308":
        assert "above validation.max_weight (5)" in reason


def test_future_dated_rows_are_filed_on_the_last_day_with_their_reason() -> None:
    """With ``future_from`` (a window holding the last partition) rows at or after it are
    quarantined as future-dated under the window's last day; other stray rows stay 'outside'."""
    start, end = pd.Timestamp("2026-03-01"), pd.Timestamp("2026-03-04")
    raw = pd.DataFrame(
        {
            "customer_id": ["1", "2", "3"],
            "timestamp": ["2026-03-02 09:00", "2026-03-04 00:00", "2026-02-27 09:00"],
            "amount": ["1", "1", "1"],
        }
    )
    batch = validate_rows(raw, TRANSACTIONS, start, end, origin="test", future_from=end)
    assert batch.clean["customer_id"].tolist() == ["1"]
    quarantine = batch.quarantine
    assert quarantine["reason"].tolist() == [
        "timestamp: future-dated (after 2026-03-03, the last partition day)",
        "timestamp outside [2026-03-01 00:00:00, 2026-03-04 00:00:00)",
    ]
    assert quarantine["event_date"].tolist() == [pd.Timestamp("2026-03-03"), start]


def test_quarantine_source_and_counts_per_source() -> None:
    """Rows tagged with where they came from keep that in quarantine, and every row is counted
    as stored or quarantined under its source."""
    raw = transactions(
        {"customer_id": None, "timestamp": "2026-03-02 01:00", "amount": "5"},
        {"customer_id": "8", "timestamp": "2026-03-02 01:00", "amount": "-1"},
    ).assign(**{ROW_SOURCE: ["a.csv", "a.csv", "b.csv", "b.csv", "a.csv"]})
    batch = validate_rows(raw, TRANSACTIONS, DAY, NEXT, origin="test")
    QuarantineSchema.validate(batch.quarantine)
    assert list(batch.quarantine.columns) == ["event_date", "reason", "record", "source"]
    assert batch.quarantine["source"].tolist() == ["b.csv", "a.csv"]
    assert batch.by_source.to_dict(orient="index") == {
        "a.csv": {"stored": 2, "quarantined": 1},
        "b.csv": {"stored": 1, "quarantined": 1},
    }


def test_daily_quality_flags_empty_days() -> None:
    """The stored quality table says which days had no valid row at all."""
    clean = pd.DataFrame({"event_date": pd.to_datetime(["2026-03-01", "2026-03-03"])})
    quarantine = pd.DataFrame({"event_date": pd.to_datetime(["2026-03-02"])})
    start, end = pd.Timestamp("2026-03-01"), pd.Timestamp("2026-03-04")
    quality = daily_quality(quarantine_share_by_day(clean, quarantine, start, end), 0.05)
    assert list(quality.columns) == [
        "event_date",
        "kept",
        "quarantined",
        "share",
        "passed",
        "empty",
    ]
    assert quality["empty"].tolist() == [False, True, False]
    assert quality["passed"].tolist() == [True, False, True]
