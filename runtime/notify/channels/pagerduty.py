"""PagerDuty Events API v2: one JSON event per request, the routing key in the body.

PagerDuty rejects a `summary` over 1024 characters, a `dedup_key` over 255
and a request over 512,000 bytes, so the event is cut to fit before sending.
The summary is truncated and a long dedup key is replaced by its SHA-256.
When the event is still too large, `custom_details` are dropped, as
Alertmanager does. A 202 only means the event was queued.
"""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any

from runtime.notify.channels._common import Attempt, Reply, classify_error, failed, post
from runtime.notify.model import DELIVERED, Delivery, Outbound

MAX_SUMMARY = 1024
MAX_DEDUP_KEY = 255
MAX_EVENT_BYTES = 512_000


async def send_pagerduty(outbound: Outbound, attempt: Attempt) -> Delivery:
    routing_key = attempt.role(outbound, "key")
    event = {"routing_key": routing_key, **fit_event(outbound.payload)}
    body, dropped = encode_event(event)

    reply = await post(attempt, attempt.endpoints.pagerduty_events, content=body, headers={"Content-Type": "application/json"})
    if not reply.ok:
        return classify_error(reply, "pagerduty", rejection_reason(reply))

    answer = reply.json()
    dedup_key = answer.get("dedup_key") if isinstance(answer, dict) else None
    dedup_key = dedup_key or event.get("dedup_key")
    reference = {"dedup_key": str(dedup_key)} if dedup_key else {}
    detail = f"custom_details dropped because the event was {dropped:,} bytes" if dropped else ""
    return Delivery(DELIVERED, detail, status=reply.status, reference=reference)


def fit_event(payload: dict[str, Any]) -> dict[str, Any]:
    """Return a copy of the event with `summary` and `dedup_key` cut to PagerDuty's limits."""
    event = copy.deepcopy(payload)
    event.pop("routing_key", None)
    details = event.get("payload")
    if isinstance(details, dict) and isinstance(details.get("summary"), str):
        details["summary"] = truncate(details["summary"], MAX_SUMMARY)
    dedup_key = event.get("dedup_key")
    if isinstance(dedup_key, str) and len(dedup_key) > MAX_DEDUP_KEY:
        # The same long key always hashes to the same value, so acknowledge and
        # resolve events still find the alert their trigger opened.
        event["dedup_key"] = hashlib.sha256(dedup_key.encode()).hexdigest()
    return event


def truncate(text: str, limit: int) -> str:
    """Cut `text` to `limit` characters (code points), ending with `…` when it was cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def encode_event(event: dict[str, Any]) -> tuple[bytes, int]:
    """Return the request body, and the size it had when `custom_details` had to be dropped (else 0)."""
    body = json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode()
    if len(body) <= MAX_EVENT_BYTES:
        return body, 0

    details = event.get("payload")
    if isinstance(details, dict):
        details.pop("custom_details", None)
    smaller = json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode()
    if len(smaller) > MAX_EVENT_BYTES:
        raise failed(
            f"pagerduty event is {len(smaller):,} bytes without custom_details, more than the {MAX_EVENT_BYTES:,} allowed"
        )
    return smaller, len(body)


def rejection_reason(reply: Reply) -> str:
    """Return PagerDuty's `message` and `errors`, or the start of a body that is not JSON."""
    answer = reply.json()
    if not isinstance(answer, dict):
        return reply.text
    reason = str(answer.get("message") or answer.get("status") or "")
    errors = answer.get("errors")
    if isinstance(errors, list) and errors:
        reason += " (" + "; ".join(str(error) for error in errors) + ")"
    return reason
