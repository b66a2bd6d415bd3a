"""Wrapped vs direct: what the project's ``lifecycle.*`` wrappers cost over the library call
doing the same work (the backfill through the assets is ``benchmarks.orchestration``).

    python -m benchmarks.wrappers --scale 10 --repeats 3 [--json out.json]

Each benchmark times the wrapped path and a direct baseline on the same inputs, in the same
process, interleaved (A B, then B A, …), and keeps the best of N for each; read the ratio.

1. Recommender training: ``train_als`` vs implicit's CPU ALS ``fit``, demo data and scale×.
2. Serving: ``recommend_users`` / ``recommendation_table`` vs one ``model.recommend`` batch.
3. Churn: ``train_churn_model`` vs ``xgboost.train`` with the winner's params and rounds;
   ``predict_scores`` vs ``booster.inplace_predict`` on one day and on the whole table.

Moved here from ``jobs/bench.py`` (benchmarks are not part of the installed runtime package).
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import contextlib
import functools
import json
import math
import platform
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xgboost as xgb

from benchmarks.direct import DirectData, Stages, run_ingest, run_labels
from lifecycle.churn_model import SearchSpace, predict_scores, train_churn_model
from lifecycle.datasets import (
    build_churn_training_set,
    churn_window,
    failing_days,
    quarantined_ids,
    snapshot_days,
)
from lifecycle.features import feature_columns
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
from lifecycle.settings import Settings, load_settings
from lifecycle.synthetic import SyntheticConfig, SyntheticShop, generate_shop

__all__ = ["BenchRow", "markdown_table", "run_benchmarks"]

# The month whose recommender training set (the months before it) is benchmarked.
REC_MONTH = pd.Timestamp("2026-06-01")
# Calls faster than this are looped and averaged, so a short burst of other load on the
# machine is diluted and the clock resolves millisecond calls.
MIN_TIMED_S = 1.0
# Scale× catalogue: items grow with customers up to this factor (memory stays well < 6 GB).
MAX_ITEM_SCALE = 5
SEED = 0
FMT = "%Y-%m-%d"


@dataclass(frozen=True)
class BenchRow:
    """One line of the report: best-of-N seconds of the wrapped path and of its baseline."""

    name: str
    size: str
    wrapped_s: float
    baseline_s: float
    notes: str = ""

    @property
    def ratio(self) -> float:
        return self.wrapped_s / self.baseline_s if self.baseline_s > 0 else math.inf

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ratio": self.ratio}


# --------------------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------------------

_STARTED = time.perf_counter()


def _progress(message: str) -> None:
    print(f"[bench {time.perf_counter() - _STARTED:7.1f} s] {message}", flush=True)


def _per_call(fn: Callable[[], Any]) -> float:
    """Seconds per call of ``fn``; a call under MIN_TIMED_S is looped and averaged."""
    start = time.perf_counter()
    fn()
    elapsed = time.perf_counter() - start
    if elapsed >= MIN_TIMED_S:
        return elapsed
    loops = min(2000, max(2, math.ceil(MIN_TIMED_S / max(elapsed, 1e-6))))
    start = time.perf_counter()
    for _ in range(loops):
        fn()
    return (time.perf_counter() - start) / loops


def _interleaved(variants: dict[str, Callable[[], Any]], repeats: int) -> dict[str, float]:
    """Best-of-``repeats`` seconds per variant; the order flips every repetition."""
    names = list(variants)
    best = dict.fromkeys(names, math.inf)
    for rep in range(repeats):
        for name in names if rep % 2 == 0 else names[::-1]:
            best[name] = min(best[name], _per_call(variants[name]))
    return best


# --------------------------------------------------------------------------------------
# 2 + 3. Recommender: training and serving
# --------------------------------------------------------------------------------------


def _rec_month(settings: Settings) -> pd.Timestamp:
    end = pd.Timestamp(settings.partitions.end_date)
    return min(REC_MONTH, end.to_period("M").to_timestamp())


def _interaction_data(
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


def _bench_recommender(
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

    _progress(f"recommender training ({label})")
    fit = _interleaved(
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
    day = _rec_month(settings) - pd.Timedelta(days=1)
    events = pd.DataFrame(
        {
            "user_id": data.user_ids[pairs.row],
            "item_id": data.item_ids[pairs.col],
            "event_date": day,
            "weight": 1.0,
        }
    )
    weighting = Weighting(scheme=cfg.weighting.scheme, alpha=cfg.weighting.alpha)

    _progress(f"recommendation serving ({label})")
    serve = _interleaved(
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


# --------------------------------------------------------------------------------------
# 4. Churn: training and scoring
# --------------------------------------------------------------------------------------


def _bench_churn(settings: Settings, direct: DirectData, repeats: int) -> list[BenchRow]:
    features = feature_columns(settings.features.windows)
    horizon, cfg = settings.labels.horizon_days, settings.churn
    end = pd.Timestamp(settings.partitions.end_date)
    month = end.to_period("M").to_timestamp()
    earliest = pd.Timestamp(settings.partitions.start_date) + pd.Timedelta(
        days=settings.features.lookback_days - 1
    )
    window = churn_window(month, horizon, cfg.train_months, cfg.validation_days, earliest)
    assert direct.labels is not None
    dataset = build_churn_training_set(
        direct.features,
        direct.labels,
        window,
        features,
        quarantined_ids(direct.quarantine, "customer_id"),
        failing_days(direct.quality),
        month,
        snapshot_days(window, cfg.snapshot_every_days),
    )
    usable = dataset[dataset["verified"]].sort_values(["as_of_date", "customer_id"], kind="stable")
    train, valid = usable[usable["split"] == "train"], usable[usable["split"] == "valid"]
    space = SearchSpace(**cfg.search.model_dump())
    winner: dict[str, Any] = {}

    def wrapped() -> None:
        trained = train_churn_model(train, valid, features, "churned", space)
        winner["model"] = trained

    def baseline() -> xgb.Booster:
        params = dict(winner["model"].params)
        rounds = int(params.pop("num_boost_round"))
        dtrain = xgb.QuantileDMatrix(
            train.loc[:, features], label=train["churned"].to_numpy(), nthread=space.nthread
        )
        return xgb.train(params, dtrain, num_boost_round=rounds)

    _progress(f"churn training (month {month:%Y-%m}, {len(train)} train rows)")
    fit = _interleaved({"wrapped": wrapped, "baseline": baseline}, repeats)
    trained = winner["model"]
    rows = [
        BenchRow(
            "churn training",
            f"{len(train)} train + {len(valid)} valid rows, {len(features)} features",
            fit["wrapped"],
            fit["baseline"],
            f"train_churn_model ({space.n_trials} trials, <= {space.num_boost_round} rounds, "
            f"early stopping {space.early_stopping_rounds}) vs one xgboost.train with the "
            f"winner's params and its {trained.best_iteration + 1} rounds (QuantileDMatrix "
            "build included in both); the ratio is mostly the search itself",
        )
    ]

    booster = trained.booster
    last_day = direct.features["as_of_date"].max()
    one_day = direct.features[direct.features["as_of_date"] == last_day]
    _progress("churn scoring")
    for label, frame in (("1 day", one_day), ("full feature table", direct.features)):
        score = _interleaved(
            {
                "baseline": functools.partial(_inplace, booster, frame.loc[:, features]),
                "wrapped": functools.partial(predict_scores, booster, frame, features),
            },
            repeats,
        )
        rows.append(
            BenchRow(
                f"churn scoring, {label}",
                f"{len(frame)} rows",
                score["wrapped"],
                score["baseline"],
                "predict_scores vs booster.inplace_predict(frame[features]) (column selection "
                "in both)",
            )
        )
    return rows


# --------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------


def _scaled_shop(settings: Settings, scale: int) -> tuple[SyntheticShop, str]:
    syn = settings.source.synthetic
    n_customers = syn.n_customers * scale
    n_items = syn.n_items * min(scale, MAX_ITEM_SCALE)
    config = SyntheticConfig(
        start=settings.partitions.start_date,
        end=_rec_month(settings).date(),
        seed=syn.seed,
        n_customers=n_customers,
        n_items=n_items,
    )
    _progress(f"generating the {scale}x shop ({n_customers} customers, {n_items} items)")
    notes = (
        f"{scale}x customers, items x min(scale, {MAX_ITEM_SCALE}) = {n_items} (a realistic "
        "catalogue grows slower than the customer base; keeps memory far below 6 GB); shop "
        f"generated up to {_rec_month(settings):%Y-%m-%d} only"
    )
    return generate_shop(config), notes


def markdown_table(rows: list[BenchRow]) -> str:
    lines = [
        "| benchmark | size | wrapped s | baseline s | ratio | notes |",
        "|---|---|---:|---:|---:|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row.name} | {row.size} | {row.wrapped_s:.4g} | {row.baseline_s:.4g} | "
            f"{row.ratio:.2f} | {row.notes} |"
        )
    return "\n".join(lines)


@contextlib.contextmanager
def _quiet_threads() -> Iterator[None]:
    """implicit warns when BLAS is threaded under its own pool; the CLI pins BLAS to 1 thread."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*OpenBLAS.*")
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        yield


def _inplace(booster: xgb.Booster, frame: pd.DataFrame) -> object:
    return booster.inplace_predict(frame)


def run_benchmarks(
    settings: Settings,
    scale: int,
    repeats: int,
    out: Path | None,
    *,
    scaled: bool = True,
) -> list[BenchRow]:
    """Run every benchmark, print a markdown table, write JSON to ``out`` when given.

    ``scaled=False`` skips the scale× recommender data (for a quick check of the command).
    """
    if scale < 1 or repeats < 1:
        raise ValueError("scale and repeats must be >= 1")
    if settings.source.kind != "synthetic" or settings.partitions.end_date is None:
        raise ValueError("the benchmark needs the synthetic source and partitions.end_date")
    started = time.perf_counter()
    rows: list[BenchRow] = []
    with _quiet_threads():
        _progress("direct data (generate, validate, features, labels)")
        direct = run_ingest(settings, Stages())
        matured = pd.Timestamp(settings.partitions.end_date) - pd.Timedelta(
            days=settings.labels.horizon_days
        )
        run_labels(settings, direct, matured, Stages())

        month = _rec_month(settings)
        demo_data = _interaction_data(direct.shop.interactions, settings, month)
        rows += _bench_recommender(
            settings,
            demo_data,
            "demo",
            repeats,
            f"interactions of the {settings.recommender.lookback_months or 'all'} months before "
            f"{month:%Y-%m-%d}",
        )
        if scaled:
            shop, notes = _scaled_shop(settings, scale)
            scaled_data = _interaction_data(shop.interactions, settings, month)
            del shop
            rows += _bench_recommender(settings, scaled_data, f"{scale}x", repeats, notes)
            del scaled_data

        rows += _bench_churn(settings, direct, repeats)
    wall = time.perf_counter() - started

    print()
    print(markdown_table(rows))
    print(
        f"\nwall time {wall:.1f} s; best of {repeats} per measurement unless noted; "
        f"{os.cpu_count()} CPUs; ratio = wrapped / baseline"
    )
    if out is not None:
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "scale": scale,
            "repeats": repeats,
            "wall_s": wall,
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "rows": [row.as_dict() for row in rows],
        }
        out.write_text(json.dumps(payload, indent=2, default=str) + "\n")
        print(f"JSON: {out}")
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.wrappers", description=__doc__)
    parser.add_argument(
        "--settings", help="settings file (default: $LIFECYCLE_SETTINGS or the demo)"
    )
    parser.add_argument("--scale", type=int, default=10, help="customers multiplier (recommender)")
    parser.add_argument("--repeats", type=int, default=3, help="N: best of N per measurement")
    parser.add_argument("--json", type=Path, dest="json_path", help="also write the rows here")
    args = parser.parse_args(argv)
    run_benchmarks(load_settings(args.settings), args.scale, args.repeats, args.json_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
