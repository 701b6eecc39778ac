"""A scripted incident for post-mortem tests, driven through the real pipeline, notifier, outbox and runbook executor.

Every moment is fixed, so the post-mortem of this incident is the same on
every run and every database:

| moment | what happens |
| --- | --- |
| T0-7d | a similar incident, INC-2026-0001, is opened by hand and resolved with a note |
| T0 | `CheckoutDown` and `LedgerErrors` start, as their sender reports |
| T0+2m | irules receives both; INC-2026-0002 opens (time to detect: 2 min) |
| T0+2m30s | the group wait ends; the team's webhook is notified |
| T0+7m | carol acknowledges (time to acknowledge: 7 min) |
| T0+8m | alice starts runbook `rollback`; step `look` requests approval from payments |
| T0+9m | bob approves `look`; it succeeds, `revert` fails and `undo` compensates it |
| T0+10m | dave requests an assisted diagnosis and links a Claude Code session |
| T0+11m | `LedgerErrors` resolves; `CheckoutDown` keeps firing |
| T0+12m | carol resolves the incident with a note (time to resolve: 12 min) |
"""

from __future__ import annotations

import datetime
import sys
from dataclasses import dataclass
from pathlib import Path

import anyio
import httpx
import pytest
import sqlalchemy as sa

from runtime import incidents as incident_ops
from runtime.alerts import Alert
from runtime.notify.model import DELIVERED, Delivery, Outbound
from runtime.policy import Policy
from runtime.runbooks import runs
from runtime.runbooks.steps import RunnerSettings, run_stored
from runtime.store import Store
from runtime.store.schema import approvals
from runtime.triage.assist.local import LocalProvider
from runtime.triage.assist.service import assist, link_session
from tests.runtime.notify_harness import T0, FakeClock, Harness, load_policy

RULES = """
settings {
  incident_id_format "INC-{year}-{number:04d}"
}

team payments {
  webhook "http://127.0.0.1:9/payments"
  owns [checkout, ledger]
}

service checkout {
  depends_on [ledger]
  tier 1
  match service = "checkout"
}

service ledger {
  tier 1
  match service = "ledger"
}

route {
  receiver payments
  group_by [cluster]
  group_wait 30s
  group_interval 5m
  repeat_interval 4h
}

severity {
  critical when label.severity == "critical"
  else medium
}

correlate by-cluster {
  by [cluster]
  window 10m
}

runbook rollback "Roll the last deploy back" {
  when label.alertname == "CheckoutDown"
  manual

  step look {
    run ["tool", "status", "{{ label.service }}"]
    read_only
    approval from payments timeout 10m
  }

  step revert {
    run ["tool", "fail", "{{ label.service }}"]
    mutating
    risk low
    on_failure undo
  }

  step undo {
    when not steps.revert.ok
    run ["tool", "undo", "{{ label.service }}"]
    mutating
    risk low
  }
}
"""

# A program that appends its argv to the file named by TOOL_LOG, and exits 1 when its first argument is `fail`.
TOOL = """#!/usr/bin/env python3
import json, os, sys
with open(os.environ["TOOL_LOG"], "a", encoding="utf-8") as log:
    log.write(json.dumps(sys.argv[1:]) + "\\n")
print("ok" if sys.argv[1] != "fail" else "revert failed: deploy 41 is locked")
sys.exit(1 if sys.argv[1] == "fail" else 0)
"""

SESSION = "5f0c2a8e-1b7d-4c1e-9f3a-0d6b2e4a8c10"


def at(minutes: float, seconds: float = 0) -> datetime.datetime:
    """Return the moment `minutes` and `seconds` after T0."""
    return T0 + datetime.timedelta(minutes=minutes, seconds=seconds)


class Recorder:
    """Sender that delivers every message at once and keeps it."""

    def __init__(self) -> None:
        self.sent: list[Outbound] = []

    async def __call__(self, outbound: Outbound) -> Delivery:
        self.sent.append(outbound)
        return Delivery(DELIVERED)


class RunClock:
    """The runbook executor's clock: the harness's fake time, with sleeps that yield briefly and no deadlines.

    Steps take no fake time, so every step of a stretch records the moment the
    test set. The approval wait polls in real time until the test decides.
    """

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock

    def now(self) -> datetime.datetime:
        return self.clock()

    async def sleep(self, seconds: float) -> None:
        del seconds
        await anyio.sleep(0.01)

    def deadline_scope(self, seconds: float | None) -> anyio.CancelScope:
        del seconds
        return anyio.CancelScope()


@dataclass
class Scripted:
    """The scripted incident's key, its run, and the log of what the runbook's program was called with."""

    key: str
    run_id: int
    tool_log: Path


def install_tool(folder: Path) -> tuple[str, Path]:
    """Write the `tool` program into `folder/bin`; return the PATH that finds it and the log it writes."""
    bin_folder = folder / "bin"
    bin_folder.mkdir(parents=True)
    tool = bin_folder / "tool"
    tool.write_text(TOOL, encoding="utf-8")
    tool.chmod(0o755)
    (bin_folder / "python3").symlink_to(sys.executable)
    return f"{bin_folder}:/usr/bin:/bin", folder / "tool.jsonl"


def alert(name: str, service: str, status: str = "firing", summary: str | None = None, **labels: str) -> Alert:
    """Return an alert from Grafana that started at T0, so irules itself sends the team's messages."""
    labels = {"alertname": name, "service": service, "cluster": "eu-1", **labels}
    return Alert(
        source="grafana",
        name=name,
        status=status,
        labels=labels,
        annotations={"summary": summary or f"{name} on {service}"},
        starts_at=T0,
    )


def script_incident(store: Store, folder: Path, monkeypatch: pytest.MonkeyPatch, *alerts: Alert) -> Scripted:
    """Play the scripted incident on `store` and return it; `alerts` replace the two default alerts."""
    path, tool_log = install_tool(folder)
    monkeypatch.setenv("PATH", path)
    monkeypatch.setenv("TOOL_LOG", str(tool_log))
    policy = load_policy(folder / "rules", RULES)
    _past_incident(store)
    clock = FakeClock(at(2))
    harness = Harness(store, policy, clock, send=Recorder())

    # T0+2m: both alerts arrive in one payload and open the incident.
    if not alerts:
        alerts = (alert("CheckoutDown", "checkout", severity="critical"), alert("LedgerErrors", "ledger"))
    harness.post(*alerts)
    key = harness.incident(2)["key"]
    harness.run_for(5 * 60, step=30)

    # T0+7m: carol acknowledges.
    incident_ops.acknowledge(store, key, "carol", clock())
    harness.tick()
    harness.run_for(60, step=30)

    # T0+8m: alice starts the runbook; bob approves its first step at T0+9m.
    run_id = _run_rollback(store, policy, key, clock)
    harness.tick()

    # T0+10m: dave requests an assisted diagnosis and links a session.
    clock.advance(60)
    assist(store, policy, key, "root-cause", LocalProvider(), "dave", clock())
    link_session(store, key, "claude-code", SESSION, "dave", clock())
    harness.tick()

    # T0+11m: the ledger alert resolves; T0+12m: carol resolves the incident.
    harness.run_for(60, step=30)
    harness.post(alert("LedgerErrors", "ledger", status="resolved"))
    harness.run_for(60, step=30)
    incident_ops.update(store, key, incident_ops.Change(status="resolved", note="reverted deploy 41 by hand"), "carol", clock())
    harness.tick()
    harness.run_for(60, step=30)
    return Scripted(key, run_id, tool_log)


def _past_incident(store: Store) -> None:
    past = at(-7 * 24 * 60)
    incident_ops.create(
        store,
        "INC-{year}-{number:04d}",
        past,
        title="CheckoutDown: CheckoutDown on checkout",
        severity="critical",
        services=["checkout"],
        team="payments",
        actor="erin",
    )
    change = incident_ops.Change(status="resolved", note="restarted the ledger pods")
    incident_ops.update(store, "INC-2026-0001", change, "erin", past + datetime.timedelta(minutes=40))


def _run_rollback(store: Store, policy: Policy, key: str, clock: FakeClock) -> int:
    incident = incident_ops.show(store, key)
    first = incident["alerts"][0]
    runbook = next(item for item in policy.ruleset.runbooks if item.id == "rollback")
    run_id = runs.start_run(
        store,
        runbook,
        incident_id=incident["number"],
        values={"labels": first["labels"], "annotations": first["annotations"]},
        trigger="manual",
        requested_by="alice",
        now=clock(),
    )

    async def approve_once_pending() -> None:
        while True:
            with store.read() as connection:
                status = connection.execute(
                    sa.select(approvals.c.status).where(approvals.c.run_id == run_id, approvals.c.step == "look")
                ).scalar()
            if status == "pending":
                break
            await anyio.sleep(0.01)
        clock.advance(60)
        runs.decide(store, run_id, "look", "granted", "bob", clock(), "checked the dashboards first")

    async def play() -> None:
        async with anyio.create_task_group() as group, httpx.AsyncClient() as client:
            group.start_soon(approve_once_pending)
            await run_stored(store, policy, run_id, RunClock(clock), client, RunnerSettings(environment=("TOOL_LOG",)))

    anyio.run(play)
    return run_id
