"""Any other service, through the optional `apprise` package.

Apprise supports the URL schemes of many services (`tgram://`, `matrixs://`,
`ntfys://`...). It is not a dependency of irules: a site that wants these
channels installs it. Apprise only reports whether sending worked, not why,
so a failure is retried, and the outbox gives up after its last attempt.
"""

from __future__ import annotations

import functools
import importlib
from typing import Any

import anyio.to_thread

from runtime.notify.channels._common import Attempt, failed
from runtime.notify.model import DELIVERED, RETRY, Delivery, Outbound


async def send_apprise(outbound: Outbound, attempt: Attempt) -> Delivery:
    try:
        apprise = importlib.import_module("apprise")
    except ImportError:
        raise failed("install apprise to use this channel") from None
    url = attempt.role(outbound, "url")

    notifier = apprise.Apprise()
    if not notifier.add(url):
        raise failed(f"apprise does not support the URL in secret {outbound.secrets['url']}")
    payload = outbound.payload
    title = str(payload.get("title") or payload.get("subject") or "")
    notify = functools.partial(notifier.notify, body=str(payload.get("text", "")), title=title)
    sent: Any = await anyio.to_thread.run_sync(notify)
    if not sent:
        return Delivery(RETRY, "apprise could not send the message")
    return Delivery(DELIVERED)
