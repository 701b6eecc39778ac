"""Authentication of webhook requests: bearer, HMAC, basic, `auth none`, several methods, missing secrets."""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac

import pytest

from compiler.api import check_text
from runtime.sources import Inbound, Rejected, authenticate
from runtime.sources import auth as auth_module

NOW = datetime.datetime(2024, 5, 14, 9, 0, tzinfo=datetime.UTC)
BODY = b'{"check": "lint"}'
# The basic password contains `:` and a non-ASCII letter: credentials split at the first `:` and are UTF-8.
SECRETS = {"TOKEN": "s3cret-token", "HOOK_KEY": "hmac-key", "GRAFANA_KEY": "g-key", "BASIC_PASSWORD": "pa:ss-wörd"}

RULES = """
team ops { webhook "https://hooks.example.com/o" }
route { receiver ops }
source bearer-only { auth bearer secret("TOKEN") }
source hmac-default { auth hmac secret("HOOK_KEY") }
source hmac-github { auth hmac secret("HOOK_KEY") header "X-Hub-Signature-256" algorithm sha256 prefix "sha256=" }
source hmac-sha1 { auth hmac secret("HOOK_KEY") header "X-Sig" algorithm sha1 }
source hmac-sha512 { auth hmac secret("HOOK_KEY") algorithm sha512 }
source either {
  auth bearer secret("TOKEN")
  auth hmac secret("HOOK_KEY")
}
source open { auth none }
source unset { auth bearer secret("NOT_SET") }
source no-auth { map { label.x = body.x } }
source grafana { auth hmac secret("GRAFANA_KEY") }
source basic-only { auth basic user "sns" password secret("BASIC_PASSWORD") }
source basic-or-bearer {
  auth basic user "sns" password secret("BASIC_PASSWORD")
  auth bearer secret("TOKEN")
}
source basic-unset { auth basic user "sns" password secret("NOT_SET") }
"""


@pytest.fixture(scope="module")
def ruleset() -> object:
    return check_text(RULES, "auth.irules").ruleset()


def check(source: str, headers: dict[str, str], ruleset: object, body: bytes = BODY, **options: object) -> None:
    authenticate(source, Inbound(body=body, headers=headers), ruleset, SECRETS.get, now=NOW, **options)


def rejection(source: str, headers: dict[str, str], ruleset: object, **options: object) -> Rejected:
    with pytest.raises(Rejected) as caught:
        check(source, headers, ruleset, **options)
    assert SECRETS["TOKEN"] not in caught.value.reason
    assert SECRETS["HOOK_KEY"] not in caught.value.reason
    assert SECRETS["BASIC_PASSWORD"] not in caught.value.reason
    credentials = headers.get("authorization", "").partition(" ")[2].strip()
    if credentials:
        assert credentials not in caught.value.reason
    return caught.value


def signature(key: str, body: bytes = BODY, algorithm: str = "sha256") -> str:
    return hmac.new(key.encode(), body, getattr(hashlib, algorithm)).hexdigest()


def basic(user: str, password: str, scheme: str = "Basic") -> dict[str, str]:
    """Return the Authorization header a sender builds from `user` and `password`, as RFC 7617 encodes them."""
    return {"authorization": f"{scheme} {base64.b64encode(f'{user}:{password}'.encode()).decode()}"}


def test_bearer_passes(ruleset: object) -> None:
    check("bearer-only", {"authorization": "Bearer s3cret-token"}, ruleset)
    check("bearer-only", {"authorization": "bearer  s3cret-token "}, ruleset)


def test_bearer_missing_is_unauthorized(ruleset: object) -> None:
    error = rejection("bearer-only", {}, ruleset)
    assert error.status == 401
    assert "missing Authorization header" in error.reason


def test_bearer_other_scheme_is_unauthorized(ruleset: object) -> None:
    assert rejection("bearer-only", {"authorization": "Basic dXNlcjpwYXNz"}, ruleset).status == 401


def test_bearer_wrong_is_forbidden(ruleset: object) -> None:
    error = rejection("bearer-only", {"authorization": "Bearer s3cret-tokem"}, ruleset)
    assert error.status == 403
    assert error.reason == "invalid bearer token"


def test_bearer_non_ascii_header_is_forbidden_not_crash(ruleset: object) -> None:
    assert rejection("bearer-only", {"authorization": "Bearer tökén\udcff"}, ruleset).status == 403


def test_header_names_matched_without_case(ruleset: object) -> None:
    check("bearer-only", {"Authorization": "Bearer s3cret-token"}, ruleset)


def test_hmac_default_header(ruleset: object) -> None:
    check("hmac-default", {"x-signature-256": signature("hmac-key")}, ruleset)
    check("hmac-default", {"x-signature-256": signature("hmac-key").upper()}, ruleset)


def test_hmac_missing_header_is_unauthorized(ruleset: object) -> None:
    error = rejection("hmac-default", {}, ruleset)
    assert error.status == 401
    assert "missing X-Signature-256 header" in error.reason


def test_hmac_wrong_digest_is_forbidden(ruleset: object) -> None:
    error = rejection("hmac-default", {"x-signature-256": signature("other-key")}, ruleset)
    assert error.status == 403
    assert "does not match the HMAC-SHA256 of the body" in error.reason


def test_hmac_covers_raw_body(ruleset: object) -> None:
    headers = {"x-signature-256": signature("hmac-key")}
    with pytest.raises(Rejected) as caught:
        check("hmac-default", headers, ruleset, body=b'{"check":  "lint"}')
    assert caught.value.status == 403


def test_hmac_prefix_and_header(ruleset: object) -> None:
    check("hmac-github", {"x-hub-signature-256": "sha256=" + signature("hmac-key")}, ruleset)
    error = rejection("hmac-github", {"x-hub-signature-256": signature("hmac-key")}, ruleset)
    assert error.status == 403
    assert "does not start with `sha256=`" in error.reason


@pytest.mark.parametrize(
    ("source", "header", "algorithm"), [("hmac-sha1", "x-sig", "sha1"), ("hmac-sha512", "x-signature-256", "sha512")]
)
def test_hmac_other_algorithms(ruleset: object, source: str, header: str, algorithm: str) -> None:
    check(source, {header: signature("hmac-key", algorithm=algorithm)}, ruleset)
    assert rejection(source, {header: signature("hmac-key")}, ruleset).status == 403


def test_grafana_uses_its_signature_header(ruleset: object) -> None:
    check("grafana", {"x-grafana-alerting-signature": signature("g-key")}, ruleset)
    assert rejection("grafana", {"x-signature-256": signature("g-key")}, ruleset).status == 401


def test_any_of_several_methods_passes(ruleset: object) -> None:
    check("either", {"authorization": "Bearer s3cret-token"}, ruleset)
    check("either", {"x-signature-256": signature("hmac-key")}, ruleset)


def test_several_methods_wrong_one_is_forbidden(ruleset: object) -> None:
    error = rejection("either", {"authorization": "Bearer nope"}, ruleset)
    assert error.status == 403
    assert error.reason == "invalid bearer token"


def test_several_methods_none_given_is_unauthorized(ruleset: object) -> None:
    error = rejection("either", {}, ruleset)
    assert error.status == 401
    assert "Authorization" in error.reason
    assert "X-Signature-256" in error.reason


def test_auth_none_passes(ruleset: object) -> None:
    check("open", {}, ruleset)


def test_missing_secret_is_503(ruleset: object, caplog: pytest.LogCaptureFixture) -> None:
    # The daemon's own configuration is at fault: the response asks the sender to retry and leaves out the secret's name.
    with caplog.at_level("ERROR", logger="irules.auth"):
        error = rejection("unset", {"authorization": "Bearer anything"}, ruleset)
    assert error.status == 503
    assert "retry later" in error.reason
    assert "NOT_SET" not in error.reason
    assert "anything" not in error.reason
    assert "secret NOT_SET of source unset is not set" in caplog.text


def test_source_without_auth_is_unauthorized(ruleset: object) -> None:
    error = rejection("no-auth", {}, ruleset)
    assert error.status == 401
    assert error.reason.startswith("source `no-auth` has no auth configured; declare")


def test_allow_unauthenticated(ruleset: object) -> None:
    check("no-auth", {}, ruleset, allow_unauthenticated=True)
    check("alertmanager", {}, ruleset, allow_unauthenticated=True)


def test_undeclared_builtin_is_unauthorized(ruleset: object) -> None:
    error = rejection("alertmanager", {"authorization": "Bearer s3cret-token"}, ruleset)
    assert error.status == 401
    assert "source `alertmanager` has no auth configured" in error.reason
    assert rejection("azure", {}, None).status == 401


def test_allow_unauthenticated_does_not_skip_declared_auth(ruleset: object) -> None:
    assert rejection("bearer-only", {}, ruleset, allow_unauthenticated=True).status == 401


def test_unknown_source_is_not_found(ruleset: object) -> None:
    assert rejection("missing-source", {}, ruleset).status == 404


# ---------------------------------------------------------------- basic


def test_basic_passes(ruleset: object) -> None:
    check("basic-only", basic("sns", "pa:ss-wörd"), ruleset)
    check("basic-only", basic("sns", "pa:ss-wörd", scheme="basic"), ruleset)


def test_basic_missing_header_is_unauthorized(ruleset: object) -> None:
    error = rejection("basic-only", {}, ruleset)
    assert error.status == 401
    assert error.reason == "missing Authorization header: expected `Basic` credentials, the base64 of `user:password`"


@pytest.mark.parametrize("value", ["Bearer s3cret-token", "Basic", "Digest username=sns"])
def test_basic_other_scheme_is_unauthorized(ruleset: object, value: str) -> None:
    error = rejection("basic-only", {"authorization": value}, ruleset)
    assert error.status == 401
    assert error.reason == (
        "the Authorization header does not carry `Basic` credentials: expected `Basic <base64 of user:password>`"
    )


@pytest.mark.parametrize("encoded", ["c25zOnBh*", "c25zOnBhc3M", "c25z OnBh", "c25zOnBhc3M=\udcff", "dXNlcjpwYXNzé"])
def test_basic_malformed_base64_is_unauthorized(ruleset: object, encoded: str) -> None:
    error = rejection("basic-only", {"authorization": f"Basic {encoded}"}, ruleset)
    assert error.status == 401
    assert error.reason == "the `Basic` credentials in the Authorization header are not valid base64"


def test_basic_without_colon_is_unauthorized(ruleset: object) -> None:
    error = rejection("basic-only", {"authorization": "Basic " + base64.b64encode(b"sns").decode()}, ruleset)
    assert error.status == 401
    assert error.reason == "the `Basic` credentials in the Authorization header have no `:` between user and password"


@pytest.mark.parametrize(
    ("user", "password"),
    [("sns", "pa:ss-word"), ("sns", "pa"), ("sns", ""), ("other", "pa:ss-wörd"), ("", "pa:ss-wörd"), ("SNS", "pa:ss-wörd")],
)
def test_basic_wrong_credentials_are_forbidden(ruleset: object, user: str, password: str) -> None:
    error = rejection("basic-only", basic(user, password), ruleset)
    assert error.status == 403
    assert error.reason == "invalid basic credentials"


def test_basic_compares_password_after_wrong_user(ruleset: object, monkeypatch: pytest.MonkeyPatch) -> None:
    # A check that stopped at a wrong user name would return sooner, and so tell which part was wrong.
    compared: list[tuple[bytes, bytes]] = []

    def compare_digest(received: bytes, expected: bytes) -> bool:
        compared.append((received, expected))
        return received == expected

    monkeypatch.setattr(auth_module.hmac, "compare_digest", compare_digest)
    assert rejection("basic-only", basic("other", "pa:ss-wörd"), ruleset).status == 403
    assert compared == [(b"other", b"sns"), ("pa:ss-wörd".encode(), "pa:ss-wörd".encode())]


def test_basic_or_bearer_passes_either(ruleset: object) -> None:
    check("basic-or-bearer", basic("sns", "pa:ss-wörd"), ruleset)
    check("basic-or-bearer", {"authorization": "Bearer s3cret-token"}, ruleset)


def test_basic_or_bearer_wrong_basic_is_forbidden(ruleset: object) -> None:
    error = rejection("basic-or-bearer", basic("sns", "wrong"), ruleset)
    assert error.status == 403
    assert error.reason == "invalid basic credentials"


def test_basic_missing_secret_is_503(ruleset: object) -> None:
    error = rejection("basic-unset", basic("sns", "anything"), ruleset)
    assert error.status == 503
    assert "NOT_SET" not in error.reason
