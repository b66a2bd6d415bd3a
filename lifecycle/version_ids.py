"""Model version ids: readable in a folder listing, sortable as plain strings, never backwards.

``v_YYMMDD_HHMMSS`` in UTC (e.g. ``v_260115_080000``). A second version of the same model in
the same second gets a zero-padded counter: ``v_260115_080000_002``, ``_003`` ... ``_999``.
Because the stamp has a fixed width and the counter is zero-padded, plain string order equals
creation order (the un-suffixed id sorts before its ``_002`` sibling). If the clock reads
earlier than the newest existing id (clock skew, back-dated ``now``), the new id continues the
newest stamp's counter instead, so ids never go backwards; ``created_at`` still records ``now``.
The two-digit year covers 2000-2099.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Collection

__all__ = ["new_version_id", "require_aware"]

_MAX_COUNTER = 999
_VERSION_RE = re.compile(r"^v_(\d{6}_\d{6})(?:_(\d{3}))?$")


def require_aware(value: dt.datetime, what: str) -> dt.datetime:
    """``value`` in UTC; a naive datetime is refused because its zone would be a guess."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware (got naive {value.isoformat()})")
    return value.astimezone(dt.UTC)


def new_version_id(now: dt.datetime, existing: Collection[str]) -> str:
    """A readable, sortable id ``v_YYMMDD_HHMMSS[_NNN]`` later than every id in ``existing``.

    See the module docstring for the scheme; ids in ``existing`` that do not follow it are
    ignored.
    """
    now_utc = require_aware(now, "now")
    if not 2000 <= now_utc.year <= 2099:
        raise ValueError(f"version ids cover 2000-2099, got {now_utc.isoformat()}")
    stamp = now_utc.strftime("%y%m%d_%H%M%S")
    ours = sorted(v for v in existing if _VERSION_RE.match(v))
    if not ours:
        return f"v_{stamp}"
    match = _VERSION_RE.match(ours[-1])
    assert match is not None  # filtered above
    latest_stamp, latest_counter = match.group(1), match.group(2)
    if stamp > latest_stamp:
        return f"v_{stamp}"
    counter = (int(latest_counter) if latest_counter else 1) + 1
    if counter > _MAX_COUNTER:
        raise ValueError(f"more than {_MAX_COUNTER} versions stamped v_{latest_stamp}")
    return f"v_{latest_stamp}_{counter:03d}"
