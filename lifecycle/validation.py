"""Row-level validation of raw events: good rows go on, bad rows go to quarantine with a reason.

Structural problems (a missing column) raise, because no row of such a batch can be trusted.
Row problems (a null key, an unparseable or negative amount, a timestamp outside the partition,
an exact duplicate) quarantine only the offending rows, so one bad line never blocks a day.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pandas as pd
import pandera.pandas as pa

QUARANTINE_COLUMNS = ("event_date", "reason", "record")
# Optional column a source may add: the timestamp as the source wrote it, for quarantine records.
SOURCE_TIMESTAMP = "source_timestamp"


@dataclass(frozen=True)
class TableSpec:
    """The canonical columns of one raw table."""

    name: str
    keys: tuple[str, ...]
    numbers: tuple[str, ...]

    @property
    def columns(self) -> tuple[str, ...]:
        return (*self.keys, "timestamp", *self.numbers)


TRANSACTIONS = TableSpec("transactions", keys=("customer_id",), numbers=("amount",))
INTERACTIONS = TableSpec("interactions", keys=("user_id", "item_id"), numbers=("weight",))


class MissingColumnsError(ValueError):
    """A batch lacks columns we need; the message names the columns and where they came from."""


class EmptyPartitionError(ValueError):
    """A day with no rows at all, which for a shop means a broken feed, not a quiet day."""


class TransactionsSchema(pa.DataFrameModel):
    """A validated transaction: one purchase by one customer, in the partition's local day."""

    customer_id: int = pa.Field(ge=0)
    timestamp: pd.Timestamp
    amount: float = pa.Field(ge=0)
    event_date: pd.Timestamp

    class Config:
        strict = True
        ordered = True


class InteractionsSchema(pa.DataFrameModel):
    """A validated user–item event (view, cart, purchase, rating) with a positive weight."""

    user_id: int = pa.Field(ge=0)
    item_id: int = pa.Field(ge=0)
    timestamp: pd.Timestamp
    weight: float = pa.Field(gt=0)
    event_date: pd.Timestamp

    class Config:
        strict = True
        ordered = True


class QuarantineSchema(pa.DataFrameModel):
    """A rejected raw row, kept verbatim (as JSON) with the reason it was rejected."""

    event_date: pd.Timestamp
    reason: str
    record: str

    class Config:
        strict = True
        ordered = True


SCHEMAS: dict[str, type[pa.DataFrameModel]] = {
    "transactions": TransactionsSchema,
    "interactions": InteractionsSchema,
}


@dataclass(frozen=True)
class ValidatedBatch:
    clean: pd.DataFrame
    quarantine: pd.DataFrame


def require_columns(frame: pd.DataFrame, columns: tuple[str, ...], origin: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise MissingColumnsError(
            f"{origin}: missing column(s) {', '.join(missing)}; found {', '.join(map(str, frame.columns))}"
        )


def _row_rules(spec: TableSpec, start: pd.Timestamp, end: pd.Timestamp) -> pa.DataFrameSchema:
    """The pandera rules a single row must pass; failures become quarantine reasons."""
    columns: dict[str, pa.Column] = {
        key: pa.Column(float, pa.Check.ge(0, error="negative id"), nullable=False)
        for key in spec.keys
    }
    columns["timestamp"] = pa.Column(
        "datetime64[ns]",
        pa.Check(lambda s: (s >= start) & (s < end), error=f"timestamp outside [{start}, {end})"),
        nullable=False,
    )
    for number in spec.numbers:
        rule = pa.Check.gt(0) if number == "weight" else pa.Check.ge(0)
        columns[number] = pa.Column(float, rule, nullable=False)
    return pa.DataFrameSchema(columns, strict=False)


def _reasons_from(frame: pd.DataFrame, schema: pa.DataFrameSchema) -> pd.Series:
    """Run the rules lazily and collect, per row index, every reason it failed."""
    try:
        schema.validate(frame, lazy=True)
    except pa.errors.SchemaErrors as errors:
        cases = errors.failure_cases.dropna(subset=["index"])
        cases = cases.assign(reason=cases["column"].astype(str) + ": " + cases["check"].astype(str))
        return cases.groupby("index")["reason"].agg(lambda r: "; ".join(sorted(set(r))))
    return pd.Series(dtype=str)


def validate_rows(
    raw: pd.DataFrame, spec: TableSpec, start: pd.Timestamp, end: pd.Timestamp, origin: str
) -> ValidatedBatch:
    """Split ``raw`` (canonical column names, naive local timestamps) into clean and quarantine.

    ``start``/``end`` bound the partition window in naive local time; the clean frame gets an
    ``event_date`` column (local midnight) that the warehouse partitions on.
    """
    require_columns(raw, spec.columns, origin)
    frame = raw.loc[:, list(spec.columns)].reset_index(drop=True)
    typed = frame.copy()
    # Type problems as boolean columns; reason strings are built for the few bad rows only.
    flags: dict[str, pd.Series] = {}
    for col in (*spec.keys, *spec.numbers):
        typed[col] = pd.to_numeric(frame[col], errors="coerce").astype(float)
        flags[f"{col}: not a number"] = typed[col].isna() & frame[col].notna()
    typed["timestamp"] = pd.to_datetime(frame["timestamp"], errors="coerce")
    flags["timestamp: unparseable"] = typed["timestamp"].isna() & frame["timestamp"].notna()
    for key in spec.keys:
        flags[f"{key}: not an integer"] = typed[key].notna() & (typed[key] % 1 != 0)
    flagged = pd.DataFrame(flags)
    rule_reasons = _reasons_from(typed, _row_rules(spec, start, end))
    suspect = flagged.any(axis=1) | frame.index.isin(rule_reasons.index)
    reasons = pd.Series("", index=frame.index, dtype=object)
    if suspect.any():
        labels = flagged.loc[suspect].apply(lambda row: [c for c, v in row.items() if v], axis=1)
        rules = rule_reasons.reindex(labels.index).fillna("")
        reasons[suspect] = [
            "; ".join([*found, rule] if rule else found)
            for found, rule in zip(labels, rules, strict=True)
        ]
    duplicate = typed.duplicated(keep="first") & ~suspect
    reasons[duplicate] = "duplicate row"

    bad = reasons != ""
    clean = typed.loc[~bad].copy()
    for key in spec.keys:
        clean[key] = clean[key].astype("int64")
    clean["event_date"] = clean["timestamp"].dt.normalize()
    clean = clean.sort_values(["timestamp", *spec.keys], kind="stable").reset_index(drop=True)

    rejected = frame.loc[bad]
    if SOURCE_TIMESTAMP in raw.columns:
        original = raw[SOURCE_TIMESTAMP].reset_index(drop=True)
        rejected = rejected.assign(timestamp=original[bad])
    stamp = typed.loc[bad, "timestamp"].dt.normalize().fillna(start.normalize())
    in_window = (stamp >= start.normalize()) & (stamp < end)
    quarantine = pd.DataFrame(
        {
            "event_date": stamp.where(in_window, start.normalize()).astype("datetime64[ns]"),
            "reason": reasons[bad].astype(str).astype(object),
            # Missing values become null, not NaN: the record must stay strict JSON.
            "record": pd.Series(
                [
                    json.dumps(r, default=str, allow_nan=False)
                    for r in rejected.astype(object)
                    .where(rejected.notna(), None)
                    .to_dict(orient="records")
                ],
                index=rejected.index,
                dtype=object,
            ),
        }
    ).reset_index(drop=True)
    return ValidatedBatch(clean=clean, quarantine=quarantine)


def days_in(start: pd.Timestamp, end: pd.Timestamp) -> pd.DatetimeIndex:
    return pd.date_range(start.normalize(), end - pd.Timedelta(days=1), freq="D")


def empty_days(clean: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp) -> list[str]:
    """Days of the window with no clean rows at all."""
    missing = days_in(start, end).difference(pd.DatetimeIndex(clean["event_date"].unique()))
    return list(missing.strftime("%Y-%m-%d"))


def quarantine_share_by_day(
    clean: pd.DataFrame, quarantine: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp
) -> pd.DataFrame:
    """Kept and quarantined counts per day, so a bad day is visible even inside a range run."""
    days = days_in(start, end)
    kept = clean.groupby("event_date").size().reindex(days, fill_value=0)
    held = quarantine.groupby("event_date").size().reindex(days, fill_value=0)
    total = (kept + held).replace(0, 1)
    return pd.DataFrame(
        {"day": days, "kept": kept.to_numpy(), "quarantined": held.to_numpy()}
    ).assign(share=lambda f: f["quarantined"] / total.to_numpy())
