"""The two servers of `ingest_bench.py`: the irules daemon and Alertmanager, each on a free loopback port.

Both get a scratch folder of their own and write their logs there. Neither
sends a notification: the daemon runs with `--no-notify` (the example's
channels point at `example.com`), and Alertmanager's only receiver has no
integration, so its notification pipeline runs and sends nothing.
"""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
RULES = REPO / "examples" / "production"
ENVIRONMENT = "production"
# `source alertmanager` in examples/production declares `auth bearer secret("ALERTMANAGER_WEBHOOK_TOKEN")`.
TOKEN_SECRET = "ALERTMANAGER_WEBHOOK_TOKEN"
ALERTMANAGER_BINARY = "/usr/bin/prometheus-alertmanager"
# One receiver without integrations; group_by is the `defaults` of examples/production.
ALERTMANAGER_CONFIG = """\
route:
  receiver: "null"
  group_by: [alertname, cluster, service]
receivers:
  - name: "null"
"""
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 45.0


@dataclass(slots=True)
class Server:
    """One running server: its process, where it listens and where it logs."""

    name: str
    process: subprocess.Popen[bytes]
    port: int
    folder: Path
    log_path: Path
    token: str = ""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def free_port() -> int:
    """Return a loopback port that was free a moment ago (the server binds it right after)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def irules_command(folder: Path, port: int) -> list[str]:
    """Return the daemon's command line, with the SQLite store and the secrets folder inside `folder`."""
    return [
        sys.executable,
        "-m",
        "runtime.cli",
        "daemon",
        "--rules",
        str(RULES),
        "--env",
        ENVIRONMENT,
        "--state",
        str(folder / "state"),
        "--listen",
        f"127.0.0.1:{port}",
        "--allow-unauthenticated",
        "--no-watch",
        "--no-notify",
        "--no-runbooks",
        "--secrets-dir",
        str(folder / "secrets"),
    ]


def alertmanager_command(folder: Path, port: int) -> list[str]:
    return [
        ALERTMANAGER_BINARY,
        f"--config.file={folder / 'alertmanager.yml'}",
        f"--storage.path={folder / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",
        "--log.level=warn",
    ]


def start_irules(scratch: Path) -> Server:
    """Start the daemon on examples/production with a new store, and return once `/readyz` returns 200."""
    folder = scratch / "irules"
    (folder / "secrets").mkdir(parents=True)
    token = os.urandom(16).hex()
    (folder / "secrets" / TOKEN_SECRET).write_text(token, encoding="utf-8")
    port = free_port()
    server = _spawn("irules", irules_command(folder, port), folder, port)
    server.token = token
    _wait_ready(server, "/readyz")
    return server


def start_alertmanager(scratch: Path) -> Server:
    """Start Alertmanager with gossip off and a new storage folder, and return once `/-/ready` returns 200."""
    folder = scratch / "alertmanager"
    folder.mkdir(parents=True)
    (folder / "alertmanager.yml").write_text(ALERTMANAGER_CONFIG, encoding="utf-8")
    port = free_port()
    server = _spawn("alertmanager", alertmanager_command(folder, port), folder, port)
    _wait_ready(server, "/-/ready")
    return server


def _spawn(name: str, command: list[str], folder: Path, port: int) -> Server:
    log_path = folder / f"{name}.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            command, cwd=REPO, stdout=log_file, stderr=subprocess.STDOUT, env=dict(os.environ, PYTHONPATH=str(REPO))
        )
    return Server(name, process, port, folder, log_path)


def _wait_ready(server: Server, path: str) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(
                f"{server.name} exited with status {server.process.returncode} while starting:\n{log_tail(server)}"
            )
        try:
            if httpx.get(server.url + path, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    stop(server)
    raise RuntimeError(f"{server.name} was not ready after {READY_TIMEOUT_S:.0f} s:\n{log_tail(server)}")


def log_tail(server: Server, lines: int = 20) -> str:
    text = server.log_path.read_text(encoding="utf-8", errors="replace") if server.log_path.exists() else ""
    return "\n".join(text.splitlines()[-lines:])


def stop(server: Server) -> int | None:
    """Stop the server with SIGTERM, as a service manager would, and kill it when it takes too long; return its status."""
    if server.process.poll() is None:
        server.process.send_signal(signal.SIGTERM)
        try:
            server.process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait()
    return server.process.returncode


def version(binary: str = ALERTMANAGER_BINARY) -> str:
    completed = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False)
    lines = (completed.stdout or completed.stderr).splitlines()
    return lines[0] if lines else "unknown"


# ---------------------------------------------------------------- what the servers hold


def cpu_seconds(pid: int) -> float:
    """Return the CPU time, user and system, that process `pid` has used so far, from /proc."""
    # The command name may contain spaces, so the fields are split after its closing bracket.
    # That list starts at the state (field 3), and utime and stime are fields 14 and 15, in clock ticks.
    fields = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8").rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def resident_kib(pid: int) -> int:
    """Return VmRSS of `pid` and all its descendants, in KiB, read from /proc."""
    total = 0
    for process in _process_tree(pid):
        try:
            for line in Path(f"/proc/{process}/status").read_text(encoding="utf-8").splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
                    break
        except FileNotFoundError:
            continue
    return total


def _process_tree(pid: int) -> list[int]:
    found, waiting = [], [pid]
    while waiting:
        current = waiting.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*"):
            children = task / "children"
            if children.exists():
                waiting.extend(int(child) for child in children.read_text(encoding="utf-8").split())
    return found


def pending_events(server: Server) -> int:
    """Return the daemon's count of stored alert events that the pipeline has not applied yet."""
    response = httpx.get(server.url + "/status", timeout=30)
    response.raise_for_status()
    return int(response.json()["pending_events"])


def wait_for_drain(server: Server, timeout: float) -> tuple[float, int]:
    """Poll `/status` until no alert event is pending; return the seconds waited and what is still pending at the end."""
    started = time.perf_counter()
    pending = pending_events(server)
    while pending and time.perf_counter() - started < timeout:
        time.sleep(0.05)
        pending = pending_events(server)
    return time.perf_counter() - started, pending


def stored_alert_events(server: Server) -> int:
    """Count the rows of `alert_events` in the daemon's SQLite file, read-only, beside the running daemon."""
    path = server.folder / "state" / "irules.db"
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)) as connection:
        return connection.execute("SELECT count(*) FROM alert_events").fetchone()[0]


def active_alerts(server: Server) -> int:
    """Return how many alerts Alertmanager lists as active (neither silenced nor inhibited ones are configured)."""
    response = httpx.get(server.url + "/api/v2/alerts", params={"active": "true"}, timeout=120)
    response.raise_for_status()
    return len(response.json())
