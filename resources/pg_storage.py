"""PostgreSQL instance storage whose event log keeps its connection between events.

dagster-postgres opens a new server connection for every statement group outside the
webserver (NullPool), so that idle processes hold none. A run stores one event per step
transition and one per day of a partitioned check; a year's ranged ingest opened ~1,200
connections, most of its bookkeeping (a ranged run of 365 days with a per-day check: 6.8 s
on stock storage, 1.3 s here: ``python -m benchmarks.event_log``). This storage is
``storage: postgres`` (same config, tables and behaviour) with the event log's engine built
as the webserver builds it: one kept connection per process, more opened only while threads
need them and closed after, recycled hourly. A run pod, the daemon and each code server therefore hold one idle connection while
they live, as the webserver already does. deploy/dagster.yaml names it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dagster._config.config_schema import UserConfigSchema
from dagster._core.storage.config import pg_config
from dagster._serdes import ConfigurableClassData
from dagster_postgres import DagsterPostgresStorage
from dagster_postgres.utils import get_token_provider_from_config, pg_url_from_config

# Extra connections a process may open at once beyond the kept one (threads of the daemon or
# a code server), each closed when returned; and the age after which a kept one is replaced.
MAX_OVERFLOW = 10
POOL_RECYCLE_SECONDS = 3600


class PooledPostgresStorage(DagsterPostgresStorage):
    """``storage: postgres`` with the event log's connection kept; config as ``postgres``."""

    def __init__(self, postgres_url: str, **kwargs: Any) -> None:
        super().__init__(postgres_url, **kwargs)
        # The public hook the webserver uses for the same pool; statement_timeout 0 keeps the
        # server's own (none by default), as without this class.
        self._event_log_storage.optimize_for_webserver(
            statement_timeout=0, pool_recycle=POOL_RECYCLE_SECONDS, max_overflow=MAX_OVERFLOW
        )

    @classmethod
    def config_type(cls) -> UserConfigSchema:
        return pg_config()

    @classmethod
    def from_config_value(  # type: ignore[override]
        cls, inst_data: ConfigurableClassData | None, config_value: Mapping[str, Any]
    ) -> PooledPostgresStorage:
        return cls(
            pg_url_from_config(config_value),
            should_autocreate_tables=config_value.get("should_autocreate_tables", True),
            inst_data=inst_data,
            token_provider=get_token_provider_from_config(config_value),
        )
