"""Promotion is a compare-and-set on recorded evidence; a rollback needs intent.

Real parts only: the registry on real DuckDB files raced from threads and from processes, the
churn lifecycle trained and gated in a real instance (the stale-evidence story of issue 13:
gate May against April, roll back, promote May), the champion asset run in the wrong job, and
the `lifecycle rollback` command against a real registry and DAGSTER_HOME.
"""

from __future__ import annotations

import datetime as dt
import multiprocessing
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import yaml

from assets.keys import CHURN_CHALLENGER, CHURN_CHAMPION, CHURN_DATASET
from assets.promotion import recorded_gates
from definitions import build_defs
from jobs import cli, rollback_run_config
from lifecycle.registry import AliasConflict, AliasEvent, ModelRegistry, ModelVersion
from lifecycle.settings import DEMO_SETTINGS, load_settings
from tests.conftest import SMALL, World, deep_merge, failure_text, world_in
from tests.race_worker import move_champion

APRIL, MAY = "2026-04-01", "2026-05-01"
GATES = ("auc_floor", "beats_champion", "input_drift", "score_sanity")
NOW = dt.datetime(2026, 5, 2, 8, 0, tzinfo=dt.UTC)


def _register_dummies(reg: ModelRegistry, folder: Path, n: int) -> list[ModelVersion]:
    """``n`` real registered churn versions (real files, hashes) without training anything."""
    folder.mkdir(parents=True, exist_ok=True)
    versions = []
    for i in range(n):
        src = folder / f"model_{i}"
        src.mkdir()
        (src / "model.ubj").write_bytes(f"model {i}".encode())
        versions.append(
            reg.register(
                "churn",
                APRIL,
                [src / "model.ubj"],
                f"ds_{i}",
                {},
                {"roc_auc": 0.8},
                "c",
                "r",
                NOW + dt.timedelta(seconds=i),
            )
        )
    return versions


# --------------------------------------------------------------------------- the race


def _race(db: Path, root: Path, start: str, targets: list[str]) -> list[Any]:
    """Two threads, each with its own registry (own connections), released together by a
    barrier: one promotes, one rolls back, both decided against ``start``."""
    barrier = threading.Barrier(2)
    results: list[Any] = [None, None]

    def operator(i: int) -> None:
        reg = ModelRegistry(db, root)
        event = ("promote", "rollback")[i]
        barrier.wait()
        try:
            results[i] = reg.set_alias(
                "churn", "champion", targets[i], event, f"run-{i}", "race", NOW, expected=start
            )
        except AliasConflict as lost:
            results[i] = lost

    threads = [threading.Thread(target=operator, args=(i,)) for i in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return results


def test_concurrent_promotion_and_rollback_in_threads_exactly_one_wins(tmp_path: Path) -> None:
    """Two operators decide from the same champion at once: one move lands, the other is told
    it lost, history grows by one row. Repeated, so both the in-transaction re-read and
    DuckDB's write-write conflict can get their turn; the invariant holds whoever wins."""
    db, root = tmp_path / "w.duckdb", tmp_path / "art"
    setup = ModelRegistry(db, root)
    versions = [v.version for v in _register_dummies(setup, tmp_path / "src", 7)]
    setup.set_alias("churn", "champion", versions[0], "promote", "r0", "first", NOW, expected=None)
    for round_ in range(3):
        start = setup.alias("churn", "champion")
        assert start is not None
        targets = [v for v in versions if v != start.version][2 * round_ : 2 * round_ + 2]
        rows_before = len(setup.history("churn"))
        results = _race(db, root, start.version, targets)
        winners = [r for r in results if isinstance(r, AliasEvent)]
        losers = [r for r in results if isinstance(r, AliasConflict)]
        assert len(winners) == 1 and len(losers) == 1, results
        (won,), (lost,) = winners, losers
        assert won.from_version == start.version
        assert lost.expected == start.version and lost.target != won.to_version
        assert "NOT made champion" in str(lost)
        now = setup.alias("churn", "champion")
        assert now is not None and now.version == won.to_version
        history = setup.history("churn")
        assert len(history) == rows_before + 1
        assert history.iloc[-1]["to_version"] == won.to_version


def test_concurrent_moves_from_two_processes_exactly_one_wins(tmp_path: Path) -> None:
    """The same race across processes: DuckDB lets one process write at a time, the other
    waits for the file and then finds the champion already moved."""
    db, root = tmp_path / "w.duckdb", tmp_path / "art"
    setup = ModelRegistry(db, root)
    v0, v1, v2 = (v.version for v in _register_dummies(setup, tmp_path / "src", 3))
    setup.set_alias("churn", "champion", v0, "promote", "r0", "first", NOW, expected=None)
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    procs = [
        ctx.Process(
            target=move_champion, args=(str(db), str(root), target, event, v0, barrier, results)
        )
        for target, event in ((v1, "promote"), (v2, "rollback"))
    ]
    for p in procs:
        p.start()
    outcomes = [results.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    won = [o for o in outcomes if o[0] == "won"]
    lost = [o for o in outcomes if o[0] == "lost"]
    assert len(won) == 1 and len(lost) == 1, outcomes
    assert won[0][2] == v0  # it moved the champion it decided against
    assert f"expected {v0}, found {won[0][1]}" in lost[0][2]
    champion = setup.alias("churn", "champion")
    assert champion is not None and champion.version == won[0][1]
    assert setup.history("churn")["to_version"].tolist() == [v0, won[0][1]]


# --------------------------------------------------------------------------- the lifecycle


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("promotion_cas")
    with world_in(root, "churn", "2026-04-30", "2026-04-16") as w:
        yield w


def _gate_metadata(world: World, result: dg.ExecuteInProcessResult) -> dict[str, dict]:
    return {
        e.check_name: {k: getattr(v, "value", v) for k, v in e.metadata.items()}
        for e in result.get_asset_check_evaluations()
        if e.asset_key == CHURN_CHALLENGER
    }


def _op(config: dict[str, Any]) -> dict[str, Any]:
    """Run config giving the champion asset ``config``, as typed in the launchpad."""
    return {"ops": {CHURN_CHAMPION.to_python_identifier(): {"config": config}}}


def _rollback(world: World, run_config: dict[str, Any]) -> dg.ExecuteInProcessResult:
    return world.defs.resolve_job_def("churn_rollback").execute_in_process(
        instance=world.instance, run_config=run_config, raise_on_error=False
    )


def test_stale_evidence_is_refused_and_re_running_the_gates_clears_it(world: World) -> None:
    """Gate May against April, roll back, promote May: refused, naming both champions."""
    first = world.run([CHURN_DATASET, CHURN_CHALLENGER], partition=APRIL)
    april = world.registry.latest_for_partition("churn", APRIL)
    assert april is not None
    for meta in _gate_metadata(world, first).values():
        assert meta["model_version"] == april.version
        assert meta["dataset_version"] == april.dataset_version
        assert meta["against_champion"] == meta["champion_dataset_version"] == "none"
    assert world.run([CHURN_CHAMPION]).success and world.champion() == april.version

    second = world.run([CHURN_DATASET, CHURN_CHALLENGER], partition=MAY)
    may1 = world.registry.latest_for_partition("churn", MAY)
    assert may1 is not None and all(world.gates(second).values())
    for meta in _gate_metadata(world, second).values():
        assert (meta["against_champion"], meta["champion_dataset_version"]) == (
            april.version,
            april.dataset_version,
        )
    gates = recorded_gates(world.instance, CHURN_CHALLENGER, GATES, MAY, may1.version)
    assert {g.against for g in gates} == {april.version}
    assert world.run([CHURN_CHAMPION]).success and world.champion() == may1.version

    # A second May challenger is gated against May's first; then an operator rolls back.
    assert all(world.gates(world.run([CHURN_CHALLENGER], partition=MAY)).values())
    may2 = world.registry.latest_for_partition("churn", MAY)
    assert may2 is not None and may2.version != may1.version
    back = _rollback(world, rollback_run_config("churn", april.version, "May drifts"))
    assert back.success and world.champion() == april.version

    refused = world.run([CHURN_CHAMPION], raise_on_error=False)
    assert not refused.success and world.champion() == april.version
    text = failure_text(refused)
    assert f"judged {may2.version} against champion {may1.version}" in text
    assert f"the champion is now {april.version}: re-run the gates" in text

    # Re-running the gates alone (same challenger, now against April) is enough.
    gates_only = dg.define_asset_job(
        "gates_only",
        selection=dg.AssetSelection.checks_for_assets(CHURN_CHALLENGER),
    )
    defs = dg.Definitions.merge(world.defs, dg.Definitions(jobs=[gates_only]))
    # The partition goes in as a tag: execute_in_process cannot infer a checks-only job's
    # partitions from its (empty) asset selection.
    rerun = defs.resolve_job_def("gates_only").execute_in_process(
        instance=world.instance, tags={"dagster/partition": MAY}
    )
    assert {m["against_champion"] for m in _gate_metadata(world, rerun).values()} == {april.version}
    assert world.run([CHURN_CHAMPION]).success and world.champion() == may2.version


def test_rollback_config_outside_the_rollback_job_is_refused(world: World) -> None:
    """The launchpad / an ad-hoc materialisation cannot smuggle a rollback past its rules."""
    april = world.registry.latest_for_partition("churn", APRIL)
    assert april is not None
    before, rows = world.champion(), len(world.registry.history("churn"))
    config = {"version": april.version, "rollback": True, "reason": "looks better"}
    result = world.run([CHURN_CHAMPION], run_config=_op(config), raise_on_error=False)
    assert not result.success
    text = failure_text(result)
    assert "refused a rollback in job '__ephemeral_asset_job__'" in text
    assert "only the 'churn_rollback' job" in text
    assert world.champion() == before and len(world.registry.history("churn")) == rows


def test_rollback_without_a_reason_is_refused(world: World) -> None:
    before, rows = world.champion(), len(world.registry.history("churn"))
    # A target every other rule accepts: a former champion, not current, never rolled from.
    target = next(
        v.version
        for v in world.registry.versions("churn")
        if v.version != before
        and world.registry.ever_alias("churn", "champion", v.version)
        and not world.registry.rollbacks_from("churn", v.version)
    )
    for config in (
        {"version": target, "rollback": True},
        {"version": target, "rollback": True, "reason": "rollback"},
    ):
        refused = _rollback(world, _op(config))
        assert not refused.success
        (reason,) = failure_text(refused).split("refused to make")[1].split("\n")[0].split("; ")
        assert "a rollback needs a reason" in reason  # the only objection
    assert world.champion() == before and len(world.registry.history("churn")) == rows


def test_restoring_a_version_rolled_away_from_needs_an_override(world: World) -> None:
    """May's first version was rolled back from ("May drifts"): restoring it needs intent."""
    may1 = next(
        v
        for v in world.registry.versions("churn")
        if v.partition_key == MAY and world.registry.rollbacks_from("churn", v.version)
    )
    before, rows = world.champion(), len(world.registry.history("churn"))
    plain = _rollback(world, rollback_run_config("churn", may1.version, "May2 is worse"))
    assert not plain.success
    assert "was itself rolled back from" in failure_text(plain)
    assert "'May drifts'" in failure_text(plain)
    blank = _rollback(world, rollback_run_config("churn", may1.version, "May2 is worse", ""))
    assert not blank.success and "override_reason" in failure_text(blank)
    assert world.champion() == before and len(world.registry.history("churn")) == rows

    ok = _rollback(
        world, rollback_run_config("churn", may1.version, "May2 is worse", "drift was a bug")
    )
    assert ok.success and world.champion() == may1.version
    last = world.registry.history("churn").iloc[-1]
    assert (last["event"], last["from_version"], last["to_version"]) == (
        "rollback",
        before,
        may1.version,
    )
    assert last["reason"] == "May2 is worse; override: drift was a bug"


# --------------------------------------------------------------------------- the command


@pytest.fixture
def cli_world(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[Path, ModelRegistry, list[str]]:
    """A settings file, a DAGSTER_HOME, and a registry where v0 then v1 were champions and v2
    never was (registered, not trained: the rollback job only reads the registry)."""
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    raw = deep_merge(yaml.safe_load(DEMO_SETTINGS.read_text()), SMALL)
    paths = {
        "database": str(tmp_path / "warehouse.duckdb"),
        "artifact_root": str(tmp_path / "artifacts"),
    }
    path = tmp_path / "settings.yaml"
    path.write_text(yaml.safe_dump(deep_merge(raw, {"warehouse": paths})))
    reg = ModelRegistry(paths["database"], paths["artifact_root"])
    versions = [v.version for v in _register_dummies(reg, tmp_path / "src", 3)]
    reg.set_alias("churn", "champion", versions[0], "promote", "r", "first", NOW)
    reg.set_alias("churn", "champion", versions[1], "promote", "r", "second", NOW)
    return path, reg, versions


def test_cli_rollback_refusals_exit_1_with_the_true_cause(
    cli_world: tuple[Path, ModelRegistry, list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    path, reg, (v0, v1, v2) = cli_world
    base = ["--settings", str(path), "rollback", "churn"]

    assert cli.main([*base, v2, "--reason", "v1 is bad"]) == 1
    out = capsys.readouterr().out
    assert f"churn@{v2} was never champion" in out
    assert "blocking check" not in out  # no gate was involved
    with pytest.raises(SystemExit) as no_reason:
        cli.main([*base, v0])
    assert no_reason.value.code == 2 and "--reason" in capsys.readouterr().err

    assert cli.main([*base, v0, "--reason", "v1 is bad"]) == 0
    assert reg.history("churn").iloc[-1]["reason"] == "v1 is bad"
    assert cli.main([*base, v1, "--reason", "v0 is worse"]) == 1
    out = capsys.readouterr().out
    assert "was itself rolled back from" in out and "'v1 is bad'" in out
    assert cli.main([*base, v1, "--reason", "v0 is worse", "--override", "v1 was fine"]) == 0
    current = reg.alias("churn", "champion")
    assert current is not None and current.version == v1
    assert reg.history("churn").iloc[-1]["reason"] == "v0 is worse; override: v1 was fine"


def test_the_rollback_job_rolls_back_even_when_the_launchpad_omits_rollback(
    cli_world: tuple[Path, ModelRegistry, list[str]],
) -> None:
    """Launchpad config replaces the job's default `rollback: true`: the job must still roll
    back (under the rollback rules), not fall into the promotion path and its gate errors."""
    path, reg, (v0, v1, _) = cli_world
    defs = build_defs(load_settings(str(path)))
    with dg.instance_for_test() as instance:
        result = defs.resolve_job_def("churn_rollback").execute_in_process(
            instance=instance, run_config=_op({"version": v0, "reason": "v1 is bad"})
        )
    assert result.success
    last = reg.history("churn").iloc[-1]
    assert (last["event"], last["from_version"], last["to_version"], last["reason"]) == (
        "rollback",
        v1,
        v0,
        "v1 is bad",
    )
