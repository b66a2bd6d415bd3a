"""The scheduled morning run succeeds in every state the lifecycle passes through: before the
first champion, right after a promotion (the challenger *is* the champion, so no shadow), and
right after a rollback. Each morning is the real `daily_refresh_schedule` evaluated at 06:15
and its run requests executed through the real `daily_refresh` job, as the daemon would."""

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from zoneinfo import ZoneInfo

import dagster as dg
import pytest

from assets.keys import (
    CHURN_CHALLENGER,
    CHURN_CHAMPION,
    CHURN_DATASET,
    CHURN_SCORES,
    CHURN_SHADOW,
)
from jobs import rollback_run_config
from tests.conftest import World, failure_text, world_in

APRIL, MAY = "2026-04-01", "2026-05-01"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("daily_states")
    with world_in(Path(root), "churn", "2026-04-30", "2026-04-16") as w:
        yield w


def morning(world: World, day: str) -> dict[str, dg.ExecuteInProcessResult]:
    """Evaluate the daily schedule at 06:15 on ``day`` and run every request it makes."""
    schedule = world.defs.resolve_schedule_def("daily_refresh_schedule")
    at = dt.datetime.fromisoformat(f"{day}T06:15").replace(tzinfo=ZoneInfo(world.settings.timezone))
    ctx = dg.build_schedule_context(instance=world.instance, scheduled_execution_time=at)
    requests = schedule(ctx)
    assert requests, f"the schedule asked for nothing on {day}"
    job = world.defs.resolve_job_def("daily_refresh")
    results = {}
    for request in requests:
        result = job.execute_in_process(
            instance=world.instance,
            partition_key=request.partition_key,
            asset_selection=request.asset_selection,
            tags={"dagster/schedule_name": "daily_refresh_schedule"},
            raise_on_error=False,
        )
        assert result.success, f"{request.run_key} failed:\n{failure_text(result)}"
        results[str(request.run_key)] = result
    return results


def score_checks(results: dict[str, dg.ExecuteInProcessResult]) -> dict[dg.AssetKey, dict]:
    """Each score asset's `score_drift` result: passed, and the skip reason if it skipped."""
    found = {}
    for result in results.values():
        for evaluation in result.get_asset_check_evaluations():
            if evaluation.asset_key in (CHURN_SCORES, CHURN_SHADOW):
                skipped = evaluation.metadata.get("skipped")
                found[evaluation.asset_key] = {
                    "passed": evaluation.passed,
                    "skipped": getattr(skipped, "value", skipped),
                }
    return found


def scored(results: dict[str, dg.ExecuteInProcessResult]) -> set[dg.AssetKey]:
    return {
        event.asset_key
        for result in results.values()
        for event in result.get_asset_materialization_events()
        if event.asset_key in (CHURN_SCORES, CHURN_SHADOW)
    }


def train_and_promote(world: World, month: str, keys: list[dg.AssetKey] | None = None) -> None:
    training = world.defs.resolve_job_def("monthly_training")
    assert training.execute_in_process(
        instance=world.instance, partition_key=month, asset_selection=keys
    ).success
    promotion = world.defs.resolve_job_def("promote_champions")
    assert promotion.execute_in_process(
        instance=world.instance, asset_selection=[CHURN_CHAMPION] if keys else None
    ).success


def test_morning_before_the_first_champion_skips_scores_and_succeeds(world: World) -> None:
    assert world.champion() is None
    results = morning(world, "2026-04-22")
    checks = score_checks(results)
    # Both score assets accounted for their declared check, with the reason, and wrote nothing.
    assert set(checks) == {CHURN_SCORES, CHURN_SHADOW}
    assert all(c["passed"] and "no churn" in c["skipped"] for c in checks.values())
    assert scored(results) == set()


def test_morning_right_after_a_promotion_scores_and_skips_the_shadow(world: World) -> None:
    train_and_promote(world, APRIL)
    champion = world.champion()
    assert champion is not None
    results = morning(world, "2026-04-23")
    checks = score_checks(results)
    assert scored(results) == {CHURN_SCORES}
    assert checks[CHURN_SCORES]["skipped"] is None
    assert checks[CHURN_SHADOW]["passed"]
    assert "already champion" in checks[CHURN_SHADOW]["skipped"]
    rows = world.sql(
        "select distinct model_version from predictions.churn_scores where as_of_date = ?",
        [dt.date(2026, 4, 22)],
    )
    assert rows["model_version"].tolist() == [champion]


def test_morning_right_after_a_rollback_scores_with_the_restored_champion(world: World) -> None:
    april = world.champion()
    train_and_promote(world, MAY, [CHURN_DATASET, CHURN_CHALLENGER])
    may = world.champion()
    assert may is not None and may != april
    job = world.defs.resolve_job_def("churn_rollback")
    assert april is not None
    rolled = job.execute_in_process(
        instance=world.instance,
        run_config=rollback_run_config("churn", april, "May scores looked wrong"),
    )
    assert rolled.success
    assert world.champion() == april
    results = morning(world, "2026-04-25")
    # The champion is April again and May is still the challenger: both score, nothing skips.
    assert scored(results) == {CHURN_SCORES, CHURN_SHADOW}
    assert all(c["skipped"] is None for c in score_checks(results).values())
    versions = world.sql(
        "select (select distinct model_version from predictions.churn_scores "
        "        where as_of_date = ?) as champion, "
        "       (select distinct model_version from predictions.churn_scores_shadow "
        "        where as_of_date = ?) as shadow",
        [dt.date(2026, 4, 24), dt.date(2026, 4, 24)],
    ).iloc[0]
    assert (versions["champion"], versions["shadow"]) == (april, may)
