"""What the registry stores and the promotion rules read: versions, alias events, gate results,
decisions, and the errors both raise. Plain frozen dataclasses, no storage."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

Alias = Literal["champion", "challenger"]
Event = Literal["promote", "rollback", "set"]
ALIASES: tuple[str, ...] = get_args(Alias)
EVENTS: tuple[str, ...] = get_args(Event)
# What a gate records as the champion it judged against when there was none (never a version id).
NO_CHAMPION = "none"

# --------------------------------------------------------------------------- errors


class ArtifactIntegrityError(Exception):
    """An artifact no longer matches the hash recorded at registration (changed or missing)."""

    def __init__(self, path: Path | str, expected: str, actual: str | None) -> None:
        self.path = Path(path)
        self.expected = expected
        self.actual = actual
        found = "file is missing" if actual is None else f"found sha256 {actual}"
        super().__init__(
            f"artifact integrity check failed for {self.path}: expected sha256 {expected}, {found}"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        # Keep the exception picklable across process boundaries despite the custom __init__.
        return (type(self), (self.path, self.expected, self.actual))


class PromotionRefused(Exception):
    """A promotion or rollback the rules do not allow; the message lists every reason."""

    def __init__(self, reasons: Sequence[str], subject: str = "promotion") -> None:
        self.reasons = tuple(reasons)
        self.subject = subject
        listed = "; ".join(self.reasons) or "no reason given"
        super().__init__(f"{subject} refused: {listed}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.reasons, self.subject))


class AliasConflict(Exception):
    """The alias moved between the decision and the write: another promotion or rollback won.

    Raised by :meth:`ModelRegistry.set_alias` with ``expected``; nothing was written, so the
    loser can re-decide against the new state.
    """

    def __init__(
        self, model_name: str, alias: str, expected: str | None, actual: str | None, target: str
    ) -> None:
        self.model_name, self.alias, self.target = model_name, alias, target
        self.expected, self.actual = expected, actual
        found = actual or NO_CHAMPION
        if actual == expected:  # the winner's write had not committed when we looked
            found += " with a concurrent change in flight"
        super().__init__(
            f"{model_name} {alias} moved while deciding: expected {expected or NO_CHAMPION}, "
            f"found {found}; {target} was NOT made {alias} (another promotion or rollback "
            "won): re-run to decide against the new state"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            type(self),
            (self.model_name, self.alias, self.expected, self.actual, self.target),
        )


# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class ModelVersion:
    """One immutable registered model: where its files are and what produced them.

    ``params``/``metrics`` are plain dicts (so they serialise anywhere) holding the JSON
    round-tripped values; treat them as read-only.
    """

    model_name: str
    version: str
    partition_key: str
    created_at: dt.datetime
    artifact_dir: str
    files_sha256: Mapping[str, str]
    sha256: str
    dataset_version: str
    params: Mapping[str, Any]
    metrics: Mapping[str, float]
    code_version: str
    run_id: str

    def __hash__(self) -> int:
        # Dict fields are unhashable; identity plus content digest is enough and eq-consistent.
        return hash((self.model_name, self.version, self.sha256))

    @property
    def label(self) -> str:
        """``model_name@version``, for log lines and messages."""
        return f"{self.model_name}@{self.version}"


@dataclass(frozen=True)
class AliasEvent:
    """One alias change, kept forever so promotions and rollbacks are auditable."""

    model_name: str
    alias: str
    from_version: str | None
    to_version: str
    event: Event
    run_id: str
    at: dt.datetime
    reason: str


@dataclass(frozen=True)
class GateResult:
    """A recorded check outcome for the candidate version.

    ``executed`` is False when the check was skipped; ``current`` is False when the result
    predates the candidate's materialisation (it judged some other model). ``against`` is the
    champion version the check compared with (:data:`NO_CHAMPION` when there was none), or
    None when the record does not say: such evidence cannot be trusted for promotion.
    """

    check_name: str
    passed: bool
    executed: bool
    current: bool
    detail: str = ""
    against: str | None = None


@dataclass(frozen=True)
class PromotionDecision:
    """Outcome of the pure promotion/rollback rules; ``reasons`` explain refusals/no-ops."""

    allowed: bool
    reasons: tuple[str, ...]
    from_version: str | None
    to_version: str
    audit_reason: str = ""  # what the alias history records for this move

    @property
    def is_noop(self) -> bool:
        """True when the alias already points at ``to_version``: nothing to write."""
        return self.from_version == self.to_version

    def raise_if_refused(self, subject: str = "promotion") -> None:
        """Turn a refusal into :class:`PromotionRefused` so a run fails loudly."""
        if not self.allowed:
            raise PromotionRefused(self.reasons, subject)
