"""Alias rows: compare-and-set moves of ``champion`` / ``challenger`` and their history.

An alias move and its ``alias_events`` row are written in one transaction. Promotion and
rollback decide against the alias they read (``expected``); the write re-reads it inside the
transaction and refuses with :class:`AliasConflict` if it moved meanwhile, so two runs that
decided against the same champion cannot both win. DuckDB's optimistic concurrency can also
fail the loser's commit; that, and only that, is also reported as a lost race.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import time
from collections.abc import Callable
from typing import Any

import duckdb

from lifecycle.model_records import ALIASES, AliasConflict, AliasEvent
from lifecycle.registry_store import CONNECT_DELAYS_S, SCHEMA, aware_utc, naive_utc, transaction

EVENT_COLUMNS = "seq, model_name, alias, from_version, to_version, event, run_id, event_at, reason"
Connect = Callable[[], contextlib.AbstractContextManager[duckdb.DuckDBPyConnection]]


class Unchecked(enum.Enum):
    UNCHECKED = "unchecked"


# ``set_alias(expected=UNCHECKED)``: move the alias whatever it points at (no compare-and-set).
UNCHECKED = Unchecked.UNCHECKED


def check_alias(alias: str) -> None:
    """Refuse an alias name the registry does not know (a typo would create a new alias)."""
    if alias not in ALIASES:
        raise ValueError(f"unknown alias {alias!r}; expected one of {', '.join(ALIASES)}")


def move(connect: Connect, change: AliasEvent, expected: str | Unchecked | None) -> AliasEvent:
    """Point ``change.alias`` at ``change.to_version`` and append the history row; returns
    ``change`` with ``from_version`` set to what the alias pointed at before.

    With ``expected`` (a version, or None for "not set yet") this is a compare-and-set:
    :class:`AliasConflict`, with nothing written, if the alias no longer points there, also
    when a concurrent transaction wins the write. ``connect`` opens a short-lived connection.
    """
    try:
        with connect() as con:
            from_version = _write(con, change, expected)
    except (duckdb.TransactionException, duckdb.ConstraintException):
        # A concurrent transaction wrote the same alias row first (DuckDB's optimistic
        # concurrency): with a compare-and-set that is a lost race, reported as such.
        if expected is UNCHECKED:
            raise
        actual = current_version(connect, change.model_name, change.alias)
        for delay in CONNECT_DELAYS_S[:4]:  # ~0.75 s for the winner to commit
            if actual != expected:
                break
            time.sleep(delay)
            actual = current_version(connect, change.model_name, change.alias)
        raise AliasConflict(
            change.model_name, change.alias, expected, actual, change.to_version
        ) from None
    return dataclasses.replace(change, from_version=from_version)


def current_version(connect: Connect, model_name: str, alias: str) -> str | None:
    """The version id an alias points at now (own connection), None if never set."""
    with connect() as con:
        return alias_version(con, model_name, alias)


def row_to_event(row: tuple[Any, ...]) -> AliasEvent:
    """An ``alias_events`` row (columns :data:`EVENT_COLUMNS`) as a record."""
    return AliasEvent(
        model_name=row[1],
        alias=row[2],
        from_version=row[3],
        to_version=row[4],
        event=row[5],
        run_id=row[6],
        at=aware_utc(row[7]),
        reason=row[8],
    )


def alias_version(con: duckdb.DuckDBPyConnection, model_name: str, alias: str) -> str | None:
    """The version id an alias points at, None if never set."""
    row = con.execute(
        f"SELECT version FROM {SCHEMA}.aliases WHERE model_name = ? AND alias = ?",
        [model_name, alias],
    ).fetchone()
    return None if row is None else str(row[0])


def _write(
    con: duckdb.DuckDBPyConnection, event: AliasEvent, expected: str | Unchecked | None
) -> str | None:
    """The transaction of :func:`move`; returns the version the alias pointed at before."""
    name, alias, version = event.model_name, event.alias, event.to_version
    with transaction(con):
        exists = con.execute(
            f"SELECT count(*) FROM {SCHEMA}.model_versions WHERE model_name = ? AND version = ?",
            [name, version],
        ).fetchone()
        if not exists or exists[0] == 0:
            raise KeyError(
                f"cannot set {alias} of {name}: version {name}@{version} is not registered"
            )
        from_version = alias_version(con, name, alias)
        if expected is not UNCHECKED and from_version != expected:
            raise AliasConflict(name, alias, expected, from_version, version)
        at = naive_utc(event.at)
        con.execute(
            f"INSERT INTO {SCHEMA}.aliases (model_name, alias, version, updated_at) "
            "VALUES (?, ?, ?, ?) ON CONFLICT (model_name, alias) "
            "DO UPDATE SET version = excluded.version, updated_at = excluded.updated_at",
            [name, alias, version, at],
        )
        con.execute(
            f"INSERT INTO {SCHEMA}.alias_events "
            "(model_name, alias, from_version, to_version, event, run_id, event_at, reason) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [name, alias, from_version, version, event.event, event.run_id, at, event.reason],
        )
    return from_version


def ever_alias(con: duckdb.DuckDBPyConnection, model_name: str, alias: str, version: str) -> bool:
    """Whether the alias history has ever pointed ``alias`` at ``version``."""
    row = con.execute(
        f"SELECT count(*) FROM {SCHEMA}.alias_events "
        "WHERE model_name = ? AND alias = ? AND to_version = ?",
        [model_name, alias, version],
    ).fetchone()
    return bool(row and row[0])


def event_rows(con: duckdb.DuckDBPyConnection, model_name: str | None) -> list[tuple[Any, ...]]:
    """Alias history rows (columns :data:`EVENT_COLUMNS`), all models when ``model_name`` is
    None, in the order they were written."""
    where, params = ("WHERE model_name = ?", [model_name]) if model_name else ("", [])
    return con.execute(
        f"SELECT {EVENT_COLUMNS} FROM {SCHEMA}.alias_events {where} ORDER BY seq", params
    ).fetchall()
