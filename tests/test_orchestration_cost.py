"""What a ranged run costs the instance, and what the cheaper settings still record.

Real parts: the shipped dagster_home/dagster.yaml (batching SQLite storage) in a temp
DAGSTER_HOME, real ranged runs of the ingest assets on the small world, real subprocesses for
the entry points.
"""

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.storage.partition_status_cache import AssetPartitionStatus

from assets.keys import INGEST, RAW_TRANSACTIONS
from definitions import build_defs
from resources.event_storage import BatchingSqliteEventLogStorage
from resources.instance_env import INSTANCE_ENV
from tests.conftest import run, small_settings

ROOT = Path(__file__).resolve().parent.parent
DAYS = ("2026-01-01", "2026-01-10")
DAY_KEYS = [f"2026-01-{d:02d}" for d in range(1, 11)]
PLANNED = "DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS"


def _env_without_flags(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in INSTANCE_ENV}
    return {**env, "DAGSTER_HOME": str(home)}


def _read_env_after(code: str, env: dict[str, str]) -> list[str]:
    names = ", ".join(repr(n) for n in INSTANCE_ENV)
    script = f"import os\n{code}\nprint([os.environ.get(n) for n in ({names},)])"
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return eval(done.stdout.strip().splitlines()[-1])  # a list literal printed by the child


@pytest.mark.parametrize(
    "code", ["import definitions", "from jobs.cli import _instance\n_instance()"]
)
def test_entry_points_set_the_instance_env_unless_the_operator_did(
    code: str, tmp_path: Path
) -> None:
    env = _env_without_flags(tmp_path)
    assert _read_env_after("", env) == [None, None]  # the child starts without them
    assert _read_env_after(code, env) == list(INSTANCE_ENV.values())
    # An operator's own value wins (e.g. turning batching off).
    assert _read_env_after(code, {**env, "DAGSTER_EVENT_BATCH_SIZE": "0"})[1] == "0"


@pytest.fixture
def shipped_instance(tmp_path: Path) -> Iterator[dg.DagsterInstance]:
    """The instance dagster_home/dagster.yaml describes, in a temp DAGSTER_HOME."""
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(ROOT / "dagster_home" / "dagster.yaml", home / "dagster.yaml")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DAGSTER_HOME", str(home))
        for name, value in INSTANCE_ENV.items():
            mp.setenv(name, value)
        instance = dg.DagsterInstance.get()
        try:
            yield instance
        finally:
            instance.dispose()


def test_ranged_run_with_the_cheap_settings_records_every_day(
    shipped_instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    instance = shipped_instance
    assert isinstance(instance.event_log_storage, BatchingSqliteEventLogStorage)
    defs = build_defs(small_settings(tmp_path))
    result = run(defs, instance, INGEST, partition_range=DAYS)
    assert result.success
    planned = instance.get_records_for_run(
        result.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED
    ).records
    assert len(planned) == len(INGEST) == 8  # one per key (raw companions too), not one per day
    for key in INGEST:
        records = instance.fetch_materializations(key, limit=100).records
        assert sorted(r.partition_key for r in records) == DAY_KEYS, key  # each day, once
        assert instance.get_materialized_partitions(key) == set(DAY_KEYS)
        entry = instance.get_latest_materialization_event(key)
        assert entry is not None and entry.run_id == result.run_id
    # Each day keeps its own figures (not the range's), in the batched rows too.
    raw = instance.fetch_materializations(RAW_TRANSACTIONS, limit=100).records
    rows = {r.partition_key: r.asset_materialization.metadata["rows"].value for r in raw}
    assert sum(rows.values()) == result.output_for_node("raw_transactions", "clean").shape[0]
    assert len(set(rows.values())) > 1
    checks = instance.event_log_storage.get_asset_check_execution_history(
        dg.AssetCheckKey(RAW_TRANSACTIONS, "transactions_quarantine_share"), limit=50
    )
    assert sorted(c.partition for c in checks) == DAY_KEYS
    assert {c.status.value for c in checks} == {"SUCCEEDED"}


@pytest.mark.parametrize("flag", ["true", "false"])
def test_a_failed_ranged_run_leaves_its_days_missing_not_failed(
    flag: str, shipped_instance: dg.DagsterInstance, tmp_path: Path, monkeypatch
) -> None:
    """The documented cost of one planned event per range, pinned: the run is FAILED (and the
    run-failure alert sensor reports it), its days show as missing, not FAILED. With the flag
    off the same run marks each day FAILED."""
    monkeypatch.setenv(PLANNED, flag)
    instance = shipped_instance
    settings = small_settings(tmp_path)
    Path(settings.warehouse.database).write_bytes(b"this is not a DuckDB file \x00\xff" * 512)
    result = run(build_defs(settings), instance, INGEST, partition_range=DAYS, raise_on_error=False)
    assert not result.success
    run_record = instance.get_run_by_id(result.run_id)
    assert run_record is not None and run_record.status == dg.DagsterRunStatus.FAILURE
    partitions_def = build_defs(settings).resolve_assets_def(RAW_TRANSACTIONS).partitions_def
    assert partitions_def is not None
    status = instance.get_status_by_partition(RAW_TRANSACTIONS, DAY_KEYS, partitions_def)
    assert status is not None
    expected = None if flag == "true" else AssetPartitionStatus.FAILED
    assert set(status.values()) == {expected}


def _report_check(instance: dg.DagsterInstance, day: str) -> None:
    instance.report_runless_asset_event(
        dg.AssetCheckEvaluation(
            asset_key=dg.AssetKey("kept"), check_name="c", passed=True, partition=day
        )
    )


def test_kept_connections_serve_other_threads_and_processes(
    shipped_instance: dg.DagsterInstance,
) -> None:
    """The storage keeps one SQLite connection per shard: it must still work from another
    thread (the webserver's), and another process writing the same files must not be locked
    out by the idle connection, nor its writes hidden from this one."""
    import threading

    instance = shipped_instance
    _report_check(instance, "2026-01-01")  # opens and keeps the index shard's connection
    worker = threading.Thread(target=_report_check, args=(instance, "2026-01-02"))
    worker.start()
    worker.join()
    code = (
        "import dagster as dg\nfrom tests.test_orchestration_cost import _report_check\n"
        "_report_check(dg.DagsterInstance.get(), '2026-01-03')"
    )
    env = {**os.environ, "DAGSTER_HOME": os.environ["DAGSTER_HOME"]}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    _report_check(instance, "2026-01-04")
    history = instance.event_log_storage.get_asset_check_execution_history(
        dg.AssetCheckKey(dg.AssetKey("kept"), "c"), limit=10
    )
    assert sorted(h.partition for h in history) == [f"2026-01-0{d}" for d in range(1, 5)]
