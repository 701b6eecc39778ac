"""The shipped rules: every example checks clean, and the standard library declares what the docs promise."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from compiler import ast
from compiler.api import check_path
from compiler.diagnostics import DiagnosticSink, Severity, render_text
from compiler.fmt import format_source
from compiler.loader import load_project
from compiler.parse import parse_text

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
RULES = REPO / "rules"

KUBERNETES_NAME = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
STOCK_ACTIONS = ("restart", "scale", "rollback", "circuit_breaker", "reroute_traffic")
# The smallest project that turns on every stock runbook. rb-002 needs the team `infrastructure`.
STDLIB_USER = """
use runbooks [rb-001, rb-002, rb-003]
team infrastructure { slack "#infrastructure" }
route { receiver infrastructure }
"""
SHELLS = {"sh", "bash", "zsh", "dash", "/bin/sh", "/bin/bash", "/usr/bin/env"}


def _example_folders() -> list[Path]:
    return sorted(path for path in EXAMPLES.iterdir() if path.is_dir() and any(path.rglob("*.irules")))


def _environments(folder: Path) -> list[str]:
    project = load_project(folder, None, DiagnosticSink(), with_stdlib=False)
    return project.environment_names


def _example_cases() -> list[pytest.param]:
    cases = []
    for folder in _example_folders():
        for environment in [None, *_environments(folder)]:
            cases.append(pytest.param(folder, environment, id=f"{folder.name}-{environment or 'base'}"))
    return cases


def _errors_of(folder: Path, environment: str | None) -> tuple[list, str]:
    result = check_path(folder, environment)
    errors = [item for item in result.diagnostics if item.severity is Severity.ERROR]
    return errors, render_text(errors, result.project.sources)


def _parse_rules(name: str) -> list[ast.Decl]:
    path = RULES / name
    return parse_text(path.read_text(encoding="utf-8"), str(path)).decls


def _by_name(decls: list[ast.Decl], kind: type) -> dict[str, ast.Decl]:
    return {decl.name.value: decl for decl in decls if isinstance(decl, kind)}


def _keys(items: list[object]) -> list[str]:
    return [item.key for item in items if isinstance(item, ast.Property)]


def _steps(runbook: ast.Runbook) -> dict[str, ast.Step]:
    steps: dict[str, ast.Step] = {}
    for item in runbook.items:
        if isinstance(item, ast.Step):
            steps[item.name.value] = item
        elif isinstance(item, ast.Parallel):
            steps.update((step.name.value, step) for step in item.steps)
    return steps


def _step_kinds(step: ast.Step) -> list[str]:
    return [item.kind for item in step.items if isinstance(item, ast.StepKind)]


def _when(step: ast.Step) -> ast.Expr:
    return next(item.args[0] for item in step.items if isinstance(item, ast.Property) and item.key == "when")


def _source_text(node: ast.Node) -> str:
    text = Path(node.span.path).read_text(encoding="utf-8")
    return text[node.span.start : node.span.end]


# ---------------------------------------------------------------- examples


def test_examples_exist():
    names = [folder.name for folder in _example_folders()]
    assert "production" in names
    assert len(names) >= 3


def test_production_declares_two_environments():
    assert _environments(EXAMPLES / "production") == ["production", "staging"]


@pytest.mark.parametrize(("folder", "environment"), _example_cases())
def test_example_checks_without_errors(folder: Path, environment: str | None):
    errors, rendered = _errors_of(folder, environment)
    assert errors == [], rendered


@pytest.mark.parametrize("folder", _example_folders(), ids=lambda folder: folder.name)
def test_example_has_readme(folder: Path):
    assert (folder / "README.md").is_file()


@pytest.mark.parametrize(
    "path",
    sorted([*EXAMPLES.rglob("*.irules"), *RULES.glob("*.irules")]),
    ids=lambda path: str(path.relative_to(REPO)),
)
def test_shipped_file_is_formatted(path: Path):
    text = path.read_text(encoding="utf-8")
    assert format_source(text, str(path)) == text, f"run `irules fmt {path.relative_to(REPO)}`"


def test_production_has_ten_rule_tests():
    result = check_path(EXAMPLES / "production", "production")
    tests = [decl for decl in result.project.decls if isinstance(decl, ast.Test)]
    assert len(tests) >= 10


def test_production_enables_stock_runbooks():
    result = check_path(EXAMPLES / "production", "production")
    uses = [decl for decl in result.project.decls if isinstance(decl, ast.Use)]
    enabled = [name.value for use in uses for name in use.names.items]
    assert enabled == ["rb-001", "rb-002", "rb-003"]


# ---------------------------------------------------------------- standard library


@pytest.mark.parametrize("path", sorted(RULES.glob("*.irules")), ids=lambda path: path.name)
def test_stdlib_file_parses(path: Path):
    module = parse_text(path.read_text(encoding="utf-8"), str(path))
    assert module.decls != []


def test_stdlib_checks_without_errors(tmp_path: Path):
    # The checker skips most checks on the standard library's own files, so a
    # copy of them is checked as a project that turns every stock runbook on.
    for path in RULES.glob("*.irules"):
        shutil.copy(path, tmp_path / path.name)
    (tmp_path / "project.irules").write_text(STDLIB_USER, encoding="utf-8")
    errors, rendered = _errors_of(tmp_path, None)
    assert errors == [], rendered


def test_stdlib_declares_five_actions():
    actions = _by_name(_parse_rules("actions.irules"), ast.Action)
    assert sorted(actions) == sorted(STOCK_ACTIONS)


@pytest.mark.parametrize("name", STOCK_ACTIONS)
def test_action_states_risk_and_timeout(name: str):
    action = _by_name(_parse_rules("actions.irules"), ast.Action)[name]
    keys = _keys(action.items)
    assert "risk" in keys
    assert "mutating" in keys
    assert "timeout" in keys


@pytest.mark.parametrize("name", STOCK_ACTIONS)
def test_action_parameters_have_patterns(name: str):
    action = _by_name(_parse_rules("actions.irules"), ast.Action)[name]
    unchecked = [param.name.value for param in action.params if param.pattern is None]
    assert unchecked == []


@pytest.mark.parametrize("name", STOCK_ACTIONS)
def test_action_names_use_kubernetes_pattern(name: str):
    action = _by_name(_parse_rules("actions.irules"), ast.Action)[name]
    for param in action.params:
        if param.name.value in {"name", "namespace", "service", "target"}:
            assert param.pattern.value == KUBERNETES_NAME, param.name.value


def test_restart_kinds():
    action = _by_name(_parse_rules("actions.irules"), ast.Action)["restart"]
    kind = next(param for param in action.params if param.name.value == "kind")
    assert kind.pattern.value == "^(deployment|statefulset|daemonset|pod)$"


@pytest.mark.parametrize("name", ["restart", "scale", "rollback"])
def test_kubectl_action_ends_options(name: str):
    action = _by_name(_parse_rules("actions.irules"), ast.Action)[name]
    run = next(item for item in action.items if isinstance(item, ast.StepKind))
    argv = [item.value for item in run.args[0].items]
    assert run.kind == "run"
    assert argv[0] == "kubectl"
    assert argv[-2:] == ["--", "{{ name }}"]


@pytest.mark.parametrize("name", ["circuit_breaker", "reroute_traffic"])
def test_traffic_action_calls_admin_url(name: str):
    action = _by_name(_parse_rules("actions.irules"), ast.Action)[name]
    request = next(item for item in action.items if isinstance(item, ast.StepKind))
    assert request.kind == "http"
    assert request.args[1].value.startswith("{{ admin_url }}/")
    assert "admin_url" in [param.name.value for param in action.params]


def test_stdlib_runs_no_shell():
    items: list[object] = []
    for decl in _parse_rules("actions.irules") + _parse_rules("runbooks.irules"):
        if isinstance(decl, ast.Action):
            items += decl.items
        elif isinstance(decl, ast.Runbook):
            for step in _steps(decl).values():
                items += step.items
    runs = [item for item in items if isinstance(item, ast.StepKind) and item.kind == "run"]
    programs = {run.args[0].items[0].value for run in runs}
    assert runs != []
    assert SHELLS.isdisjoint(programs)


def test_stdlib_declares_three_runbooks():
    runbooks = _by_name(_parse_rules("runbooks.irules"), ast.Runbook)
    titles = {name: runbook.title.value for name, runbook in runbooks.items()}
    assert titles == {
        "rb-001": "High memory usage remediation",
        "rb-002": "Terraform state drift",
        "rb-003": "Tool error recovery",
    }


@pytest.mark.parametrize(("runbook_id", "mode"), [("rb-001", "auto"), ("rb-002", "manual"), ("rb-003", "auto")])
def test_stock_runbook_mode(runbook_id: str, mode: str):
    runbook = _by_name(_parse_rules("runbooks.irules"), ast.Runbook)[runbook_id]
    modes = [key for key in _keys(runbook.items) if key in {"auto", "manual"}]
    assert modes == [mode]


@pytest.mark.parametrize(
    ("runbook_id", "alertname"),
    [("rb-001", "HighMemoryUsage"), ("rb-002", "TerraformStateDrift"), ("rb-003", "ToolCriticalError")],
)
def test_stock_runbook_trigger(runbook_id: str, alertname: str):
    runbook = _by_name(_parse_rules("runbooks.irules"), ast.Runbook)[runbook_id]
    when = next(item for item in runbook.items if isinstance(item, ast.Property) and item.key == "when")
    assert _source_text(when.args[0]) == f'label.alertname == "{alertname}"'


def test_rb001_scale_condition():
    steps = _steps(_by_name(_parse_rules("runbooks.irules"), ast.Runbook)["rb-001"])
    assert _step_kinds(steps["cluster_memory"]) == ["query"]
    assert _source_text(_when(steps["scale_out"])) == "steps.cluster_memory.value > 0.8"


def test_rb001_restart_condition():
    steps = _steps(_by_name(_parse_rules("runbooks.irules"), ast.Runbook)["rb-001"])
    call = next(item for item in steps["restart_highest"].items if isinstance(item, ast.ActionCall))
    assert call.action.value == "restart"
    assert _source_text(_when(steps["restart_highest"])) == "steps.check_limits.value > 0.9"


def test_rb002_applies_after_approval():
    runbook = _by_name(_parse_rules("runbooks.irules"), ast.Runbook)["rb-002"]
    steps = _steps(runbook)
    order = list(steps)
    approve = next(item for item in steps["approval"].items if isinstance(item, ast.StepKind))
    assert _source_text(approve) == "approve from infrastructure timeout 1h"
    assert order.index("approval") < order.index("apply_plan")
    assert {"mutating", "risk"} <= set(_keys(steps["apply_plan"].items))


def test_rb002_plan_is_read_only():
    steps = _steps(_by_name(_parse_rules("runbooks.irules"), ast.Runbook)["rb-002"])
    run = next(item for item in steps["analyze_drift"].items if isinstance(item, ast.StepKind))
    argv = [item.value for item in run.args[0].items]
    assert "-detailed-exitcode" in argv
    assert "read_only" in _keys(steps["analyze_drift"].items)


def test_rb003_restart_after_failed_validation():
    steps = _steps(_by_name(_parse_rules("runbooks.irules"), ast.Runbook)["rb-003"])
    assert _source_text(_when(steps["restart_exporter"])) == "not steps.validate_config.ok"
    on_failure = [item.args[0].value for item in steps["validate_config"].items if getattr(item, "key", "") == "on_failure"]
    assert on_failure == ["restart_exporter"]


def test_rb003_health_check_expects_200():
    steps = _steps(_by_name(_parse_rules("runbooks.irules"), ast.Runbook)["rb-003"])
    request = next(item for item in steps["check_api_health"].items if isinstance(item, ast.StepKind))
    assert request.kind == "http"
    assert [(option.key, option.args[0].value) for option in request.options] == [("expect", 200)]


def test_stock_templates_have_en_and_de():
    templates = _by_name(_parse_rules("templates.irules"), ast.Template)
    locales = {name: sorted(locale.locale.value for locale in template.locales) for name, template in templates.items()}
    assert locales == {"terraform_drift_report": ["de", "en"], "terraform_drift_notice": ["de", "en"]}


def test_production_dedup_fits_alerts_with_and_without_instance(caplog: pytest.LogCaptureFixture):
    import logging

    from compiler.api import compile_rules
    from runtime.alerts import Alert
    from runtime.policy import Policy

    policy = Policy(compile_rules(Path("examples/production"), "production"))
    labels = {"alertname": "DeployPipelineFailed", "cluster": "prod-eu-1", "service": "ci"}
    without = Alert(source="ci-webhook", name="DeployPipelineFailed", status="firing", labels=labels)
    # `pod` is not among the rule's labels, so the key of this alert differs from its fingerprint.
    with_instance = Alert(
        source="alertmanager", name="HighCpu", status="firing", labels={**labels, "instance": "a:9100", "pod": "p1"}
    )

    with caplog.at_level(logging.WARNING, logger="irules.policy"):
        first = policy.dedup(without)
        second = policy.dedup(with_instance)

    # A CI failure has no instance: it keeps its sender's fingerprint, and nothing warns about it.
    assert (first.key, first.rule, first.missing) == (without.fingerprint, None, ())
    assert second.rule == "per-instance"
    assert second.key != with_instance.fingerprint
    assert caplog.records == []
    assert policy.flap_settings(without) == (1800.0, 4)
