"""Feature-table schema changes: a new window becomes new columns, and old days are reported.

The feature table has columns per window (``txn_count_14d``, …), and the warehouse inserts by
name into a table created from the first frame, so changing ``features.windows`` used to fail
the next write with a DuckDB binder error. :func:`migrate_feature_table` is the explicit
migration: before a write it adds the columns the new frame has (``DOUBLE``; every day already
stored reads them as NULL) and leaves the columns of removed windows in place (new days read
NULL there), so older models and readers keep working. A stored feature value is never NULL
otherwise (the schema holds finite numbers), so NULL marks exactly the days that must be
re-materialised: :func:`unfilled_days` finds them, and :func:`require_filled` stops a reader that
needs them with the range to backfill instead of training or scoring on missing values.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

FEATURE_TABLE = "features.customer_features"
FEATURE_ASSET = "features/customer_features"
DATE_COLUMN = "as_of_date"


class BackfillNeeded(ValueError):
    """Stored feature days lack columns a reader needs (added by a change of windows)."""


def day_ranges(days: Iterable[dt.date]) -> list[tuple[dt.date, dt.date]]:
    """Sorted days as inclusive runs of consecutive days: [1, 2, 3, 7] → [(1, 3), (7, 7)]."""
    out: list[tuple[dt.date, dt.date]] = []
    for day in sorted(set(days)):
        if out and day - out[-1][1] == dt.timedelta(days=1):
            out[-1] = (out[-1][0], day)
        else:
            out.append((day, day))
    return out


def backfill_hint(ranges: Sequence[tuple[dt.date, dt.date]], asset: str = FEATURE_ASSET) -> str:
    """How to re-materialise ``ranges`` of ``asset`` (one ranged run each)."""
    return "; ".join(
        f"dagster asset materialize -m definitions --select {asset} "
        f"--partition-range {lo.isoformat()}...{hi.isoformat()}"
        for lo, hi in ranges
    )


def _ranges_text(ranges: Sequence[tuple[dt.date, dt.date]]) -> str:
    return ", ".join(
        lo.isoformat() if lo == hi else f"{lo.isoformat()}…{hi.isoformat()}" for lo, hi in ranges
    )


@dataclass(frozen=True)
class Migration:
    """What :func:`migrate_feature_table` changed and which stored days now need a backfill."""

    table: str
    added: tuple[str, ...] = ()
    retired: tuple[str, ...] = ()
    unfilled: tuple[tuple[dt.date, dt.date], ...] = ()

    @property
    def unfilled_days(self) -> int:
        return sum((hi - lo).days + 1 for lo, hi in self.unfilled)

    def describe(self) -> str:
        """One log line for the operator: columns added, days to backfill and how."""
        parts = []
        if self.added:
            parts.append(f"{self.table} gained columns {', '.join(self.added)}")
        if self.retired:
            parts.append(
                f"kept columns {', '.join(self.retired)} of removed windows (NULL on new days)"
            )
        if self.unfilled:
            parts.append(
                f"{self.unfilled_days} stored day(s) ({_ranges_text(self.unfilled)}) have NULL "
                f"there until backfilled: {backfill_hint(self.unfilled)}"
            )
        return "; ".join(parts) if parts else f"{self.table}: schema unchanged"


def _table_columns(con: Any, table: str) -> list[str] | None:
    schema, name = table.split(".")
    rows = con.execute(
        "select column_name from information_schema.columns "
        "where table_schema = ? and table_name = ? order by ordinal_position",
        [schema, name],
    ).fetchall()
    return [r[0] for r in rows] or None


def _quoted(column: str) -> str:
    return '"' + column.replace('"', '""') + '"'


def unfilled_days(
    con: Any, table: str, columns: Sequence[str], date_column: str = DATE_COLUMN
) -> list[dt.date]:
    """Stored days of ``table`` where any of ``columns`` is NULL (or missing from the table)."""
    have = _table_columns(con, table)
    if have is None:
        return []
    nulls = " or ".join(f"{_quoted(c)} is null" for c in columns) or "false"
    where = "true" if any(c not in have for c in columns) else nulls
    rows = con.execute(
        f"select distinct cast({_quoted(date_column)} as date) from {table} where {where}"
    ).fetchall()
    return sorted(r[0] for r in rows)


def migrate_feature_table(
    con: Any,
    columns: Sequence[str],
    table: str = FEATURE_TABLE,
    date_column: str = DATE_COLUMN,
    rewriting: Iterable[dt.date] = (),
) -> Migration:
    """Add ``columns`` that ``table`` lacks (as DOUBLE, in one transaction) and report the
    stored days, other than ``rewriting`` (the days the caller is about to replace), that
    lack any of ``columns``, whether added now or by an earlier run. A missing table is left
    for the first write to create."""
    have = _table_columns(con, table)
    if have is None:
        return Migration(table)
    added = tuple(c for c in columns if c not in have)
    retired = tuple(c for c in have if c not in columns and c not in {date_column, "customer_id"})
    if added:
        con.execute("begin transaction")
        try:
            for column in added:
                con.execute(f"alter table {table} add column {_quoted(column)} double")
        except BaseException:
            con.execute("rollback")
            raise
        con.execute("commit")
    # Every write re-reports a pending backfill (not only the one that added the columns): a
    # run that failed after the migration must not hide it. NULL checks read validity masks.
    skip = set(rewriting)
    stale = [d for d in unfilled_days(con, table, columns, date_column) if d not in skip]
    return Migration(table, added, retired, tuple(day_ranges(stale)))


def require_filled(
    frame: pd.DataFrame,
    columns: Sequence[str],
    what: str,
    date_column: str = DATE_COLUMN,
    asset: str = FEATURE_ASSET,
) -> None:
    """Raise :class:`BackfillNeeded` when rows of ``frame`` (read from the feature table) lack
    any of ``columns``, naming the columns, the days and the backfill to run."""
    lacking = [c for c in columns if c not in frame.columns]
    present = [c for c in columns if c in frame.columns]
    holes = frame[present].isna().any(axis=1) if present else pd.Series(False, index=frame.index)
    if lacking:
        holes = pd.Series(True, index=frame.index)
    if not holes.any():
        return
    nulls = sorted(set(lacking) | {c for c in present if frame.loc[holes, c].isna().any()})
    days = pd.to_datetime(frame.loc[holes, date_column]).dt.date
    ranges = day_ranges(days)
    raise BackfillNeeded(
        f"{what} needs {', '.join(nulls)} for {_ranges_text(ranges)}, but {asset} was stored "
        "for those days before features.windows gained them (NULL there): backfill "
        f"{asset} for {_ranges_text(ranges)} first: {backfill_hint(ranges, asset)}"
    )
