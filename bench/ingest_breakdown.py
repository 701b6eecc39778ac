"""Break irules' CPU time per webhook down, to show where the batch-1 gap to Alertmanager comes from.

Over loopback, with the load generator of `ingest_bench.py` on one connection:

- `uvicorn, minimal app`: uvicorn with uvloop and httptools, as the daemon runs it,
  serving an ASGI app that reads the body and responds 202 with a small JSON object.
  This is the floor of any request that uvicorn serves.
- `irules daemon`: the daemon of `ingest_bench.py` (examples/production, SQLite).
- `Alertmanager`: `POST /api/v2/alerts`, for reference.
- `raw protocol, ...`: the servers of `ingest_floor.py`, which run irules' own
  authentication and normalisation on a raw httptools protocol, without ASGI,
  and acknowledge after nothing more, after one append to a journal file, or
  after the daemon's SQLite transaction. They show what a leaner HTTP layer and
  a cheaper acknowledgement point could give.

In one process, without HTTP, on a started daemon with a new SQLite store:

- `webhook path`: the daemon's own webhook handler (read, authenticate, normalise,
  commit), called in a loop.
- `store`: `runtime.pipeline.accept` storing one normalised one-alert payload,
  which is the SQLite transaction (BEGIN IMMEDIATE, two inserts, COMMIT) that
  every webhook waits for before its 2xx.
- `pipeline`: `Pipeline.process_pending` applying the stored alerts to incidents.

CPU time is user plus system time of the server process over the requests sent
(from /proc), or user plus system time of this process (`resource.getrusage`) in
one process; both are also shown split. The median of three runs is shown.

Usage:
    python bench/ingest_breakdown.py            # print the table
    python bench/ingest_breakdown.py --write    # also rewrite its section of docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import ingest_floor as floor  # noqa: E402
import ingest_servers as servers  # noqa: E402
from check_bench import machine  # noqa: E402
from docs_section import replace_section  # noqa: E402
from ingest_load import irules_body  # noqa: E402

LOAD_SCRIPT = REPO / "bench" / "ingest_load.py"
FLOOR_SCRIPT = REPO / "bench" / "ingest_floor.py"
RUNS = 3
HTTP_REQUESTS = 3_000
IN_PROCESS_REQUESTS = 3_000
BATCH = 100
IN_PROCESS_BATCHES = 40
STORE_REQUESTS = 3_000
TOKEN = "breakdown-token"


# ---------------------------------------------------------------- the minimal uvicorn app


async def _minimal_app(scope, receive, send) -> None:  # type: ignore[no-untyped-def]
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    body = b'{"payload_id":1,"kind":"alerts","alerts":1}'
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": 202, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def serve_minimal(port: int) -> None:
    import uvicorn

    uvicorn.run(_minimal_app, host="127.0.0.1", port=port, log_config=None, access_log=False, loop="uvloop", http="httptools")


def start_minimal(scratch: Path) -> servers.Server:
    port = servers.free_port()
    command = [sys.executable, str(Path(__file__).resolve()), "--serve-minimal", str(port)]
    server = servers._spawn("uvicorn", command, scratch, port)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
            return server
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError("the minimal uvicorn app did not start")


def start_floor(mode: str):  # type: ignore[no-untyped-def]
    """Return a starter of the `ingest_floor.py` server in `mode`."""

    def start(scratch: Path) -> servers.Server:
        port = servers.free_port()
        command = [sys.executable, str(FLOOR_SCRIPT), str(port), mode, str(scratch / "floor")]
        os.environ[floor.TOKEN_VARIABLE] = TOKEN
        try:
            server = servers._spawn("floor", command, scratch, port)
        finally:
            del os.environ[floor.TOKEN_VARIABLE]
        server.token = TOKEN
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if "listening" in server.log_path.read_text(encoding="utf-8"):
                return server
            if server.process.poll() is not None:
                break
            time.sleep(0.1)
        raise RuntimeError(f"the {mode} floor server did not start:\n{server.log_path.read_text(encoding='utf-8')}")

    return start


# ---------------------------------------------------------------- over HTTP


def http_cpu(server: servers.Server, batch: int, requests: int, first: int) -> dict[str, float]:
    """Send `requests` webhooks of `batch` alerts on one connection and return the rate and the server's CPU per request.

    The minimal app gets the same Alertmanager webhook bodies as the daemon.
    """
    spec = {
        "target": "irules" if server.name in ("irules", "uvicorn", "floor") else server.name,
        "port": server.port,
        "batch": batch,
        "requests": requests,
        "connections": 1,
        "first": first,
        "token": server.token,
    }
    before = _user_system(server.process.pid)
    completed = subprocess.run([sys.executable, str(LOAD_SCRIPT), json.dumps(spec)], capture_output=True, text=True, check=True)
    after = _user_system(server.process.pid)
    result = json.loads(completed.stdout)
    if result["ok_requests"] != requests:
        raise RuntimeError(f"{server.name} responded {result['statuses']}: {result['sample_error']}")
    user, system = ((later - earlier) / requests * 1e6 for earlier, later in zip(before, after, strict=True))
    return {"per_s": result["requests_per_s"], "cpu_us": user + system, "user_us": user, "system_us": system}


def _user_system(pid: int) -> tuple[float, float]:
    """Return the user and the system CPU seconds that process `pid` has used so far, from /proc."""
    # Fields after the command name's closing bracket start at the state (field 3); utime and stime are fields 14 and 15.
    fields = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8").rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / ticks, int(fields[12]) / ticks


def measure_http(scratch: Path) -> dict[str, dict[str, float]]:
    starters = {
        "uvicorn, minimal app": start_minimal,
        "irules daemon": servers.start_irules,
        "Alertmanager": servers.start_alertmanager,
        "raw protocol, normalise": start_floor("normalise"),
        "raw protocol, normalise, journal append": start_floor("journal"),
        "raw protocol, normalise, SQLite transaction": start_floor("sqlite"),
    }
    figures: dict[str, dict[str, float]] = {}
    for name, start in starters.items():
        folder = scratch / name.replace(",", "").replace(" ", "-")
        folder.mkdir()
        server = start(folder)
        try:
            http_cpu(server, 1, 200, 1)
            runs = [http_cpu(server, 1, HTTP_REQUESTS, 1_000_000 * (run + 1)) for run in range(RUNS)]
        finally:
            servers.stop(server)
        figures[name] = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
        print(
            f"{name}: {figures[name]['per_s']:,.0f} requests/s, {figures[name]['cpu_us']:.0f} µs CPU per request", file=sys.stderr
        )
    return figures


# ---------------------------------------------------------------- in one process


def measure_in_process(scratch: Path) -> dict[str, float]:
    """Return µs of CPU per one-alert webhook, per alert of 100-alert webhooks, and per alert the pipeline applies."""
    import anyio

    from runtime.daemon import app as daemon_app
    from runtime.daemon.service import Daemon, DaemonConfig
    from runtime.ingest import receive
    from runtime.pipeline import accept
    from runtime.sources.base import Inbound

    # The daemon warns about the secrets of other sources and channels, which this measurement does not use.
    logging.disable(logging.CRITICAL)
    os.environ[servers.TOKEN_SECRET] = TOKEN
    now = datetime.datetime.now(datetime.UTC)
    headers = {"content-type": "application/json", "authorization": f"Bearer {TOKEN}"}

    async def chunks(body: bytes):  # type: ignore[no-untyped-def]
        yield body

    async def post_all(daemon: Daemon, bodies: list[bytes]) -> None:
        for body in bodies:
            status, _content = await daemon_app._receive_webhook(
                daemon, "alertmanager", {**headers, "content-length": str(len(body))}, chunks(body)
            )
            assert status == 202, status

    async def one_run(run: int) -> dict[str, float]:
        folder = scratch / f"in-process-{run}"
        config = DaemonConfig(
            rules=servers.RULES,
            environment=servers.ENVIRONMENT,
            database_url=f"sqlite:///{folder / 'irules.db'}",
            watch=False,
            notify=False,
            runbooks=False,
            spool_dir=folder / "spool",
        )
        daemon = Daemon(config)
        await daemon.start()
        assert daemon.pipeline is not None

        single = [irules_body(range(number, number + 1), now) for number in range(IN_PROCESS_REQUESTS)]
        first = IN_PROCESS_REQUESTS
        batches = [
            irules_body(range(first + index * BATCH, first + (index + 1) * BATCH), now) for index in range(IN_PROCESS_BATCHES)
        ]
        # The first 100 requests warm up the handler and the store, and are not counted.
        await post_all(daemon, single[:100])

        started = time.process_time()
        await post_all(daemon, single[100:])
        per_request = (time.process_time() - started) / (len(single) - 100) * 1e6

        started = time.process_time()
        await post_all(daemon, batches)
        per_alert = (time.process_time() - started) / (len(batches) * BATCH) * 1e6

        # Normalised outside the measurement, so that only the transaction is timed.
        ruleset = daemon.rules.current().ruleset
        stores = [
            receive("alertmanager", Inbound(body, {**headers, "content-length": str(len(body))}, now), ruleset, daemon.secrets())
            for body in (
                irules_body(range(number, number + 1), now) for number in range(first + 10_000, first + 10_000 + STORE_REQUESTS)
            )
        ]
        started_user, started_system = _own_user_system()
        for item in stores:
            accept(daemon.store, [item])
        ended_user, ended_system = _own_user_system()
        store_user = (ended_user - started_user) / len(stores) * 1e6
        store_system = (ended_system - started_system) / len(stores) * 1e6

        started = time.process_time()
        applied = 0
        while True:
            count = daemon.pipeline.process_pending(limit=100)
            if not count:
                break
            applied += count
        per_applied = (time.process_time() - started) / applied * 1e6
        daemon.store.close()
        return {
            "webhook_1": per_request,
            "webhook_100": per_alert,
            "pipeline": per_applied,
            "store": store_user + store_system,
            "store_user": store_user,
            "store_system": store_system,
        }

    try:
        runs = [anyio.run(one_run, run, backend_options={"use_uvloop": True}) for run in range(RUNS)]
    finally:
        # Daemons started later read the token from their secrets folder, which this variable would override.
        del os.environ[servers.TOKEN_SECRET]
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


def _own_user_system() -> tuple[float, float]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime, usage.ru_stime


# ---------------------------------------------------------------- report


def report(http: dict[str, dict[str, float]], local: dict[str, float], context: dict[str, str]) -> str:
    floor = http["uvicorn, minimal app"]["cpu_us"]
    ours = http["irules daemon"]["cpu_us"]
    theirs = http["Alertmanager"]["cpu_us"]
    rest = ours - floor - local["webhook_1"]
    store = local["store"]
    lines = [
        "## Where irules' time per webhook goes",
        "",
        "`bench/ingest_breakdown.py` measures the CPU time of one-alert webhooks on one connection, over loopback,",
        "for a minimal ASGI app on uvicorn (uvloop and httptools, as the daemon runs it), for the irules daemon and",
        "for Alertmanager. The `raw protocol` servers (`bench/ingest_floor.py`) run irules' own authentication and",
        "normalisation without ASGI, on httptools and uvloop, and acknowledge after nothing more, after one append",
        "to a journal file, or after the daemon's SQLite transaction. The script also calls the daemon's webhook",
        "handler in a loop in one process, without HTTP, and times the pipeline applying the stored alerts.",
        "Medians of 3 runs.",
        "",
        "| over HTTP, batch 1 | requests/s | server CPU per request (µs) | user (µs) | system (µs) |",
        "| --- | ---: | ---: | ---: | ---: |",
        *(
            f"| {name} | {figures['per_s']:,.0f} | {figures['cpu_us']:.0f} | {figures['user_us']:.0f} | {figures['system_us']:.0f} |"
            for name, figures in http.items()
        ),
        "",
        "| in one process | CPU (µs) |",
        "| --- | ---: |",
        f"| webhook handler, one-alert webhook, per request | {local['webhook_1']:.0f} |",
        f"| webhook handler, 100-alert webhooks, per alert | {local['webhook_100']:.1f} |",
        f"| storing one one-alert payload: one SQLite transaction (user {local['store_user']:.0f}, system "
        f"{local['store_system']:.0f}) | {store:.0f} |",
        f"| pipeline, per alert applied | {local['pipeline']:.0f} |",
        "",
        f"- uvicorn alone takes {floor:.0f} µs of CPU per request, {floor / theirs:.2f} times Alertmanager's whole {theirs:.0f} µs.",
        f"- irules takes {ours:.0f} µs: {local['webhook_1']:.0f} µs in the webhook handler as measured in a loop, and {rest + floor:.0f} µs",
        "  more. The daemon answers webhooks in uvicorn's HTTP protocol without ASGI, so its HTTP share is below the",
        f"  {floor:.0f} µs of the minimal app. The rest is the pipeline applying alerts in the same interpreter meanwhile",
        "  (it takes a share of the time while webhooks arrive) and the handler running with cold caches between",
        "  requests, which the loop does not show.",
        *_conclusion(http),
        "",
        f"- CPU: {context['cpu']}, {context['cores']} cores; Python {context['python']} on {context['system']}",
        f"- Alertmanager: {servers.version()}",
        f"- Load average over 1 minute, taken after the run: {os.getloadavg()[0]:.2f}",
        "- Command: `python bench/ingest_breakdown.py --write`",
    ]
    return "\n".join(lines) + "\n"


def _conclusion(http: dict[str, dict[str, float]]) -> list[str]:
    """Say what the raw-protocol servers show about the batch-1 gap: the HTTP layer, and the acknowledgement point."""
    theirs = http["Alertmanager"]["per_s"]
    ours = http["irules daemon"]["per_s"]
    normalised = http["raw protocol, normalise"]["per_s"]
    journal = http["raw protocol, normalise, journal append"]["per_s"]
    committed = http["raw protocol, normalise, SQLite transaction"]["per_s"]
    lines = [
        f"- Without ASGI, authenticating and normalising alone runs at {normalised:,.0f} requests/s,"
        f" {normalised / theirs:.2f} times Alertmanager's {theirs:,.0f}.",
        f"  With one append to a journal file it runs at {journal:,.0f} ({journal / theirs:.2f} times), and waiting for the",
        f"  SQLite transaction, as the daemon does, at {committed:,.0f} ({committed / theirs:.2f} times Alertmanager's,"
        f" {committed / ours:.1f} times the daemon's {ours:,.0f}).",
    ]
    if committed >= theirs:
        lines.append("- So a leaner HTTP layer alone would close the batch-1 gap.")
    elif journal >= theirs:
        lines += [
            "- So closing the batch-1 gap needs a leaner HTTP layer and a cheaper acknowledgement point: a journal",
            "  that the daemon moves into the store in batches, replayed at start after a crash.",
        ]
    else:
        lines += [
            "- So even a leaner HTTP layer with a journal as the acknowledgement point stays below Alertmanager's",
            "  batch-1 rate on this machine: the Python work of one webhook (parsing, authenticating, normalising,",
            "  encoding) costs about as much as Alertmanager's whole request.",
        ]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--write", action="store_true", help="rewrite the section of docs/benchmarks.md")
    parser.add_argument("--serve-minimal", type=int, metavar="PORT", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.serve_minimal:
        serve_minimal(options.serve_minimal)
        return
    with tempfile.TemporaryDirectory(prefix="irules-breakdown-") as scratch:
        http = measure_http(Path(scratch))
        local = measure_in_process(Path(scratch))
    text = report(http, local, machine())
    print(text)
    if options.write:
        replace_section(REPO / "docs" / "benchmarks.md", "ingest-breakdown", text)


if __name__ == "__main__":
    main()
