"""Run `irules daemon` as a real child process for end-to-end tests.

Each daemon listens on a free 127.0.0.1 port with its own state folder and
writes JSON log lines to a file, so a test can read the log while the daemon
runs and after it stopped. `stop` sends SIGTERM and fails the test unless the
daemon exits with status 0.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import httpx

from compiler import ir

REPO = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).resolve().parent / "fixtures"

# Deadlines for waiting on the child. They only catch a hung daemon, because a healthy one starts in a few seconds even on a busy machine.
READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 30.0
SETTLE_TIMEOUT_S = 15.0
POLL_INTERVAL_S = 0.02

# Settings of the developer's shell that would change what the child does.
_INHERITED_SETTINGS = (
    "IRULES_API_TOKEN",
    "IRULES_STATE",
    "IRULES_DATABASE",
    "IRULES_DAEMON",
    "IRULES_DEBUG",
    "IRULES_SECRETS_DIR",
)


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def fixture_bytes(relative: str) -> bytes:
    """Return a vendor sample from `tests/runtime/fixtures`, such as `grafana/firing.json`."""
    return (FIXTURES / relative).read_bytes()


def hmac_signature(secret: str, body: bytes, prefix: str = "sha256=") -> str:
    """Return the `X-Signature-256` value a sender computes: the prefix and the hex HMAC-SHA256 of the raw body."""
    return prefix + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class WebhookSigner:
    """Credentials for every `auth` the rules declare, with fresh secret values written to a secrets folder.

    The values are random per test run, so a test passes only when the daemon reads
    the folder it was given. Bearer tokens go in `Authorization`, HMAC signatures in
    the declared header (or the documented default) over the raw body.
    """

    def __init__(self, sources: Iterable[ir.Source], folder: Path) -> None:
        self.declarations = {source.name: source for source in sources}
        self.folder = folder
        self.values: dict[str, str] = {}
        folder.mkdir(parents=True, exist_ok=True)
        for source in self.declarations.values():
            for method in source.auth:
                if method.secret is not None and method.secret.secret not in self.values:
                    name = method.secret.secret
                    self.values[name] = secrets.token_hex(16)
                    (folder / name).write_text(self.values[name] + "\n", encoding="utf-8")

    def headers(self, source: str, body: bytes) -> dict[str, str]:
        """Return the headers that authenticate `body` for `source` under its first declared `auth`."""
        declaration = self.declarations.get(source)
        if declaration is None or not declaration.auth or declaration.auth[0].kind == "none":
            return {}
        method = declaration.auth[0]
        assert method.secret is not None, f"`auth {method.kind}` of source {source} names no secret"
        value = self.values[method.secret.secret]
        if method.kind == "bearer":
            return {"authorization": f"Bearer {value}"}
        assert method.kind == "hmac", f"no credentials for `auth {method.kind}`"
        algorithm = (method.algorithm or "sha256").replace("-", "").lower()
        header = method.header or ("X-Grafana-Alerting-Signature" if source == "grafana" else "X-Signature-256")
        digest = hmac.new(value.encode(), body, getattr(hashlib, algorithm)).hexdigest()
        return {header: (method.prefix or "") + digest}


def child_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Return the environment of an `irules` child: this repository importable, no inherited irules settings."""
    environment = {name: value for name, value in os.environ.items() if name not in _INHERITED_SETTINGS}
    environment["PYTHONPATH"] = os.pathsep.join([str(REPO), environment.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    environment.update(extra or {})
    return environment


def run_cli(*args: str, extra_environment: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run `python -m runtime.cli ARGS` as a child process and return its result."""
    return subprocess.run(
        [sys.executable, "-m", "runtime.cli", *args],
        cwd=REPO,
        env=child_environment(extra_environment),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


class DaemonProcess:
    """One `irules daemon` child process and an HTTP client aimed at it."""

    def __init__(
        self,
        rules: Path,
        state: Path,
        *,
        environment: str | None = None,
        secrets_dir: Path | None = None,
        allow_unauthenticated: bool = False,
        extra_args: Iterable[str] = (),
        extra_environment: Mapping[str, str] | None = None,
    ) -> None:
        self.rules = rules
        self.state = state
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = state.parent / f"daemon-{self.port}.log"
        arguments = [
            "daemon",
            "--rules",
            str(rules),
            "--state",
            str(state),
            "--listen",
            f"127.0.0.1:{self.port}",
            "--log-format",
            "json",
        ]
        if environment:
            arguments += ["--env", environment]
        if secrets_dir is not None:
            arguments += ["--secrets-dir", str(secrets_dir)]
        if allow_unauthenticated:
            arguments.append("--allow-unauthenticated")
        self.arguments = [*arguments, *extra_args]
        self.extra_environment = dict(extra_environment or {})
        self.process: subprocess.Popen[bytes] | None = None
        self.client = httpx.Client(base_url=self.url, timeout=30)

    # ------------------------------------------------------------ lifetime

    def start(self, *, until_ready: bool = True) -> DaemonProcess:
        """Start the child and return once `/readyz` returns 200. Raise with the log when the child exits or hangs.

        With `until_ready=False` it returns once `/healthz` returns 200, for a daemon that serves but cannot be ready yet.
        """
        self.state.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "runtime.cli", *self.arguments],
                cwd=REPO,
                env=child_environment(self.extra_environment),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"the daemon exited with status {self.process.returncode} before it was ready:\n{self.log_text()}"
                )
            try:
                if self.client.get("/readyz" if until_ready else "/healthz").status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(POLL_INTERVAL_S)
        self.kill()
        raise RuntimeError(f"the daemon was not ready within {READY_TIMEOUT_S} s:\n{self.log_text()}")

    def terminate(self) -> int:
        """Send SIGTERM and return the exit status. Kill the child and raise when it does not exit in time."""
        assert self.process is not None, "the daemon was never started"
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.kill()
            raise RuntimeError(f"the daemon did not exit within {STOP_TIMEOUT_S} s of SIGTERM:\n{self.log_text()}") from None
        finally:
            self.client.close()

    def stop(self) -> None:
        """Stop the daemon with SIGTERM and assert that it exits with status 0."""
        status = self.terminate()
        assert status == 0, f"the daemon exited with status {status} after SIGTERM:\n{self.log_text()}"

    def kill(self) -> None:
        """End the child at once, for cleanup after a failure and never as the normal way to stop."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=STOP_TIMEOUT_S)
        self.client.close()

    def __enter__(self) -> DaemonProcess:
        return self.start()

    def __exit__(self, error_type: type[BaseException] | None, *_details: object) -> None:
        if error_type is None:
            self.stop()
        else:
            self.kill()

    # ------------------------------------------------------------ the log

    def log_text(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace") if self.log_path.exists() else ""

    def log_records(self) -> list[dict[str, Any]]:
        """Return the JSON log records written so far, leaving out lines that are not JSON."""
        records = []
        for line in self.log_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict):
                records.append(record)
        return records

    def wait_for_log(self, matches: Callable[[dict[str, Any]], bool], description: str) -> dict[str, Any]:
        """Return the first log record for which `matches` is true, waiting for it to be written."""
        deadline = time.monotonic() + SETTLE_TIMEOUT_S
        while True:
            found = next((record for record in self.log_records() if matches(record)), None)
            if found is not None:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"no log line {description} within {SETTLE_TIMEOUT_S} s; the log:\n{self.log_text()}")
            time.sleep(POLL_INTERVAL_S)

    # ------------------------------------------------------------ HTTP

    def status(self) -> dict[str, Any]:
        response = self.client.get("/status")
        assert response.status_code == 200, response.text
        return response.json()

    def wait_until_applied(self) -> None:
        """Wait until the pipeline has applied every stored alert event (`pending_events` is 0 on `/status`)."""
        deadline = time.monotonic() + SETTLE_TIMEOUT_S
        while self.status()["pending_events"] != 0:
            if time.monotonic() > deadline:
                raise AssertionError(f"alert events still pending after {SETTLE_TIMEOUT_S} s; the log:\n{self.log_text()}")
            time.sleep(POLL_INTERVAL_S)

    def wait_for_generation(self, generation: int) -> None:
        """Wait until the rules in force are at least at `generation` (`rules.generation` on `/status`)."""
        deadline = time.monotonic() + SETTLE_TIMEOUT_S
        while self.status()["rules"]["generation"] < generation:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"rules generation {generation} not reached in {SETTLE_TIMEOUT_S} s; the log:\n{self.log_text()}"
                )
            time.sleep(POLL_INTERVAL_S)

    def post(self, path: str, body: bytes, headers: Mapping[str, str] | None = None) -> httpx.Response:
        merged = {"content-type": "application/json", **(headers or {})}
        return self.client.post(path, content=body, headers=merged)

    def incidents(self) -> list[dict[str, Any]]:
        response = self.client.get("/api/v1/incidents", params={"limit": 1000})
        assert response.status_code == 200, response.text
        return response.json()["incidents"]

    def incident(self, reference: str) -> dict[str, Any]:
        response = self.client.get(f"/api/v1/incidents/{reference}")
        assert response.status_code == 200, response.text
        return response.json()

    def dead_letters(self) -> list[dict[str, Any]]:
        response = self.client.get("/api/v1/dead-letters")
        assert response.status_code == 200, response.text
        return response.json()["dead_letters"]


def alertmanager_webhook(name: str, labels: Mapping[str, str], annotations: Mapping[str, str] | None = None) -> bytes:
    """Return an Alertmanager webhook body (version 4) with one firing alert."""
    alert = {
        "status": "firing",
        "labels": {"alertname": name, **labels},
        "annotations": dict(annotations or {}),
        "startsAt": "2026-03-08T10:00:00Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "",
        "fingerprint": "",
    }
    body = {
        "version": "4",
        "groupKey": "{}:{}",
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "ops",
        "groupLabels": {},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.example.com",
        "alerts": [alert],
    }
    return json.dumps(body).encode()
