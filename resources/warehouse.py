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
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
import pandera.pandas as pa

# Internal on purpose: dagster-duckdb builds its IO manager on these base classes and exports
# none of them; extending the integration (atomic range replace, dataset versions) needs them.
from dagster._core.storage.db_io_manager import DbIOManager, DbTypeHandler, TableSlice
from dagster_duckdb.io_manager import DuckDbClient
from dagster_duckdb_pandas import DuckDBPandasIOManager, DuckDBPandasTypeHandler
from dagster_pandera import pandera_schema_to_dagster_type


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


def table_exists(connection: Any, schema: str, table: str) -> bool:
    rows = connection.execute(
        "select count(*) from information_schema.tables where table_schema = ? and table_name = ?",
        [schema, table],
    ).fetchall()
    return bool(rows[0][0])


def _table_exists(connection: Any, table_slice: TableSlice) -> bool:
    return table_exists(connection, table_slice.schema, table_slice.table)


def versions_table(table: str) -> str:
    """``schema.name`` → ``schema.name_versions``: where every version of a dataset is kept."""
    return f"{table}{VERSIONS_SUFFIX}"


def _typed_projection(connection: Any, relation: str) -> str:
    """``select`` list of ``relation`` with untyped (NULL) columns cast to VARCHAR.

    An empty or all-null object column has DuckDB type NULL; a table created with it could
    never hold a value.
    """
    untyped = [
        col
        for col, col_type, *_ in connection.execute(f"describe select * from {relation}").fetchall()
        if col_type.strip('"') == "NULL"
    ]
    casts = ", ".join(f'cast("{c}" as varchar) as "{c}"' for c in untyped)
    return f"* replace ({casts})" if untyped else "*"


def output_manifest(metadata: Mapping[str, Any]) -> dict[str, Any] | None:
    """The dataset manifest an output carries in its ``manifest`` metadata, if any."""
    value = metadata.get("manifest")
    data = getattr(value, "data", value)
    return data if isinstance(data, dict) and data.get("version") else None


def widen(connection: Any, table: str, frame: str) -> list[str]:
    """Add the columns ``frame`` has and ``table`` lacks (rows already there read NULL), so a
    new feature window or dataset column is a migration, not a binder error; returns them."""
    have = {row[0] for row in connection.execute(f"describe {table}").fetchall()}
    added = []
    for name, col_type, *_ in connection.execute(f"describe select * from {frame}").fetchall():
        if name not in have:
            kind = "varchar" if col_type.strip('"') == "NULL" else col_type
            connection.execute(f'alter table {table} add column "{name}" {kind}')
            added.append(name)
    return added


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
        f"select {_typed_projection(connection, frame)} from {frame} limit 0"
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


class TransactionalDuckDbClient(DuckDbClient):
    """Every load or store runs inside one BEGIN … COMMIT on one connection."""

    @staticmethod
    @contextmanager
    def connect(context: Any, table_slice: TableSlice) -> Iterator[Any]:
        ensure_parent(context.resource_config["database"])
        with DuckDbClient.connect(context, table_slice) as conn:
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
        # The stock client swallows the missing-table error, which would abort a transaction.
        if _table_exists(connection, table_slice):
            DuckDbClient.delete_table_slice(context, table_slice, connection)


def _insert_frame(connection: Any, name: str, frame: pd.DataFrame) -> list[str]:
    """Create ``name`` from ``frame``'s schema if missing, add columns it lacks, insert by name;
    returns the columns added."""
    # No try/finally around the view: unregistering inside an aborted transaction raises
    # and would hide the real error; the client rolls back and closes the connection.
    connection.register("_output_frame", frame)
    projection = _typed_projection(connection, "_output_frame")
    connection.execute(
        f"create table if not exists {name} as select {projection} from _output_frame limit 0"
    )
    widened = widen(connection, name, "_output_frame")
    connection.execute(f"insert into {name} by name select * from _output_frame")
    return widened


def _column_schema(frame: pd.DataFrame) -> dg.TableSchema:
    return dg.TableSchema(
        columns=[dg.TableColumn(name=str(c), type=str(t)) for c, t in frame.dtypes.items()]
    )


def _row_count(context: dg.OutputContext, rows: int) -> dict[str, int]:
    key = "dagster/partition_row_count" if context.has_partition_key else "dagster/row_count"
    return {key: rows}


class ByNamePandasTypeHandler(DuckDBPandasTypeHandler):
    """Creates the table from the frame's schema and inserts by column name."""

    def handle_output(
        self, context: dg.OutputContext, table_slice: TableSlice, obj: pd.DataFrame, connection: Any
    ) -> None:
        name = f"{table_slice.schema}.{table_slice.table}"
        manifest = output_manifest(context.output_metadata)
        retained: dict[str, Any] = {}
        widened = _insert_frame(connection, name, obj)
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
            {
                **_row_count(context, len(obj)),
                **retained,
                **({"columns_added": ", ".join(widened)} if widened else {}),
                "dagster/column_schema": _column_schema(obj),
            }
        )


class FrameChunks:
    """An output written a frame at a time: the rows of one partition range, produced lazily so
    a million customers over months never sit in memory at once. The IO manager consumes it
    inside its one transaction (the range is still replaced atomically); ``on_chunk`` sees
    every frame after it is written (per-day tallies) and ``on_done`` runs once, after the
    last, with the rows written (per-day metadata). ``empty`` gives the table its columns when
    there are no rows at all."""

    def __init__(
        self,
        chunks: Iterable[pd.DataFrame],
        empty: pd.DataFrame,
        on_chunk: Callable[[pd.DataFrame], None] | None = None,
        on_done: Callable[[int], None] | None = None,
    ) -> None:
        self.chunks, self.empty = chunks, empty
        self.on_chunk, self.on_done = on_chunk, on_done


class SqlRows:
    """An output computed by the warehouse itself: a SELECT over tables already in it, run as
    ``insert … select`` inside the IO manager's transaction, so nothing passes through Python
    (labels of 90M customer-days stream and spill in DuckDB). ``on_done`` receives the
    connection and the table name after the insert (per-day figures by one group-by)."""

    def __init__(self, select: str, on_done: Callable[[Any, str], None] | None = None) -> None:
        self.select, self.on_done = select, on_done


def chunked_frame_type(schema: pa.DataFrameSchema) -> dg.DagsterType:
    """The Dagster type of a :class:`FrameChunks` output: the pandera schema's columns and
    description for the UI (as ``dagster-pandera`` shows them); the producer validates every
    chunk against the schema before it is written, since a lazy output cannot be checked up
    front."""
    base = pandera_schema_to_dagster_type(schema)
    return dg.DagsterType(
        type_check_fn=lambda _, value: isinstance(value, FrameChunks),
        name=f"{base.unique_name}Chunks",
        description=base.description,
        typing_type=FrameChunks,
        metadata=base.metadata,
    )


def sql_rows_type(schema: pa.DataFrameSchema) -> dg.DagsterType:
    """The Dagster type of a :class:`SqlRows` output, showing ``schema``'s columns in the UI;
    the producer checks the written rows (their preview against the schema, invariants in SQL)."""
    base = pandera_schema_to_dagster_type(schema)
    return dg.DagsterType(
        type_check_fn=lambda _, value: isinstance(value, SqlRows),
        name=f"{base.unique_name}Sql",
        description=base.description,
        typing_type=SqlRows,
        metadata=base.metadata,
    )


class ChunksTypeHandler(DbTypeHandler[FrameChunks]):
    """Writes :class:`FrameChunks` by name, chunk after chunk, in the caller's transaction."""

    def handle_output(
        self, context: dg.OutputContext, table_slice: TableSlice, obj: FrameChunks, connection: Any
    ) -> None:
        name = f"{table_slice.schema}.{table_slice.table}"
        rows, widened = 0, _insert_frame(connection, name, obj.empty)
        connection.unregister("_output_frame")
        for chunk in obj.chunks:
            widened += _insert_frame(connection, name, chunk)
            connection.unregister("_output_frame")
            rows += len(chunk)
            if obj.on_chunk is not None:
                obj.on_chunk(chunk)
        if obj.on_done is not None:
            obj.on_done(rows)
        context.add_output_metadata(
            {
                **_row_count(context, rows),
                **({"columns_added": ", ".join(widened)} if widened else {}),
                "dagster/column_schema": _column_schema(obj.empty),
            }
        )

    def load_input(self, context: dg.InputContext, table_slice: TableSlice, connection: Any) -> Any:
        raise TypeError("FrameChunks is an output type: read the table as a pandas DataFrame")

    @property
    def supported_types(self) -> Sequence[type[object]]:
        return [FrameChunks]


class SqlRowsTypeHandler(DbTypeHandler[SqlRows]):
    """Runs :class:`SqlRows` as one ``insert … by name select`` in the caller's transaction."""

    def handle_output(
        self, context: dg.OutputContext, table_slice: TableSlice, obj: SqlRows, connection: Any
    ) -> None:
        name = f"{table_slice.schema}.{table_slice.table}"
        select = f"select * from ({obj.select})"
        connection.execute(f"create table if not exists {name} as {select} limit 0")
        widened = widen(connection, name, f"({obj.select})")
        rows = connection.execute(f"insert into {name} by name {select}").fetchone()[0]
        if obj.on_done is not None:
            obj.on_done(connection, name)
        columns = connection.execute(f"describe {select} limit 0").fetchall()
        context.add_output_metadata(
            {
                **_row_count(context, int(rows)),
                **({"columns_added": ", ".join(widened)} if widened else {}),
                "dagster/column_schema": dg.TableSchema(
                    columns=[dg.TableColumn(name=str(c[0]), type=str(c[1])) for c in columns]
                ),
            }
        )

    def load_input(self, context: dg.InputContext, table_slice: TableSlice, connection: Any) -> Any:
        raise TypeError("SqlRows is an output type: read the table as a pandas DataFrame")

    @property
    def supported_types(self) -> Sequence[type[object]]:
        return [SqlRows]


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
