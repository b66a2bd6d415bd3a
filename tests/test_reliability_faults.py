"""Faults and concurrent writers against the real parts: PostgreSQL down and back, an artifact
root that cannot be written, a disk that fills mid-copy, a corrupted DuckDB file, a run SIGKILLed
mid-write, a backfill and a daily run writing the same days at once.

Each test drives one real piece (PostgreSQL on 127.0.0.1:5432, a DuckDB file, the registry's
artifact root, a Dagster run) into a failure an operator meets, then checks what is left behind:
a clear error naming the target, nothing half-written. Second runs and killed runs are child
processes (tests/reliability_support.py). PostgreSQL tests fail, never skip, without a server.
"""

import errno
import os
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest
import yaml

from lifecycle.publish import PublishError
from lifecycle.registry import ModelRegistry
from lifecycle.settings import DEMO_SETTINGS, Settings
from tests.conftest import SMALL, deep_merge, small_settings
from tests.reliability_support import (
    PUBLISH_ENV,
    REPO,
    SECRET,
    assert_registry_untouched,
    child,
    day_variants,
    fresh_schema,
    last_json,
    pg_url,
    publish_with,
    published,
    register,
    registry_with_champion,
    scores,
    spawn,
    write_events,
)


@pytest.fixture
def pg_schema() -> Iterator[str]:
    with fresh_schema() as name:
        yield name


# --- PostgreSQL down and back --------------------------------------------------------------------


@pytest.mark.postgres
def test_publisher_fails_clearly_while_postgres_is_down_and_recovers_when_it_is_back(
    make_settings: Callable[..., Settings], pg_schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings(
        {"publish": {"enabled": True, "url_env": PUBLISH_ENV, "schema_name": pg_schema}}
    )
    before, after = scores(["00001", "00002"], 0.1), scores(["00001", "00003", "00042"], 0.7)
    monkeypatch.setenv(PUBLISH_ENV, pg_url())
    assert publish_with(settings, before) == 2

    monkeypatch.setenv(PUBLISH_ENV, pg_url(port=1))  # nothing listens there: the server is down
    with pytest.raises(PublishError) as down:
        publish_with(settings, after)
    message = str(down.value)
    assert f"{pg_schema}.churn_scores" in message and "port 1" in message, message
    assert "previous rows are unchanged" in message
    assert SECRET not in message + "".join(traceback.format_exception(down.value))
    assert published(pg_schema)["customer_id"].tolist() == ["00001", "00002"]  # nothing half-done

    monkeypatch.setenv(PUBLISH_ENV, pg_url())  # back
    assert publish_with(settings, after) == 3
    first = published(pg_schema)
    assert first["customer_id"].tolist() == ["00001", "00003", "00042"]
    assert publish_with(settings, after) == 3  # a retry of the same day is idempotent
    pd.testing.assert_frame_equal(published(pg_schema), first)


# --- the artifact root cannot be written ---------------------------------------------------------


def test_unwritable_artifact_root_fails_naming_the_path_and_keeps_the_champion(
    tmp_path: Path,
) -> None:
    reg, champion = registry_with_champion(tmp_path)
    if os.geteuid() == 0:
        # Root ignores permission bits; a root below a regular file is unwritable for anyone.
        blocker = tmp_path / "not_a_folder"
        blocker.write_text("a file, not a folder")
        unwritable, named = blocker / "artifacts", blocker
    else:
        unwritable = named = tmp_path / "read_only_root"
        unwritable.mkdir()
        unwritable.chmod(0o500)
    broken = ModelRegistry(reg.database, unwritable)  # same registry tables, other root
    try:
        with pytest.raises(OSError) as refused:
            register(broken, tmp_path, "challenger")
    finally:
        if named.is_dir():
            named.chmod(0o700)
    assert refused.value.errno in {errno.ENOTDIR, errno.EACCES, errno.EROFS}
    assert str(named) in str(refused.value)
    assert_registry_untouched(reg, champion)


def test_a_write_failing_mid_copy_like_a_full_disk_leaves_no_half_registered_version(
    tmp_path: Path,
) -> None:
    reg, champion = registry_with_champion(tmp_path)
    big = tmp_path / "src_big" / "model.ubj"
    big.parent.mkdir()
    big.write_bytes(np.random.default_rng(1).bytes(4 << 20))
    done = child("register-capped", str(reg.database), str(reg.artifact_root), str(big), "1048576")
    assert done.returncode == 0, done.stderr
    outcome = last_json(done.stdout)
    assert outcome.get("errno") == errno.EFBIG, outcome  # the copy really failed part-way
    assert str(reg.artifact_root / "churn") in outcome["error"]  # names where it was writing
    assert_registry_untouched(reg, champion)  # no row, and the claimed folder was removed


# --- a corrupted DuckDB warehouse file -----------------------------------------------------------

GARBAGE = b"this is not a DuckDB file \x00\xff" * 512
CORRUPT_BUDGET_S = 15


def test_a_corrupted_warehouse_fails_a_materialisation_quickly_naming_the_file(
    tmp_path: Path,
) -> None:
    database = Path(small_settings(tmp_path).warehouse.database)
    database.write_bytes(GARBAGE)
    try:
        done = child("ingest-day", str(tmp_path), timeout=CORRUPT_BUDGET_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the run was still retrying the corrupted file after {CORRUPT_BUDGET_S} s")
    outcome = last_json(done.stdout)
    assert not outcome["success"]
    assert str(database) in outcome["error"] and "DuckDB" in outcome["error"]
    assert database.read_bytes() == GARBAGE  # nothing overwrote the evidence


def settings_yaml(root: Path) -> Path:
    raw = deep_merge(yaml.safe_load(DEMO_SETTINGS.read_text()), SMALL)
    paths = {"database": str(root / "warehouse.duckdb"), "artifact_root": str(root / "artifacts")}
    path = root / "settings.yaml"
    path.write_text(yaml.safe_dump(deep_merge(raw, {"warehouse": paths})))
    return path


def test_a_corrupted_warehouse_fails_lifecycle_versions_in_one_line(tmp_path: Path) -> None:
    path = settings_yaml(tmp_path)
    database = tmp_path / "warehouse.duckdb"
    database.write_bytes(GARBAGE)
    done = subprocess.run(
        [sys.executable, "-m", "jobs.cli", "--settings", str(path), "versions"],
        cwd=REPO,
        env={**os.environ, "DAGSTER_HOME": str(tmp_path / "home")},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0
    assert "Traceback" not in done.stdout + done.stderr, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert str(database) in line and "DuckDB" in line
    assert database.read_bytes() == GARBAGE


# --- concurrency and kills: writers of the same partitions ---------------------------------------

OLD_ROWS, BIG_ROWS = 1000, 1_000_000


def seed_old_rows(database: Path) -> None:
    """Five days of the ``old`` variant, written by a run in this process."""
    write_events(str(database), "old", str(OLD_ROWS), "2026-03-01", "2026-03-05")
    assert set(day_variants(database).values()) == {("old", OLD_ROWS)}


def test_sigkill_mid_write_leaves_the_old_or_the_new_range_never_a_mix(tmp_path: Path) -> None:
    database, marker = tmp_path / "warehouse.duckdb", tmp_path / "writing"
    seed_old_rows(database)
    size = database.stat().st_size
    database.with_suffix(".go").touch()
    writer = spawn(
        "write", str(database), "new", str(BIG_ROWS), "2026-03-01", "2026-03-05", str(marker)
    )
    try:
        deadline = time.monotonic() + 30
        while not marker.exists() and writer.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        # The file grows while the new rows are written, before the commit: kill it then.
        while database.stat().st_size <= size and writer.poll() is None:
            time.sleep(0.002)
        writer.send_signal(signal.SIGKILL)
        out, err = writer.communicate(timeout=30)
    finally:
        if writer.poll() is None:
            writer.kill()
    assert writer.returncode == -signal.SIGKILL, (out, err)  # killed, not finished
    days = day_variants(database)
    assert set(days.values()) in ({("old", OLD_ROWS)}, {("new", BIG_ROWS)}), days
    assert len(days) == 5
    # The next run of the range (the retry) writes it whole.
    write_events(str(database), "retry", "10", "2026-03-01", "2026-03-05")
    assert set(day_variants(database).values()) == {("retry", 10)}


def test_a_backfill_and_a_daily_run_writing_at_once_leave_every_day_whole(
    tmp_path: Path,
) -> None:
    """DuckDB lets one process write a file. A third process holds it until both runs have
    computed their rows and are connecting: they meet the lock together, then one writes and
    the other waits for it (Dagster's connect backoff) or fails with a lock error. Either way
    each day holds exactly one run's rows."""
    database = tmp_path / "warehouse.duckdb"
    seed_old_rows(database)
    args = {"backfill": ("2026-03-01", "2026-03-05"), "daily": ("2026-03-03", "2026-03-03")}
    markers = {name: tmp_path / name for name in args}
    holder = duckdb.connect(str(database))  # the file is busy, as under another writer
    try:
        writers = {
            name: spawn("write", str(database), name, str(BIG_ROWS), *days, str(markers[name]))
            for name, days in args.items()
        }
        database.with_suffix(".go").touch()  # both start together
        deadline = time.monotonic() + 60
        while not all(m.exists() for m in markers.values()) and time.monotonic() < deadline:
            assert all(w.poll() is None for w in writers.values()), "a writer did not wait"
            time.sleep(0.01)
        time.sleep(0.3)  # both are now retrying the lock
    finally:
        holder.close()
    released = time.time()
    results = {}
    for name, writer in writers.items():
        out, err = writer.communicate(timeout=120)
        assert writer.returncode == 0, err
        results[name] = last_json(out)
    for result in results.values():
        assert result["success"] or "lock" in result["error"].lower(), result["error"]
        assert result["t"] > released  # nobody wrote while another process held the file

    days = day_variants(database)  # fails if any day mixes two runs' rows
    assert len(days) == 5
    won = [name for name in args if results[name]["success"]]
    assert won, results
    for day, (variant, count) in days.items():
        assert count == (OLD_ROWS if variant == "old" else BIG_ROWS)
        assert variant in ([n for n in won if args[n][0] <= day <= args[n][1]] or ["old"])
    if len(won) == 2:
        last = max(won, key=lambda n: results[n]["t"])
        assert days["2026-03-03"][0] == last  # the later commit holds the shared day
