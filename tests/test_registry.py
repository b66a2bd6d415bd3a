"""Model registry: immutable versions, integrity checks, alias history, promotion rules."""

from __future__ import annotations

import datetime as dt
import json
import math
import pickle
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import duckdb
import pytest

from lifecycle import registry as registry_mod
from lifecycle.registry import (
    NO_CHAMPION,
    AliasConflict,
    ArtifactIntegrityError,
    GateResult,
    ModelRegistry,
    ModelVersion,
    PromotionRefused,
    decide_promotion,
    decide_rollback,
    manifest_sha256,
    new_version_id,
    sha256_file,
)

T0 = dt.datetime(2026, 2, 1, 8, 0, 0, 123456, tzinfo=dt.UTC)


@pytest.fixture
def reg(tmp_path: Path) -> Iterator[ModelRegistry]:
    """A registry whose file another component keeps open, as Dagster's DuckDB resource does.

    The open connection keeps DuckDB's in-process instance warm, so the registry's per-call
    connections are cheap; the registry itself still opens and closes one per call. Tests that
    build their own ``ModelRegistry`` exercise the cold path.
    """
    database = tmp_path / "db" / "warehouse.duckdb"
    database.parent.mkdir()
    other_writer = duckdb.connect(str(database), config=dict(registry_mod.DAGSTER_DUCKDB_CONFIG))
    try:
        r = ModelRegistry(database, tmp_path / "artifacts")
        r.ensure_schema()
        yield r
    finally:
        other_writer.close()


def _sources(tmp_path: Path, tag: str = "a") -> list[Path]:
    src = tmp_path / f"src_{tag}"
    src.mkdir(exist_ok=True)
    model = src / "model.json"
    model.write_text(json.dumps({"trees": [1, 2, 3], "tag": tag}))
    features = src / "features.txt"
    features.write_text(f"recency\nfrequency\n{tag}\n")
    return [model, features]


def _register(
    reg: ModelRegistry,
    tmp_path: Path,
    *,
    now: dt.datetime = T0,
    model: str = "churn",
    partition: str = "2026-01-01",
    tag: str = "a",
    auc: float = 0.8,
) -> ModelVersion:
    return reg.register(
        model,
        partition,
        _sources(tmp_path, tag),
        dataset_version="ds_2026-01-01_abc",
        params={"max_depth": 4, "learning_rate": 0.1, "grid": (1, 2)},
        metrics={"auc": auc, "logloss": 0.41},
        code_version="git:deadbeef",
        run_id=f"run-{tag}",
        now=now,
    )


# ----------------------------------------------------------------------- ids and hashes


def test_version_id_format_and_clash_suffixes() -> None:
    assert new_version_id(T0, []) == "v_260201_080000"
    assert new_version_id(T0, ["v_260201_080000"]) == "v_260201_080000_002"
    assert new_version_id(T0, ["v_260201_080000", "v_260201_080000_002"]) == ("v_260201_080000_003")
    # A later second starts a fresh stamp.
    assert new_version_id(T0 + dt.timedelta(seconds=1), ["v_260201_080000_002"]) == (
        "v_260201_080001"
    )
    # Non-UTC input is converted to UTC.
    cet = dt.timezone(dt.timedelta(hours=1))
    assert new_version_id(dt.datetime(2026, 2, 1, 9, 0, tzinfo=cet), []) == "v_260201_080000"


def test_version_ids_never_go_backwards_and_sort_by_creation() -> None:
    ids: list[str] = []
    # Many in the same second, then a clock that reads earlier, then a later second.
    for now in [T0] * 12 + [T0 - dt.timedelta(hours=1), T0 + dt.timedelta(minutes=1)]:
        ids.append(new_version_id(now, ids))
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    assert ids[9] == "v_260201_080000_010"
    assert ids[12] == "v_260201_080000_013"  # backwards clock continues the newest stamp
    assert ids[13] == "v_260201_080100"


def test_version_id_rejects_naive_datetime() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        new_version_id(dt.datetime(2026, 1, 1), [])


def test_sha256_file_and_manifest(tmp_path: Path) -> None:
    f = tmp_path / "x.bin"
    f.write_bytes(b"abc")
    assert sha256_file(f) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    a = manifest_sha256({"b": "2", "a": "1"})
    assert a == manifest_sha256({"a": "1", "b": "2"})  # order-independent
    assert a != manifest_sha256({"a": "1", "b": "3"})


# ----------------------------------------------------------------------- register / get


def test_register_get_round_trip(reg: ModelRegistry, tmp_path: Path) -> None:
    mv = _register(reg, tmp_path)
    assert mv.model_name == "churn"
    assert mv.version == "v_260201_080000"
    assert mv.partition_key == "2026-01-01"
    assert mv.created_at == T0 and mv.created_at.tzinfo is not None
    assert Path(mv.artifact_dir) == reg.artifact_root / "churn" / mv.version
    assert set(mv.files_sha256) == {"model.json", "features.txt"}
    for name, digest in mv.files_sha256.items():
        assert sha256_file(Path(mv.artifact_dir) / name) == digest
    assert mv.sha256 == manifest_sha256(mv.files_sha256)
    assert mv.dataset_version == "ds_2026-01-01_abc"
    assert mv.params == {"max_depth": 4, "learning_rate": 0.1, "grid": [1, 2]}  # JSON form
    assert mv.metrics == {"auc": 0.8, "logloss": 0.41}
    assert mv.code_version == "git:deadbeef"
    assert mv.run_id == "run-a"

    got = reg.get("churn", mv.version)
    assert got == mv
    assert hash(got) == hash(mv)
    assert got.created_at.utcoffset() == dt.timedelta(0)


def test_register_copies_files_and_leaves_sources_alone(reg: ModelRegistry, tmp_path: Path) -> None:
    mv = _register(reg, tmp_path)
    src = tmp_path / "src_a" / "model.json"
    src.write_text("changed after registration")  # the copy is what was registered
    assert reg.verify(mv)["model.json"] == Path(mv.artifact_dir) / "model.json"


def test_get_unknown_version_names_it(reg: ModelRegistry) -> None:
    with pytest.raises(KeyError, match="churn@v_000000_000000"):
        reg.get("churn", "v_000000_000000")


def test_versions_sorted_and_distinct_within_one_second(reg: ModelRegistry, tmp_path: Path) -> None:
    same_second = [T0, T0.replace(microsecond=0), T0.replace(microsecond=999999)]
    made = [_register(reg, tmp_path, now=now, tag=f"t{i}") for i, now in enumerate(same_second)]
    later = _register(reg, tmp_path, now=T0 + dt.timedelta(seconds=1), tag="later")
    ids = [mv.version for mv in [*made, later]]
    assert ids == ["v_260201_080000", "v_260201_080000_002", "v_260201_080000_003", ids[3]]
    assert ids == sorted(ids)
    assert [mv.version for mv in reg.versions("churn")] == ids
    assert reg.versions("recommender") == []


def test_latest_for_partition(reg: ModelRegistry, tmp_path: Path) -> None:
    first = _register(reg, tmp_path, partition="2026-01-01", tag="x")
    _register(reg, tmp_path, partition="2026-02-01", tag="y", now=T0 + dt.timedelta(seconds=5))
    rerun = _register(reg, tmp_path, partition="2026-01-01", tag="z", now=T0 + dt.timedelta(9))
    assert reg.latest_for_partition("churn", "2026-01-01") == rerun
    assert rerun.version > first.version
    assert reg.latest_for_partition("churn", "2025-12-01") is None
    assert reg.latest_for_partition("recommender", "2026-01-01") is None


def test_model_families_are_separate(reg: ModelRegistry, tmp_path: Path) -> None:
    churn = _register(reg, tmp_path, model="churn", tag="c")
    als = _register(reg, tmp_path, model="recommender", tag="r")
    assert churn.version == als.version  # ids are per model
    assert reg.versions("churn") == [churn]
    assert reg.versions("recommender") == [als]


def test_existing_version_dir_is_refused(
    reg: ModelRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mv = _register(reg, tmp_path)
    before = reg.verify(mv)
    monkeypatch.setattr(registry_mod, "new_version_id", lambda now, existing: mv.version)
    with pytest.raises(FileExistsError, match="immutable"):
        _register(reg, tmp_path, tag="b", now=T0 + dt.timedelta(days=1))
    assert reg.verify(mv) == before  # untouched, and still exactly one row
    assert reg.versions("churn") == [mv]


def test_orphan_folder_from_crash_is_skipped(reg: ModelRegistry, tmp_path: Path) -> None:
    orphan = reg.artifact_root / "churn" / "v_260201_080000"
    orphan.mkdir(parents=True)
    (orphan / "model.json").write_text("half-written")
    mv = _register(reg, tmp_path)
    assert mv.version == "v_260201_080000_002"
    assert (orphan / "model.json").read_text() == "half-written"


def test_failed_insert_removes_claimed_folder(
    reg: ModelRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(files: object) -> str:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(registry_mod, "manifest_sha256", boom)
    with pytest.raises(RuntimeError, match="disk on fire"):
        _register(reg, tmp_path)
    assert list((reg.artifact_root / "churn").iterdir()) == []
    assert reg.versions("churn") == []


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"source_files": []}, ValueError, "at least one"),
        ({"model_name": "../evil"}, ValueError, "model name"),
        ({"now": dt.datetime(2026, 1, 1)}, ValueError, "timezone-aware"),
        ({"metrics": {"auc": "high"}}, TypeError, "auc"),
        ({"params": {"obj": object()}}, TypeError, "not JSON serialisable"),
    ],
)
def test_register_rejects_bad_input(
    reg: ModelRegistry, tmp_path: Path, kwargs: dict[str, object], error: type, match: str
) -> None:
    args: dict[str, object] = {
        "model_name": "churn",
        "partition_key": "2026-01-01",
        "source_files": _sources(tmp_path),
        "dataset_version": "ds",
        "params": {},
        "metrics": {},
        "code_version": "c",
        "run_id": "r",
        "now": T0,
    }
    args.update(kwargs)
    with pytest.raises(error, match=match):
        reg.register(**args)  # type: ignore[arg-type]
    assert reg.versions("churn") == []


def test_register_rejects_duplicate_basenames(reg: ModelRegistry, tmp_path: Path) -> None:
    a, b = tmp_path / "a" / "model.json", tmp_path / "b" / "model.json"
    for p in (a, b):
        p.parent.mkdir()
        p.write_text("{}")
    with pytest.raises(ValueError, match="unique"):
        reg.register("churn", "p", [a, b], "ds", {}, {}, "c", "r", T0)


def test_numpy_params_and_nan_metric_round_trip(reg: ModelRegistry, tmp_path: Path) -> None:
    import numpy as np

    mv = reg.register(
        "recommender",
        "2026-01-01",
        _sources(tmp_path),
        "ds",
        {"factors": np.int64(32), "reg": np.float32(0.5), "grid": np.array([1, 2])},
        {"precision_at_10": np.float64(0.03), "coverage": float("nan")},
        "c",
        "r",
        T0,
    )
    got = reg.get("recommender", mv.version)
    assert got.params == {"factors": 32, "reg": 0.5, "grid": [1, 2]}
    assert got.metrics["precision_at_10"] == pytest.approx(0.03)
    assert math.isnan(got.metrics["coverage"])


# ----------------------------------------------------------------------- integrity


def test_verify_ok(reg: ModelRegistry, tmp_path: Path) -> None:
    mv = _register(reg, tmp_path)
    paths = reg.verify(mv)
    assert sorted(paths) == ["features.txt", "model.json"]
    assert all(p.is_file() for p in paths.values())


def test_tampered_file_raises_naming_file_and_hashes(reg: ModelRegistry, tmp_path: Path) -> None:
    mv = _register(reg, tmp_path)
    target = Path(mv.artifact_dir) / "model.json"
    target.chmod(0o644)  # registered files are read-only; a tamperer can still chmod
    target.write_bytes(target.read_bytes() + b" ")
    with pytest.raises(ArtifactIntegrityError) as info:
        reg.verify(mv)
    message = str(info.value)
    assert "model.json" in message
    assert mv.files_sha256["model.json"] in message
    assert sha256_file(target) in message
    assert info.value.actual == sha256_file(target)
    # The untouched file still verifies on its own.
    assert reg.verified_path(mv, "features.txt").name == "features.txt"


def test_deleted_file_raises(reg: ModelRegistry, tmp_path: Path) -> None:
    mv = _register(reg, tmp_path)
    (Path(mv.artifact_dir) / "features.txt").unlink()
    with pytest.raises(ArtifactIntegrityError, match=r"features\.txt.*missing") as info:
        reg.verified_path(mv, "features.txt")
    assert info.value.actual is None
    with pytest.raises(ArtifactIntegrityError, match=r"features\.txt"):
        reg.verify(mv)


def test_verified_path_unknown_name(reg: ModelRegistry, tmp_path: Path) -> None:
    mv = _register(reg, tmp_path)
    with pytest.raises(KeyError, match="nope"):
        reg.verified_path(mv, "nope")


def test_registered_files_are_read_only(reg: ModelRegistry, tmp_path: Path) -> None:
    mv = _register(reg, tmp_path)
    for name in mv.files_sha256:
        assert (Path(mv.artifact_dir) / name).stat().st_mode & 0o222 == 0


def test_errors_pickle(tmp_path: Path) -> None:
    err = pickle.loads(pickle.dumps(ArtifactIntegrityError(tmp_path / "m", "aa", None)))
    assert err.expected == "aa" and err.actual is None and "missing" in str(err)
    refused = pickle.loads(pickle.dumps(PromotionRefused(["x", "y"])))
    assert refused.reasons == ("x", "y") and "x; y" in str(refused)


# ----------------------------------------------------------------------- aliases


def test_set_alias_and_history(reg: ModelRegistry, tmp_path: Path) -> None:
    v1 = _register(reg, tmp_path, tag="1")
    v2 = _register(reg, tmp_path, tag="2", now=T0 + dt.timedelta(seconds=1))
    assert reg.alias("churn", "champion") is None

    e1 = reg.set_alias("churn", "champion", v1.version, "promote", "run-1", "first", T0)
    assert (e1.from_version, e1.to_version, e1.event) == (None, v1.version, "promote")
    e2 = reg.set_alias(
        "churn", "champion", v2.version, "promote", "run-2", "better", T0 + dt.timedelta(1)
    )
    assert (e2.from_version, e2.to_version) == (v1.version, v2.version)
    reg.set_alias(
        "churn", "champion", v1.version, "rollback", "run-3", "v2 bad", T0 + dt.timedelta(2)
    )
    reg.set_alias(
        "churn", "challenger", v2.version, "set", "run-3", "keep watching", T0 + dt.timedelta(2)
    )

    assert reg.alias("churn", "champion") == v1
    assert reg.alias("churn", "challenger") == v2
    hist = reg.history("churn")
    assert list(hist.columns) == list(registry_mod.HISTORY_COLUMNS)
    assert hist["event"].tolist() == ["promote", "promote", "rollback", "set"]
    assert hist["from_version"].tolist()[:3] == [None, v1.version, v2.version]
    assert hist["to_version"].tolist() == [v1.version, v2.version, v1.version, v2.version]
    assert hist["seq"].is_monotonic_increasing
    assert str(hist["at"].dt.tz) == "UTC"
    assert hist["at"].iloc[0] == T0
    assert hist["reason"].iloc[2] == "v2 bad"

    events = reg.events("churn")
    assert events[0] == e1 and events[1] == e2

    assert reg.ever_alias("churn", "champion", v2.version)
    assert reg.ever_alias("churn", "champion", v1.version)
    assert not reg.ever_alias("churn", "challenger", v1.version)


def test_history_all_models_and_empty(reg: ModelRegistry, tmp_path: Path) -> None:
    empty = reg.history()
    assert empty.empty and list(empty.columns) == list(registry_mod.HISTORY_COLUMNS)
    c = _register(reg, tmp_path, model="churn", tag="c")
    r = _register(reg, tmp_path, model="recommender", tag="r")
    reg.set_alias("churn", "champion", c.version, "promote", "x", "", T0)
    reg.set_alias("recommender", "champion", r.version, "promote", "x", "", T0)
    assert reg.history()["model_name"].tolist() == ["churn", "recommender"]
    assert reg.history("recommender")["model_name"].tolist() == ["recommender"]


def test_set_alias_unknown_version_is_key_error_and_writes_nothing(
    reg: ModelRegistry, tmp_path: Path
) -> None:
    _register(reg, tmp_path)
    with pytest.raises(KeyError, match="v_999999_999999"):
        reg.set_alias("churn", "champion", "v_999999_999999", "promote", "r", "", T0)
    assert reg.alias("churn", "champion") is None
    assert reg.history().empty


def test_set_alias_validates_alias_and_event(reg: ModelRegistry, tmp_path: Path) -> None:
    mv = _register(reg, tmp_path)
    with pytest.raises(ValueError, match="alias"):
        reg.set_alias("churn", "king", mv.version, "promote", "r", "", T0)
    with pytest.raises(ValueError, match="event"):
        reg.set_alias("churn", "champion", mv.version, "crown", "r", "", T0)


def test_two_registries_share_one_file(tmp_path: Path) -> None:
    db, root = tmp_path / "shared.duckdb", tmp_path / "art"
    writer, reader = ModelRegistry(db, root), ModelRegistry(db, root)
    mv = _register(writer, tmp_path)
    assert reader.get("churn", mv.version) == mv
    reader.set_alias("churn", "champion", mv.version, "promote", "r", "", T0)
    assert writer.alias("churn", "champion") == mv
    mv2 = _register(reader, tmp_path, tag="b")  # same second: reader sees writer's id
    assert mv2.version == "v_260201_080000_002"
    assert [v.version for v in writer.versions("churn")] == [mv.version, mv2.version]
    # No connection survived the calls: a read-only open (a different config, which DuckDB
    # refuses while the file is open in this process) succeeds.
    with duckdb.connect(str(db), read_only=True) as con:
        rows = con.execute("SELECT count(*) FROM registry.model_versions").fetchall()
    assert rows == [(2,)]


def test_connection_config_must_match_other_open_connections(tmp_path: Path) -> None:
    db = tmp_path / "w.duckdb"
    with duckdb.connect(str(db)) as plain:  # someone holds the file open with default config
        with pytest.raises(duckdb.ConnectionException, match="different configuration"):
            ModelRegistry(db, tmp_path / "art").ensure_schema()
        matching = ModelRegistry(db, tmp_path / "art", connection_config={})
        mv = _register(matching, tmp_path)
        assert plain.execute("SELECT version FROM registry.model_versions").fetchall() == [
            (mv.version,)
        ]


def test_connect_retries_while_another_process_holds_the_lock(
    reg: ModelRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_connect = duckdb.connect
    calls: list[int] = []

    def flaky(*args: object, **kwargs: object) -> duckdb.DuckDBPyConnection:
        calls.append(1)
        if len(calls) <= 2:
            raise duckdb.IOException("Could not set lock on file")
        return real_connect(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(duckdb, "connect", flaky)
    assert reg.versions("churn") == []
    assert len(calls) == 3


def test_summary(reg: ModelRegistry, tmp_path: Path) -> None:
    empty = reg.summary()
    assert empty.empty and list(empty.columns) == list(registry_mod.SUMMARY_COLUMNS)

    v1 = _register(reg, tmp_path, tag="1", auc=0.7)
    v2 = _register(reg, tmp_path, tag="2", auc=0.9, now=T0 + dt.timedelta(seconds=1))
    v3 = _register(reg, tmp_path, tag="3", now=T0 + dt.timedelta(seconds=2))
    als = reg.register(
        "recommender", "2026-01-01", _sources(tmp_path, "r"), "ds", {}, {"lift": 1.5}, "c", "r", T0
    )
    reg.set_alias("churn", "champion", v1.version, "promote", "r", "", T0)
    reg.set_alias("churn", "champion", v2.version, "promote", "r", "", T0)
    reg.set_alias("churn", "challenger", v2.version, "set", "r", "", T0)

    s = reg.summary()
    assert list(s.columns) == [
        *registry_mod.SUMMARY_COLUMNS,
        "metric_auc",
        "metric_lift",
        "metric_logloss",
    ]
    assert list(zip(s["model_name"], s["version"], strict=True)) == [
        ("churn", v1.version),
        ("churn", v2.version),
        ("churn", v3.version),
        ("recommender", als.version),
    ]
    assert s["aliases"].tolist() == ["", "challenger,champion", "", ""]
    assert s["ever_champion"].tolist() == [True, True, False, False]
    assert s["metric_auc"].tolist()[:3] == [0.7, 0.9, 0.8]
    assert math.isnan(s["metric_auc"].iloc[3])
    assert json.loads(s["metrics"].iloc[3]) == {"lift": 1.5}
    assert str(s["created_at"].dt.tz) == "UTC"
    assert s["dataset_version"].iloc[0] == "ds_2026-01-01_abc"


# ----------------------------------------------------------------------- promotion rules


def _mv(version: str, model: str = "churn") -> ModelVersion:
    return ModelVersion(
        model_name=model,
        version=version,
        partition_key="2026-01-01",
        created_at=T0,
        artifact_dir="/nowhere",
        files_sha256={"model.json": "0" * 64},
        sha256="1" * 64,
        dataset_version="ds",
        params={},
        metrics={},
        code_version="c",
        run_id="r",
    )


REQUIRED = ("auc_floor", "psi")
# Judged against v_1, the champion the decisions below are taken with.
OK = GateResult("auc_floor", True, True, True, detail="auc 0.81", against="v_1")
PSI_OK = GateResult(
    "psi", passed=True, executed=True, current=True, detail="psi 0.02", against="v_1"
)


@pytest.mark.parametrize(
    ("gates", "allowed", "reason_fragment"),
    [
        pytest.param([OK, PSI_OK], True, None, id="all-passed"),
        pytest.param(
            [OK, GateResult("psi", False, True, True, "psi 0.4 > 0.25")],
            False,
            "'psi' failed (psi 0.4 > 0.25)",
            id="one-failed",
        ),
        pytest.param([OK], False, "'psi' has no recorded result", id="one-missing"),
        pytest.param(
            [OK, GateResult("psi", True, True, False, "")], False, "stale", id="not-current"
        ),
        pytest.param(
            [OK, GateResult("psi", False, False, True, "skipped upstream")],
            False,
            "'psi' did not execute (skipped upstream)",
            id="not-executed",
        ),
        pytest.param(
            [GateResult("psi", False, True, True, "old"), OK, PSI_OK],
            True,
            None,
            id="rerun-supersedes",
        ),
        pytest.param(
            [OK, PSI_OK, GateResult("optional", False, True, True, "")],
            True,
            None,
            id="non-required-failure-ignored",
        ),
    ],
)
def test_decide_promotion(
    gates: list[GateResult], allowed: bool, reason_fragment: str | None
) -> None:
    decision = decide_promotion(_mv("v_2"), gates, REQUIRED, _mv("v_1"))
    assert decision.allowed is allowed
    assert (decision.from_version, decision.to_version) == ("v_1", "v_2")
    assert not decision.is_noop
    if reason_fragment is None:
        assert decision.reasons == ()
        decision.raise_if_refused()
    else:
        assert any(reason_fragment in r for r in decision.reasons), decision.reasons
        with pytest.raises(PromotionRefused, match="refused") as info:
            decision.raise_if_refused()
        assert info.value.reasons == decision.reasons


def test_decide_promotion_lists_every_reason() -> None:
    decision = decide_promotion(
        _mv("v_2"), [GateResult("psi", False, True, False, "", NO_CHAMPION)], REQUIRED, None
    )
    assert not decision.allowed and decision.from_version is None
    assert len(decision.reasons) == 3  # auc missing, psi stale, psi failed
    assert "auc_floor" in str(PromotionRefused(decision.reasons))


def test_decide_promotion_already_champion_is_noop() -> None:
    decision = decide_promotion(_mv("v_1"), [], REQUIRED, _mv("v_1"))
    assert decision.allowed
    assert decision.reasons == ("already champion",)
    assert decision.is_noop


def test_decide_promotion_first_champion_and_model_mismatch() -> None:
    before_any = [replace(g, against=NO_CHAMPION) for g in (OK, PSI_OK)]
    first = decide_promotion(_mv("v_1"), before_any, REQUIRED, None)
    assert first.allowed and first.from_version is None
    mixed = decide_promotion(_mv("v_1"), [OK, PSI_OK], REQUIRED, _mv("v_0", "recommender"))
    assert not mixed.allowed and "another model" in mixed.reasons[0]


def test_decide_rollback() -> None:
    why = "v_2 mis-scores new customers"
    ok = decide_rollback(_mv("v_1"), _mv("v_2"), was_champion_before=True, reason=why)
    assert ok.allowed and ok.reasons == ()
    assert (ok.from_version, ok.to_version) == ("v_2", "v_1")
    assert ok.audit_reason == why

    never = decide_rollback(_mv("v_1"), _mv("v_2"), was_champion_before=False, reason=why)
    assert not never.allowed and "never champion" in never.reasons[0]

    current = decide_rollback(_mv("v_2"), _mv("v_2"), was_champion_before=True, reason=why)
    assert not current.allowed and "already the current champion" in current.reasons[0]
    with pytest.raises(PromotionRefused, match="rollback refused"):
        current.raise_if_refused("rollback")

    no_champion = decide_rollback(_mv("v_1"), None, was_champion_before=True, reason=why)
    assert no_champion.allowed and no_champion.from_version is None


def test_rollback_flow_against_registry(reg: ModelRegistry, tmp_path: Path) -> None:
    v1 = _register(reg, tmp_path, tag="1")
    v2 = _register(reg, tmp_path, tag="2", now=T0 + dt.timedelta(seconds=1))
    reg.set_alias("churn", "champion", v1.version, "promote", "r", "", T0)
    reg.set_alias("churn", "champion", v2.version, "promote", "r", "", T0)
    champion = reg.alias("churn", "champion")
    for target, allowed in [(v1, True), (v2, False)]:
        was = reg.ever_alias("churn", "champion", target.version)
        assert decide_rollback(target, champion, was, reason="v2 bad").allowed is allowed


# ----------------------------------------------------------------------- evidence and intent


def test_decide_promotion_refuses_gates_judged_against_another_champion() -> None:
    """Gate May against April, roll back to March, promote May: the April comparison is stale."""
    may, april, march = _mv("v_may"), _mv("v_april"), _mv("v_march")
    against_april = [replace(g, against=april.version) for g in (OK, PSI_OK)]
    assert decide_promotion(may, against_april, REQUIRED, april).allowed

    stale = decide_promotion(may, against_april, REQUIRED, march)
    assert not stale.allowed
    (reason,) = stale.reasons
    assert "judged v_may against champion v_april" in reason
    assert "the champion is now v_march" in reason and "re-run the gates" in reason

    # Judged before any champion existed, promoted after one appeared: stale too.
    first = [replace(g, against=NO_CHAMPION) for g in (OK, PSI_OK)]
    assert "against champion none" in decide_promotion(may, first, REQUIRED, march).reasons[0]
    # A result that does not say which champion it judged against is not evidence.
    silent = [replace(g, against=None) for g in (OK, PSI_OK)]
    unknown = decide_promotion(may, silent, REQUIRED, april)
    assert not unknown.allowed and "without recording the champion" in unknown.reasons[0]


def test_decide_rollback_needs_a_reason() -> None:
    for empty in ("", "   ", "rollback", "manual rollback"):
        refused = decide_rollback(_mv("v_1"), _mv("v_2"), True, reason=empty)
        assert not refused.allowed
        assert any("needs a reason" in r and "v_2" in r for r in refused.reasons), empty


def test_decide_rollback_to_a_version_rolled_away_from_needs_an_override() -> None:
    earlier = registry_mod.AliasEvent(
        "churn", "champion", "v_1", "v_0", "rollback", "run-abcdef123", T0, "v_1 overfits"
    )
    args = (_mv("v_1"), _mv("v_2"), True)
    plain = decide_rollback(*args, reason="v_2 is worse", rolled_back_from=[earlier])
    assert not plain.allowed
    (reason,) = plain.reasons
    assert "itself rolled back" in reason and "'v_1 overfits'" in reason and "override" in reason

    blank = decide_rollback(
        *args, reason="v_2 is worse", rolled_back_from=[earlier], override_reason=" "
    )
    assert not blank.allowed and "override_reason" in blank.reasons[0]

    allowed = decide_rollback(
        *args, reason="v_2 is worse", rolled_back_from=[earlier], override_reason="fixed upstream"
    )
    assert allowed.allowed
    assert allowed.audit_reason == "v_2 is worse; override: fixed upstream"


def test_set_alias_is_a_compare_and_set(reg: ModelRegistry, tmp_path: Path) -> None:
    v1 = _register(reg, tmp_path, tag="1")
    v2 = _register(reg, tmp_path, tag="2", now=T0 + dt.timedelta(seconds=1))
    v3 = _register(reg, tmp_path, tag="3", now=T0 + dt.timedelta(seconds=2))
    with pytest.raises(AliasConflict, match=f"expected {v1.version}, found none"):
        reg.set_alias("churn", "champion", v2.version, "promote", "r", "", T0, expected=v1.version)
    reg.set_alias("churn", "champion", v1.version, "promote", "r", "", T0, expected=None)
    reg.set_alias("churn", "champion", v2.version, "promote", "r", "", T0, expected=v1.version)
    # A decision taken while v1 was champion loses: nothing is written, the message says so.
    with pytest.raises(AliasConflict) as info:
        reg.set_alias(
            "churn", "champion", v3.version, "rollback", "r", "x", T0, expected=v1.version
        )
    assert (info.value.expected, info.value.actual, info.value.target) == (
        v1.version,
        v2.version,
        v3.version,
    )
    assert "NOT made champion" in str(info.value) and "won" in str(info.value)
    assert reg.alias("churn", "champion") == v2
    assert len(reg.history("churn")) == 2
    again = pickle.loads(pickle.dumps(info.value))
    assert str(again) == str(info.value)


def test_rollbacks_from(reg: ModelRegistry, tmp_path: Path) -> None:
    v1 = _register(reg, tmp_path, tag="1")
    v2 = _register(reg, tmp_path, tag="2", now=T0 + dt.timedelta(seconds=1))
    reg.set_alias("churn", "champion", v1.version, "promote", "r", "", T0)
    reg.set_alias("churn", "champion", v2.version, "promote", "r", "", T0)
    reg.set_alias("churn", "champion", v1.version, "rollback", "r", "v2 bad", T0)
    assert [e.reason for e in reg.rollbacks_from("churn", v2.version)] == ["v2 bad"]
    assert reg.rollbacks_from("churn", v1.version) == []  # v1 was promoted away from, not rolled
