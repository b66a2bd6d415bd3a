"""The feature and label schemas' one-row-per-customer-day check, on both of its paths."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pandera.errors
import pyarrow as pa
import pytest

from lifecycle.feature_kernel import TEXT_IDS
from lifecycle.features import LABELS_SCHEMA, UNIQUE_DAY_ROWS, feature_columns, features_schema

WINDOWS = (7, 30)
D1, D2 = pd.Timestamp("2026-03-01"), pd.Timestamp("2026-03-02")


def features(days: list[pd.Timestamp], ids: list[str]) -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "as_of_date": pd.Series(days, dtype="datetime64[ns]"),
            "customer_id": pd.Series(pd.arrays.ArrowExtensionArray(pa.array(ids))),
        }
    )
    assert frame["customer_id"].dtype == TEXT_IDS
    for column in feature_columns(WINDOWS):
        frame[column] = np.arange(len(ids), dtype=np.float64)
    return frame


def labels(days: list[pd.Timestamp], ids: list[str]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "as_of_date": pd.Series(days, dtype="datetime64[ns]"),
            "customer_id": pd.Series(ids, dtype=object),
            "purchases_in_horizon": np.zeros(len(ids), dtype=np.int64),
            "churned": np.ones(len(ids), dtype=np.int64),
        }
    )


@pytest.mark.parametrize("make", [features, labels])
@pytest.mark.parametrize(
    ("days", "ids"),
    [
        ([D1, D1, D2, D2], ["007", "7", "007", "7"]),  # sorted: the neighbour path
        ([D2, D1, D2, D1], ["7", "7", "007", "007"]),  # any order: the hash path
        ([D1], ["x"]),
    ],
)
def test_distinct_customer_days_pass(make, days, ids) -> None:
    schema = features_schema(WINDOWS) if make is features else LABELS_SCHEMA
    frame = make(days, ids)
    pd.testing.assert_frame_equal(schema.validate(frame), frame)


@pytest.mark.parametrize("make", [features, labels])
@pytest.mark.parametrize(
    ("days", "ids", "duplicated"),
    [
        ([D1, D1, D1, D2], ["007", "7", "7", "007"], [1, 2]),  # sorted, a repeat beside itself
        ([D1, D2, D1], ["7", "7", "7"], [0, 2]),  # unsorted, the repeat apart
    ],
)
def test_a_repeated_customer_day_fails_naming_its_rows(make, days, ids, duplicated) -> None:
    schema = features_schema(WINDOWS) if make is features else LABELS_SCHEMA
    with pytest.raises(pandera.errors.SchemaErrors) as caught:
        schema.validate(make(days, ids), lazy=True)
    cases = caught.value.failure_cases
    rows = cases[cases["check"] == UNIQUE_DAY_ROWS.error]["index"]
    assert sorted(int(i) for i in rows.dropna().unique()) == duplicated
