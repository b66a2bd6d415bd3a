"""Where raw events come from: one interface, three implementations chosen by settings."""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import dagster as dg
import pandas as pd

from lifecycle.settings import Settings
from lifecycle.sources import FileOptions, FilesRead, Window, read_event_sql, read_files
from lifecycle.synthetic import Incident, SyntheticConfig, SyntheticShop, generate_shop
from lifecycle.validation import INTERACTIONS, ROW_SOURCE, TRANSACTIONS

SPECS = {"transactions": TRANSACTIONS, "interactions": INTERACTIONS}


@dataclass(frozen=True)
class SourceRead:
    """A window's raw rows (each tagged with where it came from) and, for files, per-file
    counts of how every row of every file was accounted for."""

    frame: pd.DataFrame
    files: pd.DataFrame | None = None


class EventSource(dg.ConfigurableResource, ABC):
    """Returns the raw rows of one table for a window of local days."""

    timezone: str = "UTC"

    # What quarantine rows name as their source when the source has no files.
    label: ClassVar[str] = "source"

    @abstractmethod
    def fetch(self, table: str, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
        """Canonical columns, timestamps as naive local time, rows in ``[start, end)``."""

    def read(self, table: str, window: Window) -> SourceRead:
        """The rows the raw asset validates for ``window``; sources without files tag every
        row with their label."""
        frame = self.fetch(table, window.start, window.end)
        return SourceRead(frame.assign(**{ROW_SOURCE: self.label}))


@functools.lru_cache(maxsize=2)
def _shop(config: SyntheticConfig) -> SyntheticShop:
    """Generated once per process: the raw assets of one run share it."""
    return generate_shop(config)


class SyntheticSource(EventSource):
    """The seeded demo shop; the same seed and sizes always give the same rows."""

    label: ClassVar[str] = "synthetic"
    seed: int = 7
    n_customers: int = 5000
    n_items: int = 1000
    start_date: str
    end_date: str
    # The planted tracking bug of source.synthetic.incident (no start: none).
    incident_start: str | None = None
    incident_end: str | None = None
    incident_share: float = 0.5
    incident_factor: float = 100.0
    # False: the shop has no clickstream (settings source.synthetic.tables: [transactions]).
    interactions: bool = True

    def shop(self) -> SyntheticShop:
        return _shop(
            SyntheticConfig(
                start=pd.Timestamp(self.start_date).date(),
                end=pd.Timestamp(self.end_date).date(),
                seed=self.seed,
                n_customers=self.n_customers,
                n_items=self.n_items,
                incident=self._incident(),
                interactions=self.interactions,
            )
        )

    def _incident(self) -> Incident | None:
        if self.incident_start is None or self.incident_end is None:
            return None
        return Incident(
            start=pd.Timestamp(self.incident_start).date(),
            end=pd.Timestamp(self.incident_end).date(),
            share=self.incident_share,
            factor=self.incident_factor,
        )

    def fetch(self, table: str, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
        shop = self.shop()
        frame = shop.transactions if table == "transactions" else shop.interactions
        stamps = frame["timestamp"]
        lo, hi = stamps.searchsorted(start), stamps.searchsorted(end)
        spec = SPECS[table]
        rows = frame.iloc[lo:hi].loc[:, list(spec.columns)].reset_index(drop=True)
        # The generator numbers its customers and items; ids are text everywhere downstream.
        return rows.assign(**{key: rows[key].astype(str) for key in spec.keys})


class FilesSource(EventSource):
    """CSV or Parquet files matched by a glob, with the user's column names mapped onto ours."""

    transactions_glob: str | None = None
    interactions_glob: str | None = None
    columns: dict[str, str | None] = {}
    timestamp_format: str | None = None
    timestamp_unit: str | None = None
    # Per table (from settings: the table's own style, else the shared one).
    timestamp_formats: dict[str, str | None] = {}
    timestamp_units: dict[str, str | None] = {}
    encoding: str = "utf-8"
    delimiter: str = ","

    def pattern(self, table: str) -> str:
        pattern = self.transactions_glob if table == "transactions" else self.interactions_glob
        if not pattern:
            raise ValueError(f"the files source has no {table}_glob configured")
        return pattern

    def options(self, table: str) -> FileOptions:
        fmt = self.timestamp_formats.get(table, self.timestamp_format)
        unit = self.timestamp_units.get(table, self.timestamp_unit)
        return FileOptions(fmt, unit, self.encoding, self.delimiter)

    def mapping(self, table: str) -> dict[str, str | None]:
        spec = SPECS[table]
        own = self.columns.get(f"{table}_timestamp")
        mapping = {c: self.columns.get(c, c) for c in spec.columns}
        return {**mapping, "timestamp": own or mapping["timestamp"]}

    def read_files(self, table: str, window: Window) -> FilesRead:
        return read_files(
            self.pattern(table),
            SPECS[table],
            self.mapping(table),
            window,
            self.timezone,
            self.options(table),
        )

    def fetch(self, table: str, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
        return self.read_files(table, Window(start, end)).frame

    def read(self, table: str, window: Window) -> SourceRead:
        found = self.read_files(table, window)
        return SourceRead(found.frame, found.files)


class SqlSource(EventSource):
    """A SQLAlchemy URL (from an environment variable) and one query per table."""

    label: ClassVar[str] = "sql"
    url: str
    transactions_query: str | None = None
    interactions_query: str | None = None

    def fetch(self, table: str, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
        query = self.transactions_query if table == "transactions" else self.interactions_query
        if not query:
            raise ValueError(f"the sql source has no {table}_query configured")
        return read_event_sql(self.url, query, SPECS[table], start, end, self.timezone)


def source_from_settings(settings: Settings) -> EventSource:
    src, tz = settings.source, settings.timezone
    if src.kind == "files" and src.files is not None:
        return FilesSource(
            timezone=tz,
            transactions_glob=src.files.transactions_glob,
            interactions_glob=src.files.interactions_glob,
            columns=src.files.columns.model_dump(),
            timestamp_format=src.files.timestamp_format,
            timestamp_unit=src.files.timestamp_unit,
            timestamp_formats={t: src.files.timestamp_style(t)[0] for t in SPECS},
            timestamp_units={t: src.files.timestamp_style(t)[1] for t in SPECS},
            encoding=src.files.encoding,
            delimiter=src.files.delimiter,
        )
    if src.kind == "sql" and src.sql is not None:
        return SqlSource(
            timezone=tz,
            url=dg.EnvVar(src.sql.url_env),
            transactions_query=src.sql.transactions_query,
            interactions_query=src.sql.interactions_query,
        )
    end = settings.partitions.end_date
    if end is None:
        raise ValueError("the synthetic source needs partitions.end_date")
    incident = src.synthetic.incident  # the planted tracking bug, if the settings ask for one
    return SyntheticSource(
        timezone=tz,
        seed=src.synthetic.seed,
        n_customers=src.synthetic.n_customers,
        n_items=src.synthetic.n_items,
        start_date=settings.partitions.start_date.isoformat(),
        end_date=end.isoformat(),
        incident_start=incident.start.isoformat() if incident else None,
        incident_end=incident.end.isoformat() if incident else None,
        incident_share=incident.share if incident else 0.5,
        incident_factor=incident.factor if incident else 100.0,
        interactions="interactions" in src.synthetic.tables,
    )
