"""Shared fixtures: small real settings in a temp dir, real Dagster instances, real DuckDB."""

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import copy
import json
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import numpy as np
import pandas as pd
import pytest
import yaml

from assets.keys import INGEST, LABELS
from definitions import build_defs
from lifecycle.registry import ModelRegistry
from lifecycle.settings import DEMO_SETTINGS, Settings, parse_settings

# A shop small enough for a test, long enough for two monthly challengers:
# 120 days, 30-day look-back warm-up, 14-day label horizon, 2-month training windows.
SMALL = {
    # The two families these tests were written for; the three-family graph and the value
    # family have their own tests (test_family_shape, test_value_family).
    "families": ["churn", "recommender"],
    # Worlds here promote without the days after the month; the out-of-time gate has its own
    # tests (test_value_family) in a world that holds them.
    "schedules": {"out_of_time_gate": False},
    "partitions": {"start_date": "2026-01-01", "end_date": "2026-05-01"},
    "source": {"kind": "synthetic", "synthetic": {"seed": 11, "n_customers": 1500, "n_items": 200}},
    "features": {"windows": [7, 30]},
    "labels": {"horizon_days": 14},
    "churn": {
        "train_months": 2,
        "validation_days": 10,
        "min_train_days": 14,  # April has 23 warmed-up training days in this short world
        "snapshot_every_days": 2,
        "search": {"n_trials": 2, "num_boost_round": 120, "early_stopping_rounds": 15},
        "checks": {"n_boot": 100},
    },
    "recommender": {
        # All history (the default): January's days are in every month's training set.
        "weighting": {"scheme": "alpha", "alpha": 2.0},
        # Head-to-head precision is on held-out pairs neither model trained on (~0.05 here).
        "checks": {"tolerance": 0.005},
        "grid": [{"factors": 8, "regularization": 1.0, "iterations": 15}],
    },
}


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def small_settings(root: Path, override: dict[str, Any] | None = None) -> Settings:
    """Demo settings, shrunk by SMALL, with the warehouse and artifacts under ``root``."""
    raw = deep_merge(yaml.safe_load(DEMO_SETTINGS.read_text()), SMALL)
    paths = {"database": str(root / "warehouse.duckdb"), "artifact_root": str(root / "artifacts")}
    raw = deep_merge(raw, {"warehouse": paths})
    return parse_settings(deep_merge(raw, override or {}), "test settings")


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., Settings]:
    def make(override: dict[str, Any] | None = None) -> Settings:
        return small_settings(tmp_path, override)

    return make


@pytest.fixture
def instance(tmp_path: Path) -> Iterator[dg.DagsterInstance]:
    """A real, persistent (SQLite) instance in a temp DAGSTER_HOME."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    with dg.instance_for_test(temp_dir=str(home)) as inst:
        yield inst


def run(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    keys: Sequence[dg.AssetKey],
    *,
    partition: str | None = None,
    partition_range: tuple[str, str] | None = None,
    run_config: dict[str, Any] | None = None,
    raise_on_error: bool = True,
) -> dg.ExecuteInProcessResult:
    """Materialise ``keys`` (with their checks and multi-asset siblings) like the UI would."""
    tags = None
    if partition_range is not None:
        tags = {
            "dagster/asset_partition_range_start": partition_range[0],
            "dagster/asset_partition_range_end": partition_range[1],
        }
    selection = dg.AssetSelection.assets(*keys).required_multi_asset_neighbors()
    return dg.materialize(
        [*defs.assets, *(defs.asset_checks or [])],  # type: ignore[list-item]
        resources=defs.resources,
        instance=instance,
        selection=selection,
        partition_key=partition,
        tags=tags,
        run_config=run_config,
        raise_on_error=raise_on_error,
    )


class World:
    """One model family's lifecycle in a temp dir: small settings, real instance, real DuckDB."""

    def __init__(self, root: Path, instance: dg.DagsterInstance, model: str) -> None:
        self.settings: Settings = small_settings(root)
        self.defs = build_defs(self.settings)
        self.instance = instance
        self.model = model
        self.registry = ModelRegistry(
            self.settings.warehouse.database, self.settings.warehouse.artifact_root
        )

    def run(self, keys: Sequence[dg.AssetKey], **kwargs: Any) -> dg.ExecuteInProcessResult:
        return run(self.defs, self.instance, keys, **kwargs)

    def sql(self, query: str, params: list | None = None) -> pd.DataFrame:
        with duckdb.connect(self.settings.warehouse.database) as con:
            return con.execute(query, params or []).fetchdf()

    def shuffle_column(
        self, table: str, column: str, where: str, params: list, seed: int = 0
    ) -> duckdb.DuckDBPyConnection:
        """Permute ``column`` over the rows of ``table`` matching ``where`` (bad data reaching a
        training set); returns the open connection for a follow-up statement."""
        rng = np.random.default_rng(seed)
        con = duckdb.connect(self.settings.warehouse.database)
        rows = con.execute(f"select rowid, {column} from {table} where {where}", params).fetchdf()
        shuffled = pd.DataFrame({"i": rows["rowid"], "v": rng.permutation(rows[column])})
        con.register("shuffled", shuffled)
        con.execute(f"update {table} t set {column} = s.v from shuffled s where t.rowid = s.i")
        return con

    def shuffle_churn_labels(self, month: str) -> None:
        """Bad data reaches a training set: its churn labels no longer follow the customers."""
        self.shuffle_column(
            "datasets.churn_training_set", "churned", "dataset_month = ?", [pd.Timestamp(month)]
        ).close()

    def champion(self) -> str | None:
        mv = self.registry.alias(self.model, "champion")
        return mv.version if mv else None

    def gates(self, result: dg.ExecuteInProcessResult) -> dict[str, bool]:
        challenger = dg.AssetKey(["models", f"{self.model}_challenger"])
        return {
            e.check_name: e.passed
            for e in result.get_asset_check_evaluations()
            if e.asset_key == challenger
        }


@contextmanager
def world_in(
    root: Path, model: str, ingest_until: str, labels_until: str | None, cls: type[World] = World
) -> Iterator[World]:
    """A world with raw data and features (and labels) already backfilled in ranged runs."""
    (root / "home").mkdir()
    with dg.instance_for_test(temp_dir=str(root / "home")) as instance:
        world = cls(root, instance, model)
        assert world.run(INGEST, partition_range=("2026-01-01", ingest_until)).success
        if labels_until:
            assert world.run([LABELS], partition_range=("2026-01-01", labels_until)).success
        yield world


def failure_text(result: dg.ExecuteInProcessResult) -> str:
    """Every step failure's message with its causes, as a person reading the run would see."""
    return "\n".join(
        event.step_failure_data.error.to_string()
        for event in result.all_events
        if event.is_step_failure and event.step_failure_data.error
    )


@pytest.fixture
def small_defs(make_settings: Callable[..., Settings]) -> tuple[Settings, dg.Definitions]:
    settings = make_settings()
    return settings, build_defs(settings)


# --- a real webhook receiver -----------------------------------------------------------------


# The URL's last part stands for a secret token: tests check it never reaches logs or alerts.
WEBHOOK_TOKEN = "secret-token-123"


@dataclass
class Webhook:
    """What a real HTTP receiver on 127.0.0.1 got: path, content type and JSON of each post."""

    url: str
    received: list[dict[str, Any]] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)  # replies to give first; then 200


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    state: Webhook | None = None

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            assert state is not None
            body = self.rfile.read(int(self.headers["Content-Length"]))
            state.received.append(
                {"path": self.path, "type": self.headers["Content-Type"], "json": json.loads(body)}
            )
            status = state.statuses.pop(0) if state.statuses else 200
            reply = b'{"ok": true}'
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state = Webhook(url=f"http://127.0.0.1:{server.server_port}/hooks/{WEBHOOK_TOKEN}")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
