"""One YAML settings file holds every run-time choice; this module validates it.

The file is chosen by ``LIFECYCLE_SETTINGS`` (default: the demo settings shipped in
``settings/demo.yaml``). Unknown or mistyped keys fail on load with the dotted key path,
so a typo never silently falls back to a default.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from lifecycle.value_model import ValueSettings

SETTINGS_ENV_VAR = "LIFECYCLE_SETTINGS"
PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEMO_SETTINGS = PROJECT_ROOT / "settings" / "demo.yaml"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PartitionSettings(_Strict):
    start_date: dt.date
    end_date: dt.date | None = Field(
        None, description="Exclusive end of the daily partitions; omit for an open-ended range."
    )

    @model_validator(mode="after")
    def _ordered(self) -> PartitionSettings:
        if self.end_date is not None and self.end_date <= self.start_date:
            raise ValueError("partitions.end_date must be after partitions.start_date")
        return self


class WarehouseSettings(_Strict):
    """Relative paths are taken from the project root, so every command (dagster dev, the CLI,
    from any directory) finds the same warehouse."""

    database: str = "data/warehouse.duckdb"
    artifact_root: str = "data/artifacts"
    memory_limit: str = Field(
        "2GB",
        pattern=r"^\d+(\.\d+)?\s*(KB|MB|GB|TB|KiB|MiB|GiB|TiB)$",
        description="DuckDB's memory limit for the warehouse's connections (its default is 80% "
        "of RAM): past it, joins and windows spill to disk instead of growing the process.",
    )

    def connection_config(self) -> dict[str, str]:
        """The DuckDB settings of every connection to the warehouse file (IO manager, warehouse
        resource, registry): DuckDB refuses a second connection to an open file with others."""
        return {"memory_limit": self.memory_limit}

    @field_validator("database", "artifact_root")
    @classmethod
    def _from_project_root(cls, v: str) -> str:
        if v == ":memory:" or "://" in v or Path(v).is_absolute():
            return v
        return str(PROJECT_ROOT / v)


class IncidentSettings(_Strict):
    """A planted tracking bug (off unless set): amounts x ``factor`` for a ``share`` of
    customers in ``[start, end)``, so the demo shows a gate blocking a challenger."""

    start: dt.date
    end: dt.date
    share: Annotated[float, Field(gt=0, le=1)] = 0.5
    factor: Annotated[float, Field(gt=0)] = 100.0

    @model_validator(mode="after")
    def _ordered(self) -> IncidentSettings:
        if self.end <= self.start:
            raise ValueError("source.synthetic.incident.end must be after its start")
        return self


class SyntheticSettings(_Strict):
    seed: int = 7
    n_customers: Annotated[int, Field(gt=0)] = 5000
    n_items: Annotated[int, Field(gt=0)] = 1000
    incident: IncidentSettings | None = None
    tables: tuple[Literal["transactions", "interactions"], ...] = Field(
        ("transactions", "interactions"),
        min_length=1,
        description="The tables the synthetic shop provides: both, or one to play an export "
        "that has only orders or only events (the families without their table are left out).",
    )

    @field_validator("tables")
    @classmethod
    def _unique_tables(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(value)) != len(value):
            raise ValueError(f"a table is named twice: {list(value)}")
        return value


class ColumnMap(_Strict):
    """Maps the user's column names (values) onto ours (keys).

    ``timestamp`` serves both tables; ``transactions_timestamp`` / ``interactions_timestamp``
    override it where an orders export and a ratings file name their time column differently.
    """

    customer_id: str = "customer_id"
    timestamp: str = "timestamp"
    amount: str = "amount"
    user_id: str = "user_id"
    item_id: str = "item_id"
    weight: str | None = "weight"
    transactions_timestamp: str | None = None
    interactions_timestamp: str | None = None


class FilesSettings(_Strict):
    """CSV or Parquet exports. Timestamp style: ``timestamp_format`` *or* ``timestamp_unit`` for
    both tables, overridable per table (``interactions_timestamp_unit: s`` for a ratings file
    next to an orders export with ISO dates). Neither: ISO 8601 / common formats, offsets
    honoured, naive times taken as local time of ``timezone``."""

    transactions_glob: str | None = None
    interactions_glob: str | None = None
    columns: ColumnMap = ColumnMap()
    timestamp_format: str | None = Field(None, description="strftime format, e.g. %Y%m%d")
    timestamp_unit: Literal["s", "ms", "us", "ns"] | None = Field(
        None, description="Epoch unit when timestamps are numbers"
    )
    transactions_timestamp_format: str | None = None
    transactions_timestamp_unit: Literal["s", "ms", "us", "ns"] | None = None
    interactions_timestamp_format: str | None = None
    interactions_timestamp_unit: Literal["s", "ms", "us", "ns"] | None = None
    encoding: str = Field("utf-8", description="Text encoding of CSV files, e.g. latin-1")
    delimiter: str = Field(",", min_length=1, description="CSV field separator, e.g. ; or \\t")
    alert_after_failures: int = Field(
        3, ge=1, le=1000, description="Alert once a dropped file has failed this many reads"
    )

    @model_validator(mode="after")
    def _one_timestamp_style(self) -> FilesSettings:
        if not (self.transactions_glob or self.interactions_glob):
            raise ValueError("set transactions_glob, interactions_glob or both")
        pairs = {
            "": (self.timestamp_format, self.timestamp_unit),
            "transactions_": (self.transactions_timestamp_format, self.transactions_timestamp_unit),
            "interactions_": (self.interactions_timestamp_format, self.interactions_timestamp_unit),
        }
        for prefix, (fmt, unit) in pairs.items():
            if fmt and unit:
                raise ValueError(
                    f"set at most one of {prefix}timestamp_format and {prefix}timestamp_unit"
                )
        return self

    def timestamp_style(self, table: str) -> tuple[str | None, str | None]:
        """(format, unit) for one table: its own setting if any, else the shared one."""
        fmt = getattr(self, f"{table}_timestamp_format")
        unit = getattr(self, f"{table}_timestamp_unit")
        if fmt or unit:
            return fmt, unit
        return self.timestamp_format, self.timestamp_unit


class SqlSettings(_Strict):
    url_env: str = Field(
        "SOURCE_DATABASE_URL", description="Environment variable holding the SQLAlchemy URL"
    )
    transactions_query: str | None = None
    interactions_query: str | None = None

    @model_validator(mode="after")
    def _one_query(self) -> SqlSettings:
        if not (self.transactions_query or self.interactions_query):
            raise ValueError("set transactions_query, interactions_query or both")
        return self


class SourceSettings(_Strict):
    kind: Literal["synthetic", "files", "sql"] = "synthetic"
    synthetic: SyntheticSettings = SyntheticSettings()
    files: FilesSettings | None = None
    sql: SqlSettings | None = None

    @model_validator(mode="after")
    def _options_present(self) -> SourceSettings:
        if self.kind == "files" and self.files is None:
            raise ValueError("source.kind is 'files' but source.files is missing")
        if self.kind == "sql" and self.sql is None:
            raise ValueError("source.kind is 'sql' but source.sql is missing")
        return self

    @property
    def tables(self) -> tuple[str, ...]:
        """The raw tables this source provides; each model family exists only if its table does."""
        if self.kind == "files" and self.files is not None:
            globs = {"transactions": self.files.transactions_glob}
            globs["interactions"] = self.files.interactions_glob
            return tuple(t for t in ("transactions", "interactions") if globs[t])
        if self.kind == "sql" and self.sql is not None:
            queries = {"transactions": self.sql.transactions_query}
            queries["interactions"] = self.sql.interactions_query
            return tuple(t for t in ("transactions", "interactions") if queries[t])
        return tuple(t for t in ("transactions", "interactions") if t in self.synthetic.tables)


class ValidationSettings(_Strict):
    """Row rules and what a day without valid rows means.

    ``on_empty_day``: ``fail`` stops the run naming the days (a feed that must never be quiet);
    ``warn`` (default: real logs have quiet days) loads them, flags them in the daily-quality
    table and fails the WARN quarantine check; ``allow`` only records them.
    """

    max_quarantine_share: Annotated[float, Field(ge=0, le=1)] = 0.05
    on_empty_day: Literal["fail", "warn", "allow"] = "warn"
    max_amount: Annotated[float, Field(gt=0, allow_inf_nan=False)] = 1e7
    max_weight: Annotated[float, Field(gt=0, allow_inf_nan=False)] = 1e7


class FeatureSettings(_Strict):
    windows: tuple[int, ...] = (7, 30, 90)
    max_dormant_days: Annotated[int, Field(gt=0)] | None = Field(
        None,
        description="Population rule of features, labels, training sets and scores: every "
        "customer with a purchase on or before D, except (when set) those without one in the "
        "last N days. Left-out customers are counted in the features' metadata.",
    )

    @field_validator("windows")
    @classmethod
    def _positive_sorted(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if not v or any(w <= 0 for w in v):
            raise ValueError("features.windows must be positive day counts")
        return tuple(sorted(set(v)))

    @property
    def lookback_days(self) -> int:
        return max(self.windows)


class LabelSettings(_Strict):
    horizon_days: Annotated[int, Field(gt=0, le=120)] = 30


class ChurnSearchSettings(_Strict):
    max_depth: tuple[int, ...] = (3, 4, 6)
    learning_rate: tuple[float, ...] = (0.05, 0.1)
    min_child_weight: tuple[float, ...] = (1.0, 5.0)
    subsample: tuple[float, ...] = (0.8, 1.0)
    colsample_bytree: tuple[float, ...] = (0.8, 1.0)
    n_trials: Annotated[int, Field(gt=0)] = 4
    num_boost_round: Annotated[int, Field(gt=0)] = 400
    early_stopping_rounds: Annotated[int, Field(gt=0)] = 30
    seed: int = 0


class ChurnCheckSettings(_Strict):
    min_auc: float = 0.70
    auc_tolerance: float = 0.01
    n_boot: Annotated[int, Field(gt=0)] = 300
    max_feature_psi: float = 0.25
    max_score_psi: float = 0.25
    # The out-of-time gate judges a two-week early outcome: noisier than the holdout, hence wider.
    out_of_time_tolerance: Annotated[float, Field(ge=0)] = 0.02


class ChurnSettings(_Strict):
    train_months: Annotated[int, Field(gt=0)] = Field(
        3, description="Months of as-of days to train on, after purging by the horizon"
    )
    # At most four weeks: a champion trained the month before must not have seen this slice.
    validation_days: Annotated[int, Field(gt=0, le=28)] = 14
    snapshot_every_days: Annotated[int, Field(gt=0, le=31)] = Field(
        7,
        description="Training sets keep every N-th as-of day (counted back from the last "
        "validation day): rows grow with customers × snapshots, not customers × days",
    )
    min_train_days: Annotated[int, Field(gt=0)] = Field(
        28, description="A month trains only once this many warmed-up training days exist"
    )
    search: ChurnSearchSettings = ChurnSearchSettings()
    checks: ChurnCheckSettings = ChurnCheckSettings()


class AlsGridPoint(_Strict):
    factors: Annotated[int, Field(gt=0)] = 12
    regularization: Annotated[float, Field(ge=0)] = 0.1
    iterations: Annotated[int, Field(gt=0)] = 15


class WeightingSettings(_Strict):
    scheme: Literal["alpha", "bm25", "tfidf"] = "alpha"
    alpha: Annotated[float, Field(ge=0)] = Field(
        2.0, description="confidence = 1 + alpha * weight (after the scheme's transform)"
    )


class RecommenderCheckSettings(_Strict):
    min_precision: float = 0.02
    min_lift_over_popularity: float = 1.2
    tolerance: float = 0.005
    min_coverage: float = 0.05
    out_of_time_tolerance: Annotated[float, Field(ge=0)] = 0.01
    n_boot: Annotated[int, Field(gt=0)] = 300
    max_fallback_share: Annotated[float, Field(ge=0, le=1)] = Field(
        0.5, description="Daily check: at most this share of users get the popularity fallback"
    )


# Measured on both benchmark data sets (benchmarks/README.md): a small model wins the search on
# each, and the larger points are there for data with more taste dimensions.
DEFAULT_ALS_GRID = (
    AlsGridPoint(factors=12, regularization=0.1, iterations=15),
    AlsGridPoint(factors=24, regularization=1.0, iterations=15),
    AlsGridPoint(factors=48, regularization=1.0, iterations=15),
)


class RecommenderSettings(_Strict):
    lookback_months: Annotated[int, Field(gt=0)] | None = Field(
        None,
        description="Months of interactions before month M that its training set holds; null: "
        "all history since partitions.start_date (older tastes still predict, and users who "
        "were away for a while keep their history).",
    )
    holdout_k: Annotated[int, Field(gt=0)] = Field(
        5,
        description="Per user, the last holdout_k items are the gate slice (the promotion gates "
        "judge on it) and the holdout_k before them the selection slice (the grid search "
        "chooses on it); the served model is then refit on everything.",
    )
    min_user_interactions: Annotated[int, Field(gt=0)] = Field(
        10,
        description="Distinct items a user needs to get both slices (at least 2·holdout_k+1); "
        "other users are trained on, not evaluated.",
    )
    k: Annotated[int, Field(gt=0)] = 10
    active_days: Annotated[int, Field(gt=0)] | None = Field(
        None,
        description="Recommend only to users with an interaction in the last N days; null: "
        "every user with any interaction on or before the day (those left out are counted).",
    )
    fallback_size: Annotated[int, Field(gt=0)] = 50
    weighting: WeightingSettings = WeightingSettings()
    grid: Annotated[tuple[AlsGridPoint, ...], Field(min_length=1)] = DEFAULT_ALS_GRID
    checks: RecommenderCheckSettings = RecommenderCheckSettings()


class ScheduleSettings(_Strict):
    daily_time: str = "08:00"
    monthly_time: str = "10:00"
    train_day: Annotated[int, Field(ge=1, le=28)] = 1
    promote_day: Annotated[int, Field(ge=1, le=28)] = 15
    out_of_time_gate: bool = Field(
        True,
        description="Promotion also judges challenger and champion on what happened after "
        "training: the days from the 1st to the day before promote_day (14 by default)",
    )

    def out_of_time_days(self) -> int:
        """Days of the out-of-time window (0: no gate)."""
        return self.promote_day - 1 if self.out_of_time_gate else 0

    @field_validator("daily_time", "monthly_time")
    @classmethod
    def _hhmm(cls, v: str) -> str:
        dt.datetime.strptime(v, "%H:%M")
        return v


class AlertSettings(_Strict):
    kind: Literal["log", "webhook", "slack"] = "log"
    webhook_url_env: str = Field(
        "ALERT_WEBHOOK_URL", description="Env var holding the webhook URL (a secret: never here)"
    )
    slack_channel: str | None = Field(None, description="e.g. #ml-alerts; required for slack")
    slack_token_env: str = Field("SLACK_BOT_TOKEN", description="Env var holding the bot token")
    webserver_url: str | None = Field(None, description="Dagster UI base URL for run links")

    @model_validator(mode="after")
    def _channel_for_slack(self) -> AlertSettings:
        if self.kind == "slack" and not self.slack_channel:
            raise ValueError("alerts.kind is 'slack' but alerts.slack_channel is missing")
        return self


class PublishSettings(_Strict):
    """Copy each prediction partition into PostgreSQL for applications (optional)."""

    enabled: bool = False
    url_env: str = Field(
        "PREDICTIONS_DATABASE_URL", description="Env var holding the SQLAlchemy URL"
    )
    schema_name: str = Field(
        "predictions",
        pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,62}$",
        description="A plain SQL identifier: it is spliced into DDL, so nothing else is accepted",
    )


class Settings(_Strict):
    timezone: str = "UTC"
    families: tuple[Literal["churn", "recommender", "value"], ...] = Field(
        ("churn", "recommender"),
        description="Model families to run, each where the source provides its table: churn and "
        "value (customer spend) need transactions, the recommender interactions",
    )
    partitions: PartitionSettings
    warehouse: WarehouseSettings = WarehouseSettings()
    source: SourceSettings = SourceSettings()
    validation: ValidationSettings = ValidationSettings()
    features: FeatureSettings = FeatureSettings()
    labels: LabelSettings = LabelSettings()
    churn: ChurnSettings = ChurnSettings()
    recommender: RecommenderSettings = RecommenderSettings()
    value: ValueSettings = ValueSettings()
    schedules: ScheduleSettings = ScheduleSettings()
    alerts: AlertSettings = AlertSettings()
    publish: PublishSettings = PublishSettings()

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, v: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {v!r}") from None
        return v


class SettingsError(ValueError):
    """A settings file that does not parse or validate; the message names file and keys."""


def parse_settings(raw: object, origin: str = "<settings>") -> Settings:
    try:
        return Settings.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}"
            for err in exc.errors()
        )
        raise SettingsError(f"{origin}: {problems}") from None


def load_settings(path: str | Path | None = None) -> Settings:
    """Load the file named by ``path``, else by ``LIFECYCLE_SETTINGS``, else the demo."""
    chosen = Path(path or os.environ.get(SETTINGS_ENV_VAR) or DEMO_SETTINGS)
    try:
        raw = yaml.safe_load(chosen.read_text())
    except OSError as exc:
        raise SettingsError(f"cannot read settings file {chosen}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise SettingsError(f"{chosen}: not a UTF-8 text file") from None
    except yaml.YAMLError as exc:
        raise SettingsError(f"{chosen}: not valid YAML: {exc}") from None
    return parse_settings(raw, str(chosen))
