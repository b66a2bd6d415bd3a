"""Writes across stores happen in a safe order: dataset rows commit with their manifest and a
retained copy of their version, and PostgreSQL only receives a partition the warehouse has
committed. Real DuckDB files, real instances, the real PostgreSQL at 127.0.0.1:5432 (db test).
"""

import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
import pytest
import sqlalchemy as sa

from assets.churn import stored_rows
from assets.keys import (
    CHURN_CHALLENGER,
    CHURN_CHAMPION,
    CHURN_DATASET,
    CHURN_SCORES,
    REC_CHALLENGER,
    REC_CHAMPION,
    REC_DATASET,
    RECOMMENDATIONS,
)
from definitions import build_defs
from lifecycle.settings import Settings
from resources.registry import Warehouse
from resources.warehouse import WarehouseIOManager
from tests.conftest import World, failure_text, run, world_in

MARCH, APRIL = "2026-03-01", "2026-04-01"
PG_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/test"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with world_in(tmp_path_factory.mktemp("cross"), "churn", "2026-04-30", "2026-04-16") as w:
        yield w


def manifests(world: World, dataset: str) -> pd.DataFrame:
    exists = world.sql(
        "select count(*) n from information_schema.tables "
        "where table_schema = 'datasets' and table_name = 'manifests'"
    )["n"][0]
    if not exists:
        return pd.DataFrame(columns=["dataset", "partition_key", "version", "manifest"])
    return world.sql("select * from datasets.manifests where dataset = ?", [dataset])


def tables(world: World, schema: str) -> set[str]:
    found = world.sql(
        "select table_name from information_schema.tables where table_schema = ?", [schema]
    )
    return set(found["table_name"])


def churn_champion(world: World) -> str:
    """April trained, gated and promoted (once per module)."""
    if world.registry.alias("churn", "champion") is None:
        assert world.run([CHURN_DATASET, CHURN_CHALLENGER], partition=APRIL).success
        assert world.run([CHURN_CHAMPION]).success
    champion = world.registry.alias("churn", "champion")
    assert champion is not None
    return champion.version


def with_settings(world: World, **churn: object) -> Settings:
    return world.settings.model_copy(
        update={"churn": world.settings.churn.model_copy(update=churn)}
    )


def publishing(world: World, schema: str) -> dg.Definitions:
    settings = world.settings.model_copy(
        update={
            "publish": world.settings.publish.model_copy(
                update={"enabled": True, "schema_name": schema}
            )
        }
    )
    return build_defs(settings)


@pytest.fixture
def pg_schema(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    schema = f"cross_{uuid.uuid4().hex[:10]}"
    monkeypatch.setenv("PREDICTIONS_DATABASE_URL", PG_URL)
    yield schema
    engine = sa.create_engine(PG_URL)
    try:
        with engine.begin() as con:
            con.execute(sa.text(f"drop schema if exists {schema} cascade"))
    finally:
        engine.dispose()


def pg_days(schema: str, table: str) -> pd.Series:
    """Rows per as_of_date of a published table (empty when it does not exist yet)."""
    engine = sa.create_engine(PG_URL)
    try:
        if not sa.inspect(engine).has_table(table, schema=schema):
            return pd.Series(dtype="int64")
        frame = pd.read_sql(
            f"select as_of_date, count(*) n from {schema}.{table} group by as_of_date", engine
        )
    finally:
        engine.dispose()
    return frame.set_index(pd.to_datetime(frame["as_of_date"]))["n"].sort_index()


class broken_table:
    """Swap a warehouse table for one whose columns clash with what the asset writes (a schema
    nobody migrated), so the IO manager's insert fails; the real table is put back after."""

    def __init__(self, world: World, table: str, clash: str) -> None:
        self.database, self.table, self.clash = world.settings.warehouse.database, table, clash
        self.schema, self.name = table.split(".")

    def __enter__(self) -> None:
        with duckdb.connect(self.database) as con:
            con.execute(f"create schema if not exists {self.schema}")
            self.existed = bool(
                con.execute(
                    "select count(*) from information_schema.tables "
                    "where table_schema = ? and table_name = ?",
                    [self.schema, self.name],
                ).fetchone()[0]
            )
            if self.existed:
                con.execute(f"alter table {self.table} rename to {self.name}_saved")
            con.execute(f"create table {self.table} ({self.clash})")

    def __exit__(self, *exc: object) -> None:
        with duckdb.connect(self.database) as con:
            con.execute(f"drop table {self.table}")
            if self.existed:
                con.execute(f"alter table {self.schema}.{self.name}_saved rename to {self.name}")


def test_failed_dataset_write_records_no_manifest_and_no_version(world: World) -> None:
    """Old order: the manifest committed in the asset body, before the rows failed to write."""
    with broken_table(
        world, "datasets.churn_training_set", "dataset_month timestamp, churned date"
    ):
        failed = world.run([CHURN_DATASET], partition=APRIL, raise_on_error=False)
        assert not failed.success
        assert re.search(r"(Binder|Conversion) Error", failure_text(failed))
    assert manifests(world, "churn_training_set").empty
    assert "churn_training_set_versions" not in tables(world, "datasets")

    # The same write without the fault commits rows, retained version and manifest together.
    done = world.run([CHURN_DATASET], partition=APRIL)
    (mat,) = done.asset_materializations_for_node(CHURN_DATASET.to_python_identifier())
    version = mat.metadata["dataset_version"].value
    assert mat.metadata["retained_new_version"].value is True
    recorded = manifests(world, "churn_training_set")
    assert recorded["version"].tolist() == [version]
    assert json.loads(recorded["manifest"].iloc[0])["partition_key"] == APRIL


def test_rebuilt_month_keeps_the_champions_rows_and_evidence(world: World) -> None:
    """Rebuilding April (other settings) replaces the partition, not the champion's version:
    its score-drift reference does not move and its rows stay readable by dataset_version."""
    first = world.registry.get("churn", churn_champion(world)).dataset_version
    day = "2026-04-12"
    before = world.run([CHURN_SCORES], partition=day).get_asset_check_evaluations()[0]

    rebuilt = run(
        build_defs(with_settings(world, snapshot_every_days=3)),
        world.instance,
        [CHURN_DATASET],
        partition=APRIL,
    )
    assert rebuilt.success
    current = world.sql(
        "select distinct dataset_version from datasets.churn_training_set where dataset_month = ?",
        [pd.Timestamp(APRIL)],
    )["dataset_version"].tolist()
    assert len(current) == 1 and current[0] != first
    # The champion's evidence is still computed on the rows it was trained on.
    after = world.run([CHURN_SCORES], partition=day).get_asset_check_evaluations()[0]
    assert after.metadata["score_psi"].value == before.metadata["score_psi"].value
    assert set(manifests(world, "churn_training_set")["version"]) == {first, current[0]}

    # The registered model's dataset_version resolves to exactly its own rows.
    kept = stored_rows(Warehouse(database=world.settings.warehouse.database), first, "train")
    assert len(kept) > 0 and set(kept["dataset_version"]) == {first}
    assert kept["as_of_date"].is_monotonic_increasing
    (text,) = world.sql("select manifest from datasets.manifests where version = ?", [first])[
        "manifest"
    ]
    manifest = json.loads(text)
    by_split = world.sql(
        "select split, count(*) n from datasets.churn_training_set_versions "
        "where dataset_version = ? group by split",
        [first],
    )
    assert dict(zip(by_split["split"], by_split["n"], strict=True)) == manifest["rows_by_split"]

    # Rebuilding with the first settings again reproduces the first version: nothing appended.
    again = world.run([CHURN_DATASET], partition=APRIL)
    (mat,) = again.asset_materializations_for_node(CHURN_DATASET.to_python_identifier())
    assert mat.metadata["dataset_version"].value == first
    assert mat.metadata["retained_new_version"].value is False
    copies = world.sql(
        "select count(*) n from datasets.churn_training_set_versions where dataset_version = ?",
        [first],
    )["n"][0]
    assert copies == sum(manifest["rows_by_split"].values())


def test_unknown_dataset_version_is_an_error_not_an_empty_reference(world: World) -> None:
    churn_champion(world)
    with pytest.raises(LookupError, match="churn_ds_000000_missing"):
        stored_rows(
            Warehouse(database=world.settings.warehouse.database),
            "churn_ds_000000_missing",
            "train",
        )


def test_interactions_training_set_is_retained_with_its_manifest(world: World) -> None:
    """The recommender's sets had no manifest at all; now every version has one and its rows."""
    result = world.run([REC_DATASET], partition=MARCH)
    (mat,) = result.asset_materializations_for_node(REC_DATASET.to_python_identifier())
    version = mat.metadata["dataset_version"].value
    recorded = manifests(world, "interactions_training_set")
    assert recorded["version"].tolist() == [version]
    rows = Warehouse(database=world.settings.warehouse.database).version_rows(
        "datasets.interactions_training_set", version
    )
    assert len(rows) == json.loads(recorded["manifest"].iloc[0])["rows"] > 0


@pytest.mark.postgres
def test_failed_scores_write_publishes_nothing(world: World, pg_schema: str) -> None:
    """Old order: the scores reached PostgreSQL before the DuckDB write failed."""
    churn_champion(world)
    defs = publishing(world, pg_schema)
    good, bad = pd.Timestamp("2026-04-13"), pd.Timestamp("2026-04-14")
    assert run(defs, world.instance, [CHURN_SCORES], partition=str(good.date())).success
    before = pg_days(pg_schema, "churn_scores")
    assert before.index.tolist() == [good]

    with broken_table(world, "predictions.churn_scores", "as_of_date timestamp, score date"):
        failed = run(
            defs, world.instance, [CHURN_SCORES], partition=str(bad.date()), raise_on_error=False
        )
        assert not failed.success
        assert re.search(r"(Binder|Conversion) Error", failure_text(failed))
    pd.testing.assert_series_equal(pg_days(pg_schema, "churn_scores"), before)

    # Once the warehouse accepts the partition, the same run publishes it, and says so.
    published = run(defs, world.instance, [CHURN_SCORES], partition=str(bad.date()))
    assert pg_days(pg_schema, "churn_scores").index.tolist() == [good, bad]
    (observed,) = [
        e.asset_observation_data.asset_observation
        for e in published.all_events
        if e.is_asset_observation
    ]
    assert observed.metadata["published_rows"].value == pg_days(pg_schema, "churn_scores")[bad]


@pytest.mark.postgres
def test_failed_recommendations_write_publishes_nothing(world: World, pg_schema: str) -> None:
    if world.registry.alias("recommender", "champion") is None:
        assert world.run([REC_DATASET, REC_CHALLENGER], partition=MARCH).success
        assert world.run([REC_CHAMPION]).success
    defs = publishing(world, pg_schema)
    day = "2026-04-15"
    with broken_table(world, "predictions.recommendations", "as_of_date timestamp, rank date"):
        failed = run(defs, world.instance, [RECOMMENDATIONS], partition=day, raise_on_error=False)
        assert not failed.success
    assert pg_days(pg_schema, "recommendations").empty
    assert run(defs, world.instance, [RECOMMENDATIONS], partition=day).success
    assert pg_days(pg_schema, "recommendations").index.tolist() == [pd.Timestamp(day)]


def test_versions_are_append_only_and_widen_with_new_columns(tmp_path: Path) -> None:
    """A version is copied once; a later version with a new column (after the table itself was
    migrated) widens the archive instead of failing, and old versions read it as NULL; a frame
    whose rows are not its manifest's version is refused in the same transaction."""
    monthly = dg.MonthlyPartitionsDefinition(start_date="2026-01-01", end_date="2026-03-01")
    database = str(tmp_path / "w.duckdb")

    def write(frame: pd.DataFrame, version: str | None = None) -> dg.ExecuteInProcessResult:
        version = version or str(frame["dataset_version"].iloc[0])

        @dg.asset(
            key=["datasets", "toy"],
            partitions_def=monthly,
            metadata={"partition_expr": "dataset_month"},
        )
        def toy():
            return dg.Output(
                frame, metadata={"manifest": dg.MetadataValue.json({"version": version})}
            )

        return dg.materialize(
            [toy],
            partition_key="2026-01-01",
            resources={"io_manager": WarehouseIOManager(database=database)},
            instance=dg.DagsterInstance.ephemeral(),
            raise_on_error=False,
        )

    month = pd.Timestamp("2026-01-01")
    v1 = pd.DataFrame({"dataset_month": [month] * 2, "x": [1, 2], "dataset_version": "v1"})
    assert write(v1).success and write(v1).success
    with duckdb.connect(database) as con:
        assert con.execute("select count(*) from datasets.toy_versions").fetchone()[0] == 2
        con.execute("alter table datasets.toy add column y double")  # the migration
    assert write(v1.assign(y=0.5, dataset_version="v2")).success
    # Rows stamped with another version than their manifest's are refused, and nothing moves.
    assert not write(v1.assign(y=0.7, dataset_version="v3"), version="v4").success
    with duckdb.connect(database) as con:
        kept = con.execute(
            "select dataset_version, x, y from datasets.toy_versions order by all"
        ).fetchall()
        current = con.execute("select distinct dataset_version from datasets.toy").fetchall()
    assert kept == [("v1", 1, None), ("v1", 2, None), ("v2", 1, 0.5), ("v2", 2, 0.5)]
    assert current == [("v2",)]
