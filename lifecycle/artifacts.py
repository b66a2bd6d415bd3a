"""The files of a model version: copied once, fsynced, read-only, hashed, verified on load.

A version's files live in ``<artifact_root>/<model_name>/<version>/``. Each source is copied,
the copy is fsynced, hashed (from the copy, so the hash describes what is on disk, not what
the caller had) and made read-only; the folder is fsynced last. Only after that does the
registry write the version's row, so a crash leaves an orphan folder but never a row without
files. Loading goes through :func:`verified_path`, which re-hashes the file, so a model that
changed or vanished after registration is refused instead of silently served. Model files are
whatever the trainer wrote (XGBoost JSON, numpy arrays); nothing here unpickles anything.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
from collections.abc import Mapping, Sequence
from pathlib import Path

from lifecycle.model_records import ArtifactIntegrityError, ModelVersion

__all__ = [
    "check_model_name",
    "check_sources",
    "claim_version_dir",
    "manifest_sha256",
    "sha256_file",
    "verified_path",
    "verify",
    "write_artifacts",
]

_CHUNK = 1 << 20
# Model names become directory names, so keep them to a portable, traversal-free alphabet.
_MODEL_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, streamed so large model files do not load into memory."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def manifest_sha256(files_sha256: Mapping[str, str]) -> str:
    """One digest for a whole version: sha256 of ``"<sha>  <name>\\n"`` lines sorted by name.

    The line format is ``sha256sum``'s, so the digest can be reproduced with standard tools.
    """
    lines = "".join(f"{files_sha256[name]}  {name}\n" for name in sorted(files_sha256))
    return hashlib.sha256(lines.encode("utf-8")).hexdigest()


def check_model_name(model_name: str) -> None:
    """Refuse a name that could not safely be a folder name (``..``, slashes, spaces)."""
    if not _MODEL_NAME_RE.match(model_name):
        raise ValueError(
            f"model name {model_name!r} must match {_MODEL_NAME_RE.pattern} (it names a folder)"
        )


def check_sources(model_name: str, source_files: Sequence[Path]) -> list[Path]:
    """The sources as paths, after refusing what would make a broken version: none, two
    with the same file name (one would overwrite the other), or one that is not a file."""
    sources = [Path(p) for p in source_files]
    if not sources:
        raise ValueError(f"{model_name}: a model version needs at least one artifact file")
    names = [p.name for p in sources]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"{model_name}: artifact file names must be unique: {duplicates}")
    for src in sources:
        if not src.is_file():
            raise FileNotFoundError(f"{model_name}: artifact source {src} is not a file")
    return sources


def claim_version_dir(version_dir: Path) -> Path:
    """Create the folder with an exclusive ``mkdir``, the claim on its version id: an existing
    folder raises :class:`FileExistsError` instead of being written into."""
    try:
        version_dir.mkdir()
    except FileExistsError:
        raise FileExistsError(
            f"{version_dir.parent.name}: version folder {version_dir} already exists; "
            "model versions are immutable and are never written twice"
        ) from None
    return version_dir


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_artifacts(version_dir: Path, sources: Sequence[Path]) -> dict[str, str]:
    """Copy, fsync, hash (from the copy) and make read-only; returns ``{name: sha256}``.

    The folder itself is fsynced after its files, so their directory entries are durable
    before the caller records the version.
    """
    files_sha256: dict[str, str] = {}
    for src in sources:
        dest = version_dir / src.name
        shutil.copyfile(src, dest)
        with dest.open("rb") as fh:
            os.fsync(fh.fileno())
        files_sha256[src.name] = sha256_file(dest)
        dest.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
    _fsync_dir(version_dir)
    return dict(sorted(files_sha256.items()))


def verified_path(mv: ModelVersion, name: str) -> Path:
    """Path of one artifact after re-hashing it against the registered sha256.

    Raises :class:`ArtifactIntegrityError` if the file changed or vanished, so a tampered
    or half-deleted model is never loaded; ``KeyError`` if ``name`` is not in the version.
    """
    if name not in mv.files_sha256:
        raise KeyError(f"{mv.label} has no artifact {name!r}; it has {sorted(mv.files_sha256)}")
    expected = mv.files_sha256[name]
    path = Path(mv.artifact_dir) / name
    try:
        actual: str | None = sha256_file(path)
    except FileNotFoundError:
        actual = None
    if actual != expected:
        raise ArtifactIntegrityError(path, expected, actual)
    return path


def verify(mv: ModelVersion) -> dict[str, Path]:
    """Verify every artifact of a version; returns ``{name: path}`` when all match."""
    return {name: verified_path(mv, name) for name in sorted(mv.files_sha256)}
