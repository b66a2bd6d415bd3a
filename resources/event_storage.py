"""The local instance's SQLite storage, writing a ranged run's materialisations in batches.

Dagster batches the events of one output's partitions (``DAGSTER_EVENT_BATCH_SIZE``), but its
SQLite event log stores a batch one event at a time: four connections and two commits per
event, ~15 ms each, so a year-long ranged run of eight daily keys spent most of its time there.
This storage writes a batch of materialisations (or observations) in one transaction per shard,
with the same rows, tags and asset entries as one-by-one writes. Anything else is stored as
before, over kept connections: a partitioned check's evaluation per day (which Dagster stores
one at a time): 365 days of them 8.6 s on stock ``storage: sqlite``, 1.0 s here
(``python -m benchmarks.event_log``). Same files, same layout as ``storage: sqlite``
(dagster_home/dagster.yaml names it).
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from dagster import DagsterEventType, EventLogEntry

# Why internals: Dagster has no public hook into how its storage writes events. An instance
# names its storage by module and class in dagster.yaml, so the one way to change the write
# path is to subclass the SQLite storage; each private name below is used only by the two
# classes of this module, which are the wrappers:
#   SqliteEventLogStorage, DagsterSqliteStorage  the parents, overridden method by method;
#   SqlEventLogStorageTable                      the table the parent writes rows into;
#   _event_logs_directory                        the parent's own event-log path, so the files
#                                                are where `storage: sqlite` keeps them;
#   _db_lock, _initdb, _initialized_dbs,         the parent's connection recipe, which _connect
#   conn_string_for_shard,                       repeats with the shard's engine kept;
#   SQLITE_BUSY_TIMEOUT_SECONDS
#   UserConfigSchema, ConfigurableClassData      the config-class protocol's types (the same
#                                                config as `storage: sqlite`).
from dagster._config.config_schema import UserConfigSchema
from dagster._core.storage.event_log.schema import SqlEventLogStorageTable
from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage
from dagster._core.storage.sqlite import SQLITE_BUSY_TIMEOUT_SECONDS
from dagster._core.storage.sqlite_storage import DagsterSqliteStorage, _event_logs_directory
from dagster._serdes import ConfigurableClassData
from sqlalchemy import create_engine
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import QueuePool

ENGINES_KEPT = 16
BATCHED = frozenset({DagsterEventType.ASSET_MATERIALIZATION, DagsterEventType.ASSET_OBSERVATION})


def _release(key: tuple[int, str], engine: Engine) -> None:
    """Close an engine's kept connection; one inherited from a parent process is only dropped."""
    engine.dispose(close=key[0] == os.getpid())


class BatchingSqliteEventLogStorage(SqliteEventLogStorage):
    """SQLite event log whose ``store_event_batch`` is one transaction per shard."""

    @contextmanager
    def _connect(self, shard: str) -> Iterator[Connection]:
        # As the parent, with two changes. synchronous=NORMAL: a commit no longer waits for
        # fsync; with the WAL journal Dagster turns on this cannot corrupt the files, and a power
        # cut (not a crash of the process) may lose the last events written, which the local
        # instance can afford. And the shard's engine keeps one idle SQLite connection (the
        # parent builds an engine and opens a connection per statement group, ~2 ms each, three
        # per check evaluation). An idle connection holds no lock: other processes (daemon,
        # webserver, run workers) write the same files as before.
        with self._db_lock:
            engine = self._engine(shard)
            with engine.connect() as conn, conn.begin():
                conn.exec_driver_sql("PRAGMA synchronous=NORMAL")
                yield conn

    def _engine(self, shard: str) -> Engine:
        # Keyed by process too: a forked child never reuses its parent's SQLite connection.
        engines: OrderedDict[tuple[int, str], Engine] = self.__dict__.setdefault(
            "_engines", OrderedDict()
        )
        key = (os.getpid(), shard)
        engine = engines.pop(key, None)
        if engine is None:
            engine = create_engine(
                self.conn_string_for_shard(shard),
                # One kept connection; _initdb's inspector briefly takes a second one.
                poolclass=QueuePool,
                pool_size=1,
                max_overflow=4,
                connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS},
            )
            if shard not in self._initialized_dbs:
                self._initdb(engine)
                self._initialized_dbs.add(shard)
        engines[key] = engine  # most recent last; a long-lived process keeps a few shards
        while len(engines) > ENGINES_KEPT:
            _release(*engines.popitem(last=False))
        return engine

    def dispose(self) -> None:
        super().dispose()
        engines: OrderedDict[tuple[int, str], Engine] = self.__dict__.get("_engines", OrderedDict())
        while engines:  # the kept connections close with the instance
            _release(*engines.popitem())

    def has_table(self, table_name: str) -> bool:
        # Asked before every check evaluation is stored (supports_asset_checks), each time with
        # a new engine and connection (~1 ms); a table that exists stays, so a yes is kept.
        tables: set[str] = self.__dict__.setdefault("_tables", set())
        if table_name not in tables and super().has_table(table_name):
            tables.add(table_name)
        return table_name in tables

    def store_event_batch(self, events: Sequence[EventLogEntry]) -> None:
        kinds = {e.dagster_event_type for e in events}
        if len(events) < 2 or len({e.run_id for e in events}) != 1 or not kinds <= BATCHED:
            super().store_event_batch(events)
            return
        rows = [self._event_to_row(event) for event in events]  # serialised once for both shards
        with self.run_connection(events[0].run_id) as conn:
            conn.execute(SqlEventLogStorageTable.insert(), rows)
        # The cross-run index: ids in order, then the tags and the asset entries as store_event
        # writes them (each asset's entry points at its newest event, as on PostgreSQL).
        with self.index_transaction() as conn:
            ids = []
            for row in rows:
                result = conn.execute(SqlEventLogStorageTable.insert().values(**row))
                ids.append(int(result.inserted_primary_key[0]))  # type: ignore[index]
            self._store_asset_event_tags(conn, list(events), ids)
            pairs = zip(events, ids, strict=True)
            newest = {e.get_dagster_event().asset_key: (e, i) for e, i in pairs}
            for event, event_id in newest.values():
                self._store_asset_event(conn, event, event_id)


class BatchingSqliteStorage(DagsterSqliteStorage):
    """``storage: sqlite`` with the batching event log above; config: ``base_dir``."""

    def __init__(self, base_dir: str, inst_data: ConfigurableClassData | None = None) -> None:
        super().__init__(base_dir, inst_data)
        self._event_log_storage = BatchingSqliteEventLogStorage(_event_logs_directory(base_dir))

    @classmethod
    def config_type(cls) -> UserConfigSchema:
        return DagsterSqliteStorage.config_type()

    @classmethod
    def from_config_value(  # type: ignore[override]
        cls, inst_data: ConfigurableClassData | None, config_value: Mapping[str, Any]
    ) -> BatchingSqliteStorage:
        return cls.from_local(base_dir=config_value["base_dir"], inst_data=inst_data)
