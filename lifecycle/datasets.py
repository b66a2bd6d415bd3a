"""Monthly candidate training sets: which days go in, how they split, and what version they are.

A churn set for month M is built from label days that have matured by M's first day (D + H < M),
the last ``train_months`` months of them. The most recent ``validation_days`` form an out-of-time
validation slice; training days end H days before it, so no training label's horizon overlaps
the validation period (purging). A dataset's version is a hash of its content.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class ChurnWindow:
    """Day bounds (start inclusive, end exclusive) of one month's training set."""

    train_start: pd.Timestamp
    train_end: pd.Timestamp
    valid_start: pd.Timestamp
    valid_end: pd.Timestamp


def churn_window(
    month_start: pd.Timestamp,
    horizon_days: int,
    train_months: int,
    validation_days: int,
    earliest: pd.Timestamp,
) -> ChurnWindow:
    """``earliest`` is the first usable feature day (data start plus the look-back warm-up)."""
    matured_end = month_start - pd.Timedelta(days=horizon_days)
    valid_start = matured_end - pd.Timedelta(days=validation_days)
    return ChurnWindow(
        train_start=max(matured_end - pd.DateOffset(months=train_months), earliest),
        train_end=valid_start - pd.Timedelta(days=horizon_days),
        valid_start=valid_start,
        valid_end=matured_end,
    )


def months_back(horizon_days: int, train_months: int) -> int:
    """How many whole months before M a churn set may read (for the partition mapping)."""
    return train_months + math.ceil(horizon_days / 28)


@dataclass(frozen=True)
class DatasetManifest:
    """What a reviewer needs to trust a training set, stored beside it."""

    dataset: str
    partition_key: str
    version: str
    content_sha256: str
    rows: int
    rows_by_split: dict[str, int]
    verified_rows: int
    positive_rate_by_split: dict[str, float]
    date_range: dict[str, str]
    source_partitions: dict[str, str]
    features: tuple[str, ...]

    def as_dict(self) -> dict[str, object]:
        return json.loads(self.as_json())

    def as_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, default=str)


def content_sha256(frame: pd.DataFrame) -> str:
    """Order-independent content hash: same rows and columns ⇒ same version."""
    ordered = frame.sort_values(list(frame.columns), kind="stable").reset_index(drop=True)
    digest = hashlib.sha256(",".join(map(str, ordered.columns)).encode())
    digest.update(pd.util.hash_pandas_object(ordered, index=False).to_numpy().tobytes())
    return digest.hexdigest()


def quarantined_ids(quarantine: pd.DataFrame, key: str) -> np.ndarray:
    """Ids named in quarantined rows (those that parse as integers)."""
    if quarantine.empty:
        return np.array([], dtype=np.int64)
    ids = pd.to_numeric(
        quarantine["record"].map(lambda r: json.loads(r).get(key)), errors="coerce"
    ).dropna()
    return np.unique(ids.to_numpy().astype(np.int64))


def failing_days(quality: pd.DataFrame) -> set[pd.Timestamp]:
    """Days whose quarantine share broke the bound (from the raw daily-quality table)."""
    return set(pd.to_datetime(quality.loc[~quality["passed"].astype(bool), "event_date"]))


def build_churn_training_set(
    features: pd.DataFrame,
    labels: pd.DataFrame,
    window: ChurnWindow,
    feature_names: Sequence[str],
    excluded_customers: np.ndarray,
    excluded_days: set[pd.Timestamp],
    month_start: pd.Timestamp,
) -> pd.DataFrame:
    """One row per (day, customer) with features, label, split and the verified flag.

    ``verified`` is False for customers with quarantined rows and days whose data checks failed;
    training uses verified rows only, the full set is kept for comparison.
    """
    rows = features.merge(
        labels[["as_of_date", "customer_id", "churned"]], on=["as_of_date", "customer_id"]
    )
    day = rows["as_of_date"]
    split = np.select(
        [
            (day >= window.train_start) & (day < window.train_end),
            (day >= window.valid_start) & (day < window.valid_end),
        ],
        ["train", "valid"],
        default="",
    )
    rows = rows.assign(split=split).loc[lambda f: f["split"] != ""]
    verified = ~rows["customer_id"].isin(excluded_customers) & ~rows["as_of_date"].isin(
        list(excluded_days)
    )
    out = rows.assign(verified=verified.to_numpy(), dataset_month=month_start)
    columns = [
        "dataset_month",
        "as_of_date",
        "customer_id",
        *feature_names,
        "churned",
        "split",
        "verified",
    ]
    return out.loc[:, columns].sort_values(["as_of_date", "customer_id"]).reset_index(drop=True)


def build_manifest(
    frame: pd.DataFrame,
    dataset: str,
    prefix: str,
    partition_key: str,
    feature_names: Sequence[str],
    sources: dict[str, str],
    target: str | None = None,
    date_column: str | None = None,
) -> DatasetManifest:
    """The manifest of any monthly training set; its version embeds month and content hash."""
    sha = content_sha256(frame)
    by_split = frame.groupby("split")
    dates = frame[date_column] if date_column else pd.Series(dtype="datetime64[ns]")
    return DatasetManifest(
        dataset=dataset,
        partition_key=partition_key,
        version=f"{prefix}_{partition_key[:7].replace('-', '')}_{sha[:12]}",
        content_sha256=sha,
        rows=len(frame),
        rows_by_split={str(k): int(v) for k, v in by_split.size().items()},
        verified_rows=int(frame["verified"].sum()) if "verified" in frame else len(frame),
        positive_rate_by_split=(
            {str(k): float(v) for k, v in by_split[target].mean().items()} if target else {}
        ),
        date_range={
            "first_day": str(dates.min().date()) if len(dates) else "",
            "last_day": str(dates.max().date()) if len(dates) else "",
        },
        source_partitions=sources,
        features=tuple(feature_names),
    )


def selection_split(train: pd.DataFrame, days: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split the training rows in time: the last days pick boosting rounds and the search trial.

    The out-of-time validation slice the gates judge on is then never used for fitting or for
    selection, so the challenger is not tuned on the rows it is compared with the champion on.
    At most a quarter of the training days are used for selection.
    """
    day = pd.to_datetime(train["as_of_date"])
    n_days = day.dt.normalize().nunique()
    span = max(1, min(days, n_days // 4))
    cut = day.max().normalize() - pd.Timedelta(days=span - 1)
    return train[day < cut], train[day >= cut]
