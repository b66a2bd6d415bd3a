"""`lifecycle` command: run the demo end to end, list versions, roll back, ask for recommendations.

Every command that changes state runs the project's own Dagster jobs in the instance of
``DAGSTER_HOME`` (default ``./dagster_home``), so the runs, promotions and rollbacks show up in
`dagster dev` exactly as if launched from the UI.
"""

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import dagster as dg
import numpy as np
import pandas as pd
from dagster_shared.error import SerializableErrorInfo

from assets.keys import INGEST, LABELS, PREDICTIONS
from jobs import rollback_run_config
from lifecycle.interactions import RECOMMENDATION_COLUMNS
from lifecycle.recommender import load_bundle, recommend_users
from lifecycle.registry import ModelRegistry
from lifecycle.settings import Settings, load_settings


def _instance() -> dg.DagsterInstance:
    home = Path(os.environ.setdefault("DAGSTER_HOME", str(Path.cwd() / "dagster_home")))
    home.mkdir(parents=True, exist_ok=True)
    return dg.DagsterInstance.get()


def _registry(settings: Settings) -> ModelRegistry:
    registry = ModelRegistry(settings.warehouse.database, settings.warehouse.artifact_root)
    registry.ensure_schema()
    return registry


def _run(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    job: str,
    what: str,
    *,
    keys: Sequence[dg.AssetKey] | None = None,
    partition: str | None = None,
    days: tuple[str, str] | None = None,
    run_config: dict | None = None,
) -> bool:
    tags = {}
    if days is not None:
        tags = {
            "dagster/asset_partition_range_start": days[0],
            "dagster/asset_partition_range_end": days[1],
        }
    started = time.perf_counter()
    # The UI keeps every event and traceback; the terminal gets one line per run and, for a
    # failure, the root cause.
    quiet = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
    result = defs.resolve_job_def(job).execute_in_process(
        instance=instance,
        partition_key=partition,
        tags=tags,
        asset_selection=list(keys) if keys else None,
        run_config={**(run_config or {}), **quiet},
        raise_on_error=False,
    )
    causes = [
        (event.step_key, _root_cause(event.step_failure_data.error))
        for event in result.all_events
        if event.is_step_failure and event.step_failure_data.error
    ]
    status = _status(result.success, [cause for _, cause in causes])
    elapsed = time.perf_counter() - started
    print(f"  {what:<66} {status:>8}  {elapsed:6.1f} s  run {result.run_id[:8]}")
    if status in {"blocked", "refused"}:
        print(
            "    (a blocking check failed: the champion stays as it was; see the checks in the UI)"
        )
    for step, cause in causes:
        print(f"    {step}: {cause}")
    return status != "FAILED"


def _status(success: bool, causes: Sequence[str]) -> str:
    """A gate doing its job is an outcome, not an error: `blocked` when a blocking check failed,
    `refused` when a promotion was refused because of one; anything else is a failure."""
    if success:
        return "ok"
    if causes and all("refused to make" in c for c in causes):
        return "refused"
    if causes and all("blocking asset check" in c for c in causes):
        return "blocked"
    return "FAILED"


def _root_cause(error: SerializableErrorInfo) -> str:
    """The innermost error's message: the reason, not Dagster's wrapper around it."""
    while error.cause is not None:
        error = error.cause
    return error.message.strip()[:400]


def demo(settings: Settings, months: int) -> int:
    """Ingest → features → labels → monthly challengers → gates → promotion → scores."""
    from definitions import build_defs

    defs, instance = build_defs(settings), _instance()
    first = pd.Timestamp(settings.partitions.start_date)
    if settings.partitions.end_date is None:
        print("demo needs partitions.end_date in the settings file")
        return 2
    end = pd.Timestamp(settings.partitions.end_date)
    last_day = end - pd.Timedelta(days=1)
    matured = last_day - pd.Timedelta(days=settings.labels.horizon_days)
    train_months = pd.date_range(end=end.to_period("M").to_timestamp(), periods=months, freq="MS")
    scored = (train_months[-1] - pd.DateOffset(months=1), last_day)
    fmt = "%Y-%m-%d"
    print(f"DAGSTER_HOME={os.environ['DAGSTER_HOME']}  warehouse={settings.warehouse.database}")
    days = (first.strftime(fmt), last_day.strftime(fmt))
    steps: list[tuple[str, str, dict]] = [
        (
            "daily_refresh",
            f"ingest + features {days[0]} … {days[1]} (one run)",
            {"keys": INGEST, "days": days},
        ),
        (
            "daily_refresh",
            f"churn labels {days[0]} … {matured:{fmt}} (one run)",
            {"keys": [LABELS], "days": (days[0], matured.strftime(fmt))},
        ),
    ]
    for month in train_months:
        key = month.strftime(fmt)
        steps.append(
            ("monthly_training", f"datasets + challengers + gates for {key}", {"partition": key})
        )
        if month == train_months[-1]:
            # The newest challenger shadows the champion before its own promotion.
            score_days = (scored[0].strftime(fmt), days[1])
            steps.append(
                (
                    "daily_refresh",
                    f"scores, shadow scores, recommendations {score_days[0]} … {score_days[1]}",
                    {"keys": PREDICTIONS, "days": score_days},
                )
            )
        steps.append(("promote_champions", f"promote {key} challengers if their gates passed", {}))
    print("Running the lifecycle:")
    ok = True
    for job, what, kwargs in steps:
        ok = _run(defs, instance, job, what, **kwargs) and ok
        if not ok and job == "daily_refresh":
            break
    print()
    versions(settings)
    print(f"\nChurn scores:    {settings.warehouse.database} → table predictions.churn_scores")
    print(f"Recommendations: {settings.warehouse.database} → table predictions.recommendations")
    print("Open the UI with:  DAGSTER_HOME=$PWD/dagster_home .venv/bin/dagster dev")
    return 0 if ok else 1


def versions(settings: Settings) -> int:
    """Every version with its aliases and headline metrics, then the alias history."""
    registry = _registry(settings)
    summary = registry.summary()
    if summary.empty:
        print("no model versions registered yet")
        return 0
    metric_cols = [
        c
        for c in ("metric_roc_auc", "metric_pr_auc", "metric_precision", "metric_ndcg")
        if c in summary
    ]
    columns = ["model_name", "version", "partition_key", "dataset_version", "aliases", *metric_cols]
    with pd.option_context(
        "display.width", 200, "display.max_columns", 20, "display.max_colwidth", 40
    ):
        print(summary[columns].to_string(index=False, float_format=lambda v: f"{v:.4f}"))
        history = registry.history()
        print("\nAlias history:")
        print(
            history[["model_name", "alias", "event", "from_version", "to_version", "at"]].to_string(
                index=False
            )
        )
    return 0


def rollback(settings: Settings, model: str, version: str, reason: str) -> int:
    from definitions import build_defs

    ok = _run(
        build_defs(settings),
        _instance(),
        f"{model}_rollback",
        f"roll {model} back to {version}",
        run_config=rollback_run_config(model, version, reason),
    )
    return 0 if ok else 1


def recommend(settings: Settings, user_id: int, k: int) -> int:
    """Answer one user from the champion (fallback, flagged, for a user it has never seen)."""
    registry = _registry(settings)
    champion = registry.alias("recommender", "champion")
    if champion is None:
        print("no recommender champion yet")
        return 1
    paths = registry.verify(champion)
    bundle = load_bundle(next(iter(paths.values())).parent)
    recs = recommend_users(bundle, np.array([user_id]), k).assign(model_version=champion.version)
    print(recs.loc[:, [c for c in RECOMMENDATION_COLUMNS if c in recs]].to_string(index=False))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lifecycle", description=__doc__)
    parser.add_argument(
        "--settings", help="settings file (default: $LIFECYCLE_SETTINGS or the demo)"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p_demo = sub.add_parser("demo", help="run the whole lifecycle end to end")
    p_demo.add_argument("--months", type=int, default=4, help="monthly challengers to train")
    sub.add_parser("versions", help="versions, aliases and promotion history")
    p_rb = sub.add_parser("rollback", help="make an earlier champion current again")
    p_rb.add_argument("model", choices=["churn", "recommender"])
    p_rb.add_argument("version")
    p_rb.add_argument("--reason", default="manual rollback")
    p_rec = sub.add_parser("recommend", help="top-K for one user from the champion")
    p_rec.add_argument("user_id", type=int)
    p_rec.add_argument("-k", type=int, default=10)
    p_bench = sub.add_parser(
        "bench", help="wrapped vs direct timings, same process, interleaved, best of N"
    )
    p_bench.add_argument("--scale", type=int, default=10, help="customers multiplier (recommender)")
    p_bench.add_argument("--repeats", type=int, default=3, help="N: best of N per measurement")
    p_bench.add_argument("--json", type=Path, dest="json_path", help="also write the rows here")
    args = parser.parse_args(argv)
    settings = load_settings(args.settings)
    if args.command == "demo":
        return demo(settings, args.months)
    if args.command == "versions":
        return versions(settings)
    if args.command == "rollback":
        return rollback(settings, args.model, args.version, args.reason)
    if args.command == "bench":
        from jobs.bench import run_benchmarks

        run_benchmarks(settings, args.scale, args.repeats, args.json_path)
        return 0
    return recommend(settings, args.user_id, args.k)


if __name__ == "__main__":
    sys.exit(main())
