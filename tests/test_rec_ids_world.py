"""Text ids through the real recommender graph: raw rows with UUIDs and zero-padded ids go
through the training set, the challenger, its gates, the champion and the daily
recommendations, and come back exactly as written ("00042" and "42" stay two users)."""

import uuid
from collections.abc import Iterator

import dagster as dg
import duckdb
import numpy as np
import pandas as pd
import pytest

from assets.common import build_partitions, local_window
from assets.keys import REC_CHALLENGER, REC_CHAMPION, REC_DATASET, RECOMMENDATIONS
from assets.recommender import build_recommender_assets
from lifecycle.settings import Settings
from resources.publisher import PostgresPublisher
from resources.registry import RegistryResource, Warehouse
from resources.warehouse import WarehouseIOManager
from tests.conftest import run, small_settings

MARCH, DAY = "2026-03-01", "2026-03-20"
START = pd.Timestamp("2026-01-01")
PADDED = ["00042", "42", "042"]  # three different users to us; one to an integer cast
LATE_USER = "f47ac10b-58cc-4372-a567-0e02b2c3d479"  # first seen in March: unknown to the model
STRANGER = "0000000000000000000"  # first seen in March, only on items the model never saw


def _uuids(n: int, rng: np.random.Generator) -> np.ndarray:
    return np.array([str(uuid.UUID(bytes=rng.bytes(16), version=4)) for _ in range(n)], object)


def make_events(n_users: int = 300, n_items: int = 120, dim: int = 8) -> pd.DataFrame:
    """Latent tastes over Zipf popularity, events spread over Jan–Mar 2026; user ids are
    UUIDs plus the zero-padded trio, item ids are UUIDs."""
    rng = np.random.default_rng(5)
    user_ids = np.concatenate([PADDED, _uuids(n_users - len(PADDED), rng)]).astype(object)
    item_ids = _uuids(n_items, rng)
    users, items = rng.normal(size=(n_users, dim)), rng.normal(size=(n_items, dim))
    zipf = -np.log(np.arange(1, n_items + 1))[rng.permutation(n_items)]
    logits = 3.0 * users @ items.T / np.sqrt(dim) + zipf
    order = np.argsort(-(logits + rng.gumbel(size=logits.shape)), axis=1)
    take = np.arange(n_items)[None, :] < rng.integers(30, 45, size=n_users)[:, None]
    user_col = np.broadcast_to(np.arange(n_users)[:, None], order.shape)[take]
    item_col = order[take]
    stamps = START + pd.to_timedelta(rng.uniform(0, 89 * 86400, size=item_col.size), unit="s")
    events = pd.DataFrame(
        {
            "user_id": user_ids[user_col],
            "item_id": item_ids[item_col],
            "timestamp": stamps,
            "weight": 1.0,
        }
    )
    late = pd.DataFrame(
        {
            "user_id": LATE_USER,
            "item_id": item_ids[:3],
            "timestamp": pd.Timestamp(DAY) - pd.Timedelta(days=2),
            "weight": 1.0,
        }
    )
    stranger = pd.DataFrame(
        {
            "user_id": STRANGER,
            "item_id": _uuids(2, rng),
            "timestamp": pd.Timestamp(DAY) - pd.Timedelta(days=1),
            "weight": 1.0,
        }
    )
    events = pd.concat([events, late, stranger], ignore_index=True)
    return events.assign(event_date=events["timestamp"].dt.normalize())


EVENTS = make_events()


@pytest.fixture(scope="module")
def world(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[dg.Definitions, dg.DagsterInstance, Settings]]:
    root = tmp_path_factory.mktemp("rec_ids")
    settings = small_settings(root)
    partitions = build_partitions(settings)

    @dg.asset(
        key=["raw", "interactions"],
        partitions_def=partitions.daily,
        backfill_policy=dg.BackfillPolicy.single_run(),
        metadata={"partition_expr": "event_date"},
    )
    def interactions(context: dg.AssetExecutionContext) -> pd.DataFrame:
        """Stands in for a user's ratings file: the rows of the run's days, ids as text."""
        start, end = local_window(context)
        day = EVENTS["event_date"]
        return EVENTS[(day >= start) & (day < end)].reset_index(drop=True)

    defs = dg.Definitions(
        assets=[interactions, *build_recommender_assets(partitions, settings)],
        resources={
            "io_manager": WarehouseIOManager(database=settings.warehouse.database),
            "registry": RegistryResource(
                database=settings.warehouse.database,
                artifact_root=settings.warehouse.artifact_root,
            ),
            "publisher": PostgresPublisher(enabled=False),
            "warehouse": Warehouse(database=settings.warehouse.database),
        },
        executor=dg.in_process_executor,
    )
    (root / "home").mkdir()
    with dg.instance_for_test(temp_dir=str(root / "home")) as instance:
        raw = dg.AssetKey(["raw", "interactions"])
        assert run(defs, instance, [raw], partition_range=("2026-01-01", "2026-03-31")).success
        yield defs, instance, settings


def _sql(settings: Settings, query: str) -> pd.DataFrame:
    with duckdb.connect(settings.warehouse.database, read_only=True) as con:
        return con.execute(query).fetchdf()


def test_text_ids_round_trip_from_raw_rows_to_recommendations(
    world: tuple[dg.Definitions, dg.DagsterInstance, Settings],
) -> None:
    defs, instance, settings = world
    trained = run(defs, instance, [REC_DATASET, REC_CHALLENGER], partition=MARCH)
    gates = {e.check_name: e.passed for e in trained.get_asset_check_evaluations()}
    assert gates and all(gates.values()), gates

    dataset = _sql(
        settings, "select user_id, item_id, split from datasets.interactions_training_set"
    )
    window = EVENTS[EVENTS["timestamp"] < pd.Timestamp(MARCH)]
    assert set(dataset["user_id"]) == set(window["user_id"])
    assert set(dataset["item_id"]) == set(window["item_id"])
    assert set(PADDED) <= set(dataset["user_id"])
    assert len(dataset) == len(window.drop_duplicates(["user_id", "item_id"]))

    assert run(defs, instance, [REC_CHAMPION]).success
    assert run(defs, instance, [RECOMMENDATIONS], partition=DAY).success
    recs = _sql(settings, "select * from predictions.recommendations")
    k = settings.recommender.k
    assert recs["user_id"].map(type).eq(str).all() and recs["item_id"].map(type).eq(str).all()
    assert set(recs["item_id"]) <= set(EVENTS["item_id"])  # UUIDs verbatim
    # Every user with any event on or before DAY, however long ago.
    history = EVENTS[EVENTS["event_date"] <= pd.Timestamp(DAY)]
    assert set(recs["user_id"]) == set(history["user_id"])

    padded = recs[recs["user_id"].isin(PADDED)]
    per_user = padded.groupby("user_id")
    assert set(per_user.groups) == set(PADDED)  # all three active on DAY, all three answered
    assert (per_user.size() == k).all() and not padded["is_fallback"].any()
    lists = per_user["item_id"].apply(tuple)
    assert lists.nunique() == len(lists), "each padded id got its own list"
    # Nobody gets what they had up to DAY (after the fit's window too).
    assert recs.merge(history[["user_id", "item_id"]], on=["user_id", "item_id"]).empty

    # A user who arrived after the fit is folded in from the items they touched; one whose
    # items are all new to the model gets the popularity fallback.
    late = recs[recs["user_id"] == LATE_USER]
    assert len(late) == k and not late["is_fallback"].any()
    stranger = recs[recs["user_id"] == STRANGER]
    assert len(stranger) == k and stranger["is_fallback"].all()
