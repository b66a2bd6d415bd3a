"""Training windows that always work: any horizon leaves training days, snapshots, verbatim ids."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from lifecycle.datasets import (
    churn_window,
    first_trainable_month,
    months_back,
    quarantined_ids,
    selection_split,
    snapshot_days,
)

EARLIEST = pd.Timestamp("2024-01-01")


@pytest.mark.parametrize("horizon", [7, 30, 60, 90, 120])
@pytest.mark.parametrize("train_months", [1, 3, 6])
def test_any_horizon_leaves_a_forward_training_window(horizon: int, train_months: int) -> None:
    """Training spans train_months after the purge; validation follows; nothing runs backwards."""
    month = pd.Timestamp("2026-01-01")
    w = churn_window(month, horizon, train_months, 14, EARLIEST)
    assert w.train_start < w.train_end <= w.valid_start < w.valid_end
    assert w.train_start == w.train_end - pd.DateOffset(months=train_months)
    # Purged: no training label's horizon reaches into the validation slice.
    assert (w.valid_start - w.train_end).days == horizon
    assert w.valid_end == month - pd.Timedelta(days=horizon)
    # The partition mapping reaches back far enough for the whole window.
    first_month = month - pd.DateOffset(months=months_back(horizon, train_months, 14))
    assert first_month <= w.train_start


def test_a_90_day_horizon_with_the_defaults_has_training_days() -> None:
    """The reported failure: train_months 3 + horizon 90 used to leave a backwards range."""
    w = churn_window(pd.Timestamp("1997-07-01"), 90, 3, 14, pd.Timestamp("1996-01-01"))
    assert (w.train_end - w.train_start).days >= 89
    # With too little history the window is empty and the first trainable month is later,
    # which is what the dataset asset reports instead of a backwards range.
    early = pd.Timestamp("1997-01-01")
    w = churn_window(pd.Timestamp("1997-07-01"), 90, 3, 14, early)
    assert w.train_end <= w.train_start
    assert first_trainable_month(early, 90, 14, 28) == pd.Timestamp("1997-09-01")


def test_first_trainable_month_has_enough_training_days() -> None:
    month = first_trainable_month(EARLIEST, 90, 14, 28)
    w = churn_window(month, 90, 3, 14, EARLIEST)
    assert (w.train_end - w.train_start).days >= 28
    before = churn_window(month - pd.DateOffset(months=1), 90, 3, 14, EARLIEST)
    assert (before.train_end - before.train_start).days < 28


def test_snapshots_step_back_from_the_last_validation_day() -> None:
    w = churn_window(pd.Timestamp("2026-06-01"), 30, 3, 14, EARLIEST)
    days = snapshot_days(w, 7)
    assert days.max() == w.valid_end - pd.Timedelta(days=1)
    assert set(pd.Series(days).diff().dropna().dt.days) == {7}
    assert days.min() >= w.train_start
    n_days = (w.valid_end - w.train_start).days
    assert len(days) == -(-n_days // 7)  # ceil: one snapshot per started week
    assert len(snapshot_days(w, 1)) == (w.valid_end - w.train_start).days


def test_selection_takes_the_last_snapshots_and_leaves_training_the_rest() -> None:
    days = pd.date_range("2026-01-01", periods=12, freq="7D")
    frame = pd.DataFrame({"as_of_date": days.repeat(3), "customer_id": ["a", "b", "c"] * 12})
    fit, select = selection_split(frame, 14)
    assert fit["as_of_date"].max() < select["as_of_date"].min()
    assert select["as_of_date"].nunique() == 2  # the two weekly snapshots inside 14 days
    assert len(fit) + len(select) == len(frame)


def test_quarantined_ids_stay_verbatim() -> None:
    records = [json.dumps({"customer_id": v}) for v in ["00042", "42", "00042", None]]
    quarantine = pd.DataFrame({"record": records})
    assert list(quarantined_ids(quarantine, "customer_id")) == ["00042", "42"]
