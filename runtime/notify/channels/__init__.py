"""Channel senders: one attempt to deliver one `Outbound` message.

The outbox calls `send` once per attempt and decides from the `Delivery` what
comes next, because a sender never retries by itself. Every sender classifies
the response the same way:

- delivered: the service accepted the message (2xx, as its protocol defines success)
- retry: 408, 429 (with `Retry-After`), 5xx, timeouts, connection errors,
  SMTP 4xx, Slack's `ratelimited`
- failed: any other 4xx, a logical error such as Slack's `ok: false`, a
  missing secret or a bad setting

`Delivery.detail` never contains a secret: senders name secrets and show
only hosts of URLs, quote at most 200 characters of a response, and every
secret value read during the attempt is replaced in the detail as well.

Example:

    delivery = await send(outbound, secrets=Secrets(folder), client=client, endpoints=Endpoints(), settings=ruleset.settings)
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable

import httpx

from compiler import ir
from runtime.notify.channels._common import Attempt, Undeliverable, redact_url, url_host
from runtime.notify.channels.apprise_sender import send_apprise
from runtime.notify.channels.mail import send_email
from runtime.notify.channels.pagerduty import send_pagerduty
from runtime.notify.channels.slack import send_slack
from runtime.notify.channels.sms import send_sms
from runtime.notify.channels.webhook import send_teams, send_webhook
from runtime.notify.model import FAILED, Delivery, Endpoints, Outbound

__all__ = ["endpoint_key", "redact_url", "send"]

Sender = Callable[[Outbound, Attempt], Awaitable[Delivery]]

SENDERS: dict[str, Sender] = {
    "slack": send_slack,
    "pagerduty": send_pagerduty,
    "sms": send_sms,
    "teams": send_teams,
    "webhook": send_webhook,
    "email": send_email,
    "apprise": send_apprise,
}


async def send(
    outbound: Outbound,
    *,
    secrets: Callable[[str], str | None],
    client: httpx.AsyncClient,
    endpoints: Endpoints,
    settings: ir.Settings,
) -> Delivery:
    """Make one attempt to deliver `outbound` and return what came of it.

    `secrets` maps a secret's name to its value, or `None` when it is not set.
    Channel failures are returned as a `Delivery`, never raised.
    """
    sender = SENDERS.get(outbound.kind)
    if sender is None:
        return Delivery(FAILED, f"unknown channel kind {outbound.kind!r}")
    attempt = Attempt(secrets, client, endpoints, settings)
    try:
        delivery = await sender(outbound, attempt)
    except Undeliverable as error:
        delivery = error.delivery
    return scrubbed(delivery, attempt)


def scrubbed(delivery: Delivery, attempt: Attempt) -> Delivery:
    detail = attempt.scrub(delivery.detail)
    if detail == delivery.detail:
        return delivery
    return Delivery(delivery.outcome, detail, delivery.status, delivery.retry_after_s, delivery.reference)


def endpoint_key(outbound: Outbound, settings: ir.Settings | None = None) -> str:
    """Return the key that rate limits and circuit breakers count `outbound` under.

    Messages that reach the same service account or URL share a key, such as
    `slack:#alerts`, `pagerduty:PAGERDUTY_KEY` (the secret's name),
    `sms:twilio` or `email:smtp.example.com:587` (when `settings` are given).
    A URL written in the rules gets its host and a digest of the whole URL, such
    as `teams:example.webhook.office.com/3f1c0a9b7d2e`, because each such URL posts
    to one channel or receiver, and Microsoft's Teams documentation tells senders to
    limit the messages per channel, not per host. A key contains secret names, hosts and digests, never
    a secret value or a URL path.
    """
    kind = outbound.kind
    if kind == "slack" and outbound.target:
        return f"slack:{outbound.target}"
    if kind == "slack" and "target" in outbound.secrets:
        return f"slack:{outbound.secrets['target']}"
    if kind == "pagerduty":
        return f"pagerduty:{outbound.secrets.get('key', '')}"
    if kind == "sms":
        return "sms:twilio"
    if kind == "email":
        smtp = settings.smtp if settings else None
        return f"email:{smtp.smarthost}" if smtp else "email"
    if "url" in outbound.secrets:
        return f"{kind}:{outbound.secrets['url']}"
    if outbound.url:
        digest = hashlib.sha256(outbound.url.encode("utf-8")).hexdigest()[:URL_DIGEST_LENGTH]
        return f"{kind}:{url_host(outbound.url)}/{digest}"
    return kind


# Hex digits of a URL's SHA-256 in its endpoint key: 48 bits, enough to keep the URLs of
# one ruleset apart, and too few to test guesses of a token in the URL's path against.
URL_DIGEST_LENGTH = 12
