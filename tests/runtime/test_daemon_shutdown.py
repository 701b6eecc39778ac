"""SIGTERM while webhooks are in flight: every request that got a 2xx response is stored and applied when the daemon exits."""

from __future__ import annotations

import json
import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.runtime.daemon_process import DaemonProcess

pytestmark = pytest.mark.slow

RULES = """receiver default {
  webhook "http://127.0.0.1:9/default"
}

route {
  receiver default
}

source alertmanager {
  auth none
}
"""
REQUESTS = 120
SENDERS = 16
ANSWERED_BEFORE_SIGTERM = 30
ANSWER_TIMEOUT_S = 60


def alert_group(number: int) -> bytes:
    """Return an Alertmanager notification with one alert of its own, named after `number`."""
    alert = {
        "status": "firing",
        "labels": {"alertname": f"Load{number}", "instance": f"host-{number}:9100"},
        "annotations": {"summary": f"request {number}"},
        "startsAt": "2026-03-08T10:00:00Z",
        "endsAt": "0001-01-01T00:00:00Z",
    }
    return json.dumps({"version": "4", "status": "firing", "receiver": "default", "alerts": [alert]}).encode()


def test_sigterm_keeps_every_acknowledged_payload(tmp_path: Path):
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "rules.irules").write_text(RULES, encoding="utf-8")
    daemon = DaemonProcess(tmp_path / "rules", tmp_path / "state").start()
    answers: dict[int, tuple[int | None, str]] = {}
    answered = threading.Semaphore(0)

    def send(number: int) -> None:
        try:
            with httpx.Client(timeout=ANSWER_TIMEOUT_S) as client:
                response = client.post(
                    f"{daemon.url}/hooks/alertmanager", content=alert_group(number), headers={"content-type": "application/json"}
                )
            answers[number] = (response.status_code, response.text)
        except httpx.TransportError as error:
            answers[number] = (None, repr(error))
        finally:
            answered.release()

    try:
        with ThreadPoolExecutor(SENDERS) as pool:
            for number in range(REQUESTS):
                pool.submit(send, number)
            for _ in range(ANSWERED_BEFORE_SIGTERM):
                assert answered.acquire(timeout=ANSWER_TIMEOUT_S), "the daemon stopped answering"
            # The other senders are mid-request or about to send when the signal arrives.
            daemon.stop()
    finally:
        daemon.kill()

    assert len(answers) == REQUESTS
    statuses = {status for status, _text in answers.values()}
    assert statuses <= {202, 503, None}, {
        number: answer for number, answer in answers.items() if answer[0] not in (202, 503, None)
    }
    accepted = {json.loads(text)["payload_id"]: number for number, (status, text) in answers.items() if status == 202}
    assert len(accepted) >= ANSWERED_BEFORE_SIGTERM

    connection = sqlite3.connect(f"file:{daemon.state / 'irules.db'}?mode=ro", uri=True)
    try:
        events = {
            payload_id: (json.loads(alert)["labels"]["alertname"], processed_at, outcome)
            for payload_id, alert, processed_at, outcome in connection.execute(
                "SELECT payload_id, alert, processed_at, outcome FROM alert_events"
            )
        }
        grouped = {
            json.loads(labels)["alertname"]
            for labels, incident_id in connection.execute("SELECT labels, incident_id FROM alerts")
            if incident_id
        }
    finally:
        connection.close()
    for payload_id, number in accepted.items():
        assert payload_id in events, f"request {number} was answered 202 as payload {payload_id}, which is not in the store"
        name, processed_at, outcome = events[payload_id]
        assert name == f"Load{number}"
        assert processed_at is not None, f"payload {payload_id} was stored but not applied before exit"
        assert outcome == "new"
        assert name in grouped
