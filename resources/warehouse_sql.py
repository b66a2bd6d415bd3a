"""Small DuckDB statements the warehouse IO manager's handlers share: does a table exist, a
typed projection, widening a table to a frame's columns, inserting a frame by name."""

from __future__ import annotations

from typing import Any

import dagster as dg
import pandas as pd

from resources.partition_metadata import on_last_partition


def table_exists(connection: Any, schema: str, table: str) -> bool:
    rows = connection.execute(
        "select count(*) from information_schema.tables where table_schema = ? and table_name = ?",
        [schema, table],
    ).fetchall()
    return bool(rows[0][0])


def typed_projection(connection: Any, relation: str) -> str:
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


def insert_frame(connection: Any, name: str, frame: pd.DataFrame) -> list[str]:
    """Create ``name`` from ``frame``'s schema if missing, add columns it lacks, insert by name;
    returns the columns added."""
    # No try/finally around the view: unregistering inside an aborted transaction raises
    # and would hide the real error; the client rolls back and closes the connection.
    connection.register("_output_frame", frame)
    projection = typed_projection(connection, "_output_frame")
    connection.execute(
        f"create table if not exists {name} as select {projection} from _output_frame limit 0"
    )
    widened = widen(connection, name, "_output_frame")
    connection.execute(f"insert into {name} by name select * from _output_frame")
    return widened


def column_schema(frame: pd.DataFrame) -> dg.TableSchema:
    return dg.TableSchema(
        columns=[dg.TableColumn(name=str(c), type=str(t)) for c, t in frame.dtypes.items()]
    )


def row_count(context: dg.OutputContext, rows: int) -> dict[str, int]:
    key = "dagster/partition_row_count" if context.has_partition_key else "dagster/row_count"
    return {key: rows}


def write_metadata(
    context: dg.OutputContext, rows: int, widened: list[str], schema: dg.TableSchema
) -> dict[str, Any]:
    """What every warehouse write reports: its row count, the columns it added, its schema
    (in a ranged write on the last day's event only: 1–4 KB a day, the same every day)."""
    return {
        **row_count(context, rows),
        **({"columns_added": ", ".join(widened)} if widened else {}),
        **on_last_partition(context, {"dagster/column_schema": schema}),
    }
