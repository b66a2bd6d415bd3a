"""Asset keys referenced across modules (jobs, schedules, sensors, CLI), named once, and the
selections built from them for the raw tables a source provides."""

from __future__ import annotations

from dataclasses import dataclass

import dagster as dg

from lifecycle.settings import Settings

RAW_TABLES = ("transactions", "interactions")


@dataclass(frozen=True)
class FamilyKeys:
    """A model family's place in the graph: the raw table that feeds it and its asset keys,
    all derived from its name (``models/<name>_challenger`` …) except the two tables a user
    reads (its training set and its daily predictions)."""

    name: str
    table: str
    dataset: dg.AssetKey
    predictions: dg.AssetKey
    # Families built on the daily customer features (transactions) and, for churn, labels.
    features: bool = False
    labels: bool = False

    @property
    def challenger(self) -> dg.AssetKey:
        return dg.AssetKey(["models", f"{self.name}_challenger"])

    @property
    def champion(self) -> dg.AssetKey:
        return dg.AssetKey(["models", f"{self.name}_champion"])

    @property
    def shadow(self) -> dg.AssetKey:
        return dg.AssetKey(["predictions", f"{self.predictions.path[-1]}_shadow"])

    @property
    def monthly(self) -> list[dg.AssetKey]:
        return [self.dataset, self.challenger]

    @property
    def daily(self) -> list[dg.AssetKey]:
        return [self.predictions, self.shadow]


def raw_keys(table: str) -> list[dg.AssetKey]:
    """A raw table with its quarantine and quality outputs (one multi-asset, not subsettable)."""
    return [
        dg.AssetKey(["raw", f"{table}{suffix}"]) for suffix in ("", "_quarantine", "_daily_quality")
    ]


RAW_TRANSACTIONS = dg.AssetKey(["raw", "transactions"])
ACTIVITY = dg.AssetKey(["features", "customer_activity"])
FEATURES = dg.AssetKey(["features", "customer_features"])
LABELS = dg.AssetKey(["labels", "churn_labels"])

CHURN_DATASET = dg.AssetKey(["datasets", "churn_training_set"])
CHURN_CHALLENGER = dg.AssetKey(["models", "churn_challenger"])
CHURN_CHAMPION = dg.AssetKey(["models", "churn_champion"])
CHURN_SCORES = dg.AssetKey(["predictions", "churn_scores"])
CHURN_SHADOW = dg.AssetKey(["predictions", "churn_scores_shadow"])

REC_DATASET = dg.AssetKey(["datasets", "interactions_training_set"])
REC_CHALLENGER = dg.AssetKey(["models", "recommender_challenger"])
REC_CHAMPION = dg.AssetKey(["models", "recommender_champion"])
RECOMMENDATIONS = dg.AssetKey(["predictions", "recommendations"])

REC_SHADOW = dg.AssetKey(["predictions", "recommendations_shadow"])

VALUE_DATASET = dg.AssetKey(["datasets", "value_training_set"])
VALUE_PREDICTIONS = dg.AssetKey(["predictions", "customer_value"])

# Every family the code location knows, in one fixed order. Adding a family: ARCHITECTURE.md
# ("A new model family") lists every place; assets/value.py is the short example.
FAMILIES = {
    f.name: f
    for f in (
        FamilyKeys("churn", "transactions", CHURN_DATASET, CHURN_SCORES, True, True),
        FamilyKeys("recommender", "interactions", REC_DATASET, RECOMMENDATIONS),
        FamilyKeys("value", "transactions", VALUE_DATASET, VALUE_PREDICTIONS, True),
    )
}
DEFAULT_FAMILIES = ("churn", "recommender")
# The default families and the table each needs (settings.families adds others).
FAMILY_TABLE = {name: FAMILIES[name].table for name in DEFAULT_FAMILIES}
CHALLENGERS = {name: f.challenger for name, f in FAMILIES.items()}


@dataclass(frozen=True)
class Selection:
    """What jobs, schedules, sensors and the CLI select, given the raw tables that exist.

    Lists keep one fixed order (transactions before interactions, churn before recommender), so
    with both tables they equal the module constants below.
    """

    tables: tuple[str, ...] = RAW_TABLES
    wanted: tuple[str, ...] = DEFAULT_FAMILIES

    def __post_init__(self) -> None:
        unknown = set(self.tables) - set(RAW_TABLES)
        if unknown:
            raise ValueError(f"unknown raw table(s) {sorted(unknown)}; known: {list(RAW_TABLES)}")
        unknown = set(self.wanted) - set(FAMILIES)
        if unknown:
            raise ValueError(f"unknown model famil(ies) {sorted(unknown)}; known: {list(FAMILIES)}")

    @classmethod
    def of(cls, settings: Settings) -> Selection:
        """What one settings file selects: its source's tables and its wanted families."""
        return cls(settings.source.tables, settings.families)

    @property
    def families(self) -> tuple[str, ...]:
        """The wanted families whose raw table the source provides, in FAMILIES order."""
        return tuple(
            name for name, f in FAMILIES.items() if name in self.wanted and f.table in self.tables
        )

    @property
    def family_keys(self) -> list[FamilyKeys]:
        return [FAMILIES[name] for name in self.families]

    @property
    def raw(self) -> list[dg.AssetKey]:
        return [key for table in RAW_TABLES if table in self.tables for key in raw_keys(table)]

    @property
    def ingest(self) -> list[dg.AssetKey]:
        """Raw tables, and the churn features computed from transactions."""
        features = [ACTIVITY, FEATURES] if any(f.features for f in self.family_keys) else []
        return [*self.raw, *features]

    @property
    def labels(self) -> list[dg.AssetKey]:
        return [LABELS] if any(f.labels for f in self.family_keys) else []

    @property
    def predictions(self) -> list[dg.AssetKey]:
        return [key for f in self.family_keys for key in f.daily]

    @property
    def daily(self) -> list[dg.AssetKey]:
        return [*self.ingest, *self.predictions]

    @property
    def monthly(self) -> list[dg.AssetKey]:
        return [key for f in self.family_keys for key in f.monthly]

    @property
    def champions(self) -> dict[str, dg.AssetKey]:
        return {f.name: f.champion for f in self.family_keys}

    @property
    def all(self) -> set[dg.AssetKey]:
        """Every key the graph holds for these tables."""
        return {*self.daily, *self.labels, *self.monthly, *self.champions.values()}


BOTH = Selection()
INGEST = BOTH.ingest
PREDICTIONS = BOTH.predictions
DAILY = BOTH.daily
MONTHLY = BOTH.monthly
CHAMPIONS = BOTH.champions
