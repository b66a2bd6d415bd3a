"""Row-level validation of raw events: good rows go on, bad rows go to quarantine with a reason.

Structural problems (a missing column) raise, because no row of such a batch can be trusted.
Row problems (a missing id, an unparseable, negative, non-finite or absurd number, a timestamp
outside the partition or after the last one, an exact duplicate) quarantine only the offending
rows, so one bad line never blocks a day.

Ids are text, exactly as the source wrote them: "00042" and "42" are two customers, and a
19-digit id or "1e5" never passes through a float.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from decimal import Decimal

import numpy as np
import pandas as pd
import pandera.pandas as pa

QUARANTINE_COLUMNS = ("event_date", "reason", "record", "source")
# Optional columns a source may add to a raw frame: the timestamp as the source wrote it (for
# quarantine records) and where each row came from (a file path, "sql", "synthetic").
SOURCE_TIMESTAMP = "source_timestamp"
ROW_SOURCE = "row_source"


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


@dataclass(frozen=True)
class Limits:
    """Upper bounds on numbers: a purchase of 1e308 is an export or unit error, not revenue.
    Each bound is named in the quarantine reason by its settings key."""

    max_amount: float = 1e7
    max_weight: float = 1e7

    def bound(self, column: str) -> tuple[float, str]:
        if column == "amount":
            return self.max_amount, "validation.max_amount"
        return self.max_weight, "validation.max_weight"


class MissingColumnsError(ValueError):
    """A batch lacks columns we need; the message names the columns and where they came from."""


class EmptyPartitionError(ValueError):
    """A day with no rows at all (with ``on_empty_day: fail``, a broken feed, not a quiet day)."""


class TransactionsSchema(pa.DataFrameModel):
    """A validated transaction: one purchase by one customer, in the partition's local day."""

    customer_id: str
    timestamp: pd.Timestamp
    amount: float = pa.Field(ge=0)
    event_date: pd.Timestamp

    class Config:
        strict = True
        ordered = True


class InteractionsSchema(pa.DataFrameModel):
    """A validated user–item event (view, cart, purchase, rating) with a positive weight."""

    user_id: str
    item_id: str
    timestamp: pd.Timestamp
    weight: float = pa.Field(gt=0)
    event_date: pd.Timestamp

    class Config:
        strict = True
        ordered = True


class QuarantineSchema(pa.DataFrameModel):
    """A rejected raw row, kept verbatim (as JSON) with the reason and where it came from."""

    event_date: pd.Timestamp
    reason: str
    record: str
    source: str

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
    # Per source (file path, "sql", …): rows stored and quarantined, so no row goes uncounted.
    by_source: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame(
            {"stored": pd.Series(dtype="int64"), "quarantined": pd.Series(dtype="int64")}
        )
    )


def require_columns(frame: pd.DataFrame, columns: tuple[str, ...], origin: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise MissingColumnsError(
            f"{origin}: missing column(s) {', '.join(missing)}; found {', '.join(map(str, frame.columns))}"
        )


def _one_id(value: object) -> str | None:
    if isinstance(value, str):
        return value
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, float | np.floating | Decimal) and not isinstance(value, bool):
        number = float(value)
        if np.isnan(number):
            return None
        if np.isfinite(number) and value == int(value):
            value = int(value)
    if isinstance(value, np.integer):
        value = int(value)
    return str(value)


def id_text(values: pd.Series) -> pd.Series:
    """Ids as text, never through a float; missing values become None.

    Text stays byte-for-byte ("00042", "1e5", UUIDs, 19-digit ids). Integer columns (Parquet,
    SQL) become their decimal text. Float columns holding integral values — what an integer
    column with gaps turns into — become integer text (42.0 -> "42"); a float is exact only up
    to 2**53, so long ids belong in text or integer columns. Anything else becomes ``str(v)``.
    """
    dtype = values.dtype
    if isinstance(dtype, np.dtype) and dtype.kind in "iu":
        return values.astype(str).astype(object)
    text = pd.api.types.is_object_dtype(dtype) and pd.api.types.infer_dtype(values, skipna=True)
    if text in {"string", "empty"}:
        return values.where(values.notna(), None) if values.hasnans else values
    return pd.Series([_one_id(v) for v in values.astype(object)], index=values.index, dtype=object)


def _naive_times(values: pd.Series) -> pd.Series:
    """Timestamps a source left as text (readers normally parse them, in the right zone)."""
    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        return values.astype("datetime64[ns]")
    parsed = pd.to_datetime(values, errors="coerce", format="ISO8601")
    retry = parsed.isna() & values.notna()
    if retry.any():
        parsed[retry] = pd.to_datetime(values[retry], errors="coerce", format="mixed")
    return parsed.astype("datetime64[ns]")


def _row_rules(spec: TableSpec, limits: Limits) -> pa.DataFrameSchema:
    """The pandera rules a single row's numbers and time must pass; failures become reasons."""
    columns: dict[str, pa.Column] = {"timestamp": pa.Column("datetime64[ns]", nullable=False)}
    for number in spec.numbers:
        bound, key = limits.bound(number)
        columns[number] = pa.Column(
            float,
            [
                pa.Check.gt(0) if number == "weight" else pa.Check.ge(0),
                pa.Check(np.isfinite, error="not finite"),
                pa.Check(lambda s, b=bound: s <= b, error=f"above {key} ({bound:g})"),
            ],
            nullable=False,
        )
    return pa.DataFrameSchema(columns, strict=False)


def _reasons_from(frame: pd.DataFrame, schema: pa.DataFrameSchema) -> pd.Series:
    """Run the rules lazily and collect, per row index, every reason it failed."""
    try:
        schema.validate(frame, lazy=True, inplace=True)  # nothing coerced: no copy of the rows
    except pa.errors.SchemaErrors as errors:
        cases = errors.failure_cases.dropna(subset=["index"])
        cases = cases.assign(reason=cases["column"].astype(str) + ": " + cases["check"].astype(str))
        return cases.groupby("index")["reason"].agg(lambda r: "; ".join(sorted(set(r))))
    return pd.Series(dtype=str)


def _blank(ids: pd.Series) -> pd.Series:
    """Empty or whitespace-only ids, tested once per distinct id (far fewer than rows)."""
    distinct = pd.Series(ids.dropna().unique(), dtype=object)
    blank = distinct[distinct.str.strip().eq("").fillna(False).astype(bool)]
    return ids.isin(blank) if len(blank) else pd.Series(False, index=ids.index)


def _type_flags(
    frame: pd.DataFrame,
    typed: pd.DataFrame,
    spec: TableSpec,
    start: pd.Timestamp,
    end: pd.Timestamp,
    future_from: pd.Timestamp | None,
) -> pd.DataFrame:
    """Problems as boolean columns named by their reason; strings are built for bad rows only."""
    flags: dict[str, pd.Series] = {}
    for key in spec.keys:
        ids = typed[key]
        flags[f"{key}: missing id"] = ids.isna()
        flags[f"{key}: blank id"] = _blank(ids)
    for col in spec.numbers:
        flags[f"{col}: not a number"] = typed[col].isna() & frame[col].notna()
    stamp = typed["timestamp"]
    flags["timestamp: unparseable"] = stamp.isna() & frame["timestamp"].notna()
    future = stamp >= (future_from if future_from is not None else pd.NaT)
    last_day = (end - pd.Timedelta(days=1)).date()
    flags[f"timestamp: future-dated (after {last_day}, the last partition day)"] = future
    flags[f"timestamp outside [{start}, {end})"] = ((stamp < start) | (stamp >= end)) & ~future
    return pd.DataFrame(flags)


def validate_rows(
    raw: pd.DataFrame,
    spec: TableSpec,
    start: pd.Timestamp,
    end: pd.Timestamp,
    origin: str,
    *,
    limits: Limits | None = None,
    future_from: pd.Timestamp | None = None,
) -> ValidatedBatch:
    """Split ``raw`` (canonical column names, naive local timestamps) into clean and quarantine.

    ``start``/``end`` bound the partition window in naive local time; the clean frame gets an
    ``event_date`` column (local midnight) that the warehouse partitions on. Rows at or after
    ``future_from`` (pass it only when the window holds the last partition day) are quarantined
    as future-dated on the window's last day; other rows outside the window on its first day.
    Quarantine ``source`` is the raw ``row_source`` column when present, else ``origin``.
    """
    require_columns(raw, spec.columns, origin)
    limits = limits or Limits()
    frame = raw.loc[:, list(spec.columns)].reset_index(drop=True)
    typed = frame.copy()
    for key in spec.keys:
        typed[key] = id_text(frame[key])
    for col in spec.numbers:
        typed[col] = pd.to_numeric(frame[col], errors="coerce").astype(float)
    typed["timestamp"] = _naive_times(frame["timestamp"])
    flagged = _type_flags(frame, typed, spec, start, end, future_from)
    rule_reasons = _reasons_from(typed, _row_rules(spec, limits))
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
    clean["event_date"] = clean["timestamp"].dt.normalize()
    clean = clean.sort_values(["timestamp", *spec.keys], kind="stable").reset_index(drop=True)

    if ROW_SOURCE in raw.columns:
        sources = raw[ROW_SOURCE].astype(str).reset_index(drop=True)
    else:
        sources = pd.Series(origin, index=frame.index, dtype=object)
    # The record keeps what the source wrote; ids as their text, like the clean table.
    rejected = frame.loc[bad].assign(**{key: typed.loc[bad, key] for key in spec.keys})
    if SOURCE_TIMESTAMP in raw.columns:
        original = raw[SOURCE_TIMESTAMP].reset_index(drop=True)
        rejected = rejected.assign(timestamp=original[bad])
    stamp = typed.loc[bad, "timestamp"].dt.normalize()
    in_window = (stamp >= start.normalize()) & (stamp < end)
    last_day = (end - pd.Timedelta(days=1)).normalize()
    future = typed.loc[bad, "timestamp"] >= (future_from if future_from is not None else pd.NaT)
    filed = stamp.where(in_window, start.normalize()).where(~future, last_day)
    quarantine = pd.DataFrame(
        {
            "event_date": filed.astype("datetime64[ns]"),
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
            "source": sources[bad].astype(object),
        }
    ).reset_index(drop=True)
    counts = pd.DataFrame({"source": sources, "bad": bad}).groupby("source", sort=True)["bad"]
    by_source = pd.DataFrame(
        {"stored": counts.size() - counts.sum(), "quarantined": counts.sum()}
    ).astype("int64")
    return ValidatedBatch(clean=clean, quarantine=quarantine, by_source=by_source)


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


def daily_quality(shares: pd.DataFrame, bound: float) -> pd.DataFrame:
    """The stored quality table: per day, counts, whether the share kept the bound (training
    drops days that did not) and whether the day had no valid row at all."""
    return shares.rename(columns={"day": "event_date"}).assign(
        passed=lambda f: f["share"] <= bound, empty=lambda f: f["kept"] == 0
    )
