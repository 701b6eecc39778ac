"""Microsoft Teams and generic webhooks: one JSON POST, any 2xx is success.

Teams has two kinds of URL. Legacy Office 365 connectors respond 200 with the
body `1` and may report throttling only in the body of a 200 ("Microsoft
Teams endpoint returned HTTP error 429"). Workflows URLs respond 202 with an
empty body.
"""

from __future__ import annotations

from runtime.notify.channels._common import Attempt, classify_error, post, quote
from runtime.notify.model import DELIVERED, RETRY, Delivery, Outbound


async def send_teams(outbound: Outbound, attempt: Attempt) -> Delivery:
    reply = await post(attempt, attempt.url(outbound), json=outbound.payload)
    if not reply.ok:
        return classify_error(reply, "teams", reply.text)
    if "429" in reply.text:
        return Delivery(RETRY, f"teams is throttling: {quote(reply.text)}", status=reply.status)
    return Delivery(DELIVERED, status=reply.status)


async def send_webhook(outbound: Outbound, attempt: Attempt) -> Delivery:
    reply = await post(attempt, attempt.url(outbound), json=outbound.payload)
    if not reply.ok:
        return classify_error(reply, "webhook", reply.text)
    return Delivery(DELIVERED, status=reply.status)
