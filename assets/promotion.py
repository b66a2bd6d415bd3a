"""Shared by both model families: check results, the recorded gates, and the champion asset.

Promotion never trusts "latest": the champion asset names an exact version, reads the check
results recorded for that version's partition from the instance (so a manual materialisation in
the UI is gated too), and refuses unless every blocking check ran on that version, passed, and
compared it with the champion that is current now. The alias move is a compare-and-set on the
champion the decision was made against, so of two concurrent promotions/rollbacks one loses.
A rollback runs only in its model's rollback job, with a reason, and needs an override to
restore a version that was itself rolled away from.
"""

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import Field

from assets.common import OWNERS
from lifecycle.alerts import run_path
from lifecycle.gates import CheckOutcome
from lifecycle.numbers import rounded_metadata
from lifecycle.registry import (
    NO_CHAMPION,
    GateResult,
    ModelRegistry,
    ModelVersion,
    PromotionDecision,
    decide_promotion,
    decide_rollback,
)
from resources.registry import RegistryResource


def check_result(
    outcome: CheckOutcome,
    asset_key: dg.AssetKey,
    version: ModelVersion,
    champion: ModelVersion | None,
    plots: Mapping[str, str] | None = None,
) -> dg.AssetCheckResult:
    """Promotion gates fail with ERROR severity: the spec is blocking, so downstream stops.

    The metadata is the evidence promotion re-checks: which version was judged, against which
    champion (``"none"`` before the first), and the dataset versions both were trained on.
    Numbers are rounded for reading (the verdict was taken on the exact values); ``plots``
    (name → markdown image) come first, so the UI lists them at the top.
    """
    return dg.AssetCheckResult(
        check_name=outcome.name,
        asset_key=asset_key,
        passed=outcome.passed,
        severity=dg.AssetCheckSeverity.ERROR,
        description=outcome.detail,
        metadata={
            **{name: dg.MetadataValue.md(image) for name, image in (plots or {}).items()},
            "model_version": version.version,
            "dataset_version": version.dataset_version,
            "against_champion": champion.version if champion else NO_CHAMPION,
            "champion_dataset_version": champion.dataset_version if champion else NO_CHAMPION,
            **rounded_metadata(
                {
                    "observed": outcome.observed,
                    "threshold": outcome.threshold,
                    "detail": outcome.detail,
                    **dict(outcome.extra),
                }
            ),
        },
    )


def gate_specs(
    asset_key: dg.AssetKey,
    descriptions: dict[str, str],
    partitions_def: dg.PartitionsDefinition,
    reads: Sequence[dg.AssetKey],
) -> list[dg.AssetCheckSpec]:
    """Blocking ERROR-severity specs: a failed gate stops the run and the promotion."""
    return [
        dg.AssetCheckSpec(
            name,
            asset=asset_key,
            description=text,
            blocking=True,
            partitions_def=partitions_def,
            additional_deps=list(reads),
        )
        for name, text in descriptions.items()
    ]


def recorded_gates(
    instance: dg.DagsterInstance,
    asset_key: dg.AssetKey,
    check_names: Sequence[str],
    partition_key: str,
    version: str,
) -> list[GateResult]:
    """The latest recorded outcome of each check on one partition, judged for ``version``.

    Internal Dagster imports are kept to this function (and the IO manager's base classes), so
    an upgrade touches few places.
    """
    from dagster._core.event_api import PartitionKeyFilter
    from dagster._core.storage.asset_check_execution_record import (
        AssetCheckExecutionRecordStatus,
    )

    keys = [dg.AssetCheckKey(asset_key, name) for name in check_names]
    storage = instance.event_log_storage
    latest = storage.get_latest_asset_check_execution_by_key(
        keys, partition_filter=PartitionKeyFilter(key=partition_key)
    )
    current = {
        info.check_key: info.is_current
        for info in storage.get_asset_check_partition_info(keys, partition_keys=[partition_key])
    }
    gates = []
    for key in keys:
        record = latest.get(key)
        evaluation = record.evaluation if record else None
        if record is None or evaluation is None:
            gates.append(GateResult(key.name, passed=False, executed=False, current=False))
            continue
        judged_version = _metadata_text(evaluation.metadata, "model_version")
        against = _metadata_text(evaluation.metadata, "against_champion")
        executed = record.status in (
            AssetCheckExecutionRecordStatus.SUCCEEDED,
            AssetCheckExecutionRecordStatus.FAILED,
        )
        gates.append(
            GateResult(
                key.name,
                passed=bool(evaluation.passed),
                executed=executed,
                current=current.get(key, False) and judged_version == version,
                detail=f"run {record.run_id[:8]}, judged {judged_version} against {against}",
                against=against,
            )
        )
    return gates


def _metadata_text(metadata: Mapping[str, Any], name: str) -> str | None:
    value = metadata.get(name)
    value = getattr(value, "value", value)
    return None if value is None else str(value)


def register_challenger(
    context: dg.AssetExecutionContext,
    reg: ModelRegistry,
    model_name: str,
    files: Sequence[Path],
    dataset_version: str,
    params: Mapping[str, object],
    metrics: Mapping[str, float],
    code_version: str,
) -> tuple[ModelVersion, dict[str, Any]]:
    """Record an immutable version for this month and point `challenger` at it; returns the
    version and the metadata every challenger materialisation starts with."""
    now = dt.datetime.now(dt.UTC)
    version = reg.register(
        model_name,
        context.partition_key,
        files,
        dataset_version=dataset_version,
        params=params,
        metrics=metrics,
        code_version=code_version,
        run_id=context.run.run_id,
        now=now,
    )
    reg.set_alias(
        model_name, "challenger", version.version, "set", context.run.run_id, "trained", now
    )
    metadata: dict[str, Any] = {
        "model_version": version.version,
        "sha256": version.sha256,
        "dataset_version": version.dataset_version,
    }
    return version, metadata


def challenger_under_review(
    context: dg.AssetCheckExecutionContext,
    reg: ModelRegistry,
    model_name: str,
    dataset_version: str,
) -> ModelVersion:
    """The month's newest version, which the gates judge, trained on the data they read."""
    version = reg.latest_for_partition(model_name, context.partition_key)
    if version is None:
        raise dg.Failure(
            description=f"no {model_name} version registered for {context.partition_key}"
        )
    if version.dataset_version != dataset_version:
        raise dg.Failure(
            description=f"{version.version} was trained on {version.dataset_version}, but the "
            f"month's training set is now {dataset_version}: re-train the challenger first"
        )
    return version


class PromotionConfig(dg.Config):
    """Which version to make champion. Empty: the current challenger. In the model's rollback
    job (the only one accepting ``rollback: true``; it always rolls back), with a reason: an
    earlier champion, restored without re-running its gates (it passed them when promoted)."""

    version: str = Field("", description="Exact version id, e.g. v_260601_100000")
    rollback: bool = Field(False, description="Restore a former champion (rollback job only)")
    reason: str = Field("", description="Why, for the alias history; required for a rollback")
    override: bool = Field(False, description="Restore a version that was itself rolled back from")
    override_reason: str = Field("", description="Why the override; required with override")


def rollback_job_name(model_name: str) -> str:
    """The one job that may run the champion asset with ``rollback: true``."""
    return f"{model_name}_rollback"


def _version_metadata(prefix: str, mv: ModelVersion | None) -> dict[str, Any]:
    if mv is None:
        return {f"{prefix}_version": "none"}
    return {
        f"{prefix}_version": mv.version,
        f"{prefix}_partition": mv.partition_key,
        **rounded_metadata({f"{prefix}_{k}": float(v) for k, v in mv.metrics.items()}),
    }


def _run_link(base_url: str | None, name: str, run_id: str) -> dict[str, Any]:
    """``{name: url}`` to the run in the UI when the webserver URL is configured, else nothing
    (the plain run id is always recorded next to it)."""
    path = run_path(run_id)
    if not base_url or not path:
        return {}
    return {name: dg.MetadataValue.url(base_url.rstrip("/") + path)}


def event_label(
    event: str, from_version: str | None, to_version: str, reason: str, noop: bool
) -> str:
    """One line telling promotion, rollback and no-op apart in the asset's event list:
    ``PROMOTE v_a → v_b``, ``ROLLBACK v_b → v_a: <reason>``, ``UNCHANGED v_b``."""
    if noop:
        return f"UNCHANGED {to_version} (already champion)"
    label = f"{event.upper()} {from_version or 'none'} → {to_version}"
    return f"{label}: {reason}" if event == "rollback" else label


def build_champion_asset(
    model_name: str,
    challenger_key: dg.AssetKey,
    check_names: Sequence[str],
    group: str,
    kinds: set[str],
    webserver_url: str | None = None,
) -> dg.AssetsDefinition:
    """``webserver_url`` (settings.alerts.webserver_url) turns the run ids in each promotion
    record into links to this run and to the run that trained the promoted version."""
    key = dg.AssetKey(["models", f"{model_name}_champion"])

    @dg.asset(
        key=key,
        # The champion follows the newest monthly challenger; it promotes an exact version.
        deps=[dg.AssetDep(challenger_key, partition_mapping=dg.LastPartitionMapping())],
        automation_condition=dg.AutomationCondition.eager()
        & dg.AutomationCondition.all_deps_blocking_checks_passed(),
        group_name=group,
        kinds=kinds,
        owners=OWNERS,
        description=(
            f"The {model_name} model that serves. Each materialisation is a promotion (or "
            "rollback) record; it refuses a version whose blocking checks did not all pass."
        ),
    )
    def champion(
        context: dg.AssetExecutionContext, config: PromotionConfig, registry: RegistryResource
    ) -> dg.MaterializeResult:
        # The rollback job always rolls back (launchpad config may omit `rollback`: it replaces
        # the job's default); no other job may.
        rollback = context.job_name == rollback_job_name(model_name)
        if config.rollback and not rollback:
            raise dg.Failure(
                description=f"{model_name}: refused a rollback in job {context.job_name!r}: "
                f"only the {rollback_job_name(model_name)!r} job accepts rollback: true",
            )
        reg = registry.registry()
        current = reg.alias(model_name, "champion")
        target = _target(reg, model_name, config, rollback)
        decision = (
            _rollback_decision(reg, model_name, target, current, config)
            if rollback
            else _promotion_decision(context, reg, challenger_key, check_names, target, current)
        )
        if not decision.allowed:
            raise dg.Failure(
                description=f"{model_name}: refused to make {target.version} champion: "
                + "; ".join(decision.reasons),
                metadata={"refused_version": target.version},
            )
        reg.verify(target)
        event = "rollback" if rollback else "promote"
        recorded = decision.audit_reason or config.reason or event
        if not decision.is_noop:
            # Compare-and-set on the champion the decision was made against: a concurrent
            # promotion or rollback that moved it first makes this one fail (AliasConflict).
            reg.set_alias(
                model_name,
                "champion",
                target.version,
                event,
                context.run.run_id,
                recorded,
                dt.datetime.now(dt.UTC),
                expected=current.version if current else None,
            )
        run_id = context.run.run_id
        return dg.MaterializeResult(
            metadata={
                # Listed first: promote vs rollback at a glance in the asset's events.
                "event": event_label(
                    event, decision.from_version, target.version, recorded, decision.is_noop
                ),
                "action": event if not decision.is_noop else "unchanged",
                "from_version": decision.from_version or "none",
                "to_version": target.version,
                "reason": recorded,
                **_run_link(webserver_url, "run", run_id),
                **_run_link(webserver_url, "challenger_run", target.run_id),
                "run_id": run_id,
                "challenger_run_id": target.run_id,
                "reasons": "; ".join(decision.reasons)
                or ("restored a former champion" if rollback else "all blocking checks passed"),
                **_version_metadata("champion", target),
                **_version_metadata("previous", current),
            }
        )

    return champion


def _rollback_decision(
    reg: ModelRegistry,
    model_name: str,
    target: ModelVersion,
    current: ModelVersion | None,
    config: PromotionConfig,
) -> PromotionDecision:
    return decide_rollback(
        target,
        current,
        reg.ever_alias(model_name, "champion", target.version),
        reason=config.reason,
        rolled_back_from=reg.rollbacks_from(model_name, target.version),
        override_reason=config.override_reason if config.override else None,
    )


def _promotion_decision(
    context: dg.AssetExecutionContext,
    reg: ModelRegistry,
    challenger_key: dg.AssetKey,
    check_names: Sequence[str],
    target: ModelVersion,
    current: ModelVersion | None,
) -> PromotionDecision:
    gates = recorded_gates(
        context.instance, challenger_key, check_names, target.partition_key, target.version
    )
    decision = decide_promotion(target, gates, check_names, current)
    if current is not None and target.partition_key < current.partition_key:
        # Going back to an older month is a rollback, with its own rules and record.
        decision = replace(
            decision,
            allowed=False,
            reasons=(
                *decision.reasons,
                f"{target.version} was trained for {target.partition_key}, before the "
                f"champion's month {current.partition_key}: use the rollback job",
            ),
        )
    return decision


def _target(
    reg: ModelRegistry, model_name: str, config: PromotionConfig, rollback: bool
) -> ModelVersion:
    if config.version:
        return reg.get(model_name, config.version)
    if rollback:
        raise dg.Failure(description="rollback needs an explicit version")
    challenger = reg.alias(model_name, "challenger")
    if challenger is None:
        raise dg.Failure(description=f"{model_name} has no challenger to promote yet")
    return challenger
