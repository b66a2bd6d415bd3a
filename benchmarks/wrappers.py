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
import functools
import json
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import xgboost as xgb

from benchmarks.direct import DirectData, Stages, churn_training_rows, run_stages, training_month
from benchmarks.measure import progress
from benchmarks.rec_wrappers import bench_recommender, interaction_data, rec_month, scaled_shop
from benchmarks.timing import BenchRow, interleaved, markdown_table, quiet_threads
from lifecycle.churn_model import SearchSpace, predict_scores, train_churn_model
from lifecycle.features import feature_columns
from lifecycle.settings import Settings, load_settings

__all__ = ["BenchRow", "markdown_table", "run_benchmarks"]


def _bench_churn(settings: Settings, direct: DirectData, repeats: int) -> list[BenchRow]:
    features = feature_columns(settings.features.windows)
    month = training_month(settings)
    usable = churn_training_rows(settings, direct, month)
    train, valid = usable[usable["split"] == "train"], usable[usable["split"] == "valid"]
    space = SearchSpace(**settings.churn.search.model_dump())
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

    progress(f"churn training (month {month:%Y-%m}, {len(train)} train rows)")
    fit = interleaved({"wrapped": wrapped, "baseline": baseline}, repeats)
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
    progress("churn scoring")
    for label, frame in (("1 day", one_day), ("full feature table", direct.features)):
        score = interleaved(
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
    with quiet_threads():
        progress("direct data (generate, validate, features, labels)")
        direct, _ = run_stages(settings, Stages())

        month = rec_month(settings)
        demo_data = interaction_data(direct.shop.interactions, settings, month)
        rows += bench_recommender(
            settings,
            demo_data,
            "demo",
            repeats,
            f"interactions of the {settings.recommender.lookback_months or 'all'} months before "
            f"{month:%Y-%m-%d}",
        )
        if scaled:
            shop, notes = scaled_shop(settings, scale)
            scaled_data = interaction_data(shop.interactions, settings, month)
            del shop
            rows += bench_recommender(settings, scaled_data, f"{scale}x", repeats, notes)
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
