"""What the demo tells: which gate blocked which version and why, which promotion was refused,
which rollback happened and why, and the champions it ends with.

Kept apart from the CLI so the story is plain data a test can assert on.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import dagster as dg

from lifecycle.registry import ModelRegistry


def _number(value: object) -> str:
    raw = getattr(value, "value", value)
    return f"{raw:.4g}" if isinstance(raw, float) else str(raw)


def gate_line(evaluation: dg.AssetCheckEvaluation) -> str:
    """``asset version: check (observed X vs threshold Y): detail`` for one failed gate."""
    meta = evaluation.metadata
    version = _number(meta.get("model_version", "?"))
    numbers = ""
    if "observed" in meta and "threshold" in meta:
        numbers = (
            f" (observed {_number(meta['observed'])} vs threshold {_number(meta['threshold'])})"
        )
    detail = f": {evaluation.description}" if evaluation.description else ""
    return f"{evaluation.asset_key.to_user_string()} {version}: {evaluation.check_name}{numbers}{detail}"


@dataclass
class Story:
    """Events worth telling, in the order they happened."""

    blocked: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    rollbacks: list[str] = field(default_factory=list)
    waiting: list[str] = field(default_factory=list)
    judged_after: list[str] = field(default_factory=list)

    def lines(self, registry: ModelRegistry, families: list[str]) -> list[str]:
        out = ["What happened:"]
        out += [f"  blocked  {line}" for line in self.blocked] or ["  no gate blocked"]
        out += [f"  refused  {line}" for line in self.refused]
        out += [f"  judged   {line}" for line in self.judged_after]
        out += [f"  waiting  {line.removeprefix('waiting ')}" for line in self.waiting]
        for event in registry.events():
            if event.event == "rollback":
                out.append(
                    f"  rollback {event.model_name}: {event.from_version} → {event.to_version}, "
                    f"reason: {event.reason}"
                )
        for family in families:
            champion = registry.alias(family, "champion")
            name = f"{champion.version} (from {champion.partition_key})" if champion else "none"
            out.append(f"  champion {family}: {name}")
        return out


def rollback_target(registry: ModelRegistry, family: str) -> tuple[str, str] | None:
    """(current champion, the champion before it), or None before a second promotion."""
    promoted = [
        e.to_version
        for e in registry.events(family)
        if e.alias == "champion" and e.event != "rollback"
    ]
    current = registry.alias(family, "champion")
    if current is None or len(promoted) < 2:
        return None
    previous = [v for v in promoted if v != current.version]
    return (current.version, previous[-1]) if previous else None
