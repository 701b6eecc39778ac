"""The Alertmanager importer: matcher parsing, the generated files, secrets, renames, notes and input errors."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compiler import ir
from compiler.am_matchers import MatcherSyntaxError, parse_matchers
from compiler.api import check_path, check_text
from compiler.diagnostics import Severity
from compiler.fmt import format_source
from compiler.importer import ImportFailed, ImportResult, import_alertmanager

AMCONFIGS = sorted((Path(__file__).parents[1] / "targets" / "amconfigs").glob("*.yml"))


def imported(yaml_text: str) -> ImportResult:
    return import_alertmanager(textwrap.dedent(yaml_text))


def with_route(routes: str, extra: str = "") -> str:
    """A configuration whose root route sends to `default` and has the child routes `routes` (YAML list items)."""
    return f"route:\n  receiver: default\n  routes:\n{textwrap.indent(textwrap.dedent(routes), '    ')}receivers: [{{name: default}}]\n{extra}"


def route_text(result: ImportResult) -> str:
    return result.files["routes.irules"]


def error_codes(result: ImportResult) -> list[str]:
    checked = check_text(result.text, "imported.irules")
    return [item.code for item in checked.diagnostics if item.severity is Severity.ERROR]


def matcher(name: str, op: str, value: str) -> ir.Matcher:
    return ir.Matcher(name=name, op=ir.MatchOp(op), value=value)


# ---------------------------------------------------------------- matcher strings


def test_brace_list_gives_two_matchers():
    assert parse_matchers('{env="prod", region=~"eu-.*"}') == [matcher("env", "=", "prod"), matcher("region", "=~", "eu-.*")]


def test_comma_inside_quotes_stays_in_value():
    assert parse_matchers('service != "processing,speech"') == [matcher("service", "!=", "processing,speech")]


def test_comma_outside_quotes_splits_matchers():
    with pytest.raises(MatcherSyntaxError) as caught:
        parse_matchers("service != processing,speech")
    assert str(caught.value) == "bad matcher format: speech"


def test_single_quotes_are_part_of_value():
    assert parse_matchers("label = 'atlas-test'") == [matcher("label", "=", "'atlas-test'")]


def test_quoted_value_unescapes_quote_and_backslash():
    assert parse_matchers(r'path = "C:\\temp \"x\""') == [matcher("path", "=", 'C:\\temp "x"')]


def test_unknown_escape_keeps_backslash():
    assert parse_matchers(r'path=~".*\.log"') == [matcher("path", "=~", r".*\.log")]


def test_unquoted_value_is_unescaped_too():
    assert parse_matchers(r"a=x\ny") == [matcher("a", "=", "x\ny")]


def test_trailing_comma_is_ignored():
    assert parse_matchers('a="b",') == [matcher("a", "=", "b")]


def test_empty_matcher_between_commas_is_rejected():
    with pytest.raises(MatcherSyntaxError) as caught:
        parse_matchers('a="b",,c="d"')
    assert str(caught.value) == "bad matcher format: "


def test_unclosed_quote_is_rejected():
    with pytest.raises(MatcherSyntaxError) as caught:
        parse_matchers('a="b')
    assert str(caught.value) == 'matcher value contains unescaped double quote: "b'


def test_quote_inside_unquoted_value_is_rejected():
    with pytest.raises(MatcherSyntaxError) as caught:
        parse_matchers('a=b"c')
    assert str(caught.value) == 'matcher value contains unescaped double quote: b"c'


def test_space_before_brace_keeps_the_brace():
    with pytest.raises(MatcherSyntaxError) as caught:
        parse_matchers(' {a="b"}')
    assert str(caught.value) == 'bad matcher format: {a="b"'


def test_colon_in_label_name_is_accepted():
    assert parse_matchers('job:rate="1"') == [matcher("job:rate", "=", "1")]


# ---------------------------------------------------------------- files and formatting


def test_output_is_split_into_files():
    result = imported(
        """\
        global: {resolve_timeout: 5m}
        route: {receiver: default, group_wait: 10s}
        receivers: [{name: default}]
        inhibit_rules: [{source_matchers: [a="1"], target_matchers: [a="2"]}]
        time_intervals: [{name: night, time_intervals: [{times: [{start_time: '00:00', end_time: '06:00'}]}]}]
        """
    )
    assert list(result.files) == [
        "settings.irules",
        "receivers.irules",
        "routes.irules",
        "inhibit.irules",
        "time_intervals.irules",
    ]


def test_files_without_content_are_left_out():
    result = imported("route: {receiver: default}\nreceivers: [{name: default}]\n")
    assert list(result.files) == ["receivers.irules", "routes.irules"]


@pytest.mark.parametrize("source", AMCONFIGS, ids=[path.stem for path in AMCONFIGS])
def test_generated_files_are_formatted_without_comments(source: Path):
    result = import_alertmanager(source.read_text(encoding="utf-8"))
    for name, text in result.files.items():
        assert format_source(text, name) == text, name
        assert not any(line.lstrip().startswith("#") for line in text.splitlines()), name


@pytest.mark.slow
@pytest.mark.parametrize("source", AMCONFIGS, ids=[path.stem for path in AMCONFIGS])
def test_imported_project_checks_without_errors(source: Path, tmp_path: Path):
    for name, text in import_alertmanager(source.read_text(encoding="utf-8")).files.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    result = check_path(tmp_path)
    assert [item.message for item in result.diagnostics if item.severity is Severity.ERROR] == []


# ---------------------------------------------------------------- routes


def test_matcher_forms_join_on_route():
    result = imported(
        with_route(
            """\
            - match: {team: ops}
              match_re: {severity: "critical|warning"}
              matchers: ['cluster!="test"']
              receiver: default
            """
        )
    )
    assert 'match team = "ops", severity =~ "critical|warning", cluster != "test" -> default' in route_text(result)


def test_route_options_are_converted():
    result = imported(
        with_route(
            """\
            - matchers: [a="1"]
              continue: true
              group_by: [alertname, '...']
              group_wait: 0s
              repeat_interval: 1h30m
              active_time_intervals: [night]
            """,
            "time_intervals: [{name: night, time_intervals: [{weekdays: [monday]}]}]\n",
        )
    )
    assert route_text(result) == (
        "route {\n"
        "  receiver default\n"
        '  match a = "1" {\n'
        "    continue\n"
        "    active_during [night]\n"
        '    group_by [alertname, "..."]\n'
        "    group_wait 0s\n"
        "    repeat_interval 1h30m\n"
        "  }\n"
        "}\n"
    )


def test_route_without_matchers_becomes_plain_route():
    result = imported(with_route("- receiver: default\n"))
    assert "  route -> default\n" in route_text(result)


def test_root_timing_becomes_defaults():
    result = imported("route: {receiver: default, group_by: [a], group_interval: 1m}\nreceivers: [{name: default}]\n")
    assert result.files["settings.irules"] == "defaults {\n  group_by [a]\n  group_interval 1m\n}\n"


def test_years_become_days():
    result = imported("route: {receiver: default, repeat_interval: 1y2d}\nreceivers: [{name: default}]\n")
    assert "repeat_interval 367d" in result.files["settings.irules"]


def test_bare_zero_duration_is_zero_seconds():
    result = imported("route: {receiver: default, group_wait: 0}\nreceivers: [{name: default}]\n")
    assert "group_wait 0s" in result.files["settings.irules"]


def test_invalid_duration_is_rejected():
    with pytest.raises(ImportFailed) as caught:
        imported("route: {receiver: default, group_wait: 5 m}\nreceivers: [{name: default}]\n")
    assert str(caught.value) == "`route.group_wait`: not a valid duration string: '5 m'"


def test_bad_matcher_names_its_place():
    with pytest.raises(ImportFailed) as caught:
        imported(with_route("- matchers: [a=\"1\", 'b != x,y']\n"))
    assert str(caught.value) == "`route.routes[0].matchers[1]`: bad matcher format: y"


def test_label_name_outside_identifiers_is_quoted():
    result = imported(with_route("- matchers: ['job:rate=\"1\"']\n"))
    assert 'match "job:rate" = "1"' in route_text(result)


def test_unknown_route_key_is_noted():
    result = imported(with_route('- matchers: [a="1"]\n  recevier: default\n'))
    assert result.notes == ["`route.routes[0]`: `recevier` is not a route setting and was ignored"]


# ---------------------------------------------------------------- names


def test_receiver_name_with_dot_is_renamed():
    result = imported("route: {receiver: web.hook}\nreceivers: [{name: web.hook}]\n")
    assert result.renamed == {"web.hook": "web-hook"}
    assert "receiver web-hook {}" in result.files["receivers.irules"]
    assert "renamed receiver `web.hook` to `web-hook`, because .irules names are identifiers" in result.notes


def test_rename_avoids_an_existing_name():
    result = imported("route: {receiver: web.hook}\nreceivers: [{name: web-hook}, {name: web.hook}]\n")
    assert result.renamed == {"web.hook": "web-hook-2"}


def test_name_starting_with_digit_gets_kind_prefix():
    result = imported("route: {receiver: 2nd}\nreceivers: [{name: 2nd}]\n")
    assert result.renamed == {"2nd": "receiver-2nd"}


def test_time_interval_name_is_renamed_everywhere():
    result = imported(
        with_route(
            '- matchers: [a="1"]\n  mute_time_intervals: [off hours]\n',
            "time_intervals: [{name: off hours, time_intervals: [{weekdays: [sunday]}]}]\n",
        )
    )
    assert result.renamed_time_intervals == {"off hours": "off-hours"}
    assert "mute_during [off-hours]" in route_text(result)
    assert result.files["time_intervals.irules"].startswith("time_interval off-hours {")


# ---------------------------------------------------------------- receivers and secrets


RECEIVERS = """\
global:
  smtp_smarthost: smtp.example.com:587
  smtp_from: alerts@example.com
  smtp_auth_password_file: /run/secrets/smtp-password
  slack_api_url: https://hooks.slack.com/services/T0/B0/inline-global-url
route: {receiver: ops}
receivers:
  - name: ops
    email_configs: [{to: ops@example.com, send_resolved: yes}]
    slack_configs: [{channel: "#ops"}, {api_url_file: /run/secrets/ops-slack}]
    pagerduty_configs: [{routing_key: inline-routing-key}]
    webhook_configs: [{url: "https://hooks.example.com/a", max_alerts: 5}]
"""


def test_receiver_channels_are_converted():
    result = imported(RECEIVERS)
    assert result.files["receivers.irules"] == (
        "receiver ops {\n"
        '  email "ops@example.com" send_resolved true\n'
        '  slack "#ops"\n'
        '  slack url secret("OPS_SLACK")\n'
        '  pagerduty key secret("OPS_PAGERDUTY_KEY")\n'
        '  webhook "https://hooks.example.com/a"\n'
        "}\n"
    )


def test_secrets_are_listed_with_their_origin():
    result = imported(RECEIVERS)
    assert [(secret.name, secret.origin) for secret in result.secrets] == [
        ("SMTP_PASSWORD", "the file `/run/secrets/smtp-password` (`smtp_auth_password_file` of `global`)"),
        ("SLACK_API_URL", "`slack_api_url` of `global`, written inline in the configuration"),
        ("OPS_SLACK", "the file `/run/secrets/ops-slack` (`api_url_file` of the Slack channel of receiver `ops`)"),
        ("OPS_PAGERDUTY_KEY", "`routing_key` of the PagerDuty channel of receiver `ops`, written inline in the configuration"),
    ]


def test_inline_secret_values_are_not_written():
    result = imported(RECEIVERS)
    assert "inline-routing-key" not in result.text
    assert "inline-global-url" not in result.text


def test_one_secret_file_is_one_secret():
    result = imported(
        """\
        route: {receiver: a}
        receivers:
          - {name: a, pagerduty_configs: [{routing_key_file: /s/pd-key}]}
          - {name: b, pagerduty_configs: [{routing_key_file: /s/pd-key}]}
          - {name: c, pagerduty_configs: [{routing_key_file: /other/pd-key}]}
        """
    )
    assert [secret.name for secret in result.secrets] == ["PD_KEY", "PD_KEY_2"]


def test_channel_settings_left_out_are_noted():
    result = imported(RECEIVERS)
    assert "receiver `ops`: webhook_configs settings `max_alerts` were not converted" in result.notes


def test_unsupported_receiver_kind_is_noted():
    result = imported("route: {receiver: a}\nreceivers: [{name: a, opsgenie_configs: [{api_key: x}]}]\n")
    assert result.notes == ["receiver `a`: `opsgenie_configs` has no .irules channel and was not converted"]


def test_unconverted_global_settings_are_noted():
    result = imported("global: {http_config: {}, smtp_from: a@example.com}\nroute: {receiver: a}\nreceivers: [{name: a}]\n")
    assert result.notes == [
        "global setting `smtp_from` was not converted, because `smtp_smarthost` is not set",
        "global setting `http_config` was not converted",
    ]


def test_slack_channel_without_hash_gets_one():
    result = imported("route: {receiver: a}\nreceivers: [{name: a, slack_configs: [{channel: ops}]}]\n")
    assert 'slack "#ops"' in result.files["receivers.irules"]
    assert "receiver `a`: Slack channel `ops` is written as `#ops`; check that this is the channel meant" in result.notes


def test_slack_without_channel_posts_through_global_url():
    result = imported(
        "global: {slack_api_url_file: /s/slack}\nroute: {receiver: a}\nreceivers: [{name: a, slack_configs: [{}]}]\n"
    )
    assert 'slack url secret("SLACK")' in result.files["receivers.irules"]


def test_teams_channel_raises_alertmanager_version():
    result = imported("route: {receiver: a}\nreceivers: [{name: a, msteams_configs: [{webhook_url_file: /s/teams}]}]\n")
    assert 'alertmanager_version "0.27"' in result.files["settings.irules"]
    assert 'teams url secret("TEAMS")' in result.files["receivers.irules"]


def test_receiver_without_name_is_rejected():
    with pytest.raises(ImportFailed) as caught:
        imported("route: {receiver: a}\nreceivers: [{email_configs: []}]\n")
    assert str(caught.value) == "`receivers[0]` has no `name`"


# ---------------------------------------------------------------- inhibit rules and time intervals


def test_old_and_new_inhibit_forms_are_converted():
    result = imported(
        """\
        route: {receiver: a}
        receivers: [{name: a}]
        inhibit_rules:
          - {source_match: {alertname: ClusterDown}, target_match_re: {alertname: ".+"}, equal: [cluster]}
          - {source_matchers: [severity="critical"], target_matchers: ['severity=~"warning|info"']}
        """
    )
    assert result.files["inhibit.irules"] == (
        'inhibit alertname = "ClusterDown" silences alertname =~ ".+" on [cluster]\n\n'
        'inhibit severity = "critical" silences severity =~ "warning|info"\n'
    )


def test_inhibit_side_without_matchers_matches_every_alert():
    result = imported('route: {receiver: a}\nreceivers: [{name: a}]\ninhibit_rules: [{target_matchers: [a="b"]}]\n')
    assert result.files["inhibit.irules"] == 'inhibit alertname =~ ".*" silences a = "b"\n'
    assert result.notes == [
        '`inhibit_rules[0]` has no source matchers, so every alert is a source; written as `alertname =~ ".*"`'
    ]


def test_single_period_is_written_inline():
    result = imported(
        """\
        route: {receiver: a}
        receivers: [{name: a}]
        time_intervals:
          - name: hours
            time_intervals:
              - {times: [{start_time: '09:00', end_time: '17:00'}], weekdays: ['monday:friday'], location: Europe/Berlin}
        """
    )
    assert result.files["time_intervals.irules"] == (
        'time_interval hours {\n  times ["09:00-17:00"]\n  weekdays ["monday:friday"]\n  location "Europe/Berlin"\n}\n'
    )


def test_empty_period_stays_a_period():
    result = imported("route: {receiver: a}\nreceivers: [{name: a}]\ntime_intervals: [{name: always, time_intervals: [{}]}]\n")
    assert result.files["time_intervals.irules"] == "time_interval always {\n  period {}\n}\n"


def test_deprecated_mute_time_intervals_become_time_intervals():
    result = imported(
        "route: {receiver: a}\nreceivers: [{name: a}]\nmute_time_intervals: [{name: w, time_intervals: [{weekdays: [sunday]}]}]\n"
    )
    assert result.files["time_intervals.irules"] == 'time_interval w {\n  weekdays ["sunday"]\n}\n'
    assert result.notes == ["the deprecated top-level `mute_time_intervals` became `time_interval` declarations"]


def test_time_range_ending_before_start_is_rejected():
    with pytest.raises(ImportFailed) as caught:
        imported(
            "route: {receiver: a}\nreceivers: [{name: a}]\n"
            "time_intervals: [{name: n, time_intervals: [{times: [{start_time: '22:00', end_time: '06:00'}]}]}]\n"
        )
    assert str(caught.value).startswith(
        "`time_intervals[0].time_intervals[0].times[0]`: start time cannot be equal or greater than end time (22:00 to 06:00)"
    )


def test_malformed_time_is_left_for_the_checker():
    result = imported(
        'route: {receiver: a, routes: [{matchers: [a="1"], mute_time_intervals: [n]}]}\nreceivers: [{name: a}]\n'
        "time_intervals: [{name: n, time_intervals: [{times: [{start_time: '9:00', end_time: '17:00'}]}]}]\n"
    )
    assert 'times ["9:00-17:00"]' in result.files["time_intervals.irules"]
    assert error_codes(result) == ["IR0309"]


# ---------------------------------------------------------------- invalid input


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("route: {receiver: a\n", "invalid YAML: expected ',' or '}', but got '<stream end>' (line 2, column 1)"),
        ("- route\n", "not an Alertmanager configuration: the top level must be a mapping with a `route`"),
        ("", "not an Alertmanager configuration: the top level must be a mapping with a `route`"),
        ("receivers: []\n", "not an Alertmanager configuration: `route` is missing or not a mapping"),
        ("route: {receiver: a}\nroute: {receiver: b}\n", "invalid YAML: key `route` is given twice in one mapping (line 2)"),
        ("route: {receiver: a, routes: {x: 1}}\n", "`route.routes` must be a list, not a mapping"),
        (
            "route: {receiver: a}\nreceivers: [{name: a, email_configs: [{to: [x]}]}]\n",
            "`receivers[0].email_configs[0].to` must be a string, not a list",
        ),
        ('route: {receiver: a, matchers: [env="prod"]}\n', "`route`: root route must not have any matchers"),
    ],
)
def test_invalid_input_is_rejected_with_reason(text: str, message: str):
    with pytest.raises(ImportFailed) as caught:
        import_alertmanager(text)
    assert str(caught.value) == message


def test_yaml_error_message_leaves_out_the_line():
    with pytest.raises(ImportFailed) as caught:
        import_alertmanager("route: {receiver: a}\nreceivers:\n  - name: a\n    pagerduty_configs: [{routing_key: s3cr3t: x}]\n")
    assert "s3cr3t" not in str(caught.value)


def test_unknown_top_level_key_is_noted():
    result = imported("route: {receiver: a}\nreceivers: [{name: a}]\nroutes: []\n")
    assert result.notes == ["top-level key `routes` is not an Alertmanager 0.25 setting and was ignored"]


# ---------------------------------------------------------------- robustness

# Strategies for random but roughly shaped configurations: most draws get past the first type check.

ANY_TEXTS = st.one_of(
    st.sampled_from(["", "a", "b", "web.hook", "2nd", "0", "1y", "5m", "09:00", "24:00", "monday:friday", '"', "{", "ü", "#ops"]),
    st.text(max_size=6),
)
ANY_MATCHER_TEXTS = st.one_of(
    ANY_TEXTS,
    st.sampled_from(['a="1"', "b!~x.*", '{c="2", d=~"e|f"}', "svc != p,q", "l = 'x'", 'k="v\\"', "e=", "=x"]),
)
ANY_SCALARS = st.one_of(st.none(), ANY_TEXTS)
ANY_VALUES = st.recursive(
    ANY_SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(ANY_TEXTS, inner, max_size=3), max_leaves=8
)
ANY_ROUTE_FIELDS = {
    "receiver": ANY_TEXTS,
    "continue": st.sampled_from(["true", "false", "yes", None]),
    "match": st.dictionaries(ANY_TEXTS, ANY_SCALARS, max_size=2),
    "match_re": st.dictionaries(ANY_TEXTS, ANY_SCALARS, max_size=2),
    "matchers": st.lists(ANY_MATCHER_TEXTS, max_size=2),
    "group_by": st.lists(ANY_TEXTS, max_size=3),
    "group_wait": ANY_TEXTS,
    "repeat_interval": ANY_TEXTS,
    "mute_time_intervals": st.lists(ANY_TEXTS, max_size=2),
    "active_time_intervals": st.lists(ANY_TEXTS, max_size=2),
    "unknown": ANY_VALUES,
}
ANY_CHILD_ROUTES = st.recursive(
    st.fixed_dictionaries({}, optional=ANY_ROUTE_FIELDS),
    lambda inner: st.fixed_dictionaries({"routes": st.lists(inner, max_size=3)}, optional=ANY_ROUTE_FIELDS),
    max_leaves=6,
)
ANY_ROOT_ROUTES = st.fixed_dictionaries(
    {"receiver": ANY_TEXTS, "routes": st.lists(ANY_CHILD_ROUTES, max_size=3)},
    optional={key: ANY_ROUTE_FIELDS[key] for key in ("continue", "group_by", "group_wait", "mute_time_intervals")},
)
ANY_CHANNEL_CONFIGS = st.lists(
    st.dictionaries(
        st.sampled_from(
            [
                "to",
                "url",
                "url_file",
                "channel",
                "api_url",
                "routing_key",
                "service_key_file",
                "webhook_url",
                "send_resolved",
                "title",
            ]
        ),
        ANY_SCALARS,
        max_size=3,
    ),
    max_size=2,
)
ANY_RECEIVERS = st.lists(
    st.fixed_dictionaries(
        {"name": ANY_TEXTS},
        optional={
            key: ANY_CHANNEL_CONFIGS
            for key in (
                "email_configs",
                "slack_configs",
                "pagerduty_configs",
                "webhook_configs",
                "msteams_configs",
                "opsgenie_configs",
            )
        },
    ),
    max_size=3,
)
ANY_PERIODS = st.lists(
    st.fixed_dictionaries(
        {},
        optional={
            "times": st.lists(st.fixed_dictionaries({"start_time": ANY_TEXTS, "end_time": ANY_TEXTS}), max_size=2),
            "weekdays": st.lists(ANY_TEXTS, max_size=2),
            "location": ANY_TEXTS,
            "years": st.lists(ANY_TEXTS, max_size=1),
        },
    ),
    max_size=2,
)
ANY_INTERVALS = st.lists(st.fixed_dictionaries({"name": ANY_TEXTS, "time_intervals": ANY_PERIODS}), max_size=2)
ANY_SIDES = {
    f"{side}_{form}": ANY_ROUTE_FIELDS[form] for side in ("source", "target") for form in ("match", "match_re", "matchers")
}
ANY_INHIBIT_RULES = st.lists(
    st.fixed_dictionaries({}, optional={**ANY_SIDES, "equal": st.lists(ANY_TEXTS, max_size=2)}), max_size=2
)
ANY_GLOBALS = st.fixed_dictionaries(
    {},
    optional={
        key: ANY_TEXTS
        for key in ("resolve_timeout", "smtp_smarthost", "smtp_from", "smtp_auth_password", "slack_api_url_file", "http_config")
    },
)


@pytest.mark.slow
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    route=ANY_ROOT_ROUTES,
    receivers=ANY_RECEIVERS,
    inhibit_rules=ANY_INHIBIT_RULES,
    time_intervals=ANY_INTERVALS,
    global_section=ANY_GLOBALS,
)
def test_any_document_imports_or_fails_cleanly(route, receivers, inhibit_rules, time_intervals, global_section):
    document = {
        "global": global_section,
        "route": route,
        "receivers": receivers,
        "inhibit_rules": inhibit_rules,
        "time_intervals": time_intervals,
    }
    try:
        result = import_alertmanager(yaml.safe_dump(document))
    except ImportFailed:
        return
    check_text(result.text, "imported.irules")
