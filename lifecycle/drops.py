"""New-data detection for the files source: which dropped files are new or changed, and which
local days their rows cover. Pure (no Dagster): the drop sensor calls these.

A file's identity is its path; its version is the sha256 of its bytes. Size and mtime only
spare re-hashing a file that has not been touched since the last look.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from lifecycle.sources import matching_files

CHUNK = 1 << 20


@dataclass(frozen=True)
class Fingerprint:
    size: int
    mtime_ns: int
    sha256: str

    def as_dict(self) -> dict[str, int | str]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Fingerprint:
        return cls(size=int(raw["size"]), mtime_ns=int(raw["mtime_ns"]), sha256=str(raw["sha256"]))


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def fingerprint(path: Path, previous: Fingerprint | None = None) -> Fingerprint:
    """Size, mtime and content hash; the hash is reused when size and mtime are unchanged."""
    stat = path.stat()
    if previous is not None and (previous.size, previous.mtime_ns) == (
        stat.st_size,
        stat.st_mtime_ns,
    ):
        return previous
    return Fingerprint(size=stat.st_size, mtime_ns=stat.st_mtime_ns, sha256=file_sha256(path))


@dataclass(frozen=True)
class ReadFailure:
    """Consecutive failed reads of one version (sha256) of a file, and whether that was
    alerted."""

    sha256: str
    count: int
    error: str
    alerted: bool = False

    def as_dict(self) -> dict[str, int | str | bool]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> ReadFailure:
        return cls(
            sha256=str(raw["sha256"]),
            count=int(raw["count"]),
            error=str(raw.get("error", "")),
            alerted=bool(raw.get("alerted", False)),
        )


def record_failure(previous: ReadFailure | None, sha256: str, error: str) -> ReadFailure:
    """One more failed read: counting restarts (and may alert again) when the bytes change."""
    if previous is not None and previous.sha256 == sha256:
        return ReadFailure(sha256, previous.count + 1, error, previous.alerted)
    return ReadFailure(sha256, 1, error)


def alert_due(failure: ReadFailure, after: int) -> bool:
    """Alert once per file version, on its ``after``-th consecutive failure or later."""
    return failure.count >= after and not failure.alerted


def load_state(text: str | None) -> tuple[dict[str, Fingerprint], dict[str, ReadFailure]]:
    """The sensor cursor: fingerprints of the files seen, and the files failing to read.

    Reads the current shape ``{"v": 2, "files": …, "failures": …}`` and the older flat
    ``{path: fingerprint}`` (no failures then); an empty or missing cursor is empty.
    """
    if not text:
        return {}, {}
    raw = json.loads(text)
    if isinstance(raw.get("v"), int):
        files = {p: Fingerprint.from_dict(f) for p, f in raw.get("files", {}).items()}
        failures = {p: ReadFailure.from_dict(f) for p, f in raw.get("failures", {}).items()}
        return files, failures
    return {path: Fingerprint.from_dict(fp) for path, fp in raw.items()}, {}


def load_cursor(text: str | None) -> dict[str, Fingerprint]:
    """The fingerprints of a cursor (either shape)."""
    return load_state(text)[0]


def dump_cursor(
    fingerprints: Mapping[str, Fingerprint], failures: Mapping[str, ReadFailure] | None = None
) -> str:
    state = {
        "v": 2,
        "files": {path: fp.as_dict() for path, fp in sorted(fingerprints.items())},
        "failures": {path: f.as_dict() for path, f in sorted((failures or {}).items())},
    }
    return json.dumps(state, separators=(",", ":"))


def scan_files(
    patterns: Mapping[str, str], previous: Mapping[str, Fingerprint]
) -> tuple[dict[str, Fingerprint], dict[str, set[str]]]:
    """Fingerprints of every file matching a pattern now, and the labels (tables) of the
    patterns each file matched. A file that vanishes mid-scan is left for the next scan."""
    current: dict[str, Fingerprint] = {}
    labels: dict[str, set[str]] = {}
    for label, pattern in patterns.items():
        for path in matching_files(pattern):
            key = str(path)
            if not path.is_file():
                continue
            if key not in current:
                try:
                    current[key] = fingerprint(path, previous.get(key))
                except FileNotFoundError:
                    continue
            labels.setdefault(key, set()).add(label)
    return current, labels


def changed_paths(
    current: Mapping[str, Fingerprint], previous: Mapping[str, Fingerprint]
) -> list[str]:
    """Paths that are new or whose content changed. A touched file with the same bytes is
    not a change; a file that disappeared is not one either (its rows are not re-ingested)."""
    return sorted(
        path
        for path, fp in current.items()
        if path not in previous or previous[path].sha256 != fp.sha256
    )


def version_digest(versions: Iterable[tuple[str, str]], length: int = 16) -> str:
    """A short stable digest of ``(path, sha256)`` pairs: the same file versions, the same
    digest, so a run key built from it never ingests one version twice."""
    digest = hashlib.sha256()
    for path, sha in sorted(set(versions)):
        digest.update(f"{path}\0{sha}\n".encode())
    return digest.hexdigest()[:length]
