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
    """``earliest`` is the first usable feature day (data start plus the look-back warm-up).

    The training span is ``train_months`` long *after* purging, so any horizon leaves training
    days (a 90-day horizon no longer eats a 3-month window); it is clamped at ``earliest``.
    """
    matured_end = month_start - pd.Timedelta(days=horizon_days)
    valid_start = matured_end - pd.Timedelta(days=validation_days)
    train_end = valid_start - pd.Timedelta(days=horizon_days)
    return ChurnWindow(
        train_start=max(train_end - pd.DateOffset(months=train_months), earliest),
        train_end=train_end,
        valid_start=valid_start,
        valid_end=matured_end,
    )


def first_trainable_month(
    earliest: pd.Timestamp, horizon_days: int, validation_days: int, min_train_days: int
) -> pd.Timestamp:
    """The first month whose window holds at least ``min_train_days`` warmed-up training days."""
    day = earliest + pd.Timedelta(days=min_train_days + 2 * horizon_days + validation_days)
    return (day - pd.Timedelta(days=1)).to_period("M").to_timestamp() + pd.offsets.MonthBegin(1)


def months_back(horizon_days: int, train_months: int, validation_days: int = 28) -> int:
    """How many whole months before M a churn set may read (for the partition mapping)."""
    return train_months + math.ceil((2 * horizon_days + validation_days) / 28)


def snapshot_days(window: ChurnWindow, every_days: int) -> pd.DatetimeIndex:
    """As-of days of a training set: every ``every_days``-th day counted back from the last
    validation day, so rows grow with customers × snapshots, not × days."""
    last = window.valid_end - pd.Timedelta(days=1)
    days = pd.date_range(window.train_start, last, freq="D")
    return days[((last - days).days % every_days) == 0]


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
    """Ids named in quarantined rows, verbatim as the source wrote them."""
    if quarantine.empty:
        return np.array([], dtype=object)
    ids = quarantine["record"].map(lambda r: json.loads(r).get(key)).dropna()
    return np.unique(ids.astype(str).to_numpy(dtype=object))


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
    snapshots: pd.DatetimeIndex | None = None,
    target: str = "churned",
) -> pd.DataFrame:
    """One row per (snapshot day, customer) with features, label, split and the verified flag.

    ``verified`` is False for customers with quarantined rows and days whose data checks failed;
    training uses verified rows only, the full set is kept for comparison. ``target`` names the
    label column of ``labels`` (``churned``; another family's, e.g. ``future_spend``), so every
    family's set shares these windows, splits and checks.
    """
    rows = features.merge(
        labels[["as_of_date", "customer_id", target]], on=["as_of_date", "customer_id"]
    )
    if snapshots is not None:
        rows = rows[rows["as_of_date"].isin(snapshots)]
    day = rows["as_of_date"]
    split = np.select(
        [
            (day >= window.train_start) & (day < window.train_end),
            (day >= window.train_end) & (day < window.valid_start),
            (day >= window.valid_start) & (day < window.valid_end),
        ],
        # "purged" days sit between training and validation: the judged fit skips them so no
        # training label overlaps validation; the served refit uses them (the freshest labels).
        ["train", "purged", "valid"],
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
        target,
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
    """Split the training rows in time: the last as-of days pick boosting rounds and the trial.

    The out-of-time validation slice the gates judge on is then never used for fitting or for
    selection, so the challenger is not tuned on the rows it is compared with the champion on.
    Selection takes the as-of days within the last ``days`` calendar days, at least one and at
    most a quarter of them (training keeps the rest).
    """
    day = pd.to_datetime(train["as_of_date"]).dt.normalize()
    unique = pd.DatetimeIndex(day.unique()).sort_values()
    recent = int((unique > unique.max() - pd.Timedelta(days=days)).sum()) if len(unique) else 0
    n_select = max(1, min(recent, len(unique) // 4))
    cut = unique[-n_select] if len(unique) else pd.Timestamp.max
    return train[day < cut], train[day >= cut]
