"""Authenticating webhook requests against the `auth` a ruleset declares for their source.

- `auth bearer secret("NAME")`: `Authorization: Bearer <value of NAME>`.
- `auth hmac secret("NAME")`: the lower-case hex HMAC of the raw body in a
  header (`X-Signature-256`, or `X-Grafana-Alerting-Signature` for the
  grafana source), after an optional `prefix` such as `sha256=`. The
  algorithm is sha256 unless `algorithm` names sha1 or sha512.
- `auth basic user "NAME" password secret("SECRET")`: `Authorization: Basic`
  and the base64 of `NAME:<value of SECRET>` (RFC 7617). User and password
  are both compared, each in constant time, so a response does not tell
  whether the user name was right.
- `auth none`: every request passes.

With several methods, a request passes when any one does. When none does, a
wrong credential gives 403, and otherwise (no credential, or a secret that is
not set) the status is 401. Messages name headers and secrets, never a value.
Comparisons take constant time.

SNS messages to the cloudwatch source are authenticated by their signature
alone. With `confirm_subscriptions` declared, their topic must also be one of
those listed (the subscription confirmation itself excepted), because any AWS
account can have SNS sign a message and post it here. The declared `auth` of
the cloudwatch source applies to its other requests: EventBridge events and
SNS raw message delivery, which carries no signature.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import logging
from collections.abc import Callable

from compiler import ir
from runtime.sources.base import Inbound, Rejected
from runtime.sources.cloudwatch import SUBSCRIPTION, load_document, request_form
from runtime.sources.names import BUILTIN_SOURCES, declared_source
from runtime.sources.payload import header, require_object
from runtime.sources.sns import CertificateFetcher, default_certificate_fetcher, verify_sns_signature

DEFAULT_HMAC_HEADER = "X-Signature-256"
GRAFANA_HMAC_HEADER = "X-Grafana-Alerting-Signature"
HMAC_ALGORITHMS = ("sha1", "sha256", "sha512")

SecretLookup = Callable[[str], str | None]

log = logging.getLogger("irules.auth")


def authenticate(
    source: str,
    inbound: Inbound,
    ruleset: ir.Ruleset | None,
    secrets: SecretLookup,
    *,
    now: datetime.datetime,
    allow_unauthenticated: bool = False,
    fetch_certificate: CertificateFetcher | None = None,
    sns_max_age: datetime.timedelta | None = None,
) -> None:
    """Return when the request may be processed; raise `Rejected` when it may not.

    `secrets(name)` returns a secret's value or `None`. `allow_unauthenticated`
    lets through requests to a source that declares no `auth` (for a daemon
    bound to a trusted network). `fetch_certificate` fetches SNS signing
    certificates (by default over HTTPS, cached per URL), and `sns_max_age`,
    when set, rejects SNS messages whose `Timestamp` is further than that from
    `now`.

    Raises:
        Rejected: 401 for missing credentials or no `auth` declared, 403 for
        wrong ones, 404 for an unknown source, 400 for an SNS message that
        cannot be read, 503 when an SNS certificate cannot be fetched or a
        secret the source needs is not set.
    """
    declaration = declared_source(ruleset, source)
    if declaration is None and source not in BUILTIN_SOURCES:
        raise Rejected(404, f"unknown source `{source}`: declare it with `source {source} {{ ... }}` in the rules")
    if source == "cloudwatch" and _verify_sns(inbound, declaration, fetch_certificate, now, sns_max_age):
        return

    methods = declaration.auth if declaration is not None else []
    if not methods:
        if allow_unauthenticated:
            return
        raise Rejected(401, _no_auth_reason(source))
    failures = []
    for method in methods:
        failure = _check_method(source, method, inbound, secrets)
        if failure is None:
            return
        failures.append(failure)
    codes = {code for code, _reason in failures}
    status = next(code for code in (403, 503, 401) if code in codes)
    raise Rejected(status, "; ".join(reason for code, reason in failures if code == status))


_reported_missing: set[tuple[str, str]] = set()


def _log_missing_secret(source: str, name: str) -> None:
    """Log each missing secret once per process as an error, later requests at debug level."""
    level = logging.DEBUG if (source, name) in _reported_missing else logging.ERROR
    _reported_missing.add((source, name))
    log.log(
        level,
        "secret %s of source %s is not set (no environment variable and no file in the secrets folder); requests get 503",
        name,
        source,
    )


def _no_auth_reason(source: str) -> str:
    reason = (
        f'source `{source}` has no auth configured; declare `auth bearer secret("NAME")`, '
        f'`auth hmac secret("NAME")`, `auth basic user "USER" password secret("NAME")` '
        f"or `auth none` in `source {source} {{ ... }}`"
    )
    if source == "cloudwatch":
        reason += " (SNS messages need none: their signature is verified)"
    return reason


def _verify_sns(
    inbound: Inbound,
    declaration: ir.Source | None,
    fetch_certificate: CertificateFetcher | None,
    now: datetime.datetime,
    max_age: datetime.timedelta | None,
) -> bool:
    """Verify an SNS message and return True, or return False when the request is not one."""
    document = load_document(inbound)
    if request_form(inbound, document) != "sns":
        return False
    envelope = require_object(document, "body")
    verify_sns_signature(envelope, fetch_certificate or default_certificate_fetcher, now=now, max_age=max_age)
    allowed = declaration.confirm_subscriptions if declaration is not None else []
    topic = envelope.get("TopicArn")
    if allowed and envelope.get("Type") != SUBSCRIPTION and topic not in allowed:
        raise Rejected(403, "SNS topic is not listed in `confirm_subscriptions` of `source cloudwatch`")
    return True


def _check_method(source: str, method: ir.SourceAuth, inbound: Inbound, secrets: SecretLookup) -> tuple[int, str] | None:
    if method.kind == "none":
        return None
    if method.secret is None:
        return 401, f"`auth {method.kind}` of source `{source}` names no secret"
    name = method.secret.secret
    secret = secrets(name)
    if secret is None:
        # The daemon's configuration is at fault, not the sender: 503 makes Alertmanager and
        # SNS retry until the secret is set. The response does not name the secret, because
        # the caller is not authenticated; the log does.
        _log_missing_secret(source, name)
        return 503, f"the daemon cannot check credentials for source `{source}` now: its secret is not configured; retry later"
    if method.kind == "bearer":
        return _check_bearer(inbound, secret)
    if method.kind == "hmac":
        return _check_hmac(source, method, inbound, secret)
    if method.kind == "basic":
        return _check_basic(source, method, inbound, secret)
    return 401, f"unsupported auth method `{method.kind}` for source `{source}`"


def _check_bearer(inbound: Inbound, secret: str) -> tuple[int, str] | None:
    value = header(inbound, "authorization")
    if value is None:
        return 401, "missing Authorization header: expected `Bearer <token>`"
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return 401, "the Authorization header is not a bearer token: expected `Bearer <token>`"
    if not hmac.compare_digest(_bytes(token.strip()), _bytes(secret)):
        return 403, "invalid bearer token"
    return None


def _check_basic(source: str, method: ir.SourceAuth, inbound: Inbound, password: str) -> tuple[int, str] | None:
    if method.user is None:
        return 401, f"`auth basic` of source `{source}` names no user"
    value = header(inbound, "authorization")
    if value is None:
        # The HTTP layer adds `WWW-Authenticate: Basic ...` to this 401 (`runtime.daemon.app.challenge`):
        # SNS sends the credentials of a subscription URL only after that challenge.
        return 401, "missing Authorization header: expected `Basic` credentials, the base64 of `user:password`"
    scheme, _, encoded = value.strip().partition(" ")
    if scheme.lower() != "basic" or not encoded.strip():
        return 401, "the Authorization header does not carry `Basic` credentials: expected `Basic <base64 of user:password>`"
    try:
        credentials = base64.b64decode(encoded.strip(), validate=True)
    except ValueError:
        # Raised as binascii.Error (a ValueError) for a bad alphabet or padding, and as ValueError for text that is not ASCII.
        return 401, "the `Basic` credentials in the Authorization header are not valid base64"
    user, colon, received_password = credentials.partition(b":")
    if not colon:
        return 401, "the `Basic` credentials in the Authorization header have no `:` between user and password"
    # Both comparisons always run, so the time taken does not tell whether the user name was right.
    user_matches = hmac.compare_digest(user, _bytes(method.user))
    password_matches = hmac.compare_digest(received_password, _bytes(password))
    if not (user_matches and password_matches):
        return 403, "invalid basic credentials"
    return None


def _check_hmac(source: str, method: ir.SourceAuth, inbound: Inbound, secret: str) -> tuple[int, str] | None:
    algorithm = (method.algorithm or "sha256").lower().replace("-", "")
    if algorithm not in HMAC_ALGORITHMS:
        return 401, f"unsupported hmac algorithm `{method.algorithm}` for source `{source}`; use sha1, sha256 or sha512"
    name = method.header or (GRAFANA_HMAC_HEADER if source == "grafana" else DEFAULT_HMAC_HEADER)
    value = header(inbound, name)
    if value is None:
        return 401, f"missing {name} header: expected the hex HMAC-{algorithm.upper()} of the body"
    provided = value.strip()
    prefix = method.prefix or ""
    if not provided.lower().startswith(prefix.lower()):
        return 403, f"the {name} header does not start with `{prefix}`"
    provided = provided[len(prefix) :].strip().lower()
    expected = hmac.new(_bytes(secret), inbound.body, getattr(hashlib, algorithm)).hexdigest()
    if not hmac.compare_digest(_bytes(provided), expected.encode()):
        return 403, f"the {name} header does not match the HMAC-{algorithm.upper()} of the body"
    return None


def _bytes(text: str) -> bytes:
    # `surrogatepass` cannot fail, whatever a header decoder left in the text.
    return text.encode("utf-8", "surrogatepass")
