"""What an alert says, independent of where it is sent (log, webhook, Slack).

Pure: no Dagster, no network. ``resources/alerts.py`` delivers an :class:`Alert`; the sensors
build one from a failed run or a failed asset check.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Severity = Literal["info", "warning", "error"]
SEVERITIES: tuple[Severity, ...] = ("info", "warning", "error")
PAYLOAD_SCHEMA = "ml-lifecycle.alert/v1"


def run_path(run_id: str | None) -> str | None:
    """The webserver path of a run (prefix it with the webserver's base URL to get a link)."""
    return f"/runs/{run_id}" if run_id else None


@dataclass(frozen=True)
class Alert:
    """One thing that went wrong, with enough context to find it in the UI.

    ``failed`` says what failed (``"run"`` or ``"asset_check"``); ``key`` is the asset or check
    key as a user string (``predictions/churn_scores:score_drift``).
    """

    title: str
    failed: str
    key: str | None = None
    partition: str | None = None
    run_id: str | None = None
    job: str | None = None
    severity: Severity = "error"
    message: str = ""
    details: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"alert severity must be one of {SEVERITIES}, not {self.severity!r}")

    @property
    def run_path(self) -> str | None:
        return run_path(self.run_id)

    def to_text(self, base_url: str | None = None) -> str:
        """A few plain lines for a log line or a chat message."""
        lines = [f"[{self.severity.upper()}] {self.title}"]
        facts = {
            "failed": self.failed,
            "job": self.job,
            "key": self.key,
            "partition": self.partition,
            "run": self.run_id,
        }
        lines += [f"{name}: {value}" for name, value in facts.items() if value]
        lines += [f"{name}: {value}" for name, value in self.details.items()]
        if self.message:
            lines.append(self.message)
        if self.run_path:
            lines.append(f"link: {(base_url or '').rstrip('/')}{self.run_path}")
        return "\n".join(lines)

    def to_payload(self) -> dict[str, Any]:
        """The JSON body a webhook receives (keys are stable; absent values are ``null``)."""
        return {
            "schema": PAYLOAD_SCHEMA,
            "title": self.title,
            "severity": self.severity,
            "failed": self.failed,
            "key": self.key,
            "job": self.job,
            "partition": self.partition,
            "run_id": self.run_id,
            "run_path": self.run_path,
            "message": self.message,
            "details": dict(self.details),
            "text": self.to_text(),
        }
