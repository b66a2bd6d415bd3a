"""`lifecycle bench`: what the project's wrappers cost over a direct call doing the same work.

Speed is measured, not assumed. Every benchmark times the wrapped path (a Dagster run, or a
``lifecycle.*`` function) and a direct baseline on the same inputs, in the same process,
interleaved (A B, then B A, …), and keeps the best of N for each. The result to read is the
ratio wrapped / baseline: absolute seconds move with whatever else the machine is doing.

1. Backfill: raw → features (one ranged run over the whole range) and labels (one ranged run
   over the matured days, as ``lifecycle demo`` does: a label day needs the horizon after it)
   vs generate_shop + validate_rows + daily_activity + customer_features + churn_labels.
   Each step's time is split, from the run's event log, into in-step compute, warehouse reads
   and writes, and per-partition event bookkeeping.
2. Recommender training: ``train_als`` vs implicit's CPU ALS ``fit``, demo data and scale×.
3. Serving: ``recommend_users`` / ``recommendation_table`` vs one ``model.recommend`` batch.
4. Churn: ``train_churn_model`` vs ``xgboost.train`` with the winner's params and rounds;
   ``predict_scores`` vs ``booster.inplace_predict`` on one day and on the whole table.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import contextlib
import functools
import json
import math
import platform
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg
import numpy as np
import pandas as pd
import xgboost as xgb

from assets.keys import INGEST, LABELS
from lifecycle.churn_model import SearchSpace, predict_scores, train_churn_model
from lifecycle.datasets import (
    build_churn_training_set,
    churn_window,
    failing_days,
    quarantined_ids,
    snapshot_days,
)
from lifecycle.features import churn_labels, customer_features, daily_activity, feature_columns
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
from lifecycle.validation import (
    INTERACTIONS,
    TRANSACTIONS,
    TableSpec,
    empty_days,
    quarantine_share_by_day,
    validate_rows,
)

__all__ = ["BenchRow", "markdown_table", "run_benchmarks"]

# The month whose recommender training set (the months before it) is benchmarked.
REC_MONTH = pd.Timestamp("2026-06-01")
# Calls faster than this are looped and averaged, so a short burst of other load on the
# machine is diluted and the clock resolves millisecond calls.
MIN_TIMED_S = 1.0
# One demo backfill (two Dagster runs) takes minutes; further repetitions stop once the
# Dagster runs have used this much time, so the whole command stays within a few minutes.
BACKFILL_BUDGET_S = 300.0
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
# 1. Backfill: Dagster runs vs the pure functions
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Window:
    first: pd.Timestamp  # first day
    end: pd.Timestamp  # exclusive end of the ingest range
    matured_end: pd.Timestamp  # exclusive end of the label range

    @property
    def ingest_days(self) -> tuple[str, str]:
        return self.first.strftime(FMT), (self.end - pd.Timedelta(days=1)).strftime(FMT)

    @property
    def label_days(self) -> tuple[str, str]:
        return self.first.strftime(FMT), (self.matured_end - pd.Timedelta(days=1)).strftime(FMT)


@dataclass
class _StepProfile:
    """One step's time from its events: what is not read, write or bookkeeping is compute."""

    step: str
    start: float
    last: float
    duration: float = 0.0
    read: float = 0.0  # IO manager loads (DuckDB reads)
    input_check: float = 0.0  # Dagster type checks of loaded inputs
    write: float = 0.0  # IO manager handle_output (DuckDB writes)
    events: float = 0.0  # one ASSET_MATERIALIZATION event per partition per output
    materializations: int = 0
    phase: str = ""

    @property
    def compute(self) -> float:
        """Asset body plus output type checks and metadata (no event separates them)."""
        return max(self.duration - self.read - self.input_check - self.write - self.events, 0.0)

    def summary(self) -> str:
        return (
            f"compute+out-typecheck {self.compute:.2f}, read {self.read:.2f}, "
            f"in-typecheck {self.input_check:.2f}, write {self.write:.2f}, "
            f"{self.materializations} materialization events {self.events:.2f}"
        )


@dataclass
class _RunProfile:
    wall: float
    steps: dict[str, _StepProfile] = field(default_factory=dict)
    planned: int = 0
    before_start: float = 0.0  # run creation (planned events) until RUN_START

    @property
    def in_steps(self) -> float:
        return sum(s.duration for s in self.steps.values())

    def summary(self) -> str:
        parts = {
            "compute": sum(s.compute for s in self.steps.values()),
            "read": sum(s.read + s.input_check for s in self.steps.values()),
            "write": sum(s.write for s in self.steps.values()),
            "events": sum(s.events for s in self.steps.values()),
        }
        return (
            f"steps {self.in_steps:.1f} s (compute {parts['compute']:.1f}, read+typecheck "
            f"{parts['read']:.1f}, write {parts['write']:.1f}, materialization events "
            f"{parts['events']:.1f}); outside steps {self.wall - self.in_steps:.1f} s "
            f"({self.planned} planned-materialization events, run start at "
            f"{self.before_start:.1f} s)"
        )


def _profile(instance: dg.DagsterInstance, run_id: str, wall: float) -> _RunProfile:
    kinds = dg.DagsterEventType
    profile = _RunProfile(wall=wall)
    first: float | None = None
    for record in instance.all_logs(run_id):
        event = record.dagster_event
        if event is None:
            continue
        now = record.timestamp
        first = now if first is None else first
        kind = event.event_type
        if kind == kinds.ASSET_MATERIALIZATION_PLANNED:
            profile.planned += 1
        elif kind == kinds.RUN_START:
            profile.before_start = now - first
        if kind == kinds.STEP_START and event.step_key:
            profile.steps[event.step_key] = _StepProfile(event.step_key, start=now, last=now)
            continue
        step = profile.steps.get(event.step_key or "")
        if step is None:
            continue
        gap, step.last = now - step.last, now
        if kind == kinds.LOADED_INPUT:
            step.read += gap
        elif kind == kinds.STEP_INPUT:
            step.input_check += gap
        elif kind == kinds.STEP_OUTPUT:
            step.phase = "output"  # the gap before it is the body (and the output type check)
        elif kind == kinds.ASSET_MATERIALIZATION:
            step.materializations += 1
            if step.phase == "output":
                step.write += gap
                step.phase = "events"
            elif step.phase == "events":
                step.events += gap
        elif kind == kinds.HANDLED_OUTPUT:
            if step.phase == "events":
                step.events += gap
            elif step.phase == "output":
                step.write += gap
            step.phase = ""
        elif kind == kinds.STEP_SUCCESS:
            step.duration = float(event.event_specific_data.duration_ms) / 1000.0  # type: ignore[union-attr]
    return profile


def _failures(result: dg.ExecuteInProcessResult) -> str:
    return "; ".join(
        f"{e.step_key}: {e.step_failure_data.error.message.strip()[:300]}"
        for e in result.all_events
        if e.is_step_failure and e.step_failure_data.error
    )


def _temp_settings(settings: Settings, root: Path) -> Settings:
    paths = {"database": str(root / "warehouse.duckdb"), "artifact_root": str(root / "artifacts")}
    return settings.model_copy(update={"warehouse": settings.warehouse.model_copy(update=paths)})


def _clear_source_cache() -> None:
    """The synthetic source generates its shop once per process; each run must pay for it."""
    from resources import sources

    cached = getattr(sources, "_shop", None)
    if cached is not None and hasattr(cached, "cache_clear"):
        cached.cache_clear()


def _dagster_backfill(settings: Settings, window: _Window) -> dict[str, _RunProfile]:
    """Both ranged runs in a fresh DAGSTER_HOME and a fresh warehouse; only the runs are timed."""
    profiles: dict[str, _RunProfile] = {}
    with (
        tempfile.TemporaryDirectory(prefix="bench-warehouse-") as root,
        dg.instance_for_test() as instance,
    ):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # beta/preview notices of the asset definitions
            from definitions import build_defs

            defs = build_defs(_temp_settings(settings, Path(root)))
        job = defs.resolve_job_def("daily_refresh")
        _clear_source_cache()
        runs = {"ingest": (INGEST, window.ingest_days), "labels": ([LABELS], window.label_days)}
        for name, (keys, days) in runs.items():
            tags = {
                "dagster/asset_partition_range_start": days[0],
                "dagster/asset_partition_range_end": days[1],
            }
            # The console logger still formats every event; only the terminal is spared.
            with open(os.devnull, "w") as sink, contextlib.redirect_stderr(sink):
                start = time.perf_counter()
                result = job.execute_in_process(
                    instance=instance, tags=tags, asset_selection=keys, raise_on_error=False
                )
                wall = time.perf_counter() - start
            if not result.success:
                raise RuntimeError(f"benchmark {name} run failed: {_failures(result)}")
            profiles[name] = _profile(instance, result.run_id, wall)
    return profiles


@dataclass
class _Direct:
    """Outputs of the direct path, reused by the churn benchmarks."""

    shop: SyntheticShop
    features: pd.DataFrame
    labels: pd.DataFrame
    quarantine: pd.DataFrame
    quality: pd.DataFrame


def _validate(
    shop: SyntheticShop, spec: TableSpec, window: _Window, bound: float
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """What a raw asset computes: validated rows, quarantine and the per-day quality table."""
    frame = shop.transactions if spec.name == "transactions" else shop.interactions
    stamps = frame["timestamp"]
    lo, hi = stamps.searchsorted(window.first), stamps.searchsorted(window.end)
    raw = frame.iloc[lo:hi].loc[:, list(spec.columns)].reset_index(drop=True)
    batch = validate_rows(raw, spec, window.first, window.end, origin=f"bench.{spec.name}")
    empty_days(batch.clean, window.first, window.end)
    shares = quarantine_share_by_day(batch.clean, batch.quarantine, window.first, window.end)
    quality = shares.rename(columns={"day": "event_date"}).assign(
        passed=lambda f: f["share"] <= bound
    )
    return batch.clean, batch.quarantine, quality


def _direct_backfill(settings: Settings, window: _Window) -> tuple[dict[str, float], _Direct]:
    """The same work on the pure functions, each stage timed on its own."""
    syn = settings.source.synthetic
    bound = settings.validation.max_quarantine_share
    config = SyntheticConfig(
        start=window.first.date(),
        end=window.end.date(),
        seed=syn.seed,
        n_customers=syn.n_customers,
        n_items=syn.n_items,
    )
    times: dict[str, float] = {}

    def timed(stage: str, fn: Callable[[], Any]) -> Any:
        start = time.perf_counter()
        out = fn()
        times[stage] = time.perf_counter() - start
        return out

    shop = timed("shop", lambda: generate_shop(config))
    tx, quarantine, quality = timed(
        "raw_transactions", lambda: _validate(shop, TRANSACTIONS, window, bound)
    )
    timed("raw_interactions", lambda: _validate(shop, INTERACTIONS, window, bound))
    activity = timed("features__customer_activity", lambda: daily_activity(tx))
    days = pd.date_range(window.first, window.end - pd.Timedelta(days=1), freq="D")
    windows = settings.features.windows
    features = timed(
        "features__customer_features", lambda: customer_features(activity, days, windows)
    )
    population = features.loc[
        features["as_of_date"] < window.matured_end, ["as_of_date", "customer_id"]
    ]
    labels = timed(
        "labels__churn_labels",
        lambda: churn_labels(population, activity, settings.labels.horizon_days),
    )
    return times, _Direct(shop, features, labels, quarantine, quality)


def _backfill_window(settings: Settings) -> _Window:
    if settings.source.kind != "synthetic" or settings.partitions.end_date is None:
        raise ValueError("the benchmark needs the synthetic source and partitions.end_date")
    first = pd.Timestamp(settings.partitions.start_date)
    end = pd.Timestamp(settings.partitions.end_date)
    matured_end = end - pd.Timedelta(days=settings.labels.horizon_days)
    return _Window(first=first, end=end, matured_end=matured_end)


def _bench_backfill(
    settings: Settings, repeats: int, budget_s: float
) -> tuple[list[BenchRow], _Direct]:
    window = _backfill_window(settings)
    size = (
        f"{settings.source.synthetic.n_customers} customers, "
        f"{(window.end - window.first).days} days"
    )
    best_direct: dict[str, float] = {}
    best_total = math.inf
    best_runs: dict[str, _RunProfile] | None = None
    direct: _Direct | None = None
    spent, done = 0.0, 0
    for rep in range(repeats):
        for what in ("direct", "dagster") if rep % 2 == 0 else ("dagster", "direct"):
            if what == "direct":
                times, direct = _direct_backfill(settings, window)
                for stage, seconds in times.items():
                    best_direct[stage] = min(best_direct.get(stage, math.inf), seconds)
                best_total = min(best_total, sum(times.values()))
                _progress(f"backfill {rep + 1}/{repeats}: direct {sum(times.values()):.1f} s")
            else:
                runs = _dagster_backfill(settings, window)
                wall = sum(p.wall for p in runs.values())
                spent += wall
                if best_runs is None or wall < sum(p.wall for p in best_runs.values()):
                    best_runs = runs
                _progress(
                    f"backfill {rep + 1}/{repeats}: dagster "
                    + ", ".join(f"{n} run {p.wall:.1f} s" for n, p in runs.items())
                )
        done = rep + 1
        if done < repeats and spent / done * (done + 1) > budget_s:
            _progress(
                f"backfill: stopping after {done} repetition(s), time budget {budget_s:.0f} s"
            )
            break
    assert best_runs is not None and direct is not None
    reps = f"best of {done}" + (f" of {repeats} (time budget)" if done < repeats else "")

    ingest, labels = best_runs["ingest"], best_runs["labels"]
    label_stage = "labels__churn_labels"
    ingest_direct = sum(v for k, v in best_direct.items() if k != label_stage)
    days_ingest = (window.end - window.first).days
    days_labels = (window.matured_end - window.first).days
    rows = [
        BenchRow(
            "backfill: raw+features, one ranged run",
            f"{size}; {len(ingest.steps)} steps",
            ingest.wall,
            ingest_direct,
            f"{reps}. {ingest.summary()}",
        ),
        BenchRow(
            "backfill: labels, one ranged run",
            f"{days_labels} matured days",
            labels.wall,
            best_direct[label_stage],
            f"{reps}. {labels.summary()}. Labels need the {settings.labels.horizon_days}-day "
            "horizon after each day, so they are a second run over the matured days (as in "
            "`lifecycle demo`): a single run over the whole range fails on immature days",
        ),
        BenchRow(
            "backfill: total (both runs)",
            size,
            ingest.wall + labels.wall,
            best_total,
            f"{reps}; baseline = generate_shop + validate_rows (+ daily quality) per table + "
            "daily_activity + customer_features + churn_labels, in memory, no warehouse",
        ),
    ]
    first_raw = next((s for s in ingest.steps if s.startswith("raw_")), None)
    for profile, days in ((ingest, days_ingest), (labels, days_labels)):
        for name, step in profile.steps.items():
            baseline = best_direct.get(name, math.nan)
            extra = ""
            if name == first_raw:
                baseline += best_direct["shop"]
                extra = " (baseline includes generate_shop: the first raw step generates it)"
            rows.append(
                BenchRow(
                    f"  step {name}",
                    f"{days} partitions",
                    step.duration,
                    baseline,
                    step.summary() + extra,
                )
            )
    return rows, direct


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


def _bench_churn(settings: Settings, direct: _Direct, repeats: int) -> list[BenchRow]:
    features = feature_columns(settings.features.windows)
    horizon, cfg = settings.labels.horizon_days, settings.churn
    end = pd.Timestamp(settings.partitions.end_date)
    month = end.to_period("M").to_timestamp()
    earliest = pd.Timestamp(settings.partitions.start_date) + pd.Timedelta(
        days=settings.features.lookback_days - 1
    )
    window = churn_window(month, horizon, cfg.train_months, cfg.validation_days, earliest)
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
    backfill_budget_s: float = BACKFILL_BUDGET_S,
) -> list[BenchRow]:
    """Run every benchmark, print a markdown table, write JSON to ``out`` when given.

    ``scaled=False`` skips the scale× recommender data (for a quick check of the command).
    """
    if scale < 1 or repeats < 1:
        raise ValueError("scale and repeats must be >= 1")
    started = time.perf_counter()
    rows: list[BenchRow] = []
    with _quiet_threads():
        _progress(f"backfill benchmark ({repeats} repetitions, interleaved)")
        backfill_rows, direct = _bench_backfill(settings, repeats, backfill_budget_s)
        rows += backfill_rows

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
