"""The model-family contract: what a family provides so that one generic factory
(``assets/family.py``) turns it into the lifecycle every family shares —

    dataset (monthly) → challenger → blocking gates → champion (promote / roll back)
                      → daily predictions + shadow predictions → out-of-time gate on the 15th

A family never touches Dagster: it reads the warehouse through :class:`Reader`, declares which
partitions each step needs (:data:`Needs`, checked by the factory before any read), and returns
frames, artifact files and verdicts. Metadata it returns is plain Python; the factory shows
``plot_*`` strings as markdown images, frames as tables and mappings as JSON.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import pandas as pd

from lifecycle.datasets import DatasetManifest
from lifecycle.gates import CheckOutcome
from lifecycle.model_records import ModelVersion
from lifecycle.out_of_time import Window

Fit = Literal["judged", "served"]
# Asset key (as "layer/name") → the partition keys a step reads from it.
Needs = Mapping[str, Sequence[str]]
# A version's fit, loaded after every file of the version matched its recorded sha256.
Loader = Callable[[ModelVersion, Fit], Any]


class Reader(Protocol):
    """Read access to the warehouse (resources.registry.Warehouse implements it)."""

    def query(self, sql: str, params: Sequence[Any] | None = None) -> pd.DataFrame: ...

    def version_rows(
        self,
        table: str,
        version: str,
        where: str = "true",
        params: Sequence[Any] | None = None,
        order_by: str | None = None,
    ) -> pd.DataFrame: ...


class NotReady(Exception):
    """A month or day that cannot be computed yet, for a reason the user can act on (too early
    to train, days not ingested yet): the factory fails the step with this message."""


@dataclass(frozen=True)
class Dataset:
    """A month's training set: rows (the factory adds ``dataset_version``), its manifest, and
    what the materialisation shows."""

    frame: pd.DataFrame
    manifest: DatasetManifest
    metadata: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Trained:
    """A challenger: files to register as one immutable version (no pickle), its record, and
    what its materialisation shows given the version id it was registered as (plot titles
    name the version)."""

    files: Sequence[Path]
    params: Mapping[str, object]
    metrics: Mapping[str, float]
    describe: Callable[[str], Mapping[str, Any]] = lambda version: {}


@dataclass(frozen=True)
class Verdict:
    """One gate's outcome and the pictures behind it (name → markdown image)."""

    outcome: CheckOutcome
    plots: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Predictions:
    """A day range of predictions: the table (one ``as_of_date`` column), per-day figures
    attached to each day's partition, range-level metadata and, for families with a daily
    prediction check, each day's (passed, metadata)."""

    table: pd.DataFrame
    per_day: Mapping[str, pd.Series] = field(default_factory=dict)
    metadata: Mapping[str, Any] = field(default_factory=dict)
    day_checks: Mapping[str, tuple[bool, Mapping[str, Any]]] = field(default_factory=dict)


@dataclass(frozen=True)
class DailyCheck:
    """A per-day check on the prediction tables; a failure triggers the family's retraining."""

    name: str
    description: str


class ModelFamily(Protocol):
    """What a family provides. ``name`` keys the registry, jobs and assets
    (``models/<name>_challenger`` …); ``gates`` are the blocking checks' names and descriptions
    (``judge`` returns one verdict per gate, in that order)."""

    name: str
    code_version: str
    gates: Mapping[str, str]
    daily_check: DailyCheck | None

    def dataset_needs(self, month: pd.Timestamp) -> Needs:
        """Partitions month M's training set reads; raises NotReady when M is too early."""
        ...

    def build_dataset(
        self, month: pd.Timestamp, inputs: Mapping[str, pd.DataFrame], reader: Reader
    ) -> Dataset: ...

    def train(self, dataset: pd.DataFrame, workdir: Path) -> Trained: ...

    def load(self, paths: Mapping[str, Path], fit: Fit) -> Any:
        """One fit of a version from its verified files."""
        ...

    def judge(
        self,
        dataset: pd.DataFrame,
        challenger: ModelVersion,
        champion: ModelVersion | None,
        load: Loader,
        reader: Reader,
    ) -> list[Verdict]: ...

    def prediction_needs(self, start: pd.Timestamp, end: pd.Timestamp) -> Needs: ...

    def predict(
        self,
        model: Any,
        version: ModelVersion,
        days: pd.DatetimeIndex,
        inputs: Mapping[str, pd.DataFrame],
        reader: Reader,
    ) -> Predictions: ...

    def out_of_time_needs(self, window: Window) -> Needs: ...

    def out_of_time(
        self, window: Window, challenger: Any, champion: Any | None, reader: Reader
    ) -> Verdict:
        """Both served fits judged on the window's days, after the challenger's training data
        ended (neither has seen them); the promotion on the 15th requires it to pass."""
        ...
