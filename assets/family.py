"""The one generic factory: any model family (lifecycle.family.ModelFamily) becomes the same
graph — dataset (monthly) → challenger → blocking gates → champion (promotion / rollback, with
the out-of-time gate) → daily predictions + shadow predictions — with the same metadata, checks,
jobs and sensors. A family's registration module says only what is specific to it."""

import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd

from assets.challenger import challenger_under_review, check_result, gate_specs, register_challenger
from assets.common import (
    OWNERS,
    Partitions,
    daily_table,
    frame_metadata,
    local_window,
    manifest_metadata,
    require_materialized,
    table_value,
)
from assets.keys import FamilyKeys
from assets.per_day import daily_frame_metadata, day_check_evaluations
from assets.promotion import WAITING, AfterTraining, build_champion_asset
from lifecycle.family import Fit, ModelFamily, Needs, NotReady
from lifecycle.gates import CheckOutcome
from lifecycle.model_records import ModelVersion
from lifecycle.out_of_time import window_after
from lifecycle.registry import ModelRegistry
from lifecycle.settings import Settings

RESOURCES = {"registry", "warehouse", "publisher"}


@dataclass(frozen=True)
class Words:
    """What the UI says about each asset of the family."""

    dataset: str
    challenger: str
    gates: str
    predictions: str
    shadow: str = (
        "The challenger's predictions on the same population, before promotion, so a reviewer "
        "can compare them with the champion's (blue-green without a second deployment)."
    )


@dataclass(frozen=True)
class Registration:
    """A family and its lineage: which upstream partitions each step reads (as deps for SQL
    reads, as ins for frames the IO manager loads)."""

    family: ModelFamily
    keys: FamilyKeys
    words: Words
    kinds: set[str]
    dataset_kinds: set[str] = field(default_factory=lambda: {"duckdb", "pandas"})
    dataset_deps: Sequence[dg.AssetDep] = ()
    dataset_ins: Mapping[str, dg.AssetIn] = field(default_factory=dict)
    prediction_deps: Sequence[dg.AssetDep | dg.AssetKey] = ()
    prediction_ins: Mapping[str, dg.AssetIn] = field(default_factory=dict)


def shown(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """A family's plain metadata as Dagster shows it: ``plot_*`` markdown images first (other
    images after), frames as tables, mappings as JSON, everything else as given."""
    plots = {k: dg.MetadataValue.md(v) for k, v in metadata.items() if k.startswith("plot_")}
    rest: dict[str, Any] = {}
    for name, value in metadata.items():
        if name in plots:
            continue
        if isinstance(value, str) and value.startswith("!["):
            rest[name] = dg.MetadataValue.md(value)
        elif isinstance(value, pd.DataFrame):
            rest[name] = table_value(value)
        elif isinstance(value, Mapping):
            rest[name] = dg.MetadataValue.json(dict(value))
        else:
            rest[name] = value
    return {**plots, **rest}


def require(context: dg.AssetExecutionContext, needs: Needs, why: str) -> None:
    for key, partitions in needs.items():
        require_materialized(context, dg.AssetKey.from_user_string(key), partitions, why)


def ready(step: str, compute: Any, *args: Any) -> Any:
    """Run a family hook; NotReady (too early, days missing) fails the step with its message."""
    try:
        return compute(*args)
    except NotReady as exc:
        raise dg.Failure(description=f"{step}: {exc}") from None


def loader(family: ModelFamily, reg: ModelRegistry):
    def load(mv: ModelVersion, fit: Fit) -> Any:
        return family.load(reg.verify(mv), fit)

    return load


def after_training(family: ModelFamily, days: int) -> AfterTraining | None:
    """The out-of-time judgement the champion's promotion step runs (None: gate switched off).
    Returns why it must wait instead, while days of the window are not materialised yet."""
    if days == 0:
        return None

    def judge(
        context: dg.AssetExecutionContext,
        reg: ModelRegistry,
        warehouse: Any,
        target: ModelVersion,
        current: ModelVersion | None,
    ) -> CheckOutcome | str:
        window = window_after(pd.Timestamp(target.partition_key), days)
        span = f"{window.first_day:%Y-%m-%d}…{window.last_day:%Y-%m-%d}"
        for key, wanted in family.out_of_time_needs(window).items():
            done = context.instance.get_materialized_partitions(dg.AssetKey.from_user_string(key))
            missing = sorted(set(wanted) - done)
            if missing:
                return (
                    f"{WAITING} {span} of {target.version}: {key} has no partitions "
                    f"{missing[0]} … {missing[-1]} ({len(missing)}) yet; promotion_retry_schedule "
                    "runs it again each day until they are in"
                )
        load = loader(family, reg)
        old = load(current, "served") if current is not None else None
        return family.out_of_time(window, load(target, "served"), old, warehouse).outcome

    return judge


def build_family_assets(r: Registration, partitions: Partitions, settings: Settings) -> list:
    family, keys, name = r.family, r.keys, r.family.name

    @dg.asset(
        key=keys.dataset,
        deps=list(r.dataset_deps),
        ins=dict(r.dataset_ins),
        partitions_def=partitions.monthly,
        metadata={"partition_expr": "dataset_month"},
        required_resource_keys={"warehouse"},
        group_name=name,
        kinds=r.dataset_kinds,
        owners=OWNERS,
        description=r.words.dataset,
    )
    def dataset(context: dg.AssetExecutionContext, **inputs: pd.DataFrame) -> dg.Output:
        month = pd.Timestamp(context.partition_key)
        require(
            context, ready(keys.dataset.to_user_string(), family.dataset_needs, month), "window"
        )
        step = keys.dataset.to_user_string()
        built = ready(step, family.build_dataset, month, inputs, context.resources.warehouse)
        # The IO manager commits the rows, the retained version and the manifest together.
        frame = built.frame.assign(dataset_version=built.manifest.version)
        return dg.Output(
            frame,
            metadata={
                **frame_metadata(frame),
                **manifest_metadata(built.manifest),
                **shown(built.metadata),
            },
        )

    @dg.asset(
        key=keys.challenger,
        ins={"dataset": dg.AssetIn(keys.dataset)},
        partitions_def=partitions.monthly,
        group_name=name,
        kinds=r.kinds,
        owners=OWNERS,
        code_version=family.code_version,
        required_resource_keys={"registry"},
        description=r.words.challenger,
    )
    def challenger(
        context: dg.AssetExecutionContext, dataset: pd.DataFrame
    ) -> dg.MaterializeResult:
        reg = context.resources.registry.registry()
        with tempfile.TemporaryDirectory() as tmp:
            trained = family.train(dataset, Path(tmp))
            version, meta = register_challenger(
                context,
                reg,
                name,
                trained.files,
                str(dataset["dataset_version"].iloc[0]),
                params=trained.params,
                metrics=trained.metrics,
                code_version=family.code_version,
            )
        described = shown(trained.describe(version.version))
        plots = {k: v for k, v in described.items() if k.startswith("plot_")}
        return dg.MaterializeResult(metadata={**plots, **meta, **described})

    @dg.multi_asset_check(
        specs=gate_specs(keys.challenger, family.gates, partitions.monthly, [keys.dataset]),
        ins={"dataset": dg.AssetIn(keys.dataset)},
        name=f"{name}_promotion_gates",
        required_resource_keys={"registry", "warehouse"},
        description=r.words.gates,
    )
    def gates(context: dg.AssetCheckExecutionContext, dataset: pd.DataFrame):
        reg = context.resources.registry.registry()
        judged = challenger_under_review(
            context, reg, name, str(dataset["dataset_version"].iloc[0])
        )
        champion = reg.alias(name, "champion")
        verdicts = family.judge(
            dataset, judged, champion, loader(family, reg), context.resources.warehouse
        )
        named = [v.outcome.name for v in verdicts]
        if sorted(named) != sorted(family.gates):
            raise dg.Failure(
                description=f"{name}.judge returned verdicts {named}, but the family declares "
                f"the gates {list(family.gates)}: one verdict per declared gate"
            )
        for verdict in verdicts:
            yield check_result(verdict.outcome, keys.challenger, judged, champion, verdict.plots)

    champion = build_champion_asset(
        name,
        keys.challenger,
        list(family.gates),
        name,
        r.kinds,
        settings.alerts.webserver_url,
        after_training(family, settings.schedules.out_of_time_days()),
    )
    scores = build_predictions(r, partitions, keys.predictions, "champion", r.words.predictions)
    shadow = build_predictions(r, partitions, keys.shadow, "challenger", r.words.shadow)
    return [dataset, challenger, gates, champion, scores, shadow]


def build_predictions(
    r: Registration, partitions: Partitions, key: dg.AssetKey, alias: str, description: str
) -> dg.AssetsDefinition:
    """Daily predictions of the model an alias points at, over a whole day range at once;
    nothing to write (no model yet, challenger already champion) is a clean skip."""
    family, name, check = r.family, r.family.name, r.family.daily_check
    specs = (
        [
            dg.AssetCheckSpec(
                check.name,
                asset=key,
                description=check.description,
                partitions_def=partitions.daily,
            )
        ]
        if check
        else []
    )

    @dg.asset(
        key=key,
        ins=dict(r.prediction_ins),
        # The shadow scores with whichever monthly challenger is current: the newest partition.
        deps=[
            *r.prediction_deps,
            r.keys.champion
            if alias == "champion"
            else dg.AssetDep(r.keys.challenger, partition_mapping=dg.LastPartitionMapping()),
        ],
        **daily_table(partitions, "as_of_date"),
        output_required=False,
        check_specs=specs,
        required_resource_keys=RESOURCES,
        group_name=name,
        kinds=r.kinds,
        owners=OWNERS,
        description=description,
    )
    def predictions(context: dg.AssetExecutionContext, **inputs: pd.DataFrame) -> Iterator[Any]:
        start, end = local_window(context)
        reg = context.resources.registry.registry()
        mv = reg.alias(name, alias)
        skip = None
        if mv is None:
            # A fresh deployment ingests daily before any model is promoted: no predictions yet,
            # and no failed run (and alert) every morning until then.
            skip = f"no {name} {alias} yet: nothing to score"
        elif alias == "challenger" and mv == reg.alias(name, "champion"):
            skip = f"{mv.version} is already champion: no shadow scores to write"
        if skip is not None:
            context.log.info(skip)
            if check:  # every declared check needs a result, or the step fails
                results = {day: (True, {"skipped": skip}) for day in context.partition_keys}
                yield from day_check_evaluations(context, key, check.name, results)
            return
        assert mv is not None
        require(context, family.prediction_needs(start, end), f"{key.to_user_string()} window")
        days = pd.date_range(start, end - pd.Timedelta(days=1), freq="D")
        warehouse = context.resources.warehouse
        model = family.load(reg.verify(mv), "served")
        made = ready(key.to_user_string(), family.predict, model, mv, days, inputs, warehouse)
        # Dagster stores an output before it resumes the generator: once past this yield the
        # warehouse partition is committed, and a failed write never reaches the publish.
        yield dg.Output(
            made.table,
            metadata={
                **daily_frame_metadata(context, made.table, "as_of_date", extra=made.per_day),
                "model_version": mv.version,
                **shown(made.metadata),
            },
        )
        if check:
            results = {
                day: (passed, {"model_version": mv.version, **meta})
                for day, (passed, meta) in made.day_checks.items()
            }
            yield from day_check_evaluations(context, key, check.name, results)
        publisher = context.resources.publisher
        yield from publisher.publish_committed(key, made.table, "as_of_date", start, end)

    return predictions
