"""What every channel sender shares: the attempt's context, HTTP posting and classification.

A sender raises `Undeliverable` for anything that ends the attempt early,
such as a missing secret, a bad setting or a timeout. `send` turns it into
the `Delivery` it carries. HTTP responses are classified the same way for
every channel: 429, 408 and 5xx are worth a retry, any other 4xx or 3xx is not.
"""

from __future__ import annotations

import email.utils
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import anyio
import httpx

from compiler import ir
from runtime.notify.model import FAILED, RETRY, Delivery, Endpoints, Outbound

# Maximum characters of a response body quoted in a `Delivery.detail`.
QUOTE_LIMIT = 200
# Maximum bytes of a response body that are read, because the rest is never needed to classify it.
BODY_LIMIT = 64 * 1024


class Undeliverable(Exception):
    """Ends an attempt with the `Delivery` it carries."""

    def __init__(self, delivery: Delivery) -> None:
        super().__init__(delivery.detail)
        self.delivery = delivery


def failed(detail: str, status: int | None = None) -> Undeliverable:
    return Undeliverable(Delivery(FAILED, detail, status=status))


@dataclass
class Attempt:
    """One attempt to send one message: where to send it, with what, and the secrets it read."""

    secrets: Callable[[str], str | None]
    client: httpx.AsyncClient
    endpoints: Endpoints
    settings: ir.Settings
    # Every secret value this attempt read, so that `scrub` can keep them out of `detail`.
    values_read: list[str] = field(default_factory=list, repr=False)

    def secret(self, name: str) -> str:
        """Return the value of the secret `name`, or end the attempt when it is not set."""
        value = self.secrets(name)
        if not value:
            # Retried: a secret added to the folder or environment while the row waits is picked up.
            raise Undeliverable(Delivery(RETRY, f"secret {name} is not set"))
        self.values_read.append(value)
        return value

    def role(self, outbound: Outbound, role: str) -> str:
        """Return the secret that `outbound` names for `role` (such as `key` or `token`)."""
        name = outbound.secrets.get(role)
        if name is None:
            raise failed(f"{outbound.kind} channel has no {role} secret")
        return self.secret(name)

    def target(self, outbound: Outbound) -> str | None:
        """Return the channel's target: its own `target`, else its `target` secret, else `None`."""
        if outbound.target:
            return outbound.target
        if "target" in outbound.secrets:
            return self.role(outbound, "target")
        return None

    def url(self, outbound: Outbound) -> str:
        """Return the URL to post to: the channel's own `url`, else its `url` secret."""
        if outbound.url:
            return outbound.url
        if "url" in outbound.secrets:
            return self.role(outbound, "url")
        raise failed(f"{outbound.kind} channel has no url")

    def scrub(self, detail: str) -> str:
        """Replace any secret value this attempt read that a server echoed into `detail`."""
        for value in self.values_read:
            if len(value) >= 4:
                detail = detail.replace(value, "[secret]")
        return detail


@dataclass(frozen=True, slots=True)
class Reply:
    """An HTTP response, with at most `BODY_LIMIT` bytes of its body."""

    status: int
    headers: httpx.Headers
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self) -> Any:
        """Return the parsed JSON body, or `None` when the body is not JSON."""
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


async def post(attempt: Attempt, url: str, **request: Any) -> Reply:
    """POST to `url` within the attempt's timeout, turning timeouts and connection errors into a retry.

    The timeout covers the whole exchange, body included, so a server that sends
    its response a byte at a time cannot hold the sender beyond it.
    """
    check_url(url)
    timeout = attempt.endpoints.timeout_s
    host = url_host(url)
    try:
        with anyio.fail_after(timeout):
            async with attempt.client.stream("POST", url, timeout=timeout, **request) as response:
                body = await read_limited(response)
    except (TimeoutError, httpx.TimeoutException):
        raise Undeliverable(Delivery(RETRY, f"request to {host} timed out after {timeout:g} s")) from None
    except (httpx.InvalidURL, httpx.UnsupportedProtocol) as error:
        raise failed(f"invalid URL {redact_url(url)} ({type(error).__name__})") from None
    except httpx.TransportError as error:
        raise Undeliverable(Delivery(RETRY, f"connection to {host} failed ({type(error).__name__})")) from None
    return Reply(response.status_code, response.headers, body)


def check_url(url: str) -> None:
    """End the attempt unless `url` is an absolute `http` or `https` URL with a valid port."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise failed(f"invalid URL ({error})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        redacted = f" {redact_url(url)}" if parts.hostname else ""
        raise failed(f"invalid URL{redacted}: not an absolute http or https URL")
    if port == 0:
        raise failed(f"invalid URL {redact_url(url)}: port 0")


async def read_limited(response: httpx.Response) -> bytes:
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) >= BODY_LIMIT:
            break
    return bytes(body[:BODY_LIMIT])


def classify_error(reply: Reply, service: str, reason: str = "") -> Delivery:
    """Classify a response that is not a success: 408, 429 and 5xx are retried, the rest fail.

    `reason` is the service's error message, quoted after the status.
    """
    detail = f"{service} returned HTTP {reply.status}"
    if reason:
        detail += f": {quote(reason)}"
    if reply.status in (408, 429) or reply.status >= 500:
        return Delivery(RETRY, detail, status=reply.status, retry_after_s=parse_retry_after(reply.headers.get("retry-after")))
    if 300 <= reply.status < 400:
        detail += " (redirects are not followed)"
    return Delivery(FAILED, detail, status=reply.status)


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Return the seconds a `Retry-After` header requests to wait, given as a number of seconds or an HTTP date.

    A date in the past gives 0; a value that is neither gives `None`.
    """
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return seconds if seconds >= 0 and seconds != float("inf") else None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    now = time.time() if now is None else now
    return max(0.0, when.timestamp() - now)


def quote(text: str, limit: int = QUOTE_LIMIT) -> str:
    """Return `text` on one line, cut to `limit` characters, for quoting in a detail."""
    text = " ".join(text.split())
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text


def redact_url(url: str) -> str:
    """Return `url` without what may carry a token: user info, path, query and fragment.

    >>> redact_url("https://hooks.slack.com/services/T0/B0/secret")
    'https://hooks.slack.com/…'
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "<invalid URL>"
    if not parts.scheme or not parts.hostname:
        return "<invalid URL>"
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    netloc = host if port is None else f"{host}:{port}"
    hidden = "…" if parts.path.strip("/") or parts.query or parts.fragment else ""
    return f"{parts.scheme}://{netloc}/{hidden}"


def url_host(url: str) -> str:
    try:
        return urlsplit(url).hostname or "unknown"
    except ValueError:
        return "unknown"
