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
        "kind": "run",
        "argv": ["kubectl", "top", "pods", "--namespace=shop", "--sort-by=memory", "--no-headers"],
        "exit_codes": [0],
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
    assert approval.operation == {"kind": "approve", "team": "infrastructure", "timeout_s": 3600.0}
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
        "--annotation", "health_url=http://127.0.0.1:9/health",
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


def test_plan_rejects_what_the_run_would_reject() -> None:
    # Without a `health_url` annotation the request has no URL, which a run rejects too.
    result = irules(
        "test-runbook", "--rules", str(PRODUCTION), "--env", "production", "--runbook-id", "rb-003", "--dry-run",
        "--label", "alertname=PrometheusTargetMissing", "--label", "namespace=monitoring",
    )  # fmt: skip
    assert result.returncode == 1
    assert "REJECTED: step `check_api_health`: the URL '' is not an http or https URL" in result.stdout


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


# ---------------------------------------------------------------- running on this host

# Records its argv in $TOOL_LOG; `terraform plan` exits 2 (changes), `kubectl exec` exits $EXEC_EXIT.
FAKE_TOOL = """#!/usr/bin/env python3
import json, os, sys
name = os.path.basename(sys.argv[0])
with open(os.environ["TOOL_LOG"], "a", encoding="utf-8") as log:
    log.write(json.dumps([name, *sys.argv[1:]]) + "\\n")
if name == "terraform" and "plan" in sys.argv:
    print("Plan: 0 to add, 1 to change, 0 to destroy.")
    sys.exit(2)
if name == "kubectl" and sys.argv[1:2] == ["exec"]:
    print("FAILED: parsing YAML file /etc/prometheus/prometheus.yml")
    sys.exit(int(os.environ.get("EXEC_EXIT", "0")))
print("ok")
"""


@pytest.fixture
def tools(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """Return an environment with fake terraform and kubectl first on PATH, and the log of their argv."""
    import os

    folder = tmp_path / "bin"
    folder.mkdir()
    for name in ("terraform", "kubectl"):
        tool = folder / name
        tool.write_text(FAKE_TOOL, encoding="utf-8")
        tool.chmod(0o755)
    (folder / "python3").symlink_to(sys.executable)
    log = tmp_path / "calls.jsonl"
    environment = {**os.environ, "PATH": f"{folder}:{os.environ['PATH']}", "TOOL_LOG": str(log), "IRULES_RUNBOOK_ENV": "TOOL_LOG"}
    return environment, log


def run_here(environment: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "runtime.cli", "test-runbook", "--rules", str(PRODUCTION), "--env", "production", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=environment,
        stdin=subprocess.DEVNULL,
    )


def logged(log: Path) -> list[list[str]]:
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]


DRIFT = ("--runbook-id", "rb-002", "--label", "alertname=TerraformStateDrift", "--label", "workspace=/srv/tf/network")


def test_run_applies_after_approve_option(tools: tuple[dict[str, str], Path]) -> None:
    environment, log = tools
    result = run_here(environment, *DRIFT, "--approve", "approval")

    assert result.returncode == 0, result.stdout + result.stderr
    assert [argv[:3] for argv in logged(log)] == [
        ["terraform", "-chdir=/srv/tf/network", "plan"],
        ["terraform", "-chdir=/srv/tf/network", "apply"],
    ]
    assert "✓ approval: succeeded: approved by " in result.stdout
    assert "✓ apply_plan: succeeded" in result.stdout
    assert result.stdout.rstrip().endswith("run succeeded: every step succeeded or was skipped")


def test_run_without_terminal_denies_the_approval(tools: tuple[dict[str, str], Path]) -> None:
    environment, log = tools
    result = run_here(environment, *DRIFT)

    assert result.returncode == 1
    assert [argv[2] for argv in logged(log)] == ["plan"]
    assert "step approval needs approval from infrastructure: denied, no terminal to ask on" in result.stdout
    assert "✗ approval: failed: denied by " in result.stdout


def test_run_restarts_exporter_when_validation_fails(tools: tuple[dict[str, str], Path]) -> None:
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Health(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *_arguments: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    environment, log = tools
    try:
        result = run_here(
            {**environment, "EXEC_EXIT": "1", "IRULES_RUNBOOK_ENV": "TOOL_LOG,EXEC_EXIT"},
            "--runbook-id", "rb-003", "--label", "alertname=ToolCriticalError", "--label", "namespace=monitoring",
            "--label", "deployment=prometheus", "--label", "exporter=node-exporter",
            "--annotation", f"health_url=http://127.0.0.1:{server.server_address[1]}/health",
        )  # fmt: skip
    finally:
        server.shutdown()
        server.server_close()

    restarts = [argv for argv in logged(log) if argv[1:3] == ["rollout", "restart"]]
    assert restarts == [["kubectl", "rollout", "restart", "--namespace=monitoring", "deployment", "--", "node-exporter"]]
    assert "✓ restart_exporter: succeeded" in result.stdout
    # The run fails, because its configuration check failed; the restart is the compensation.
    assert result.returncode == 1


def test_run_keeps_its_record_with_state(tools: tuple[dict[str, str], Path], tmp_path: Path) -> None:
    environment, _log = tools
    state = tmp_path / "state"
    result = run_here(environment, *DRIFT, "--approve", "approval", "--state", str(state))
    assert result.returncode == 0, result.stderr

    shown = irules("runs", "show", "1", "--state", str(state), "--format", "json")
    run = json.loads(shown.stdout)
    assert run["trigger"] == "local"
    assert [(step["name"], step["state"]) for step in run["steps"]][-1] == ("apply_plan", "succeeded")
    assert [(item["step"], item["status"]) for item in run["approvals"]] == [("approval", "granted")]


def test_approve_option_must_name_a_step(tools: tuple[dict[str, str], Path]) -> None:
    environment, log = tools
    result = run_here(environment, *DRIFT, "--approve", "apply")

    assert result.returncode == 2
    assert "--approve names no step of rb-002: apply" in result.stderr
    assert logged(log) == []


def test_run_options_are_rejected_with_dry_run() -> None:
    result = irules("test-runbook", "--rules", str(PRODUCTION), "--env", "production", *DRIFT, "--dry-run", "--approve", "x")
    assert result.returncode == 2
    assert "apply to runs, not to --dry-run" in result.stderr
