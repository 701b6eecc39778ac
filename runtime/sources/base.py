"""What every source module shares: the request as it arrived, the outcome, and rejection."""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from runtime.alerts import Alert

# What a normalised payload was. Only `alerts` carries alerts; the others are
# accepted (2xx) so the sender does not retry, and are recorded as such.
ALERTS = "alerts"
SUBSCRIPTION_CONFIRMATION = "subscription_confirmation"
UNSUBSCRIBE_CONFIRMATION = "unsubscribe_confirmation"
EVENT = "event"


@dataclass(frozen=True, slots=True)
class Inbound:
    """One request body as it arrived, before any parsing.

    `headers` has lower-case names. Signatures are computed over `body`, the raw
    bytes, never over a re-serialised form.
    """

    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)
    received_at: datetime.datetime = field(default_factory=lambda: datetime.datetime.now(datetime.UTC))


@dataclass(slots=True)
class Outcome:
    """What a source made of a payload.

    `confirm_url` is set only for an SNS subscription confirmation whose topic the
    rules allow and whose URL points at an SNS host; the daemon fetches it.
    `details` holds payload-level facts worth keeping, such as Alertmanager's
    group key and `truncatedAlerts`.
    """

    source: str
    kind: str
    alerts: list[Alert] = field(default_factory=list)
    confirm_url: str | None = None
    note: str = ""
    details: dict[str, Any] = field(default_factory=dict)


class Rejected(Exception):
    """A rejected request: `status` is the HTTP status to respond with, `reason` the message.

    The status is a 4xx, except 503 when verifying the request needs something
    that is briefly unavailable (an SNS signing certificate), so the sender retries.
    """

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
