"""The model registry as a resource: tables in the warehouse, artifacts on disk."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
from dagster_duckdb import DuckDBResource

from lifecycle.registry import DAGSTER_DUCKDB_CONFIG, ModelRegistry
from resources.warehouse import ensure_parent, table_exists, versions_table


class RegistryResource(dg.ConfigurableResource):
    """Where model versions, their aliases and their artifacts live."""

    database: str
    artifact_root: str
    # The same settings as the warehouse's other connections (Dagster's DuckDB resource and IO
    # manager): DuckDB refuses a second connection to an open file with other settings.
    connection_config: dict[str, Any] = {}

    def registry(self) -> ModelRegistry:
        Path(self.artifact_root).mkdir(parents=True, exist_ok=True)
        config = {**DAGSTER_DUCKDB_CONFIG, **self.connection_config}
        registry = ModelRegistry(self.database, self.artifact_root, connection_config=config)
        registry.ensure_schema()
        return registry


class Warehouse(DuckDBResource):
    """Plain SQL on the warehouse for what is not an asset's own output (lookups, versions)."""

    @contextmanager
    def get_connection(self) -> Iterator[Any]:
        ensure_parent(self.database)
        with super().get_connection() as con:
            yield con

    @contextmanager
    def held_open(self) -> Iterator[None]:
        """Keep the database open while a run executes in this process.

        Each step opens and closes its own connections (261 in the demo), and when the last
        one closes DuckDB closes the file, checkpointing it: 17 ms each time it is reopened.
        One connection held for the run lets the others share the open database. Another
        process cannot open the file at all meanwhile, not even read-only (DuckDB locks it for
        the whole run, not only while a step has it open); the registry's readers wait ~6 s.
        """
        if self.database == ":memory:":
            yield
            return
        with self.get_connection():
            yield

    def query(self, sql: str, params: list[object] | None = None) -> pd.DataFrame:
        with self.get_connection() as con:
            return con.execute(sql, params or []).fetchdf()

    def version_rows(
        self,
        table: str,
        version: str,
        where: str = "true",
        params: list[object] | None = None,
        order_by: str | None = None,
    ) -> pd.DataFrame:
        """Rows of one dataset version, however often its month was rebuilt since.

        Read from the append-only ``<table>_versions`` (see resources.warehouse), or from
        ``table`` itself for a version written before the archive existed. A version neither
        holds is an error, not an empty frame: evidence computed on no rows would pass silently.
        """
        schema = table.split(".", maxsplit=1)[0]
        order = f" order by {order_by}" if order_by else ""
        with self.get_connection() as con:
            for source in (versions_table(table), table):
                source_name = source.split(".", maxsplit=1)[1]
                if not table_exists(con, schema, source_name):
                    continue
                found = con.execute(
                    f"select count(*) from {source} where dataset_version = ?", [version]
                ).fetchone()
                if found and found[0]:
                    return con.execute(
                        f"select * from {source} where dataset_version = ? and ({where}){order}",
                        [version, *(params or [])],
                    ).fetchdf()
        raise LookupError(
            f"no rows of dataset version {version!r} in {versions_table(table)} or {table}: "
            "the version a registered model was trained on is gone"
        )
