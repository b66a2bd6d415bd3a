"""Delivering alerts: to the Dagster log, to a webhook (JSON POST) or to a Slack channel.

The webhook URL and the Slack token are secrets: they come from environment variables
(``dg.EnvVar``), are never logged, and never appear in an error message.
"""

from __future__ import annotations

import time
from typing import Any, Literal

import dagster as dg
import requests

from lifecycle.alerts import Alert
from lifecycle.settings import Settings

WEBHOOK_URL_ENV = "ALERT_WEBHOOK_URL"
SLACK_TOKEN_ENV = "SLACK_BOT_TOKEN"


class AlertDeliveryError(RuntimeError):
    """An alert that could not be delivered; the message names no URL and no token."""


class AlertResource(dg.ConfigurableResource):
    """Sends an :class:`~lifecycle.alerts.Alert` to the configured channel."""

    kind: Literal["log", "webhook", "slack"] = "log"
    webhook_url: str | None = None
    slack_channel: str | None = None
    slack_token: str | None = None
    webserver_url: str | None = None
    timeout_s: float = 5.0
    retries: int = 2
    backoff_s: float = 0.5
    slack_base_url: str | None = None

    def send(self, alert: Alert) -> None:
        if self.kind == "webhook":
            self._post_webhook(alert)
        elif self.kind == "slack":
            self._post_slack(alert)
        else:
            dg.get_dagster_logger().warning(alert.to_text(self.webserver_url))

    def _attempts(self) -> range:
        return range(max(self.retries, 0) + 1)

    def _pause(self, attempt: int) -> None:
        time.sleep(self.backoff_s * (2**attempt))

    def _post_webhook(self, alert: Alert) -> None:
        if not self.webhook_url:
            raise AlertDeliveryError(f"alerts: kind is 'webhook' but {WEBHOOK_URL_ENV} is not set")
        payload: dict[str, Any] = alert.to_payload()
        if self.webserver_url and alert.run_path:
            payload["run_url"] = self.webserver_url.rstrip("/") + alert.run_path
        problem = ""
        for attempt in self._attempts():
            if attempt:
                self._pause(attempt - 1)
            try:
                response = requests.post(self.webhook_url, json=payload, timeout=self.timeout_s)
            except requests.RequestException as exc:
                # The exception's text contains the URL (a secret): keep only its type.
                problem = type(exc).__name__
                continue
            if response.ok:
                return
            problem = f"HTTP {response.status_code}"
            if response.status_code < 500 and response.status_code != 429:
                break  # the receiver refused this payload: retrying will not help
        raise AlertDeliveryError(
            f"webhook alert {alert.title!r} not delivered after {attempt + 1} attempt(s): {problem}"
        )

    def _post_slack(self, alert: Alert) -> None:
        from dagster_slack import SlackResource
        from slack_sdk.errors import SlackApiError

        if not (self.slack_token and self.slack_channel):
            raise AlertDeliveryError(
                f"alerts: kind is 'slack' but the channel or {SLACK_TOKEN_ENV} is not set"
            )
        client = SlackResource(token=self.slack_token).get_client()
        client.timeout = int(max(self.timeout_s, 1))
        if self.slack_base_url:
            client.base_url = self.slack_base_url
        problem = ""
        for attempt in self._attempts():
            if attempt:
                self._pause(attempt - 1)
            try:
                client.chat_postMessage(
                    channel=self.slack_channel, text=alert.to_text(self.webserver_url)
                )
                return
            except SlackApiError as exc:
                problem = f"Slack API error {exc.response.get('error', 'unknown')}"
                if exc.response.status_code != 429:
                    break  # channel_not_found, invalid_auth, …: retrying will not help
            except OSError as exc:  # connection refused, timeout, TLS
                problem = type(exc).__name__
        raise AlertDeliveryError(
            f"slack alert {alert.title!r} not delivered after {attempt + 1} attempt(s): {problem}"
        )


def alerts_from_settings(settings: Settings) -> AlertResource:
    """The alert channel of the settings file's optional ``alerts`` section; log without one.

    Secrets are read only through ``dg.EnvVar`` (resolved when a sensor uses the resource), and
    only for the chosen channel, so an unset variable of another channel never matters.
    """
    cfg: Any = getattr(settings, "alerts", None)
    if cfg is None or cfg.kind == "log":
        return AlertResource(kind="log", webserver_url=getattr(cfg, "webserver_url", None))
    if cfg.kind == "webhook":
        return AlertResource(
            kind="webhook",
            webhook_url=dg.EnvVar(getattr(cfg, "webhook_url_env", WEBHOOK_URL_ENV)),
            webserver_url=cfg.webserver_url,
        )
    return AlertResource(
        kind="slack",
        slack_channel=cfg.slack_channel,
        slack_token=dg.EnvVar(getattr(cfg, "slack_token_env", SLACK_TOKEN_ENV)),
        webserver_url=cfg.webserver_url,
    )
