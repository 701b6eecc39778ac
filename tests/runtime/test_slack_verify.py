"""Slack request signatures: the published vectors, and every way a request fails verification."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import pytest

from runtime.slack.verify import MAX_CLOCK_SKEW_S, VerificationFailed, sign, verify_request

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "slack"
VECTORS = json.loads((FIXTURES / "signing-vectors.json").read_text())
FIXTURE_SECRET = VECTORS["signing_secret"]

SECRET = "test-signing-secret"
BODY = b"token=x&command=%2Fincident&text=help"
TIMESTAMP = 1715678400


def at(seconds: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC)


def headers(body: bytes = BODY, timestamp: str = str(TIMESTAMP), secret: str = SECRET) -> dict[str, str]:
    return {"x-slack-request-timestamp": timestamp, "x-slack-signature": sign(secret, timestamp, body)}


def rejection(request_headers: dict[str, str], now: datetime.datetime, secret: str | None = SECRET) -> VerificationFailed:
    with pytest.raises(VerificationFailed) as caught:
        verify_request(request_headers, BODY, secret, now)
    return caught.value


@pytest.mark.parametrize("vector", VECTORS["vectors"], ids=lambda vector: vector["body_file"])
def test_sign_reproduces_vector(vector: dict[str, str]) -> None:
    body = (FIXTURES / vector["body_file"]).read_bytes()
    assert len(body) == vector["body_length_bytes"]
    assert sign(FIXTURE_SECRET, vector["X-Slack-Request-Timestamp"], body) == vector["X-Slack-Signature"]


@pytest.mark.parametrize("vector", VECTORS["vectors"], ids=lambda vector: vector["body_file"])
def test_vector_verifies_at_its_timestamp(vector: dict[str, str]) -> None:
    body = (FIXTURES / vector["body_file"]).read_bytes()
    timestamp = vector["X-Slack-Request-Timestamp"]
    request_headers = {"x-slack-request-timestamp": timestamp, "x-slack-signature": vector["X-Slack-Signature"]}
    verify_request(request_headers, body, FIXTURE_SECRET, at(int(timestamp)))


def test_vector_fails_with_one_byte_changed() -> None:
    vector = VECTORS["vectors"][0]
    body = (FIXTURES / vector["body_file"]).read_bytes() + b" "
    timestamp = vector["X-Slack-Request-Timestamp"]
    request_headers = {"x-slack-request-timestamp": timestamp, "x-slack-signature": vector["X-Slack-Signature"]}
    with pytest.raises(VerificationFailed) as caught:
        verify_request(request_headers, body, FIXTURE_SECRET, at(int(timestamp)))
    assert caught.value.reason == "X-Slack-Signature does not match the request body"


def test_window_edges_are_accepted() -> None:
    verify_request(headers(), BODY, SECRET, at(TIMESTAMP + MAX_CLOCK_SKEW_S))
    verify_request(headers(), BODY, SECRET, at(TIMESTAMP - MAX_CLOCK_SKEW_S))


def test_old_request_is_stale() -> None:
    failure = rejection(headers(), at(TIMESTAMP + MAX_CLOCK_SKEW_S + 1))
    assert failure.status == 401
    assert failure.reason == (
        "stale request: X-Slack-Request-Timestamp is 301 s old, more than the 300 s allowed; "
        "check the daemon's clock if this repeats"
    )


def test_future_request_is_stale() -> None:
    failure = rejection(headers(), at(TIMESTAMP - MAX_CLOCK_SKEW_S - 1))
    assert failure.status == 401
    assert failure.reason == (
        "stale request: X-Slack-Request-Timestamp is 301 s in the future, more than the 300 s allowed; "
        "check the daemon's clock if this repeats"
    )


def test_forged_signature_is_rejected() -> None:
    forged = headers()
    digest = forged["x-slack-signature"]
    forged["x-slack-signature"] = digest[:-1] + ("0" if digest[-1] != "0" else "1")
    failure = rejection(forged, at(TIMESTAMP))
    assert failure.status == 401
    assert failure.reason == "X-Slack-Signature does not match the request body"


def test_wrong_secret_is_rejected() -> None:
    failure = rejection(headers(secret="another-secret"), at(TIMESTAMP))
    assert failure.reason == "X-Slack-Signature does not match the request body"


def test_signature_over_other_timestamp_is_rejected() -> None:
    moved = headers()
    moved["x-slack-request-timestamp"] = str(TIMESTAMP + 1)
    failure = rejection(moved, at(TIMESTAMP))
    assert failure.reason == "X-Slack-Signature does not match the request body"


@pytest.mark.parametrize(
    ("name", "value", "reason"),
    [
        ("x-slack-signature", None, "missing X-Slack-Signature header"),
        ("x-slack-request-timestamp", None, "missing X-Slack-Request-Timestamp header"),
        ("x-slack-request-timestamp", "1715678400.5", "invalid X-Slack-Request-Timestamp header: expected Unix time in seconds"),
        ("x-slack-request-timestamp", "-1", "invalid X-Slack-Request-Timestamp header: expected Unix time in seconds"),
        ("x-slack-request-timestamp", "", "invalid X-Slack-Request-Timestamp header: expected Unix time in seconds"),
        ("x-slack-signature", "v1=" + "0" * 64, "invalid X-Slack-Signature header: expected `v0=` and 64 hex digits"),
        ("x-slack-signature", "v0=" + "g" * 64, "invalid X-Slack-Signature header: expected `v0=` and 64 hex digits"),
        ("x-slack-signature", "v0=abc", "invalid X-Slack-Signature header: expected `v0=` and 64 hex digits"),
    ],
    ids=[
        "unsigned",
        "no-timestamp",
        "fractional-timestamp",
        "negative-timestamp",
        "empty-timestamp",
        "other-version",
        "not-hex",
        "short",
    ],
)
def test_missing_or_garbled_header_is_rejected(name: str, value: str | None, reason: str) -> None:
    request_headers = headers()
    if value is None:
        del request_headers[name]
    else:
        request_headers[name] = value
    failure = rejection(request_headers, at(TIMESTAMP))
    assert failure.status == 401
    assert failure.reason == reason


@pytest.mark.parametrize("secret", [None, ""], ids=["none", "empty"])
def test_no_secret_rejects_every_request(secret: str | None) -> None:
    failure = rejection(headers(), at(TIMESTAMP), secret=secret)
    assert failure.status == 401
    assert failure.reason == "the daemon has no Slack signing secret configured, so it cannot verify Slack requests"


def test_upper_case_hex_is_accepted() -> None:
    request_headers = headers()
    request_headers["x-slack-signature"] = "v0=" + request_headers["x-slack-signature"][3:].upper()
    verify_request(request_headers, BODY, SECRET, at(TIMESTAMP))
