"""Usage checks: declarations nothing uses, and escalation steps that cannot fire."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from compiler import loader
from compiler.api import check_path, check_text
from compiler.diagnostics import Diagnostic, Severity

ROUTE = 'receiver default { email "ops@example.com" }\nroute { receiver default }\n'


def found(source: str, code: str) -> list[Diagnostic]:
    result = check_text(textwrap.dedent(source), "x.irules")
    return [item for item in result.diagnostics if item.code == code]


def places(items: list[Diagnostic]) -> list[tuple[int, int]]:
    return [(item.span.line, item.span.column) for item in items]


# ---------------------------------------------------------------- receivers and teams


def test_unused_receiver_is_reported():
    items = found(ROUTE + 'receiver spare { email "spare@example.com" }\n', "IR0901")
    assert places(items) == [(3, 10)]
    assert items[0].message == "receiver `spare` is never used"
    assert items[0].severity is Severity.WARNING


def test_receiver_used_by_a_route_is_not_reported():
    assert found(ROUTE, "IR0901") == []


def test_team_owning_a_service_counts_as_used():
    assert found(ROUTE + 'team db { slack "#db" owns [postgres] }\nservice postgres { }\n', "IR0901") == []


def test_team_with_an_escalation_counts_as_used():
    source = ROUTE + 'team db { slack "#db" escalation page-db }\nescalation page-db { after 5m unacknowledged notify db }\n'
    assert found(source, "IR0901") == []


def test_receiver_named_in_a_test_counts_as_used():
    source = ROUTE + 'receiver spare { email "s@example.com" }\ntest "t" { alert { a = "b" } expect receivers [spare] }\n'
    assert found(source, "IR0901") == []


def test_team_without_duties_is_reported():
    assert places(found(ROUTE + 'team idle { slack "#idle" }\n', "IR0901")) == [(3, 6)]


def test_receiver_used_in_environment_counts():
    source = ROUTE + 'receiver pager { email "p@example.com" }\nenvironment production {\n  route { receiver pager }\n}\n'
    assert found(source, "IR0901") == []


# ---------------------------------------------------------------- templates, time intervals, escalations


def test_unused_template_is_reported():
    items = found(ROUTE + 'template short { en { title "x" } }\n', "IR0902")
    assert places(items) == [(3, 10)]


def test_template_used_by_a_channel_is_not_reported():
    source = 'receiver default { email "o@example.com" template short }\nroute { receiver default }\ntemplate short { en { title "x" } }\n'
    assert found(source, "IR0902") == []


def test_unused_time_interval_is_reported():
    items = found(ROUTE + 'time_interval night { times ["22:00-06:00"] }\n', "IR0903")
    assert places(items) == [(3, 15)]
    assert items[0].message == "time interval `night` is never used"


def test_unused_escalation_is_reported():
    items = found(ROUTE + "escalation spare { after 5m unacknowledged notify default }\n", "IR0904")
    assert places(items) == [(3, 12)]


def test_stdlib_declarations_are_never_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    stdlib = tmp_path / "stdlib"
    stdlib.mkdir()
    (stdlib / "templates.irules").write_text('template stock { en { title "x" } }\n', encoding="utf-8")
    project = tmp_path / "project"
    project.mkdir()
    (project / "main.irules").write_text(ROUTE + 'template own { en { title "y" } }\n', encoding="utf-8")
    monkeypatch.setattr(loader, "stdlib_dir", lambda: stdlib)

    result = check_path(project)
    unused = [item.message for item in result.diagnostics if item.code == "IR0902"]
    assert unused == ["template `own` is never used"]


# ---------------------------------------------------------------- escalation steps


ESCALATION = ROUTE + 'team db { slack "#db" escalation page-db }\n'


def test_steps_for_unassigned_level_warn():
    source = ESCALATION + textwrap.dedent(
        """\
        severity {
          critical when label.severity == "critical"
          else high
        }
        escalation page-db {
          for severity [critical, low] { after 5m unacknowledged notify db }
        }
        """
    )
    items = found(source, "IR0905")
    assert places(items) == [(9, 27)]
    assert items[0].message == "no severity rule assigns `low`, so these steps never run for it"


def test_classify_fallback_may_assign_any_level():
    source = ESCALATION + textwrap.dedent(
        """\
        severity {
          critical when label.severity == "critical"
          else classify
        }
        escalation page-db {
          for severity [low] { after 5m unacknowledged notify db }
        }
        """
    )
    assert found(source, "IR0905") == []


def test_repeated_step_is_reported():
    source = ESCALATION + textwrap.dedent(
        """\
        escalation page-db {
          after 5m unacknowledged notify db
          after 300s unacknowledged notify db
        }
        """
    )
    items = found(source, "IR0906")
    assert places(items) == [(6, 3)]
    assert [(label.span.line, label.span.column) for label in items[0].labels] == [(5, 3)]


def test_same_delay_other_action_is_fine():
    source = ESCALATION + textwrap.dedent(
        """\
        escalation page-db {
          after 5m unacknowledged notify db
          after 5m unacknowledged notify default
        }
        """
    )
    assert found(source, "IR0906") == []
