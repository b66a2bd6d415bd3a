"""Shared by the reliability tests: PostgreSQL and registry helpers, and the child processes
that stand in for a second run or a run that gets SIGKILLed.

A child is this module run as ``python -m tests.reliability_support <child> <args…>``; it uses
the project's own IO manager, registry and definitions, and prints one JSON line.
"""

import datetime as dt
import json
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import numpy as np
import pandas as pd
import psycopg2
import pytest

from assets.keys import raw_keys
from definitions import build_defs
from lifecycle.registry import ModelRegistry, ModelVersion
from lifecycle.settings import Settings
from resources.publisher import publisher_from_settings
from resources.warehouse import WarehouseIOManager
from tests.conftest import failure_text, run, small_settings

REPO = Path(__file__).resolve().parent.parent
TX_RAW = raw_keys("transactions")
DAY = "2026-01-05"
NOW = dt.datetime(2026, 4, 2, 8, 0, tzinfo=dt.UTC)
D1, D2 = pd.Timestamp("2026-04-10"), pd.Timestamp("2026-04-11")
# Recognisable secrets: the server trusts local connections, so any password gets in.
SECRET = "Pl4nted-e13-pw"
PUBLISH_ENV = "E13_PREDICTIONS_URL"


# --- PostgreSQL ----------------------------------------------------------------------------------


def pg_url(port: int = 5432, password: str = SECRET) -> str:
    return f"postgresql+psycopg2://postgres:{password}@127.0.0.1:{port}/test"


def admin() -> psycopg2.extensions.connection:
    try:
        conn = psycopg2.connect(
            host="127.0.0.1", port=5432, user="postgres", dbname="test", connect_timeout=5
        )
    except psycopg2.OperationalError as exc:
        pytest.fail(f"PostgreSQL at 127.0.0.1:5432 is not reachable: {exc}")
    conn.autocommit = True
    return conn


def pg(sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    conn = admin()
    try:
        with conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall() if cur.description else []
    finally:
        conn.close()


@contextmanager
def fresh_schema() -> Iterator[str]:
    """A fresh schema name in database ``test``, dropped afterwards."""
    name = f"e13_{uuid.uuid4().hex[:10]}"
    try:
        yield name
    finally:
        pg(f'drop schema if exists "{name}" cascade')


def scores(ids: list[str], score: float) -> pd.DataFrame:
    """A day of predictions/churn_scores rows (ids are text, as in the warehouse)."""
    return pd.DataFrame(
        {
            "customer_id": ids,
            "as_of_date": pd.Series([D1] * len(ids), dtype="datetime64[ns]"),
            "model_version": "v_260401_080000",
            "score": [score + i / 100 for i in range(len(ids))],
        }
    )


def publish_with(settings: Settings, frame: pd.DataFrame) -> int:
    """Publish through the resource the definitions wire (its URL an EnvVar, read now)."""
    with dg.build_resources({"publisher": publisher_from_settings(settings)}) as resources:
        return resources.publisher.publish("churn_scores", frame, "as_of_date", D1, D2)


def published(schema: str) -> pd.DataFrame:
    rows = pg(f'select customer_id, score from "{schema}".churn_scores order by customer_id')
    return pd.DataFrame(rows, columns=["customer_id", "score"])


# --- the model registry --------------------------------------------------------------------------


def register(reg: ModelRegistry, tmp: Path, tag: str, size: int = 64) -> ModelVersion:
    src = tmp / f"src_{tag}"
    src.mkdir(exist_ok=True)
    (src / "model.ubj").write_bytes(np.random.default_rng(len(tag)).bytes(size))
    return reg.register(
        "churn", "2026-04-01", [src / "model.ubj"], "ds-1", {}, {"roc_auc": 0.8}, "c1", "r1", NOW
    )


def registry_with_champion(tmp: Path) -> tuple[ModelRegistry, ModelVersion]:
    reg = ModelRegistry(tmp / "warehouse.duckdb", tmp / "artifacts")
    champion = register(reg, tmp, "champion")
    reg.set_alias("churn", "champion", champion.version, "promote", "r1", "first", NOW)
    return reg, champion


def assert_registry_untouched(reg: ModelRegistry, champion: ModelVersion) -> None:
    assert reg.versions("churn") == [champion]
    assert reg.alias("churn", "champion") == champion
    assert sorted(p.name for p in (reg.artifact_root / "churn").iterdir()) == [champion.version]
    assert len(reg.history("churn")) == 1


# --- child processes -----------------------------------------------------------------------------


def child(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tests.reliability_support", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def spawn(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.reliability_support", *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


WRITE_DAYS = dg.DailyPartitionsDefinition(start_date="2026-03-01", end_date="2026-03-11")


def events_asset(variant: str, per_day: int, marker: str) -> dg.AssetsDefinition:
    """A daily table written by the warehouse IO manager: ``per_day`` rows a day, all tagged
    ``variant``, so a reader can tell which run's rows a day holds."""

    @dg.asset(
        key=["wh", "events"],
        partitions_def=WRITE_DAYS,
        metadata={"partition_expr": "event_date"},
        backfill_policy=dg.BackfillPolicy.single_run(),
    )
    def events(context: dg.AssetExecutionContext) -> pd.DataFrame:
        window = context.partition_time_window
        days = pd.date_range(
            pd.Timestamp(window.start).tz_localize(None),
            pd.Timestamp(window.end).tz_localize(None) - pd.Timedelta(days=1),
        )
        n = len(days) * per_day
        frame = pd.DataFrame(
            {
                "event_date": np.repeat(days.values, per_day),
                "id": np.arange(n, dtype="int64"),
                "variant": variant,
                "value": np.random.default_rng(0).random(n),
            }
        )
        if marker != "-":
            Path(marker).write_text(str(time.time()))  # computed: the write starts now
        return frame

    return events


def write_events(
    database: str, variant: str, per_day: str, start: str, end: str, marker: str = "-"
) -> None:
    """Child: one run writing ``[start, end]`` (one day when equal) into ``database``."""
    go = Path(database).with_suffix(".go")
    while marker != "-" and not go.exists():  # concurrent children start writing together
        time.sleep(0.01)
    result = dg.materialize(
        [events_asset(variant, int(per_day), marker)],
        resources={"io_manager": WarehouseIOManager(database=database)},
        instance=dg.DagsterInstance.ephemeral(),
        tags={
            "dagster/asset_partition_range_start": start,
            "dagster/asset_partition_range_end": end,
        },
        raise_on_error=False,
    )
    print(json.dumps({"success": result.success, "error": failure_text(result), "t": time.time()}))


def day_variants(database: Path) -> dict[str, tuple[str, int]]:
    """Per day: the one variant its rows carry and how many there are (fails on a mix)."""
    with duckdb.connect(str(database)) as con:
        rows = con.execute(
            "select strftime(event_date, '%Y-%m-%d'), list(distinct variant), count(*) "
            "from wh.events group by 1 order by 1"
        ).fetchall()
    out = {}
    for day, variants, count in rows:
        assert len(variants) == 1, f"{day} mixes rows of {variants}"
        out[day] = (variants[0], count)
    return out


def register_capped(database: str, root: str, source: str, limit: str) -> None:
    """Child: register ``source`` with file writes capped at ``limit`` bytes (RLIMIT_FSIZE, the
    unprivileged stand-in for a full disk: the copy fails part-way with EFBIG)."""
    import resource

    reg = ModelRegistry(database, root)
    reg.versions("churn")  # the schema exists; only the artifact copy writes from here on
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a fatal signal
    resource.setrlimit(resource.RLIMIT_FSIZE, (int(limit), resource.RLIM_INFINITY))
    try:
        mv = reg.register(
            "churn", "2026-05-01", [Path(source)], "ds-2", {}, {"roc_auc": 0.9}, "c1", "r2", NOW
        )
    except OSError as exc:
        print(json.dumps({"errno": exc.errno, "error": str(exc)}))
    else:
        print(json.dumps({"registered": mv.version}))


def ingest_day(root: str) -> None:
    """Child: materialise the raw transactions of one day in the small world under ``root``."""
    started = time.perf_counter()
    result = run(
        build_defs(small_settings(Path(root))),
        dg.DagsterInstance.ephemeral(),
        TX_RAW,
        partition=DAY,
        raise_on_error=False,
    )
    seconds = time.perf_counter() - started
    print(json.dumps({"success": result.success, "error": failure_text(result), "s": seconds}))


CHILDREN: dict[str, Callable[..., None]] = {
    "write": write_events,
    "register-capped": register_capped,
    "ingest-day": ingest_day,
}


def last_json(out: str) -> dict[str, Any]:
    return json.loads(out.strip().splitlines()[-1])


if __name__ == "__main__":
    CHILDREN[sys.argv[1]](*sys.argv[2:])
