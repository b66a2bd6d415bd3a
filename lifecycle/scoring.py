"""Turning model outputs into the published prediction tables."""

from __future__ import annotations

import numpy as np
import pandas as pd

SCORE_COLUMNS = ("customer_id", "as_of_date", "model_name", "model_version", "score", "decile")


def score_table(
    population: pd.DataFrame, scores: np.ndarray, model_name: str, model_version: str
) -> pd.DataFrame:
    """One row per scored customer and day; decile 10 holds a day's riskiest tenth."""
    table = pd.DataFrame(
        {
            "customer_id": population["customer_id"].astype(object).to_numpy(),
            "as_of_date": pd.to_datetime(population["as_of_date"]).to_numpy(),
            "model_name": model_name,
            "model_version": model_version,
            "score": scores.astype("float64"),
        }
    ).sort_values(["as_of_date", "customer_id"], kind="stable", ignore_index=True)
    pct = table.groupby("as_of_date")["score"].rank(method="first", pct=True)
    table["decile"] = np.ceil(pct * 10).clip(1, 10).astype("int64")
    return table.loc[:, list(SCORE_COLUMNS)]
