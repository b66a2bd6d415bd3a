"""Recommender half of ``benchmarks.wrappers``: ``train_als`` vs implicit's CPU ALS ``fit``, and
``recommend_users`` / ``daily_recommendations`` vs one ``model.recommend`` batch, on the demo's
interactions and on a scale× shop.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from benchmarks.measure import progress
from benchmarks.timing import BenchRow, interleaved
from lifecycle.rec_data import window_start
from lifecycle.rec_serving import daily_recommendations
from lifecycle.recommender import (
    AlsParams,
    CpuAls,
    InteractionData,
    Weighting,
    build_bundle,
    build_interaction_data,
    recommend_users,
    train_als,
)
from lifecycle.settings import Settings
from lifecycle.synthetic import SyntheticConfig, SyntheticShop, generate_shop

# The month whose recommender training set (the months before it) is benchmarked.
REC_MONTH = pd.Timestamp("2026-06-01")
# Scale× catalogue: items grow with customers up to this factor (memory stays well < 6 GB).
MAX_ITEM_SCALE = 5
SEED = 0


def rec_month(settings: Settings) -> pd.Timestamp:
    end = pd.Timestamp(settings.partitions.end_date)
    return min(REC_MONTH, end.to_period("M").to_timestamp())


def interaction_data(
    interactions: pd.DataFrame, settings: Settings, month: pd.Timestamp
) -> InteractionData:
    """Month M's training data as the dataset asset builds it (the synthetic rows are clean)."""
    cfg = settings.recommender
    start = window_start(month, cfg.lookback_months, pd.Timestamp(settings.partitions.start_date))
    stamps = interactions["timestamp"]
    window = interactions[(stamps >= start) & (stamps < month)]
    return build_interaction_data(
        window.sort_values(["timestamp", "user_id", "item_id"], ignore_index=True),
        cfg.holdout_k,
        cfg.min_user_interactions,
        Weighting(scheme=cfg.weighting.scheme, alpha=cfg.weighting.alpha),
    ).served  # the whole window, as the served fit trains on it


def scaled_shop(settings: Settings, scale: int) -> tuple[SyntheticShop, str]:
    syn = settings.source.synthetic
    n_customers = syn.n_customers * scale
    n_items = syn.n_items * min(scale, MAX_ITEM_SCALE)
    config = SyntheticConfig(
        start=settings.partitions.start_date,
        end=rec_month(settings).date(),
        seed=syn.seed,
        n_customers=n_customers,
        n_items=n_items,
    )
    progress(f"generating the {scale}x shop ({n_customers} customers, {n_items} items)")
    notes = (
        f"{scale}x customers, items x min(scale, {MAX_ITEM_SCALE}) = {n_items} (a realistic "
        "catalogue grows slower than the customer base; keeps memory far below 6 GB); shop "
        f"generated up to {rec_month(settings):%Y-%m-%d} only"
    )
    return generate_shop(config), notes


def bench_recommender(
    settings: Settings, data: InteractionData, label: str, repeats: int, notes: str
) -> list[BenchRow]:
    cfg = settings.recommender
    params = AlsParams(**cfg.grid[0].model_dump())
    size = (
        f"{label}: {data.n_users} users x {data.n_items} items, nnz {data.train.nnz}; "
        f"f={params.factors}, it={params.iterations}"
    )

    def direct_fit() -> CpuAls:
        model = CpuAls(
            factors=params.factors,
            regularization=params.regularization,
            iterations=params.iterations,
            alpha=1.0,
            num_threads=0,
            random_state=SEED,
        )
        model.fit(data.train, show_progress=False)
        return model

    progress(f"recommender training ({label})")
    fit = interleaved(
        {"baseline": direct_fit, "wrapped": lambda: train_als(data, params, SEED)}, repeats
    )
    rows = [
        BenchRow(
            f"ALS training ({label})",
            size,
            fit["wrapped"],
            fit["baseline"],
            f"train_als vs implicit.cpu.als.AlternatingLeastSquares.fit, first grid point, "
            f"all cores, weighting {cfg.weighting.scheme}; {notes}",
        )
    ]

    model = train_als(data, params, SEED)
    bundle = build_bundle(model, data, params, max(cfg.fallback_size, cfg.k))
    rows_idx = np.arange(data.n_users, dtype=np.int64)
    k = min(cfg.k, data.n_items)
    pairs = data.train.tocoo()
    day = rec_month(settings) - pd.Timedelta(days=1)
    events = pd.DataFrame(
        {
            "user_id": data.user_ids[pairs.row],
            "item_id": data.item_ids[pairs.col],
            "event_date": day,
            "weight": 1.0,
        }
    )
    weighting = Weighting(scheme=cfg.weighting.scheme, alpha=cfg.weighting.alpha)

    progress(f"recommendation serving ({label})")
    serve = interleaved(
        {
            "baseline": lambda: model.recommend(
                rows_idx, data.train[rows_idx], N=k, filter_already_liked_items=True
            ),
            "recommend_users": lambda: recommend_users(bundle, data.user_ids, k),
            "recommendation_table": lambda: daily_recommendations(
                events, pd.DatetimeIndex([day]), bundle, k, weighting, "bench"
            ),
        },
        repeats,
    )
    served = f"{data.n_users} users, k={k}"
    rows += [
        BenchRow(
            f"recommend_users ({label})",
            served,
            serve["recommend_users"],
            serve["baseline"],
            "vs one model.recommend(rows, train[rows], N=k, filter_already_liked_items=True) "
            "batch for the same (all known) users; wrapper maps ids, re-checks seen items, "
            "builds a frame",
        ),
        BenchRow(
            f"recommendation_table ({label})",
            f"{served}, one as_of_date",
            serve["recommendation_table"],
            serve["baseline"],
            "daily_recommendations for one day: every user's history folded in, filtered, "
            "as a table; same baseline",
        ),
    ]
    return rows
