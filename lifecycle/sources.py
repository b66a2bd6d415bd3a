"""Reading raw events from the user's files or SQL, mapped onto our canonical column names.

Every reader returns rows whose timestamp falls in ``[start, end)`` in naive local time of the
configured zone. Validation re-checks that: a reader that over-fetches gets the extra rows
quarantined (and counted against the quarantine bound), never stored in the wrong day.
"""

from __future__ import annotations

import glob as globlib
from collections.abc import Mapping
from pathlib import Path

import pandas as pd
import sqlalchemy as sa

from lifecycle.publish import redact
from lifecycle.validation import SOURCE_TIMESTAMP, TableSpec, require_columns


class SourceQueryError(RuntimeError):
    """The source database refused or failed the query; the message carries no credentials."""


class UnreadableFileError(ValueError):
    """A source file that exists but cannot be parsed; the message names the file."""


def to_local_naive(stamps: pd.Series, timezone: str) -> pd.Series:
    """Timestamps as naive wall-clock time in ``timezone``; naive input is taken as local."""
    if isinstance(stamps.dtype, pd.DatetimeTZDtype):
        return stamps.dt.tz_convert(timezone).dt.tz_localize(None)
    return stamps


def parse_timestamps(
    values: pd.Series, fmt: str | None, unit: str | None, timezone: str
) -> pd.Series:
    """Parse a user's timestamp column; unparseable values become NaT and are quarantined later."""
    if unit is not None:
        parsed = pd.to_datetime(pd.to_numeric(values, errors="coerce"), unit=unit, utc=True)
    elif fmt is not None:
        parsed = pd.to_datetime(values.astype("string"), format=fmt, errors="coerce")
    else:
        parsed = pd.to_datetime(values, errors="coerce", format="mixed")
    return to_local_naive(parsed, timezone)


def _read_one(path: Path) -> pd.DataFrame:
    try:
        if path.suffix.lower() in {".parquet", ".pq"}:
            return pd.read_parquet(path)
        return pd.read_csv(path, dtype=str, keep_default_na=True)
    except Exception as exc:
        raise UnreadableFileError(f"cannot read {path}: {type(exc).__name__}: {exc}") from exc


def matching_files(pattern: str) -> list[Path]:
    return sorted(Path(p) for p in globlib.glob(pattern, recursive=True))


def read_event_files(
    pattern: str,
    spec: TableSpec,
    column_map: Mapping[str, str | None],
    start: pd.Timestamp,
    end: pd.Timestamp,
    timezone: str,
    timestamp_format: str | None = None,
    timestamp_unit: str | None = None,
) -> pd.DataFrame:
    """Rows of every file matching ``pattern`` that fall in ``[start, end)``, canonical columns.

    ``column_map`` maps our names to the user's; a ``weight`` mapped to ``None`` (a log without
    weights) becomes 1.0 for every row.
    """
    files = matching_files(pattern)
    if not files:
        raise FileNotFoundError(f"no source files match {pattern}")
    frames: list[pd.DataFrame] = []
    for path in files:
        raw = _read_one(path)
        wanted = {ours: theirs for ours, theirs in column_map.items() if ours in spec.columns}
        require_columns(raw, tuple(c for c in wanted.values() if c is not None), str(path))
        frame = pd.DataFrame(
            {ours: raw[theirs] if theirs is not None else 1.0 for ours, theirs in wanted.items()}
        )
        # The file's own text is kept for quarantine records, so a reviewer sees what was there.
        frame[SOURCE_TIMESTAMP] = frame["timestamp"].astype("string")
        frame["timestamp"] = parse_timestamps(
            frame["timestamp"], timestamp_format, timestamp_unit, timezone
        )
        stamp = frame["timestamp"]
        if stamp.isna().all() and len(frame):
            raise UnreadableFileError(
                f"{path}: no timestamp in column {wanted['timestamp']!r} parses"
            )
        # A row whose timestamp does not parse belongs to no day; it is quarantined (with the
        # file's text) once, in the window holding the file's first day, not in every window.
        first_day = stamp.min().normalize()
        keep = (stamp >= start) & (stamp < end) | (stamp.isna() & (start <= first_day < end))
        frames.append(frame.loc[keep])
    return pd.concat(frames, ignore_index=True).loc[:, [*spec.columns, SOURCE_TIMESTAMP]]


def read_event_sql(
    url: str,
    query: str,
    spec: TableSpec,
    start: pd.Timestamp,
    end: pd.Timestamp,
    timezone: str,
) -> pd.DataFrame:
    """Run ``query`` with the window bound as ``:start`` and ``:end`` (naive local timestamps)."""
    engine = sa.create_engine(url, hide_parameters=True)
    try:
        with engine.connect() as conn:
            frame = pd.read_sql_query(
                sa.text(query),
                conn,
                params={"start": start.to_pydatetime(), "end": end.to_pydatetime()},
            )
    except sa.exc.SQLAlchemyError as exc:
        # Driver errors can echo the URL (and its password) back; alerts forward messages.
        raise SourceQueryError(f"source query failed: {redact(str(exc), url)}") from None
    finally:
        engine.dispose()
    require_columns(frame, spec.columns, "sql query")
    frame["timestamp"] = to_local_naive(
        pd.to_datetime(frame["timestamp"], errors="coerce"), timezone
    )
    return frame.loc[:, list(spec.columns)]
