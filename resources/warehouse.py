"""The DuckDB warehouse: dagster-duckdb-pandas, extended so a partition is replaced atomically.

The stock IO manager deletes a partition's rows and inserts the new ones as two autocommit
statements, inserts by position, and skips empty frames. Here one connection wraps the delete
and the insert in a single transaction (a crash in between keeps the old rows), inserts by column
name (a frame in another column order lands right), and creates the table for an empty frame so
readers see an empty slice instead of a missing table.

A training set is also a *dataset version*: when an output carries its manifest (the
``manifest`` metadata that ``assets.common.manifest_metadata`` writes), the same transaction
appends the frame to the append-only ``<schema>.<table>_versions`` (once per version) and records
the manifest in ``<schema>.manifests``. The IO manager rather than the asset does this because
only here do the rows, the retained copy and the manifest share one transaction: a failed row
write leaves no manifest and no orphan version, and a rebuilt month replaces the partition but
never the version a registered model was trained on.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd

# Internal on purpose: dagster-duckdb builds its IO manager on these base classes and exports
# none of them; extending the integration (atomic range replace, dataset versions) needs them.
from dagster._core.storage.db_io_manager import DbIOManager, DbTypeHandler, TableSlice
from dagster_duckdb.io_manager import DuckDbClient
from dagster_duckdb_pandas import DuckDBPandasIOManager, DuckDBPandasTypeHandler

from resources.lazy_outputs import ChunksTypeHandler, FrameChunks, SqlRowsTypeHandler
from resources.warehouse_sql import (
    column_schema,
    insert_frame,
    table_exists,
    typed_projection,
    widen,
    write_metadata,
)


class WarehouseFileError(RuntimeError):
    """The warehouse path holds something that is not a DuckDB database."""


def ensure_parent(database: str) -> None:
    """A fresh checkout has no data folder yet; DuckDB will not create it. A file that is not a
    DuckDB database fails here at once, naming it: DuckDB's own error would be retried for
    minutes by the stock connector, as if it were a lock held by another process."""
    if database == ":memory:":
        return
    path = Path(database)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_file() and path.stat().st_size >= 12:
        with path.open("rb") as handle:
            header = handle.read(12)
        if header[8:12] != b"DUCK":
            raise WarehouseFileError(
                f"{path} is not a DuckDB database (corrupted or another format): restore it "
                "from a backup or move it away and re-materialise"
            )


MANIFESTS = "manifests"
VERSIONS_SUFFIX = "_versions"


def _table_exists(connection: Any, table_slice: TableSlice) -> bool:
    return table_exists(connection, table_slice.schema, table_slice.table)


def versions_table(table: str) -> str:
    """``schema.name`` → ``schema.name_versions``: where every version of a dataset is kept."""
    return f"{table}{VERSIONS_SUFFIX}"


def output_manifest(metadata: Mapping[str, Any]) -> dict[str, Any] | None:
    """The dataset manifest an output carries in its ``manifest`` metadata, if any."""
    value = metadata.get("manifest")
    data = getattr(value, "data", value)
    return data if isinstance(data, dict) and data.get("version") else None


def retain_version(
    connection: Any, schema: str, table: str, frame: str, manifest: Mapping[str, Any]
) -> bool:
    """Append ``frame``'s rows to ``schema.table_versions`` unless that version is already there,
    and record its manifest; returns whether rows were appended. Runs inside the caller's
    transaction. Columns a newer version adds are added to the archive (older versions read
    them as NULL), so a schema change does not lose history."""
    version = str(manifest["version"])
    columns = {row[0] for row in connection.execute(f"describe select * from {frame}").fetchall()}
    if "dataset_version" not in columns:
        raise ValueError(f"{schema}.{table} carries a manifest but no dataset_version column")
    stamped = connection.execute(
        f"select count(*) filter (where dataset_version is distinct from ?), count(*) from {frame}",
        [version],
    ).fetchone()
    if stamped[0]:
        raise ValueError(
            f"{stamped[0]} of {stamped[1]} rows of {schema}.{table} are not stamped with "
            f"dataset_version {version!r}: a retained version must hold only its own rows"
        )
    archive = f"{schema}.{table}{VERSIONS_SUFFIX}"
    connection.execute(
        f"create table if not exists {archive} as "
        f"select {typed_projection(connection, frame)} from {frame} limit 0"
    )
    widen(connection, archive, frame)
    present = connection.execute(
        f"select count(*) from {archive} where dataset_version = ?", [version]
    ).fetchone()[0]
    if not present:
        connection.execute(f"insert into {archive} by name select * from {frame}")
    manifests = f"{schema}.{MANIFESTS}"
    connection.execute(
        f"create table if not exists {manifests} "
        "(dataset varchar, partition_key varchar, version varchar, manifest varchar)"
    )
    connection.execute(f"delete from {manifests} where version = ?", [version])
    connection.execute(
        f"insert into {manifests} (dataset, partition_key, version, manifest) values (?, ?, ?, ?)",
        [
            manifest.get("dataset", table),
            manifest.get("partition_key"),
            version,
            json.dumps(dict(manifest), sort_keys=True, default=str),
        ],
    )
    return not present


def _staged(context: Any) -> bool:
    """Whether this store is a :class:`FrameChunks` output, which runs its own transactions."""
    dagster_type = getattr(context, "dagster_type", None)
    return isinstance(context, dg.OutputContext) and (
        getattr(dagster_type, "typing_type", None) is FrameChunks
    )


class TransactionalDuckDbClient(DuckDbClient):
    """Every load or store runs inside one BEGIN … COMMIT on one connection, except a
    :class:`FrameChunks` store, whose handler stages the chunks and then replaces the range in
    one transaction of its own (see :class:`ChunksTypeHandler`)."""

    @staticmethod
    @contextmanager
    def connect(context: Any, table_slice: TableSlice) -> Iterator[Any]:
        ensure_parent(context.resource_config["database"])
        with DuckDbClient.connect(context, table_slice) as conn:
            if _staged(context):
                try:
                    yield conn
                except BaseException:
                    conn.close()
                    raise
                return
            conn.execute("begin transaction")
            try:
                yield conn
            except BaseException:
                conn.execute("rollback")
                conn.close()  # the stock client closes its connection only on success
                raise
            conn.execute("commit")

    @staticmethod
    def delete_table_slice(context: Any, table_slice: TableSlice, connection: Any) -> None:
        if _staged(context):
            return  # deleted by the handler, in the transaction that inserts the new rows
        # The stock client swallows the missing-table error, which would abort a transaction.
        if _table_exists(connection, table_slice):
            DuckDbClient.delete_table_slice(context, table_slice, connection)


class ByNamePandasTypeHandler(DuckDBPandasTypeHandler):
    """Creates the table from the frame's schema and inserts by column name."""

    def handle_output(
        self, context: dg.OutputContext, table_slice: TableSlice, obj: pd.DataFrame, connection: Any
    ) -> None:
        name = f"{table_slice.schema}.{table_slice.table}"
        manifest = output_manifest(context.output_metadata)
        retained: dict[str, Any] = {}
        widened = insert_frame(connection, name, obj)
        if manifest is not None:
            appended = retain_version(
                connection, table_slice.schema, table_slice.table, "_output_frame", manifest
            )
            retained = {
                "retained_in": f"{name}{VERSIONS_SUFFIX}",
                "retained_new_version": appended,
            }
        connection.unregister("_output_frame")
        context.add_output_metadata(
            {**write_metadata(context, len(obj), widened, column_schema(obj)), **retained}
        )


class WarehouseIOManager(DuckDBPandasIOManager):
    """DuckDBPandasIOManager with atomic partition replace and by-name inserts."""

    @staticmethod
    def type_handlers() -> Sequence[DbTypeHandler]:
        return [ByNamePandasTypeHandler(), ChunksTypeHandler(), SqlRowsTypeHandler()]

    def create_io_manager(self, context: Any) -> DbIOManager:
        return DbIOManager(
            db_client=TransactionalDuckDbClient(),
            database=self.database,
            schema=self.schema_,
            type_handlers=self.type_handlers(),
            default_load_type=pd.DataFrame,
            io_manager_name="WarehouseIOManager",
        )
