"""The customer-value family end to end, through the generic factory, with the out-of-time gate
of the 15th: waiting (a clean skip) while the days after training are missing, judged once
they are in."""

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import duckdb
import numpy as np
import pytest

from assets.keys import FAMILIES, INGEST, Selection
from assets.promotion import OUT_OF_TIME, WAITING
from assets.value import ValueFamily
from definitions import build_defs
from jobs import rollback_run_config
from jobs.runs import _run
from tests.conftest import World, run, small_settings, world_in
from tests.half_world import half_settings, shop_csvs

KEYS = FAMILIES["value"]
MARCH, APRIL = "2026-03-01", "2026-04-01"
VALUE = {
    "families": ["value"],
    "schedules": {"out_of_time_gate": True},  # promote_day 15: the window is the 1st…14th
    "value": {
        # Short enough that March, in this four-month world, has warmed-up training days.
        "horizon_days": 7,
        "train_months": 2,
        "validation_days": 7,
        "min_train_days": 7,
        "snapshot_every_days": 2,
        "search": {"num_boost_round": 200},
        "checks": {"n_boot": 100},
    },
}


class ValueWorld(World):
    def __init__(self, root: Path, instance: dg.DagsterInstance, model: str) -> None:
        super().__init__(root, instance, model)
        self.settings = small_settings(root, VALUE)
        self.defs = build_defs(self.settings)

    def out_of_time(self, result: dg.ExecuteInProcessResult) -> dg.AssetCheckEvaluation:
        (evaluation,) = [
            e for e in result.get_asset_check_evaluations() if e.check_name == OUT_OF_TIME
        ]
        return evaluation


def retry(world: ValueWorld) -> dg.SkipReason | dg.RunRequest:
    """One tick of the promotion retry schedule, the day after the promotion day."""
    when = dt.datetime(2026, 4, 16, 10, tzinfo=dt.UTC)
    context = dg.build_schedule_context(instance=world.instance, scheduled_execution_time=when)
    return world.defs.resolve_schedule_def("promotion_retry_schedule")(context)  # type: ignore[return-value]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ValueWorld]:
    # Ingested through April 5th: March's window is complete, April's is not yet.
    with world_in(tmp_path_factory.mktemp("value"), "value", "2026-04-05", None, ValueWorld) as w:
        yield w  # type: ignore[misc]


def test_first_value_model_beats_trailing_spend_and_is_promoted(world: ValueWorld) -> None:
    trained = world.run(KEYS.monthly, partition=MARCH)
    assert world.gates(trained) == {
        "beats_naive": True,
        "beats_champion": True,
        "input_drift": True,
        "prediction_sanity": True,
    }
    version = world.registry.latest_for_partition("value", MARCH)
    assert version is not None
    assert version.metrics["mae"] < version.metrics["naive_mae"]
    assert set(version.files_sha256) == {"value.ubj", "judged.ubj"}
    # The first model has no champion to be judged against after training: promoted at once,
    # its out-of-time check not executed (and no wait for March's days).
    promoted = world.run([KEYS.champion])
    assert world.champion() == version.version
    assert not [e for e in promoted.get_asset_check_evaluations() if e.check_name == OUT_OF_TIME]


def test_promotion_waits_for_the_days_after_training(world: ValueWorld) -> None:
    assert world.run(KEYS.monthly, partition=APRIL).success
    april = world.registry.latest_for_partition("value", APRIL)
    march = world.registry.latest_for_partition("value", MARCH)
    # Nothing to judge yet: a clean skip that says why (no failure, no promotion, no verdict).
    skipped = retry(world)
    assert isinstance(skipped, dg.SkipReason) and "waiting" in (skipped.skip_message or "")
    promote = world.defs.resolve_job_def("promote_champions")
    waiting = promote.execute_in_process(instance=world.instance, asset_selection=[KEYS.champion])
    assert waiting.success and world.champion() == march.version
    assert not waiting.asset_materializations_for_node(KEYS.champion.to_python_identifier())
    assert not [e for e in waiting.get_asset_check_evaluations() if e.check_name == OUT_OF_TIME]
    said = [e.user_message for e in world.instance.all_logs(waiting.run_id)]
    assert [m for m in said if WAITING in m and "2026-04-06 … 2026-04-14 (9)" in m], said
    # The terminal (lifecycle's run call) reports the same run as waiting, with its reason.
    outcome = _run(world.defs, world.instance, "promote_champions", "promote", keys=[KEYS.champion])
    assert outcome.status == "waiting"
    assert [c for _, c in outcome.causes if WAITING in c and "2026-04-06" in c], outcome.causes

    # The retry schedule asks again every day while the last promotion waits.
    again = retry(world)
    assert isinstance(again, dg.RunRequest) and again.run_key == "promote-retry-2026-04-16"

    # The days arrive; the same promotion is now judged on them.
    assert world.run(INGEST, partition_range=("2026-04-06", "2026-04-14")).success
    judged = promote.execute_in_process(
        instance=world.instance, asset_selection=[KEYS.champion], raise_on_error=False
    )
    check = world.out_of_time(judged)
    meta = {k: getattr(v, "value", v) for k, v in check.metadata.items()}
    assert meta["against_champion"] == march.version
    assert np.isfinite(meta["ci_lower"]) and meta["ci_lower"] <= meta["ci_upper"]
    assert "2026-04-01…2026-04-14" in check.description
    assert (meta["first_day"], meta["last_day"], meta["days"]) == ("2026-04-01", "2026-04-14", 14)
    assert meta["units"] > 100  # customers scored as of March 31st, judged on their April spend
    # The verdict decides: promoted exactly when the check passed.
    assert judged.success == check.passed
    assert (world.champion() == april.version) == check.passed
    assert isinstance(retry(world), dg.SkipReason)  # nothing waits any more


def test_daily_predictions_and_rollback(world: ValueWorld) -> None:
    days = ("2026-04-02", "2026-04-04")
    result = world.run([KEYS.predictions], partition_range=days)
    assert result.success
    table = world.sql("select * from predictions.customer_value")
    assert set(table["as_of_date"].dt.strftime("%Y-%m-%d")) == {
        "2026-04-02",
        "2026-04-03",
        "2026-04-04",
    }
    assert (table["score"] >= 0).all() and table["score"].std() > 0
    per_day = [e for e in result.get_asset_check_evaluations() if e.check_name == "score_drift"]
    assert sorted(e.partition for e in per_day) == ["2026-04-02", "2026-04-03", "2026-04-04"]

    march = world.registry.latest_for_partition("value", MARCH)
    if world.champion() != march.version:
        job = world.defs.resolve_job_def("value_rollback")
        config = rollback_run_config("value", march.version, "test: April under review")
        assert job.execute_in_process(instance=world.instance, run_config=config).success
    assert world.champion() == march.version


def test_value_family_on_a_users_transactions_export_keeps_ids_verbatim(
    tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    """A user's own export, only the transactions table: ids with leading zeros (00042), one-time
    buyers and customers who go quiet. The value family trains, is judged and scores from the
    file alone, and every id it writes is one the file holds, character for character."""
    written = shop_csvs(tmp_path / "drop", "transactions")
    override = {**VALUE, "families": ["value"]}
    settings = half_settings(tmp_path, "transactions", override)
    assert settings.source.tables == ("transactions",)
    defs = build_defs(settings)
    assert run(
        defs, instance, Selection.of(settings).ingest, partition_range=("2026-01-01", "2026-04-30")
    ).success
    trained = run(defs, instance, KEYS.monthly, partition=APRIL, raise_on_error=False)
    verdicts = {e.check_name: e for e in trained.get_asset_check_evaluations()}
    assert set(verdicts) == set(ValueFamily.gates)  # every gate judged, on real numbers
    assert np.isfinite(float(verdicts["beats_naive"].metadata["observed"].value))  # type: ignore[union-attr]
    ids = set(written["customer_id"])
    assert all(i.startswith("0") for i in ids)  # the export's ids are zero-padded strings
    with duckdb.connect(settings.warehouse.database, read_only=True) as con:
        trained_ids = set(
            con.execute("select customer_id from datasets.value_training_set").fetchdf()[
                "customer_id"
            ]
        )
    assert trained_ids and trained_ids <= ids
    # One-time buyers and dormant customers are in the file; those still in the population on
    # a snapshot day carry a target of zero rather than disappearing.
    with duckdb.connect(settings.warehouse.database, read_only=True) as con:
        zeros = con.execute(
            "select count(*) from datasets.value_training_set where future_spend = 0"
        ).fetchone()
    assert zeros and zeros[0] > 0
