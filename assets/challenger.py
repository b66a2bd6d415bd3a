"""The challenger's side of promotion: registering a month's version and recording the
blocking gates' verdicts with the evidence the promotion re-checks."""

import datetime as dt
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import dagster as dg

from lifecycle.gates import CheckOutcome
from lifecycle.numbers import rounded_metadata
from lifecycle.registry import NO_CHAMPION, ModelRegistry, ModelVersion


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
    descriptions: Mapping[str, str],
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
