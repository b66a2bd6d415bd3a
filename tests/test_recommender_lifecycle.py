"""The recommender lifecycle on the synthetic shop: train, gate, promote, recommend, fall back
for unknown users, block a challenger trained on shuffled interactions, roll back."""

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from assets.keys import REC_CHALLENGER, REC_CHAMPION, REC_DATASET, RECOMMENDATIONS
from assets.recommender import load_model
from jobs import rollback_run_config
from jobs.cli import main as cli
from lifecycle.interactions import trained_on
from lifecycle.rec_training import JUDGED_NOTE
from tests.conftest import World, failure_text, world_in

MARCH, APRIL = "2026-03-01", "2026-04-01"
DAY = "2026-04-15"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with world_in(tmp_path_factory.mktemp("recommender"), "recommender", "2026-04-30", None) as w:
        yield w


def test_challenger_beats_popularity_and_is_promoted(world: World) -> None:
    result = world.run([REC_DATASET, REC_CHALLENGER], partition=MARCH)
    assert all(world.gates(result).values()), world.gates(result)
    version = world.registry.latest_for_partition("recommender", MARCH)
    # Ground truth: users pick items by a latent taste (8 dimensions) on top of a Zipf
    # popularity, so a personal model must do clearly better than "most popular unseen
    # item" on the same users' held-out items; 1.2× is the demo's promotion factor.
    assert version.metrics["precision"] >= 1.2 * version.metrics["popularity_precision"]
    plain = {"model.npz", "ids_and_items.npz", "params.json"}
    assert set(version.files_sha256) == plain | {f"judged_{name}" for name in plain}
    assert version.params["served_trained_on"] == "train+selection+gate"
    assert version.metrics["served_train_pairs"] > version.metrics["train_pairs"]
    checks = [e for e in result.get_asset_check_evaluations() if e.asset_key == REC_CHALLENGER]
    assert all(e.metadata["fit"].value == JUDGED_NOTE for e in checks)

    # The registered judged fit never trained on the gate slice; the served fit did.
    gate = world.sql(
        "select user_id, item_id from datasets.interactions_training_set "
        "where dataset_month = ? and split = 'gate'",
        [pd.Timestamp(MARCH)],
    )
    assert len(gate) > 0 and gate["user_id"].map(type).eq(str).all()
    assert trained_on(load_model(world.registry, version, "judged"), gate).sum() == 0
    assert trained_on(load_model(world.registry, version, "served"), gate).all()
    assert world.run([REC_CHAMPION]).success
    assert world.champion() == version.version


def test_training_sets_hold_all_history_before_the_month(world: World) -> None:
    """April's set reads every day since the first partition (January), not a trailing
    window: the pairs are exactly the distinct pairs of raw interactions before April."""
    result = world.run([REC_DATASET], partition=APRIL)
    before = world.sql(
        "select distinct user_id, item_id from raw.interactions where event_date < ?",
        [pd.Timestamp(APRIL)],
    )
    stored = world.sql(
        "select user_id, item_id from datasets.interactions_training_set where dataset_month = ?",
        [pd.Timestamp(APRIL)],
    )
    assert len(stored) == len(before) and set(stored["user_id"]) == set(before["user_id"])
    january = world.sql(
        "select distinct user_id from raw.interactions where event_date < '2026-02-01'"
    )
    assert set(january["user_id"]) <= set(stored["user_id"])
    meta = result.asset_materializations_for_node(REC_DATASET.to_python_identifier())[0].metadata
    assert meta["window_start"].value == "2026-01-01" and meta["window_end"].value == "2026-03-31"


def test_daily_recommendations_cover_every_known_user_and_hide_all_they_had(
    world: World,
) -> None:
    result = world.run([RECOMMENDATIONS], partition=DAY)
    assert result.success
    recs = world.sql("select * from predictions.recommendations")
    k = world.settings.recommender.k
    assert set(recs["model_version"]) == {world.champion()}
    assert recs["user_id"].map(type).eq(str).all() and recs["item_id"].map(type).eq(str).all()
    history = world.sql(
        "select distinct user_id, item_id from raw.interactions where event_date <= ?",
        [pd.Timestamp(DAY)],
    )
    # Every user with any interaction on or before D gets a full list, however long ago they
    # were last seen (the table used to hold only users active in the last 30 days).
    assert set(recs["user_id"]) == set(history["user_id"])
    per_user = recs.groupby("user_id")
    assert (per_user.size() == k).all() and (per_user["rank"].min() == 1).all()
    # Nothing a user had up to D comes back, including what they did after the fit.
    assert recs.merge(history, on=["user_id", "item_id"]).empty

    # Users who arrived after the champion's training window are folded in from their own
    # history: each gets a personal list, not the shared popularity one.
    champion = world.registry.alias("recommender", "champion")
    trained = world.sql(
        "select distinct user_id from datasets.interactions_training_set where dataset_month = ?",
        [pd.Timestamp(champion.partition_key)],
    )
    newer = recs[~recs["user_id"].isin(trained["user_id"])]
    assert newer["user_id"].nunique() > 1 and not newer["is_fallback"].any()
    lists = newer.sort_values(["user_id", "rank"]).groupby("user_id")["item_id"].apply(tuple)
    assert lists.nunique() > 1
    meta = result.asset_materializations_for_node(RECOMMENDATIONS.to_python_identifier())[0]
    counts = {key: value.value for key, value in meta.metadata.items()}
    assert counts["users_folded_in_last_day"] == newer["user_id"].nunique()
    assert (
        counts["users_known_to_fit_last_day"]
        + counts["users_folded_in_last_day"]
        + counts["users_fallback_last_day"]
        == counts["users_last_day"]
        == counts["known_users_last_day"]
    )
    assert counts["users_left_out_last_day"] == 0

    assert world.run([RECOMMENDATIONS], partition=DAY).success
    again = world.sql("select * from predictions.recommendations")
    order = ["as_of_date", "user_id", "rank"]
    pd.testing.assert_frame_equal(
        recs.sort_values(order, ignore_index=True), again.sort_values(order, ignore_index=True)
    )


def test_cli_answers_known_and_unknown_users(world: World, capsys, monkeypatch) -> None:
    settings_file = Path(world.settings.warehouse.database).parent / "settings.yaml"
    settings_file.write_text(__import__("yaml").safe_dump(world.settings.model_dump(mode="json")))
    known = world.sql(
        "select min(user_id) u from datasets.interactions_training_set where dataset_month = ?",
        [pd.Timestamp(world.registry.alias("recommender", "champion").partition_key)],
    )["u"][0]
    assert cli(["--settings", str(settings_file), "recommend", known, "-k", "5"]) == 0
    out = capsys.readouterr().out
    assert "False" in out and world.champion() in out
    assert cli(["--settings", str(settings_file), "recommend", "99999999", "-k", "5"]) == 0
    assert "True" in capsys.readouterr().out


def test_challenger_on_shuffled_interactions_is_blocked(world: World) -> None:
    assert world.run([REC_DATASET], partition=APRIL).success
    # Items permuted independently of users in everything the judged fit trains on:
    # popularity survives, personal taste does not.
    with world.shuffle_column(
        "datasets.interactions_training_set",
        "item_id",
        "dataset_month = ? and split <> 'gate'",
        [pd.Timestamp(APRIL)],
        seed=1,
    ) as con:
        # A pair is stored once: drop the train/selection copies the permutation duplicated.
        con.execute(
            "delete from datasets.interactions_training_set where rowid in (select rowid from "
            "(select rowid, row_number() over (partition by user_id, item_id "
            "order by split = 'gate' desc, rowid) n from datasets.interactions_training_set "
            "where dataset_month = ?) where n > 1)",
            [pd.Timestamp(APRIL)],
        )
    before = world.champion()
    result = world.run([REC_CHALLENGER], partition=APRIL, raise_on_error=False)
    gates = world.gates(result)
    assert gates["beats_popularity"] is False and gates["beats_champion"] is False
    refused = world.run([REC_CHAMPION], raise_on_error=False)
    assert not refused.success and "beats_popularity" in failure_text(refused)
    assert world.champion() == before


def test_rollback_to_a_former_champion(world: World) -> None:
    # Restore April's real data, train a good challenger, promote it, then roll back.
    assert world.run([REC_DATASET, REC_CHALLENGER], partition=APRIL).success
    assert world.run([REC_CHAMPION]).success
    march = world.registry.latest_for_partition("recommender", MARCH)
    assert world.champion() != march.version
    job = world.defs.resolve_job_def("recommender_rollback")
    result = job.execute_in_process(
        instance=world.instance,
        run_config=rollback_run_config("recommender", march.version, "test"),
    )
    assert result.success and world.champion() == march.version
    assert world.registry.history("recommender").iloc[-1]["event"] == "rollback"
