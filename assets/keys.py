"""Asset keys referenced across modules (jobs, schedules, sensors), named once."""

import dagster as dg

RAW_TABLES = ("transactions", "interactions")
RAW = [
    dg.AssetKey(["raw", f"{table}{suffix}"])
    for table in RAW_TABLES
    for suffix in ("", "_quarantine", "_daily_quality")
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

INGEST = [*RAW, ACTIVITY, FEATURES]
PREDICTIONS = [CHURN_SCORES, CHURN_SHADOW, RECOMMENDATIONS]
DAILY = [*INGEST, *PREDICTIONS]
MONTHLY = [CHURN_DATASET, CHURN_CHALLENGER, REC_DATASET, REC_CHALLENGER]
CHAMPIONS = {"churn": CHURN_CHAMPION, "recommender": REC_CHAMPION}
