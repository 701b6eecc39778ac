"""Backtesting a recorded week through two rule versions, in-process and as the `irules backtest` command.

The week is recorded as the daemon records it: Alertmanager webhook bodies go
through the real source, `accept` and the pipeline into the store (SQLite and
PostgreSQL), and a person acknowledges some incidents through the incident
operations. The backtest replays it through version A (the baseline) and
version B, which merges `HighLatency` and `ErrorRate` of one service into one
incident and also routes catalog `DiskFull` alerts to `storage`.
"""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa

from compiler.api import compile_rules
from compiler.router import fingerprint
from runtime import incidents as incident_ops
from runtime.pipeline import Accepted, Pipeline, accept
from runtime.policy import Policy
from runtime.simulate.backtest import load_history, replay
from runtime.simulate.compare import Count, compare
from runtime.sources.alertmanager import normalise_alertmanager
from runtime.sources.base import Inbound
from runtime.store import Store, database_url
from runtime.store.schema import alerts, incidents

REPO = Path(__file__).resolve().parents[2]
UTC = datetime.UTC
WEEK_START = datetime.datetime(2026, 3, 2, tzinfo=UTC)
WEEK_END = WEEK_START + datetime.timedelta(days=7)
MINUTE = datetime.timedelta(minutes=1)
HOUR = datetime.timedelta(hours=1)

RULES_A = """
settings {
  incident_id_format "INC-{year}-{number:04d}"
  daemon_url "https://irules.example.com"
}

team payments {
  webhook "http://127.0.0.1:9/payments"
  owns [checkout, ledger]
  escalation standard
}

team search {
  webhook "http://127.0.0.1:9/search"
  owns [catalog]
  escalation standard
}

receiver oncall {
  sms "+15555550101"
}

receiver storage {
  webhook "http://127.0.0.1:9/storage"
}

service checkout {
  match service = "checkout"
}

service catalog {
  match service = "catalog"
}

service ledger {
  match service = "ledger"
}

route {
  receiver payments
  group_by [alertname, service]
  group_wait 30s
  group_interval 5m
  repeat_interval 24h
  match service = "catalog" -> search
}

escalation standard {
  after 15m unacknowledged page oncall
  after 18m unacknowledged escalate
}

runbook disk-check "Look at the disk" {
  when label.alertname == "DiskFull"
  auto
  step usage {
    run ["df", "-h"]
    read_only
  }
  step cleanup {
    when label.severity == "critical"
    run ["journalctl", "--vacuum-size=500M"]
  }
}

runbook error-snapshot "Keep the error logs" {
  when label.alertname == "ErrorRate"
  auto
  step logs {
    run ["kubectl", "logs", "--tail=200", "deploy/{{ label.service }}"]
    read_only
  }
}
"""

# Version B: catalog alerts also go on to `storage` when they are `DiskFull`, and
# `HighLatency` and `ErrorRate` of one service share an incident.
RULES_B = RULES_A.replace(
    """  repeat_interval 24h
  match service = "catalog" -> search
}""",
    """  repeat_interval 24h
  match service = "catalog" -> search {
    continue
  }
  match service = "catalog", alertname = "DiskFull" -> storage
}

correlate errors-by-service {
  when label.alertname in ["HighLatency", "ErrorRate"]
  by [service]
}""",
)


@dataclass(frozen=True, slots=True)
class Input:
    """One recorded input: an alert firing or resolving, or an acknowledgement by `alice`."""

    at: datetime.datetime
    kind: str
    labels: dict[str, str]


def labels(name: str, service: str) -> dict[str, str]:
    return {"alertname": name, "service": service, "severity": "warning"}


def episode(name: str, service: str, start: datetime.datetime, minutes: int) -> list[Input]:
    return [Input(start, "fire", labels(name, service)), Input(start + minutes * MINUTE, "resolve", labels(name, service))]


def pair(service: str, start: datetime.datetime) -> list[Input]:
    """HighLatency, then ErrorRate 10 s later, both resolved together after 10 minutes."""
    return [
        Input(start, "fire", labels("HighLatency", service)),
        Input(start + datetime.timedelta(seconds=10), "fire", labels("ErrorRate", service)),
        Input(start + 10 * MINUTE, "resolve", labels("HighLatency", service)),
        Input(start + 10 * MINUTE, "resolve", labels("ErrorRate", service)),
    ]


def week_inputs() -> list[Input]:
    """Return 196 alert events over 7 days (28 a day) and one acknowledgement a day, apart in time so no episodes overlap."""
    inputs: list[Input] = []
    for day in range(7):
        base = WEEK_START + datetime.timedelta(days=day)
        for hour in (1, 4, 7, 10):
            inputs += pair("checkout", base + hour * HOUR)
        inputs += pair("catalog", base + 13 * HOUR)
        inputs += episode("DiskFull", "catalog", base + 15 * HOUR, 10)
        inputs += episode("DiskFull", "catalog", base + 17 * HOUR, 10)
        inputs += episode("PodCrashLooping", "ledger", base + 19 * HOUR, 20)
        inputs += episode("HighLatency", "checkout", base + 22 * HOUR, 20)
        inputs.append(Input(base + 22 * HOUR + 5 * MINUTE, "ack", labels("HighLatency", "checkout")))
    return sorted(inputs, key=lambda item: item.at)


def webhook_body(batch: list[Input]) -> bytes:
    """Return an Alertmanager webhook body (version 4) for alerts that fire or resolve together."""
    entries = [
        {
            "status": "firing" if item.kind == "fire" else "resolved",
            "labels": item.labels,
            "annotations": {"summary": f"{item.labels['alertname']} on {item.labels['service']}"},
            "startsAt": item.at.isoformat().replace("+00:00", "Z"),
            "endsAt": "0001-01-01T00:00:00Z" if item.kind == "fire" else item.at.isoformat().replace("+00:00", "Z"),
        }
        for item in batch
    ]
    body = {"version": "4", "status": "firing", "receiver": "irules", "groupKey": "{}", "alerts": entries}
    return json.dumps(body).encode()


def record_week(store: Store, policy: Policy) -> None:
    """Run the week's webhooks through the real source and pipeline into `store`, acknowledging as `alice`."""
    clock = {"now": WEEK_START}
    pipeline = Pipeline(store, lambda: policy, clock=lambda: clock["now"])
    inputs = week_inputs()
    for moment in sorted({item.at for item in inputs}):
        clock["now"] = moment
        batch = [item for item in inputs if item.at == moment and item.kind != "ack"]
        if batch:
            body = webhook_body(batch)
            outcome = normalise_alertmanager(json.loads(body), "alertmanager")
            accept(store, [Accepted("alertmanager", Inbound(body, {"content-type": "application/json"}, moment), outcome)])
            pipeline.process_pending()
        for item in inputs:
            if item.at == moment and item.kind == "ack":
                incident_ops.acknowledge(store, incident_holding(store, item.labels), "alice", moment)


def incident_holding(store: Store, alert_labels: dict[str, str]) -> str:
    with store.read() as connection:
        return connection.execute(
            sa.select(incidents.c.key)
            .join(alerts, alerts.c.incident_id == incidents.c.id)
            .where(alerts.c.fingerprint == fingerprint(alert_labels))
        ).scalar_one()


def write_rules(folder: Path, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "rules.irules").write_text(text, encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def policies(tmp_path_factory: pytest.TempPathFactory) -> tuple[Policy, Policy]:
    base = tmp_path_factory.mktemp("versions")
    return (
        Policy(compile_rules(write_rules(base / "a", RULES_A))),
        Policy(compile_rules(write_rules(base / "b", RULES_B))),
    )


# ---------------------------------------------------------------- the expected differences, by hand
#
# Every route has group_wait 30s, group_interval 5m and repeat_interval 24h, and no
# episode lasts 24 hours, so no reminders. An unacknowledged group of a receiver gets
# "opened" 30 s after its incident opens and "resolved" when it resolves, because every
# episode lasts at least 10 minutes, past group_interval after the first message. The
# webhooks are Alertmanager's to deliver and sms is the daemon's; both count as pages.
# An acknowledgement sends nothing over a webhook that Alertmanager delivers.
#
# A day, version A (baseline), one incident per alert name and service:
#   4 checkout pairs:      8 incidents, payments 2 pages each              = 16
#   1 catalog pair:        2 incidents, search 2 pages each                =  4
#   2 catalog DiskFull:    2 incidents, search 2 pages each                =  4
#   1 ledger crash, 20 min unacknowledged: 1 incident; payments opened, the
#     18m `escalate` message and resolved = 3; the 15m step pages oncall   =  1
#   1 checkout latency, acknowledged at 5 min, resolved at 20 min: payments
#     opened and resolved = 2; no escalation step fires
#   => 14 incidents; payments 21, search 8, oncall 1, storage 0
# Version B: each pair is one incident (ErrorRate joins within the group wait,
# and both resolve in one payload), so 2 payments or search pages instead of 4;
# each catalog DiskFull also has a `storage` group: 2 pages more for storage.
#   => 9 incidents; payments 8 + 3 + 2 = 13, search 2 + 4 = 6, oncall 1, storage 4
# Over 7 days: A 98 incidents, B 63; B merges 35 pairs of A's incidents (70 in
# all), splits none. Pages A/B: payments 147/91, search 56/42, oncall 7/7,
# storage 0/28. Escalation steps 14 in both (2 a day, the ledger crash), 7 incidents
# at level 1 in both. Runbook disk-check runs for each DiskFull incident: 14 in both.
# error-snapshot runs when ErrorRate opens an incident: A 5 a day = 35, B none,
# because in B every ErrorRate joins the incident HighLatency opened.
# Incidents that differ: the 35 merged ones and the 14 DiskFull ones, whose
# receivers and pages changed.

EXPECTED_PAGES = {
    "oncall": Count(7, 7),
    "payments": Count(147, 91),
    "search": Count(56, 42),
    "storage": Count(0, 28),
}


@pytest.mark.slow
def test_backtest_of_recorded_week(store: Store, policies: tuple[Policy, Policy]):
    policy_a, policy_b = policies
    record_week(store, policy_a)
    history = load_history(store, WEEK_START, WEEK_END)
    assert len(history.events) == 196
    assert [(action.action, action.by) for action in history.actions] == [("acknowledge", "alice")] * 7

    baseline = replay(policy_a, history)
    candidate = replay(policy_b, history)
    comparison = compare(baseline, candidate)

    assert comparison.incidents == Count(98, 63)
    assert len(comparison.merged) == 35
    assert comparison.merged_baseline_incidents == 70
    assert comparison.split == ()
    assert comparison.pages == EXPECTED_PAGES
    assert comparison.escalation_steps == Count(14, 14)
    assert comparison.escalation_levels == {1: Count(7, 7)}
    assert comparison.runbooks == {"disk-check": Count(14, 14), "error-snapshot": Count(35, 0)}
    assert comparison.refused_runbooks == {}
    kinds = [difference.kind for difference in comparison.differences]
    assert (kinds.count("merged"), kinds.count("changed"), kinds.count("split")) == (35, 14, 0)

    # The first pair of the week: A's INC-2026-0001 and -0002 are B's INC-2026-0001.
    first = comparison.merged[0]
    assert (first.baseline, first.candidate) == (("INC-2026-0001", "INC-2026-0002"), ("INC-2026-0001",))
    assert first.at == WEEK_START + HOUR
    assert comparison.differences[0].changes == (
        "2 incidents become 1",
        "pages: payments 4 -> payments 2",
        "runbooks: error-snapshot -> none",
    )
    # The first DiskFull of the week: A's 11th incident, B's 6th.
    disk = next(difference for difference in comparison.differences if difference.kind == "changed")
    assert (disk.baseline, disk.candidate) == (("INC-2026-0011",), ("INC-2026-0006",))
    assert disk.changes == ("receivers: search -> search, storage", "pages: search 2 -> search 2, storage 2")

    # Seen the other way round, B's merges are A's splits.
    reverse = compare(candidate, baseline)
    assert (len(reverse.merged), len(reverse.split)) == (0, 35)
    assert reverse.split[0].baseline == ("INC-2026-0001",)
    assert reverse.split[0].candidate == ("INC-2026-0001", "INC-2026-0002")
    assert reverse.pages["storage"] == Count(28, 0)

    # The acknowledgement reached the same incident in both versions, once a day.
    assert [action.outcome for action in candidate.actions] == ["acknowledged"] * 7
    assert candidate.incident("INC-2026-0009").acknowledged_by == "alice"


@pytest.mark.slow
def test_replay_of_recorded_week_matches_recording(store: Store, policies: tuple[Policy, Policy]):
    """The replay through the recording's own rules makes the same incidents as the recording did."""
    policy_a, _policy_b = policies
    record_week(store, policy_a)
    result = replay(policy_a, load_history(store, WEEK_START, WEEK_END))
    with store.read() as connection:
        recorded = connection.execute(
            sa.select(incidents.c.key, incidents.c.created_at, incidents.c.resolved_at, incidents.c.acknowledged_by).order_by(
                incidents.c.id
            )
        ).all()
    assert [(item.key, item.created_at, item.resolved_at, item.acknowledged_by) for item in result.incidents] == [
        tuple(row) for row in recorded
    ]


# ---------------------------------------------------------------- the command, as a child process


def irules(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("IRULES_", "GIT_"))}
    env["PYTHONPATH"] = str(REPO)
    return subprocess.run(
        [sys.executable, "-m", "runtime.cli", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False
    )


def git(repository: Path, *args: str) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("GIT_")}
    env.update(
        GIT_CONFIG_GLOBAL=os.devnull,
        GIT_CONFIG_NOSYSTEM="1",
        GIT_AUTHOR_NAME="Test",
        GIT_AUTHOR_EMAIL="test@example.com",
        GIT_COMMITTER_NAME="Test",
        GIT_COMMITTER_EMAIL="test@example.com",
    )
    subprocess.run(["git", "-C", str(repository), *args], env=env, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory, policies: tuple[Policy, Policy]) -> Path:
    """Return a git repository whose HEAD has version A in `rules/` and whose working tree has version B, with the recorded week in `state/`."""
    repository = tmp_path_factory.mktemp("repository")
    git(repository, "init", "--quiet")
    write_rules(repository / "rules", RULES_A)
    git(repository, "add", "rules")
    git(repository, "commit", "--quiet", "--message", "Rules A")
    write_rules(repository / "rules", RULES_B)
    store = Store.open(database_url(repository / "state"))
    try:
        record_week(store, policies[0])
    finally:
        store.close()
    return repository


WEEK = ("--from", "2026-03-02", "--to", "2026-03-08", "--state", "state")


@pytest.mark.slow
def test_backtest_command_against_git_ref_as_json(recorded: Path):
    result = irules("backtest", "rules", "--against", "HEAD", *WEEK, "--format", "json", cwd=recorded)

    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    report = json.loads(result.stdout)
    assert report["window"] == {"from": "2026-03-02T00:00:00Z", "to": "2026-03-09T00:00:00Z"}
    assert (report["baseline"], report["candidate"], report["events"], report["actions"]) == ("HEAD", "rules", 196, 7)
    assert report["incidents"] == {"baseline": 98, "candidate": 63, "difference": -35}
    assert len(report["merged"]) == 35
    assert report["split"] == []
    assert report["pages"] == {name: count.to_json() for name, count in EXPECTED_PAGES.items()}
    assert report["escalations"] == {
        "steps": {"baseline": 14, "candidate": 14, "difference": 0},
        "levels": {"1": {"baseline": 7, "candidate": 7, "difference": 0}},
    }
    assert report["runbooks"] == {
        "disk-check": {"baseline": 14, "candidate": 14, "difference": 0},
        "error-snapshot": {"baseline": 35, "candidate": 0, "difference": -35},
    }
    assert report["differences"][0] == {
        "kind": "merged",
        "at": "2026-03-02T01:00:00Z",
        "title": "HighLatency: HighLatency on checkout",
        "baseline": ["INC-2026-0001", "INC-2026-0002"],
        "candidate": ["INC-2026-0001"],
        "changes": ["2 incidents become 1", "pages: payments 4 -> payments 2", "runbooks: error-snapshot -> none"],
    }
    assert len(report["differences"]) == 49


@pytest.mark.slow
def test_backtest_command_prints_table(recorded: Path):
    result = irules("backtest", "rules", "--against", "HEAD", *WEEK, cwd=recorded)

    assert result.returncode == 0, result.stderr
    lines = [" ".join(line.replace("│", " ").split()) for line in result.stdout.splitlines()]
    assert "incidents 98 63 -35" in lines
    assert "pages to storage 0 28 +28" in lines
    assert "pages to payments 147 91 -56" in lines
    assert "runs of runbook error-snapshot 35 0 -35" in lines
    assert "... and 39 more; --format json lists them all." in lines


@pytest.mark.slow
def test_backtest_command_rejects_unknown_ref(recorded: Path):
    result = irules("backtest", "rules", "--against", "no-such-branch", *WEEK, cwd=recorded)

    assert result.returncode == 2
    assert "irules: --against 'no-such-branch' is neither an existing path nor a commit of the git repository" in result.stderr
    assert result.stdout == ""


@pytest.mark.slow
def test_backtest_command_reports_rules_errors(recorded: Path, tmp_path: Path):
    broken = write_rules(tmp_path / "broken", RULES_A.replace("-> search", "-> serach"))
    result = irules("backtest", str(broken), "--against", "rules", *WEEK, cwd=recorded)

    assert result.returncode == 1
    assert "error[IR0203]: unknown receiver `serach`" in result.stderr
    assert result.stdout == ""


@pytest.mark.slow
@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (("--from", "2026-03-08", "--to", "2026-03-02", "--state", "state"), "irules: --to 2026-03-02 is not after --from"),
        (("--from", "last week", "--to", "2026-03-02", "--state", "state"), "irules: --from 'last week' is not a date"),
        (("--from", "2026-03-02", "--to", "2026-03-08"), "irules: pass exactly one of --state DIR or --database URL"),
        (("--from", "2026-03-02", "--to", "2026-03-08", "--state", "rules"), "irules: no store in rules"),
        (
            ("--from", "2026-03-02", "--to", "2026-03-08", "--database", "sqlite:///rules/rules.irules"),
            "irules: cannot read the database sqlite:///rules/rules.irules: file is not a database",
        ),
        (
            ("--from", "2026-03-02", "--to", "2026-03-08", "--database", "sqlite:///empty/irules.db"),
            "irules: the database sqlite:///empty/irules.db has no irules store",
        ),
    ],
)
def test_backtest_command_usage_errors(recorded: Path, arguments: tuple[str, ...], message: str):
    result = irules("backtest", "rules", "--against", "rules", *arguments, cwd=recorded)

    assert result.returncode == 2
    assert result.stderr.startswith(message), result.stderr
