"""Graph-level guarantees: the code location loads, reads well in the UI, and its lineage is
the one the design promises."""

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

import definitions
from assets.keys import (
    ACTIVITY,
    CHURN_CHALLENGER,
    CHURN_CHAMPION,
    CHURN_DATASET,
    CHURN_SCORES,
    FEATURES,
    LABELS,
    REC_CHALLENGER,
    REC_DATASET,
    RECOMMENDATIONS,
)
from lifecycle.settings import SETTINGS_ENV_VAR, SettingsError, load_settings
from tests.half_world import settings_file

ROOT = Path(__file__).resolve().parent.parent
LAYERS = {"raw", "features", "labels", "datasets", "models", "predictions"}


@pytest.fixture(scope="module")
def graph():
    return definitions.defs.resolve_asset_graph()


@pytest.mark.parametrize("source", ["demo", "transactions only"])
def test_dagster_validates_the_workspace(source: str, tmp_path: Path) -> None:
    """What `dagster dev` loads from the repo root with no flags: the demo, and a user's
    settings file whose source has a transaction log only (no interactions anywhere)."""
    env = {**os.environ, "DAGSTER_HOME": str(ROOT / "dagster_home")}
    if source != "demo":
        env[SETTINGS_ENV_VAR] = str(settings_file(tmp_path, "transactions"))
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "dagster"),
            "definitions",
            "validate",
            "-w",
            "workspace.yaml",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "DeprecationWarning" not in result.stderr


def test_every_asset_is_documented_owned_grouped_and_layered(graph) -> None:
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        assert key.path[0] in LAYERS, key
        assert node.description, key
        assert node.owners == ["team:ml-platform"], key
        assert node.group_name in {"ingest", "features", "churn", "recommender", "value"}, key
        assert node.kinds, key


@pytest.mark.parametrize(
    ("child", "parents"),
    [
        (FEATURES, {ACTIVITY}),
        (LABELS, {FEATURES, ACTIVITY}),
        (CHURN_DATASET, {FEATURES, LABELS}),
        (CHURN_CHALLENGER, {CHURN_DATASET}),
        (CHURN_CHAMPION, {CHURN_CHALLENGER}),
        (CHURN_SCORES, {FEATURES, CHURN_CHAMPION}),
        (REC_CHALLENGER, {REC_DATASET}),
        (RECOMMENDATIONS, {dg.AssetKey(["models", "recommender_champion"])}),
    ],
)
def test_lineage(graph, child: dg.AssetKey, parents: set[dg.AssetKey]) -> None:
    assert parents <= graph.get(child).parent_keys


def test_partition_mappings_cover_lookback_and_horizon(graph) -> None:
    """Day D of features reads W days of activity; day D of labels reads D+1 … D+H."""
    settings = load_settings()
    features = graph.get(FEATURES)
    mapping = graph.get_partition_mapping(FEATURES, ACTIVITY)
    daily = features.partitions_def
    upstream = mapping.get_upstream_mapped_partitions_result_for_partitions(
        daily.subset_with_partition_keys(["2026-03-31"]), daily, daily
    ).partitions_subset.get_partition_keys()
    assert len(upstream) == settings.features.lookback_days and upstream[-1] == "2026-03-31"
    label_map = graph.get_partition_mapping(LABELS, ACTIVITY)
    ahead = label_map.get_upstream_mapped_partitions_result_for_partitions(
        daily.subset_with_partition_keys(["2026-03-01"]), daily, daily
    ).partitions_subset.get_partition_keys()
    assert ahead[0] == "2026-03-02" and len(ahead) == settings.labels.horizon_days


def test_blocking_gates_guard_both_challengers(graph) -> None:
    specs = {
        key.name: graph.get_check_spec(key)
        for key in graph.get_check_keys_for_assets({CHURN_CHALLENGER, REC_CHALLENGER})
    }
    assert {"auc_floor", "beats_champion", "input_drift", "score_sanity"} <= set(specs)
    assert {"precision_floor", "beats_popularity", "coverage_floor", "fallback_present"} <= set(
        specs
    )
    assert all(spec.blocking for spec in specs.values())


def test_daily_ranges_run_as_one_run(graph) -> None:
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        if isinstance(node.partitions_def, dg.DailyPartitionsDefinition):
            assert node.backfill_policy == dg.BackfillPolicy.single_run(), key


def test_bad_settings_name_the_key(tmp_path: Path) -> None:
    bad = tmp_path / "s.yaml"
    bad.write_text("partitions: {start_date: 2026-01-01}\nlabels: {horizn_days: 3}\n")
    with pytest.raises(SettingsError, match=r"labels\.horizn_days"):
        load_settings(bad)


def test_warehouse_memory_limit_reaches_every_duckdb_resource() -> None:
    """``warehouse.memory_limit`` bounds DuckDB in the IO manager, the warehouse resource and
    the registry (one setting for all three: a held-open file takes no other)."""
    raw = load_settings().model_dump(mode="json")
    raw["warehouse"]["memory_limit"] = "768MB"
    from lifecycle.settings import parse_settings

    defs = definitions.build_defs(parse_settings(raw, "test settings"))
    for key in ("io_manager", "warehouse", "registry"):
        resource = defs.resources[key]
        assert resource.connection_config == {"memory_limit": "768MB"}, key  # type: ignore[union-attr]
