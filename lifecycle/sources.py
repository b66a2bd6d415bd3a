"""Reading raw events from the user's files or SQL, mapped onto our canonical column names.

Every reader returns rows whose timestamp falls in ``[start, end)`` in naive local time of the
configured zone. Validation re-checks that: a reader that over-fetches gets the extra rows
quarantined (and counted against the quarantine bound), never stored in the wrong day.

The files reader also accounts for every row of every file (see :class:`Window`): rows of other
partitions are left for their own runs, rows dated before the first partition are counted and
never stored, future-dated rows are handed on (to be quarantined) exactly once.
"""

from __future__ import annotations

import datetime as dt
import glob as globlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import sqlalchemy as sa

from lifecycle.urls import DatabaseUrlError, check_url, redact
from lifecycle.validation import (
    ROW_SOURCE,
    SOURCE_TIMESTAMP,
    MissingColumnsError,
    TableSpec,
    id_text,
    require_columns,
)

DAY = pd.Timedelta(days=1)
FILE_COUNTS = ("rows_read", "before_start", "future_dated", "other_days", "handed_on")


class SourceQueryError(RuntimeError):
    """The source database refused or failed the query; the message carries no credentials."""


class UnreadableFileError(ValueError):
    """A source file that exists but cannot be parsed; the message starts with the file path."""


@dataclass(frozen=True)
class Window:
    """The days one run ingests (``[start, end)``, naive local midnights) and where they sit.

    ``range_start`` is the first partition day; ``range_end`` the exclusive end of the last
    partition that exists; rows at or after ``future_from`` are future-dated. Rule for the
    latter: they are handed on only by a run whose window holds the last partition day, and
    filed (quarantined) under that day — re-running it replaces that slice, so across any set
    of range runs each such row is quarantined exactly once. Open-ended ranges: the last
    partition is yesterday (today is still being written: rows dated today wait for
    tomorrow's run) and rows dated after today are future-dated; a row still in the future
    when the next day is ingested is reported again there, and one whose day arrives is stored.
    ``None`` bounds: no partition range is known (plain reads).
    """

    start: pd.Timestamp
    end: pd.Timestamp
    range_start: pd.Timestamp | None = None
    range_end: pd.Timestamp | None = None
    future_from: pd.Timestamp | None = None

    @property
    def holds_last_day(self) -> bool:
        return self.range_end is not None and self.end >= self.range_end

    @property
    def future_here(self) -> pd.Timestamp | None:
        """``future_from`` if this run quarantines future-dated rows, else None."""
        return self.future_from if self.holds_last_day else None

    def home_day(self, first_stamp: pd.Timestamp) -> pd.Timestamp:
        """The day under which a file's undatable rows are filed: its first day, clamped into
        the partition range so that such rows are never left in a day no run covers."""
        day = first_stamp.normalize() if pd.notna(first_stamp) else self.start
        if self.range_start is not None:
            day = max(day, self.range_start)
        if self.range_end is not None:
            day = min(day, self.range_end - DAY)
        return day


def partition_window(
    start: pd.Timestamp,
    end: pd.Timestamp,
    first_day: dt.date,
    end_day: dt.date | None,
    today: pd.Timestamp,
) -> Window:
    """The run's window within the settings' partition range (``end_day`` exclusive, or None
    for an open-ended range that grows by one day every local midnight)."""
    if end_day is not None:
        range_end = future_from = pd.Timestamp(end_day)
    else:
        range_end, future_from = today.normalize(), today.normalize() + DAY
    return Window(start, end, pd.Timestamp(first_day), range_end, future_from)


@dataclass(frozen=True)
class FileOptions:
    """How to read the user's files: timestamp style and CSV text conventions."""

    timestamp_format: str | None = None
    timestamp_unit: str | None = None
    encoding: str = "utf-8"
    delimiter: str = ","


@dataclass(frozen=True)
class FilesRead:
    """Rows handed on for validation, and per file how every row was accounted for."""

    frame: pd.DataFrame
    files: pd.DataFrame  # index: file path; columns: FILE_COUNTS


def to_local_naive(stamps: pd.Series, timezone: str) -> pd.Series:
    """Timestamps as naive wall-clock time in ``timezone``; naive input is taken as local."""
    if isinstance(stamps.dtype, pd.DatetimeTZDtype):
        stamps = stamps.dt.tz_convert(timezone).dt.tz_localize(None)
    return stamps.astype("datetime64[ns]")


# A clock time followed by an offset: "…10:00:00+01:00", "…10:00Z", "…10:00:00.5 -0500".
_AWARE = re.compile(
    r"\d{1,2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?\s*(?:[zZ]|UTC|GMT|[+-]\d{2}(?::?\d{2})?)$"
)


def parse_timestamps(
    values: pd.Series, fmt: str | None, unit: str | None, timezone: str
) -> pd.Series:
    """Parse a user's timestamp column into naive local time of ``timezone``.

    Epoch numbers (``unit``) are UTC instants. Text with an offset (``Z``, ``+02:00``; offsets may
    differ row by row, e.g. across a DST change) is converted to the zone; text without one is
    already local wall-clock time. Unparseable values become NaT and are quarantined later.
    """
    if unit is not None:
        parsed = pd.to_datetime(pd.to_numeric(values, errors="coerce"), unit=unit, utc=True)
        return to_local_naive(parsed, timezone)
    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        return to_local_naive(values, timezone)
    text = values.astype("string").str.strip()
    if fmt is not None:
        aware_format = "%z" in fmt or "%Z" in fmt
        parsed = pd.to_datetime(text, format=fmt, errors="coerce", utc=aware_format)
        return to_local_naive(parsed, timezone)
    # Aware and naive text are parsed apart: in one call pandas gives a naive value the offset
    # of the aware value before it. Naive text is read "as UTC" only to keep its wall clock.
    aware = text.str.contains(_AWARE, na=False).astype(bool)
    out = pd.Series(pd.NaT, index=values.index, dtype="datetime64[ns]")
    for part, convert in ((aware, True), (~aware, False)):
        if part.any():
            parsed = _iso_or_mixed(text[part])
            local = parsed.dt.tz_convert(timezone) if convert else parsed
            out[part] = local.dt.tz_localize(None).astype("datetime64[ns]")
    return out


def _iso_or_mixed(text: pd.Series) -> pd.Series:
    """ISO 8601 fast; anything else ("03/01/2026 10:00") through the per-value parser."""
    parsed = pd.to_datetime(text, format="ISO8601", errors="coerce", utc=True)
    retry = parsed.isna() & text.notna()
    if retry.any():
        parsed[retry] = pd.to_datetime(text[retry], format="mixed", errors="coerce", utc=True)
    return parsed


def _read_one(path: Path, options: FileOptions) -> pd.DataFrame | None:
    """The file as a frame (CSV cells as text), or None for a zero-byte file."""
    try:
        if path.stat().st_size == 0:
            return None
        if path.suffix.lower() in {".parquet", ".pq"}:
            return pd.read_parquet(path)
        return pd.read_csv(
            path,
            dtype=str,
            keep_default_na=True,
            encoding=options.encoding,
            sep=options.delimiter,
            engine="c" if len(options.delimiter) == 1 else "python",
        )
    except UnicodeDecodeError as exc:
        raise UnreadableFileError(
            f"{path}: cannot read: not {options.encoding} text ({exc});"
            " set source.files.encoding (e.g. latin-1)"
        ) from exc
    except Exception as exc:
        raise UnreadableFileError(f"{path}: cannot read: {type(exc).__name__}: {exc}") from exc


def file_days(
    path: Path, column: str, timezone: str, options: FileOptions | None = None
) -> list[str]:
    """Sorted local days (``YYYY-MM-DD``) of a file's rows, read and parsed exactly as the files
    source reads them (encoding, delimiter, timestamp style): what a drop sensor should ask."""
    options = options or FileOptions()
    raw = _read_one(path, options)
    if raw is None:
        return []
    require_columns(raw, (column,), str(path))
    stamps = parse_timestamps(
        raw[column], options.timestamp_format, options.timestamp_unit, timezone
    )
    return sorted(set(stamps.dropna().dt.strftime("%Y-%m-%d")))


def matching_files(pattern: str) -> list[Path]:
    return sorted(Path(p) for p in globlib.glob(pattern, recursive=True) if Path(p).is_file())


def _one_file(
    path: Path,
    spec: TableSpec,
    wanted: Mapping[str, str | None],
    window: Window,
    timezone: str,
    options: FileOptions,
) -> tuple[pd.DataFrame, dict[str, int]]:
    """The rows of one file this run hands on, and how its rows were accounted for."""
    raw = _read_one(path, options)
    if raw is None:
        raw = pd.DataFrame({c: pd.Series(dtype=str) for c in wanted.values() if c is not None})
    require_columns(raw, tuple(c for c in wanted.values() if c is not None), str(path))
    frame = pd.DataFrame(
        {ours: raw[theirs] if theirs is not None else 1.0 for ours, theirs in wanted.items()},
        index=raw.index,
    )
    for key in spec.keys:
        frame[key] = id_text(frame[key])
    # The file's own text is kept for quarantine records, so a reviewer sees what was there.
    frame[SOURCE_TIMESTAMP] = frame["timestamp"].astype("string")
    frame["timestamp"] = parse_timestamps(
        frame["timestamp"], options.timestamp_format, options.timestamp_unit, timezone
    )
    frame[ROW_SOURCE] = str(path)
    stamp = frame["timestamp"]
    if len(frame) and stamp.isna().all():
        example = raw[wanted["timestamp"]].dropna().head(1).tolist()
        raise UnreadableFileError(
            f"{path}: no timestamp in column {wanted['timestamp']!r} parses (e.g. {example});"
            " check source.files timestamp_format / timestamp_unit"
        )
    never = pd.Series(False, index=frame.index)
    before = stamp < window.range_start if window.range_start is not None else never
    future = stamp >= window.future_from if window.future_from is not None else never
    # A row whose timestamp does not parse belongs to no day: it is handed on (with the file's
    # text) once, in the window holding the file's first day, not in every window.
    home = window.home_day(stamp.min())
    keep = (
        ((stamp >= window.start) & (stamp < window.end) & ~future)
        | (stamp.isna() & (window.start <= home) & (home < window.end))
        | (future & window.holds_last_day)
    )
    counts = {
        "rows_read": len(frame),
        "before_start": int(before.sum()),
        "future_dated": int(future.sum()),
        "handed_on": int(keep.sum()),
    }
    counts["other_days"] = counts["rows_read"] - counts["handed_on"] - counts["before_start"]
    return frame.loc[keep], counts


def read_files(
    pattern: str,
    spec: TableSpec,
    column_map: Mapping[str, str | None],
    window: Window,
    timezone: str,
    options: FileOptions | None = None,
) -> FilesRead:
    """Rows of every file matching ``pattern`` for ``window``, with per-file counts.

    ``column_map`` maps our names to the user's; a ``weight`` mapped to ``None`` (a log without
    weights) becomes 1.0 for every row. Header-only and zero-byte files contribute no rows.
    Any failure raises with a message that starts with the file's path.
    """
    options = options or FileOptions()
    files = matching_files(pattern)
    if not files:
        raise FileNotFoundError(f"no source files match {pattern}")
    wanted = {ours: theirs for ours, theirs in column_map.items() if ours in spec.columns}
    frames: list[pd.DataFrame] = []
    report: dict[str, dict[str, int]] = {}
    for path in files:
        try:
            frame, counts = _one_file(path, spec, wanted, window, timezone, options)
        except (UnreadableFileError, MissingColumnsError):
            raise
        except Exception as exc:
            raise UnreadableFileError(f"{path}: {type(exc).__name__}: {exc}") from exc
        frames.append(frame)
        report[str(path)] = counts
    columns = [*spec.columns, SOURCE_TIMESTAMP, ROW_SOURCE]
    combined = pd.concat(frames, ignore_index=True).loc[:, columns]
    combined["timestamp"] = combined["timestamp"].astype("datetime64[ns]")
    files_frame = pd.DataFrame.from_dict(report, orient="index").loc[:, list(FILE_COUNTS)]
    return FilesRead(frame=combined, files=files_frame)


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
    """Rows of every file matching ``pattern`` that fall in ``[start, end)``, canonical columns
    (plus the source's timestamp text and file path); no partition range is assumed."""
    options = FileOptions(timestamp_format, timestamp_unit)
    return read_files(pattern, spec, column_map, Window(start, end), timezone, options).frame


def read_event_sql(
    url: str,
    query: str,
    spec: TableSpec,
    start: pd.Timestamp,
    end: pd.Timestamp,
    timezone: str,
) -> pd.DataFrame:
    """Run ``query`` with the window bound as ``:start`` and ``:end`` (naive local timestamps).

    A URL that SQLAlchemy would split in the wrong place (a raw ``@`` in the password) is
    refused before any host is looked up; errors never carry any piece of the password."""
    failure: str | None = None
    try:
        check_url(url, "the source database URL")
        engine = sa.create_engine(url, hide_parameters=True)
        try:
            with engine.connect() as conn:
                frame = pd.read_sql_query(
                    sa.text(query),
                    conn,
                    params={"start": start.to_pydatetime(), "end": end.to_pydatetime()},
                )
        finally:
            engine.dispose()
    except (DatabaseUrlError, sa.exc.SQLAlchemyError) as exc:
        # Driver errors can echo the URL (and its password) back; alerts forward messages.
        failure = redact(str(exc), url)
    if failure is not None:
        # Raised outside the except block: the original exception is neither cause nor context.
        raise SourceQueryError(f"source query failed: {failure}")
    require_columns(frame, spec.columns, "sql query")
    frame = frame.loc[:, list(spec.columns)]
    for key in spec.keys:
        frame[key] = id_text(frame[key])
    frame["timestamp"] = parse_timestamps(frame["timestamp"], None, None, timezone)
    return frame
