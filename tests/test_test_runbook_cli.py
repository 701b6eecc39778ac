"""`irules test-runbook --dry-run`: the plan of a runbook for an alert, with nothing executed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from compiler import ir
from compiler.api import check_path
from runtime.runbooks.plan import build_plan, format_plan

REPO = Path(__file__).resolve().parent.parent
PRODUCTION = REPO / "examples" / "production"


@pytest.fixture(scope="module")
def production() -> ir.Ruleset:
    return check_path(PRODUCTION, "production").ruleset()


def runbook(ruleset: ir.Ruleset, identifier: str) -> ir.Runbook:
    return next(item for item in ruleset.runbooks if item.id == identifier)


def values(**labels: str) -> dict:
    return {
        "labels": labels,
        "label": labels,
        "annotations": {},
        "annotation": {},
        "alert": {"name": labels.get("alertname", "")},
    }


def irules(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "runtime.cli", *args], cwd=REPO, capture_output=True, text=True, timeout=120, check=False
    )


def test_memory_plan_renders_argv_and_defers_step_outputs(production: ir.Ruleset) -> None:
    plan = build_plan(
        production, runbook(production, "rb-001"), values(alertname="HighMemoryUsage", namespace="shop", deployment="cart")
    )
    steps = {step.name: step for step in plan.steps}
    assert [step.name for step in plan.steps] == [
        "top_pods",
        "check_limits",
        "restart_highest",
        "cluster_memory",
        "current_replicas",
        "scale_out",
    ]
    assert steps["top_pods"].operation == {
        "argv": ["kubectl", "top", "pods", "--namespace=shop", "--sort-by=memory", "--no-headers"]
    }
    assert steps["top_pods"].mutating is False
    assert steps["restart_highest"].condition == "steps.check_limits.value > 0.9"
    assert steps["restart_highest"].condition_holds is None
    assert steps["restart_highest"].operation["params"] == {
        "kind": "pod",
        "name": "{{ steps.check_limits.labels.pod }}",
        "namespace": "shop",
    }
    assert [step.name for step in plan.side_effects()] == ["restart_highest", "scale_out"]


def test_hostile_label_stays_one_argument_in_the_plan(production: ir.Ruleset) -> None:
    hostile = "/srv/tf; rm -rf / $(id) `id` {{ 7*7 }}"
    plan = build_plan(production, runbook(production, "rb-002"), values(alertname="TerraformStateDrift", workspace=hostile))
    apply = next(step for step in plan.steps if step.name == "apply_plan")
    assert apply.operation["argv"] == ["terraform", f"-chdir={hostile}", "apply", "-input=false", "-no-color", "drift.tfplan"]
    approval = next(step for step in plan.steps if step.name == "approval")
    assert approval.approval == "infrastructure"
    assert approval.operation == {"team": "infrastructure", "timeout_s": 3600.0}
    text = format_plan(plan)
    assert "needs approval: infrastructure" in text
    assert "side effects, in order: apply_plan" in text


def test_value_rejected_by_an_action_pattern_before_approval(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "rules.irules").write_text(
        """
receiver ops {
  webhook "https://hooks.example.com/ops"
}

route {
  receiver ops
}

runbook restart-app "Restart the app" {
  when label.alertname == "AppDown"
  manual
  step restart_it {
    restart deployment "{{ label.deployment }}" namespace = "prod"
  }
}
""",
        encoding="utf-8",
    )
    result = irules(
        "test-runbook", "--rules", str(rules), "--runbook-id", "restart-app", "--dry-run",
        "--label", "alertname=AppDown", "--label", "deployment=cart; kubectl delete ns prod",
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert "REJECTED: argument `name` of action `restart` does not match the pattern" in result.stdout
    assert "kubectl delete ns prod" not in result.stdout.split("REJECTED:")[0]


def test_cli_json_plan_lists_side_effects() -> None:
    result = irules(
        "test-runbook", "--rules", str(PRODUCTION), "--env", "production", "--runbook-id", "rb-003", "--dry-run",
        "--alert-data", str(PRODUCTION / "alerts" / "alertmanager-api-latency.json"), "--format", "json",
        "--label", "namespace=monitoring", "--label", "deployment=prometheus", "--label", "exporter=node-exporter",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout
    plan = json.loads(result.stdout)
    assert plan["runbook"] == "rb-003"
    restart = next(step for step in plan["steps"] if step["name"] == "restart_exporter")
    assert restart["compensates"] == ["validate_config"]
    assert restart["condition"] == "not steps.validate_config.ok"
    assert restart["operation"]["argv"] == [
        "kubectl", "rollout", "restart", "--namespace=monitoring", "deployment", "--", "node-exporter",
    ]  # fmt: skip
    assert plan["side_effects"] == ["restart_exporter"]


def test_unknown_runbook_is_a_usage_error() -> None:
    result = irules("test-runbook", "--rules", str(PRODUCTION), "--env", "production", "--runbook-id", "rb-999", "--dry-run")
    assert result.returncode == 2
    assert "no runbook 'rb-999' in the rules (declared: api-failover, rb-001, rb-002, rb-003)" in result.stderr


def test_known_arguments_are_checked_even_when_others_wait_for_earlier_steps(production: ir.Ruleset) -> None:
    hostile = values(alertname="HighMemoryUsage", namespace="shop; rm -rf /", deployment="cart")
    plan = build_plan(production, runbook(production, "rb-001"), hostile)
    restart = next(step for step in plan.steps if step.name == "restart_highest")
    assert restart.rejected is not None
    assert restart.rejected.startswith("argument `namespace` of action `restart` does not match the pattern")
    assert [step.name for step in plan.side_effects()] == []
