"""The direct computation a backfill through the assets is compared with: the same lifecycle
functions on the same data, in memory, with no Dagster and no warehouse in between.

generate_shop → validate_rows (+ per-day quarantine shares and quality) for both tables →
daily_activity → customer_features → churn_labels, and optionally month M's churn challenger
(build_churn_training_set → train_churn_model → refit). Each stage is timed on its own, and
its peak RSS is measured on its own by resetting the process's high-water mark before it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from benchmarks.measure import peak_rss_mb, reset_peak_rss
from lifecycle.churn_model import SearchSpace, refit, train_churn_model
from lifecycle.datasets import (
    build_churn_training_set,
    churn_window,
    failing_days,
    quarantined_ids,
    selection_split,
    snapshot_days,
)
from lifecycle.features import (
    churn_labels,
    customer_feature_chunks,
    customer_features,
    daily_activity,
    feature_columns,
)
from lifecycle.labels_sql import churn_labels_select
from lifecycle.settings import Settings
from lifecycle.synthetic import SyntheticConfig, SyntheticShop, generate_shop
from lifecycle.validation import (
    INTERACTIONS,
    TRANSACTIONS,
    Limits,
    TableSpec,
    daily_quality,
    quarantine_share_by_day,
    validate_rows,
)

INGEST_STAGES = ("generate", "validate", "features")


@dataclass
class Stage:
    seconds: float
    peak_rss_mb: float


@dataclass
class DirectData:
    """Outputs kept for the later stages (and for the wrapper benchmarks)."""

    shop: SyntheticShop
    activity: pd.DataFrame
    features: pd.DataFrame | None  # None when written to ``store`` chunk by chunk
    quarantine: pd.DataFrame
    quality: pd.DataFrame
    labels: pd.DataFrame | None = None
    store: Path | None = None


class Stages:
    """Times each stage and its own peak RSS."""

    def __init__(self) -> None:
        self.done: dict[str, Stage] = {}

    def __call__(self, name: str, fn: Callable[[], Any]) -> Any:
        reset_peak_rss()
        start = time.perf_counter()
        out = fn()
        self.done[name] = Stage(time.perf_counter() - start, peak_rss_mb())
        return out


def _validate(
    shop: SyntheticShop, spec: TableSpec, settings: Settings, first: pd.Timestamp, end: pd.Timestamp
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    frame = shop.transactions if spec.name == "transactions" else shop.interactions
    frame = frame.loc[:, list(spec.columns)]
    limits = Limits(settings.validation.max_amount, settings.validation.max_weight)
    batch = validate_rows(frame, spec, first, end, origin=f"direct.{spec.name}", limits=limits)
    shares = quarantine_share_by_day(batch.clean, batch.quarantine, first, end)
    return (
        batch.clean,
        batch.quarantine,
        daily_quality(shares, settings.validation.max_quarantine_share),
    )


def _write(con: Any, table: str, frames: Iterable[pd.DataFrame]) -> int:
    """Plain DuckDB appends of pandas frames (what a script would do); rows written."""
    rows = 0
    for frame in frames:
        con.register("frame", frame)
        con.execute(f"create table if not exists {table} as select * from frame limit 0")
        con.execute(f"insert into {table} select * from frame")
        con.unregister("frame")
        rows += len(frame)
    return rows


def run_ingest(settings: Settings, timer: Stages, store: Path | None = None) -> DirectData:
    """Raw → features for the whole partition range of ``settings``; with ``store`` (a DuckDB
    file) the activity and the features are written there, the features a chunk of customers
    at a time as the asset does, so a million customers fit in memory."""
    syn = settings.source.synthetic
    first = pd.Timestamp(settings.partitions.start_date)
    end = pd.Timestamp(settings.partitions.end_date)
    config = SyntheticConfig(
        start=first.date(),
        end=end.date(),
        seed=syn.seed,
        n_customers=syn.n_customers,
        n_items=syn.n_items,
        interactions="interactions" in settings.source.tables,
    )
    shop = timer("generate", lambda: generate_shop(config))

    def validate() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
        out = _validate(shop, TRANSACTIONS, settings, first, end)
        if "interactions" in settings.source.tables:
            _validate(shop, INTERACTIONS, settings, first, end)
        return out

    tx, quarantine, quality = timer("validate", validate)
    days = pd.date_range(first, end - pd.Timedelta(days=1), freq="D")

    windows = settings.features.windows

    def features() -> tuple[pd.DataFrame, pd.DataFrame | None]:
        activity = daily_activity(tx)
        if store is None:
            return activity, customer_features(activity, days, windows)
        import duckdb

        with duckdb.connect(str(store)) as con:
            con.execute("create schema if not exists features")
            _write(con, "features.customer_activity", [activity])
            _write(
                con, "features.customer_features", customer_feature_chunks(activity, days, windows)
            )
        return activity, None

    activity, table = timer("features", features)
    return DirectData(shop, activity, table, quarantine, quality, store=store)


def training_month(settings: Settings) -> pd.Timestamp:
    """Month M: the month of the last partition's end, whose challenger the benchmarks train."""
    return pd.Timestamp(settings.partitions.end_date).to_period("M").to_timestamp()


def run_labels(
    settings: Settings, data: DirectData, matured_end: pd.Timestamp, timer: Stages
) -> None:
    """Labels for the days whose horizon has passed (the second ranged run's days); with a
    store, by the same SQL statement the labels asset hands the warehouse."""
    horizon = settings.labels.horizon_days
    if data.features is None:
        import duckdb

        assert data.store is not None
        first = pd.Timestamp(settings.partitions.start_date).date()
        last = (matured_end - pd.Timedelta(days=1)).date()
        select = churn_labels_select(
            "features.customer_features", "features.customer_activity", first, last, horizon
        )

        def in_sql() -> None:
            with duckdb.connect(str(data.store)) as con:
                con.execute("create schema if not exists labels")
                con.execute(f"create or replace table labels.churn_labels as {select}")

        timer("labels", in_sql)
        return
    population = data.features.loc[
        data.features["as_of_date"] < matured_end, ["as_of_date", "customer_id"]
    ]
    data.labels = timer("labels", lambda: churn_labels(population, data.activity, horizon))


def churn_training_rows(settings: Settings, data: DirectData, month: pd.Timestamp) -> pd.DataFrame:
    """Month M's verified churn training rows in the order the churn asset trains on them.

    The same lifecycle calls as the dataset asset (window from the warmed-up first feature day,
    snapshots, quarantined customers and failing days unverified), on in-memory frames.
    """
    assert data.labels is not None and data.features is not None, "labels first, in memory"
    cfg = settings.churn
    earliest = pd.Timestamp(settings.partitions.start_date) + pd.Timedelta(
        days=settings.features.lookback_days - 1
    )
    window = churn_window(
        month, settings.labels.horizon_days, cfg.train_months, cfg.validation_days, earliest
    )
    dataset = build_churn_training_set(
        data.features,
        data.labels,
        window,
        feature_columns(settings.features.windows),
        quarantined_ids(data.quarantine, "customer_id"),
        failing_days(data.quality),
        month,
        snapshot_days(window, cfg.snapshot_every_days),
    )
    return dataset[dataset["verified"]].sort_values(["as_of_date", "customer_id"], kind="stable")


def run_churn(settings: Settings, data: DirectData, month: pd.Timestamp, timer: Stages) -> int:
    """Month M's churn challenger: its training set, search and served refit; returns rows."""
    assert data.labels is not None, "labels first"
    cfg = settings.churn
    features = feature_columns(settings.features.windows)
    space = SearchSpace(**cfg.search.model_dump())

    def challenger() -> int:
        usable = churn_training_rows(settings, data, month)
        train = usable[usable["split"] == "train"]
        fit, select = selection_split(train, cfg.validation_days)
        trained = train_churn_model(fit, select, features, "churned", space)
        refit(trained, usable, "churned")
        return len(train)

    return int(timer("churn", challenger))


def run_stages(
    settings: Settings,
    timer: Stages,
    *,
    labels: bool = True,
    churn: bool = False,
    store: Path | None = None,
) -> tuple[DirectData, int | None]:
    """The direct path in order: ingest, the matured days' labels, month M's challenger
    (in memory only: not with ``store``).

    Returns the data and, with ``churn``, the challenger's training rows.
    """
    if churn and store is not None:
        raise ValueError("the direct churn stage works on in-memory frames: no store")
    data = run_ingest(settings, timer, store)
    end = pd.Timestamp(settings.partitions.end_date)
    if labels:
        run_labels(settings, data, end - pd.Timedelta(days=settings.labels.horizon_days), timer)
    rows = run_churn(settings, data, training_month(settings), timer) if churn else None
    return data, rows
