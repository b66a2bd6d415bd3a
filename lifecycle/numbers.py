"""Numbers rounded to what a reviewer needs, still numbers (metadata stays plottable in the UI).

Metrics keep 4 significant digits (0.001933 rather than 0.0019333287653779951), PSI values 3
decimals (the bounds are given to 2). Only presentation: decisions use the unrounded values.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

METRIC_DIGITS = 4
PSI_DECIMALS = 3


def sig(value: float, digits: int = METRIC_DIGITS) -> float:
    """``value`` rounded to ``digits`` significant digits; NaN, ±inf and 0 pass through."""
    x = float(value)
    if x == 0 or not math.isfinite(x):
        return x
    return round(x, digits - 1 - math.floor(math.log10(abs(x))))


def rounded(name: str, value: Any) -> Any:
    """A metadata value rounded by its kind: ``psi*`` to 3 decimals, other floats to 4
    significant digits; ints, bools, strings and Dagster metadata values unchanged."""
    if isinstance(value, bool) or not isinstance(value, float):
        return value
    if name.startswith("psi") or name.endswith("_psi"):
        return round(value, PSI_DECIMALS) if math.isfinite(value) else value
    return sig(value)


def rounded_metadata(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """Every float entry of ``metadata`` rounded by :func:`rounded`, order kept."""
    return {name: rounded(name, value) for name, value in metadata.items()}


def signed(value: float, decimals: int = 4) -> str:
    """``+0.0029`` / ``−0.0012`` with a true minus sign, as a difference reads in text."""
    if math.isnan(value):
        return "n/a"
    text = f"{value:+.{decimals}f}"
    return text.replace("-", "−")
