"""SMS through Twilio's Programmable Messaging API (version 2010-04-01).

The request is a form with `To`, `From` or `MessagingServiceSid`, and `Body`,
sent with HTTP Basic auth of the account SID and auth token. Success is 201.
Twilio rejects a body over 1,600 characters with error 21617. Its documentation
does not define how characters are counted, so the body is cut by UTF-16 code
units, where an emoji counts as two, which is at least as strict as Twilio.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote as quote_path

from runtime.notify.channels._common import Attempt, Reply, classify_error, failed, post
from runtime.notify.model import DELIVERED, Delivery, Outbound

MAX_BODY_UNITS = 1600


async def send_sms(outbound: Outbound, attempt: Attempt) -> Delivery:
    to = attempt.target(outbound)
    if not to:
        raise failed("sms channel has no phone number")
    account_sid = attempt.role(outbound, "account_sid")
    auth_token = attempt.role(outbound, "auth_token")
    form = {
        "To": to,
        **sender(outbound, attempt),
        "Body": truncate_utf16(message_body(outbound.payload), MAX_BODY_UNITS),
    }

    url = f"{attempt.endpoints.twilio_api.rstrip('/')}/2010-04-01/Accounts/{quote_path(account_sid, safe='')}/Messages.json"
    reply = await post(attempt, url, data=form, auth=(account_sid, auth_token))
    if not reply.ok:
        return classify_error(reply, "twilio", twilio_error(reply))

    answer = reply.json()
    sid = answer.get("sid") if isinstance(answer, dict) else None
    return Delivery(DELIVERED, status=reply.status, reference={"sid": str(sid)} if sid else {})


def message_body(payload: dict[str, Any]) -> str:
    """Return the text to send: the payload's Twilio `Body`, or its `text` as other channels name it."""
    return str(payload.get("Body", payload.get("text", "")))


def sender(outbound: Outbound, attempt: Attempt) -> dict[str, str]:
    """Return the `From` number, or the `MessagingServiceSid` that picks one."""
    if "from" in outbound.secrets:
        return {"From": attempt.role(outbound, "from")}
    if "messaging_service_sid" in outbound.secrets:
        return {"MessagingServiceSid": attempt.role(outbound, "messaging_service_sid")}
    raise failed("sms channel has neither a from nor a messaging_service_sid secret")


def truncate_utf16(text: str, limit: int) -> str:
    """Cut `text` to at most `limit` UTF-16 code units, ending with `…` when it was cut.

    Characters are never split, so an emoji is kept whole or dropped whole.
    """
    if utf16_units(text) <= limit:
        return text
    characters = []
    used = 1  # the `…`
    for character in text:
        size = 2 if ord(character) > 0xFFFF else 1
        if used + size > limit:
            break
        characters.append(character)
        used += size
    return "".join(characters) + "…"


def utf16_units(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def twilio_error(reply: Reply) -> str:
    """Return Twilio's error code and message, such as `error 21211: The 'To' number …`."""
    answer = reply.json()
    if not isinstance(answer, dict):
        return reply.text
    code = answer.get("code")
    message = str(answer.get("message") or "")
    return f"error {code}: {message}" if code else message
