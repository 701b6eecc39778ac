"""Outbox messages and send results, shared by the planner, the outbox and the channel senders.

A notification is rendered once, when it is queued, and stored as an
`Outbound`: the channel kind, a target that is not secret, the names of the
secrets it needs and the rendered payload. Secrets are read only when it is
sent, so no token or webhook URL is ever written to the store or a log.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

# Kinds of event that a notification reports.
EventKind = Literal["opened", "updated", "acknowledged", "resolved", "escalated", "reminder", "reply"]

DELIVERED = "delivered"
RETRY = "retry"
FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Endpoints:
    """Base URLs of the SaaS APIs and the send timeout. Tests and air-gapped sites point the URLs at other hosts."""

    slack_api: str = "https://slack.com/api"
    pagerduty_events: str = "https://events.pagerduty.com/v2/enqueue"
    twilio_api: str = "https://api.twilio.com"
    # Slack's `response_url`s must start with this prefix. Any other URL is rejected, so a
    # forged request cannot make the daemon post elsewhere.
    slack_hooks: str = "https://hooks.slack.com/"
    timeout_s: float = 10.0


@dataclass(frozen=True, slots=True)
class Outbound:
    """One message for one channel, as stored in the outbox row.

    `kind` is the channel kind of the rules: slack, teams, pagerduty, sms, email,
    webhook or apprise. `target` is the target from the rules when it is not a
    secret (a Slack channel, addresses, a phone number). `url` is a URL to post to
    that is not secret (Teams, webhooks). `secrets` maps a role (`url`, `key`,
    `token`) to the name of the secret that contains its value.
    `payload` is the channel's rendered message (see `runtime.notify.messages`).
    `thread` is the reference that an earlier delivery returned (a Slack channel id
    and `ts`), so that updates go into the incident's thread.
    """

    kind: str
    payload: dict[str, Any]
    target: str | None = None
    url: str | None = None
    secrets: dict[str, str] = field(default_factory=dict)
    thread: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "payload": self.payload,
            "target": self.target,
            "url": self.url,
            "secrets": self.secrets,
            "thread": self.thread,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Outbound:
        return cls(
            kind=data["kind"],
            payload=data["payload"],
            target=data.get("target"),
            url=data.get("url"),
            secrets=dict(data.get("secrets") or {}),
            thread=dict(data.get("thread") or {}),
        )


@dataclass(frozen=True, slots=True)
class Delivery:
    """Result of one send attempt.

    `outcome` is `delivered`, `retry` (429, 5xx, timeouts, connection errors) or
    `failed` (any other 4xx, a logical error such as Slack's `ok: false`, a
    missing secret). `retry_after_s` is the service's `Retry-After` when it sent
    one. `reference` keeps what later messages need, such as Slack's channel id
    and `ts`, PagerDuty's `dedup_key` or Twilio's message `sid`. `detail` is a
    short reason without any secret.
    """

    outcome: Literal["delivered", "retry", "failed"]
    detail: str = ""
    status: int | None = None
    retry_after_s: float | None = None
    reference: dict[str, str] = field(default_factory=dict)
