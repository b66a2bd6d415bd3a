"""Per-day check results through each instance storage: ``python -m benchmarks.event_log``.

A ranged run of one daily asset whose partitioned check records one result per day (what the
raw tables do) stores a materialisation batch and one check evaluation per day. This times that
run on Dagster's stock storages (``storage: sqlite``, ``storage: postgres``) against the
project's (dagster_home/dagster.yaml's batching SQLite storage, deploy/dagster.yaml's pooled
PostgreSQL storage), each in its own forked process with a fresh DAGSTER_HOME (PostgreSQL: a
dedicated database, dropped and re-created), with the project's instance environment.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import yaml

from benchmarks.instances import Postgres, write_home
from benchmarks.measure import forked

STOCK = {
    "sqlite": {"sqlite": {"base_dir": {"env": "DAGSTER_HOME"}}},
    "postgres": None,  # deploy/dagster.yaml's postgres_db under plain `postgres:`
}


def _home(storage: str, stock: bool) -> Path:
    home = Path(tempfile.mkdtemp(prefix="event_log_"))
    write_home(home, storage)
    if stock:
        config = yaml.safe_load((home / "dagster.yaml").read_text())
        custom = config["storage"]["custom"]["config"]
        config["storage"] = STOCK[storage] or {"postgres": custom}
        (home / "dagster.yaml").write_text(yaml.safe_dump(config))
    return home


def ranged_run(home: Path, days: int) -> float:
    """Seconds of one ranged run over ``days`` days with a per-day check (in this process)."""
    os.environ["DAGSTER_HOME"] = str(home)
    import dagster as dg

    from resources.instance_env import apply_instance_env

    apply_instance_env()
    parts = dg.DailyPartitionsDefinition(start_date="2020-01-01")
    check_key = dg.AssetCheckKey(dg.AssetKey("daily"), "share")

    @dg.asset(
        partitions_def=parts,
        check_specs=[dg.AssetCheckSpec("share", asset="daily", partitions_def=parts)],
        backfill_policy=dg.BackfillPolicy.single_run(),
        dagster_type=dg.Nothing,
    )
    def daily(context):  # unannotated: a string annotation is refused
        yield dg.Output(None)
        name = context.assets_def.get_output_name_for_asset_check_key(check_key)
        yield dg.Output(None, output_name=name)
        for day in context.partition_keys:
            yield dg.AssetCheckEvaluation(
                asset_key=check_key.asset_key,
                check_name="share",
                passed=True,
                partition=day,
                metadata={"share": 0.0},
            )

    keys = parts.get_partition_keys()[:days]
    tags = {
        "dagster/asset_partition_range_start": keys[0],
        "dagster/asset_partition_range_end": keys[-1],
    }
    with dg.DagsterInstance.get() as instance:
        started = time.perf_counter()
        quiet = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
        result = dg.materialize([daily], instance=instance, tags=tags, run_config=quiet)
        seconds = time.perf_counter() - started
        stored = instance.event_log_storage.get_asset_check_execution_history(
            check_key, limit=days + 1
        )
    if not result.success or len(stored) != days:
        raise RuntimeError(f"{len(stored)} check results stored for {days} days")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--storage", default="sqlite,postgres")
    parser.add_argument("--pg-db", default="lifecycle_bench_events")
    args = parser.parse_args()
    print("| storage | days | stock s | project s | project / stock |")
    print("|---|---:|---:|---:|---:|")
    for storage in args.storage.split(","):
        seconds = {}
        for stock in (True, False):
            if storage == "postgres":
                pg = Postgres("127.0.0.1", 5432, "postgres", args.pg_db)
                pg.recreate()
                os.environ.update(pg.env())
            result, _ = forked(ranged_run, _home(storage, stock), args.days)
            seconds[stock] = float(result)  # type: ignore[arg-type]
        print(
            f"| {storage} | {args.days} | {seconds[True]:.2f} | {seconds[False]:.2f} "
            f"| {seconds[False] / seconds[True]:.2f} |"
        )


if __name__ == "__main__":
    main()
