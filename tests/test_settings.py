"""Tests for the settings file: one YAML, strictly validated, errors that name the bad key."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pydantic
import pytest
import yaml

from lifecycle.settings import (
    DEMO_SETTINGS,
    SETTINGS_ENV_VAR,
    Settings,
    SettingsError,
    load_settings,
    parse_settings,
)


def demo_raw() -> dict[str, Any]:
    return yaml.safe_load(DEMO_SETTINGS.read_text())


def with_override(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    """The demo settings with one nested key set (parents created as needed)."""
    raw = copy.deepcopy(demo_raw())
    node = raw
    for part in path[:-1]:
        node = node.setdefault(part, {})
    node[path[-1]] = value
    return raw


def test_demo_file_loads() -> None:
    """The shipped demo settings validate and carry the values written in the file."""
    settings = load_settings(DEMO_SETTINGS)
    raw = demo_raw()
    assert isinstance(settings, Settings)
    assert settings.source.kind == raw["source"]["kind"]
    assert settings.features.windows == tuple(sorted(raw["features"]["windows"]))
    assert settings.features.lookback_days == max(raw["features"]["windows"])
    assert settings.labels.horizon_days == raw["labels"]["horizon_days"]
    assert settings.partitions.start_date == raw["partitions"]["start_date"]
    assert settings.validation.max_quarantine_share == raw["validation"]["max_quarantine_share"]


def test_env_var_chooses_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a path, LIFECYCLE_SETTINGS picks the file; an explicit path wins over it."""
    raw = with_override(("labels", "horizon_days"), 9)
    chosen = tmp_path / "mine.yaml"
    chosen.write_text(yaml.safe_dump(raw))
    monkeypatch.setenv(SETTINGS_ENV_VAR, str(chosen))
    demo = demo_raw()["labels"]["horizon_days"]
    assert demo != 9
    assert load_settings().labels.horizon_days == 9
    assert load_settings(DEMO_SETTINGS).labels.horizon_days == demo
    monkeypatch.delenv(SETTINGS_ENV_VAR)
    assert load_settings().labels.horizon_days == demo


@pytest.mark.parametrize(
    ("path", "value", "named"),
    [
        (("source", "kind"), "ftp", "source.kind"),
        (("features", "windows"), [], "features.windows"),
        (("features", "windows"), [7, 0], "features.windows"),
        (("labels", "horizn_days"), 14, "labels.horizn_days"),
        (("labels", "horizon_days"), 0, "labels.horizon_days"),
        (("sourc",), {"kind": "synthetic"}, "sourc"),
        (("validation", "max_quarantine_share"), 1.5, "validation.max_quarantine_share"),
        (("validation", "on_empty_day"), "skip", "validation.on_empty_day"),
        (("partitions", "end_date"), "2025-01-01", "partitions"),
        (("schedules", "daily_time"), "8am", "schedules.daily_time"),
        (("source", "synthetic", "n_customers"), -3, "source.synthetic.n_customers"),
        (("timezone",), "../etc", "timezone"),
        (("warehouse", "memory_limit"), "lots", "warehouse.memory_limit"),
        (("source", "synthetic", "tables"), ["orders"], "source.synthetic.tables"),
        (("source", "synthetic", "tables"), [], "source.synthetic.tables"),
    ],
)
def test_invalid_value_names_dotted_key(path: tuple[str, ...], value: Any, named: str) -> None:
    """A wrong, mistyped or unknown key fails with SettingsError naming its dotted path."""
    with pytest.raises(SettingsError) as err:
        parse_settings(with_override(path, value), "my.yaml")
    message = str(err.value)
    assert message.startswith("my.yaml: ")
    assert f"{named}" in message


def test_unknown_column_key_names_full_path() -> None:
    """extra="forbid" holds at every depth: a typo in the column map is named in full."""
    raw = with_override(
        ("source",),
        {"kind": "files", "files": {"transactions_glob": "x", "columns": {"cust": "c"}}},
    )
    with pytest.raises(SettingsError, match=r"source\.files\.columns\.cust: Extra inputs"):
        parse_settings(raw)


@pytest.mark.parametrize(
    ("source", "named"),
    [
        ({"kind": "files"}, "source.kind is 'files' but source.files is missing"),
        ({"kind": "sql"}, "source.kind is 'sql' but source.sql is missing"),
        ({"kind": "files", "files": {}}, "source.files"),
        (
            {
                "kind": "files",
                "files": {
                    "transactions_glob": "x",
                    "timestamp_format": "%Y",
                    "timestamp_unit": "s",
                },
            },
            "at most one of timestamp_format and timestamp_unit",
        ),
        (
            {"kind": "sql", "sql": {"url_env": "DB"}},
            "set transactions_query, interactions_query or both",
        ),
        (
            {"kind": "files", "files": {"transactions_glob": "x", "timestamp_unit": "minutes"}},
            "source.files.timestamp_unit",
        ),
    ],
)
def test_source_options_must_match_kind(source: dict[str, Any], named: str) -> None:
    """The chosen source kind needs its own block, and that block must be coherent."""
    with pytest.raises(SettingsError) as err:
        parse_settings(with_override(("source",), source))
    assert named in str(err.value)


def test_unknown_timezone_is_a_settings_error() -> None:
    """An unknown time zone is reported like any other bad value, naming `timezone`."""
    with pytest.raises(SettingsError, match=r"my\.yaml: timezone"):
        parse_settings(with_override(("timezone",), "Mars/Olympus_Mons"), "my.yaml")


def test_files_source_accepts_user_column_names() -> None:
    """A files source maps the user's column names; weight may be null (no weights)."""
    files = {
        "transactions_glob": "data/tx/*.csv",
        "columns": {"customer_id": "cust", "timestamp": "day", "amount": "total", "weight": None},
        "timestamp_format": "%Y%m%d",
    }
    settings = parse_settings(with_override(("source",), {"kind": "files", "files": files}))
    assert settings.source.files is not None
    assert settings.source.files.columns.customer_id == "cust"
    assert settings.source.files.columns.weight is None
    assert settings.source.files.columns.item_id == "item_id"  # untouched default


def test_windows_are_sorted_and_deduplicated() -> None:
    """Windows are normalised, so the look-back is always the longest window."""
    settings = parse_settings(with_override(("features", "windows"), [30, 7, 7, 14]))
    assert settings.features.windows == (7, 14, 30)
    assert settings.features.lookback_days == 30


def test_settings_are_frozen() -> None:
    """Settings cannot be changed after validation (no silent drift inside a process)."""
    settings = load_settings(DEMO_SETTINGS)
    with pytest.raises(pydantic.ValidationError):
        settings.timezone = "Europe/Berlin"  # type: ignore[misc]


def test_missing_file_is_a_settings_error(tmp_path: Path) -> None:
    """A path that cannot be read fails naming the file."""
    missing = tmp_path / "nope.yaml"
    with pytest.raises(SettingsError, match=r"cannot read settings file .*nope\.yaml"):
        load_settings(missing)


def test_directory_is_a_settings_error(tmp_path: Path) -> None:
    """A directory given as the settings file fails naming it, not with an OSError."""
    with pytest.raises(SettingsError, match="cannot read settings file"):
        load_settings(tmp_path)


def test_binary_file_is_a_settings_error(tmp_path: Path) -> None:
    """A file that is not text fails as SettingsError naming the file."""
    binary = tmp_path / "settings.yaml"
    binary.write_bytes(b"\xff\xfe\x00\x81timezone: UTC\n")
    with pytest.raises(SettingsError, match=r"settings\.yaml"):
        load_settings(binary)


def test_bad_yaml_names_the_file(tmp_path: Path) -> None:
    """Malformed YAML fails naming the file and saying it is not valid YAML."""
    bad = tmp_path / "broken.yaml"
    bad.write_text("partitions:\n  start_date: [2026-01-01\n")
    with pytest.raises(SettingsError, match=r"broken\.yaml: not valid YAML"):
        load_settings(bad)


@pytest.mark.parametrize("text", ["", "- a\n- b\n", "just a string\n"])
def test_non_mapping_file_is_a_settings_error(tmp_path: Path, text: str) -> None:
    """An empty file or one whose top level is not a mapping fails naming the file."""
    odd = tmp_path / "odd.yaml"
    odd.write_text(text)
    with pytest.raises(SettingsError, match=r"odd\.yaml: <root>"):
        load_settings(odd)


def test_invalid_key_in_file_names_file_and_key(tmp_path: Path) -> None:
    """Loading from disk reports the file path and the dotted key together."""
    path = tmp_path / "typo.yaml"
    path.write_text(yaml.safe_dump(with_override(("labels", "horizn_days"), 14)))
    with pytest.raises(SettingsError) as err:
        load_settings(path)
    assert str(path) in str(err.value)
    assert "labels.horizn_days" in str(err.value)


def test_minimal_file_gets_defaults(tmp_path: Path) -> None:
    """Only partitions are required; every other block falls back to documented defaults."""
    path = tmp_path / "min.yaml"
    path.write_text("partitions:\n  start_date: 2026-01-01\n")
    settings = load_settings(path)
    assert settings.partitions.end_date is None
    assert settings.source.kind == "synthetic"
    assert settings.validation.on_empty_day == "warn"
    assert settings.validation.max_quarantine_share == 0.05
