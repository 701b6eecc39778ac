"""Value checks: regexes, label names, durations, time intervals, settings, channels and services."""

from __future__ import annotations

import textwrap

from compiler.api import check_text
from compiler.diagnostics import Diagnostic, Severity

ROUTE = 'receiver default { email "ops@example.com" }\nroute { receiver default }\n'


def found(source: str, code: str) -> list[Diagnostic]:
    """Check `source` as one file and return its diagnostics with `code`."""
    result = check_text(textwrap.dedent(source), "x.irules")
    return [item for item in result.diagnostics if item.code == code]


def places(items: list[Diagnostic]) -> list[tuple[int, int]]:
    return [(item.span.line, item.span.column) for item in items]


def route_with(line: str) -> str:
    """A valid project whose only child route is `line`; the route sits on line 4."""
    return f'receiver default {{ email "ops@example.com" }}\nreceiver db {{ slack "#db" }}\nroute {{ receiver default\n  {line}\n}}\n'


# ---------------------------------------------------------------- regexes


def test_invalid_regex_is_rejected_with_re2_reason():
    items = found(route_with('match service =~ "(postgres|pgbouncer" -> db'), "IR0301")
    assert places(items) == [(4, 20)]
    assert items[0].span.end_column == 41
    assert items[0].message == "invalid regular expression: missing )"


def test_regex_is_anchored_like_alertmanager_anchors_it():
    # `a)|(b` is invalid alone, but Alertmanager's `^(?:a)|(b)$` compiles.
    assert found(route_with('match service =~ "a)|(b" -> db'), "IR0301") == []


def test_negative_regex_matcher_is_compiled_too():
    items = found(route_with('match service !~ "[z-a]" -> db'), "IR0301")
    assert places(items) == [(4, 20)]
    assert "invalid character class range" in items[0].message


def test_inhibit_regex_is_checked():
    items = found(ROUTE + 'inhibit severity = "critical" silences severity =~ "warn(" on [alertname]\n', "IR0301")
    assert places(items) == [(3, 52)]


def test_literal_asterisk_in_equality_matcher_is_a_warning():
    items = found(route_with('match alertname = "*" -> db'), "IR0306")
    assert places(items) == [(4, 21)]
    assert items[0].severity is Severity.WARNING
    assert '=~ ".*"' in items[0].help


def test_asterisk_in_regex_matcher_is_no_literal_warning():
    assert found(route_with('match alertname =~ ".*" -> db'), "IR0306") == []


def test_single_quoted_matcher_value_is_rejected():
    items = found(route_with("match label = 'atlas-test' -> db"), "IR0105")
    assert places(items) == [(4, 17)]
    assert items[0].help == 'write the value in double quotes: `"atlas-test"`'


# ---------------------------------------------------------------- label names


def test_hyphen_in_label_name_is_rejected():
    items = found(route_with('match alert-name = "x" -> db'), "IR0302")
    assert places(items) == [(4, 9)]
    assert items[0].message == "invalid label name `alert-name` in matcher"
    assert items[0].help == "write `alert_name`"


def test_quoted_utf8_label_name_needs_alertmanager_0_27():
    items = found(route_with('match "service.name" = "x" -> db'), "IR0303")
    assert places(items) == [(4, 9)]
    assert "0.27" in items[0].message


def test_utf8_label_allowed_from_0_27():
    source = 'settings { alertmanager_version "0.27" }\n' + route_with('match "service.name" = "x" -> db')
    assert found(source, "IR0303") == []
    assert found(source, "IR0302") == []


def test_quoted_classic_label_name_needs_no_new_version():
    assert found(route_with('match "severity" = "x" -> db'), "IR0303") == []


def test_empty_label_name_always_invalid():
    source = 'settings { alertmanager_version "0.28" }\n' + route_with('match "" = "x" -> db')
    assert places(found(source, "IR0302")) == [(5, 9)]


def test_hyphenated_label_name_suggests_quoting_on_0_27():
    source = 'settings { alertmanager_version "0.27" }\n' + route_with('match alert-name = "x" -> db')
    items = found(source, "IR0302")
    assert places(items) == [(5, 9)]
    assert items[0].help == 'write `alert_name`, or quote it: `"alert-name"`'


def test_inhibit_on_label_is_checked():
    items = found(ROUTE + 'inhibit a = "1" silences a = "2" on [alert-name]\n', "IR0302")
    assert places(items) == [(3, 38)]
    assert items[0].message == "invalid label name `alert-name` in inhibit `on` list"


def test_test_alert_label_is_checked():
    items = found(ROUTE + 'test "t" { alert { alert-name = "x" } }\n', "IR0302")
    assert places(items) == [(3, 20)]
    assert items[0].message == "invalid label name `alert-name` in test alert"


# ---------------------------------------------------------------- group_by


def test_group_by_wildcard_with_other_labels_is_rejected():
    items = found(ROUTE + 'defaults { group_by ["...", alertname] }\n', "IR0304")
    assert places(items) == [(3, 22)]


def test_group_by_wildcard_alone_is_valid():
    source = ROUTE + 'defaults { group_by ["..."] }\n'
    assert found(source, "IR0304") == []
    assert found(source, "IR0302") == []
    assert found(source, "IR0303") == []


def test_group_by_repeated_label_points_at_both():
    items = found('receiver d { email "a@example.com" }\nroute { receiver d  group_by [alertname, alertname] }\n', "IR0305")
    assert places(items) == [(2, 42)]
    assert [(label.span.line, label.span.column) for label in items[0].labels] == [(2, 31)]


def test_group_by_invalid_label_name_is_rejected():
    items = found('receiver d { email "a@example.com" }\nroute { receiver d  group_by [alert-name] }\n', "IR0302")
    assert places(items) == [(2, 31)]
    assert items[0].message == "invalid label name `alert-name` in group_by"


# ---------------------------------------------------------------- durations


def test_zero_group_interval_is_rejected():
    items = found(route_with('match a = "b" -> db { group_interval 0s }'), "IR0307")
    assert places(items) == [(4, 40)]
    assert items[0].message == "`group_interval` cannot be zero"


def test_zero_repeat_interval_in_defaults_is_rejected():
    items = found(ROUTE + "defaults { repeat_interval 0m }\n", "IR0307")
    assert places(items) == [(3, 28)]


def test_zero_resolve_timeout_is_rejected():
    items = found(ROUTE + "settings { resolve_timeout 0s }\n", "IR0307")
    assert places(items) == [(3, 28)]


def test_zero_step_timeout_is_rejected():
    source = ROUTE + 'runbook rb-1 "t" {\n  manual\n  step look { run ["true"]  timeout 0s }\n}\n'
    items = found(source, "IR0307")
    assert places(items) == [(5, 37)]
    assert items[0].message == "`timeout` cannot be zero"


def test_short_repeat_interval_warns():
    items = found(ROUTE + "defaults { group_interval 10m  repeat_interval 5m }\n", "IR0308")
    assert places(items) == [(3, 48)]
    assert items[0].severity is Severity.WARNING
    assert [(label.span.line, label.span.column) for label in items[0].labels] == [(3, 27)]


def test_repeat_interval_uses_inherited_group_interval():
    source = route_with('match a = "b" -> db { repeat_interval 1m }') + "defaults { group_interval 5m }\n"
    items = found(source, "IR0308")
    assert places(items) == [(4, 41)]
    assert items[0].message == "`repeat_interval` 1m is shorter than `group_interval` 5m"


def test_repeat_interval_longer_than_group_interval_is_fine():
    assert found(ROUTE + "defaults { group_interval 5m  repeat_interval 4h }\n", "IR0308") == []


# ---------------------------------------------------------------- time intervals


def interval(fields: str) -> str:
    """A project with a used time interval whose fields sit on line 5."""
    return route_with('match a = "b" -> db { mute_during [night] }') + f"time_interval night {{\n  {fields}\n}}\n"


def test_abbreviated_weekday_is_rejected_at_the_word():
    items = found(interval('weekdays ["monday:fri"]'), "IR0309")
    assert places(items) == [(7, 21)]
    assert items[0].span.end_column == 24
    assert items[0].message == "`fri` is not a weekday"
    assert items[0].help == "write the full name: `friday`"


def test_full_weekday_names_in_any_case_are_valid():
    assert found(interval('weekdays ["Friday", "monday:friday", "SUNDAY"]'), "IR0309") == []


def test_backwards_weekday_range_is_rejected():
    items = found(interval('weekdays ["saturday:monday"]'), "IR0309")
    assert places(items) == [(7, 13)]
    assert items[0].help == "weeks start on sunday; write two entries: `saturday` and `sunday:monday`"


def test_night_window_across_midnight_is_valid():
    assert found(interval('times ["22:00-06:00", "00:00-24:00", "18:00-00:00"]'), "IR0309") == []


def test_single_digit_hour_is_rejected():
    items = found(interval('times ["9:00-17:00"]'), "IR0309")
    assert places(items) == [(7, 11)]
    assert items[0].help == "write two-digit hours: `09:00`"


def test_time_after_midnight_is_rejected():
    items = found(interval('times ["09:00-24:01"]'), "IR0309")
    assert places(items) == [(7, 17)]
    assert items[0].message == "`24:01` is not a time of day"


def test_range_starting_at_24_00_is_rejected():
    items = found(interval('times ["24:00-06:00"]'), "IR0309")
    assert places(items) == [(7, 11)]
    assert items[0].message == "a time range cannot start at `24:00`"


def test_day_of_month_zero_is_rejected():
    items = found(interval('days_of_month ["0"]'), "IR0309")
    assert places(items) == [(7, 19)]


def test_negative_days_of_month_are_valid():
    assert found(interval('days_of_month ["1:5", "-7:-1", "-1"]'), "IR0309") == []


def test_negative_start_with_positive_end_day_is_rejected():
    items = found(interval('days_of_month ["-3:5"]'), "IR0309")
    assert places(items) == [(7, 18)]


def test_month_out_of_range_is_rejected():
    items = found(interval('months ["13"]'), "IR0309")
    assert places(items) == [(7, 12)]
    assert items[0].message == "`13` is not a month"


def test_months_by_name_and_number_are_valid():
    assert found(interval('months ["january:march", "12", "May"]'), "IR0309") == []


def test_backwards_year_range_is_rejected():
    items = found(interval('years ["2026:2024"]'), "IR0309")
    assert places(items) == [(7, 10)]


def test_zone_abbreviation_is_rejected():
    items = found(interval('location "KST"'), "IR0310")
    assert places(items) == [(7, 12)]
    assert "Asia/Seoul" in items[0].help


def test_iana_zone_is_valid():
    assert found(interval('location "Asia/Seoul"'), "IR0310") == []


def test_settings_timezone_is_checked():
    items = found(ROUTE + 'settings { timezone "Europe/Berln" }\n', "IR0310")
    assert places(items) == [(3, 21)]
    assert items[0].help == "a zone with a similar name exists: `Europe/Berlin`"


# ---------------------------------------------------------------- settings


def test_relative_external_url_is_rejected():
    items = found(ROUTE + 'settings { external_url "alerts.example.com" }\n', "IR0311")
    assert places(items) == [(3, 25)]


def test_ftp_url_is_rejected():
    assert places(found(ROUTE + 'settings { incident_url "ftp://example.com" }\n', "IR0311")) == [(3, 25)]


def test_https_url_is_valid():
    assert found(ROUTE + 'settings { daemon_url "https://irules.example.com:8443/base" }\n', "IR0311") == []


def test_unsupported_alertmanager_version_is_rejected():
    items = found(ROUTE + 'settings { alertmanager_version "0.24" }\n', "IR0312")
    assert places(items) == [(3, 33)]


def test_supported_versions_with_patch_level_are_accepted():
    assert found(ROUTE + 'settings { alertmanager_version "0.28.1" }\n', "IR0312") == []


def test_unknown_locale_is_rejected():
    assert places(found(ROUTE + "settings { locale fr }\n", "IR0313")) == [(3, 19)]


def test_relative_secrets_dir_is_rejected():
    assert places(found(ROUTE + 'settings { secrets_dir "secrets" }\n', "IR0314")) == [(3, 24)]


def test_smtp_server_without_port_is_rejected():
    items = found(ROUTE + 'settings { smtp "smtp.example.com" from "alerts@example.com" }\n', "IR0325")
    assert places(items) == [(3, 17)]


def test_smtp_sender_must_be_an_address():
    items = found(ROUTE + 'settings { smtp "smtp.example.com:587" from "alerts" }\n', "IR0325")
    assert places(items) == [(3, 45)]


# ---------------------------------------------------------------- properties set twice


def test_setting_in_two_settings_blocks_points_at_both():
    items = found(ROUTE + "settings { locale en }\nsettings { locale de }\n", "IR0315")
    assert places(items) == [(4, 12)]
    assert [(label.span.line, label.span.column) for label in items[0].labels] == [(3, 12)]
    assert items[0].message == "`locale` is set twice in `settings`"


def test_group_wait_twice_in_one_route_is_rejected():
    items = found(route_with('match a = "b" -> db { group_wait 1s  group_wait 2s }'), "IR0315")
    assert places(items) == [(4, 40)]


def test_tier_twice_in_one_service_is_rejected():
    items = found(ROUTE + "service api { tier 1  tier 2 }\n", "IR0315")
    assert places(items) == [(3, 23)]
    assert items[0].message == "`tier` is set twice in service `api`"


def test_receiver_after_arrow_and_in_block_is_rejected():
    items = found(route_with('match a = "b" -> db { receiver default }'), "IR0315")
    assert places(items) == [(4, 25)]
    assert [(label.span.line, label.span.column) for label in items[0].labels] == [(4, 20)]


def test_repeated_channel_option_is_rejected():
    items = found(ROUTE + 'team t { slack "#t" send_resolved true send_resolved false }\n', "IR0315")
    assert places(items) == [(3, 40)]


def test_same_property_in_separate_routes_is_fine():
    source = route_with('match a = "b" -> db { group_wait 1s }').replace(
        "route { receiver default", "route { receiver default group_wait 2s"
    )
    assert found(source, "IR0315") == []


# ---------------------------------------------------------------- channels


def test_option_of_another_channel_kind_is_rejected():
    items = found(ROUTE + 'team t { slack "#t" key secret("K") }\n', "IR0316")
    assert places(items) == [(3, 21)]
    assert items[0].message == "`key` is not an option of `slack` channels"


def test_slack_target_needs_hash_or_at():
    items = found(ROUTE + 'team t { slack "ops" }\n', "IR0317")
    assert places(items) == [(3, 16)]


def test_slack_user_target_is_valid():
    assert found(ROUTE + 'team t { slack "@alice" }\n', "IR0317") == []


def test_email_target_must_be_an_address():
    assert places(found(ROUTE + 'team t { email "ops" }\n', "IR0317")) == [(3, 16)]


def test_email_target_may_list_named_addresses():
    assert found(ROUTE + 'team t { email "Ops <ops@example.com>, dba@example.com" }\n', "IR0317") == []


def test_sms_target_must_be_e164():
    items = found(ROUTE + 'team t { sms "0151 1234567" }\n', "IR0317")
    assert places(items) == [(3, 14)]


def test_sms_e164_target_is_valid():
    assert found(ROUTE + 'team t { sms "+4915112345678" }\n', "IR0317") == []


def test_apprise_url_in_a_secret_is_valid():
    assert found(ROUTE + 'team t { apprise secret("APPRISE_URL") }\n', "IR0317") == []


def test_apprise_url_in_clear_is_rejected():
    items = found(ROUTE + 'team t { apprise "tgram://123456:token/42" }\n', "IR0317")
    assert places(items) == [(3, 18)]
    assert items[0].message == "the URL of an `apprise` channel must be a secret"


def test_apprise_without_url_is_rejected():
    items = found(ROUTE + "team t { apprise }\n", "IR0317")
    assert [item.message for item in items] == ["`apprise` channel needs exactly one URL"]


def test_channel_without_target_is_rejected_at_its_kind():
    assert places(found(ROUTE + "team t { email }\n", "IR0317")) == [(3, 10)]


def test_pagerduty_without_key_or_policy_is_rejected():
    items = found(ROUTE + "team t { pagerduty send_resolved true }\n", "IR0318")
    assert places(items) == [(3, 10)]


def test_pagerduty_with_escalation_policy_only_is_valid():
    assert found(ROUTE + 'team t { pagerduty escalation_policy "P5DTCKX" }\n', "IR0318") == []


def test_pagerduty_key_in_clear_is_rejected():
    items = found(ROUTE + 'team t { pagerduty key "abc" }\n', "IR0318")
    assert places(items) == [(3, 24)]


def test_pagerduty_key_as_secret_is_valid():
    assert found(ROUTE + 'team t { pagerduty key secret("PD_KEY") }\n', "IR0318") == []


def test_webhook_url_with_token_is_a_warning():
    items = found(ROUTE + 'team t { webhook "https://hooks.example.com/services/T00/B00/Xa9dK2mQ7pL4sV8nR3tY6wZ1" }\n', "IR0319")
    assert places(items) == [(3, 18)]
    assert items[0].severity is Severity.WARNING


def test_webhook_url_without_token_is_fine():
    assert found(ROUTE + 'team t { webhook "https://daemon.example.com/hooks/alertmanager" }\n', "IR0319") == []


def test_webhook_url_must_be_http():
    assert places(found(ROUTE + 'team t { webhook url "daemon:9000/hook" }\n', "IR0311")) == [(3, 22)]


def test_slack_webhook_url_option_is_checked():
    items = found(
        ROUTE + 'team t { slack "#t" url "https://hooks.slack.com/services/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" }\n',
        "IR0319",
    )
    assert places(items) == [(3, 25)]


def test_url_given_twice_is_rejected():
    items = found(ROUTE + 'team t { webhook "https://a.example.com" url "https://b.example.com" }\n', "IR0317")
    assert places(items) == [(3, 46)]


def test_lowercase_secret_name_is_rejected():
    items = found(ROUTE + 'team t { pagerduty key secret("pd-key") }\n', "IR0320")
    assert places(items) == [(3, 31)]
    assert items[0].help == 'write `secret("PD_KEY")`'


# ---------------------------------------------------------------- services


def test_tier_out_of_range_is_rejected():
    assert places(found(ROUTE + "service api { tier 5 }\n", "IR0321")) == [(3, 20)]


def test_service_depending_on_itself_is_rejected():
    assert places(found(ROUTE + "service api { depends_on [db, api] }\nservice db { }\n", "IR0322")) == [(3, 31)]


def test_dependency_cycle_prints_the_path():
    source = ROUTE + "service a { depends_on [b] }\nservice b { depends_on [c] }\nservice c { depends_on [a] }\n"
    items = found(source, "IR0323")
    assert places(items) == [(3, 25)]
    assert items[0].message == "services depend on each other in a cycle: `a` → `b` → `c` → `a`"
    assert [(label.span.line, label.span.column) for label in items[0].labels] == [(4, 25), (5, 25)]


def test_dependency_cycle_is_reported_once():
    source = ROUTE + "service a { depends_on [b] }\nservice b { depends_on [a] }\n"
    assert len(found(source, "IR0323")) == 1


def test_dependency_chain_without_cycle_is_fine():
    assert found(ROUTE + "service a { depends_on [b] }\nservice b { depends_on [c] }\nservice c { }\n", "IR0323") == []


def test_secret_name_in_smtp_password_is_checked():
    items = found(ROUTE + 'settings { smtp "smtp.example.com:587" password secret("smtp pass") }\n', "IR0320")
    assert places(items) == [(3, 56)]


def test_secret_name_in_source_auth_is_checked():
    items = found(ROUTE + 'source hooks { path "/hooks/x" auth bearer secret("token") }\n', "IR0320")
    assert places(items) == [(3, 51)]


def test_zero_approval_timeout_is_rejected():
    source = ROUTE + 'team sre { slack "#sre" }\nrunbook rb-2 "t" {\n  manual\n  step ask { approve from sre timeout 0s }\n}\n'
    assert places(found(source, "IR0307")) == [(6, 39)]


def test_two_separate_cycles_are_both_reported():
    source = (
        ROUTE
        + "service a { depends_on [b] }\nservice b { depends_on [a] }\nservice c { depends_on [d] }\nservice d { depends_on [c] }\n"
    )
    assert places(found(source, "IR0323")) == [(3, 25), (5, 25)]


def test_slack_webhook_without_channel_is_valid():
    assert found(ROUTE + 'team t { slack url secret("SLACK_HOOK") }\n', "IR0317") == []
