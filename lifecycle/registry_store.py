"""How the registry sits in DuckDB: schema, connections, and row encoding.

Storage is the shared warehouse file (schema ``registry``). The file is also written by other
components in the same process, so the registry opens a short-lived connection per call and
closes it before returning; this module only knows how to open one (waiting out another
process's lock, nothing else), what the tables look like, and how records map to rows.
Timestamps are stored as naive UTC so the session ``TimeZone`` never shifts them; params and
metrics as sorted JSON so rows compare and diff cleanly.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import duckdb

from lifecycle.model_records import ModelVersion
from lifecycle.version_ids import require_aware

SCHEMA = "registry"
# DuckDB refuses a second in-process connection to a file that is already open with another
# configuration. Dagster's DuckDB resource and IO manager always connect with exactly this, so
# the registry matches it by default and can share the warehouse file while they hold it open.
DAGSTER_DUCKDB_CONFIG: Mapping[str, str] = {"custom_user_agent": "dagster"}
# Another *process* holding the file (multiprocess executor) raises IOException; retry briefly.
CONNECT_DELAYS_S: tuple[float, ...] = (0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2)


DDL = f"""
CREATE SCHEMA IF NOT EXISTS {SCHEMA};
CREATE TABLE IF NOT EXISTS {SCHEMA}.model_versions (
    model_name      VARCHAR   NOT NULL,
    version         VARCHAR   NOT NULL,
    partition_key   VARCHAR   NOT NULL,
    created_at      TIMESTAMP NOT NULL,  -- UTC
    artifact_dir    VARCHAR   NOT NULL,  -- relative to the artifact root
    files_sha256    VARCHAR   NOT NULL,  -- JSON {{file name: sha256}}
    sha256          VARCHAR   NOT NULL,  -- manifest digest
    dataset_version VARCHAR   NOT NULL,
    params          VARCHAR   NOT NULL,  -- JSON
    metrics         VARCHAR   NOT NULL,  -- JSON {{name: float}}
    code_version    VARCHAR   NOT NULL,
    run_id          VARCHAR   NOT NULL,
    PRIMARY KEY (model_name, version)
);
CREATE TABLE IF NOT EXISTS {SCHEMA}.aliases (
    model_name VARCHAR   NOT NULL,
    alias      VARCHAR   NOT NULL,
    version    VARCHAR   NOT NULL,
    updated_at TIMESTAMP NOT NULL,  -- UTC
    PRIMARY KEY (model_name, alias)
);
CREATE SEQUENCE IF NOT EXISTS {SCHEMA}.alias_event_seq;
CREATE TABLE IF NOT EXISTS {SCHEMA}.alias_events (
    seq          BIGINT    PRIMARY KEY DEFAULT nextval('{SCHEMA}.alias_event_seq'),
    model_name   VARCHAR   NOT NULL,
    alias        VARCHAR   NOT NULL,
    from_version VARCHAR,
    to_version   VARCHAR   NOT NULL,
    event        VARCHAR   NOT NULL,
    run_id       VARCHAR   NOT NULL,
    event_at     TIMESTAMP NOT NULL,  -- UTC
    reason       VARCHAR   NOT NULL
);
"""

MV_COLUMNS = (
    "model_name, version, partition_key, created_at, artifact_dir, files_sha256, sha256, "
    "dataset_version, params, metrics, code_version, run_id"
)


# --------------------------------------------------------------------------- connections


def open_connection(database: Path, config: Mapping[str, Any]) -> duckdb.DuckDBPyConnection:
    """Connect, waiting (~6 s in all) only while another process holds the file's lock."""
    for delay in (*CONNECT_DELAYS_S, None):
        try:
            return duckdb.connect(str(database), config=dict(config))
        except duckdb.IOException as exc:
            # Only a lock held by another process is worth waiting for; a corrupted or
            # foreign file fails at once.
            if delay is None or "lock" not in str(exc).lower():
                raise
            time.sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover


@contextlib.contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    """Commit what the block wrote, or roll all of it back if the block raised."""
    con.execute("BEGIN TRANSACTION")
    try:
        yield con
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")


# --------------------------------------------------------------------------- encoding


def _json_default(value: Any) -> Any:
    # numpy scalars/arrays show up in hyper-parameters from searches; store them as plain JSON.
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable: {value!r}")


def params_json(value: Mapping[str, Any]) -> str:
    """Params as sorted JSON; refuses (TypeError) what would not round-trip."""
    return json.dumps(dict(value), sort_keys=True, default=_json_default)


def metrics_json(metrics: Mapping[str, float]) -> str:
    """Metrics as sorted JSON of floats; refuses (TypeError) non-str names and non-numbers."""
    clean: dict[str, float] = {}
    for name, value in metrics.items():
        if not isinstance(name, str):
            raise TypeError(f"metric names must be str, got {name!r}")
        try:
            clean[name] = float(value)
        except (TypeError, ValueError):
            raise TypeError(f"metric {name!r} is not a number: {value!r}") from None
    # NaN is kept (an undefined metric is information); Python's json round-trips it.
    return json.dumps(clean, sort_keys=True)


def naive_utc(value: dt.datetime) -> dt.datetime:
    """An aware datetime as the naive UTC a ``TIMESTAMP`` column stores."""
    return require_aware(value, "timestamp").replace(tzinfo=None)


def aware_utc(value: dt.datetime) -> dt.datetime:
    """A stored naive-UTC ``TIMESTAMP`` back as an aware datetime."""
    return value.replace(tzinfo=dt.UTC)


def insert_version(
    con: duckdb.DuckDBPyConnection, mv: ModelVersion, params_json: str, metrics_json: str
) -> None:
    """Write the version's row as one auto-committed statement (the artifact dir relative)."""
    con.execute(
        f"INSERT INTO {SCHEMA}.model_versions ({MV_COLUMNS}) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            mv.model_name,
            mv.version,
            mv.partition_key,
            naive_utc(mv.created_at),
            f"{mv.model_name}/{mv.version}",
            json.dumps(dict(mv.files_sha256), sort_keys=True),
            mv.sha256,
            mv.dataset_version,
            params_json,
            metrics_json,
            mv.code_version,
            mv.run_id,
        ],
    )


def row_to_version(row: Sequence[Any], artifact_root: Path) -> ModelVersion:
    """A ``model_versions`` row (columns :data:`MV_COLUMNS`) as a record."""
    (
        model_name,
        version,
        partition_key,
        created_at,
        artifact_dir,
        files_json,
        sha256,
        dataset_version,
        params_json,
        metrics_json_,
        code_version,
        run_id,
    ) = row
    return ModelVersion(
        model_name=model_name,
        version=version,
        partition_key=partition_key,
        created_at=aware_utc(created_at),
        artifact_dir=str(artifact_root / artifact_dir),
        files_sha256=json.loads(files_json),
        sha256=sha256,
        dataset_version=dataset_version,
        params=json.loads(params_json),
        metrics=json.loads(metrics_json_),
        code_version=code_version,
        run_id=run_id,
    )


# --------------------------------------------------------------------------- statements


def select_versions(
    con: duckdb.DuckDBPyConnection, where: str, params: Sequence[Any], artifact_root: Path
) -> list[ModelVersion]:
    """Versions matching a ``WHERE`` clause over ``model_versions``."""
    rows = con.execute(
        f"SELECT {MV_COLUMNS} FROM {SCHEMA}.model_versions WHERE {where} "
        "ORDER BY model_name, version",
        list(params),
    ).fetchall()
    return [row_to_version(r, artifact_root) for r in rows]


def version_ids(con: duckdb.DuckDBPyConnection, model_name: str) -> set[str]:
    """Every registered version id of a model."""
    rows = con.execute(
        f"SELECT version FROM {SCHEMA}.model_versions WHERE model_name = ?", [model_name]
    ).fetchall()
    return {r[0] for r in rows}
