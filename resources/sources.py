"""Where raw events come from: one interface, three implementations chosen by settings."""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod

import dagster as dg
import pandas as pd

from lifecycle.settings import Settings
from lifecycle.sources import read_event_files, read_event_sql
from lifecycle.synthetic import SyntheticConfig, SyntheticShop, generate_shop
from lifecycle.validation import INTERACTIONS, TRANSACTIONS, TableSpec

SPECS = {"transactions": TRANSACTIONS, "interactions": INTERACTIONS}


class EventSource(dg.ConfigurableResource, ABC):
    """Returns the raw rows of one table for a window of local days."""

    timezone: str = "UTC"

    @abstractmethod
    def fetch(self, table: str, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
        """Canonical columns, timestamps as naive local time, rows in ``[start, end)``."""


@functools.lru_cache(maxsize=2)
def _shop(config: SyntheticConfig) -> SyntheticShop:
    """Generated once per process: the raw assets of one run share it."""
    return generate_shop(config)


class SyntheticSource(EventSource):
    """The seeded demo shop; the same seed and sizes always give the same rows."""

    seed: int = 7
    n_customers: int = 5000
    n_items: int = 1000
    start_date: str
    end_date: str

    def shop(self) -> SyntheticShop:
        return _shop(
            SyntheticConfig(
                start=pd.Timestamp(self.start_date).date(),
                end=pd.Timestamp(self.end_date).date(),
                seed=self.seed,
                n_customers=self.n_customers,
                n_items=self.n_items,
            )
        )

    def fetch(self, table: str, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
        shop = self.shop()
        frame = shop.transactions if table == "transactions" else shop.interactions
        stamps = frame["timestamp"]
        lo, hi = stamps.searchsorted(start), stamps.searchsorted(end)
        return frame.iloc[lo:hi].loc[:, list(SPECS[table].columns)].reset_index(drop=True)


class FilesSource(EventSource):
    """CSV or Parquet files matched by a glob, with the user's column names mapped onto ours."""

    transactions_glob: str | None = None
    interactions_glob: str | None = None
    columns: dict[str, str | None] = {}
    timestamp_format: str | None = None
    timestamp_unit: str | None = None

    def pattern(self, table: str) -> str:
        pattern = self.transactions_glob if table == "transactions" else self.interactions_glob
        if not pattern:
            raise ValueError(f"the files source has no {table}_glob configured")
        return pattern

    def fetch(self, table: str, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
        spec: TableSpec = SPECS[table]
        mapping = {c: self.columns.get(c, c) for c in spec.columns}
        return read_event_files(
            self.pattern(table),
            spec,
            mapping,
            start,
            end,
            self.timezone,
            self.timestamp_format,
            self.timestamp_unit,
        )


class SqlSource(EventSource):
    """A SQLAlchemy URL (from an environment variable) and one query per table."""

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
    return SyntheticSource(
        timezone=tz,
        seed=src.synthetic.seed,
        n_customers=src.synthetic.n_customers,
        n_items=src.synthetic.n_items,
        start_date=settings.partitions.start_date.isoformat(),
        end_date=end.isoformat(),
    )
