"""Three `irules daemon` child processes on one PostgreSQL schema, with a fake webhook receiver.

Every daemon listens on its own 127.0.0.1 port and shares the test's schema, so
the tests see what a cluster behind a load balancer does. The receiver is the
generic webhook of `FakeSaaS`, which records each request.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from tests.runtime.daemon_process import DaemonProcess
from tests.runtime.fakes import FakeSaaS

RULES = """
settings {
  incident_id_format "INC-{number}"
}

receiver oncall {
  webhook url secret("WEBHOOK_URL")
}

team ops {
  webhook url secret("WEBHOOK_URL")
  escalation standard
}

escalation standard {
  after ESCALATE_AFTER unacknowledged notify oncall
}

route {
  receiver ops
  group_by [alertname]
  group_wait 0s
  group_interval 1s
  repeat_interval 4h
}
"""

WAIT_S = 40.0


def wait_for(check: Callable[[], bool], description: str, timeout_s: float = WAIT_S) -> None:
    """Poll `check` until it returns True, and fail after `timeout_s` seconds."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {description}")


def alertmanager_body(name: str, status: str = "firing", **labels: str) -> bytes:
    """Return an Alertmanager webhook body with one alert."""
    alert = {
        "status": status,
        "labels": {"alertname": name, "severity": "critical", **labels},
        "annotations": {"summary": f"{name} is {status}"},
        "startsAt": "2024-05-01T10:00:00Z",
        "endsAt": "2024-05-01T11:00:00Z" if status == "resolved" else "0001-01-01T00:00:00Z",
        "fingerprint": hashlib.sha256(json.dumps([name, labels], sort_keys=True).encode()).hexdigest()[:16],
    }
    envelope = {
        "version": "4",
        "status": status,
        "receiver": "irules",
        "groupKey": '{}:{alertname="' + name + '"}',
        "groupLabels": {"alertname": name},
        "commonLabels": alert["labels"],
        "commonAnnotations": alert["annotations"],
        "externalURL": "http://alertmanager.example.com",
        "alerts": [alert],
    }
    return json.dumps(envelope).encode()


class Cluster:
    """The daemons, the database they share, and the receiver their notifications go to."""

    def __init__(self, daemons: list[DaemonProcess], database_url: str, receiver: FakeSaaS) -> None:
        self.daemons = daemons
        self.engine = sa.create_engine(database_url)
        self.receiver = receiver

    def scalar(self, sql: str, **parameters: Any) -> Any:
        with self.engine.connect() as connection:
            return connection.execute(sa.text(sql), parameters).scalar()

    def rows(self, sql: str, **parameters: Any) -> list[sa.Row]:
        with self.engine.connect() as connection:
            return list(connection.execute(sa.text(sql), parameters))

    def execute(self, sql: str, **parameters: Any) -> None:
        with self.engine.begin() as connection:
            connection.execute(sa.text(sql), parameters)

    def deliveries(self) -> list[dict[str, Any]]:
        """Return the JSON bodies the webhook receiver got, oldest first."""
        return [json.loads(request.body) for request in self.receiver.requests(self.receiver.webhook_path)]


@contextmanager
def start_cluster(
    tmp_path: Path,
    database_url: str,
    receiver: FakeSaaS,
    *,
    nodes: int = 3,
    escalate_after: str = "1h",
    extra_args: tuple[str, ...] = (),
    extra_environment: dict[str, str] | None = None,
    extra_rules: str = "",
    tag_senders: bool = False,
) -> Iterator[Cluster]:
    """Start `nodes` daemons on `database_url` and stop them with SIGTERM at the end.

    `extra_rules` is appended to the rules file. With `tag_senders`, each node gets
    its own secrets folder whose `WEBHOOK_URL` ends in `?node=<index>`, so the
    query of each request the receiver records names the node that sent it.
    """
    rules = tmp_path / "rules"
    rules.mkdir(exist_ok=True)
    text = RULES.replace("ESCALATE_AFTER", escalate_after) + extra_rules
    (rules / "rules.irules").write_text(text, encoding="utf-8")
    secret_folders = []
    for index in range(nodes):
        secrets = tmp_path / (f"secrets-{index}" if tag_senders else "secrets")
        secrets.mkdir(exist_ok=True)
        url = receiver.webhook_url + (f"?node={index}" if tag_senders else "")
        (secrets / "WEBHOOK_URL").write_text(url + "\n", encoding="utf-8")
        secret_folders.append(secrets)
    daemons = [
        DaemonProcess(
            rules,
            tmp_path / f"state-{index}",
            secrets_dir=secret_folders[index],
            allow_unauthenticated=True,
            extra_args=("--database", database_url, "--no-watch", *extra_args),
            extra_environment=extra_environment,
        )
        for index in range(nodes)
    ]
    cluster = Cluster(daemons, database_url, receiver)
    with ExitStack() as stack:
        for daemon in daemons:
            daemon.start()
            stack.callback(daemon.kill)
        try:
            yield cluster
        finally:
            for daemon in daemons:
                if daemon.process is not None and daemon.process.poll() is None:
                    daemon.terminate()
            cluster.engine.dispose()
