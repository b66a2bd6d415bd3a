"""Churn training cost and quality by snapshot cadence and size, with the platform's own code.

``python -m benchmarks.churn_scale --customers 5000 100000 --every 1 7 14 30``

For each size it generates the synthetic shop (a year), computes point-in-time features and
labels with the same pure functions the assets call, builds month M's training set at each
snapshot cadence, and times what the challenger asset does: the search with early stopping
(the judged fit), the refit on the whole window (the served fit), and the holdout AUC of the
judged fit. Peak RSS is the process's. Every figure is measured in this run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import resource
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np
import pandas as pd

from lifecycle.churn_model import SearchSpace, predict_scores, refit, train_churn_model
from lifecycle.datasets import (
    build_churn_training_set,
    churn_window,
    selection_split,
    snapshot_days,
)
from lifecycle.features import churn_labels, customer_features, daily_activity, feature_columns
from lifecycle.metrics import roc_auc
from lifecycle.settings import load_settings
from lifecycle.synthetic import SyntheticConfig, generate_shop


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def measure(
    customers: int, cadences: list[int], train_months: int | None = None
) -> list[dict[str, float]]:
    settings = load_settings()
    cfg, horizon = settings.churn, settings.labels.horizon_days
    months = train_months or cfg.train_months
    windows = settings.features.windows
    start, end = dt.date(2025, 7, 1), dt.date(2026, 7, 1)
    t0 = time.perf_counter()
    shop = generate_shop(SyntheticConfig(start=start, end=end, n_customers=customers))
    tx = shop.transactions.assign(
        customer_id=shop.transactions["customer_id"].astype(str),
        event_date=shop.transactions["timestamp"].dt.normalize(),
    )
    activity = daily_activity(tx)
    generated = time.perf_counter() - t0
    month = pd.Timestamp("2026-06-01")
    earliest = pd.Timestamp(start) + pd.Timedelta(days=max(windows) - 1)
    window = churn_window(month, horizon, months, cfg.validation_days, earliest)
    names = feature_columns(windows)
    space = SearchSpace(**cfg.search.model_dump())
    # One common holdout for every cadence: each validation day, every customer.
    vdays = pd.date_range(window.valid_start, window.valid_end - pd.Timedelta(days=1))
    vfeats = customer_features(activity[activity["activity_date"] <= vdays.max()], vdays, windows)
    vlabels = churn_labels(vfeats[["as_of_date", "customer_id"]], activity, horizon)
    common = vfeats.merge(vlabels, on=["as_of_date", "customer_id"])
    rows = []
    for every in cadences:
        days = snapshot_days(window, every)
        t1 = time.perf_counter()
        feats = customer_features(activity[activity["activity_date"] <= days.max()], days, windows)
        labels = churn_labels(feats[["as_of_date", "customer_id"]], activity, horizon)
        data = build_churn_training_set(
            feats, labels, window, names, np.array([], dtype=object), set(), month, days
        )
        built = time.perf_counter() - t1
        train, valid = data[data["split"] == "train"], data[data["split"] == "valid"]
        fit, select = selection_split(train, cfg.validation_days)
        t2 = time.perf_counter()
        trained = train_churn_model(fit, select, names, "churned", space)
        judged = time.perf_counter() - t2
        t3 = time.perf_counter()
        refit(trained, pd.concat([train, valid]), "churned")
        served = time.perf_counter() - t3
        scores = predict_scores(trained.booster, common, names)
        auc = roc_auc(common["churned"].to_numpy(), scores)
        rows.append(
            {
                "customers": customers,
                "train_months": months,
                "snapshot_every_days": every,
                "train_rows": len(train),
                "valid_rows": len(valid),
                "dataset_s": round(built, 1),
                "judged_fit_s": round(judged, 1),
                "served_refit_s": round(served, 1),
                "auc_daily_holdout": round(auc, 4),
                "peak_rss_gb": round(peak_rss_gb(), 2),
                "shop_s": round(generated, 1),
            }
        )
        print(rows[-1], flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, nargs="+", default=[5000])
    parser.add_argument("--every", type=int, nargs="+", default=[1, 7, 14, 30])
    parser.add_argument("--train-months", type=int, nargs="+", default=[0], help="0: settings")
    args = parser.parse_args()
    table = pd.DataFrame(
        [
            r
            for n in args.customers
            for m in args.train_months
            for r in measure(n, args.every, m or None)
        ]
    )
    print(table.to_markdown(index=False))


if __name__ == "__main__":
    main()
