"""Asset keys referenced across modules (jobs, schedules, sensors, CLI), named once, and the
selections built from them for the raw tables a source provides."""

from __future__ import annotations

from dataclasses import dataclass

import dagster as dg

RAW_TABLES = ("transactions", "interactions")
# Each model family is fed by one raw table and exists only where the source provides it.
FAMILY_TABLE = {"churn": "transactions", "recommender": "interactions"}


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

CHALLENGERS = {"churn": CHURN_CHALLENGER, "recommender": REC_CHALLENGER}
_PREDICTIONS = {"churn": [CHURN_SCORES, CHURN_SHADOW], "recommender": [RECOMMENDATIONS]}
_MONTHLY = {
    "churn": [CHURN_DATASET, CHURN_CHALLENGER],
    "recommender": [REC_DATASET, REC_CHALLENGER],
}
_CHAMPIONS = {"churn": CHURN_CHAMPION, "recommender": REC_CHAMPION}


@dataclass(frozen=True)
class Selection:
    """What jobs, schedules, sensors and the CLI select, given the raw tables that exist.

    Lists keep one fixed order (transactions before interactions, churn before recommender), so
    with both tables they equal the module constants below.
    """

    tables: tuple[str, ...] = RAW_TABLES

    def __post_init__(self) -> None:
        unknown = set(self.tables) - set(RAW_TABLES)
        if unknown:
            raise ValueError(f"unknown raw table(s) {sorted(unknown)}; known: {list(RAW_TABLES)}")

    @property
    def families(self) -> tuple[str, ...]:
        return tuple(family for family, table in FAMILY_TABLE.items() if table in self.tables)

    @property
    def raw(self) -> list[dg.AssetKey]:
        return [key for table in RAW_TABLES if table in self.tables for key in raw_keys(table)]

    @property
    def ingest(self) -> list[dg.AssetKey]:
        """Raw tables, and the churn features computed from transactions."""
        features = [ACTIVITY, FEATURES] if "churn" in self.families else []
        return [*self.raw, *features]

    @property
    def labels(self) -> list[dg.AssetKey]:
        return [LABELS] if "churn" in self.families else []

    @property
    def predictions(self) -> list[dg.AssetKey]:
        return [key for family in self.families for key in _PREDICTIONS[family]]

    @property
    def daily(self) -> list[dg.AssetKey]:
        return [*self.ingest, *self.predictions]

    @property
    def monthly(self) -> list[dg.AssetKey]:
        return [key for family in self.families for key in _MONTHLY[family]]

    @property
    def champions(self) -> dict[str, dg.AssetKey]:
        return {family: _CHAMPIONS[family] for family in self.families}

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
