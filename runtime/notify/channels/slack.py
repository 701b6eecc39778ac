"""Slack: the Web API when the channel has a bot token, else an incoming webhook.

The Web API returns HTTP 200 for logical errors too, with `{"ok": false,
"error": CODE}`, and only `ratelimited` and server-side codes among them are
worth a retry. Throttling comes as HTTP 429 with `Retry-After` in seconds.
A message posted into an incident's thread may also rewrite the thread's
first message (`root_update`), so the channel shows the incident's current
state at the top.
"""

from __future__ import annotations

import json
from typing import Any

from runtime.notify.channels._common import Attempt, Reply, Undeliverable, classify_error, failed, parse_retry_after, post, quote
from runtime.notify.model import DELIVERED, FAILED, RETRY, Delivery, Outbound

# Error codes of `ok: false` responses that mean "try again later".
RETRY_ERRORS = frozenset(
    {"ratelimited", "rate_limited", "service_unavailable", "fatal_error", "internal_error", "request_timeout"}
)


async def send_slack(outbound: Outbound, attempt: Attempt) -> Delivery:
    if "token" in outbound.secrets:
        return await send_web_api(outbound, attempt)
    return await send_webhook(outbound, attempt)


async def send_web_api(outbound: Outbound, attempt: Attempt) -> Delivery:
    """Post with `chat.postMessage`, into the incident's thread when there is one, then update the thread's root."""
    token = attempt.role(outbound, "token")
    root_ts = outbound.thread.get("ts")
    channel = outbound.thread.get("channel") if root_ts else None
    channel = channel or attempt.target(outbound)
    if not channel:
        raise failed("slack channel has no target channel")

    message: dict[str, Any] = {
        "channel": channel,
        **message_content(outbound.payload),
        "unfurl_links": False,
        "unfurl_media": False,
    }
    if root_ts:
        message["thread_ts"] = root_ts
    posted = await call_method(attempt, token, "chat.postMessage", message)
    if posted.outcome != DELIVERED:
        return posted

    channel_id = posted.reference.get("channel") or channel
    reference = {"channel": channel_id, "ts": root_ts or posted.reference["ts"]}
    update = outbound.payload.get("root_update")
    if not (root_ts and update):
        return Delivery(DELIVERED, status=posted.status, reference=reference)

    root = {"channel": channel_id, "ts": root_ts, **message_content(update)}
    updated = await call_method(attempt, token, "chat.update", root)
    detail = "" if updated.outcome == DELIVERED else f"thread root not updated: {updated.detail}"
    return Delivery(DELIVERED, detail, status=posted.status, reference=reference)


def message_content(payload: dict[str, Any]) -> dict[str, Any]:
    content: dict[str, Any] = {"text": payload.get("text", "")}
    if payload.get("blocks"):
        content["blocks"] = payload["blocks"]
    return content


async def call_method(attempt: Attempt, token: str, method: str, arguments: dict[str, Any]) -> Delivery:
    """Call one Web API method; the reference of a delivered message has the channel id and `ts`."""
    url = attempt.endpoints.slack_api.rstrip("/") + "/" + method
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json; charset=utf-8"}
    try:
        reply = await post(attempt, url, content=json.dumps(arguments, ensure_ascii=False).encode(), headers=headers)
    except Undeliverable as error:
        return error.delivery
    if not reply.ok:
        return classify_error(reply, f"slack {method}", error_code(reply))

    answer = reply.json()
    if not isinstance(answer, dict):
        return Delivery(FAILED, f"slack {method} returned a body that is not JSON: {quote(reply.text)}", status=reply.status)
    if answer.get("ok") is not True:
        code = str(answer.get("error") or "unknown_error")
        outcome = RETRY if code in RETRY_ERRORS else FAILED
        return Delivery(
            outcome,
            f"slack {method} failed: {quote(code)}",
            status=reply.status,
            retry_after_s=parse_retry_after(reply.headers.get("retry-after")),
        )
    reference = {"channel": str(answer.get("channel") or ""), "ts": str(answer.get("ts") or "")}
    return Delivery(DELIVERED, status=reply.status, reference=reference)


def error_code(reply: Reply) -> str:
    answer = reply.json()
    if isinstance(answer, dict) and answer.get("error"):
        return str(answer["error"])
    return ""


async def send_webhook(outbound: Outbound, attempt: Attempt) -> Delivery:
    """Post to an incoming webhook, which responds 200 `ok`, or 4xx with an error code as plain text."""
    url = webhook_url(outbound, attempt)
    reply = await post(attempt, url, json=message_content(outbound.payload))
    if reply.ok:
        return Delivery(DELIVERED, status=reply.status)
    return classify_error(reply, "slack webhook", reply.text)


def webhook_url(outbound: Outbound, attempt: Attempt) -> str:
    if outbound.url or "url" in outbound.secrets:
        return attempt.url(outbound)

    # A channel without its own URL posts to the `slack_api_url` of the settings.
    fallback = attempt.settings.slack_api_url
    if fallback is None:
        raise failed("slack channel has no token, url or settings slack_api_url")
    if isinstance(fallback, str):
        return fallback
    return attempt.secret(fallback.secret)
