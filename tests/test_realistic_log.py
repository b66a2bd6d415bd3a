"""The export-like benchmark log has the awkward properties it promises (not benchmark numbers)."""

import dataclasses
import datetime as dt
from pathlib import Path

import pandas as pd
import pytest

from benchmarks.realistic import (
    TIME_COLUMN,
    RealisticConfig,
    RealisticLog,
    generate_realistic,
    platform_settings,
    supported_style,
    write_realistic,
    write_settings,
)
from benchmarks.reference import read_export
from lifecycle.settings import load_settings

SMALL = RealisticConfig(seed=5, n_customers=3000, n_users=300, n_items=300, future_days=60)


@pytest.fixture(scope="module")
def log() -> RealisticLog:
    return generate_realistic(SMALL)


@pytest.fixture(scope="module")
def files(log: RealisticLog, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return write_realistic(log, tmp_path_factory.mktemp("export"), SMALL.end)


@pytest.fixture(scope="module")
def orders(files: dict[str, str]) -> pd.DataFrame:
    """Every order as read back from the CSV files with ``dtype=str``, as a careful user would."""
    paths = sorted(Path(files["drop_transactions"]).parent.glob("transactions_*.csv"))
    paths += sorted(Path(files["future_transactions"]).parent.glob("transactions_*.csv"))
    frame = pd.concat([pd.read_csv(p, dtype=str) for p in paths], ignore_index=True)
    stamp = frame[TIME_COLUMN[SMALL.style]["transactions"]]
    # The local date is the text's own date: the offset is the zone's at that moment.
    return frame.assign(local_day=pd.to_datetime(stamp.str[:10]), offset=stamp.str[-6:])


def test_ids_keep_leading_zeros_as_text(
    log: RealisticLog, orders: pd.DataFrame, files: dict[str, str]
) -> None:
    ids = orders["CustomerID"]
    assert ids.map(type).eq(str).all()
    padded = ids[ids.str.len() == SMALL.id_width]
    assert len(padded) > 0.9 * len(ids)
    assert padded.str.startswith("0").all()
    assert set(ids) == set(log.transactions["CustomerID"])
    # The trap they set: read without dtype=str, pandas makes numbers and drops the zeros.
    first = sorted(Path(files["drop_transactions"]).parent.glob("transactions_*.csv"))[0]
    assert pd.api.types.is_integer_dtype(pd.read_csv(first)["CustomerID"])


def test_padded_and_unpadded_forms_are_different_customers(
    log: RealisticLog, orders: pd.DataFrame
) -> None:
    ids = pd.Series(orders["CustomerID"].unique())
    as_number = ids.astype(int)
    collide = ids[as_number.duplicated(keep=False)]
    assert len(collide) >= 2
    pairs = collide.groupby(collide.astype(int)).apply(lambda g: sorted(g, key=len))
    short, padded = pairs.iloc[0]
    assert padded == short.zfill(SMALL.id_width) and padded != short
    truth = log.customers.set_index("customer_id")
    assert truth.loc[short, "id_kind"] == "unpadded"
    assert truth.loc[padded, "id_kind"] == "padded"


def test_about_half_buy_once_and_some_buy_very_often(orders: pd.DataFrame) -> None:
    per_customer = orders.groupby("CustomerID").size()
    assert 0.4 < (per_customer == 1).mean() < 0.65
    assert per_customer.max() >= 50
    assert per_customer.size == SMALL.n_customers


def test_same_day_repeat_orders(orders: pd.DataFrame) -> None:
    per_day = orders.groupby(["CustomerID", "local_day"]).size()
    assert (per_day >= 2).sum() > 0.02 * len(per_day)
    assert orders["InvoiceNo"].is_unique


def test_long_dormant_customers_come_back(orders: pd.DataFrame) -> None:
    days = orders.sort_values("local_day").groupby("CustomerID")["local_day"]
    gaps = days.diff().dt.days
    assert (gaps >= 365).sum() >= 5  # a year without an order, then another order


def test_some_days_have_no_rows_at_all(log: RealisticLog, orders: pd.DataFrame) -> None:
    all_days = pd.date_range(SMALL.start, periods=SMALL.n_days, freq="D")
    empty = all_days.difference(pd.DatetimeIndex(orders["local_day"].unique()))
    assert len(empty) >= SMALL.years  # at least every 25 December
    assert pd.Timestamp(f"{SMALL.end.year - 1}-12-25") in empty
    assert set(empty) >= set(log.closed_days)
    rated = pd.DatetimeIndex(log.ratings_local.dt.normalize().unique())
    assert not rated.isin(log.closed_days).any()


def test_offsets_follow_daylight_saving_time(orders: pd.DataFrame) -> None:
    assert set(orders["offset"]) == {"+00:00", "+01:00"}
    month = orders["local_day"].dt.month
    assert orders.loc[month == 1, "offset"].eq("+00:00").all()
    assert orders.loc[month == 7, "offset"].eq("+01:00").all()
    stamp = orders[TIME_COLUMN[SMALL.style]["transactions"]]
    instants = pd.to_datetime(stamp, format="ISO8601", utc=True).dt.tz_convert(SMALL.timezone)
    assert (instants.dt.strftime("%Y-%m-%d") == stamp.str[:10]).all()
    # Some orders fall after local midnight but before UTC midnight: another UTC day.
    assert (instants.dt.tz_convert("UTC").dt.date != instants.dt.date).any()


def test_several_years_of_history(orders: pd.DataFrame, files: dict[str, str]) -> None:
    span = orders["local_day"].max() - orders["local_day"].min()
    assert span.days >= 365 * SMALL.years
    years = sorted(Path(files["drop_transactions"]).parent.glob("transactions_*.csv"))
    assert len(years) == SMALL.years


def test_history_and_future_are_split_at_the_end_day(files: dict[str, str]) -> None:
    cut = SMALL.end.isoformat()
    column = TIME_COLUMN[SMALL.style]["transactions"]
    before = pd.concat(
        pd.read_csv(p, dtype=str) for p in Path(files["drop_transactions"]).parent.glob("t*.csv")
    )
    after = pd.concat(
        pd.read_csv(p, dtype=str) for p in Path(files["future_transactions"]).parent.glob("t*.csv")
    )
    assert (before[column].str[:10] < cut).all() and (after[column].str[:10] >= cut).all()
    ratings = pd.read_csv(files["future_interactions"], dtype=str)
    moment = pd.to_datetime(ratings["timestamp"].astype(int), unit="s", utc=True)
    assert (moment.dt.tz_convert(SMALL.timezone).dt.date >= SMALL.end).all()


def test_ratings_have_epoch_seconds_popularity_skew_and_no_repeats(log: RealisticLog) -> None:
    ratings = log.ratings
    assert ratings["timestamp"].str.fullmatch(r"\d{10}").all()
    assert not ratings.duplicated(["userId", "movieId"]).any()
    counts = ratings["movieId"].value_counts()
    assert counts.iloc[: len(counts) // 100 + 1].sum() > 0.05 * len(ratings)
    stars = ratings["rating"].astype(float)
    assert stars.between(0.5, 5).all() and (stars * 2 % 1 == 0).all()


def test_compatible_style_uses_one_iso_timestamp_column() -> None:
    cfg = dataclasses.replace(SMALL, n_customers=200, n_users=50, style="compatible")
    small = generate_realistic(cfg)
    assert "timestamp" in small.transactions and "InvoiceDate" not in small.transactions
    assert small.ratings["timestamp"].str.endswith(("+00:00", "+01:00")).all()


def test_same_seed_same_log(log: RealisticLog) -> None:
    again = generate_realistic(SMALL)
    pd.testing.assert_frame_equal(again.transactions, log.transactions)
    pd.testing.assert_frame_equal(again.ratings, log.ratings)
    other = generate_realistic(dataclasses.replace(SMALL, seed=6))
    assert not other.transactions["CustomerID"].equals(log.transactions["CustomerID"])


def test_churn_follows_recency_and_frequency(orders: pd.DataFrame) -> None:
    """Learnable drivers: at the end day, who buys again within 90 days is predictable."""
    as_of = pd.Timestamp(SMALL.end) - pd.Timedelta(days=1)
    past = orders[orders["local_day"] <= as_of]
    ahead = orders[
        (orders["local_day"] > as_of) & (orders["local_day"] <= as_of + pd.Timedelta(days=60))
    ]
    by = past.groupby("CustomerID")
    recency = (as_of - by["local_day"].max()).dt.days
    frequency = by.size()
    stays = recency.index.isin(ahead["CustomerID"])
    assert recency[stays].median() < recency[~stays].median() / 3
    assert frequency[stays].median() > 2 * frequency[~stays].median()


def test_settings_file_loads_with_the_platform(files: dict[str, str], tmp_path: Path) -> None:
    cfg = dataclasses.replace(SMALL, style=supported_style())
    path = write_settings(platform_settings(cfg, files, tmp_path), tmp_path / "s.yaml")
    settings = load_settings(path)
    assert settings.timezone == "Europe/London"
    assert settings.labels.horizon_days == 90
    assert settings.partitions.end_date == SMALL.end
    assert settings.partitions.start_date == SMALL.start == dt.date(SMALL.end.year - 3, 1, 1)
    assert settings.source.tables == ("transactions", "interactions")
    assert settings.validation.on_empty_day != "fail"
    assert settings.source.files is not None
    assert settings.source.files.transactions_glob == files["drop_transactions"]


def test_reference_reads_the_export_as_text_ids_and_local_days(files: dict[str, str]) -> None:
    columns = {
        "customer_id": "CustomerID",
        "timestamp": TIME_COLUMN[SMALL.style]["transactions"],
        "amount": "Amount",
    }
    tx = read_export([files["drop_transactions"]], columns, SMALL.timezone)
    assert tx["customer_id"].map(type).eq(str).all()
    assert tx["customer_id"].str.startswith("0").any()
    raw = pd.concat(
        pd.read_csv(p, dtype=str)
        for p in sorted(Path(files["drop_transactions"]).parent.glob("transactions_*.csv"))
    )
    assert sorted(tx["day"].dt.strftime("%Y-%m-%d")) == sorted(raw[columns["timestamp"]].str[:10])
    ratings = read_export(
        [files["drop_interactions"]],
        {"user_id": "userId", "item_id": "movieId", "timestamp": "timestamp", "weight": "rating"},
        SMALL.timezone,
        epoch_unit="s",
    )
    assert ratings["day"].max() < pd.Timestamp(SMALL.end)
    assert ratings["item_id"].map(type).eq(str).all()
