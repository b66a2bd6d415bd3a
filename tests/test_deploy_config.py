"""The shipped deployment files: they parse, validate against Dagster's own schemas, name real
classes and agree with each other (image, working directory, settings path, driver scheme).

No cluster or Docker engine is needed. The two checks that import dagster_k8s (the run
launcher's and the executor's config schemas) run where dagster-k8s is installed, as in the
image, and are skipped elsewhere.
"""

from __future__ import annotations

import importlib
import re
import shutil
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import yaml
from dagster._config import process_config
from dagster._core.instance.config import dagster_instance_config
from dagster._core.instance.ref import InstanceRef

from definitions import build_defs
from lifecycle.settings import load_settings

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
LOCAL_INSTANCE = ROOT / "dagster_home" / "dagster.yaml"
DEPLOY_INSTANCE = DEPLOY / "dagster.yaml"
HELM_VALUES = DEPLOY / "helm" / "values.yaml"
EXECUTOR = DEPLOY / "executor.yaml"
PRODUCTION_SETTINGS = DEPLOY / "settings.production.yaml"
DOCKERFILE = DEPLOY / "Dockerfile"
APP_DIR = "/opt/dagster/app"
SETTINGS_IN_IMAGE = f"{APP_DIR}/deploy/settings.production.yaml"
PG_ENV = {
    "username": "DAGSTER_PG_USERNAME",
    "password": "DAGSTER_PG_PASSWORD",
    "hostname": "DAGSTER_PG_HOST",
    "db_name": "DAGSTER_PG_DB",
    "port": "DAGSTER_PG_PORT",
}
SHIPPED_YAML = sorted(
    [
        *DEPLOY.rglob("*.yaml"),
        *DEPLOY.rglob("*.yml"),
        LOCAL_INSTANCE,
        *(ROOT / "settings").glob("*.yaml"),
        ROOT / "workspace.yaml",
    ]
)


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def instance_config(path: Path, tmp_path: Path) -> dict[str, Any]:
    """Validate ``path`` the way Dagster validates $DAGSTER_HOME/dagster.yaml on start-up."""
    home = tmp_path / f"home_{path.parent.name}"
    home.mkdir()
    shutil.copy(path, home / "dagster.yaml")
    config, custom_class = dagster_instance_config(str(home))
    assert custom_class is None
    return dict(config)


def dockerfile_cmd() -> list[str]:
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    match = re.search(r"^CMD\s+(\[.*\])\s*$", text, flags=re.MULTILINE)
    assert match, "Dockerfile has no exec-form CMD"
    return yaml.safe_load(match.group(1))


@pytest.mark.parametrize("path", SHIPPED_YAML, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_shipped_yaml_parses(path: Path) -> None:
    assert isinstance(load(path), dict)


# --- the local instance -----------------------------------------------------------------------


def test_local_instance_validates_and_stores_under_dagster_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = instance_config(LOCAL_INSTANCE, tmp_path)
    assert config["storage"]["custom"]["config"] == {"base_dir": {"env": "DAGSTER_HOME"}}
    assert config["telemetry"] == {"enabled": False}

    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(LOCAL_INSTANCE, home / "dagster.yaml")
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the files must land in DAGSTER_HOME, not in the cwd
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    with dg.DagsterInstance.get() as instance:
        assert type(instance.run_storage).__name__ == "SqliteRunStorage"
        queue = instance.get_concurrency_config().run_queue_config
        assert queue is not None and queue.max_concurrent_runs == 1
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        instance.get_runs()
    assert (home / "history" / "runs.db").exists()
    assert not any(elsewhere.iterdir())


def test_local_instance_folder_keeps_only_its_config_in_git() -> None:
    lines = (LOCAL_INSTANCE.parent / ".gitignore").read_text().split("\n")
    rules = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    assert rules == ["*", "!.gitignore", "!dagster.yaml"]


# --- the production instance --------------------------------------------------------------------


def test_production_instance_validates_and_takes_credentials_from_env(tmp_path: Path) -> None:
    config = instance_config(DEPLOY_INSTANCE, tmp_path)
    storage = config["storage"]["custom"]
    assert (storage["module"], storage["class"]) == (
        "resources.pg_storage",
        "PooledPostgresStorage",
    )
    postgres = storage["config"]["postgres_db"]
    assert {k: postgres[k] for k in PG_ENV} == {k: {"env": v} for k, v in PG_ENV.items()}
    assert postgres["scheme"] == "postgresql+psycopg2"
    assert config["concurrency"]["runs"]["max_concurrent_runs"] == 1
    assert config["telemetry"] == {"enabled": False}


def test_production_instance_names_real_classes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in [
        ("DAGSTER_PG_USERNAME", "u"),
        ("DAGSTER_PG_PASSWORD", "p"),
        ("DAGSTER_PG_HOST", "h"),
        ("DAGSTER_PG_DB", "d"),
        ("DAGSTER_PG_PORT", "5432"),
    ]:
        monkeypatch.setenv(name, value)
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(DEPLOY_INSTANCE, home / "dagster.yaml")
    ref = InstanceRef.from_dir(str(home))
    named = {
        "storage": ref.storage_data,
        "runs": ref.run_storage_data,
        "event_log": ref.event_storage_data,
        "schedules": ref.schedule_storage_data,
        "run_launcher": ref.run_launcher_data,
        "compute_logs": ref.compute_logs_data,
    }
    assert {k: (v.module_name, v.class_name) for k, v in named.items() if v} == {
        "storage": ("resources.pg_storage", "PooledPostgresStorage"),
        # A custom storage is reached through Dagster's wrappers of its three parts.
        "runs": ("dagster._core.storage.legacy_storage", "LegacyRunStorage"),
        "event_log": ("dagster._core.storage.legacy_storage", "LegacyEventLogStorage"),
        "schedules": ("dagster._core.storage.legacy_storage", "LegacyScheduleStorage"),
        "run_launcher": ("dagster_k8s", "K8sRunLauncher"),
        "compute_logs": (
            "dagster._core.storage.noop_compute_log_manager",
            "NoOpComputeLogManager",
        ),
    }
    for key, data in named.items():
        if data is not None and data.module_name != "dagster_k8s":  # imported below when present
            assert hasattr(importlib.import_module(data.module_name), data.class_name), key


def test_k8s_run_launcher_config_matches_its_schema(tmp_path: Path) -> None:
    dagster_k8s = pytest.importorskip(
        "dagster_k8s", reason="dagster-k8s is not installed here (the image has it)"
    )
    launcher = instance_config(DEPLOY_INSTANCE, tmp_path)["run_launcher"]
    cls = getattr(dagster_k8s, launcher["class"])
    assert cls is dagster_k8s.K8sRunLauncher
    result = process_config(cls.config_type(), launcher["config"])
    assert result.success and result.value is not None, result.errors
    assert result.value["instance_config_map"] == "dagster-instance"
    env_vars = launcher["config"]["env_vars"]
    assert f"LIFECYCLE_SETTINGS={SETTINGS_IN_IMAGE}" in env_vars


def test_k8s_job_executor_run_config_matches_its_schema() -> None:
    dagster_k8s = pytest.importorskip(
        "dagster_k8s", reason="dagster-k8s is not installed here (the image has it)"
    )
    executor = dagster_k8s.k8s_job_executor
    result = process_config(
        executor.config_schema.config_type, load(EXECUTOR)["execution"]["config"]
    )
    assert result.success, result.errors


def test_executor_run_config_names_real_steps(small_defs) -> None:
    _, defs = small_defs
    steps = {"__".join(key.path) for key in defs.resolve_asset_graph().get_all_asset_keys()}
    per_step = load(EXECUTOR)["execution"]["config"]["per_step_k8s_config"]
    assert set(per_step) <= steps, set(per_step) - steps
    text = EXECUTOR.read_text()
    assert "k8s_job_executor" in text and "from dagster_k8s import k8s_job_executor" in text


# --- the image and the chart ---------------------------------------------------------------------


def test_dockerfile_serves_definitions_from_the_app_dir() -> None:
    text = DOCKERFILE.read_text()
    assert re.search(r"^FROM python:3\.11-slim\s*$", text, flags=re.MULTILINE)
    assert re.search(rf"^WORKDIR {re.escape(APP_DIR)}\s*$", text, flags=re.MULTILINE)
    assert f"LIFECYCLE_SETTINGS={SETTINGS_IN_IMAGE}" in text
    assert "COPY deploy/settings.production.yaml deploy/settings.production.yaml" in text
    cmd = dockerfile_cmd()
    assert cmd[:3] == ["dagster", "code-server", "start"]
    assert cmd[cmd.index("-f") + 1] == "definitions.py"
    assert cmd[cmd.index("-d") + 1] == APP_DIR
    # dagster-k8s in the same release line as the project's dagster-postgres pin.
    pins = (ROOT / "pyproject.toml").read_text()
    line = re.search(r'"dagster-postgres>=(\d+\.\d+)', pins)
    assert line and f'"dagster-k8s=={line.group(1)}.*"' in text


def test_helm_values_point_at_the_image_and_definitions() -> None:
    values = load(HELM_VALUES)
    deployments = values["dagster-user-deployments"]["deployments"]
    assert values["dagster-user-deployments"]["enabled"] is True
    assert len(deployments) == 1
    code = deployments[0]
    assert code["image"]["repository"] and code["image"]["tag"]
    args = code["codeServerArgs"]
    assert args[args.index("-f") + 1] == "definitions.py"
    assert args[args.index("-d") + 1] == APP_DIR
    assert code["includeConfigInLaunchedRuns"]["enabled"] is True
    assert {"name": "LIFECYCLE_SETTINGS", "value": SETTINGS_IN_IMAGE} in code["env"]
    assert code["port"] == 3030


def test_helm_values_use_external_postgres_k8s_runs_and_one_writer() -> None:
    values = load(HELM_VALUES)
    pg = values["postgresql"]
    assert pg["enabled"] is False
    assert pg["postgresqlScheme"] == "postgresql+psycopg2"
    assert "postgresqlPassword" not in pg  # from the Secret named in global, never in values
    assert values["generatePostgresqlPasswordSecret"] is False
    assert values["global"]["postgresqlSecretName"]
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    assert "k8sRunLauncher" in values["runLauncher"]["config"]
    queue = values["dagsterDaemon"]["runCoordinator"]
    assert queue["type"] == "QueuedRunCoordinator"
    assert queue["config"]["queuedRunCoordinator"]["maxConcurrentRuns"] == 1
    assert values["telemetry"]["enabled"] is False


# --- the production settings ---------------------------------------------------------------------


def test_production_settings_validate_and_build_definitions() -> None:
    settings = load_settings(PRODUCTION_SETTINGS)
    assert settings.source.kind == "sql"
    assert settings.source.sql is not None
    assert settings.source.sql.url_env == "SOURCE_DATABASE_URL"
    for query in (settings.source.sql.transactions_query, settings.source.sql.interactions_query):
        assert query and ":start" in query and ":end" in query
    assert settings.partitions.end_date is None  # open-ended
    assert settings.warehouse.database.startswith("/data/")
    assert settings.warehouse.artifact_root.startswith("/data/")
    # The URL is an EnvVar, resolved only when a run starts; building needs no secret.
    dg.Definitions.validate_loadable(build_defs(settings))
