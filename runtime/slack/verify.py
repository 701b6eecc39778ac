"""Verifying that a request comes from Slack: the `v0` request signature.

Slack signs every request it sends with the app's signing secret:
`X-Slack-Signature` is `v0=` followed by the lower-case hex HMAC-SHA256 of
`v0:{X-Slack-Request-Timestamp}:{raw body}`. The timestamp is part of what is
signed, so a request older or newer than `MAX_CLOCK_SKEW_S` is rejected as a
possible replay.

Every rejection uses status 401, the stale timestamp included: the request
failed authentication, and the reason in the body names the check that failed.
Reasons name headers, never their values, the signature or the secret.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import re
from collections.abc import Mapping

SIGNATURE_HEADER = "x-slack-signature"
TIMESTAMP_HEADER = "x-slack-request-timestamp"
SIGNATURE_VERSION = "v0"
# Slack's documented replay window, applied in both directions.
MAX_CLOCK_SKEW_S = 300

_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_SIGNATURE = re.compile(r"v0=[0-9a-f]{64}")


class VerificationFailed(Exception):
    """A request that is not proven to come from Slack; `status` is the HTTP status to respond with."""

    def __init__(self, reason: str, status: int = 401) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


def sign(signing_secret: str, timestamp: str, body: bytes) -> str:
    """Return the `X-Slack-Signature` value Slack sends for `body` at `timestamp`."""
    base = f"{SIGNATURE_VERSION}:{timestamp}:".encode() + body
    digest = hmac.new(signing_secret.encode("utf-8"), base, hashlib.sha256).hexdigest()
    return f"{SIGNATURE_VERSION}={digest}"


def verify_request(headers: Mapping[str, str], body: bytes, signing_secret: str | None, now: datetime.datetime) -> None:
    """Return when `body` carries a valid, fresh Slack signature; raise `VerificationFailed` otherwise.

    `headers` is looked up with lower-case names, as Starlette's `Headers` and
    the daemon's header dicts provide them. `now` is an aware datetime.

    Raises:
        VerificationFailed: no signing secret is configured, a header is missing
            or malformed, the timestamp is more than `MAX_CLOCK_SKEW_S` seconds
            from `now`, or the signature does not match.
    """
    if not signing_secret:
        raise VerificationFailed("the daemon has no Slack signing secret configured, so it cannot verify Slack requests")

    timestamp = headers.get(TIMESTAMP_HEADER)
    if timestamp is None:
        raise VerificationFailed("missing X-Slack-Request-Timestamp header")
    timestamp = timestamp.strip()
    if not _TIMESTAMP.fullmatch(timestamp):
        raise VerificationFailed("invalid X-Slack-Request-Timestamp header: expected Unix time in seconds")
    skew = now.timestamp() - int(timestamp)
    if abs(skew) > MAX_CLOCK_SKEW_S:
        direction = "old" if skew > 0 else "in the future"
        raise VerificationFailed(
            f"stale request: X-Slack-Request-Timestamp is {abs(skew):.0f} s {direction}, "
            f"more than the {MAX_CLOCK_SKEW_S} s allowed; check the daemon's clock if this repeats"
        )

    signature = headers.get(SIGNATURE_HEADER)
    if signature is None:
        raise VerificationFailed("missing X-Slack-Signature header")
    signature = signature.strip().lower()
    if not _SIGNATURE.fullmatch(signature):
        raise VerificationFailed("invalid X-Slack-Signature header: expected `v0=` and 64 hex digits")
    expected = sign(signing_secret, timestamp, body)
    if not hmac.compare_digest(signature.encode("ascii"), expected.encode("ascii")):
        raise VerificationFailed("X-Slack-Signature does not match the request body")
