"""Model registry shared by the churn (XGBoost) and recommender (ALS) model families.

A model version is immutable: its artifact files are copied once into
``<artifact_root>/<model_name>/<version>/``, hashed from the copies, made read-only, and
described by one row in ``registry.model_versions`` (dataset version, params, metrics, code
version, run id). Every consumer loads artifacts through :meth:`ModelRegistry.verified_path`,
so a file that changed after registration is refused instead of silently served.

Aliases (``champion`` / ``challenger``) point at versions; every change is appended to
``registry.alias_events`` so promotions and rollbacks can be audited and reversed.

Storage is the shared DuckDB file (schema ``registry``). The file is also written by other
components in the same process, so each call opens a short-lived connection and closes it
before returning; nothing is cached between calls.

The promotion rules (:func:`decide_promotion`, :func:`decide_rollback`) are pure functions in
:mod:`lifecycle.promotion_rules`, the records in :mod:`lifecycle.model_records`; both are
re-exported here so callers import one module.

Version ids
-----------
``v_YYMMDD_HHMMSS`` in UTC (e.g. ``v_260115_080000``). A second version of the same model in
the same second gets a zero-padded counter: ``v_260115_080000_002``, ``_003`` ... ``_999``.
Because the stamp has a fixed width and the counter is zero-padded, plain string order equals
creation order (the un-suffixed id sorts before its ``_002`` sibling). If the clock reads
earlier than the newest existing id (clock skew, back-dated ``now``), the new id continues the
newest stamp's counter instead, so ids never go backwards; ``created_at`` still records ``now``.
The two-digit year covers 2000-2099.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import enum
import hashlib
import json
import math
import os
import re
import shutil
import stat
import time
from collections.abc import Collection, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from lifecycle.model_records import (
    ALIASES,
    EVENTS,
    NO_CHAMPION,
    AliasConflict,
    AliasEvent,
    ArtifactIntegrityError,
    GateResult,
    ModelVersion,
    PromotionDecision,
    PromotionRefused,
)
from lifecycle.promotion_rules import decide_promotion, decide_rollback

__all__ = [
    "ALIASES",
    "DAGSTER_DUCKDB_CONFIG",
    "EVENTS",
    "NO_CHAMPION",
    "UNCHECKED",
    "AliasConflict",
    "AliasEvent",
    "ArtifactIntegrityError",
    "GateResult",
    "ModelRegistry",
    "ModelVersion",
    "PromotionDecision",
    "PromotionRefused",
    "decide_promotion",
    "decide_rollback",
    "manifest_sha256",
    "new_version_id",
    "sha256_file",
]


SCHEMA = "registry"
# DuckDB refuses a second in-process connection to a file that is already open with another
# configuration. Dagster's DuckDB resource and IO manager always connect with exactly this, so
# the registry matches it by default and can share the warehouse file while they hold it open.
DAGSTER_DUCKDB_CONFIG: Mapping[str, str] = {"custom_user_agent": "dagster"}
# Another *process* holding the file (multiprocess executor) raises IOException; retry briefly.
_CONNECT_DELAYS_S: tuple[float, ...] = (0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2)
_CHUNK = 1 << 20
_MAX_COUNTER = 999
_VERSION_RE = re.compile(r"^v_(\d{6}_\d{6})(?:_(\d{3}))?$")
# Model names become directory names, so keep them to a portable, traversal-free alphabet.
_MODEL_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class _Unchecked(enum.Enum):
    UNCHECKED = "unchecked"


# ``set_alias(expected=UNCHECKED)``: move the alias whatever it points at (no compare-and-set).
UNCHECKED = _Unchecked.UNCHECKED


# --------------------------------------------------------------------------- helpers


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, streamed so large model files do not load into memory."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def manifest_sha256(files_sha256: Mapping[str, str]) -> str:
    """One digest for a whole version: sha256 of ``"<sha>  <name>\\n"`` lines sorted by name.

    The line format is ``sha256sum``'s, so the digest can be reproduced with standard tools.
    """
    lines = "".join(f"{files_sha256[name]}  {name}\n" for name in sorted(files_sha256))
    return hashlib.sha256(lines.encode("utf-8")).hexdigest()


def _require_aware(value: dt.datetime, what: str) -> dt.datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware (got naive {value.isoformat()})")
    return value.astimezone(dt.UTC)


def new_version_id(now: dt.datetime, existing: Collection[str]) -> str:
    """A readable, sortable id ``v_YYMMDD_HHMMSS[_NNN]`` later than every id in ``existing``.

    See the module docstring for the scheme; ids in ``existing`` that do not follow it are
    ignored.
    """
    now_utc = _require_aware(now, "now")
    if not 2000 <= now_utc.year <= 2099:
        raise ValueError(f"version ids cover 2000-2099, got {now_utc.isoformat()}")
    stamp = now_utc.strftime("%y%m%d_%H%M%S")
    ours = sorted(v for v in existing if _VERSION_RE.match(v))
    if not ours:
        return f"v_{stamp}"
    match = _VERSION_RE.match(ours[-1])
    assert match is not None  # filtered above
    latest_stamp, latest_counter = match.group(1), match.group(2)
    if stamp > latest_stamp:
        return f"v_{stamp}"
    counter = (int(latest_counter) if latest_counter else 1) + 1
    if counter > _MAX_COUNTER:
        raise ValueError(f"more than {_MAX_COUNTER} versions stamped v_{latest_stamp}")
    return f"v_{latest_stamp}_{counter:03d}"


def _json_default(value: Any) -> Any:
    # numpy scalars/arrays show up in hyper-parameters from searches; store them as plain JSON.
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable: {value!r}")


def _to_json(value: Mapping[str, Any]) -> str:
    return json.dumps(dict(value), sort_keys=True, default=_json_default)


def _metrics_json(metrics: Mapping[str, float]) -> str:
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


def _naive_utc(value: dt.datetime) -> dt.datetime:
    # Stored in TIMESTAMP columns as naive UTC so the session TimeZone never shifts them.
    return _require_aware(value, "timestamp").replace(tzinfo=None)


def _aware_utc(value: dt.datetime) -> dt.datetime:
    return value.replace(tzinfo=dt.UTC)


def _check_model_name(model_name: str) -> None:
    if not _MODEL_NAME_RE.match(model_name):
        raise ValueError(
            f"model name {model_name!r} must match {_MODEL_NAME_RE.pattern} (it names a folder)"
        )


def _check_alias(alias: str) -> None:
    if alias not in ALIASES:
        raise ValueError(f"unknown alias {alias!r}; expected one of {', '.join(ALIASES)}")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_artifacts(version_dir: Path, sources: Sequence[Path]) -> dict[str, str]:
    """Copy, fsync, hash (from the copy) and make read-only; returns ``{name: sha256}``."""
    files_sha256: dict[str, str] = {}
    for src in sources:
        dest = version_dir / src.name
        shutil.copyfile(src, dest)
        with dest.open("rb") as fh:
            os.fsync(fh.fileno())
        files_sha256[src.name] = sha256_file(dest)
        dest.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
    _fsync_dir(version_dir)
    return dict(sorted(files_sha256.items()))


# --------------------------------------------------------------------------- registry

_DDL = f"""
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

_MV_COLUMNS = (
    "model_name, version, partition_key, created_at, artifact_dir, files_sha256, sha256, "
    "dataset_version, params, metrics, code_version, run_id"
)
_EVENT_COLUMNS = "seq, model_name, alias, from_version, to_version, event, run_id, event_at, reason"
HISTORY_COLUMNS: tuple[str, ...] = (
    "seq",
    "model_name",
    "alias",
    "from_version",
    "to_version",
    "event",
    "run_id",
    "at",
    "reason",
)
SUMMARY_COLUMNS: tuple[str, ...] = (
    "model_name",
    "version",
    "partition_key",
    "created_at",
    "dataset_version",
    "code_version",
    "run_id",
    "sha256",
    "params",
    "metrics",
    "aliases",
    "ever_champion",
)


class ModelRegistry:
    """Registry over a DuckDB file and an artifact root; holds no open connection."""

    def __init__(
        self,
        database: str | Path,
        artifact_root: str | Path,
        connection_config: Mapping[str, Any] | None = None,
    ) -> None:
        """``connection_config`` must equal that of any other connection this process keeps
        open on the same file (default: Dagster's, see :data:`DAGSTER_DUCKDB_CONFIG`)."""
        # Resolved once so a later chdir cannot point the registry somewhere else.
        self.database = Path(database).resolve()
        self.artifact_root = Path(artifact_root).resolve()
        self.connection_config: dict[str, Any] = dict(
            DAGSTER_DUCKDB_CONFIG if connection_config is None else connection_config
        )
        self._schema_ready = False

    def __repr__(self) -> str:
        return f"ModelRegistry(database={self.database!s}, artifact_root={self.artifact_root!s})"

    # ----------------------------------------------------------------- plumbing

    @contextlib.contextmanager
    def _connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        self.database.parent.mkdir(parents=True, exist_ok=True)
        con = self._open()
        try:
            if not self._schema_ready:
                con.execute(_DDL)
                self._schema_ready = True
            yield con
        finally:
            con.close()

    def _open(self) -> duckdb.DuckDBPyConnection:
        for delay in (*_CONNECT_DELAYS_S, None):
            try:
                return duckdb.connect(str(self.database), config=dict(self.connection_config))
            except duckdb.IOException as exc:
                # Only a lock held by another process is worth waiting for; a corrupted or
                # foreign file fails at once.
                if delay is None or "lock" not in str(exc).lower():
                    raise
                time.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        with self._connect() as con:
            con.execute("BEGIN TRANSACTION")
            try:
                yield con
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")

    def ensure_schema(self) -> None:
        """Create the ``registry`` schema and tables if missing; safe to call any time.

        Every method also does this lazily on first use; calling it at start-up just surfaces
        a bad database path before any model is trained.
        """
        self._schema_ready = False
        with self._connect():
            pass

    def _row_to_version(self, row: Sequence[Any]) -> ModelVersion:
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
            metrics_json,
            code_version,
            run_id,
        ) = row
        return ModelVersion(
            model_name=model_name,
            version=version,
            partition_key=partition_key,
            created_at=_aware_utc(created_at),
            artifact_dir=str(self.artifact_root / artifact_dir),
            files_sha256=json.loads(files_json),
            sha256=sha256,
            dataset_version=dataset_version,
            params=json.loads(params_json),
            metrics=json.loads(metrics_json),
            code_version=code_version,
            run_id=run_id,
        )

    def _select_versions(self, where: str, params: Sequence[Any]) -> list[ModelVersion]:
        with self._connect() as con:
            rows = con.execute(
                f"SELECT {_MV_COLUMNS} FROM {SCHEMA}.model_versions WHERE {where} "
                "ORDER BY model_name, version",
                list(params),
            ).fetchall()
        return [self._row_to_version(r) for r in rows]

    # ----------------------------------------------------------------- versions

    def register(
        self,
        model_name: str,
        partition_key: str,
        source_files: Sequence[Path],
        dataset_version: str,
        params: Mapping[str, Any],
        metrics: Mapping[str, float],
        code_version: str,
        run_id: str,
        now: dt.datetime,
    ) -> ModelVersion:
        """Copy ``source_files`` into a new version folder and record the version.

        Files are written, fsynced and hashed from the copies first; the row is inserted last,
        so a crash can leave an orphan folder (skipped by later ids) but never a row without
        files. The version folder is claimed with an exclusive ``mkdir``: an existing folder
        raises :class:`FileExistsError` rather than being overwritten.
        """
        _check_model_name(model_name)
        created_at = _require_aware(now, "now")
        sources = [Path(p) for p in source_files]
        if not sources:
            raise ValueError(f"{model_name}: a model version needs at least one artifact file")
        names = [p.name for p in sources]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"{model_name}: artifact file names must be unique: {duplicates}")
        for src in sources:
            if not src.is_file():
                raise FileNotFoundError(f"{model_name}: artifact source {src} is not a file")
        params_json = _to_json(params)
        metrics_json = _metrics_json(metrics)

        model_dir = self.artifact_root / model_name
        model_dir.mkdir(parents=True, exist_ok=True)
        # One connection for the whole call (opening DuckDB costs ~50 ms); it is closed on return.
        with self._connect() as con:
            known = {
                r[0]
                for r in con.execute(
                    f"SELECT version FROM {SCHEMA}.model_versions WHERE model_name = ?",
                    [model_name],
                ).fetchall()
            }
            # Orphan folders from interrupted registrations count as taken: never reuse them.
            known |= {p.name for p in model_dir.iterdir()}
            version = new_version_id(created_at, known)
            version_dir = model_dir / version
            try:
                version_dir.mkdir()  # exclusive claim of the id
            except FileExistsError:
                raise FileExistsError(
                    f"{model_name}: version folder {version_dir} already exists; "
                    "model versions are immutable and are never written twice"
                ) from None
            try:
                files_sha256 = _write_artifacts(version_dir, sources)
                mv = ModelVersion(
                    model_name=model_name,
                    version=version,
                    partition_key=partition_key,
                    created_at=created_at,
                    artifact_dir=str(version_dir),
                    files_sha256=files_sha256,
                    sha256=manifest_sha256(files_sha256),
                    dataset_version=dataset_version,
                    params=json.loads(params_json),
                    metrics=json.loads(metrics_json),
                    code_version=code_version,
                    run_id=run_id,
                )
                # Row last, as one auto-committed statement: it exists only with its files.
                con.execute(
                    f"INSERT INTO {SCHEMA}.model_versions ({_MV_COLUMNS}) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [
                        model_name,
                        version,
                        partition_key,
                        _naive_utc(created_at),
                        f"{model_name}/{version}",
                        json.dumps(files_sha256, sort_keys=True),
                        mv.sha256,
                        dataset_version,
                        params_json,
                        metrics_json,
                        code_version,
                        run_id,
                    ],
                )
            except BaseException:
                # No row was written, so the folder we claimed is nobody's: remove it.
                shutil.rmtree(version_dir, ignore_errors=True)
                raise
        return mv

    def get(self, model_name: str, version: str) -> ModelVersion:
        """The version, or ``KeyError`` naming it."""
        found = self._select_versions("model_name = ? AND version = ?", [model_name, version])
        if not found:
            raise KeyError(f"model version {model_name}@{version} is not registered")
        return found[0]

    def versions(self, model_name: str) -> list[ModelVersion]:
        """All versions of a model, oldest first (version order is creation order)."""
        found = self._select_versions("model_name = ?", [model_name])
        return sorted(found, key=lambda mv: mv.version)

    def latest_for_partition(self, model_name: str, partition_key: str) -> ModelVersion | None:
        """The newest version trained for a partition, so re-runs supersede earlier ones."""
        found = self._select_versions(
            "model_name = ? AND partition_key = ?", [model_name, partition_key]
        )
        return max(found, key=lambda mv: mv.version) if found else None

    # ----------------------------------------------------------------- aliases

    def alias(self, model_name: str, alias: str) -> ModelVersion | None:
        """The version an alias points at, or None if it was never set."""
        _check_alias(alias)
        found = self._select_versions(
            f"(model_name, version) IN (SELECT model_name, version FROM {SCHEMA}.aliases "
            "WHERE model_name = ? AND alias = ?)",
            [model_name, alias],
        )
        return found[0] if found else None

    def set_alias(
        self,
        model_name: str,
        alias: str,
        version: str,
        event: str,
        run_id: str,
        reason: str,
        now: dt.datetime,
        *,
        expected: str | _Unchecked | None = UNCHECKED,
    ) -> AliasEvent:
        """Point ``alias`` at ``version`` and append the history row in one transaction.

        With ``expected`` (a version, or None for "not set yet") this is a compare-and-set: the
        alias is re-read inside the transaction and :class:`AliasConflict` is raised, with
        nothing written, if it no longer points there — also when a concurrent transaction
        wins the write. Whether the move is allowed is decided beforehand by
        :func:`decide_promotion` / :func:`decide_rollback`, against that same ``expected``.
        """
        _check_alias(alias)
        if event not in EVENTS:
            raise ValueError(f"unknown alias event {event!r}; expected one of {EVENTS}")
        at = _require_aware(now, "now")
        try:
            from_version = self._move_alias(
                model_name, alias, version, event, run_id, reason, at, expected
            )
        except (duckdb.TransactionException, duckdb.ConstraintException):
            # A concurrent transaction wrote the same alias row first (DuckDB's optimistic
            # concurrency): with a compare-and-set that is a lost race, reported as such.
            if expected is UNCHECKED:
                raise
            actual = self._alias_version(model_name, alias)
            for delay in _CONNECT_DELAYS_S[:4]:  # ~0.75 s for the winner to commit
                if actual != expected:
                    break
                time.sleep(delay)
                actual = self._alias_version(model_name, alias)
            raise AliasConflict(model_name, alias, expected, actual, version) from None
        return AliasEvent(
            model_name=model_name,
            alias=alias,
            from_version=from_version,
            to_version=version,
            event=event,  # type: ignore[arg-type]  # validated against EVENTS above
            run_id=run_id,
            at=at,
            reason=reason,
        )

    def _alias_version(self, model_name: str, alias: str) -> str | None:
        with self._connect() as con:
            row = con.execute(
                f"SELECT version FROM {SCHEMA}.aliases WHERE model_name = ? AND alias = ?",
                [model_name, alias],
            ).fetchone()
        return None if row is None else str(row[0])

    def _move_alias(
        self,
        model_name: str,
        alias: str,
        version: str,
        event: str,
        run_id: str,
        reason: str,
        at: dt.datetime,
        expected: str | _Unchecked | None,
    ) -> str | None:
        """The write of :meth:`set_alias`; returns the version the alias pointed at before."""
        with self._transaction() as con:
            exists = con.execute(
                f"SELECT count(*) FROM {SCHEMA}.model_versions "
                "WHERE model_name = ? AND version = ?",
                [model_name, version],
            ).fetchone()
            if not exists or exists[0] == 0:
                raise KeyError(
                    f"cannot set {alias} of {model_name}: "
                    f"version {model_name}@{version} is not registered"
                )
            current = con.execute(
                f"SELECT version FROM {SCHEMA}.aliases WHERE model_name = ? AND alias = ?",
                [model_name, alias],
            ).fetchone()
            from_version = None if current is None else str(current[0])
            if expected is not UNCHECKED and from_version != expected:
                raise AliasConflict(model_name, alias, expected, from_version, version)
            con.execute(
                f"INSERT INTO {SCHEMA}.aliases (model_name, alias, version, updated_at) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (model_name, alias) "
                "DO UPDATE SET version = excluded.version, updated_at = excluded.updated_at",
                [model_name, alias, version, _naive_utc(at)],
            )
            con.execute(
                f"INSERT INTO {SCHEMA}.alias_events "
                "(model_name, alias, from_version, to_version, event, run_id, event_at, reason) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [model_name, alias, from_version, version, event, run_id, _naive_utc(at), reason],
            )
        return from_version

    def _event_rows(self, model_name: str | None) -> list[tuple[Any, ...]]:
        where, params = ("WHERE model_name = ?", [model_name]) if model_name else ("", [])
        with self._connect() as con:
            return con.execute(
                f"SELECT {_EVENT_COLUMNS} FROM {SCHEMA}.alias_events {where} ORDER BY seq",
                params,
            ).fetchall()

    def events(self, model_name: str | None = None) -> list[AliasEvent]:
        """Alias history as typed records, oldest first."""
        return [
            AliasEvent(
                model_name=r[1],
                alias=r[2],
                from_version=r[3],
                to_version=r[4],
                event=r[5],
                run_id=r[6],
                at=_aware_utc(r[7]),
                reason=r[8],
            )
            for r in self._event_rows(model_name)
        ]

    def history(self, model_name: str | None = None) -> pd.DataFrame:
        """Alias history as a DataFrame (columns :data:`HISTORY_COLUMNS`), newest last."""
        frame = pd.DataFrame(self._event_rows(model_name), columns=list(HISTORY_COLUMNS))
        frame["seq"] = frame["seq"].astype("int64")
        frame["at"] = pd.to_datetime(frame["at"]).dt.tz_localize("UTC")
        return frame

    def ever_alias(self, model_name: str, alias: str, version: str) -> bool:
        """Whether ``version`` ever held ``alias`` (e.g. a rollback target must be ex-champion)."""
        _check_alias(alias)
        with self._connect() as con:
            row = con.execute(
                f"SELECT count(*) FROM {SCHEMA}.alias_events "
                "WHERE model_name = ? AND alias = ? AND to_version = ?",
                [model_name, alias, version],
            ).fetchone()
        return bool(row and row[0])

    def rollbacks_from(self, model_name: str, version: str) -> list[AliasEvent]:
        """Rollbacks that moved the champion away from ``version`` (it was judged bad), oldest
        first; restoring such a version needs an explicit override."""
        return [
            e
            for e in self.events(model_name)
            if e.alias == "champion" and e.event == "rollback" and e.from_version == version
        ]

    # ----------------------------------------------------------------- reporting

    def summary(self) -> pd.DataFrame:
        """One row per version with aliases held and metrics flattened as ``metric_<name>``.

        Columns: :data:`SUMMARY_COLUMNS` followed by one ``metric_<name>`` column per metric
        name seen in any version (NaN where a version lacks it).
        """
        with self._connect() as con:
            rows = con.execute(
                f"""
                SELECT v.model_name, v.version, v.partition_key, v.created_at,
                       v.dataset_version, v.code_version, v.run_id, v.sha256,
                       v.params, v.metrics,
                       coalesce((SELECT string_agg(a.alias, ',' ORDER BY a.alias)
                                 FROM {SCHEMA}.aliases a
                                 WHERE a.model_name = v.model_name
                                   AND a.version = v.version), '') AS aliases,
                       EXISTS (SELECT 1 FROM {SCHEMA}.alias_events e
                               WHERE e.model_name = v.model_name
                                 AND e.to_version = v.version
                                 AND e.alias = 'champion') AS ever_champion
                FROM {SCHEMA}.model_versions v
                ORDER BY v.model_name, v.version
                """
            ).fetchall()
        frame = pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))
        frame["created_at"] = pd.to_datetime(frame["created_at"]).dt.tz_localize("UTC")
        frame["ever_champion"] = frame["ever_champion"].astype(bool)
        metrics = [json.loads(m) for m in frame["metrics"]]
        names = sorted({name for m in metrics for name in m})
        for name in names:
            frame[f"metric_{name}"] = [float(m.get(name, math.nan)) for m in metrics]
        return frame

    # ----------------------------------------------------------------- integrity

    def verified_path(self, mv: ModelVersion, name: str) -> Path:
        """Path of one artifact after re-hashing it against the registered sha256.

        Raises :class:`ArtifactIntegrityError` if the file changed or vanished, so a tampered
        or half-deleted model is never loaded; ``KeyError`` if ``name`` is not in the version.
        """
        if name not in mv.files_sha256:
            raise KeyError(f"{mv.label} has no artifact {name!r}; it has {sorted(mv.files_sha256)}")
        expected = mv.files_sha256[name]
        path = Path(mv.artifact_dir) / name
        try:
            actual: str | None = sha256_file(path)
        except FileNotFoundError:
            actual = None
        if actual != expected:
            raise ArtifactIntegrityError(path, expected, actual)
        return path

    def verify(self, mv: ModelVersion) -> dict[str, Path]:
        """Verify every artifact of a version; returns ``{name: path}`` when all match."""
        return {name: self.verified_path(mv, name) for name in sorted(mv.files_sha256)}
