"""Load generator of `ingest_bench.py`: posts alert batches over keep-alive HTTP/1.1 and times every request.

It runs as its own process, so it shares no interpreter lock with the parent.
It builds every request before the clock starts, and the connections speak
plain HTTP/1.1 on blocking sockets: a Python HTTP client library costs more
CPU per request than Alertmanager does at batch size 1, and would then set
the rate.

Both servers get the same label sets. Alert number `i` of a benchmark has the
labels of `labels_for(i)`, and the caller hands each run a range of numbers
that no other run uses, so every alert is new to the server.

Usage (the parent runs it; the result is one JSON object on stdout):
    python bench/ingest_load.py '{"target": "irules", "port": 8080, "batch": 100, "requests": 50,
                                  "connections": 4, "first": 0, "token": "..."}'
"""

from __future__ import annotations

import datetime
import json
import resource
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from compiler.router import fingerprint  # noqa: E402

ALERT_NAMES = ("HighErrorRate", "HighLatency", "DiskFull", "PodCrashLooping", "CertificateExpiry", "QueueBacklog")
CLUSTERS = tuple(f"prod-{region}-{number}" for region in ("eu", "us", "ap", "sa", "af") for number in range(1, 5))
# Services declared in examples/production, so that routes and correlation find them.
SERVICES = ("api", "web", "database", "cache", "kubernetes", "terraform", "prometheus", "ci")
ZERO_TIME = "0001-01-01T00:00:00Z"
IRULES_PATH = "/hooks/alertmanager"
ALERTMANAGER_PATH = "/api/v2/alerts"
# Alertmanager expires an alert at its `endsAt`; one hour keeps every alert of a run firing.
ACTIVE_FOR = datetime.timedelta(hours=1)


# ---------------------------------------------------------------- label sets and payloads


def labels_for(number: int) -> dict[str, str]:
    """Return the label set of alert `number`; the `instance` label makes every number a distinct alert.

    Consecutive numbers cycle through the 8 services, then the 20 clusters, then the 6 alert names,
    so any 960 consecutive alerts spread evenly over 160 (cluster, service) pairs.
    """
    service = SERVICES[number % len(SERVICES)]
    return {
        "alertname": ALERT_NAMES[number // (len(SERVICES) * len(CLUSTERS)) % len(ALERT_NAMES)],
        "cluster": CLUSTERS[number // len(SERVICES) % len(CLUSTERS)],
        "service": service,
        "instance": f"{service}-{number}.example.com:9100",
        "job": service,
        "severity": "critical" if number % 10 == 0 else "warning",
    }


def annotations_for(labels: dict[str, str]) -> dict[str, str]:
    return {
        "summary": f"{labels['alertname']} on {labels['instance']}",
        "description": f"{labels['alertname']} has been firing on {labels['instance']} in {labels['cluster']} for 5 minutes.",
    }


def _timestamp(moment: datetime.datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def irules_body(numbers: range, now: datetime.datetime) -> bytes:
    """Return an Alertmanager webhook body, payload version 4, with one firing alert per number."""
    alerts = []
    for number in numbers:
        labels = labels_for(number)
        alerts.append(
            {
                "status": "firing",
                "labels": labels,
                "annotations": annotations_for(labels),
                "startsAt": _timestamp(now),
                "endsAt": ZERO_TIME,
                "generatorURL": f"http://prometheus.example.com:9090/graph?g0.expr=up%7Binstance%3D%22{number}%22%7D",
                "fingerprint": fingerprint(labels),
            }
        )
    document = {
        "version": "4",
        "groupKey": "{}:{}",
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "irules",
        "groupLabels": {},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.example.com:9093",
        "alerts": alerts,
    }
    return json.dumps(document, separators=(",", ":")).encode()


def alertmanager_body(numbers: range, now: datetime.datetime) -> bytes:
    """Return a body for Alertmanager's `POST /api/v2/alerts`: a list of postable alerts, one per number."""
    alerts = []
    for number in numbers:
        labels = labels_for(number)
        alerts.append(
            {
                "labels": labels,
                "annotations": annotations_for(labels),
                "startsAt": _timestamp(now),
                "endsAt": _timestamp(now + ACTIVE_FOR),
                "generatorURL": f"http://prometheus.example.com:9090/graph?g0.expr=up%7Binstance%3D%22{number}%22%7D",
            }
        )
    return json.dumps(alerts, separators=(",", ":")).encode()


def build_requests(target: str, port: int, batch: int, count: int, first: int, token: str = "") -> list[bytes]:
    """Return `count` complete HTTP/1.1 requests of `batch` alerts each, numbered from `first`.

    A non-empty `token` is sent as `Authorization: Bearer`, as Alertmanager's webhook sends its credentials.
    """
    now = datetime.datetime.now(datetime.UTC)
    path, make_body = (IRULES_PATH, irules_body) if target == "irules" else (ALERTMANAGER_PATH, alertmanager_body)
    authorization = f"Authorization: Bearer {token}\r\n" if token else ""
    requests = []
    for index in range(count):
        start = first + index * batch
        body = make_body(range(start, start + batch), now)
        head = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
            f"User-Agent: irules-ingest-bench\r\n{authorization}Content-Length: {len(body)}\r\n\r\n"
        )
        requests.append(head.encode() + body)
    return requests


# ---------------------------------------------------------------- HTTP/1.1 client


class ProtocolError(Exception):
    """The server sent a response this client does not read: no Content-Length, an invalid status line, or none at all."""


@dataclass(slots=True)
class Tally:
    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    sample_error: str = ""


class Connection:
    """One keep-alive connection on a blocking socket, one request in flight at a time."""

    def __init__(self, host: str, port: int) -> None:
        self.address = (host, port)
        self.socket = self._connect()
        self.buffer = b""

    def _connect(self) -> socket.socket:
        connection = socket.create_connection(self.address)
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return connection

    def exchange(self, request: bytes) -> tuple[int, bytes]:
        """Send one request and return the status and body of its response, reconnecting when the server closes."""
        self.socket.sendall(request)
        while b"\r\n\r\n" not in self.buffer:
            self._receive()
        head, _, rest = self.buffer.partition(b"\r\n\r\n")
        status, headers = _parse_head(head)
        if "content-length" not in headers:
            raise ProtocolError(f"response without Content-Length (headers {sorted(headers)})")
        length = int(headers["content-length"])
        self.buffer = rest
        while len(self.buffer) < length:
            self._receive()
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        if headers.get("connection", "").lower() == "close":
            self.close()
            self.socket = self._connect()
        return status, body

    def _receive(self) -> None:
        chunk = self.socket.recv(1 << 16)
        if not chunk:
            raise ProtocolError("the server closed the connection before it sent a response")
        self.buffer += chunk

    def close(self) -> None:
        self.socket.close()
        self.buffer = b""


def _parse_head(head: bytes) -> tuple[int, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[1].isdigit():
        raise ProtocolError(f"invalid status line {lines[0]!r}")
    headers = {}
    for line in lines[1:]:
        name, separator, value = line.partition(":")
        if separator:
            headers[name.strip().lower()] = value.strip()
    return int(parts[1]), headers


def _send_on_one_connection(host: str, port: int, take: Callable[[], bytes | None], tally: Tally) -> None:
    """Send requests one after another on one connection until `take` returns None."""
    connection = Connection(host, port)
    try:
        while (request := take()) is not None:
            started = time.perf_counter()
            status, body = connection.exchange(request)
            tally.latencies.append(time.perf_counter() - started)
            tally.statuses[status] = tally.statuses.get(status, 0) + 1
            if not 200 <= status < 300 and not tally.sample_error:
                tally.sample_error = f"HTTP {status}: {body[:300].decode(errors='replace')}"
    finally:
        connection.close()


def send_all(host: str, port: int, requests: list[bytes], connections: int) -> Tally:
    """Send `requests` over `connections` concurrent connections, one thread each; a free connection takes the next request.

    Blocking sockets cost less CPU per request than an event loop, which matters on the one
    sequential connection of batch size 1. The threads wait in `recv` with the GIL released.
    """
    pending = iter(requests)
    lock = threading.Lock()

    def take() -> bytes | None:
        with lock:
            return next(pending, None)

    tallies = [Tally() for _ in range(connections)]
    errors: list[BaseException] = []

    def work(tally: Tally) -> None:
        try:
            _send_on_one_connection(host, port, take, tally)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=work, args=(tally,)) for tally in tallies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]

    merged = Tally()
    for tally in tallies:
        merged.latencies.extend(tally.latencies)
        for status, count in tally.statuses.items():
            merged.statuses[status] = merged.statuses.get(status, 0) + count
        merged.sample_error = merged.sample_error or tally.sample_error
    return merged


# ---------------------------------------------------------------- one run


def percentile(values: list[float], fraction: float) -> float:
    """Return the value below which `fraction` of `values` lie (nearest rank)."""
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(fraction * len(ordered) + 0.5) - 1))
    return ordered[rank]


def run(spec: dict[str, object]) -> dict[str, object]:
    """Build the requests of `spec`, send them, and return rates, latencies, statuses and the client's CPU time."""
    host, port = str(spec.get("host", "127.0.0.1")), int(spec["port"])
    batch, count = int(spec["batch"]), int(spec["requests"])
    requests = build_requests(str(spec["target"]), port, batch, count, int(spec["first"]), str(spec.get("token", "")))

    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    tally = send_all(host, port, requests, int(spec["connections"]))
    wall = time.perf_counter() - started
    cpu_after = resource.getrusage(resource.RUSAGE_SELF)

    cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    ok = sum(number for status, number in tally.statuses.items() if 200 <= status < 300)
    return {
        "requests": count,
        "ok_requests": ok,
        "alerts_sent": ok * batch,
        "statuses": {str(status): number for status, number in sorted(tally.statuses.items())},
        "sample_error": tally.sample_error,
        "wall_s": wall,
        "requests_per_s": count / wall,
        "alerts_per_s": count * batch / wall,
        "p50_ms": percentile(tally.latencies, 0.50) * 1000,
        "p99_ms": percentile(tally.latencies, 0.99) * 1000,
        "client_cpu_share": cpu / wall,
        "body_bytes": sum(len(request) for request in requests) // count,
    }


# ---------------------------------------------------------------- cross-check with wrk

WRK_SCRIPT = """\
local services = {%(services)s}
local clusters = {%(clusters)s}
local names = {%(names)s}
local number = %(first)d - 1
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
  number = number + 1
  local service = services[number %% #services + 1]
  local cluster = clusters[math.floor(number / #services) %% #clusters + 1]
  local name = names[math.floor(number / (#services * #clusters)) %% #names + 1]
  local severity = (number %% 10 == 0) and "critical" or "warning"
  local instance = string.format("%%s-%%d.example.com:9100", service, number)
  local body = string.format(
    '[{"labels":{"alertname":"%%s","cluster":"%%s","service":"%%s","instance":"%%s","job":"%%s","severity":"%%s"},'
    .. '"annotations":{"summary":"%%s on %%s","description":"%%s has been firing on %%s in %%s for 5 minutes."},'
    .. '"startsAt":"%(starts)s","endsAt":"%(ends)s",'
    .. '"generatorURL":"http://prometheus.example.com:9090/graph?g0.expr=up%%%%7Binstance%%%%3D%%%%22%%d%%%%22%%%%7D"}]',
    name, cluster, service, instance, service, severity, name, instance, name, instance, cluster, number)
  return wrk.format(nil, "%(path)s", nil, body)
end
"""


def wrk_script(first: int) -> str:
    """Return a wrk Lua script that posts alert `first`, `first + 1`, ... to Alertmanager, with the labels of `labels_for`."""
    now = datetime.datetime.now(datetime.UTC)

    def quoted(values: tuple[str, ...]) -> str:
        return ", ".join(f'"{value}"' for value in values)

    return WRK_SCRIPT % {
        "services": quoted(SERVICES),
        "clusters": quoted(CLUSTERS),
        "names": quoted(ALERT_NAMES),
        "first": first,
        "starts": _timestamp(now),
        "ends": _timestamp(now + ACTIVE_FOR),
        "path": ALERTMANAGER_PATH,
    }


def run_wrk(wrk: str, port: int, first: int, seconds: int, folder: Path) -> dict[str, float]:
    """Post single alerts to Alertmanager with wrk on one connection for `seconds`; return its rate and latencies."""
    import subprocess

    script = folder / f"alertmanager-{first}.lua"
    script.write_text(wrk_script(first), encoding="utf-8")
    command = [wrk, "-t1", "-c1", f"-d{seconds}s", "--latency", "-s", str(script), f"http://127.0.0.1:{port}"]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    if "Non-2xx" in output:
        raise RuntimeError(f"Alertmanager rejected requests from wrk:\n{output}")
    figures: dict[str, float] = {}
    for line in output.splitlines():
        words = line.split()
        if line.startswith("Requests/sec:"):
            figures["requests_per_s"] = float(words[1])
        elif len(words) == 2 and words[0] in ("50%", "99%"):
            figures[f"p{words[0][:-1]}_ms"] = _milliseconds(words[1])
    return figures


def _milliseconds(text: str) -> float:
    for unit, factor in (("us", 0.001), ("ms", 1.0), ("s", 1000.0)):
        if text.endswith(unit):
            return float(text.removesuffix(unit)) * factor
    raise ValueError(f"unknown duration {text!r} in the output of wrk")


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit("usage: python bench/ingest_load.py SPEC_JSON (ingest_bench.py runs this)")
    print(json.dumps(run(json.loads(sys.argv[1]))))


if __name__ == "__main__":
    main()
