"""Every model family is one unit: the generic factory gives churn, the recommender and the
customer-value family the same graph, checks, jobs and rollback (issue 15)."""

from pathlib import Path

import dagster as dg
import pytest

from assets.keys import FAMILIES, Selection
from assets.promotion import OUT_OF_TIME
from definitions import REGISTRATIONS, build_defs
from lifecycle.family import ModelFamily
from tests.conftest import small_settings

# Every family the code location knows (a fourth one is tested here as soon as it is added).
THREE = {"families": list(FAMILIES), "schedules": {"out_of_time_gate": True}}


@pytest.fixture(scope="module")
def three(tmp_path_factory: pytest.TempPathFactory):
    settings = small_settings(tmp_path_factory.mktemp("three"), THREE)
    return settings, build_defs(settings)


def check_specs(graph) -> dict[dg.AssetCheckKey, dg.AssetCheckSpec]:
    return {spec.key: spec for ad in graph.assets_defs for spec in ad.check_specs}


@pytest.mark.parametrize("name", list(FAMILIES))
def test_each_family_has_the_same_shape(three, name: str) -> None:
    settings, defs = three
    graph, f = defs.resolve_asset_graph(), FAMILIES[name]
    family: ModelFamily = REGISTRATIONS[name](settings).family
    assert family.name == name
    # The assets and their lineage: dataset → challenger → champion → predictions; the shadow
    # follows the challenger.
    assert graph.get(f.challenger).parent_keys == {f.dataset}
    assert graph.get(f.champion).parent_keys == {f.challenger}
    assert f.champion in graph.get(f.predictions).parent_keys
    assert f.challenger in graph.get(f.shadow).parent_keys
    for key in (f.dataset, f.challenger):
        assert isinstance(graph.get(key).partitions_def, dg.MonthlyPartitionsDefinition), key
    for key in (f.predictions, f.shadow):
        assert isinstance(graph.get(key).partitions_def, dg.DailyPartitionsDefinition), key
    assert graph.get(f.champion).partitions_def is None
    for key in (f.dataset, f.challenger, f.champion, f.predictions, f.shadow):
        node = graph.get(key)
        assert node.group_name == name and node.owners and node.kinds and node.description, key
    # Blocking gates on the challenger (one per family gate), the out-of-time gate on the champion.
    specs = check_specs(graph)
    gates = {k.name: s for k, s in specs.items() if k.asset_key == f.challenger}
    assert set(gates) == set(family.gates) and len(gates) >= 3
    assert all(spec.blocking for spec in gates.values())
    assert specs[dg.AssetCheckKey(f.champion, OUT_OF_TIME)].blocking
    # A daily prediction check, where the family has one, on both prediction tables.
    daily = {k for k in specs if k.asset_key in (f.predictions, f.shadow)}
    check = family.daily_check
    tables = (f.predictions, f.shadow)
    assert check is not None, "every family declares a daily prediction check"
    assert daily == {dg.AssetCheckKey(k, check.name) for k in tables}
    # The same jobs select it, and it has its own rollback job and (with a daily check) sensor.
    jobs = {job.name: defs.resolve_job_def(job.name).asset_layer.executable_asset_keys
            for job in defs.jobs or []}  # fmt: skip
    assert {f.dataset, f.challenger} <= jobs["monthly_training"]
    assert {f.predictions, f.shadow} <= jobs["daily_refresh"]
    assert f.champion in jobs["promote_champions"]
    assert jobs[f"{name}_rollback"] == {f.champion}
    sensors = {sensor.name for sensor in defs.sensors or []}
    assert f"{name}_drift_retrain" in sensors


def test_three_families_one_code_location(three) -> None:
    settings, defs = three
    keys = Selection.of(settings)
    assert keys.families == tuple(FAMILIES) and len(FAMILIES) >= 3
    assert defs.resolve_asset_graph().get_all_asset_keys() == keys.all
    dg.Definitions.validate_loadable(defs)


def test_out_of_time_gate_off_means_no_check(tmp_path: Path) -> None:
    settings = small_settings(tmp_path, {**THREE, "schedules": {"out_of_time_gate": False}})
    specs = check_specs(build_defs(settings).resolve_asset_graph())
    assert not [k for k in specs if k.name == OUT_OF_TIME]
