"""Benchmark ingestion and notification throughput of one, two and three daemons on PostgreSQL, beside one on SQLite.

Each configuration starts its daemons on a new store (a new schema of the machine's
PostgreSQL, or a new SQLite folder) and runs two phases, each on a store of its own:

- ingestion: Alertmanager webhooks of 100 alerts, spread evenly over the nodes, two
  connections per node, daemons started with `--no-notify`. Reported: alerts accepted
  per second (every alert committed before its 2xx), and alerts applied to incidents per
  second from the first request until no event is pending.
- notification: single alerts through a custom source, one connection per node, each
  alert its own incident for one of 50 teams whose webhooks post to one URL of a local
  receiver, as teams behind one chat gateway do. One URL is one endpoint, so the storm
  is folded into digests. Reported: seconds from the first request until every
  incident was notified, messages and digests, and duplicates (an incident
  notified of the same event twice).

Every configuration is checked: incidents in the store equal the alerts sent (each alert
has its own dedup and correlation key), and every incident got exactly one "opened"
message. A failed check is printed in the table, never hidden.

Run: `python bench/cluster_bench.py [--quick] [--write]`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent))

import ingest_servers as servers
from check_bench import machine
from docs_section import replace_section
from ingest_load import send_all

REPO = Path(__file__).resolve().parent.parent
LOAD_SCRIPT = Path(__file__).with_name("ingest_load.py")
POSTGRES_URL = os.environ.get("IRULES_BENCH_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
ENDPOINTS = 50
READY_TIMEOUT_S = 60.0
SETTLE_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class Plan:
    ingest_requests: int  # webhooks of 100 alerts, in all
    messages: int  # single alerts, each one incident and one message


FULL = Plan(ingest_requests=200, messages=1000)
QUICK = Plan(ingest_requests=20, messages=100)
CONFIGURATIONS = (("SQLite", 1), ("PostgreSQL", 1), ("PostgreSQL", 2), ("PostgreSQL", 3))


# ---------------------------------------------------------------- the rules and the receiver


def rules_text(receiver_port: int) -> str:
    """Return a ruleset: 50 teams with a webhook to one URL, one incident per alert, and a custom source without auth."""
    teams = "\n".join(
        f'team t{number:02d} {{\n  webhook "http://127.0.0.1:{receiver_port}/storm"\n}}' for number in range(ENDPOINTS)
    )
    children = "\n".join(f'  match team = "t{number:02d}" -> t{number:02d}' for number in range(1, ENDPOINTS))
    return f"""
{teams}

route {{
  receiver t00
  group_by [alertname, instance]
  group_wait 0s
{children}
}}

source alertmanager {{
  auth none
}}

source bench {{
  auth none
  map {{
    label.alertname = body.name
    label.instance = body.instance
    label.team = body.team
  }}
}}

dedup {{
  by [alertname, instance]
  window 5m
}}

correlate one-per-alert {{
  by [alertname, instance]
  window 5m
}}
"""


@dataclass
class Receiver:
    """A local webhook endpoint that counts messages, and the incidents they notify by incident and event.

    All 50 teams post to one URL, which is one endpoint, and a storm on it is folded into
    digests: a digest counts for each incident it lists.
    """

    deliveries: Counter[tuple[str, str]] = field(default_factory=Counter)
    messages: int = 0
    digests: int = 0
    last_at: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, body: bytes) -> None:
        document = json.loads(body)
        with self.lock:
            self.messages += 1
            if document.get("event") == "digest":
                self.digests += 1
                for item in document.get("incidents") or []:
                    self.deliveries[(str(item["id"]), str(item["event"]))] += 1
            else:
                self.deliveries[(str(document["incident"]["id"]), str(document.get("event")))] += 1
            self.last_at = time.perf_counter()

    def opened(self) -> int:
        with self.lock:
            return sum(1 for (_incident, event) in self.deliveries if event == "opened")


def start_receiver() -> tuple[ThreadingHTTPServer, Receiver]:
    receiver = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            receiver.record(body)
            self.send_response(200)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            del format, args

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, receiver


# ---------------------------------------------------------------- daemons and stores


@dataclass
class Store:
    """The state of one phase's daemons: a SQLite folder, or a PostgreSQL schema."""

    engine_name: str
    folder: Path
    schema: str | None = None

    @property
    def daemon_arguments(self) -> list[str]:
        if self.schema is None:
            return ["--state", str(self.folder / "state")]
        return ["--database", f"{POSTGRES_URL}?options=-csearch_path%3D{self.schema}"]

    def count(self, table: str) -> int:
        url = f"sqlite:///{self.folder / 'state' / 'irules.db'}" if self.schema is None else POSTGRES_URL
        engine = sa.create_engine(url)
        try:
            with engine.connect() as connection:
                prefix = "" if self.schema is None else f'"{self.schema}".'
                return int(connection.execute(sa.text(f"SELECT count(*) FROM {prefix}{table}")).scalar_one())
        finally:
            engine.dispose()


def new_store(engine_name: str, folder: Path) -> Store:
    folder.mkdir(parents=True)
    if engine_name == "SQLite":
        return Store(engine_name, folder)
    schema = f"irules_bench_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(POSTGRES_URL)
    with admin.begin() as connection:
        connection.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    admin.dispose()
    return Store(engine_name, folder, schema)


def drop_store(store: Store) -> None:
    if store.schema is None:
        return
    admin = sa.create_engine(POSTGRES_URL)
    with admin.begin() as connection:
        connection.execute(sa.text(f'DROP SCHEMA "{store.schema}" CASCADE'))
    admin.dispose()


def start_daemons(store: Store, rules: Path, nodes: int, notify: bool) -> list[servers.Server]:
    """Start `nodes` daemons one after another (the first migrates the store) and return them once all are ready."""
    started = []
    for number in range(nodes):
        folder = store.folder / f"node{number}"
        folder.mkdir()
        port = servers.free_port()
        command = [
            sys.executable, "-m", "runtime.cli", "daemon", "--rules", str(rules), *store.daemon_arguments,
            "--listen", f"127.0.0.1:{port}", "--allow-unauthenticated", "--no-watch", "--no-runbooks",
            *([] if notify else ["--no-notify"]),
        ]  # fmt: skip
        with (folder / "daemon.log").open("wb") as log_file:
            process = subprocess.Popen(command, cwd=REPO, stdout=log_file, stderr=subprocess.STDOUT)
        server = servers.Server(f"node{number}", process, port, folder, folder / "daemon.log")
        started.append(server)
        wait_ready(server)
    return started


def wait_ready(server: servers.Server) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"{server.name} exited with {server.process.returncode}:\n{servers.log_tail(server)}")
        try:
            if httpx.get(server.url + "/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{server.name} was not ready after {READY_TIMEOUT_S:.0f} s:\n{servers.log_tail(server)}")


def stop_all(daemons: list[servers.Server]) -> None:
    for daemon in daemons:
        servers.stop(daemon)


# ---------------------------------------------------------------- the two phases


def measure_ingestion(store: Store, rules: Path, nodes: int, plan: Plan) -> dict[str, float | int | str]:
    daemons = start_daemons(store, rules, nodes, notify=False)
    try:
        share = plan.ingest_requests // nodes
        started = time.perf_counter()
        loads = []
        for number, daemon in enumerate(daemons):
            spec = {
                "target": "irules",
                "port": daemon.port, "batch": 100, "requests": share, "connections": 2,
                "first": 1_000_000 * (number + 1), "token": "",
            }  # fmt: skip
            loads.append(
                subprocess.Popen([sys.executable, str(LOAD_SCRIPT), json.dumps(spec)], stdout=subprocess.PIPE, text=True)
            )
        results = []
        for load in loads:
            output, _ = load.communicate()
            if load.returncode != 0:
                raise RuntimeError(f"the load generator failed with {load.returncode}")
            results.append(json.loads(output))
        accepted_s = time.perf_counter() - started
        pending = wait_settled(daemons[0], lambda: pending_events(daemons[0]) == 0)
        applied_s = time.perf_counter() - started
        alerts = sum(int(result["alerts_sent"]) for result in results)
        incidents = store.count("incidents")
        check = "ok" if incidents == alerts and not pending else f"{incidents:,} incidents for {alerts:,} alerts"
        return {
            "alerts": alerts,
            "accepted_per_s": alerts / accepted_s,
            "p99_ms": max(float(result["p99_ms"]) for result in results),
            "applied_per_s": alerts / applied_s,
            "check": check,
        }
    finally:
        stop_all(daemons)


def measure_notifications(store: Store, rules: Path, nodes: int, plan: Plan, receiver: Receiver) -> dict[str, float | int | str]:
    daemons = start_daemons(store, rules, nodes, notify=True)
    try:
        requests: dict[int, list[bytes]] = {number: [] for number in range(nodes)}
        for number in range(plan.messages):
            body = json.dumps({"name": "BenchDown", "instance": f"i-{number}", "team": f"t{number % ENDPOINTS:02d}"}).encode()
            head = (
                f"POST /hooks/bench HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n"
            ).encode()
            requests[number % nodes].append(head + body)
        started = time.perf_counter()
        senders = [
            threading.Thread(target=send_all, args=("127.0.0.1", daemon.port, requests[number], 1))
            for number, daemon in enumerate(daemons)
        ]
        for sender in senders:
            sender.start()
        for sender in senders:
            sender.join()
        wait_settled(daemons[0], lambda: receiver.opened() >= plan.messages)
        elapsed = receiver.last_at - started
        duplicates = sum(count - 1 for count in receiver.deliveries.values() if count > 1)
        incidents = store.count("incidents")
        opened = receiver.opened()
        problems = []
        if incidents != plan.messages:
            problems.append(f"{incidents:,} incidents")
        if opened != plan.messages:
            problems.append(f"{opened:,} incidents notified")
        if duplicates:
            problems.append(f"{duplicates:,} duplicates")
        return {
            "notified_after_s": elapsed,
            "messages": receiver.messages,
            "digests": receiver.digests,
            "duplicates": duplicates,
            "check": "ok" if not problems else ", ".join(problems),
        }
    finally:
        stop_all(daemons)


def pending_events(server: servers.Server) -> int:
    return int(httpx.get(server.url + "/status", timeout=30).json()["pending_events"])


def wait_settled(server: servers.Server, settled) -> bool:  # type: ignore[no-untyped-def]
    """Wait until `settled()` is true; return whether work was still pending at the timeout."""
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    while time.monotonic() < deadline:
        if settled():
            return False
        if server.process.poll() is not None:
            raise RuntimeError(f"{server.name} exited with {server.process.returncode}:\n{servers.log_tail(server)}")
        time.sleep(0.05)
    return True


# ---------------------------------------------------------------- the report


def report(rows: list[dict[str, object]], plan: Plan, context: dict[str, str]) -> str:
    lines = [
        "## Several daemons: ingestion and notification throughput",
        "",
        f"`bench/cluster_bench.py` starts one, two and three daemons on one PostgreSQL database, and one on SQLite, on a new"
        f" store for each phase. Ingestion: {plan.ingest_requests:,} Alertmanager webhooks of 100 alerts, spread evenly over the"
        f" nodes on two connections each, notifications off. Notification: {plan.messages:,} single alerts through a custom"
        f" source, one connection per node, each its own incident for one of {ENDPOINTS} teams with a webhook on a local"
        " receiver, all at one URL. One URL is one endpoint (10 messages a second), and"
        " the storm is folded into digests; an incident counts as notified when a message or a digest names it."
        " All processes share the machine's cores, the load generators included.",
        "",
        "| store | nodes | alerts accepted/s | p99 (ms) | alerts applied/s | check | all incidents notified after (s) | messages (digests) | duplicates | check |",
        "| --- | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | --- |",
    ]
    for row in rows:
        ingest, notify = row["ingestion"], row["notification"]
        assert isinstance(ingest, dict) and isinstance(notify, dict)
        lines.append(
            f"| {row['store']} | {row['nodes']} | {ingest['accepted_per_s']:,.0f} | {ingest['p99_ms']:.1f} | {ingest['applied_per_s']:,.0f}"
            f" | {ingest['check']} | {notify['notified_after_s']:,.1f} | {notify['messages']:,} ({notify['digests']:,})"
            f" | {notify['duplicates']} | {notify['check']} |"
        )
    lines += [
        "",
        "More nodes accept more, because each node parses and stores its own requests. Only one node at a time applies events (the pipeline's advisory lock keeps one alert's events in order), so alerts applied per second grow only as much as the other nodes take HTTP work off the applying node. The endpoint's rate limit is shared through the database, so all nodes together send it at most 10 messages a second. The digest cadence (one digest a minute per endpoint while a storm lasts) is shared the same way, so more nodes do not send more digests.",
        "",
        f"- CPU: {context['cpu']}, {context['cores']} cores; Python {context['python']} on {context['system']}",
        f"- Load average over 1 minute: {context['load_before']} before the run, {context['load_after']} after it",
        f"- Command: `{context['command']}`",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description="Benchmark several irules daemons on PostgreSQL beside one on SQLite.")
    parser.add_argument("--quick", action="store_true", help="smoke run with small counts; its figures say little")
    parser.add_argument("--write", action="store_true", help="rewrite the cluster section of docs/benchmarks.md")
    options = parser.parse_args()
    plan = QUICK if options.quick else FULL
    load_before = f"{os.getloadavg()[0]:.2f}"

    server, receiver = start_receiver()
    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="irules-cluster-bench-") as scratch:
        rules = Path(scratch) / "rules"
        rules.mkdir()
        (rules / "bench.irules").write_text(rules_text(server.server_address[1]), encoding="utf-8")
        for number, (engine_name, nodes) in enumerate(CONFIGURATIONS):
            figures: dict[str, object] = {"store": engine_name, "nodes": nodes}
            for phase in ("ingestion", "notification"):
                store = new_store(engine_name, Path(scratch) / f"{number}-{phase}")
                try:
                    if phase == "ingestion":
                        figures[phase] = measure_ingestion(store, rules, nodes, plan)
                    else:
                        receiver.deliveries.clear()
                        receiver.messages = receiver.digests = 0
                        figures[phase] = measure_notifications(store, rules, nodes, plan, receiver)
                finally:
                    drop_store(store)
                print(f"{engine_name}, {nodes} node(s), {phase}: {figures[phase]}", file=sys.stderr)
            rows.append(figures)
    server.shutdown()

    info = machine()
    context = {
        **info,
        "load_before": load_before,
        "load_after": info["load"],
        "command": "python bench/cluster_bench.py " + " ".join(sys.argv[1:]),
    }
    text = report(rows, plan, context)
    print(text)
    if options.write:
        path = replace_section(REPO / "docs" / "benchmarks.md", "cluster", text)
        print(f"wrote the cluster section of {path.relative_to(REPO)}")


if __name__ == "__main__":
    main()
