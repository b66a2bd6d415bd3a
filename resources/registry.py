"""The model registry as a resource: tables in the warehouse, artifacts on disk."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
from dagster_duckdb import DuckDBResource

from lifecycle.datasets import DatasetManifest
from lifecycle.registry import ModelRegistry
from resources.warehouse import ensure_parent


class RegistryResource(dg.ConfigurableResource):
    """Where model versions, their aliases and their artifacts live."""

    database: str
    artifact_root: str

    def registry(self) -> ModelRegistry:
        Path(self.artifact_root).mkdir(parents=True, exist_ok=True)
        registry = ModelRegistry(self.database, self.artifact_root)
        registry.ensure_schema()
        return registry


class Warehouse(DuckDBResource):
    """Plain SQL on the warehouse for what is not an asset's own table (manifests, lookups)."""

    @contextmanager
    def get_connection(self) -> Iterator[Any]:
        ensure_parent(self.database)
        with super().get_connection() as con:
            yield con

    def query(self, sql: str, params: list[object] | None = None) -> pd.DataFrame:
        with self.get_connection() as con:
            return con.execute(sql, params or []).fetchdf()

    def replace_rows(
        self, table: str, frame: pd.DataFrame, where: str, params: list[object]
    ) -> None:
        """Delete then insert in one transaction, creating the table on first use."""
        schema = table.split(".", maxsplit=1)[0]
        with self.get_connection() as con:
            con.execute("begin transaction")
            try:
                con.execute(f"create schema if not exists {schema}")
                con.register("_rows", frame)
                con.execute(f"create table if not exists {table} as select * from _rows limit 0")
                con.execute(f"delete from {table} where {where}", params)
                con.execute(f"insert into {table} by name select * from _rows")
                con.unregister("_rows")
            except BaseException:
                con.execute("rollback")
                raise
            con.execute("commit")

    def record_manifest(self, manifest: DatasetManifest) -> None:
        """Keep every training set's manifest queryable beside the data (one row per month)."""
        row = {
            "dataset": manifest.dataset,
            "partition_key": manifest.partition_key,
            "version": manifest.version,
            "manifest": manifest.as_json(),
        }
        self.replace_rows(
            "datasets.manifests",
            pd.DataFrame([row]),
            "dataset = ? and partition_key = ?",
            [manifest.dataset, manifest.partition_key],
        )
