"""Optional copy of the prediction tables into PostgreSQL, for applications that read them there.

Wire it as the ``publisher`` resource; the URL comes from an environment variable (a secret),
e.g. ``PostgresPublisher(url=dg.EnvVar("PREDICTIONS_DATABASE_URL"), enabled=True)``. Disabled
(the default), ``publish`` does nothing and returns 0, so assets can call it unconditionally.

Order across the two stores: the warehouse is the system of record, PostgreSQL a copy. Assets
call ``publish_committed`` *after* yielding their ``dg.Output``: Dagster hands an output to the
IO manager (which commits the DuckDB partition) before it resumes the asset's generator, so a
failed warehouse write ends the step before anything is published. A failed publish after a
commit leaves PostgreSQL on its previous rows (one transaction) and fails the step; re-running
the partition republishes it, idempotently.
"""

from __future__ import annotations

from collections.abc import Iterator

import dagster as dg
import pandas as pd
from pydantic import Field

from lifecycle.publish import publish_partition
from lifecycle.settings import Settings


class PostgresPublisher(dg.ConfigurableResource):
    """Replaces a window of days of a prediction table in ``schema`` of a PostgreSQL database."""

    url: str = Field(
        default="",
        description="SQLAlchemy URL of the target database; set it from an EnvVar, never inline.",
    )
    enabled: bool = Field(default=False, description="When false, publish() is a no-op.")
    schema_: str = Field(
        default="predictions",
        alias="schema",
        description="Schema the tables are written to (created when missing).",
    )

    def publish(
        self, table: str, frame: pd.DataFrame, date_column: str, start: object, end: object
    ) -> int:
        """Rows of ``frame`` replace ``schema.table``'s rows in ``[start, end)``; returns rows
        written (0 when disabled)."""
        log = dg.get_dagster_logger()
        if not self.enabled:
            log.debug(f"publisher disabled: {table} not published")
            return 0
        if not self.url:
            raise dg.Failure(
                description="the publisher is enabled but has no url: set the environment "
                "variable its EnvVar names (e.g. PREDICTIONS_DATABASE_URL)"
            )
        written = publish_partition(
            self.url, f"{self.schema_}.{table}", frame, date_column, start, end
        )
        log.info(f"published {written} rows to {self.schema_}.{table} for [{start}, {end})")
        return written

    def publish_committed(
        self, key: dg.AssetKey, frame: pd.DataFrame, date_column: str, start: object, end: object
    ) -> Iterator[dg.AssetObservation]:
        """Publish an asset's partition the warehouse has already committed (call it after the
        asset's ``yield dg.Output(frame)``); when enabled, an observation records the rows."""
        written = self.publish(key.path[-1], frame, date_column, start, end)
        if self.enabled:
            yield dg.AssetObservation(
                asset_key=key,
                metadata={
                    "published_rows": written,
                    "published_table": f"{self.schema_}.{key.path[-1]}",
                    "published_window": f"[{start}, {end})",
                },
            )


def publisher_from_settings(settings: Settings) -> PostgresPublisher:
    """The URL only ever comes from the environment, and only when publishing is on."""
    cfg = settings.publish
    if not cfg.enabled:
        return PostgresPublisher(enabled=False)
    return PostgresPublisher(url=dg.EnvVar(cfg.url_env), enabled=True, schema=cfg.schema_name)
