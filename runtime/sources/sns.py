"""Verifying Amazon SNS message signatures, and the SNS host check for certificate and subscription URLs.

SNS signs each message with an RSA key whose certificate it publishes at
`SigningCertURL`: `SignatureVersion` "1" is SHA1withRSA and "2" is
SHA256withRSA, over a string of `Key\\nValue\\n` lines of the signed fields in
byte order (AWS, "Verifying the signatures of Amazon SNS messages").

The certificate URL must be `https` on `sns.<region>.amazonaws.com` (or
`.amazonaws.com.cn`) before anything is fetched, so a forged message cannot
make the daemon fetch from a host of the sender's choosing.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import re
import threading
import urllib.parse
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from runtime.sources.base import Rejected
from runtime.sources.payload import kind_of, shown

# Signed fields per message type, already in byte order. `Subject` is signed only when present.
SIGNED_FIELDS = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
    "UnsubscribeConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
}
_OPTIONAL_FIELDS = {"Subject"}
_HASHES: dict[str, Callable[[], hashes.HashAlgorithm]] = {"1": hashes.SHA1, "2": hashes.SHA256}
_SNS_HOST = re.compile(r"sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?")
_MAX_CERTIFICATE_BYTES = 64 * 1024

# Returns the PEM bytes at an https URL; raises CertificateUnavailable when it cannot.
CertificateFetcher = Callable[[str], bytes]


class CertificateUnavailable(Exception):
    """The signing certificate could not be fetched: a transient failure, rejected with 503 so SNS retries."""


def is_sns_url(url: str) -> bool:
    """Return whether `url` is `https` on an SNS host, without credentials or a port other than 443."""
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError:
        return False
    return (
        parts.scheme == "https"
        and parts.username is None
        and parts.password is None
        and port in (None, 443)
        and _SNS_HOST.fullmatch(parts.hostname or "") is not None
    )


def string_to_sign(envelope: Mapping[str, Any]) -> bytes:
    """Build the canonical string SNS signs for this message.

    Raises:
        Rejected: 400 when the type is unknown or a signed field is missing or not a string.
    """
    message_type = envelope.get("Type")
    fields = SIGNED_FIELDS.get(message_type) if isinstance(message_type, str) else None
    if fields is None:
        found = shown(message_type) if isinstance(message_type, str) else kind_of(message_type)
        raise Rejected(400, f"cannot verify an SNS message of `Type` {found}")
    lines = []
    for name in fields:
        value = envelope.get(name)
        if value is None and name in _OPTIONAL_FIELDS:
            continue
        if not isinstance(value, str):
            raise Rejected(400, f"`{name}` of the SNS message must be a string, not {kind_of(value)}")
        lines.append(f"{name}\n{value}\n")
    return "".join(lines).encode("utf-8", "surrogatepass")


def verify_sns_signature(
    envelope: Mapping[str, Any],
    fetch_certificate: CertificateFetcher,
    *,
    now: datetime.datetime,
    max_age: datetime.timedelta | None = None,
) -> None:
    """Check that SNS signed this message; with `max_age`, also that its `Timestamp` is at most that old at `now`.

    Raises:
        Rejected: 400 for a malformed message, 403 for a bad URL, signature,
        certificate or age, 503 when the certificate cannot be fetched.
    """
    version = envelope.get("SignatureVersion")
    algorithm = _HASHES.get(version) if isinstance(version, str) else None
    if algorithm is None:
        found = shown(version) if isinstance(version, str) else kind_of(version)
        raise Rejected(403, f'unsupported SNS `SignatureVersion` {found}; expected "1" or "2"')
    url = envelope.get("SigningCertURL")
    if not isinstance(url, str) or not is_sns_url(url):
        found = shown(url) if isinstance(url, str) else kind_of(url)
        raise Rejected(403, f"`SigningCertURL` {found} is not an https URL on an sns.<region>.amazonaws.com host")
    signature = _signature_bytes(envelope.get("Signature"))
    signed = string_to_sign(envelope)
    if max_age is not None:
        _check_age(envelope.get("Timestamp"), now, max_age)

    public_key = _public_key(url, fetch_certificate)
    try:
        public_key.verify(signature, signed, padding.PKCS1v15(), algorithm())
    except InvalidSignature:
        raise Rejected(403, "invalid SNS signature") from None


def _signature_bytes(value: Any) -> bytes:
    if not isinstance(value, str) or not value:
        raise Rejected(403, "the SNS message has no `Signature`")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise Rejected(403, "`Signature` of the SNS message is not base64") from None


def _check_age(value: Any, now: datetime.datetime, max_age: datetime.timedelta) -> None:
    try:
        sent = datetime.datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        sent = None
    if sent is None or sent.tzinfo is None:
        raise Rejected(400, "`Timestamp` of the SNS message is not an ISO 8601 time with a zone")
    try:
        age = now - sent
    except OverflowError:
        age = None
    if age is None or not -max_age <= age <= max_age:
        raise Rejected(403, f"the SNS message was sent at {value}, more than {max_age} from now: a replay or a wrong clock")


def _public_key(url: str, fetch_certificate: CertificateFetcher) -> rsa.RSAPublicKey:
    try:
        pem = fetch_certificate(url)
    except (CertificateUnavailable, OSError) as error:
        raise Rejected(503, f"could not fetch the SNS signing certificate: {error}") from None
    try:
        certificate = x509.load_pem_x509_certificate(pem)
    except ValueError:
        raise Rejected(403, f"the SNS signing certificate at {url} is not a PEM X.509 certificate") from None
    key = certificate.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise Rejected(403, f"the SNS signing certificate at {url} does not hold an RSA key")
    return key


class HttpCertificateFetcher:
    """Fetch signing certificates with httpx GET, keeping the most recent few per URL.

    Redirects are not followed, because they could lead off the SNS host that
    was checked. `transport` replaces the network in tests.
    """

    def __init__(self, *, timeout: float = 5.0, max_entries: int = 32, transport: Any = None) -> None:
        self.timeout = timeout
        self.max_entries = max_entries
        self.transport = transport
        self._cache: OrderedDict[str, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def __call__(self, url: str) -> bytes:
        with self._lock:
            if url in self._cache:
                self._cache.move_to_end(url)
                return self._cache[url]
        if not is_sns_url(url):
            raise CertificateUnavailable(f"{url} is not an https URL on an SNS host")
        pem = self._get(url)
        with self._lock:
            self._cache[url] = pem
            while len(self._cache) > self.max_entries:
                self._cache.popitem(last=False)
        return pem

    def _get(self, url: str) -> bytes:
        import httpx

        try:
            with httpx.Client(timeout=self.timeout, follow_redirects=False, transport=self.transport) as client:
                with client.stream("GET", url) as response:
                    if response.status_code != 200:
                        raise CertificateUnavailable(f"GET {url} returned HTTP {response.status_code}")
                    return _read_capped(response.iter_bytes(), url)
        except httpx.HTTPError as error:
            raise CertificateUnavailable(f"GET {url} failed: {error}") from None


def _read_capped(chunks: Any, url: str) -> bytes:
    body = bytearray()
    for chunk in chunks:
        body.extend(chunk)
        if len(body) > _MAX_CERTIFICATE_BYTES:
            raise CertificateUnavailable(f"GET {url} returned more than {_MAX_CERTIFICATE_BYTES} bytes")
    return bytes(body)


default_certificate_fetcher = HttpCertificateFetcher()
