"""The DuckDB warehouse: dagster-duckdb-pandas, extended so a partition is replaced atomically.

The stock IO manager deletes a partition's rows and inserts the new ones as two autocommit
statements, inserts by position, and skips empty frames. Here one connection wraps the delete
and the insert in a single transaction (a crash in between keeps the old rows), inserts by column
name (a frame in another column order lands right), and creates the table for an empty frame so
readers see an empty slice instead of a missing table.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
from dagster._core.storage.db_io_manager import DbIOManager, DbTypeHandler, TableSlice
from dagster_duckdb.io_manager import DuckDbClient
from dagster_duckdb_pandas import DuckDBPandasIOManager, DuckDBPandasTypeHandler


def ensure_parent(database: str) -> None:
    """A fresh checkout has no data folder yet; DuckDB will not create it."""
    if database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)


def _table_exists(connection: Any, table_slice: TableSlice) -> bool:
    rows = connection.execute(
        "select count(*) from information_schema.tables where table_schema = ? and table_name = ?",
        [table_slice.schema, table_slice.table],
    ).fetchall()
    return bool(rows[0][0])


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


class ByNamePandasTypeHandler(DuckDBPandasTypeHandler):
    """Creates the table from the frame's schema and inserts by column name."""

    def handle_output(
        self, context: dg.OutputContext, table_slice: TableSlice, obj: pd.DataFrame, connection: Any
    ) -> None:
        name = f"{table_slice.schema}.{table_slice.table}"
        connection.register("_output_frame", obj)
        try:
            # An empty or all-null object column has DuckDB type NULL; a table created with it
            # could never hold a value, so such columns are created as VARCHAR.
            untyped = [
                col
                for col, col_type, *_ in connection.execute(
                    "describe select * from _output_frame"
                ).fetchall()
                if col_type.strip('"') == "NULL"
            ]
            casts = ", ".join(f'cast("{c}" as varchar) as "{c}"' for c in untyped)
            projection = f"* replace ({casts})" if untyped else "*"
            connection.execute(
                f"create table if not exists {name} as select {projection} from _output_frame limit 0"
            )
            connection.execute(f"insert into {name} by name select * from _output_frame")
        finally:
            connection.unregister("_output_frame")
        row_count = {
            "dagster/partition_row_count"
            if context.has_partition_key
            else "dagster/row_count": len(obj)
        }
        context.add_output_metadata(
            {
                **row_count,
                "dagster/column_schema": dg.TableSchema(
                    columns=[
                        dg.TableColumn(name=str(c), type=str(t)) for c, t in obj.dtypes.items()
                    ]
                ),
            }
        )


class WarehouseIOManager(DuckDBPandasIOManager):
    """DuckDBPandasIOManager with atomic partition replace and by-name inserts."""

    @staticmethod
    def type_handlers() -> Sequence[DbTypeHandler]:
        return [ByNamePandasTypeHandler()]

    def create_io_manager(self, context: Any) -> DbIOManager:
        return DbIOManager(
            db_client=TransactionalDuckDbClient(),
            database=self.database,
            schema=self.schema_,
            type_handlers=self.type_handlers(),
            default_load_type=pd.DataFrame,
            io_manager_name="WarehouseIOManager",
        )
