"""Recommendations that the gate lets run start real runs, and the runbook `assist` step diagnoses its incident."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import httpx
import pytest

from compiler.api import check_path
from runtime import incidents as incident_ops
from runtime.policy import Policy
from runtime.runbooks import runs
from runtime.runbooks.clock import RealClock
from runtime.runbooks.steps import RunnerSettings, run_stored
from runtime.store import Store
from runtime.triage.assist.model import Answer, Recommendation
from runtime.triage.assist.provider import Reply, Request
from runtime.triage.assist.service import assist, start_recommended

RULES = """
receiver ops {
  webhook "http://127.0.0.1:9/ops"
}

route {
  receiver ops
}

action inspect(name: string matching "^[a-z0-9-]{1,40}$") {
  run ["tool", "inspect", "--", "{{ name }}"]
  read_only
  timeout 1m
}

action wipe(name: string matching "^[a-z0-9-]{1,40}$") {
  run ["tool", "wipe", "--", "{{ name }}"]
  mutating
  risk high
  timeout 1m
}

runbook diagnose "Diagnose" {
  when label.alertname == "Broken"
  manual

  step think {
    assist focus root-cause
  }
}
"""

TOOL = """#!/usr/bin/env python3
import json, os, sys
with open(os.environ["TOOL_LOG"], "a", encoding="utf-8") as log:
    log.write(json.dumps(sys.argv[1:]) + "\\n")
print("inspected")
"""


class ScriptedProvider:
    """A provider whose answer is fixed by the test."""

    name = "scripted"

    def __init__(self, *recommendations: Recommendation) -> None:
        self.recommendations = list(recommendations)

    def diagnose(self, request: Request) -> Reply:
        answer = Answer(summary="scripted", hypotheses=[], recommendations=self.recommendations, citations=[])
        return Reply(answer=answer, provider=self.name)


@pytest.fixture
def policy(tmp_path: Path) -> Policy:
    folder = tmp_path / "rules"
    folder.mkdir()
    (folder / "rules.irules").write_text(RULES, encoding="utf-8")
    return Policy(check_path(folder, None).ruleset())


@pytest.fixture
def tool_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "bin"
    folder.mkdir()
    tool = folder / "tool"
    tool.write_text(TOOL, encoding="utf-8")
    tool.chmod(0o755)
    (folder / "python3").symlink_to(sys.executable)
    monkeypatch.setenv("PATH", f"{folder}:/usr/bin:/bin")
    log = tmp_path / "tool.jsonl"
    monkeypatch.setenv("TOOL_LOG", str(log))
    return log


def open_incident(store: Store) -> dict:
    return incident_ops.create(
        store, "INC-{number}", RealClock().now(), title="Broken", severity="high", services=[], team=None, actor="test"
    )


def recommend(name: str, confidence: float) -> Recommendation:
    return Recommendation(kind="action", name=name, params={"name": "cart"}, confidence=confidence, reason="test")


@pytest.mark.anyio
async def test_read_only_action_runs_after_the_gate(store: Store, policy: Policy, tool_log: Path) -> None:
    incident = open_incident(store)
    now = RealClock().now()
    result = assist(store, policy, incident["key"], "remediation", ScriptedProvider(recommend("inspect", 0.9)), "alice", now)

    started = start_recommended(store, result, "alice", now)

    assert started == [{"runbook": "assist-action-inspect", "run": 1}]
    async with httpx.AsyncClient() as client:
        outcome = await run_stored(store, policy, 1, RealClock(), client, RunnerSettings(environment=("TOOL_LOG",)))
    assert outcome.state == "succeeded", outcome.detail
    assert [json.loads(line) for line in tool_log.read_text(encoding="utf-8").splitlines()] == [["inspect", "--", "cart"]]
    assert runs.show_run(store, 1)["trigger"] == "assist"


def test_high_risk_action_is_only_offered(store: Store, policy: Policy, tool_log: Path) -> None:
    incident = open_incident(store)
    now = RealClock().now()
    result = assist(store, policy, incident["key"], "remediation", ScriptedProvider(recommend("wipe", 0.99)), "alice", now)

    assert [decision.verdict for decision in result.decisions] == ["offered"]
    assert start_recommended(store, result, "alice", now) == []
    assert runs.list_runs(store) == []


def test_low_confidence_action_is_only_offered(store: Store, policy: Policy) -> None:
    incident = open_incident(store)
    now = RealClock().now()
    result = assist(store, policy, incident["key"], "remediation", ScriptedProvider(recommend("inspect", 0.8)), "alice", now)

    assert [decision.verdict for decision in result.decisions] == ["offered"]
    assert start_recommended(store, result, "alice", now) == []


@pytest.mark.anyio
async def test_assist_step_records_a_diagnosis(store: Store, policy: Policy) -> None:
    incident = open_incident(store)
    runbook = policy.ruleset.runbooks[0]
    now = RealClock().now()
    run_id = runs.start_run(
        store,
        runbook,
        incident_id=incident["id"],
        values={"labels": {"alertname": "Broken"}},
        trigger="manual",
        requested_by="alice",
        now=now,
    )
    async with httpx.AsyncClient() as client:
        outcome = await run_stored(store, policy, run_id, RealClock(), client)

    assert outcome.state == "succeeded", outcome.detail
    kinds = [entry["kind"] for entry in incident_ops.show(store, incident["key"])["timeline"]]
    assert "assist.requested" in kinds
    assert "assist.answer" in kinds
    assert runs.list_runs(store)[0]["runbook"] == "diagnose"
    assert len(runs.list_runs(store)) == 1
