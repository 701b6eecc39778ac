"""`auth basic user "NAME" password secret("SECRET")`: parsing, lowering to the IR and the checker's diagnostics."""

from __future__ import annotations

from compiler import ast, ir
from compiler.api import check_text
from compiler.codes import explain
from compiler.diagnostics import Diagnostic, Severity
from compiler.parse import parse_text

ROUTE = 'receiver default { email "ops@example.com" }\nroute { receiver default }\n'


def errors(source: str) -> list[Diagnostic]:
    """Check a project of `ROUTE` and `source` (starting on line 3) and return its errors."""
    result = check_text(ROUTE + source, "x.irules")
    return [item for item in result.diagnostics if item.severity is Severity.ERROR]


def located(items: list[Diagnostic]) -> list[tuple[str, int, int]]:
    return [(item.code, item.span.line, item.span.column) for item in items]


def test_parse_keeps_user_and_password_options():
    module = parse_text('source cloudwatch {\n  auth basic user "sns" password secret("CW_PASSWORD")\n}\n', "s.irules")
    (prop,) = module.decls[0].items

    assert prop.key == "auth basic"
    assert (prop.key_span.line, prop.key_span.column) == (2, 3)
    user, password = prop.args
    assert (user.key, user.args[0].value) == ("user", "sns")
    assert (user.args[0].span.line, user.args[0].span.column) == (2, 19)
    assert password.key == "password"
    assert isinstance(password.args[0], ast.Secret)
    assert password.args[0].name.value == "CW_PASSWORD"


def test_lowers_to_basic_source_auth():
    ruleset = check_text(ROUTE + 'source ci { auth basic user "ci-bot" password secret("CI_PASSWORD") }\n', "x.irules").ruleset()
    (source,) = ruleset.sources

    assert source.auth == [ir.SourceAuth(kind="basic", user="ci-bot", secret=ir.SecretRef(secret="CI_PASSWORD"))]


def test_options_in_either_order_lower_alike():
    written = ROUTE + 'source ci { auth basic password secret("CI_PASSWORD") user "ci-bot" }\n'
    (source,) = check_text(written, "x.irules").ruleset().sources

    assert source.auth == [ir.SourceAuth(kind="basic", user="ci-bot", secret=ir.SecretRef(secret="CI_PASSWORD"))]


def test_basic_with_other_methods_is_valid():
    source = """source cloudwatch {
  auth basic user "sns" password secret("CW_PASSWORD")
  auth bearer secret("CW_TOKEN")
  confirm_subscriptions ["arn:aws:sns:eu-central-1:123456789012:alarms"]
}
source alertmanager { auth basic user "am" password secret("AM_PASSWORD") }
source grafana { auth basic user "grafana" password secret("GRAFANA_PASSWORD") }
source azure { auth basic user "azure" password secret("AZURE_PASSWORD") }
"""
    assert errors(source) == []


def test_missing_user_and_password():
    items = errors("source ci {\n  auth basic\n}\n")

    assert located(items) == [("IR0717", 4, 3), ("IR0717", 4, 3)]
    assert items[0].message == "`auth basic` of source `ci` has no `user`"
    assert items[1].message == "`auth basic` of source `ci` has no `password`"
    assert items[0].span.end_column == 13
    assert items[0].help == 'write `auth basic user "NAME" password secret("SECRET")`'


def test_password_in_plain_string_is_an_error():
    (item,) = errors('source ci {\n  auth basic user "ci" password "hunter2"\n}\n')

    assert located([item]) == [("IR0717", 4, 33)]
    assert item.message == "the password of `auth basic` in source `ci` is written in clear"
    assert item.help.startswith('keep it in a secret: `password secret("NAME")`')


def test_user_with_colon_is_an_error():
    (item,) = errors('source ci {\n  auth basic user "ci:bot" password secret("CI_PASSWORD")\n}\n')

    assert located([item]) == [("IR0717", 4, 19)]
    assert item.message == "user name `ci:bot` of `auth basic` in source `ci` contains `:`"


def test_user_with_control_character_is_an_error():
    (item,) = errors('source ci {\n  auth basic user "ci\\tbot" password secret("CI_PASSWORD")\n}\n')

    assert located([item]) == [("IR0717", 4, 19)]
    assert item.message == "user name of `auth basic` in source `ci` contains a control character"


def test_option_set_twice_is_an_error():
    (item,) = errors('source ci {\n  auth basic user "a" user "b" password secret("CI_PASSWORD")\n}\n')

    assert located([item]) == [("IR0315", 4, 23)]
    assert item.message == "`user` is set twice in `auth basic`"


def test_password_secret_name_is_checked():
    (item,) = errors('source ci {\n  auth basic user "ci" password secret("ci-password")\n}\n')

    assert located([item]) == [("IR0320", 4, 40)]


def test_hmac_on_alertmanager_suggests_basic_too():
    (item,) = errors('source alertmanager {\n  auth hmac secret("AM_KEY")\n}\n')

    assert item.code == "IR0715"
    assert 'auth basic user "..." password secret("...")' in item.help


def test_code_is_explained():
    text = explain("IR0717")

    assert text is not None
    assert text.startswith("IR0717: invalid `auth basic`")
    assert "cannot contain `:`" in text
