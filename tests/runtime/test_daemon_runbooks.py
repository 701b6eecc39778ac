"""Runbooks in the daemon as a child process: an automatic run starts with its incident, and a SIGKILL mid-step.

A mutating step that was running when the daemon died is never run again by
itself: after the restart it is interrupted and waits for a person's decision.
A read-only step is simply run again.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from runtime.store.store import DATABASE_FILE
from tests.runtime.daemon_process import DaemonProcess, alertmanager_webhook, run_cli

RULES = """
settings {
  incident_id_format "INC-{number}"
}

receiver ops {
  webhook "http://127.0.0.1:9/ops"
}

route {
  receiver ops
  group_by [alertname]
}

runbook slow-fix "Slow fix" {
  when label.alertname == "SlowThing"
  auto
  timeout 10m

  step look {
    run ["sleep", "{{ label.look_s }}"]
    read_only
    timeout 1m
  }

  step change {
    run ["sleep", "{{ label.change_s }}"]
    mutating
    timeout 1m
  }
}
"""

WAIT_S = 30.0


def wait_for(check: Callable[[], bool], description: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {description}")


def alert_body(name: str, **labels: str) -> bytes:
    return alertmanager_webhook(name, labels)


def run_state(state: Path) -> dict:
    result = run_cli("runs", "show", "1", "--state", str(state), "--format", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def stored_steps(state: Path) -> dict[str, str]:
    """Return the step states of run 1, read from the daemon's SQLite file without starting a process."""
    import sqlite3

    database = state / DATABASE_FILE
    if not database.exists():
        return {}
    with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5)) as connection:
        try:
            rows = connection.execute("SELECT name, state FROM step_runs WHERE run_id = 1").fetchall()
        except sqlite3.OperationalError:
            return {}
    return dict(rows)


def steps_of(state: Path) -> dict[str, str]:
    return {step["name"]: step["state"] for step in run_state(state)["steps"]}


@pytest.fixture
def rules(tmp_path: Path) -> Path:
    folder = tmp_path / "rules"
    folder.mkdir()
    (folder / "rules.irules").write_text(RULES, encoding="utf-8")
    return folder


def daemon(rules: Path, state: Path) -> DaemonProcess:
    return DaemonProcess(rules, state, allow_unauthenticated=True, extra_args=["--no-notify"])


@pytest.mark.slow
def test_killed_during_a_mutating_step_waits_for_a_decision(rules: Path, tmp_path: Path) -> None:
    state = tmp_path / "state"
    first = daemon(rules, state).start()
    try:
        assert first.post("/hooks/alertmanager", alert_body("SlowThing", look_s="0", change_s="20")).status_code == 202
        wait_for(lambda: steps_of(state).get("change") == "running", "the mutating step to start")
    finally:
        first.kill()
    second = daemon(rules, state).start()
    try:
        wait_for(lambda: steps_of(state).get("change") == "interrupted", "the step to be marked interrupted")
        shown = run_state(state)
        assert shown["status"] == "waiting"
        assert [(item["kind"], item["step"], item["status"]) for item in shown["approvals"]] == [
            ("decision", "change", "pending")
        ]
        # Nothing runs it again without a person: a second later it is still interrupted.
        time.sleep(1.0)
        assert steps_of(state)["change"] == "interrupted"
        decided = run_cli("approve", "1", "change", "--decision", "skip", "--as", "alice", "--state", str(state))
        assert decided.returncode == 0, decided.stderr
        wait_for(lambda: run_state(state)["status"] in ("succeeded", "failed"), "the run to end")
        assert steps_of(state) == {"look": "succeeded", "change": "skipped"}
        timeline = second.incident("INC-1")["timeline"]
        assert any(entry["kind"] == "step.decision" and entry["actor"] == "alice" for entry in timeline)
    finally:
        second.stop()


@pytest.mark.slow
def test_killed_during_a_read_only_step_runs_it_again(rules: Path, tmp_path: Path) -> None:
    state = tmp_path / "state"
    first = daemon(rules, state).start()
    try:
        assert first.post("/hooks/alertmanager", alert_body("SlowThing", look_s="6", change_s="0")).status_code == 202
        # Read the store directly: a CLI process per poll can take longer than the step on a loaded machine.
        wait_for(lambda: stored_steps(state).get("look") == "running", "the read-only step to start")
    finally:
        first.kill()
    second = daemon(rules, state).start()
    try:
        wait_for(lambda: run_state(state)["status"] == "succeeded", "the resumed run to succeed")
        shown = run_state(state)
        look = next(step for step in shown["steps"] if step["name"] == "look")
        assert look["attempt"] == 2
        assert steps_of(state) == {"look": "succeeded", "change": "succeeded"}
        assert shown["approvals"] == []
    finally:
        second.stop()


MANUAL_RULES = """
settings {
  incident_id_format "INC-{number}"
}

team ops {
  webhook "http://127.0.0.1:9/ops"
}

route {
  receiver ops
}

runbook careful "Careful change" {
  when label.alertname == "NeedsCare"
  manual
  timeout 10m

  step change {
    run ["true"]
    mutating
    risk high
    approval from ops timeout 10m
  }
}
"""


@pytest.mark.slow
def test_remediate_and_approve_through_the_api(tmp_path: Path) -> None:
    folder = tmp_path / "manual"
    folder.mkdir()
    (folder / "rules.irules").write_text(MANUAL_RULES, encoding="utf-8")
    process = daemon(folder, tmp_path / "state").start()
    try:
        assert process.post("/hooks/alertmanager", alert_body("NeedsCare")).status_code == 202
        wait_for(lambda: len(process.incidents()) == 1, "the incident")
        started = process.client.post("/api/v1/incidents/INC-1/remediate", json={"actor": "alice"})
        assert started.status_code == 201, started.text
        assert started.json() == {"runs": [{"runbook": "careful", "run": 1}]}
        again = process.client.post("/api/v1/incidents/INC-1/remediate", json={"actor": "alice"})
        assert again.status_code == 409
        assert "still active" in again.json()["runs"][0]["refused"]

        def pending() -> list:
            return [item for item in process.client.get("/api/v1/runs/1").json()["approvals"] if item["status"] == "pending"]

        wait_for(lambda: bool(pending()), "the approval request")
        assert pending()[0]["operation"] == {"kind": "run", "argv": ["true"], "exit_codes": [0]}
        wrong = process.client.post("/api/v1/runs/1/steps/change/decision", json={"answer": "retry"})
        assert wrong.status_code == 400
        granted = run_cli("approve", "1", "change", "--as", "bob", "--daemon", process.url)
        assert granted.returncode == 0, granted.stderr
        assert granted.stdout == "run 1, step change: granted by bob\n"
        wait_for(lambda: process.client.get("/api/v1/runs/1").json()["status"] == "succeeded", "the run to succeed")
        listed = run_cli("runs", "list", "--incident-id", "INC-1", "--daemon", process.url, "--format", "json")
        assert [run["status"] for run in json.loads(listed.stdout)] == ["succeeded"]
        again_cli = run_cli("remediate", "--incident-id", "INC-1", "--daemon", process.url, "--as", "alice")
        assert again_cli.returncode == 0, again_cli.stderr
        assert again_cli.stdout == "runbook careful: run 2 started; the daemon executes it (irules runs show 2)\n"
    finally:
        process.stop()


@pytest.mark.slow
def test_auto_approve_safe_leaves_high_risk_to_a_person(tmp_path: Path) -> None:
    folder = tmp_path / "manual"
    folder.mkdir()
    (folder / "rules.irules").write_text(MANUAL_RULES, encoding="utf-8")
    process = daemon(folder, tmp_path / "state").start()
    try:
        assert process.post("/hooks/alertmanager", alert_body("NeedsCare")).status_code == 202
        wait_for(lambda: len(process.incidents()) == 1, "the incident")
        invalid = process.client.post("/api/v1/incidents/INC-1/remediate", json={"auto_approve_safe": "yes"})
        assert invalid.status_code == 400
        assert invalid.json()["error"] == "field `auto_approve_safe` must be true or false"

        started = run_cli("remediate", "--incident-id", "INC-1", "--daemon", process.url, "--as", "alice", "--auto-approve-safe")
        assert started.returncode == 0, started.stderr
        wait_for(lambda: bool(process.client.get("/api/v1/runs/1").json()["approvals"]), "the approval request")
        run = process.client.get("/api/v1/runs/1").json()
        assert run["auto_approve"] is True
        # The step is mutating and of high risk, so it still waits for a person.
        assert [(item["step"], item["status"], item["decided_by"]) for item in run["approvals"]] == [("change", "pending", None)]
        assert run["status"] == "waiting"
    finally:
        process.stop()
