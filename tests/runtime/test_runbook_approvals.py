"""Approvals of runbook steps in a real store: who is asked, `--auto-approve-safe`, timeouts and late answers."""

from __future__ import annotations

import datetime
import sys
from pathlib import Path

import anyio
import httpx
import pytest
import sqlalchemy as sa

from compiler.api import check_path
from runtime import incidents as incident_ops
from runtime.incidents import IncidentError
from runtime.policy import Policy
from runtime.runbooks import runs
from runtime.runbooks.clock import RealClock, VirtualClock
from runtime.runbooks.steps import RunnerSettings, run_stored
from runtime.store import Store
from runtime.store.schema import approvals, outbox

RULES = """
team infrastructure {
  slack "#infrastructure"
  email "infrastructure@example.com"
  pagerduty key secret("INFRASTRUCTURE_PAGERDUTY_KEY")
}

route {
  receiver infrastructure
}

runbook look-then-change "Look, then change" {
  when label.alertname == "Drift"
  manual

  step look {
    run ["tool", "get", "{{ label.target }}"]
    read_only
    approval from infrastructure timeout 10m
  }

  step tweak {
    run ["tool", "annotate", "{{ label.target }}"]
    mutating
    risk low
    approval from infrastructure timeout 10m
  }

  step change {
    run ["tool", "apply", "{{ label.target }}"]
    mutating
    risk high
    approval from infrastructure timeout 10m
  }
}
"""

# A program that appends its argv to the file named by TOOL_LOG.
TOOL = """#!/usr/bin/env python3
import json, os, sys
with open(os.environ["TOOL_LOG"], "a", encoding="utf-8") as log:
    log.write(json.dumps(sys.argv[1:]) + "\\n")
"""


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


def start(store: Store, policy: Policy, now: datetime.datetime, *, auto_approve: bool) -> tuple[int, int]:
    incident = incident_ops.create(
        store, "INC-{number}", now, title="Drift", severity="high", services=[], team="infrastructure", actor="test"
    )
    runbook = policy.ruleset.runbooks[0]
    values = {"labels": {"alertname": "Drift", "target": "web"}, "annotations": {}}
    run_id = runs.start_run(
        store,
        runbook,
        incident_id=incident["id"],
        values=values,
        trigger="manual",
        requested_by="alice",
        now=now,
        auto_approve=auto_approve,
    )
    return run_id, incident["id"]


def approval_rows(store: Store, run_id: int) -> dict[str, dict]:
    with store.read() as connection:
        rows = connection.execute(sa.select(approvals).where(approvals.c.run_id == run_id)).mappings().all()
    return {row["step"]: dict(row) for row in rows}


def approval_messages(store: Store) -> list[tuple[str, str]]:
    with store.read() as connection:
        rows = connection.execute(
            sa.select(outbox.c.key, outbox.c.channel).where(outbox.c.event == "approval").order_by(outbox.c.id)
        ).all()
    return [(row.key, row.channel) for row in rows]


def settings() -> RunnerSettings:
    return RunnerSettings(environment=("TOOL_LOG",))


async def wait_for_pending(store: Store, run_id: int, step: str) -> dict:
    while True:
        row = approval_rows(store, run_id).get(step)
        if row is not None and row["status"] == "pending":
            return row
        await anyio.sleep(0.05)


@pytest.mark.anyio
async def test_auto_approve_safe_grants_only_safe_steps(store: Store, policy: Policy, tool_log: Path) -> None:
    run_id, _incident = start(store, policy, RealClock().now(), auto_approve=True)

    async def approve_the_risky_step() -> None:
        row = await wait_for_pending(store, run_id, "change")
        # Only the high-risk step is left to a person, and only its request went out.
        assert [key for key, _channel in approval_messages(store)] == [
            f"approval:{row['id']}:0",
            f"approval:{row['id']}:1",
        ]
        runs.decide(store, run_id, "change", "granted", "bob", RealClock().now())

    async with anyio.create_task_group() as group, httpx.AsyncClient() as client:
        group.start_soon(approve_the_risky_step)
        result = await run_stored(store, policy, run_id, RealClock(), client, settings())

    assert result.state == "succeeded", result.detail
    rows = approval_rows(store, run_id)
    assert rows["look"]["decided_by"] == "alice (--auto-approve-safe)"
    assert rows["tweak"]["decided_by"] == "alice (--auto-approve-safe)"
    assert rows["change"]["decided_by"] == "bob"
    assert tool_log.read_text(encoding="utf-8").splitlines() == [
        '["get", "web"]',
        '["annotate", "web"]',
        '["apply", "web"]',
    ]


@pytest.mark.anyio
async def test_without_auto_approve_every_step_asks_the_team(store: Store, policy: Policy, tool_log: Path) -> None:
    run_id, _incident = start(store, policy, RealClock().now(), auto_approve=False)

    async def deny_the_first_step() -> None:
        await wait_for_pending(store, run_id, "look")
        runs.decide(store, run_id, "look", "denied", "bob", RealClock().now(), "not now")

    async with anyio.create_task_group() as group, httpx.AsyncClient() as client:
        group.start_soon(deny_the_first_step)
        result = await run_stored(store, policy, run_id, RealClock(), client, settings())

    assert result.state == "failed"
    assert not tool_log.exists()
    # Slack and e-mail are asked; PagerDuty is left out, because an event would change the page.
    assert [channel for _key, channel in approval_messages(store)] == ["slack", "email"]


def test_approval_message_shows_the_exact_operation(store: Store, policy: Policy) -> None:
    now = RealClock().now()
    run_id, incident_id = start(store, policy, now, auto_approve=False)
    operation = {"kind": "run", "argv": ["tool", "apply", "web; rm -rf /"], "exit_codes": [0]}
    from runtime.runbooks.steps import StoreRunner

    runner = StoreRunner(store, policy, run_id, RealClock(), httpx.AsyncClient())
    step = policy.ruleset.runbooks[0].steps[2]
    request_id = runner._ask(step, operation, "infrastructure", now, 600.0)
    # Asking again, as a run resumed after a restart does, sends nothing more.
    assert runner._ask(step, operation, "infrastructure", now, 600.0) == request_id

    with store.read() as connection:
        messages = connection.execute(
            sa.select(outbox.c.channel, outbox.c.message).where(outbox.c.event == "approval").order_by(outbox.c.id)
        ).all()
    assert [row.channel for row in messages] == ["slack", "email"]
    email = messages[1].message["payload"]
    assert "tool apply 'web; rm -rf /'" in email["text"]
    assert f"Approve: irules approve {run_id} change" in email["text"]
    slack_buttons = next(block for block in messages[0].message["payload"]["blocks"] if block["type"] == "actions")
    assert [button["value"] for button in slack_buttons["elements"]] == [str(request_id), str(request_id)]
    with store.read() as connection:
        key = connection.execute(
            sa.select(incident_ops.incidents.c.key).where(incident_ops.incidents.c.id == incident_id)
        ).scalar()
    queued = [entry for entry in incident_ops.show(store, key)["timeline"] if entry["kind"] == "notification.queued"]
    assert [entry["message"] for entry in queued][-1] == "Notified infrastructure (approval) via slack, email"


@pytest.mark.anyio
async def test_approval_timeout_rejects_a_late_answer(store: Store, policy: Policy, tool_log: Path) -> None:
    async with VirtualClock.running() as clock, httpx.AsyncClient() as client:
        run_id, _incident = start(store, policy, clock.now(), auto_approve=False)
        result = await run_stored(store, policy, run_id, clock, client, settings())

    assert result.state == "failed"
    row = approval_rows(store, run_id)["look"]
    assert row["status"] == "timed_out"
    assert row["decided_at"] == VirtualClock.DEFAULT_START + datetime.timedelta(minutes=10)
    with pytest.raises(IncidentError, match="waits for no approval or decision"):
        runs.decide(store, run_id, "look", "granted", "bob", RealClock().now())
    assert not tool_log.exists()


def test_answer_after_the_timeout_is_rejected_before_the_run_notices(store: Store, policy: Policy) -> None:
    now = RealClock().now()
    run_id, _incident = start(store, policy, now, auto_approve=False)
    runs.request(store, run_id, "look", runs.APPROVAL, "infrastructure", {"kind": "run"}, now, 600.0)

    with pytest.raises(IncidentError, match="timed out at") as raised:
        runs.decide(store, run_id, "look", "granted", "bob", now + datetime.timedelta(minutes=11))
    assert raised.value.status == 409
    assert approval_rows(store, run_id)["look"]["status"] == "pending"


def test_finished_run_expires_its_pending_approvals(store: Store, policy: Policy) -> None:
    now = RealClock().now()
    run_id, _incident = start(store, policy, now, auto_approve=False)
    runs.request(store, run_id, "look", runs.APPROVAL, "infrastructure", {"kind": "run"}, now, None)

    runs.finish_run(store, run_id, "failed", "the deadline passed", now)

    assert approval_rows(store, run_id)["look"]["status"] == "expired"
    with pytest.raises(IncidentError, match="waits for no approval or decision"):
        runs.decide(store, run_id, "look", "granted", "bob", now)
