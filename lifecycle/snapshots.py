"""Rows of a customer-snapshot training set (churn, value): which rows train, which judge,
and a model's own rows read back by dataset version."""

import pandas as pd

from lifecycle.family import Reader


def stored_rows(warehouse: Reader, dataset_version: str, split: str, table: str) -> pd.DataFrame:
    """Verified rows of one split of a model's own training set, by its dataset_version: the
    month may have been rebuilt since, and the champion's evidence must not change with it."""
    return warehouse.version_rows(
        table,
        dataset_version,
        "split = ? and verified",
        [split],
        order_by="as_of_date, customer_id",
    )


def verified_rows(dataset: pd.DataFrame) -> pd.DataFrame:
    """Verified rows in a fixed order (the warehouse returns rows unordered, and the same rows
    in another order would train a slightly different model)."""
    return dataset[dataset["verified"]].sort_values(["as_of_date", "customer_id"], kind="stable")


def split_rows(usable: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train and validation rows of verified rows (the purged days belong to neither)."""
    return usable[usable["split"] == "train"], usable[usable["split"] == "valid"]


def verified_splits(dataset: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    return split_rows(verified_rows(dataset))
