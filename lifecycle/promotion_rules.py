"""The promotion rules: pure functions from recorded evidence to a decision, tested without a
database. :class:`~lifecycle.registry.ModelRegistry` only carries out what they allow."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

from lifecycle.model_records import (
    NO_CHAMPION,
    AliasEvent,
    GateResult,
    ModelVersion,
    PromotionDecision,
)

# Reasons that say nothing: the old defaults of the rollback config and the CLI.
_PLACEHOLDER_REASONS = frozenset({"", "rollback", "manual rollback"})


def decide_promotion(
    candidate: ModelVersion,
    gates: Sequence[GateResult],
    required_checks: Collection[str],
    current_champion: ModelVersion | None,
) -> PromotionDecision:
    """Allow promotion only if every required check executed, is current and passed, and
    judged the candidate against the champion that is current now.

    ``gates`` are read oldest to newest: when one check appears several times the last entry
    wins (a re-run supersedes an earlier outcome). Checks that are not required never block.
    A comparison with a champion that has since been replaced (a rollback, another promotion)
    is stale evidence, as is a result that does not record its champion.
    Promoting the current champion is allowed as a no-op with reason ``"already champion"``.
    """
    from_version = current_champion.version if current_champion else None
    if current_champion is not None and current_champion.model_name != candidate.model_name:
        return PromotionDecision(
            allowed=False,
            reasons=(
                f"current champion {current_champion.label} belongs to another model "
                f"than candidate {candidate.label}",
            ),
            from_version=from_version,
            to_version=candidate.version,
        )
    if from_version == candidate.version:
        return PromotionDecision(
            allowed=True,
            reasons=("already champion",),
            from_version=from_version,
            to_version=candidate.version,
        )
    latest: dict[str, GateResult] = {g.check_name: g for g in gates}
    reasons: list[str] = []
    for check in sorted(required_checks):
        gate = latest.get(check)
        detail = f" ({gate.detail})" if gate is not None and gate.detail else ""
        if gate is None:
            reasons.append(f"required check {check!r} has no recorded result")
            continue
        if not gate.executed:
            reasons.append(f"required check {check!r} did not execute{detail}")
            continue
        if not gate.current:
            reasons.append(
                f"required check {check!r} is stale: it ran before "
                f"{candidate.label} was materialised"
            )
        if not gate.passed:
            reasons.append(f"required check {check!r} failed{detail}")
    reasons.extend(_stale_comparisons(candidate, latest, required_checks, from_version))
    return PromotionDecision(
        allowed=not reasons,
        reasons=tuple(reasons),
        from_version=from_version,
        to_version=candidate.version,
    )


def _stale_comparisons(
    candidate: ModelVersion,
    latest: Mapping[str, GateResult],
    required_checks: Collection[str],
    champion_version: str | None,
) -> list[str]:
    """One reason per other champion the executed required checks were judged against."""
    now = champion_version or NO_CHAMPION
    judged: dict[str | None, list[str]] = {}
    for check in sorted(required_checks):
        gate = latest.get(check)
        if gate is not None and gate.executed and gate.against != now:
            judged.setdefault(gate.against, []).append(check)
    reasons = []
    for against, checks in judged.items():
        names = ", ".join(checks)
        if against is None:
            reasons.append(
                f"gates ({names}) judged {candidate.version} without recording the champion "
                "they compared against: re-run the gates"
            )
        else:
            reasons.append(
                f"gates ({names}) judged {candidate.version} against champion {against}, "
                f"but the champion is now {now}: re-run the gates"
            )
    return reasons


def decide_rollback(
    target: ModelVersion,
    current_champion: ModelVersion | None,
    was_champion_before: bool,
    *,
    reason: str,
    rolled_back_from: Sequence[AliasEvent] = (),
    override_reason: str | None = None,
) -> PromotionDecision:
    """Allow rollback only to a former champion (it passed its gates then) that is not current,
    with a reason for the history; a version that was itself rolled away from (``rolled_back_from``,
    from :meth:`ModelRegistry.rollbacks_from`) also needs an override with its own reason.

    ``was_champion_before`` comes from :meth:`ModelRegistry.ever_alias`; rolling back is how
    a bad promotion is undone without re-running gates on a model that already earned them.
    ``override_reason`` is None when no override was asked for. The recorded reason is
    ``audit_reason``: ``"<reason>; override: <override_reason>"`` with an override.
    """
    from_version = current_champion.version if current_champion else None
    reasons: list[str] = []
    if current_champion is not None and current_champion.model_name != target.model_name:
        reasons.append(
            f"current champion {current_champion.label} belongs to another model "
            f"than target {target.label}"
        )
    if from_version == target.version:
        reasons.append(f"{target.label} is already the current champion")
    if not was_champion_before:
        reasons.append(
            f"{target.label} was never champion; only a former champion can be rolled back to"
        )
    why = reason.strip()
    if why.lower() in _PLACEHOLDER_REASONS:
        reasons.append(
            f"a rollback needs a reason for the alias history (got {reason!r}): "
            f"say why {from_version or NO_CHAMPION} is being replaced"
        )
    override = None if override_reason is None else override_reason.strip()
    if override == "":
        reasons.append("an override needs its own non-empty override_reason")
    if rolled_back_from and override is None:
        last = rolled_back_from[-1]
        reasons.append(
            f"{target.label} was itself rolled back from at {last.at:%Y-%m-%d %H:%M} UTC "
            f"(run {last.run_id[:8]}: {last.reason!r}); restoring it needs override: true "
            "with an override_reason"
        )
    return PromotionDecision(
        allowed=not reasons,
        reasons=tuple(reasons),
        from_version=from_version,
        to_version=target.version,
        audit_reason=f"{why}; override: {override}" if override else why,
    )
