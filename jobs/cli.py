"""`lifecycle` command: run the demo end to end, list versions, roll back, ask for recommendations.

Every command that changes state runs the project's own Dagster jobs in the instance of
``DAGSTER_HOME`` (default ``./dagster_home``), so the runs, promotions and rollbacks show up in
`dagster dev` exactly as if launched from the UI.
"""

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import dagster as dg
import duckdb
import numpy as np
import pandas as pd

from assets.keys import CHALLENGERS, FAMILIES, Selection
from assets.promotion import WAITING
from jobs import rollback_run_config
from jobs.demo_story import Story, rollback_target
from jobs.runs import _run, root_cause

__all__ = ["demo", "main", "root_cause"]  # root_cause: the one-line error the CLI prints
from lifecycle.interactions import RECOMMENDATION_COLUMNS
from lifecycle.recommender import load_bundle, recommend_users
from lifecycle.registry import ModelRegistry
from lifecycle.settings import Settings, SettingsError, load_settings
from resources.instance_env import apply_instance_env
from resources.registry import RegistryResource
from resources.warehouse import WarehouseFileError


def _instance() -> dg.DagsterInstance:
    # Before the instance exists: runs created here plan one event per asset for a range and
    # store each output's materialisations as a batch (resources/instance_env.py).
    apply_instance_env()
    home = Path(os.environ.setdefault("DAGSTER_HOME", str(Path.cwd() / "dagster_home")))
    home.mkdir(parents=True, exist_ok=True)
    return dg.DagsterInstance.get()


def _registry(settings: Settings) -> ModelRegistry:
    # The code location's registry resource, so the CLI connects with the same settings.
    return RegistryResource(
        database=settings.warehouse.database,
        artifact_root=settings.warehouse.artifact_root,
        connection_config=settings.warehouse.connection_config(),
    ).registry()


def _family_of(key: dg.AssetKey) -> str | None:
    return next((f for f, k in CHALLENGERS.items() if k == key), None)


def _family_of_step(step: str, keys: Selection) -> str | None:
    """The family whose asset (or gate op) a failed step computes."""
    for family in keys.families:  # the family's own assets and gates first
        f = FAMILIES[family]
        own = {key.to_python_identifier() for key in (*f.monthly, *f.daily, f.champion)}
        if step in own or step.startswith(f"{family}_"):
            return family
    for family in keys.families:  # then what feeds it (shared by families of one table)
        table = FAMILIES[family].table
        if step in {k.to_python_identifier() for k in Selection((table,)).all} or step == (
            f"raw_{table}"
        ):
            return family
    return None


def demo(settings: Settings, months: int) -> int:
    """Ingest → features → labels → monthly challengers → gates → promotion → scores, for the
    model families the source feeds. Non-zero when a run failed or a family ends without a
    champion (the blocked gates are named)."""
    from definitions import build_defs

    if settings.partitions.end_date is None:
        print("demo needs partitions.end_date in the settings file")
        return 2
    keys = Selection.of(settings)
    defs, instance = build_defs(settings), _instance()
    first = pd.Timestamp(settings.partitions.start_date)
    end = pd.Timestamp(settings.partitions.end_date)
    last_day = end - pd.Timedelta(days=1)
    matured = last_day - pd.Timedelta(days=settings.labels.horizon_days)
    train_months = pd.date_range(end=end.to_period("M").to_timestamp(), periods=months, freq="MS")
    scored = (train_months[-1] - pd.DateOffset(months=1), last_day)
    fmt = "%Y-%m-%d"
    print(f"DAGSTER_HOME={os.environ['DAGSTER_HOME']}  warehouse={settings.warehouse.database}")
    print(f"model families: {', '.join(keys.families)} (source tables: {', '.join(keys.tables)})")
    days = (first.strftime(fmt), last_day.strftime(fmt))
    ingest = "ingest + features" if keys.labels else "ingest"
    steps: list[tuple[str, str, dict]] = [
        (
            "daily_refresh",
            f"{ingest} {days[0]} … {days[1]} (one run)",
            {"keys": keys.ingest, "days": days},
        )
    ]
    if keys.labels:
        steps.append(
            (
                "daily_refresh",
                f"churn labels {days[0]} … {matured:{fmt}} (one run)",
                {"keys": keys.labels, "days": (days[0], matured.strftime(fmt))},
            )
        )
    for month in train_months:
        key = month.strftime(fmt)
        steps.append(
            ("monthly_training", f"datasets + challengers + gates for {key}", {"partition": key})
        )
        if month == train_months[-1]:
            # The newest challenger shadows the champion before its own promotion.
            score_days = (scored[0].strftime(fmt), days[1])
            made = f"scores, shadow scores ({', '.join(keys.families)})"
            steps.append(
                (
                    "daily_refresh",
                    f"{made} {score_days[0]} … {score_days[1]}",
                    {"keys": keys.predictions, "days": score_days},
                )
            )
        steps.append(("promote_champions", f"promote {key} challengers if their gates passed", {}))
        if len(train_months) >= 3 and month == train_months[-3] and "churn" in keys.families:
            # A rehearsed rollback: the next month's challenger must then beat the older model.
            steps.append(("churn_rollback", "roll churn back to the previous champion", {}))
    print("Running the lifecycle:")
    ok = True
    why: dict[str, list[str]] = {family: [] for family in keys.families}
    story, registry = Story(), _registry(settings)
    for job, planned, planned_kwargs in steps:
        what, kwargs = planned, planned_kwargs
        if job == "churn_rollback":
            target = rollback_target(registry, "churn")
            if target is None:
                continue
            reason = (
                f"drill: {target[0]} set aside while its shadow scores are reviewed; "
                f"{target[1]} restored"
            )
            what = f"roll churn back {target[0]} → {target[1]} (reason recorded)"
            kwargs = {"run_config": rollback_run_config("churn", target[1], reason)}
        outcome = _run(defs, instance, job, what, **kwargs)
        ok = outcome.ok and ok
        story.blocked += outcome.gate_details
        story.waiting += [cause for step, cause in outcome.causes if WAITING in cause]
        story.judged_after += outcome.judged_after
        if outcome.status == "refused":
            story.refused += [
                f"{step}: {cause}" for step, cause in outcome.causes if WAITING not in cause
            ]
        for key, gates in outcome.failed_gates.items():
            family = _family_of(key)
            if family in why:
                month = kwargs.get("partition", "?")
                why[family].append(f"{month}: blocking gates failed: {', '.join(gates)}")
        for step, cause in outcome.causes:
            family = _family_of_step(step, keys)
            # A failed gate is named once; the refusal that follows from it says it again.
            gated = outcome.status in {"blocked", "refused"} and bool(family and why[family])
            if family and not gated:
                why[family].append(cause)
        if not ok and job == "daily_refresh":
            break
    print()
    versions(settings)
    print("\n" + "\n".join(story.lines(registry, list(keys.families))))
    missing = _without_champion(settings, keys.families)
    for family in missing:
        reasons = "; ".join(why[family][-3:]) or "no challenger was trained (see the runs above)"
        print(f"\nNo {family} champion: {reasons}")
    print()
    for f in keys.family_keys:
        table = ".".join(f.predictions.path)
        print(f"{f.name + ':':<13} {settings.warehouse.database} → table {table}")
    print("Open the UI with:  bash scripts/dev.sh   (dagster dev on dagster_home/)")
    return 0 if ok and not missing else 1


def _without_champion(settings: Settings, families: Sequence[str]) -> list[str]:
    registry = _registry(settings)
    return [family for family in families if registry.alias(family, "champion") is None]


def versions(settings: Settings) -> int:
    """Every version with its aliases and headline metrics, then the alias history."""
    registry = _registry(settings)
    summary = registry.summary()
    if summary.empty:
        print("no model versions registered yet")
        return 0
    metric_cols = [
        c
        # churn; recommender; value (MAE and its ratio to the trailing-spend baseline)
        for c in (
            "metric_roc_auc",
            "metric_pr_auc",
            "metric_precision",
            "metric_ndcg",
            "metric_mae",
            "metric_mae_ratio_to_naive",
        )
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


def rollback(
    settings: Settings, model: str, version: str, reason: str, override: str | None = None
) -> int:
    """Run the model's rollback job; 0 only when the champion is now ``version``: a refusal
    (never champion, no reason, rolled back from without override, lost race) exits 1."""
    from definitions import build_defs

    outcome = _run(
        build_defs(settings),
        _instance(),
        f"{model}_rollback",
        f"roll {model} back to {version}",
        run_config=rollback_run_config(model, version, reason, override),
    )
    return 0 if outcome.status == "ok" else 1


def recommend(settings: Settings, user_id: str, k: int) -> int:
    """Answer one user from the champion (fallback, flagged, for a user it has never seen).
    The id is passed through as given: "00042" is not user 42."""
    if "recommender" not in Selection.of(settings).families:
        print(f"no recommender for this source: it provides {', '.join(settings.source.tables)}")
        return 2
    registry = _registry(settings)
    champion = registry.alias("recommender", "champion")
    if champion is None:
        print("no recommender champion yet")
        return 1
    paths = registry.verify(champion)
    bundle = load_bundle(next(iter(paths.values())).parent)
    requested = np.array([user_id], dtype=object)
    recs = recommend_users(bundle, requested, k).assign(model_version=champion.version)
    print(recs.loc[:, [c for c in RECOMMENDATION_COLUMNS if c in recs]].to_string(index=False))
    return 0


def _settings_path(argv: Sequence[str] | None) -> str | None:
    """``--settings`` read ahead of the full parse: the rollback choices depend on the file."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--settings")
    return pre.parse_known_args(argv)[0].settings


def main(argv: Sequence[str] | None = None) -> int:
    try:
        settings = load_settings(_settings_path(argv))
    except SettingsError as exc:
        print(f"lifecycle: {exc}", file=sys.stderr)
        return 2
    families = list(Selection.of(settings).families)
    parser = argparse.ArgumentParser(prog="lifecycle", description=__doc__)
    parser.add_argument(
        "--settings", help="settings file (default: $LIFECYCLE_SETTINGS or the demo)"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p_demo = sub.add_parser("demo", help="run the whole lifecycle end to end")
    p_demo.add_argument("--months", type=int, default=4, help="monthly challengers to train")
    sub.add_parser("versions", help="versions, aliases and promotion history")
    p_rb = sub.add_parser("rollback", help="make an earlier champion current again")
    p_rb.add_argument("model", choices=families)
    p_rb.add_argument("version")
    p_rb.add_argument("--reason", required=True, help="why, recorded in the alias history")
    p_rb.add_argument(
        "--override",
        metavar="REASON",
        help="restore a version that was itself rolled back from, saying why",
    )
    p_rec = sub.add_parser("recommend", help="top-K for one user from the champion")
    p_rec.add_argument("user_id", help="the user id exactly as in your data (a string)")
    p_rec.add_argument("-k", type=int, default=10)
    args = parser.parse_args(argv)
    try:
        return _dispatch(settings, args)
    except (duckdb.Error, WarehouseFileError) as exc:
        # A corrupted or locked warehouse is the operator's to fix: one line naming the file.
        print(f"lifecycle: {settings.warehouse.database}: {exc}", file=sys.stderr)
        return 2


def _dispatch(settings: Settings, args: argparse.Namespace) -> int:
    if args.command == "demo":
        return demo(settings, args.months)
    if args.command == "versions":
        return versions(settings)
    if args.command == "rollback":
        return rollback(settings, args.model, args.version, args.reason, args.override)
    return recommend(settings, args.user_id, args.k)


if __name__ == "__main__":
    sys.exit(main())
