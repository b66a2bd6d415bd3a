"""Model registry shared by the churn (XGBoost) and recommender (ALS) model families.

A model version is immutable: its artifact files are copied once into
``<artifact_root>/<model_name>/<version>/``, hashed from the copies, made read-only, and
described by one row in ``registry.model_versions`` (dataset version, params, metrics, code
version, run id). Every consumer loads artifacts through :meth:`ModelRegistry.verified_path`,
so a file that changed after registration is refused instead of silently served.

Aliases (``champion`` / ``challenger``) point at versions; every change is appended to
``registry.alias_events`` so promotions and rollbacks can be audited and reversed.

This module is :class:`ModelRegistry`, which orders the steps (files before rows), and
re-exports the pieces so callers import one module: :mod:`~lifecycle.version_ids` (id scheme),
:mod:`~lifecycle.artifacts` (copy, fsync, read-only, sha256, verify on load),
:mod:`~lifecycle.registry_store` (DuckDB schema, connections, version rows),
:mod:`~lifecycle.registry_aliases` (compare-and-set alias moves, history rows),
:mod:`~lifecycle.registry_reports` (DataFrames), :mod:`~lifecycle.promotion_rules` and
:mod:`~lifecycle.model_records` (the pure rules and the records they read).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import shutil
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from lifecycle import artifacts, registry_aliases, registry_reports
from lifecycle import registry_store as store
from lifecycle.artifacts import manifest_sha256, sha256_file
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
from lifecycle.registry_aliases import UNCHECKED, Unchecked, check_alias
from lifecycle.registry_reports import HISTORY_COLUMNS, SUMMARY_COLUMNS
from lifecycle.registry_store import DAGSTER_DUCKDB_CONFIG, SCHEMA
from lifecycle.version_ids import new_version_id, require_aware

__all__ = [
    "ALIASES",
    "DAGSTER_DUCKDB_CONFIG",
    "EVENTS",
    "HISTORY_COLUMNS",
    "NO_CHAMPION",
    "SCHEMA",
    "SUMMARY_COLUMNS",
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
        con = store.open_connection(self.database, self.connection_config)
        try:
            if not self._schema_ready:
                con.execute(store.DDL)
                self._schema_ready = True
            yield con
        finally:
            con.close()

    def ensure_schema(self) -> None:
        """Create the ``registry`` schema and tables if missing; safe to call any time.

        Every method also does this lazily on first use; calling it at start-up just surfaces
        a bad database path before any model is trained.
        """
        self._schema_ready = False
        with self._connect():
            pass

    def _select_versions(self, where: str, params: Sequence[Any]) -> list[ModelVersion]:
        with self._connect() as con:
            return store.select_versions(con, where, params, self.artifact_root)

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
        artifacts.check_model_name(model_name)
        created_at = require_aware(now, "now")
        sources = artifacts.check_sources(model_name, source_files)
        params_text, metrics_text = store.params_json(params), store.metrics_json(metrics)

        model_dir = self.artifact_root / model_name
        model_dir.mkdir(parents=True, exist_ok=True)
        # One connection for the whole call (opening DuckDB costs ~50 ms); it is closed on return.
        with self._connect() as con:
            known = store.version_ids(con, model_name)
            # Orphan folders from interrupted registrations count as taken: never reuse them.
            known |= {p.name for p in model_dir.iterdir()}
            version = new_version_id(created_at, known)
            version_dir = artifacts.claim_version_dir(model_dir / version)
            try:
                files_sha256 = artifacts.write_artifacts(version_dir, sources)
                mv = ModelVersion(
                    model_name=model_name,
                    version=version,
                    partition_key=partition_key,
                    created_at=created_at,
                    artifact_dir=str(version_dir),
                    files_sha256=files_sha256,
                    sha256=manifest_sha256(files_sha256),
                    dataset_version=dataset_version,
                    params=json.loads(params_text),
                    metrics=json.loads(metrics_text),
                    code_version=code_version,
                    run_id=run_id,
                )
                # Row last, as one auto-committed statement: it exists only with its files.
                store.insert_version(con, mv, params_text, metrics_text)
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
        check_alias(alias)
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
        expected: str | Unchecked | None = UNCHECKED,
    ) -> AliasEvent:
        """Point ``alias`` at ``version`` and append the history row in one transaction.

        With ``expected`` (a version, or None for "not set yet") this is a compare-and-set: the
        alias is re-read inside the transaction and :class:`AliasConflict` is raised, with
        nothing written, if it no longer points there — also when a concurrent transaction
        wins the write. Whether the move is allowed is decided beforehand by
        :func:`decide_promotion` / :func:`decide_rollback`, against that same ``expected``.
        """
        check_alias(alias)
        if event not in EVENTS:
            raise ValueError(f"unknown alias event {event!r}; expected one of {EVENTS}")
        change = AliasEvent(
            model_name=model_name,
            alias=alias,
            from_version=None,  # filled in from what the write finds
            to_version=version,
            event=event,  # type: ignore[arg-type]  # validated against EVENTS above
            run_id=run_id,
            at=require_aware(now, "now"),
            reason=reason,
        )
        return registry_aliases.move(self._connect, change, expected)

    def _event_rows(self, model_name: str | None) -> list[tuple[Any, ...]]:
        with self._connect() as con:
            return registry_aliases.event_rows(con, model_name)

    def events(self, model_name: str | None = None) -> list[AliasEvent]:
        """Alias history as typed records, oldest first."""
        return [registry_aliases.row_to_event(r) for r in self._event_rows(model_name)]

    def ever_alias(self, model_name: str, alias: str, version: str) -> bool:
        """Whether ``version`` ever held ``alias`` (e.g. a rollback target must be ex-champion)."""
        check_alias(alias)
        with self._connect() as con:
            return registry_aliases.ever_alias(con, model_name, alias, version)

    def rollbacks_from(self, model_name: str, version: str) -> list[AliasEvent]:
        """Rollbacks that moved the champion away from ``version`` (it was judged bad), oldest
        first; restoring such a version needs an explicit override."""
        return [
            e
            for e in self.events(model_name)
            if e.alias == "champion" and e.event == "rollback" and e.from_version == version
        ]

    # ----------------------------------------------------------------- reporting

    def history(self, model_name: str | None = None) -> pd.DataFrame:
        """Alias history as a DataFrame (columns :data:`HISTORY_COLUMNS`), newest last."""
        return registry_reports.history_frame(self._event_rows(model_name))

    def summary(self) -> pd.DataFrame:
        """One row per version with aliases held and metrics flattened as ``metric_<name>``
        (see :func:`lifecycle.registry_reports.summary_frame`)."""
        with self._connect() as con:
            rows = con.execute(registry_reports.SUMMARY_SQL).fetchall()
        return registry_reports.summary_frame(rows)

    # ----------------------------------------------------------------- integrity

    def verified_path(self, mv: ModelVersion, name: str) -> Path:
        """Path of one artifact after re-hashing it against the registered sha256; raises
        :class:`ArtifactIntegrityError` if it changed or vanished (see :mod:`lifecycle.artifacts`)."""
        return artifacts.verified_path(mv, name)

    def verify(self, mv: ModelVersion) -> dict[str, Path]:
        """Verify every artifact of a version; returns ``{name: path}`` when all match."""
        return artifacts.verify(mv)
