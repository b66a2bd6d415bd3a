"""Tests for the synthetic shop: determinism, schema, consistency and the planted signals."""

from __future__ import annotations

import dataclasses
import datetime as dt

import numpy as np
import pandas as pd
import pytest

from lifecycle.synthetic import (
    CART_WEIGHT,
    PURCHASE_WEIGHT,
    SEGMENTS,
    VIEW_WEIGHT,
    SyntheticConfig,
    SyntheticShop,
    generate_shop,
)

START = dt.date(2024, 1, 1)
END = START + dt.timedelta(days=120)
SMALL = SyntheticConfig(start=START, end=END, n_customers=800, n_items=200)


@pytest.fixture(scope="module")
def shop() -> SyntheticShop:
    return generate_shop(SMALL)


@pytest.fixture(scope="module")
def big_shop() -> SyntheticShop:
    """More customers over a longer period, for the statistical signal tests."""
    cfg = dataclasses.replace(SMALL, n_customers=3000, end=START + dt.timedelta(days=181))
    return generate_shop(cfg)


def _frames(s: SyntheticShop) -> dict[str, pd.DataFrame]:
    return {
        "transactions": s.transactions,
        "interactions": s.interactions,
        "customers": s.customers,
    }


def test_same_seed_is_bit_identical(shop: SyntheticShop) -> None:
    again = generate_shop(SMALL)
    for name, frame in _frames(shop).items():
        pd.testing.assert_frame_equal(frame, _frames(again)[name], check_exact=True, obj=name)
    np.testing.assert_array_equal(shop.user_factors, again.user_factors)
    np.testing.assert_array_equal(shop.item_factors, again.item_factors)
    np.testing.assert_array_equal(shop.item_popularity, again.item_popularity)


@pytest.mark.parametrize("field, value", [("seed", 8), ("churn_6m", 0.5)])
def test_different_config_gives_different_data(
    shop: SyntheticShop, field: str, value: object
) -> None:
    other = generate_shop(dataclasses.replace(SMALL, **{field: value}))
    for name in ("transactions", "interactions"):
        a, b = _frames(shop)[name], _frames(other)[name]
        assert len(a) != len(b) or not a.equals(b), name


def test_schema_and_dtypes(shop: SyntheticShop) -> None:
    tx, it, cu = shop.transactions, shop.interactions, shop.customers
    assert list(tx.columns) == ["customer_id", "timestamp", "amount", "item_id"]
    assert tx.dtypes.to_dict() == {
        "customer_id": np.dtype("int64"),
        "timestamp": np.dtype("datetime64[ns]"),
        "amount": np.dtype("float64"),
        "item_id": np.dtype("int64"),
    }
    assert list(it.columns) == ["user_id", "item_id", "timestamp", "weight"]
    assert it.dtypes.to_dict() == {
        "user_id": np.dtype("int64"),
        "item_id": np.dtype("int64"),
        "timestamp": np.dtype("datetime64[ns]"),
        "weight": np.dtype("float64"),
    }
    assert cu["customer_id"].dtype == np.dtype("int64")
    assert cu["signup_date"].dtype == np.dtype("datetime64[ns]")
    assert cu["churn_date"].dtype == np.dtype("datetime64[ns]")
    assert cu["engagement"].dtype == np.dtype("float64")
    assert set(cu["segment"]) <= {s.name for s in SEGMENTS}
    assert cu["engagement"].between(0, 1).all()
    np.testing.assert_array_equal(cu["customer_id"], np.arange(1, SMALL.n_customers + 1))
    assert cu["signup_date"].is_monotonic_increasing  # ids are handed out in signup order
    assert shop.user_factors.shape == (SMALL.n_customers, SMALL.n_factors)
    assert shop.item_factors.shape == (SMALL.n_items, SMALL.n_factors)
    assert shop.item_popularity.shape == (SMALL.n_items,)
    assert (shop.item_popularity > 0).all()
    assert shop.item_popularity.sum() == pytest.approx(1.0)


def test_ids_in_range(shop: SyntheticShop) -> None:
    tx, it = shop.transactions, shop.interactions
    for ids, top in [
        (tx["customer_id"], SMALL.n_customers),
        (it["user_id"], SMALL.n_customers),
        (tx["item_id"], SMALL.n_items),
        (it["item_id"], SMALL.n_items),
    ]:
        assert ids.min() >= 1
        assert ids.max() <= top


@pytest.mark.parametrize("name", ["transactions", "interactions"])
def test_timestamps_within_period_and_sorted(shop: SyntheticShop, name: str) -> None:
    ts = _frames(shop)[name]["timestamp"]
    assert ts.min() >= pd.Timestamp(START)
    assert ts.max() < pd.Timestamp(END)
    assert ts.is_monotonic_increasing
    assert ts.dt.tz is None
    # Times of day are spread over the whole day, not pinned to midnight.
    assert ts.dt.hour.nunique() == 24


def test_amounts_positive_and_two_decimals(shop: SyntheticShop) -> None:
    amount = shop.transactions["amount"]
    assert (amount > 0).all()
    np.testing.assert_array_equal(amount.to_numpy(), amount.round(2).to_numpy())


def test_interaction_weights_and_purchases_mirrored(shop: SyntheticShop) -> None:
    it, tx = shop.interactions, shop.transactions
    assert set(it["weight"].unique()) == {VIEW_WEIGHT, CART_WEIGHT, PURCHASE_WEIGHT}
    counts = it["weight"].value_counts()
    assert counts[VIEW_WEIGHT] > 3 * counts[PURCHASE_WEIGHT]  # browsing dominates
    buys = it.loc[it["weight"] == PURCHASE_WEIGHT, ["user_id", "item_id", "timestamp"]]
    buys = buys.rename(columns={"user_id": "customer_id"})
    cols = ["customer_id", "item_id", "timestamp"]
    pd.testing.assert_frame_equal(
        buys.sort_values(cols).reset_index(drop=True),
        tx[cols].sort_values(cols).reset_index(drop=True),
    )


@pytest.mark.parametrize(
    "name, id_col", [("transactions", "customer_id"), ("interactions", "user_id")]
)
def test_no_activity_outside_lifetime(shop: SyntheticShop, name: str, id_col: str) -> None:
    events = _frames(shop)[name]
    life = shop.customers.set_index("customer_id")
    signup = life["signup_date"].reindex(events[id_col]).to_numpy()
    churn = life["churn_date"].reindex(events[id_col]).to_numpy()
    ts = events["timestamp"].to_numpy()
    assert (ts >= signup).all()
    has_churn = ~np.isnat(churn)
    assert (ts[has_churn] < churn[has_churn]).all()


def test_churn_dates_inside_period(shop: SyntheticShop) -> None:
    cu = shop.customers
    churned = cu.dropna(subset=["churn_date"])
    assert (churned["churn_date"] > churned["signup_date"]).all()
    assert (churned["churn_date"] < pd.Timestamp(END)).all()
    assert (churned["churn_date"] > pd.Timestamp(START)).all()


def test_churn_share_plausible(big_shop: SyntheticShop) -> None:
    cu = big_shop.customers
    share = cu["churn_date"].notna().mean()
    assert 0.15 < share < 0.40
    # Customers present for the whole ~6 months churn at roughly the configured rate.
    initial = cu["signup_date"] < pd.Timestamp(START)
    assert 0.25 < cu.loc[initial, "churn_date"].notna().mean() < 0.42


def test_churn_driven_by_documented_factors(big_shop: SyntheticShop) -> None:
    cu = big_shop.customers
    churned = cu["churn_date"].notna()
    by_segment = churned.groupby(cu["segment"]).mean()
    assert by_segment["loyal"] < by_segment["regular"] < by_segment["casual"]
    low_eng = cu["engagement"] < cu["engagement"].median()
    assert churned[low_eng].mean() > churned[~low_eng].mean() + 0.05


def test_survivors_buy_every_few_days(big_shop: SyntheticShop) -> None:
    cu, tx = big_shop.customers, big_shop.transactions
    end = tx["timestamp"].max().normalize() + pd.Timedelta(days=1)
    survivors = cu[cu["churn_date"].isna()]
    exposure = (end - survivors["signup_date"].clip(lower=pd.Timestamp(START))).dt.days.sum()
    n_buys = tx["customer_id"].isin(survivors["customer_id"]).sum()
    assert 4.0 < exposure / n_buys < 11.0


def test_popularity_is_skewed(shop: SyntheticShop) -> None:
    counts = shop.interactions["item_id"].value_counts()
    top = counts.iloc[: SMALL.n_items // 10].sum()
    assert top / counts.sum() > 0.4
    # And the realised ranking follows the true popularity.
    true_pop = pd.Series(shop.item_popularity, index=np.arange(1, SMALL.n_items + 1))
    spearman = counts.rank().corr(true_pop.reindex(counts.index).rank())
    assert spearman > 0.7


def test_interactions_carry_personal_signal(shop: SyntheticShop) -> None:
    it = shop.interactions
    affinity = shop.user_factors @ shop.item_factors.T  # (users, items)
    # Popularity-matched baseline: expected affinity of an item drawn by popularity alone.
    baseline = affinity @ shop.item_popularity
    n_per_user = it.groupby("user_id").size()
    users = n_per_user.index[n_per_user >= 20].to_numpy()
    assert users.size > 100
    sub = it[it["user_id"].isin(users)]
    u, i = sub["user_id"].to_numpy() - 1, sub["item_id"].to_numpy() - 1
    mean_aff = pd.Series(affinity[u, i]).groupby(u).mean()
    lift = mean_aff.to_numpy() - baseline[mean_aff.index.to_numpy()]
    assert lift.mean() > 0.5
    assert (lift > 0).mean() > 0.9


def test_purchase_rate_decays_before_churn(big_shop: SyntheticShop) -> None:
    cu, tx = big_shop.customers, big_shop.transactions
    churners = cu.dropna(subset=["churn_date"]).set_index("customer_id")
    first_seen = churners["signup_date"].clip(lower=pd.Timestamp(START))
    tx = tx[tx["customer_id"].isin(churners.index)]
    days_before = (
        churners["churn_date"].reindex(tx["customer_id"]).to_numpy() - tx["timestamp"].to_numpy()
    ) / np.timedelta64(1, "D")

    def rate(lo: int, hi: int) -> float:
        """Purchases per observable customer-day in the window [churn - hi, churn - lo)."""
        n = ((days_before > lo) & (days_before <= hi)).sum()
        win_start = np.maximum(churners["churn_date"] - pd.Timedelta(days=hi), first_seen)
        win_end = churners["churn_date"] - pd.Timedelta(days=lo)
        exposure = (win_end - win_start).dt.days.clip(lower=0).sum()
        return n / exposure

    recent, earlier = rate(0, 30), rate(30, 90)
    assert recent < 0.75 * earlier


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="end"):
        SyntheticConfig(start=END, end=START)
    with pytest.raises(ValueError, match="churn_6m"):
        SyntheticConfig(start=START, end=END, churn_6m=1.5)


def test_purchases_only_shop_has_the_same_transactions_and_no_clickstream(
    shop: SyntheticShop,
) -> None:
    """``interactions=False`` (settings source.synthetic.tables: [transactions]) keeps each
    chunk's purchases only: the orders are row for row those of the full shop."""
    orders_only = generate_shop(dataclasses.replace(SMALL, interactions=False))
    pd.testing.assert_frame_equal(orders_only.transactions, shop.transactions)
    assert orders_only.interactions.empty and len(shop.interactions) > len(shop.transactions)
    assert list(orders_only.interactions.columns) == list(shop.interactions.columns)


def test_settings_with_one_synthetic_table_leave_out_the_other_families_and_ingest() -> None:
    from assets.keys import Selection
    from lifecycle.settings import load_settings, parse_settings
    from resources.sources import source_from_settings

    raw = load_settings().model_dump(mode="json")
    raw["source"]["synthetic"]["tables"] = ["transactions"]
    settings = parse_settings(raw, "test settings")
    selection = Selection.of(settings)
    assert selection.tables == ("transactions",) and "recommender" not in selection.families
    assert not any("interactions" in key.to_user_string() for key in selection.ingest)
    source = source_from_settings(settings)
    assert source.interactions is False  # type: ignore[attr-defined]
    raw["source"]["synthetic"]["tables"] = ["transactions", "transactions"]
    with pytest.raises(ValueError, match="tables"):
        parse_settings(raw, "test settings")
