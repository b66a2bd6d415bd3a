"""Schedules evaluated at chosen instants against a real instance: which runs, which partitions.

The small settings (tests/conftest.py) have daily partitions 2026-01-01 … 2026-04-30 (end
exclusive 2026-05-01), monthly partitions 2026-01 … 2026-05, and a 14-day label horizon.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any
from zoneinfo import ZoneInfo

import dagster as dg
import pytest

from assets.keys import DAILY, LABELS
from definitions import build_defs
from lifecycle.settings import Settings

AMS = "Europe/Amsterdam"


def at(tz: str, *parts: int) -> dt.datetime:
    return dt.datetime(*parts, tzinfo=ZoneInfo(tz))  # type: ignore[misc]


def evaluate(
    defs: dg.Definitions, name: str, instance: dg.DagsterInstance, when: dt.datetime
) -> list[dg.RunRequest] | dg.SkipReason:
    schedule = defs.resolve_schedule_def(name)
    context = dg.build_schedule_context(instance=instance, scheduled_execution_time=when)
    result: Any = schedule(context)
    if isinstance(result, dg.SkipReason):
        return result
    return [result] if isinstance(result, dg.RunRequest) else list(result)


def runs(result: list[dg.RunRequest] | dg.SkipReason) -> list[tuple[str | None, str | None]]:
    assert not isinstance(result, dg.SkipReason), result.skip_message
    return [(r.run_key, r.partition_key) for r in result]


@pytest.fixture(scope="module")
def defs_for() -> Callable[..., dg.Definitions]:
    """Definitions are pure (nothing is written until a run), so they are built once per
    settings variant for the module."""
    cache: dict[str, dg.Definitions] = {}

    def build(make_settings: Callable[..., Settings], **override: Any) -> dg.Definitions:
        key = repr(sorted(override.items()))
        if key not in cache:
            cache[key] = build_defs(make_settings(override))
        return cache[key]

    return build


def test_schedules_take_times_and_zone_from_the_settings(
    make_settings: Callable[..., Settings], defs_for: Callable[..., dg.Definitions]
) -> None:
    times = {"daily_time": "06:15", "monthly_time": "09:05", "train_day": 2, "promote_day": 16}
    defs = defs_for(make_settings, timezone=AMS, schedules=times)
    expected = {
        "daily_refresh_schedule": ("15 6 * * *", "daily_refresh"),
        "monthly_training_schedule": ("5 9 2 * *", "monthly_training"),
        "promotion_window_schedule": ("5 9 16 * *", "promote_champions"),
    }
    for name, (cron, job) in expected.items():
        schedule = defs.resolve_schedule_def(name)
        assert (schedule.cron_schedule, schedule.execution_timezone, schedule.job_name) == (
            cron,
            AMS,
            job,
        )


@pytest.mark.parametrize(
    ("when", "expected"),
    [
        # Yesterday's data, and the label day whose 14-day horizon ended yesterday.
        (
            (2026, 3, 10, 8),
            [("daily-2026-03-09", "2026-03-09"), ("labels-2026-02-23", "2026-02-23")],
        ),
        # The label day would fall before the first partition: only yesterday.
        ((2026, 1, 10, 8), [("daily-2026-01-09", "2026-01-09")]),
        # The last partition (the end date is exclusive) …
        (
            (2026, 5, 1, 8),
            [("daily-2026-04-30", "2026-04-30"), ("labels-2026-04-16", "2026-04-16")],
        ),
        # … and after it only label days still mature.
        ((2026, 5, 2, 8), [("labels-2026-04-17", "2026-04-17")]),
    ],
)
def test_daily_schedule_requests_yesterday_and_the_matured_label_day(
    make_settings: Callable[..., Settings],
    defs_for: Callable[..., dg.Definitions],
    instance: dg.DagsterInstance,
    when: tuple[int, ...],
    expected: list[tuple[str, str]],
) -> None:
    result = evaluate(defs_for(make_settings), "daily_refresh_schedule", instance, at("UTC", *when))
    assert runs(result) == expected
    assert not isinstance(result, dg.SkipReason)
    for request in result:
        wanted = [LABELS] if request.run_key.startswith("labels-") else DAILY  # type: ignore[union-attr]
        assert request.asset_selection == wanted


@pytest.mark.parametrize("when", [(2026, 1, 1, 8), (2025, 6, 1, 8), (2026, 5, 16, 8)])
def test_daily_schedule_skips_outside_the_partitions(
    make_settings: Callable[..., Settings],
    defs_for: Callable[..., dg.Definitions],
    instance: dg.DagsterInstance,
    when: tuple[int, ...],
) -> None:
    result = evaluate(defs_for(make_settings), "daily_refresh_schedule", instance, at("UTC", *when))
    assert isinstance(result, dg.SkipReason)


@pytest.mark.parametrize(
    ("when", "month"),
    [
        ((2026, 3, 1, 10), "2026-03-01"),
        ((2026, 1, 1, 10), "2026-01-01"),
        # The month holding the (exclusive) end day is trainable: data through April.
        ((2026, 5, 1, 10), "2026-05-01"),
        ((2026, 6, 1, 10), None),
        ((2025, 12, 1, 10), None),
    ],
)
def test_monthly_schedule_trains_this_month(
    make_settings: Callable[..., Settings],
    defs_for: Callable[..., dg.Definitions],
    instance: dg.DagsterInstance,
    when: tuple[int, ...],
    month: str | None,
) -> None:
    defs = defs_for(make_settings)
    result = evaluate(defs, "monthly_training_schedule", instance, at("UTC", *when))
    if month is None:
        assert isinstance(result, dg.SkipReason)
        return
    assert runs(result) == [(f"train-{month}", month)]
    assert result[0].asset_selection is None  # type: ignore[index]


def test_promotion_schedule_names_the_day_and_no_partition(
    make_settings: Callable[..., Settings],
    defs_for: Callable[..., dg.Definitions],
    instance: dg.DagsterInstance,
) -> None:
    result = evaluate(
        defs_for(make_settings), "promotion_window_schedule", instance, at("UTC", 2026, 3, 15, 10)
    )
    assert runs(result) == [("promote-2026-03-15", None)]


def test_a_local_time_zone_moves_the_day_boundary(
    make_settings: Callable[..., Settings],
    defs_for: Callable[..., dg.Definitions],
    instance: dg.DagsterInstance,
) -> None:
    """00:30 on 10 March in Amsterdam is 23:30 on 9 March in UTC: Amsterdam's 9 March is over
    (its partition exists, open-ended range), UTC's is not."""
    # An open-ended range needs a real source (the synthetic shop needs an end date).
    open_ended: dict[str, Any] = {
        "partitions": {"end_date": None},
        "source": {"kind": "files", "files": {"transactions_glob": "/nonexistent/*.csv"}},
    }
    schedules = {"daily_time": "00:30", "monthly_time": "00:30"}
    ams = defs_for(make_settings, timezone=AMS, schedules=schedules, **open_ended)
    utc = defs_for(make_settings, timezone="UTC", schedules=schedules, **open_ended)
    instant = at(AMS, 2026, 3, 10, 0, 30)
    assert instant == at("UTC", 2026, 3, 9, 23, 30)

    daily_ams = runs(evaluate(ams, "daily_refresh_schedule", instance, instant))
    daily_utc = runs(
        evaluate(utc, "daily_refresh_schedule", instance, instant.astimezone(ZoneInfo("UTC")))
    )
    assert daily_ams[0] == ("daily-2026-03-09", "2026-03-09")
    assert daily_utc[0] == ("daily-2026-03-08", "2026-03-08")

    # Amsterdam's 2026-03-09 partition is the window [00:00, 24:00) local, i.e. from 23:00 UTC.
    window = ams.resolve_job_def("daily_refresh").partitions_def.time_window_for_partition_key(  # type: ignore[union-attr]
        "2026-03-09"
    )
    assert window.start == at(AMS, 2026, 3, 9) and window.start == at("UTC", 2026, 3, 8, 23)

    # The month turns at local midnight too.
    first = at(AMS, 2026, 4, 1, 0, 30)
    monthly_ams = runs(evaluate(ams, "monthly_training_schedule", instance, first))
    monthly_utc = runs(
        evaluate(utc, "monthly_training_schedule", instance, first.astimezone(ZoneInfo("UTC")))
    )
    assert monthly_ams == [("train-2026-04-01", "2026-04-01")]
    assert monthly_utc == [("train-2026-03-01", "2026-03-01")]
