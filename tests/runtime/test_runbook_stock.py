"""The three stock runbooks end to end: a real store, fake kubectl and terraform on PATH, a fake Prometheus.

- rb-001 restarts the pod that Prometheus names and scales the deployment out;
- rb-002 plans, waits for the infrastructure team's approval, and applies only after it;
- rb-003 restarts the exporter only when the configuration check fails.
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import anyio
import httpx
import pytest

from compiler import ir
from compiler.api import check_path
from runtime import incidents as incident_ops
from runtime.policy import Policy
from runtime.runbooks import runs
from runtime.runbooks.clock import RealClock
from runtime.runbooks.steps import RunnerSettings, run_stored
from runtime.store import Store

REPO = Path(__file__).resolve().parents[2]
FAKE_KUBECTL = Path(__file__).with_name("fake_kubectl.py")
NOW_S = 1_772_964_000

# kubectl for rb-003: the fake, except that `exec` (the configuration check) exits with the code in the
# file `validate_exit` beside the state file. The two checks run in parallel, so an exit code per call
# in arrival order would not say which call fails.
KUBECTL_WITH_VALIDATION = """#!/usr/bin/env python3
import importlib.util, os, pathlib, sys
spec = importlib.util.spec_from_file_location("fake_kubectl", "FAKE_KUBECTL_PATH")
fake = importlib.util.module_from_spec(spec)
spec.loader.exec_module(fake)
code = fake.main(["kubectl", *sys.argv[1:]])
if sys.argv[1:2] == ["exec"]:
    code = int((pathlib.Path(os.environ["FAKE_KUBECTL_STATE"]).parent / "validate_exit").read_text())
sys.exit(code)
"""

FAKE_TERRAFORM = """#!/usr/bin/env python3
import json, os, sys
with open(os.environ["FAKE_KUBECTL_LOG"], "a", encoding="utf-8") as log:
    log.write(json.dumps({"argv": ["terraform", *sys.argv[1:]]}) + "\\n")
if "plan" in sys.argv:
    print("Plan: 0 to add, 1 to change, 0 to destroy.")
    sys.exit(2)
print("Apply complete! Resources: 0 added, 1 changed, 0 destroyed.")
"""


class Prometheus(BaseHTTPRequestHandler):
    """Answers instant queries as the stock runbooks expect, and a health endpoint."""

    def do_GET(self) -> None:
        url = urlparse(self.path)
        if url.path == "/healthz":
            self._send(200, {"status": "ok"})
            return
        query = parse_qs(url.query).get("query", [""])[0]
        if query.startswith("topk"):
            result = [{"metric": {"pod": "cart-7d9f5-x2k4q"}, "value": [NOW_S, "0.97"]}]
        elif "node_memory" in query:
            result = [{"metric": {}, "value": [NOW_S, "0.86"]}]
        elif "kube_deployment_spec_replicas" in query:
            result = [{"metric": {"deployment": "cart"}, "value": [NOW_S, "4"]}]
        else:
            result = []
        self._send(200, {"status": "success", "data": {"resultType": "vector", "result": result}})

    def _send(self, status: int, document: dict) -> None:
        body = json.dumps(document).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_arguments: object) -> None:
        pass


@pytest.fixture(scope="module")
def policy() -> Policy:
    return Policy(check_path(REPO / "examples" / "production", "production").ruleset())


@pytest.fixture
def prometheus() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Prometheus)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def tools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Put fake kubectl and terraform first on PATH; return the log both append their argv to."""
    folder = tmp_path / "bin"
    folder.mkdir()
    kubectl = folder / "kubectl"
    kubectl.write_text(KUBECTL_WITH_VALIDATION.replace("FAKE_KUBECTL_PATH", str(FAKE_KUBECTL)), encoding="utf-8")
    kubectl.chmod(0o755)
    (tmp_path / "validate_exit").write_text("0", encoding="utf-8")
    (folder / "python3").symlink_to(sys.executable)
    terraform = folder / "terraform"
    terraform.write_text(FAKE_TERRAFORM, encoding="utf-8")
    terraform.chmod(0o755)
    log = tmp_path / "calls.jsonl"
    monkeypatch.setenv("PATH", f"{folder}:{__import__('os').environ['PATH']}")
    monkeypatch.setenv("FAKE_KUBECTL_LOG", str(log))
    monkeypatch.setenv("FAKE_KUBECTL_STATE", str(tmp_path / "state.json"))
    monkeypatch.delenv("FAKE_KUBECTL_EXIT", raising=False)
    return log


def calls(log: Path) -> list[list[str]]:
    if not log.exists():
        return []
    return [json.loads(line)["argv"] for line in log.read_text(encoding="utf-8").splitlines()]


def values_for(**labels: str) -> dict:
    return {
        "labels": labels,
        "annotations": {"health_url": labels.pop("health_url", "")} if "health_url" in labels else {},
        "alert": {"name": labels.get("alertname", ""), "status": "firing"},
    }


def start(store: Store, policy: Policy, runbook_id: str, values: dict) -> tuple[int, str]:
    clock = RealClock()
    incident = incident_ops.create(
        store, "INC-{number}", clock.now(), title=runbook_id, severity="high", services=[], team="infrastructure", actor="test"
    )
    runbook = next(item for item in policy.ruleset.runbooks if item.id == runbook_id)
    run_id = runs.start_run(
        store, runbook, incident_id=incident["id"], values=values, trigger="manual", requested_by="alice", now=clock.now()
    )
    return run_id, incident["key"]


def settings(prometheus: str) -> RunnerSettings:
    return RunnerSettings(prometheus_url=prometheus, environment=("FAKE_KUBECTL_LOG", "FAKE_KUBECTL_STATE"))


async def execute(store: Store, policy: Policy, run_id: int, prometheus: str):  # type: ignore[no-untyped-def]
    async with httpx.AsyncClient() as client:
        return await run_stored(store, policy, run_id, RealClock(), client, settings(prometheus))


@pytest.mark.anyio
async def test_high_memory_restarts_the_right_pod_and_scales(store: Store, policy: Policy, tools: Path, prometheus: str) -> None:
    run_id, key = start(store, policy, "rb-001", values_for(alertname="HighMemoryUsage", namespace="shop", deployment="cart"))
    result = await execute(store, policy, run_id, prometheus)
    assert result.state == "succeeded", result.detail
    assert calls(tools) == [
        ["kubectl", "top", "pods", "--namespace=shop", "--sort-by=memory", "--no-headers"],
        ["kubectl", "delete", "--wait=false", "--namespace=shop", "pod", "--", "cart-7d9f5-x2k4q"],
        ["kubectl", "scale", "--namespace=shop", "--replicas=6", "deployment", "--", "cart"],
    ]
    shown = runs.show_run(store, run_id)
    assert shown["status"] == "succeeded"
    assert {step["name"]: step["state"] for step in shown["steps"]} == {
        "top_pods": "succeeded",
        "check_limits": "succeeded",
        "restart_highest": "succeeded",
        "cluster_memory": "succeeded",
        "current_replicas": "succeeded",
        "scale_out": "succeeded",
    }
    kinds = [entry["kind"] for entry in incident_ops.show(store, key)["timeline"]]
    assert kinds.count("step.succeeded") == 6
    assert kinds[-1] == "runbook.finished"


@pytest.mark.anyio
async def test_drift_applies_only_after_approval(store: Store, policy: Policy, tools: Path, prometheus: str) -> None:
    run_id, key = start(store, policy, "rb-002", values_for(alertname="TerraformStateDrift", workspace="/srv/tf/network"))

    async def approve_when_asked() -> None:
        while not [item for item in runs.show_run(store, run_id)["approvals"] if item["status"] == "pending"]:
            await anyio.sleep(0.05)
        # Planned, reported, notified, but nothing applied while the approval is pending.
        assert [argv[2] for argv in calls(tools)] == ["plan"]
        pending = runs.show_run(store, run_id)["approvals"][0]
        assert (pending["step"], pending["team"]) == ("approval", "infrastructure")
        runs.decide(store, run_id, "approval", "granted", "bob", RealClock().now())

    async with anyio.create_task_group() as group:
        group.start_soon(approve_when_asked)
        result = await execute(store, policy, run_id, prometheus)
    assert result.state == "succeeded", result.detail
    assert calls(tools) == [
        [
            "terraform",
            "-chdir=/srv/tf/network",
            "plan",
            "-detailed-exitcode",
            "-input=false",
            "-lock=false",
            "-no-color",
            "-out=drift.tfplan",
        ],
        ["terraform", "-chdir=/srv/tf/network", "apply", "-input=false", "-no-color", "drift.tfplan"],
    ]
    timeline = incident_ops.show(store, key)["timeline"]
    approved = [entry for entry in timeline if entry["kind"] == "step.approval"]
    assert [(entry["actor"], entry["data"]["answer"]) for entry in approved] == [("bob", "granted")]


@pytest.mark.anyio
async def test_drift_denied_applies_nothing(store: Store, policy: Policy, tools: Path, prometheus: str) -> None:
    run_id, _key = start(store, policy, "rb-002", values_for(alertname="TerraformStateDrift", workspace="/srv/tf/network"))

    async def deny_when_asked() -> None:
        while not [item for item in runs.show_run(store, run_id)["approvals"] if item["status"] == "pending"]:
            await anyio.sleep(0.05)
        pending = next(item for item in runs.show_run(store, run_id)["approvals"] if item["status"] == "pending")
        # By the approval's id, as the Slack Deny button does.
        runs.decide_by_id(store, pending["id"], False, "slack:U00000002 (max)", RealClock().now())

    async with anyio.create_task_group() as group:
        group.start_soon(deny_when_asked)
        result = await execute(store, policy, run_id, prometheus)
    assert result.state == "failed"
    assert [argv[2] for argv in calls(tools)] == ["plan"]
    approval = runs.show_run(store, run_id)["approvals"][0]
    assert (approval["status"], approval["decided_by"]) == ("denied", "slack:U00000002 (max)")


@pytest.mark.anyio
@pytest.mark.parametrize(("validate_exit", "restarted"), [(1, True), (0, False)])
async def test_tool_error_restarts_the_exporter_only_when_validation_fails(
    store: Store, policy: Policy, tools: Path, prometheus: str, validate_exit: int, restarted: bool
) -> None:
    (tools.parent / "validate_exit").write_text(str(validate_exit), encoding="utf-8")
    labels = {
        "alertname": "ToolCriticalError",
        "namespace": "monitoring",
        "deployment": "prometheus",
        "exporter": "node-exporter",
        "health_url": f"{prometheus}/healthz",
    }
    run_id, _key = start(store, policy, "rb-003", values_for(**labels))
    result = await execute(store, policy, run_id, prometheus)
    restarts = [argv for argv in calls(tools) if argv[1:3] == ["rollout", "restart"]]
    if restarted:
        assert restarts == [["kubectl", "rollout", "restart", "--namespace=monitoring", "deployment", "--", "node-exporter"]]
        steps = {step["name"]: step["state"] for step in runs.show_run(store, run_id)["steps"]}
        assert steps["validate_config"] == "compensated"
        assert steps["restart_exporter"] == "succeeded"
        assert result.state == "failed"
    else:
        assert restarts == []
        assert result.state == "succeeded", result.detail


def test_second_run_for_the_same_incident_is_refused(store: Store, policy: Policy) -> None:
    run_id, _key = start(store, policy, "rb-002", values_for(alertname="TerraformStateDrift", workspace="/srv"))
    runbook = next(item for item in policy.ruleset.runbooks if item.id == "rb-002")
    incident_id = runs.show_run(store, run_id)["incident"]
    assert incident_id is not None
    with store.read() as connection:
        import sqlalchemy as sa

        from runtime.store.schema import runbook_runs

        number = connection.execute(sa.select(runbook_runs.c.incident_id).where(runbook_runs.c.id == run_id)).scalar_one()
    with pytest.raises(runs.RunRefused, match=f"run {run_id} of runbook rb-002 is still active"):
        runs.start_run(store, runbook, incident_id=number, values={}, trigger="manual", requested_by="bob", now=RealClock().now())


def test_rate_limit_refuses_the_fourth_run_within_the_hour(store: Store, policy: Policy) -> None:
    runbook: ir.Runbook = next(item for item in policy.ruleset.runbooks if item.id == "rb-001")
    now = RealClock().now()
    for number in range(3):
        run_id = runs.start_run(
            store,
            runbook,
            incident_id=None,
            values={"labels": {"n": str(number)}},
            trigger="auto",
            requested_by="irules",
            now=now,
        )
        runs.finish_run(store, run_id, "succeeded", "done", now)
    with pytest.raises(runs.RunRefused, match="ran 3 times in the last 1h, its limit"):
        runs.start_run(store, runbook, incident_id=None, values={}, trigger="auto", requested_by="irules", now=now)
