"""The PostgreSQL publisher against the real server: window replacement, atomicity, secrecy.

Needs PostgreSQL on 127.0.0.1:5432 (database ``test``, user ``postgres``); an unreachable server
fails these tests, it does not skip them. Each test writes into its own fresh schema.
"""

from __future__ import annotations

import logging
import traceback
import uuid
from collections.abc import Iterator

import pandas as pd
import psycopg2
import pytest
import sqlalchemy as sa

from lifecycle.publish import PublishError, publish_partition, redact, sql_type
from resources.publisher import PostgresPublisher

HOST, PORT, USER, DATABASE = "127.0.0.1", 5432, "postgres", "test"
# The server trusts local connections, so any password works: a recognisable one lets the tests
# prove it never leaks into an error message.
SECRET = "Sup3r-Secret_pw"
URL = f"postgresql+psycopg2://{USER}:{SECRET}@{HOST}:{PORT}/{DATABASE}"
D1, D2, D3 = (pd.Timestamp(d) for d in ("2026-03-01", "2026-03-02", "2026-03-03"))


def scores(day: pd.Timestamp, ids: list[int], score: float, version: str = "v1") -> pd.DataFrame:
    """A frame shaped like predictions/churn_scores for one day."""
    return pd.DataFrame(
        {
            "customer_id": pd.Series(ids, dtype="int64"),
            "as_of_date": pd.Series([day] * len(ids), dtype="datetime64[ns]"),
            "model_name": "churn",
            "model_version": version,
            "score": pd.Series([score + i / 100 for i in range(len(ids))], dtype="float64"),
            "decile": pd.Series([1 + i % 10 for i in range(len(ids))], dtype="int64"),
        }
    )


def admin() -> psycopg2.extensions.connection:
    try:
        conn = psycopg2.connect(host=HOST, port=PORT, user=USER, dbname=DATABASE, connect_timeout=5)
    except psycopg2.OperationalError as exc:
        pytest.fail(f"PostgreSQL at {HOST}:{PORT} is not reachable: {exc}")
    conn.autocommit = True
    return conn


@pytest.fixture
def schema() -> Iterator[str]:
    """A fresh schema name (created by the publisher itself), dropped afterwards."""
    name = f"publish_test_{uuid.uuid4().hex[:12]}"
    conn = admin()
    try:
        yield name
    finally:
        with conn.cursor() as cur:
            cur.execute(f'drop schema if exists "{name}" cascade')
        conn.close()


def read(schema: str, table: str = "churn_scores") -> pd.DataFrame:
    engine = sa.create_engine(URL)
    try:
        with engine.connect() as conn:
            frame = pd.read_sql_query(
                sa.text(f'select * from "{schema}"."{table}" order by as_of_date, customer_id'),
                conn,
            )
    finally:
        engine.dispose()
    return frame


def day(frame: pd.DataFrame, stamp: pd.Timestamp) -> pd.DataFrame:
    return frame[frame["as_of_date"] == stamp].reset_index(drop=True)


def column_types(schema: str, table: str = "churn_scores") -> dict[str, str]:
    conn = admin()
    try:
        with conn.cursor() as cur:
            cur.execute(
                "select column_name, data_type from information_schema.columns "
                "where table_schema = %s and table_name = %s",
                (schema, table),
            )
            return dict(cur.fetchall())
    finally:
        conn.close()


def assert_no_secret(exc: BaseException) -> None:
    text = str(exc) + "".join(traceback.format_exception(exc))
    assert SECRET not in text
    assert URL not in text


@pytest.mark.postgres
def test_republishing_a_day_replaces_exactly_that_day(schema: str) -> None:
    table = f"{schema}.churn_scores"
    first, second = scores(D1, [1, 2, 3], 0.1), scores(D2, [1, 2, 3, 4], 0.5)
    assert publish_partition(URL, table, first, "as_of_date", D1, D2) == 3
    assert publish_partition(URL, table, second, "as_of_date", D2, D3) == 4

    stored = read(schema)
    assert len(stored) == 7
    pd.testing.assert_frame_equal(day(stored, D1), first)
    assert column_types(schema) == {
        "customer_id": "bigint",
        "as_of_date": "timestamp without time zone",
        "model_name": "text",
        "model_version": "text",
        "score": "double precision",
        "decile": "bigint",
    }

    changed = scores(D2, [2, 4], 0.9, version="v2")
    assert publish_partition(URL, table, changed, "as_of_date", D2, D3) == 2
    stored = read(schema)
    pd.testing.assert_frame_equal(day(stored, D1), first)  # the neighbour is untouched
    pd.testing.assert_frame_equal(day(stored, D2), changed)  # the day is exactly the new rows

    # Idempotent: the same publish again leaves the same table.
    publish_partition(URL, table, changed, "as_of_date", D2, D3)
    pd.testing.assert_frame_equal(read(schema), stored)


@pytest.mark.postgres
def test_a_range_of_days_is_replaced_in_one_call(schema: str) -> None:
    table = f"{schema}.churn_scores"
    two_days = pd.concat([scores(D1, [1, 2], 0.1), scores(D2, [1, 2], 0.2)], ignore_index=True)
    assert publish_partition(URL, table, two_days, "as_of_date", D1, D3) == 4
    assert publish_partition(URL, table, two_days, "as_of_date", D1, D3) == 4
    pd.testing.assert_frame_equal(read(schema), two_days)

    # An empty frame clears its window and nothing else.
    assert publish_partition(URL, table, scores(D2, [], 0.0), "as_of_date", D2, D3) == 0
    pd.testing.assert_frame_equal(read(schema), day(two_days, D1))


@pytest.mark.postgres
def test_a_failing_insert_leaves_the_previous_rows(schema: str) -> None:
    table = f"{schema}.churn_scores"
    publish_partition(URL, table, scores(D1, [1, 2], 0.1), "as_of_date", D1, D2)
    publish_partition(URL, table, scores(D2, [1, 2], 0.2), "as_of_date", D2, D3)
    before = read(schema)

    bad = scores(D2, [1, 2, 3], 0.3).astype({"score": object})
    bad.loc[2, "score"] = "not-a-number"  # the existing column is double precision
    with pytest.raises(PublishError, match="double precision") as caught:
        publish_partition(URL, table, bad, "as_of_date", D2, D3)
    assert "previous rows are unchanged" in str(caught.value)
    assert_no_secret(caught.value)
    pd.testing.assert_frame_equal(read(schema), before)  # the delete was rolled back too


@pytest.mark.postgres
def test_a_column_the_table_lacks_fails_and_changes_nothing(schema: str) -> None:
    table = f"{schema}.churn_scores"
    publish_partition(URL, table, scores(D1, [1, 2], 0.1), "as_of_date", D1, D2)
    before = read(schema)
    wider = scores(D1, [1], 0.4).assign(segment="vip")
    with pytest.raises(PublishError, match="segment"):
        publish_partition(URL, table, wider, "as_of_date", D1, D2)
    pd.testing.assert_frame_equal(read(schema), before)


@pytest.mark.postgres
def test_rows_outside_the_window_are_refused_before_connecting(schema: str) -> None:
    table = f"{schema}.churn_scores"
    publish_partition(URL, table, scores(D1, [1], 0.1), "as_of_date", D1, D2)
    with pytest.raises(ValueError, match="outside"):
        publish_partition(URL, table, scores(D2, [1], 0.2), "as_of_date", D1, D2)
    assert len(read(schema)) == 1


@pytest.mark.postgres
@pytest.mark.parametrize(
    "url",
    [
        f"postgresql+psycopg2://{USER}:{SECRET}@{HOST}:1/{DATABASE}",  # nothing listens there
        f"postgresql+psycopg2://{USER}:{SECRET}@{HOST}:{PORT}/no_such_database_here",
        f"postgresql+psycopg2://{USER}:{SECRET}@{HOST}:not-a-port/{DATABASE}",  # unparseable
        f"nosuchdialect://{USER}:{SECRET}@{HOST}/{DATABASE}",
    ],
    ids=["unreachable", "missing-database", "bad-port", "unknown-dialect"],
)
def test_errors_never_carry_the_url_or_password(url: str) -> None:
    with pytest.raises(PublishError) as caught:
        publish_partition(url, "publish_test.t", scores(D1, [1], 0.1), "as_of_date", D1, D2)
    text = str(caught.value) + "".join(traceback.format_exception(caught.value))
    assert SECRET not in text
    assert url not in text
    assert caught.value.__cause__ is None
    assert caught.value.__context__ is None


@pytest.mark.postgres
@pytest.mark.parametrize("marker", ["plain", "\\N"], ids=["copy", "insert-fallback"])
def test_values_round_trip(schema: str, marker: str) -> None:
    """NULLs, awkward text, dates, booleans and time zones survive the load; a text cell equal
    to COPY's NULL marker switches to INSERTs so it is not read back as NULL."""
    day_ = pd.Timestamp("2026-03-01")
    frame = pd.DataFrame(
        {
            "as_of_date": [day_, day_, day_],
            "label": ['a,b "quoted"', "line\nbreak", marker],
            "note": pd.Series([None, "x", "y"], dtype=object),
            "score": [0.1, float("nan"), 1 / 3],
            "rank": pd.Series([1, None, 3], dtype="Int64"),
            "flag": [True, False, True],
            "as_of": [d.date() for d in (day_, day_, day_)],
            "at": pd.to_datetime(["2026-03-01 10:30:00.123456"] * 3).tz_localize("Europe/Berlin"),
        }
    )
    table = f"{schema}.values"
    assert publish_partition(URL, table, frame, "as_of_date", day_, D2) == 3
    engine = sa.create_engine(URL)
    try:
        with engine.connect() as conn:
            back = pd.read_sql_query(
                sa.text(f'select * from "{schema}"."values" order by "rank" nulls last'), conn
            )
    finally:
        engine.dispose()
    # Rows come back as 0, 2, 1 (ordered by rank, the missing one last).
    assert back["label"].tolist() == ['a,b "quoted"', marker, "line\nbreak"]
    assert back["note"].tolist() == [None, "y", "x"]
    assert back["score"].iloc[0] == 0.1 and back["score"].iloc[1] == 1 / 3
    assert back["score"].isna().sum() == 1
    assert back["rank"].isna().sum() == 1
    assert back["flag"].tolist() == [True, True, False]
    assert back["as_of"].tolist() == [day_.date()] * 3
    assert (back["at"] == frame["at"].iloc[0]).all()  # same instant, whatever the session zone
    assert column_types(schema, "values")["at"] == "timestamp with time zone"


def test_redact_scrubs_encoded_and_plain_passwords() -> None:
    url = "postgresql://app:p%40ss%2Fword@db:5432/x"
    message = "could not connect with postgresql://app:p%40ss%2Fword@db:5432/x (p@ss/word)"
    cleaned = redact(message, url)
    assert "p@ss/word" not in cleaned
    assert "p%40ss%2Fword" not in cleaned
    assert "//***@db" in cleaned and "app:" not in cleaned


def test_new_tables_take_their_types_from_the_frame() -> None:
    frame = pd.DataFrame(
        {
            "i": [1],
            "f": [0.5],
            "b": [True],
            "t": pd.to_datetime(["2026-01-01"]),
            "tz": pd.to_datetime(["2026-01-01"]).tz_localize("UTC"),
            "d": [pd.Timestamp("2026-01-01").date()],
            "s": ["x"],
        }
    )
    names = {c: type(sql_type(frame[c])).__name__ for c in frame.columns}
    assert names == {
        "i": "BigInteger",
        "f": "Double",
        "b": "Boolean",
        "t": "DateTime",
        "tz": "DateTime",
        "d": "Date",
        "s": "Text",
    }
    tz_type = sql_type(frame["tz"])
    assert isinstance(tz_type, sa.DateTime) and tz_type.timezone is True


def test_disabled_publisher_does_nothing() -> None:
    publisher = PostgresPublisher(enabled=False, url="postgresql+psycopg2://nobody@nowhere:1/x")
    assert publisher.publish("churn_scores", scores(D1, [1], 0.1), "as_of_date", D1, D2) == 0


def test_enabled_publisher_without_url_fails_clearly() -> None:
    from dagster import Failure

    with pytest.raises(Failure, match="PREDICTIONS_DATABASE_URL"):
        PostgresPublisher(enabled=True).publish(
            "churn_scores", scores(D1, [1], 0.1), "as_of_date", D1, D2
        )


@pytest.mark.postgres
def test_enabled_publisher_writes_into_its_schema_and_logs_no_secret(
    schema: str, caplog: pytest.LogCaptureFixture
) -> None:
    publisher = PostgresPublisher(enabled=True, url=URL, schema=schema)
    with caplog.at_level(logging.DEBUG):
        assert publisher.publish("churn_scores", scores(D1, [1, 2], 0.1), "as_of_date", D1, D2) == 2
    assert len(read(schema)) == 2
    assert f"published 2 rows to {schema}.churn_scores" in caplog.text
    assert SECRET not in caplog.text
