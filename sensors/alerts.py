"""Alert sensors: a failed run of this code location, or a failed asset check evaluation
(WARN or ERROR, run or runless), becomes one alert through the alerts resource."""

from __future__ import annotations

import dagster as dg

from lifecycle.alerts import Alert
from resources.alerts import AlertResource
from sensors.common import CheckEvent, check_events, run_partition


def metadata_details(evaluation: dg.AssetCheckEvaluation, limit: int = 8) -> dict[str, str]:
    """The check's scalar metadata (e.g. score_psi and its bound) as short strings; the day's
    own figures before the range-wide ``range*`` context (metadata comes back sorted by name)."""
    details = {}
    items = sorted(evaluation.metadata.items(), key=lambda kv: kv[0].startswith("range"))
    for name, value in items:
        raw = getattr(value, "value", value)
        if isinstance(raw, bool | int | float | str) and len(str(raw)) <= 80:
            details[name] = f"{raw:.4g}" if isinstance(raw, float) else str(raw)
        if len(details) >= limit:
            break
    return details


def check_alert(event: CheckEvent) -> Alert:
    evaluation = event.evaluation
    return Alert(
        title=f"Check {evaluation.check_name} failed on {evaluation.asset_key.to_user_string()}",
        failed="asset_check",
        key=event.key,
        partition=event.partition,
        run_id=event.run_id,
        severity=event.severity,  # type: ignore[arg-type]
        message=evaluation.description or "",
        details=metadata_details(evaluation),
    )


def build_run_failure_alert_sensor() -> dg.SensorDefinition:
    @dg.run_failure_sensor(
        name="run_failure_alert",
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Any failed run of this code location → an alert naming job, partition, run.",
    )
    def run_failure_alert(context: dg.RunFailureSensorContext, alerts: AlertResource):
        run = context.dagster_run
        failures = context.get_step_failure_events()
        details = {}
        if failures:
            details["failed_steps"] = ", ".join(e.step_key or "?" for e in failures[:10])
            error = failures[0].step_failure_data.error
            while error is not None and error.cause is not None:
                error = error.cause  # the user's exception, not Dagster's wrapper
            if error is not None and error.message.strip():
                details["error"] = error.message.strip().splitlines()[0][:300]
        alerts.send(
            Alert(
                title=f"Run of {run.job_name} failed",
                failed="run",
                key=None,
                partition=run_partition(run.tags),
                run_id=run.run_id,
                job=run.job_name,
                severity="error",
                message=(context.failure_event.message or "").strip()[:500],
                details=details,
            )
        )

    return run_failure_alert


def build_check_failure_alert_sensor() -> dg.SensorDefinition:
    @dg.sensor(
        name="failed_check_alert",
        minimum_interval_seconds=30,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Every failed asset check evaluation (WARN or ERROR) → an alert.",
    )
    def failed_check_alert(context: dg.SensorEvaluationContext, alerts: AlertResource):
        if context.repository_def is None:
            return dg.SkipReason("no code location to read the asset checks from")
        keys = context.repository_def.asset_graph.asset_check_keys
        events, cursor = check_events(context.instance, keys, context.cursor)
        if context.cursor is None:
            return dg.SensorResult(skip_reason="started: watching new evaluations", cursor=cursor)
        failed = [e for e in events if not e.evaluation.passed]
        # At least once: an alert that cannot be sent fails the tick and the cursor stays put.
        for event in failed:
            alerts.send(check_alert(event))
        note = f"alerted {len(failed)} failed check(s)" if failed else "no failed checks"
        return dg.SensorResult(skip_reason=note, cursor=cursor)

    return failed_check_alert
