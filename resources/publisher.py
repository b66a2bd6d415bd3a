"""Optional copy of the prediction tables into PostgreSQL, for applications that read them there.

Wire it as the ``publisher`` resource; the URL comes from an environment variable (a secret),
e.g. ``PostgresPublisher(url=dg.EnvVar("PREDICTIONS_DATABASE_URL"), enabled=True)``. Disabled
(the default), ``publish`` does nothing and returns 0, so assets can call it unconditionally.
"""

from __future__ import annotations

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


def publisher_from_settings(settings: Settings) -> PostgresPublisher:
    """The URL only ever comes from the environment, and only when publishing is on."""
    cfg = settings.publish
    if not cfg.enabled:
        return PostgresPublisher(enabled=False)
    return PostgresPublisher(url=dg.EnvVar(cfg.url_env), enabled=True, schema=cfg.schema_name)
