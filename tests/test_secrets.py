"""Credentials never reach an error message (run failures are forwarded to alert channels)."""

import pandas as pd
import pytest

from lifecycle.sources import SourceQueryError, read_event_sql
from lifecycle.validation import TRANSACTIONS

URL = "postgresql+psycopg2://postgres:s3cret-pw@127.0.0.1:5432/test"


@pytest.mark.postgres
def test_failing_source_query_does_not_leak_the_password() -> None:
    with pytest.raises(SourceQueryError) as raised:
        read_event_sql(
            URL,
            "select * from no_such_table where ts >= :start and ts < :end",
            TRANSACTIONS,
            pd.Timestamp("2026-01-01"),
            pd.Timestamp("2026-01-02"),
            "UTC",
        )
    assert "no_such_table" in str(raised.value)
    assert "s3cret-pw" not in str(raised.value)
    assert raised.value.__cause__ is None
