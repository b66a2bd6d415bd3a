"""The one code location: everything the UI shows is assembled here from the settings file."""

from __future__ import annotations

import warnings

import dagster as dg

from assets import churn, recommender, value
from assets.common import build_partitions
from assets.family import build_family_assets
from assets.features import build_feature_assets
from assets.ingest import build_ingest_assets
from assets.keys import FEATURES as FEATURES_KEY
from assets.keys import LABELS, Selection
from jobs import build_jobs, build_schedules
from lifecycle.settings import Settings, load_settings
from resources.alerts import alerts_from_settings
from resources.instance_env import apply_instance_env
from resources.publisher import publisher_from_settings
from resources.registry import RegistryResource, Warehouse
from resources.sources import source_from_settings
from resources.warehouse import WarehouseIOManager
from sensors import build_sensors

# We use three features Dagster labels beta/preview on purpose (single-run backfill policy,
# pandera types, partitioned check specs); their notices would repeat on every load.
warnings.filterwarnings("ignore", category=dg.BetaWarning)
warnings.filterwarnings("ignore", category=dg.PreviewWarning)
# Code servers of `dagster dev` and the run workers they start import this file: one planned
# event per asset for a ranged run, batched materialisation writes (resources/instance_env.py).
apply_instance_env()


# Each family's registration (lifecycle.family's contract + its lineage); assets/value.py is the
# short example of adding one.
REGISTRATIONS = {
    "churn": churn.registration,
    "recommender": recommender.registration,
    "value": value.registration,
}


def build_defs(settings: Settings) -> dg.Definitions:
    """Definitions for one settings file; tests build their own from temporary settings.

    The graph holds what the source provides: a transactions-only source gets the churn family,
    an interactions-only one the recommender, and no job, schedule or sensor names the other.
    """
    partitions = build_partitions(settings)
    keys = Selection.of(settings)
    assets: list = [*build_ingest_assets(partitions, settings)]  # the configured tables only
    if FEATURES_KEY in keys.ingest:
        features = build_feature_assets(partitions, settings)
        assets += [a for a in features if keys.labels or LABELS not in a.keys]
    registrations = [REGISTRATIONS[name](settings) for name in keys.families]
    for registration in registrations:
        assets += build_family_assets(registration, partitions, settings)
    drift = [(r.keys, r.family.daily_check.name) for r in registrations if r.family.daily_check]
    jobs = build_jobs(keys)
    duckdb_config = settings.warehouse.connection_config()
    return dg.Definitions(
        assets=assets,
        jobs=jobs.all(),
        schedules=build_schedules(settings, partitions, jobs),
        sensors=build_sensors(settings, partitions, jobs, drift),
        resources={
            "io_manager": WarehouseIOManager(
                database=settings.warehouse.database, connection_config=duckdb_config
            ),
            "source": source_from_settings(settings),
            "registry": RegistryResource(
                database=settings.warehouse.database,
                artifact_root=settings.warehouse.artifact_root,
                connection_config=duckdb_config,
            ),
            "warehouse": Warehouse(
                database=settings.warehouse.database, connection_config=duckdb_config
            ),
            "publisher": publisher_from_settings(settings),
            "alerts": alerts_from_settings(settings),
        },
        # One DuckDB file has one writer: steps of a run execute one after another.
        executor=dg.in_process_executor,
    )


defs = build_defs(load_settings())
