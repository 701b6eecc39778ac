"""No request makes a source raise anything but `Rejected`, and every outcome contains clean alerts.

Inputs are random bytes, random JSON documents, and the shared fixtures with
random parts replaced or removed, for every built-in source, a custom source,
format detection and authentication (SNS signatures included).
"""

from __future__ import annotations

import base64
import copy
import datetime
import functools
import json
import re
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compiler.api import check_text
from runtime.alerts import FIRING, RESOLVED
from runtime.sources import CertificateUnavailable, Inbound, Outcome, Rejected, authenticate, detect, normalise
from runtime.sources.sns import SIGNED_FIELDS, string_to_sign

FIXTURES = Path(__file__).parent / "fixtures"
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
NOW = datetime.datetime(2024, 5, 14, 9, 0, tzinfo=datetime.UTC)
SOURCES = ["alertmanager", "grafana", "cloudwatch", "azure", "shop"]
FINGERPRINT = re.compile(r"[0-9a-f]{16}")

RULES = """
team ops { webhook "https://hooks.example.com/o" }
route { receiver ops }
source shop {
  auth hmac secret("KEY") prefix "sha256="
  auth bearer secret("TOKEN")
  map {
    labels = body.tags
    label.alertname = body.name
    label.level = body.level
    annotation.summary = body.text
    alert.fingerprint = body.id
    alert.starts_at = body.at
    alert.status = body.state
    alert.source = body.origin
  }
  resolved when body.state == "ok" or body.level > 3
}
source cloudwatch { confirm_subscriptions ["arn:aws:sns:us-east-1:123456789012:incident-alarms"] }
"""
RULESET = check_text(RULES, "fuzz.irules").ruleset()
# Alert formats only; the other folders hold what irules sends.
SOURCES = ("alertmanager", "azure", "cloudwatch", "grafana")
DOCUMENTS = {
    path.relative_to(FIXTURES).as_posix(): json.loads(path.read_bytes())
    for source in SOURCES
    for path in sorted((FIXTURES / source).glob("*.json"))
}

ODD_TEXT = st.sampled_from(
    ["", "\x00", "\ud800", "0001-01-01T00:00:00Z", "9999-12-31T23:59:59-23:59", "firing", "resolved", "OK", "é" * 70000]
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40),
    ODD_TEXT,
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=12,
)
HEADERS = st.dictionaries(
    st.sampled_from(
        [
            "content-type",
            "content-encoding",
            "authorization",
            "x-signature-256",
            "x-amz-sns-message-type",
            "x-amz-sns-rawdelivery",
            "x-grafana-alerting-signature",
        ]
    ),
    st.one_of(st.text(max_size=30), st.sampled_from(["Notification", "SubscriptionConfirmation", "true", "gzip", "Bearer x"])),
    max_size=4,
)


def paths(document: object, prefix: tuple = ()) -> list[tuple]:
    """List the path of every node of a JSON document, the root included."""
    found = [prefix]
    if isinstance(document, dict):
        for key, value in document.items():
            found.extend(paths(value, (*prefix, key)))
    elif isinstance(document, list):
        for index, value in enumerate(document):
            found.extend(paths(value, (*prefix, index)))
    return found


@st.composite
def mutated_fixtures(draw: st.DrawFn) -> tuple[str, bytes]:
    """Draw a fixture with one to three nodes replaced or removed, and the source its folder names."""
    name = draw(st.sampled_from(sorted(DOCUMENTS)))
    document = copy.deepcopy(DOCUMENTS[name])
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        candidates = paths(document)
        path = draw(st.sampled_from(candidates))
        if not path:
            document = draw(JSON_VALUES)
            continue
        parent = document
        for part in path[:-1]:
            parent = parent[part]
        if isinstance(parent, dict) and draw(st.booleans()):
            del parent[path[-1]]
        else:
            parent[path[-1]] = draw(JSON_VALUES)
    if isinstance(document, dict) and isinstance(document.get("Message"), str) and draw(st.booleans()):
        document["Message"] = draw(st.sampled_from(["", "{}", "[1]", '{"AlarmName": 1, "NewStateValue": "OK"}', "\x00 text"]))
    return name.split("/")[0], json.dumps(document).encode()


MUTATED_BODIES = mutated_fixtures().map(lambda drawn: drawn[1])


def check_outcome(outcome: Outcome) -> None:
    json.dumps(outcome.details).encode()
    for alert in outcome.alerts:
        assert alert.status in (FIRING, RESOLVED)
        assert FINGERPRINT.fullmatch(alert.fingerprint), alert.fingerprint
        for mapping in (alert.labels, alert.annotations):
            for name, value in mapping.items():
                assert isinstance(name, str) and name
                assert isinstance(value, str) and value
                assert "\x00" not in name + value
                (name + value).encode("utf-8")
        json.dumps(alert.to_json()).encode("utf-8")


def normalise_or_reject(source: str, inbound: Inbound) -> None:
    try:
        outcome = normalise(source, inbound, RULESET)
    except Rejected as error:
        assert 400 <= error.status < 600
        error.reason.encode("utf-8")
        return
    check_outcome(outcome)


@pytest.mark.slow
@FUZZ
@given(source=st.sampled_from(SOURCES), body=st.binary(max_size=300), headers=HEADERS)
def test_random_bytes(source: str, body: bytes, headers: dict[str, str]) -> None:
    normalise_or_reject(source, Inbound(body=body, headers=headers))


@pytest.mark.slow
@FUZZ
@given(source=st.sampled_from(SOURCES), document=JSON_VALUES, headers=HEADERS)
def test_random_json(source: str, document: object, headers: dict[str, str]) -> None:
    normalise_or_reject(source, Inbound(body=json.dumps(document).encode(), headers=headers))


@pytest.mark.slow
@FUZZ
@given(drawn=mutated_fixtures(), headers=HEADERS)
def test_mutated_fixtures(drawn: tuple[str, bytes], headers: dict[str, str]) -> None:
    source, body = drawn
    normalise_or_reject(source, Inbound(body=body, headers=headers))


@pytest.mark.slow
@FUZZ
@given(source=st.sampled_from(SOURCES), body=MUTATED_BODIES)
def test_mutated_fixtures_to_other_sources(source: str, body: bytes) -> None:
    normalise_or_reject(source, Inbound(body=body, headers={"content-type": "application/json"}))


@pytest.mark.parametrize("name", sorted(DOCUMENTS))
def test_every_fixture_to_its_source_is_clean(name: str) -> None:
    check_outcome(normalise(name.split("/")[0], Inbound(body=(FIXTURES / name).read_bytes()), RULESET))


@pytest.mark.slow
@FUZZ
@given(body=st.one_of(st.binary(max_size=200), MUTATED_BODIES), headers=HEADERS)
def test_detect_only_rejects(body: bytes, headers: dict[str, str]) -> None:
    try:
        found = detect(Inbound(body=body, headers=headers))
    except Rejected as error:
        assert error.status in (400, 422)
        return
    assert found in ("alertmanager", "grafana", "cloudwatch", "azure")


SECRETS = {"KEY": "fuzz-hmac-key-value", "TOKEN": "fuzz-bearer-token-value"}


def _fetch(url: str) -> bytes:
    if "fail" in url:
        raise CertificateUnavailable("down")
    return b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"


@pytest.mark.slow
@FUZZ
@given(source=st.sampled_from([*SOURCES, "nope"]), body=st.one_of(st.binary(max_size=200), MUTATED_BODIES), headers=HEADERS)
def test_authenticate_only_rejects(source: str, body: bytes, headers: dict[str, str]) -> None:
    try:
        authenticate(source, Inbound(body=body, headers=headers), RULESET, SECRETS.get, now=NOW, fetch_certificate=_fetch)
    except Rejected as error:
        assert error.status in (400, 401, 403, 404, 415, 503)
        assert not any(secret in error.reason for secret in SECRETS.values())


@functools.cache
def signing_material() -> tuple[rsa.RSAPrivateKey, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(NOW - datetime.timedelta(days=1))
        .not_valid_after(NOW + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return key, certificate.public_bytes(serialization.Encoding.PEM)


SIGNABLE = [
    "cloudwatch/sns-alarm.json",
    "cloudwatch/sns-alarm-ok-metric-math.json",
    "cloudwatch/sns-subscription-confirmation.json",
]


ENVELOPE_FIELDS = ["Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Token", "SigningCertURL", "UnsubscribeURL"]


@pytest.mark.slow
@FUZZ
@given(name=st.sampled_from(SIGNABLE), field=st.sampled_from(ENVELOPE_FIELDS), value=JSON_VALUES)
def test_signed_sns_with_one_field_changed(name: str, field: str, value: object) -> None:
    key, pem = signing_material()
    envelope = copy.deepcopy(DOCUMENTS[name])
    algorithm = hashes.SHA1() if envelope["SignatureVersion"] == "1" else hashes.SHA256()
    envelope["Signature"] = base64.b64encode(key.sign(string_to_sign(envelope), padding.PKCS1v15(), algorithm)).decode()
    before = envelope.get(field)
    envelope[field] = value
    inbound = Inbound(body=json.dumps(envelope).encode(), headers={})
    try:
        authenticate("cloudwatch", inbound, None, SECRETS.get, now=NOW, fetch_certificate=lambda url: pem)
    except Rejected as error:
        assert error.status in (400, 403)
        return
    # Only a field outside the signed string, or an unchanged value, may still pass.
    assert field not in SIGNED_FIELDS[envelope["Type"]] or value == before
