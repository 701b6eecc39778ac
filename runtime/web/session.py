"""Sessions of the web view: one signed cookie that holds the actor's name and the CSRF token.

The cookie value is `base64url(JSON) "." base64url(HMAC-SHA256(key, JSON))`.
The JSON contains the CSRF token (`c`), the time the session was issued in Unix
seconds (`t`), and, once someone logged in, the name they gave (`a`). With an
API token the key is derived from the token, so a new token ends every
session. Without one the key is random per daemon process, so a restart only
means that the next form gets a fresh CSRF token.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass

COOKIE = "irules_session"
# A session lasts this long after login. Then the login page requests the token again.
MAX_AGE_S = 12 * 3600
# The daemon host's clock may step back a little, so a session issued this far in the future still counts.
CLOCK_SKEW_S = 60
MAX_ACTOR = 100
_KEY_LABEL = b"irules web session v1"


@dataclass(frozen=True, slots=True)
class Session:
    """The cookie's contents: the CSRF token, when it was issued, and the logged-in actor (None before login)."""

    csrf: str
    issued_at: int
    actor: str | None = None


def new_session(now: int, actor: str | None = None) -> Session:
    """Return a session with a fresh random CSRF token."""
    return Session(csrf=secrets.token_urlsafe(32), issued_at=now, actor=actor)


def session_key(api_token: str | None, fallback: bytes) -> bytes:
    """Return the signing key: derived from the API token, or `fallback` (random per process) without one."""
    if not api_token:
        return fallback
    return hmac.new(api_token.encode(), _KEY_LABEL, hashlib.sha256).digest()


def dump_session(session: Session, key: bytes) -> str:
    """Return the signed cookie value of `session`."""
    data: dict[str, object] = {"c": session.csrf, "t": session.issued_at}
    if session.actor is not None:
        data["a"] = session.actor
    payload = json.dumps(data, separators=(",", ":"), sort_keys=True).encode()
    return f"{_encode(payload)}.{_encode(_sign(payload, key))}"


def load_session(value: str | None, key: bytes, now: int) -> Session | None:
    """Return the session in a cookie value, or None when it is missing, forged, malformed or expired."""
    if not value or value.count(".") != 1:
        return None
    encoded_payload, encoded_signature = value.split(".")
    try:
        payload = _decode(encoded_payload)
        signature = _decode(encoded_signature)
    except (binascii.Error, ValueError):
        return None
    if not hmac.compare_digest(signature, _sign(payload, key)):
        return None
    try:
        data = json.loads(payload)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return _session_from(data, now)


def csrf_matches(session: Session | None, given: object) -> bool:
    """Return whether `given` (the form's hidden field) is the session's CSRF token, compared in constant time."""
    if session is None or not isinstance(given, str) or not given:
        return False
    return hmac.compare_digest(given.encode(), session.csrf.encode())


def clean_actor(name: str) -> str | None:
    """Return the name given at login without surrounding space and control characters, or None when nothing is left."""
    cleaned = "".join(character for character in name if character.isprintable()).strip()
    return cleaned[:MAX_ACTOR] or None


def _session_from(data: object, now: int) -> Session | None:
    if not isinstance(data, dict):
        return None
    csrf, issued_at, actor = data.get("c"), data.get("t"), data.get("a")
    if not isinstance(csrf, str) or not isinstance(issued_at, int) or not (actor is None or isinstance(actor, str)):
        return None
    if not now - MAX_AGE_S <= issued_at <= now + CLOCK_SKEW_S:
        return None
    return Session(csrf=csrf, issued_at=issued_at, actor=actor)


def _sign(payload: bytes, key: bytes) -> bytes:
    return hmac.new(key, payload, hashlib.sha256).digest()


def _encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
