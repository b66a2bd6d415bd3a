"""Shared by every model family: the recorded gates and the champion asset (promotion, rollback,
the out-of-time gate).

Promotion never trusts "latest": the champion asset names an exact version, reads the check
results recorded for that version's partition from the instance (so a manual materialisation in
the UI is gated too), and refuses unless every blocking check ran on that version, passed, and
compared it with the champion that is current now. The alias move is a compare-and-set on the
champion the decision was made against, so of two concurrent promotions/rollbacks one loses.
A rollback runs only in its model's rollback job, with a reason, and needs an override to
restore a version that was itself rolled away from.
"""

import datetime as dt
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from typing import Any

import dagster as dg
from pydantic import Field

from assets.challenger import check_result
from assets.common import OWNERS
from lifecycle.alerts import run_path
from lifecycle.gates import CheckOutcome
from lifecycle.numbers import rounded_metadata
from lifecycle.registry import (
    GateResult,
    ModelRegistry,
    ModelVersion,
    PromotionDecision,
    decide_promotion,
    decide_rollback,
)
from resources.registry import RegistryResource, Warehouse


def recorded_gates(
    instance: dg.DagsterInstance,
    asset_key: dg.AssetKey,
    check_names: Sequence[str],
    partition_key: str,
    version: str,
) -> list[GateResult]:
    """The latest recorded outcome of each check on one partition, judged for ``version``.

    Dagster internals, on purpose: no public API returns the latest check *execution* of one
    partition (status, run id and the evaluation's metadata) across runs; ``instance`` offers
    only materialisation records. An upgrade that moves these names breaks here, loudly.
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


# The challenger about to be promoted, judged with the champion on the days after training.
AfterTraining = Callable[
    [dg.AssetExecutionContext, ModelRegistry, Any, ModelVersion, ModelVersion | None],
    CheckOutcome | str,
]
OUT_OF_TIME = "out_of_time"
# How a promotion that waits for its out-of-time window starts its log line (the CLI reads it).
WAITING = "waiting for the out-of-time window"


def build_champion_asset(
    model_name: str,
    challenger_key: dg.AssetKey,
    check_names: Sequence[str],
    group: str,
    kinds: set[str],
    webserver_url: str | None = None,
    out_of_time: AfterTraining | None = None,
) -> dg.AssetsDefinition:
    """``webserver_url`` (settings.alerts.webserver_url) turns the run ids in each promotion
    record into links to this run and to the run that trained the promoted version.

    ``out_of_time`` adds the blocking ``out_of_time`` check: a promotion also needs the
    challenger to hold up against the champion on what happened after it was trained (the days
    from the 1st to the promotion day). It runs in the promotion step itself, before the alias
    moves, so a failure refuses the promotion; a rollback or no-op records it as not judged.
    """
    key = dg.AssetKey(["models", f"{model_name}_champion"])
    specs = (
        [
            dg.AssetCheckSpec(
                OUT_OF_TIME,
                asset=key,
                blocking=True,
                description="The promoted challenger against the champion it replaces, both "
                "judged on the days after the challenger was trained (neither saw them), with "
                "a paired bootstrap CI; the metadata names the days, units and both numbers.",
            )
        ]
        if out_of_time
        else []
    )

    @dg.asset(
        key=key,
        # The champion follows the newest monthly challenger; it promotes an exact version.
        deps=[dg.AssetDep(challenger_key, partition_mapping=dg.LastPartitionMapping())],
        automation_condition=dg.AutomationCondition.eager()
        & dg.AutomationCondition.all_deps_blocking_checks_passed(),
        check_specs=specs,
        output_required=False,  # a promotion waiting for its out-of-time window writes nothing
        group_name=group,
        kinds=kinds,
        owners=OWNERS,
        description=(
            f"The {model_name} model that serves. Each materialisation is a promotion (or "
            "rollback) record; it refuses a version whose blocking checks did not all pass."
        ),
    )
    def champion(
        context: dg.AssetExecutionContext,
        config: PromotionConfig,
        registry: RegistryResource,
        warehouse: Warehouse,
    ) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult | dg.Output]:
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
        checks = []
        # Judged against the champion it replaces: a rollback, a no-op or the first model (no
        # champion to compare with) has nothing to judge after training.
        if out_of_time is not None and current is not None and not (rollback or decision.is_noop):
            judged = out_of_time(context, reg, warehouse, target, current)
            if isinstance(judged, str):
                # Nothing to do yet (the days after training are not in): a clean skip that
                # says why, not a failure; the check stays unexecuted and the alias unchanged.
                context.log.warning(judged)
                yield _unexecuted(context, key)
                return
            verdict = check_result(judged, key, target, current)
            if not verdict.passed:
                yield verdict
                raise dg.Failure(
                    description=f"{model_name}: refused to make {target.version} champion: "
                    f"out_of_time: {verdict.description}",
                    metadata={"refused_version": target.version},
                )
            checks.append(verdict)
        elif out_of_time is not None:
            yield _unexecuted(context, key)
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
        yield dg.MaterializeResult(
            check_results=checks,
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
            },
        )

    return champion


def _unexecuted(context: dg.AssetExecutionContext, key: dg.AssetKey) -> dg.Output:
    """The check's output without an evaluation: Dagster records it as not executed."""
    check = dg.AssetCheckKey(key, OUT_OF_TIME)
    return dg.Output(
        None, output_name=context.assets_def.get_output_name_for_asset_check_key(check)
    )


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
