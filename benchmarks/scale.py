"""A million customers: the platform's kernels against the direct computation, as ratios.

``python -m benchmarks.scale --users 1000000`` prints a markdown table (what, platform s,
direct s, ratio, peak RSS MB) and writes it to ``/tmp/p3_scale.md`` (``--out``).

- all-user top-10: :func:`lifecycle.topk.top_k_unseen` vs implicit's ``recommend`` for every
  user (synthetic factors, ``--factors`` x ``--items``, ~20 seen items per user filtered);
- churn training: :func:`lifecycle.churn_model.train_churn_model` (QuantileDMatrix from the
  frame, one grid point, fixed rounds) vs ``xgb.train`` on a ``DMatrix``, at 1M and 5M rows of
  synthetic features, with the holdout AUC of each;
- one feature day: the asset's work (lifetime state by one DuckDB group-by, the 90-day window
  read into pandas, :func:`lifecycle.features.customer_features`) vs one DuckDB query computing
  the same columns, on ~30 transactions per customer over a year.

Each measurement runs in its own spawned process, so its peak RSS (VmHWM) is its own; pairs
run back to back (interleaved) on identical seeded data. Timings on a shared machine are noisy:
read the ratio, not the seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np
import pandas as pd

from benchmarks.measure import isolated, peak_rss_mb

WINDOWS = (7, 30, 90)
DAY = pd.Timestamp("2026-06-30")
HISTORY_DAYS = 365


# --------------------------------------------------------------------------------------
# Top-k
# --------------------------------------------------------------------------------------


def _factors(users: int, items: int, factors: int) -> tuple[Any, Any, Any]:
    import scipy.sparse as sp

    rng = np.random.default_rng(0)
    user_f = rng.standard_normal((users, factors), dtype=np.float32)
    item_f = rng.standard_normal((items, factors), dtype=np.float32)
    nnz = users * 20
    seen = sp.csr_matrix(
        (
            np.ones(nnz, dtype=np.float32),
            (np.repeat(np.arange(users), 20), rng.integers(0, items, nnz)),
        ),
        shape=(users, items),
    )
    seen.sum_duplicates()
    return user_f, item_f, seen


def topk_job(side: str, users: int, items: int, factors: int) -> dict[str, Any]:
    user_f, item_f, seen = _factors(users, items, factors)
    start = time.perf_counter()
    if side == "platform":
        from lifecycle.topk import top_k_unseen

        ids, _ = top_k_unseen(user_f, item_f, seen, 10)
    elif side == "gemm":
        # The floor of any exact top-k: every user-item score, nothing selected. Same tiles
        # (users x TILE_ITEMS items, ~1M cells), same threads as the platform's kernel.
        from concurrent.futures import ThreadPoolExecutor

        from lifecycle.topk import TILE_ITEMS, item_tiles

        step = max(1, (1 << 20) // TILE_ITEMS)
        tiles = item_tiles(item_f, TILE_ITEMS)

        def block(lo: int) -> float:
            users = user_f[lo : lo + step]
            out = np.empty((len(users), TILE_ITEMS), dtype=np.float32)
            total = 0.0
            for tile in tiles:
                np.matmul(users, tile, out=out[:, : tile.shape[1]])
                total += float(out[0, 0])
            return total

        with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
            list(pool.map(block, range(0, users, step)))
        ids = np.zeros((0, 10), dtype=np.int64)
    else:
        from implicit.cpu.als import AlternatingLeastSquares

        model = AlternatingLeastSquares(factors=factors, num_threads=0)
        model.user_factors, model.item_factors = user_f, item_f
        ids, _ = model.recommend(np.arange(users), seen, N=10, filter_already_liked_items=True)
    seconds = time.perf_counter() - start
    return {"s": seconds, "rss": peak_rss_mb(), "sample": np.asarray(ids[:2000])}


# --------------------------------------------------------------------------------------
# Churn training
# --------------------------------------------------------------------------------------

N_FEATURES = 25
ROUNDS = 20


def _churn_frame(rows: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, N_FEATURES))
    logit = x[:, :6] @ np.array([1.2, -0.8, 0.6, 0.5, -0.4, 0.3]) + 0.5 * np.sin(3 * x[:, 6])
    y = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    frame = pd.DataFrame(x, columns=[f"f{i}" for i in range(N_FEATURES)])
    frame["churned"] = y
    return frame


def churn_job(side: str, rows: int) -> dict[str, Any]:
    import xgboost as xgb

    from lifecycle.churn_model import SearchSpace, predict_scores, train_churn_model
    from lifecycle.metrics import roc_auc

    train, valid, hold = _churn_frame(rows, 1), _churn_frame(200_000, 2), _churn_frame(200_000, 3)
    names = [f"f{i}" for i in range(N_FEATURES)]
    tuned = {"max_depth": 6, "learning_rate": 0.1, "min_child_weight": 1.0}
    tuned |= {"subsample": 1.0, "colsample_bytree": 1.0, "reg_lambda": 1.0}
    start = time.perf_counter()
    if side == "platform":
        space = SearchSpace(
            **{key: (value,) for key, value in tuned.items()},  # type: ignore[arg-type]
            n_trials=1,
            num_boost_round=ROUNDS,
            early_stopping_rounds=ROUNDS,
        )
        booster = train_churn_model(train, valid, names, "churned", space).booster
        scores = predict_scores(booster, hold, names)
    else:
        params = {"objective": "binary:logistic", "tree_method": "hist", "seed": 0, "nthread": 2}
        dtrain = xgb.DMatrix(train[names], label=train["churned"], nthread=2)
        dvalid = xgb.DMatrix(valid[names], label=valid["churned"], nthread=2)
        booster = xgb.train(
            {**params, **tuned, "eval_metric": "logloss"},
            dtrain,
            ROUNDS,
            evals=[(dvalid, "valid")],
            verbose_eval=False,
        )
        scores = booster.predict(xgb.DMatrix(hold[names]))
    seconds = time.perf_counter() - start
    auc = roc_auc(hold["churned"].to_numpy(), np.asarray(scores, dtype=np.float64))
    return {"s": seconds, "rss": peak_rss_mb(), "auc": auc}


# --------------------------------------------------------------------------------------
# One feature day
# --------------------------------------------------------------------------------------

ID_SQL = "'c' || lpad(cast(c as varchar), 8, '0')"


def build_activity(path: Path, customers: int) -> int:
    """~30 purchases per customer over a year, as a DuckDB ``activity`` table; its row count."""
    import duckdb

    rng = np.random.default_rng(5)
    n = customers * 30
    key = np.unique(
        rng.integers(0, customers, n, dtype=np.int64) * HISTORY_DAYS
        + rng.integers(0, HISTORY_DAYS, n)
    )
    del n
    cust, day = np.divmod(key, HISTORY_DAYS)
    raw = pd.DataFrame(
        {
            "c": cust,
            "d": day,
            "txn_count": 1 + rng.poisson(0.2, len(key)),
            "spend": np.round(rng.gamma(2.0, 20.0, len(key)), 2),
        }
    )
    first = DAY - pd.Timedelta(days=HISTORY_DAYS - 1)
    with duckdb.connect(str(path)) as con:
        con.register("raw", raw)
        con.execute(
            f"create table activity as select cast(? as date) + cast(d as integer) activity_date, "
            f"{ID_SQL} customer_id, txn_count, cast(spend as double) spend from raw",
            [first.to_pydatetime()],
        )
    return len(raw)


DIRECT_SQL = """
select customer_id,
  date_diff('day', max(activity_date), $d) recency_days,
  date_diff('day', min(activity_date), $d) tenure_days,
  count(*) lifetime_active_days, sum(txn_count) lifetime_txn_count,
  round(sum(spend), 6) lifetime_spend,
  count(*) filter (where activity_date > $d - 90) active_days_90d,
  coalesce(sum(txn_count) filter (where activity_date > $d - 7), 0) txn_count_7d,
  coalesce(round(sum(spend) filter (where activity_date > $d - 7), 6), 0) spend_7d,
  coalesce(sum(txn_count) filter (where activity_date > $d - 30), 0) txn_count_30d,
  coalesce(round(sum(spend) filter (where activity_date > $d - 30), 6), 0) spend_30d,
  coalesce(sum(txn_count) filter (where activity_date > $d - 90), 0) txn_count_90d,
  coalesce(round(sum(spend) filter (where activity_date > $d - 90), 6), 0) spend_90d
from activity where activity_date <= $d group by customer_id order by customer_id
"""


def features_job(side: str, path: str) -> dict[str, Any]:
    import duckdb

    from lifecycle.feature_sql import coded_window
    from lifecycle.features import coded_feature_chunks

    window_from = DAY - pd.Timedelta(days=max(WINDOWS) - 1)
    with duckdb.connect(path) as con:
        start = time.perf_counter()
        if side == "platform":
            # What the asset does: DuckDB numbers the customers and folds the history before
            # the window into lifetime state; the kernel reads numbers, ids come back verbatim.
            coded = coded_window(con, "activity", window_from, DAY)
            chunks = coded_feature_chunks(coded, pd.DatetimeIndex([DAY]), WINDOWS)
            out = pd.concat(list(chunks), ignore_index=True)
        else:
            out = con.execute(DIRECT_SQL, {"d": DAY.date()}).df()
        seconds = time.perf_counter() - start
    check = out.set_index("customer_id")[["lifetime_txn_count", "spend_30d", "recency_days"]]
    return {"s": seconds, "rss": peak_rss_mb(), "rows": len(out), "check": check.iloc[::997]}


# --------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------


def _row(what: str, platform: dict[str, Any], direct: dict[str, Any], note: str) -> dict[str, Any]:
    """A table row, and under ``raw`` its numbers for ``benchmarks.all``'s targets."""
    return {
        "raw": {
            "platform_s": platform["s"],
            "direct_s": direct["s"],
            "platform_rss_mb": platform["rss"],
            "direct_rss_mb": direct["rss"],
        },
        "what": what,
        "platform s": f"{platform['s']:.1f}",
        "direct s": f"{direct['s']:.1f}",
        "ratio": f"{platform['s'] / direct['s']:.2f}",
        "peak RSS MB (platform / direct)": f"{platform['rss']:,.0f} / {direct['rss']:,.0f}",
        "note": note,
    }


def _topk_row(users: int, items: int, factors: int) -> dict[str, Any]:
    mine = isolated(topk_job, "platform", users, items, factors)
    theirs = isolated(topk_job, "direct", users, items, factors)
    floor = isolated(topk_job, "gemm", users, items, factors)
    same = float(np.mean(np.all(mine["sample"] == theirs["sample"], axis=1)))
    what = f"all-user top-10, {users:,} users x {items:,} items x {factors}"
    note = (
        f"direct: implicit recommend; same lists {same:.4f}; the score product alone "
        f"(float32 GEMM, no selection) {floor['s']:.1f} s = {floor['s'] / theirs['s']:.2f} of "
        f"implicit, so the platform's selection costs {mine['s'] - floor['s']:.1f} s"
    )
    return _row(what, mine, theirs, note)


def _features_row(customers: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "activity.duckdb"
        n_rows = build_activity(path, customers)
        mine = isolated(features_job, "platform", str(path))
        theirs = isolated(features_job, "direct", str(path))
    a, b = mine["check"], theirs["check"]
    equal = a.shape == b.shape and np.allclose(a.to_numpy(float), b.to_numpy(float))
    note = f"{mine['rows']:,} rows; same values {equal}; direct: one DuckDB query"
    what = f"one feature day, {customers:,} customers, {n_rows:,} activity rows"
    return _row(what, mine, theirs, note)


def _features_assets_row(customers: int) -> dict[str, Any]:
    from benchmarks.feature_day import feature_day_row

    out = feature_day_row(customers, DAY, HISTORY_DAYS)
    mine, theirs = out["assets"], out["direct"]
    a, b = mine["check"], theirs["check"]
    equal = a.shape == b.shape and np.allclose(a.to_numpy(float), b.to_numpy(float))
    note = (
        f"{mine['rows']:,} rows; same values {equal}; the real asset in a Dagster run "
        "(read, compute, validate, write, metadata) vs one DuckDB query into a table"
    )
    what = (
        f"one feature day through the assets, {customers:,} customers, "
        f"{out['activity_rows']:,} activity rows"
    )
    return _row(what, mine, theirs, note)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=1_000_000, help="users and customers")
    parser.add_argument("--items", type=int, default=50_000)
    parser.add_argument("--factors", type=int, default=64)
    parser.add_argument("--churn-rows", type=int, nargs="+", default=[1_000_000, 5_000_000])
    parser.add_argument("--out", type=Path, default=Path("/tmp/p3_scale.md"))
    parser.add_argument("--json", type=Path, dest="json_path", help="also the raw numbers")
    parser.add_argument(
        "--parts",
        nargs="+",
        choices=["topk", "churn", "features", "features_assets"],
        default=["topk", "churn", "features", "features_assets"],
    )
    args = parser.parse_args()
    rows = []
    t0 = time.perf_counter()

    if "topk" in args.parts:
        rows.append(_topk_row(args.users, args.items, args.factors) | {"part": "topk"})
        print(rows[-1], flush=True)
    for n in args.churn_rows if "churn" in args.parts else []:
        mine = isolated(churn_job, "platform", n)
        theirs = isolated(churn_job, "direct", n)
        note = f"AUC {mine['auc']:.4f} vs {theirs['auc']:.4f}; direct: xgb.train on DMatrix"
        what = f"churn fit, {n:,} rows x {N_FEATURES}, {ROUNDS} rounds"
        rows.append(_row(what, mine, theirs, note) | {"part": "churn", "rows": n})
        print(rows[-1], flush=True)

    if "features" in args.parts:
        rows.append(_features_row(args.users) | {"part": "features"})
        print(rows[-1], flush=True)
    if "features_assets" in args.parts:
        rows.append(_features_assets_row(args.users) | {"part": "features_assets"})
        print(rows[-1], flush=True)

    shown = [{k: v for k, v in r.items() if k not in ("raw", "part", "rows")} for r in rows]
    table = pd.DataFrame(shown).to_markdown(index=False)
    if args.json_path:
        raws = [
            r["raw"] | {"part": r["part"], "what": r["what"], "rows": r.get("rows")} for r in rows
        ]
        args.json_path.write_text(json.dumps(raws, indent=2))
    footer = f"\n\ntotal {time.perf_counter() - t0:.0f} s, {os.cpu_count()} CPUs\n"
    print(table + footer)
    args.out.write_text(table + footer)


if __name__ == "__main__":
    main()
