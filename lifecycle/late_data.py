"""Late or corrected raw days: which downstream days they make stale, as ranged runs.

Pure (no Dagster): the drop sensor gives the changed days per raw table, what each dependent
asset reads (a :class:`Reach`) and which of its days are already materialised; this returns
contiguous day ranges, each with the set of assets to re-materialise over it, in an order that
is safe to run one after another (the instance runs one run at a time, oldest first).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

ONE_DAY = dt.timedelta(days=1)


@dataclass(frozen=True)
class Reach:
    """Day D of a reader reads upstream days D+first … D+last (``first=None``: every day up to
    D+last, as lifetime aggregates and full-history reads do)."""

    first: int | None
    last: int

    def __post_init__(self) -> None:
        if self.first is not None and self.first > self.last:
            raise ValueError(f"reach first ({self.first}) is after last ({self.last})")

    def readers(self, day: dt.date) -> tuple[dt.date, dt.date | None]:
        """The reader days that read upstream ``day``: [day-last, day-first] (open-ended when
        ``first`` is None)."""
        high = None if self.first is None else day - dt.timedelta(days=self.first)
        return day - dt.timedelta(days=self.last), high


def stale_days(
    changed: Iterable[dt.date], reach: Reach, candidates: Iterable[dt.date]
) -> set[dt.date]:
    """The ``candidates`` (reader days that exist and are materialised) reading a changed day."""
    bounds = [reach.readers(day) for day in set(changed)]
    if not bounds:
        return set()
    return {
        day
        for day in candidates
        if any(low <= day and (high is None or day <= high) for low, high in bounds)
    }


def day_ranges(days: Iterable[dt.date]) -> list[tuple[dt.date, dt.date]]:
    """Sorted days merged into inclusive ranges of consecutive days."""
    out: list[tuple[dt.date, dt.date]] = []
    for day in sorted(set(days)):
        if out and out[-1][1] + ONE_DAY == day:
            out[-1] = (out[-1][0], day)
        else:
            out.append((day, day))
    return out


@dataclass(frozen=True)
class Dependent:
    """A daily asset downstream of one raw table.

    ``stage`` orders runs: stage 0 runs with the ingestion of the changed days and reads only
    days up to its own (so day order is a safe order); stage 1 reads later days (labels read
    their horizon) and runs after every stage-0 range. ``on_changed``: also computed on the
    changed days themselves when never materialised (features follow new raw days, as a plain
    drop always did); otherwise only days already materialised are redone.
    """

    name: str
    table: str
    reach: Reach
    stage: int = 0
    on_changed: bool = False


@dataclass(frozen=True)
class PlannedRange:
    stage: int
    start: dt.date
    end: dt.date
    names: frozenset[str]

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1


def plan_ranges(
    changed: Mapping[str, Iterable[dt.date]],
    dependents: Sequence[Dependent],
    materialised: Mapping[str, Iterable[dt.date]],
) -> list[PlannedRange]:
    """Ranged re-materialisations for raw ``changed`` days (table → days).

    Each changed day re-ingests its tables (name ``raw:<table>``); each dependent is redone on
    its stale days among ``materialised[name]`` (callers pass only days whose partition exists
    and, for labels, whose horizon has matured). Within a stage, consecutive days with the same
    set of names form one range; ranges come stage by stage, oldest first.
    """
    changed_days = {table: set(days) for table, days in changed.items()}
    by_day: dict[tuple[int, dt.date], set[str]] = {}
    for table, days in changed_days.items():
        for day in days:
            by_day.setdefault((0, day), set()).add(f"raw:{table}")
    for dep in dependents:
        days = changed_days.get(dep.table, set())
        candidates = set(materialised.get(dep.name, ())) | (days if dep.on_changed else set())
        for day in stale_days(days, dep.reach, candidates):
            by_day.setdefault((dep.stage, day), set()).add(dep.name)
    out: list[PlannedRange] = []
    for stage, day in sorted(by_day):
        names = frozenset(by_day[(stage, day)])
        last = out[-1] if out else None
        if last and (last.stage, last.names, last.end + ONE_DAY) == (stage, names, day):
            out[-1] = PlannedRange(stage, last.start, day, names)
        else:
            out.append(PlannedRange(stage, day, day, names))
    return out
