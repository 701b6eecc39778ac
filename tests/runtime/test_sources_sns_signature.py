"""SNS signature verification with a generated key and certificate: no network is touched."""

from __future__ import annotations

import base64
import datetime
import json
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

from compiler.api import check_text
from runtime.sources import CertificateUnavailable, HttpCertificateFetcher, Inbound, Rejected, authenticate, normalise
from runtime.sources.sns import string_to_sign

FIXTURES = Path(__file__).parent / "fixtures" / "cloudwatch"
NOW = datetime.datetime(2024, 5, 14, 9, 21, tzinfo=datetime.UTC)
CERT_URL = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-00000000000000000000000000000000.pem"
TOPIC = "arn:aws:sns:us-east-1:123456789012:incident-alarms"


def make_certificate(key: object) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
    start = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=1)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.PEM)


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def pem(key: rsa.RSAPrivateKey) -> bytes:
    return make_certificate(key)


class Fetcher:
    """Serves one PEM for any URL and records the URLs asked for."""

    def __init__(self, pem: bytes) -> None:
        self.pem = pem
        self.urls: list[str] = []

    def __call__(self, url: str) -> bytes:
        self.urls.append(url)
        return self.pem


def sign(envelope: dict, key: rsa.RSAPrivateKey) -> dict:
    algorithm = hashes.SHA1() if envelope["SignatureVersion"] == "1" else hashes.SHA256()
    signature = key.sign(string_to_sign(envelope), padding.PKCS1v15(), algorithm)
    return {**envelope, "Signature": base64.b64encode(signature).decode()}


def signed_fixture(name: str, key: rsa.RSAPrivateKey) -> dict:
    return sign(json.loads((FIXTURES / name).read_bytes()), key)


def check(envelope: dict, fetcher: object, ruleset: object = None, **options: object) -> None:
    inbound = Inbound(body=json.dumps(envelope).encode(), headers={"x-amz-sns-message-type": envelope.get("Type", "")})
    authenticate("cloudwatch", inbound, ruleset, lambda name: None, now=NOW, fetch_certificate=fetcher, **options)


def rejection(envelope: dict, fetcher: object, ruleset: object = None, **options: object) -> Rejected:
    with pytest.raises(Rejected) as caught:
        check(envelope, fetcher, ruleset, **options)
    return caught.value


def test_string_to_sign_notification_order() -> None:
    envelope = json.loads((FIXTURES / "sns-alarm.json").read_bytes())
    lines = string_to_sign(envelope).decode().split("\n")
    assert lines[0::2][:6] == ["Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"]
    assert lines[3] == "3b1f6a52-9c0e-5d27-a8f4-0123456789ab"


def test_string_to_sign_leaves_out_absent_subject() -> None:
    envelope = json.loads((FIXTURES / "sns-alarm.json").read_bytes())
    del envelope["Subject"]
    assert b"Subject\n" not in string_to_sign(envelope)


def test_string_to_sign_confirmation_fields() -> None:
    envelope = json.loads((FIXTURES / "sns-subscription-confirmation.json").read_bytes())
    names = ["Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"]
    expected = "".join(f"{name}\n{envelope[name]}\n" for name in names)
    assert string_to_sign(envelope) == expected.encode()
    assert "You have chosen to subscribe to the topic" in expected


@pytest.mark.parametrize("name", ["sns-alarm.json", "sns-alarm-ok-metric-math.json", "sns-subscription-confirmation.json"])
def test_valid_signature_passes(key: rsa.RSAPrivateKey, pem: bytes, name: str) -> None:
    fetcher = Fetcher(pem)
    check(signed_fixture(name, key), fetcher)
    assert fetcher.urls == [CERT_URL]


def test_version_2_fixture_uses_sha256(key: rsa.RSAPrivateKey, pem: bytes) -> None:
    envelope = signed_fixture("sns-alarm-ok-metric-math.json", key)
    assert envelope["SignatureVersion"] == "2"
    sha1 = key.sign(string_to_sign(envelope), padding.PKCS1v15(), hashes.SHA1())
    wrong = {**envelope, "Signature": base64.b64encode(sha1).decode()}
    assert rejection(wrong, Fetcher(pem)).status == 403


def test_tampered_message_is_forbidden(key: rsa.RSAPrivateKey, pem: bytes) -> None:
    envelope = signed_fixture("sns-alarm.json", key)
    envelope["Message"] = envelope["Message"].replace("ALARM", "OK")
    error = rejection(envelope, Fetcher(pem))
    assert error.status == 403
    assert error.reason == "invalid SNS signature"


def test_unsigned_key_added_after_signing_still_passes(key: rsa.RSAPrivateKey, pem: bytes) -> None:
    # UnsubscribeURL is not signed, so changing it must not break verification.
    envelope = signed_fixture("sns-alarm.json", key)
    envelope["UnsubscribeURL"] = "https://example.invalid/"
    check(envelope, Fetcher(pem))


def test_other_key_is_forbidden(key: rsa.RSAPrivateKey) -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    error = rejection(signed_fixture("sns-alarm.json", key), Fetcher(make_certificate(other)))
    assert error.status == 403


@pytest.mark.parametrize(
    "url",
    [
        "http://sns.us-east-1.amazonaws.com/cert.pem",
        "https://evil.example/cert.pem",
        "https://sns.us-east-1.amazonaws.com.evil.example/cert.pem",
        "https://sns.us-east-1.amazonaws.com@evil.example/cert.pem",
        "https://127.0.0.1/cert.pem",
        "https://[::1/cert.pem",
    ],
)
def test_certificate_url_checked_before_fetching(key: rsa.RSAPrivateKey, pem: bytes, url: str) -> None:
    envelope = sign({**json.loads((FIXTURES / "sns-alarm.json").read_bytes()), "SigningCertURL": url}, key)
    fetcher = Fetcher(pem)
    error = rejection(envelope, fetcher)
    assert error.status == 403
    assert "SigningCertURL" in error.reason
    assert fetcher.urls == []


def test_china_region_host_accepted(key: rsa.RSAPrivateKey, pem: bytes) -> None:
    url = "https://sns.cn-north-1.amazonaws.com.cn/SimpleNotificationService-0.pem"
    envelope = sign({**json.loads((FIXTURES / "sns-alarm.json").read_bytes()), "SigningCertURL": url}, key)
    fetcher = Fetcher(pem)
    check(envelope, fetcher)
    assert fetcher.urls == [url]


@pytest.mark.parametrize(("version", "status"), [("3", 403), (None, 403), (1, 403)])
def test_unsupported_signature_version(key: rsa.RSAPrivateKey, pem: bytes, version: object, status: int) -> None:
    envelope = {**signed_fixture("sns-alarm.json", key), "SignatureVersion": version}
    assert rejection(envelope, Fetcher(pem)).status == status


def test_signature_not_base64(pem: bytes) -> None:
    envelope = {**json.loads((FIXTURES / "sns-alarm.json").read_bytes()), "Signature": "not base64!!"}
    error = rejection(envelope, Fetcher(pem))
    assert error.status == 403
    assert "not base64" in error.reason


def test_missing_signed_field_is_bad_request(key: rsa.RSAPrivateKey, pem: bytes) -> None:
    envelope = signed_fixture("sns-alarm.json", key)
    del envelope["MessageId"]
    error = rejection(envelope, Fetcher(pem))
    assert error.status == 400
    assert "`MessageId`" in error.reason


def test_unavailable_certificate_is_service_unavailable(key: rsa.RSAPrivateKey) -> None:
    def failing(url: str) -> bytes:
        raise CertificateUnavailable("connection refused")

    error = rejection(signed_fixture("sns-alarm.json", key), failing)
    assert error.status == 503
    assert "connection refused" in error.reason


def test_garbage_certificate_is_forbidden(key: rsa.RSAPrivateKey) -> None:
    assert rejection(signed_fixture("sns-alarm.json", key), Fetcher(b"not a pem")).status == 403


def test_non_rsa_certificate_is_forbidden(key: rsa.RSAPrivateKey) -> None:
    error = rejection(signed_fixture("sns-alarm.json", key), Fetcher(make_certificate(ec.generate_private_key(ec.SECP256R1()))))
    assert error.status == 403
    assert "RSA" in error.reason


def test_max_age_rejects_replay(key: rsa.RSAPrivateKey, pem: bytes) -> None:
    envelope = signed_fixture("sns-alarm.json", key)
    check(envelope, Fetcher(pem), sns_max_age=datetime.timedelta(hours=1))
    late = {"sns_max_age": datetime.timedelta(hours=1)}
    with pytest.raises(Rejected) as caught:
        inbound = Inbound(body=json.dumps(envelope).encode(), headers={})
        authenticate(
            "cloudwatch",
            inbound,
            None,
            lambda name: None,
            now=NOW + datetime.timedelta(hours=2),
            fetch_certificate=Fetcher(pem),
            **late,
        )
    assert caught.value.status == 403
    assert "replay" in caught.value.reason


def test_topic_must_be_listed_when_list_declared(key: rsa.RSAPrivateKey, pem: bytes) -> None:
    rules = 'team ops { webhook "https://h.example.com/o" }\nroute { receiver ops }\nsource cloudwatch { confirm_subscriptions ["arn:aws:sns:us-east-1:123456789012:other"] }\n'
    ruleset = check_text(rules).ruleset()
    error = rejection(signed_fixture("sns-alarm.json", key), Fetcher(pem), ruleset)
    assert error.status == 403
    assert "confirm_subscriptions" in error.reason
    check(signed_fixture("sns-subscription-confirmation.json", key), Fetcher(pem), ruleset)


def test_listed_topic_passes(key: rsa.RSAPrivateKey, pem: bytes) -> None:
    rules = f'team ops {{ webhook "https://h.example.com/o" }}\nroute {{ receiver ops }}\nsource cloudwatch {{ confirm_subscriptions ["{TOPIC}"] }}\n'
    check(signed_fixture("sns-alarm.json", key), Fetcher(pem), check_text(rules).ruleset())


def test_unsigned_sns_message_never_passes_declared_auth(pem: bytes) -> None:
    rules = 'team ops { webhook "https://h.example.com/o" }\nroute { receiver ops }\nsource cloudwatch { auth none }\n'
    envelope = json.loads((FIXTURES / "sns-alarm.json").read_bytes())
    assert rejection(envelope, Fetcher(pem), check_text(rules).ruleset()).status == 403


def test_eventbridge_uses_declared_auth(pem: bytes) -> None:
    body = (FIXTURES / "eventbridge-alarm-state-change.json").read_bytes()
    fetcher = Fetcher(pem)
    with pytest.raises(Rejected) as caught:
        authenticate("cloudwatch", Inbound(body=body), None, lambda name: None, now=NOW, fetch_certificate=fetcher)
    assert caught.value.status == 401
    assert "has no auth configured" in caught.value.reason
    rules = 'team ops { webhook "https://h.example.com/o" }\nroute { receiver ops }\nsource cloudwatch { auth bearer secret("EB_TOKEN") }\n'
    ruleset = check_text(rules).ruleset()
    inbound = Inbound(body=body, headers={"authorization": "Bearer eb-secret"})
    authenticate("cloudwatch", inbound, ruleset, {"EB_TOKEN": "eb-secret"}.get, now=NOW, fetch_certificate=fetcher)
    assert fetcher.urls == []


def test_raw_delivery_uses_declared_auth(pem: bytes) -> None:
    body = (FIXTURES / "sns-alarm-raw-delivery.json").read_bytes()
    inbound = Inbound(body=body, headers={"x-amz-sns-rawdelivery": "true", "x-amz-sns-message-type": "Notification"})
    with pytest.raises(Rejected) as caught:
        authenticate("cloudwatch", inbound, None, lambda name: None, now=NOW, fetch_certificate=Fetcher(pem))
    assert caught.value.status == 401


BASIC_RULES = """
team ops { webhook "https://h.example.com/o" }
route { receiver ops }
source cloudwatch { auth basic user "sns" password secret("CW_PASSWORD") }
"""
BASIC_SECRETS = {"CW_PASSWORD": "cw-password"}


def basic_header(password: str) -> dict[str, str]:
    return {"authorization": "Basic " + base64.b64encode(f"sns:{password}".encode()).decode()}


def test_raw_delivery_passes_declared_basic(pem: bytes) -> None:
    body = (FIXTURES / "sns-alarm-raw-delivery.json").read_bytes()
    raw = {"x-amz-sns-rawdelivery": "true", "x-amz-sns-message-type": "Notification"}
    ruleset = check_text(BASIC_RULES).ruleset()
    fetcher = Fetcher(pem)

    authenticate("cloudwatch", Inbound(body, {**raw, **basic_header("cw-password")}), ruleset, BASIC_SECRETS.get, now=NOW)
    with pytest.raises(Rejected) as caught:
        authenticate("cloudwatch", Inbound(body, raw), ruleset, BASIC_SECRETS.get, now=NOW, fetch_certificate=fetcher)
    assert caught.value.status == 401
    assert "expected `Basic` credentials" in caught.value.reason
    assert fetcher.urls == []


def test_signed_envelope_ignores_basic_credentials(key: rsa.RSAPrivateKey, pem: bytes) -> None:
    # Basic credentials stand in for a signature only where SNS sends none: a signed envelope is judged by its signature.
    ruleset = check_text(BASIC_RULES).ruleset()
    envelope = signed_fixture("sns-alarm.json", key)
    headers = {"x-amz-sns-message-type": "Notification"}
    body = json.dumps(envelope).encode()
    authenticate("cloudwatch", Inbound(body, headers), ruleset, BASIC_SECRETS.get, now=NOW, fetch_certificate=Fetcher(pem))

    envelope["Message"] = envelope["Message"].replace("ALARM", "OK")
    tampered = Inbound(json.dumps(envelope).encode(), {**headers, **basic_header("cw-password")})
    with pytest.raises(Rejected) as caught:
        authenticate("cloudwatch", tampered, ruleset, BASIC_SECRETS.get, now=NOW, fetch_certificate=Fetcher(pem))
    assert caught.value.status == 403
    assert caught.value.reason == "invalid SNS signature"


def test_signed_envelope_stays_sns(key: rsa.RSAPrivateKey, pem: bytes) -> None:
    # Extra keys are not signed: a signed envelope must never be read as another form.
    envelope = signed_fixture("sns-alarm.json", key)
    forged = {**envelope, **json.loads((FIXTURES / "eventbridge-alarm-state-change-ok.json").read_bytes())}
    check(forged, Fetcher(pem))
    outcome = normalise("cloudwatch", Inbound(body=json.dumps(forged).encode()), None)
    assert outcome.alerts[0].status == "firing"
    assert outcome.alerts[0].labels["cloudwatch_state"] == "ALARM"


# ---------------------------------------------------------------- the default fetcher, on httpx.MockTransport


def test_http_fetcher_caches_per_url(pem: bytes) -> None:
    requests: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(str(request.url))
        return httpx.Response(200, content=pem)

    fetcher = HttpCertificateFetcher(transport=httpx.MockTransport(handler))
    assert fetcher(CERT_URL) == pem
    assert fetcher(CERT_URL) == pem
    assert requests == [CERT_URL]


def test_http_fetcher_does_not_follow_redirects() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(302, headers={"location": "https://evil.example/cert.pem"})

    fetcher = HttpCertificateFetcher(transport=httpx.MockTransport(handler))
    with pytest.raises(CertificateUnavailable, match="HTTP 302"):
        fetcher(CERT_URL)


def test_http_fetcher_caps_size() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=b"x" * (1024 * 1024))

    fetcher = HttpCertificateFetcher(transport=httpx.MockTransport(handler))
    with pytest.raises(CertificateUnavailable, match="more than"):
        fetcher(CERT_URL)


def test_http_fetcher_refuses_other_hosts() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise AssertionError("no request may be sent")

    fetcher = HttpCertificateFetcher(transport=httpx.MockTransport(handler))
    with pytest.raises(CertificateUnavailable):
        fetcher("https://evil.example/cert.pem")


def test_http_fetcher_network_error_is_unavailable() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    fetcher = HttpCertificateFetcher(transport=httpx.MockTransport(handler))
    with pytest.raises(CertificateUnavailable, match="refused"):
        fetcher(CERT_URL)


def test_http_fetcher_evicts_oldest(pem: bytes) -> None:
    requests: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(str(request.url))
        return httpx.Response(200, content=pem)

    fetcher = HttpCertificateFetcher(transport=httpx.MockTransport(handler), max_entries=2)
    urls = [f"https://sns.us-east-1.amazonaws.com/{index}.pem" for index in range(3)]
    for url in [*urls, urls[0]]:
        fetcher(url)
    assert requests == [*urls, urls[0]]
