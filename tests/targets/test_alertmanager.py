"""The Alertmanager target: version-dependent keys, secrets as files, YAML that reads back exactly, amtool acceptance."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from compiler import ir
from compiler.api import check_path, check_text
from compiler.diagnostics import DiagnosticSink
from compiler.errors import TargetError
from compiler.loader import load_project
from targets import alertmanager
from targets._yaml import dump
from tests.conftest import EXAMPLES
from tests.targets.amtool import check_config, requires_amtool

SECRETS_DIR = "/run/irules/secrets"

# One project per target version: Teams with a plain and a secret URL, a webhook
# with a secret URL, and (from 0.27) a quoted UTF-8 label name in a matcher.
VERSIONED = """
settings {{
  alertmanager_version "{version}"
  secrets_dir "/run/irules/secrets"
  daemon_url "https://irules.example.com"
}}

receiver default {{
  teams "https://teams.example.com/hook"
}}

receiver hidden {{
  teams url secret("TEAMS_URL")
  webhook url secret("HOOK_URL")
  webhook "https://hooks.example.com/plain"
}}

route {{
  receiver default
  match {label} = "api" -> hidden
}}
"""

TRICKY_VALUES = [
    "13:00",
    "NO",
    "yes",
    "on",
    "0123",
    "1e3",
    "0x1F",
    "~",
    "null",
    " padded ",
    "a: b",
    "#hash",
    'quo"te',
    "back\\slash",
    "日本語",
]


def ruleset_of(source: str) -> ir.Ruleset:
    result = check_text(source, "x.irules")
    errors = [f"{item.code} {item.message}" for item in result.diagnostics if item.severity.name == "ERROR"]
    assert not errors, errors
    return result.ruleset()


def rendered(source: str) -> dict[str, Any]:
    return yaml.safe_load(alertmanager.render(ruleset_of(source)))


def versioned(version: str) -> dict[str, Any]:
    label = '"service.name"' if version >= "0.27" else "service"
    return rendered(VERSIONED.format(version=version, label=label))


def receiver(document: dict[str, Any], name: str) -> dict[str, Any]:
    return next(item for item in document["receivers"] if item["name"] == name)


# The daemon's own webhook, sent with basic credentials. The user name `yes` would read as a YAML boolean unquoted.
BASIC_AUTH_HOOK = """
settings {
  secrets_dir "/run/irules/secrets"
  daemon_url "https://irules.example.com"
  smtp "smtp.example.com:25" from "am@example.com"
}
receiver ops { email "ops@example.com" }
route { receiver ops }
source alertmanager { auth basic user "yes" password secret("AM_PASSWORD") }
"""


def example_cases() -> list[Any]:
    cases = []
    for folder in sorted(path for path in EXAMPLES.iterdir() if path.is_dir() and any(path.glob("*.irules"))):
        environments = load_project(folder, None, DiagnosticSink(), with_stdlib=False).environment_names
        for environment in [None, *environments]:
            cases.append(pytest.param(folder, environment, id=f"{folder.name}-{environment or 'base'}"))
    return cases


# ---------------------------------------------------------------- amtool


@requires_amtool
@pytest.mark.slow
@pytest.mark.parametrize(("folder", "environment"), example_cases())
def test_example_passes_amtool(folder: Path, environment: str | None, tmp_path: Path) -> None:
    config = tmp_path / "alertmanager.yml"
    config.write_text(alertmanager.render(check_path(folder, environment).ruleset()), encoding="utf-8")
    checked = check_config(config)
    assert checked.returncode == 0, checked.stdout + checked.stderr


@requires_amtool
@pytest.mark.slow
def test_version_0_25_output_passes_amtool(tmp_path: Path) -> None:
    config = tmp_path / "alertmanager.yml"
    config.write_text(alertmanager.render(ruleset_of(VERSIONED.format(version="0.25", label="service"))), encoding="utf-8")
    checked = check_config(config)
    assert checked.returncode == 0, checked.stdout + checked.stderr


@requires_amtool
@pytest.mark.slow
def test_tricky_values_pass_amtool(tmp_path: Path) -> None:
    matchers = ", ".join(f"value = {json.dumps(value, ensure_ascii=False)}" for value in TRICKY_VALUES)
    source = f'receiver default {{ email "ops@example.com" }}\nsettings {{ smtp "smtp.example.com:25" from "am@example.com" }}\nroute {{\n  receiver default\n  match {matchers} -> default\n}}\n'
    config = tmp_path / "alertmanager.yml"
    config.write_text(alertmanager.render(ruleset_of(source)), encoding="utf-8")
    checked = check_config(config)
    assert checked.returncode == 0, checked.stdout + checked.stderr


@requires_amtool
@pytest.mark.slow
def test_basic_auth_daemon_hook_passes_amtool(tmp_path: Path) -> None:
    config = tmp_path / "alertmanager.yml"
    config.write_text(alertmanager.render(ruleset_of(BASIC_AUTH_HOOK)), encoding="utf-8")
    checked = check_config(config)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "basic_auth" in config.read_text(encoding="utf-8")


# ---------------------------------------------------------------- target versions


def test_version_0_25_defers_teams_to_daemon() -> None:
    document = versioned("0.25")
    hidden = receiver(document, "hidden")
    assert "msteams_configs" not in receiver(document, "default")
    assert "msteams_configs" not in hidden
    assert hidden["webhook_configs"] == [
        {"url": "https://hooks.example.com/plain"},
        {"url": "https://irules.example.com/hooks/alertmanager", "send_resolved": True},
    ]


def test_version_0_26_adds_inline_teams() -> None:
    document = versioned("0.26")
    hidden = receiver(document, "hidden")
    assert receiver(document, "default")["msteams_configs"] == [{"webhook_url": "https://teams.example.com/hook"}]
    assert "msteams_configs" not in hidden
    assert hidden["webhook_configs"][0] == {"url_file": f"{SECRETS_DIR}/HOOK_URL"}


def test_version_0_27_adds_teams_webhook_url_file() -> None:
    hidden = receiver(versioned("0.27"), "hidden")
    assert hidden["msteams_configs"] == [{"webhook_url_file": f"{SECRETS_DIR}/TEAMS_URL"}]


def test_versions_differ_only_in_receivers() -> None:
    older, newer = versioned("0.25"), versioned("0.26")
    assert {key: value for key, value in older.items() if key != "receivers"} == {
        key: value for key, value in newer.items() if key != "receivers"
    }
    assert older["receivers"] != newer["receivers"]


def test_version_0_27_quotes_utf8_label_name() -> None:
    route = versioned("0.27")["route"]["routes"][0]
    assert route["matchers"] == ['"service.name"="api"']


def test_version_0_28_output_equals_0_27() -> None:
    assert versioned("0.28") == versioned("0.27")


def test_utf8_label_before_0_27_raises() -> None:
    # The checker rejects this project, and the target raises without relying on it.
    ruleset = ruleset_of(VERSIONED.format(version="0.27", label='"service.name"'))
    older = ruleset.model_copy(update={"settings": ruleset.settings.model_copy(update={"alertmanager_version": "0.26"})})
    with pytest.raises(TargetError) as raised:
        alertmanager.render(older)
    assert "`service.name` needs Alertmanager 0.27" in str(raised.value)


def test_utf8_label_before_0_27_checker_error() -> None:
    result = check_text(VERSIONED.format(version="0.26", label='"service.name"'), "x.irules")
    assert [item.code for item in result.diagnostics] == ["IR0303"]


def test_utf8_group_by_before_0_27_raises() -> None:
    ruleset = ruleset_of(VERSIONED.format(version="0.25", label="service"))
    route = ruleset.route.model_copy(update={"group_by": ["service.name"]})
    with pytest.raises(TargetError, match=r"needs Alertmanager 0\.27"):
        alertmanager.render(ruleset.model_copy(update={"route": route}))


# ---------------------------------------------------------------- secrets


def test_secrets_become_file_paths_under_secrets_dir() -> None:
    source = """
settings {
  secrets_dir "/run/irules/secrets"
  smtp "smtp.example.com:587" from "am@example.com" username "am" password secret("SMTP_PASSWORD")
  slack_api_url secret("SLACK_URL")
}
team ops {
  pagerduty key secret("OPS_KEY")
  slack "#ops" url secret("OPS_SLACK")
  email "ops@example.com"
}
route { receiver ops }
"""
    document = rendered(source)
    ops = receiver(document, "ops")
    assert document["global"]["smtp_auth_password_file"] == f"{SECRETS_DIR}/SMTP_PASSWORD"
    assert document["global"]["slack_api_url_file"] == f"{SECRETS_DIR}/SLACK_URL"
    assert ops["pagerduty_configs"] == [{"routing_key_file": f"{SECRETS_DIR}/OPS_KEY"}]
    assert ops["slack_configs"] == [{"channel": "#ops", "api_url_file": f"{SECRETS_DIR}/OPS_SLACK"}]
    assert "smtp_auth_password" not in document["global"]


def test_plain_slack_api_url_is_written_inline() -> None:
    source = 'settings { slack_api_url "https://hooks.slack.example.com/services/x" }\nreceiver chat { slack "#ops" }\nroute { receiver chat }\n'
    assert rendered(source)["global"]["slack_api_url"] == "https://hooks.slack.example.com/services/x"


# ---------------------------------------------------------------- channels Alertmanager cannot deliver


def test_email_without_smtp_raises_target_error() -> None:
    ruleset = ruleset_of('receiver mail { email "ops@example.com" }\nroute { receiver mail }\n')
    with pytest.raises(TargetError) as raised:
        alertmanager.render(ruleset)
    assert "receiver `mail` has an `email` channel" in str(raised.value)
    assert "`settings` has no `smtp` server" in str(raised.value)


def test_email_without_sender_raises_target_error() -> None:
    ruleset = ruleset_of(
        'settings { smtp "smtp.example.com:25" }\nreceiver mail { email "ops@example.com" }\nroute { receiver mail }\n'
    )
    with pytest.raises(TargetError, match="`smtp` in `settings` has no `from` address"):
        alertmanager.render(ruleset)


def test_slack_without_url_raises_target_error() -> None:
    ruleset = ruleset_of('receiver chat { slack "#ops" }\nroute { receiver chat }\n')
    with pytest.raises(TargetError) as raised:
        alertmanager.render(ruleset)
    assert "receiver `chat` has a `slack` channel without `url`" in str(raised.value)


def test_sms_without_daemon_url_raises_target_error() -> None:
    ruleset = ruleset_of('receiver phone { sms "+4930123456789" }\nroute { receiver phone }\n')
    with pytest.raises(TargetError) as raised:
        alertmanager.render(ruleset)
    assert "receiver `phone` has an `sms` channel that Alertmanager cannot send" in str(raised.value)
    assert "no `daemon_url`" in str(raised.value)


def test_sms_with_daemon_url_goes_to_daemon_hook() -> None:
    source = 'settings { daemon_url "https://irules.example.com/" }\nreceiver phone { sms "+4930123456789" }\nroute { receiver phone }\n'
    assert receiver(rendered(source), "phone") == {
        "name": "phone",
        "webhook_configs": [{"url": "https://irules.example.com/hooks/alertmanager", "send_resolved": True}],
    }


def test_basic_auth_goes_to_daemon_hook() -> None:
    (hook,) = receiver(rendered(BASIC_AUTH_HOOK), "ops")["webhook_configs"]
    assert hook == {
        "url": "https://irules.example.com/hooks/alertmanager",
        "send_resolved": True,
        "http_config": {"basic_auth": {"username": "yes", "password_file": f"{SECRETS_DIR}/AM_PASSWORD"}},
    }


@pytest.mark.parametrize(
    ("methods", "http_config"),
    [
        (
            'auth bearer secret("AM_TOKEN") auth basic user "am" password secret("AM_PASSWORD")',
            {"authorization": {"type": "Bearer", "credentials_file": f"{SECRETS_DIR}/AM_TOKEN"}},
        ),
        (
            'auth basic user "am" password secret("AM_PASSWORD") auth bearer secret("AM_TOKEN")',
            {"basic_auth": {"username": "am", "password_file": f"{SECRETS_DIR}/AM_PASSWORD"}},
        ),
    ],
    ids=["bearer-first", "basic-first"],
)
def test_daemon_hook_sends_first_declared_credentials(methods: str, http_config: dict[str, Any]) -> None:
    # Alertmanager rejects an http_config with both `authorization` and `basic_auth`.
    source = f"""
settings {{ secrets_dir "/run/irules/secrets" daemon_url "https://irules.example.com" }}
receiver phone {{ sms "+4930123456789" }}
route {{ receiver phone }}
source alertmanager {{ {methods} }}
"""
    (hook,) = receiver(rendered(source), "phone")["webhook_configs"]
    assert hook["http_config"] == http_config


def test_teams_before_0_26_without_daemon() -> None:
    ruleset = ruleset_of('receiver chat { teams "https://teams.example.com/hook" }\nroute { receiver chat }\n')
    with pytest.raises(TargetError, match=r"`msteams_configs` exists from 0\.26"):
        alertmanager.render(ruleset)


# ---------------------------------------------------------------- routes and YAML


def test_child_route_repeats_only_changed_options() -> None:
    source = """
defaults { group_by [alertname] group_wait 10s }
receiver a { webhook "https://a.example.com" }
receiver b { webhook "https://b.example.com" }
route {
  receiver a
  match team = "x" -> b { group_wait 1m30s }
  match team = "y" { continue }
}
"""
    first, second = rendered(source)["route"]["routes"]
    assert first == {"receiver": "b", "matchers": ['team="x"'], "group_wait": "1m30s"}
    assert second == {"matchers": ['team="y"'], "continue": True}


def test_yaml_round_trip_keeps_tricky_strings() -> None:
    document = {"values": TRICKY_VALUES, "nested": {"on": "13:00", "key.with.dots": "NO"}}
    assert yaml.safe_load(dump(document)) == document


def test_rendered_matcher_values_read_back_as_strings() -> None:
    matchers = ", ".join(f"value = {json.dumps(value, ensure_ascii=False)}" for value in TRICKY_VALUES)
    source = f'receiver default {{ webhook "https://a.example.com" }}\nroute {{\n  receiver default\n  match {matchers} -> default\n}}\n'
    route = rendered(source)["route"]["routes"][0]
    expected = [
        alertmanager.format_matcher(ir.Matcher(name="value", op=ir.MatchOp.EQUAL, value=value), (0, 25))
        for value in TRICKY_VALUES
    ]
    assert route["matchers"] == expected


def test_time_interval_times_stay_strings() -> None:
    source = """
receiver a { webhook "https://a.example.com" }
time_interval office { weekdays ["monday:friday"] times ["09:00-17:30"] }
route { receiver a  match team = "x" -> a { active_during [office] } }
"""
    interval = rendered(source)["time_intervals"][0]
    assert interval == {
        "name": "office",
        "time_intervals": [{"times": [{"start_time": "09:00", "end_time": "17:30"}], "weekdays": ["monday:friday"]}],
    }


@pytest.mark.parametrize(
    ("seconds", "text"), [(0, "0s"), (0.5, "500ms"), (30, "30s"), (90, "1m30s"), (3600, "1h"), (5400.25, "1h30m250ms")]
)
def test_format_duration(seconds: float, text: str) -> None:
    assert alertmanager.format_duration(seconds) == text


def test_pagerduty_details_carry_tested_labels() -> None:
    source = """
receiver pager { pagerduty key secret("KEY") }
route { receiver pager }
pagerduty {
  rule "db pages" {
    when label.team == "db" and alert.name =~ "Disk.*"
    priority P1
  }
}
"""
    config = receiver(rendered(source), "pager")["pagerduty_configs"][0]
    assert config["details"] == {"alertname": "{{ .CommonLabels.alertname }}", "team": "{{ .CommonLabels.team }}"}


def test_yaml_emitters_write_same_text():
    import yaml

    from targets import _yaml

    class PureDumper(yaml.SafeDumper):
        def ignore_aliases(self, data):
            return True

    PureDumper.add_representer(str, _yaml._represent_str)
    PureDumper.add_representer(dict, _yaml._represent_dict)
    document = {"route": {"receiver": "é\u2028x", "group_by": ["a", "13:00", "NO"], "continue": True}, "yes": ["0123", "x" * 300]}
    pure = yaml.dump(document, Dumper=PureDumper, sort_keys=False, allow_unicode=True, default_flow_style=False, width=1000)
    assert _yaml.dump(document) == pure
    assert yaml.safe_load(pure) == document
