"""Benchmark alert ingest of the irules daemon against Alertmanager, side by side in one run.

The script starts both servers on 127.0.0.1 (see `ingest_servers.py`) and
sends them the same label sets with the load generator of `ingest_load.py`,
which runs as a separate process:

- irules: `POST /hooks/alertmanager`, Alertmanager webhook payloads (version 4)
  of N distinct firing alerts, with the bearer token its source declares;
- Alertmanager: `POST /api/v2/alerts` with the same N alerts as postable alerts.

Throughput: for batch sizes 1, 100 and 1,000 the two servers take turns, run
after run, so that both see the same machine load. Batch 1 uses one connection
and sends each request after the previous response; larger batches use a few
concurrent connections. After each irules run the script polls `GET /status`
until `pending_events` is 0 again: the drain time, which shows how fast the
pipeline turns stored alerts into incidents. At the end it counts the rows of
`alert_events` in the daemon's SQLite file, which must equal the alerts sent.

Memory: two new servers receive distinct firing alerts in batches up to 10,000
and then up to 100,000 active alerts, and the script reads VmRSS of each server
(with its child processes) from /proc at each step.

Usage:
    python bench/ingest_bench.py                  # print the record
    python bench/ingest_bench.py --write          # also rewrite its section of docs/benchmarks.md
    python bench/ingest_bench.py --quick          # smoke run with small counts (under half a minute)
    python bench/ingest_bench.py --json out.json  # also write the measurements as JSON
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import ingest_servers as servers  # noqa: E402
from check_bench import machine  # noqa: E402
from docs_section import replace_section  # noqa: E402
from ingest_load import run_wrk  # noqa: E402
from ingest_servers import Server  # noqa: E402

LOAD_SCRIPT = Path(__file__).with_name("ingest_load.py")
TARGET_REQUESTS_PER_S = 3_000
# wrk's alerts are numbered from here, far above the numbers the load generator uses.
WRK_FIRST = 1_000_000_000
# Seconds Alertmanager gets after a load before its RSS is read, so that it has processed what it accepted.
ALERTMANAGER_SETTLE_S = 2.0


@dataclass(frozen=True, slots=True)
class Load:
    """One batch size: requests per run and concurrent connections."""

    batch: int
    requests: int
    connections: int


@dataclass(frozen=True, slots=True)
class Plan:
    """How much to send: the throughput loads, runs per load, and the memory checkpoints."""

    loads: tuple[Load, ...]
    runs: int
    memory_checkpoints: tuple[int, ...]
    memory_batch: int
    memory_connections: int
    drain_timeout_s: float
    wrk_seconds: int


FULL = Plan(
    loads=(Load(1, 3_000, 1), Load(100, 100, 4), Load(1_000, 20, 4)),
    runs=3,
    memory_checkpoints=(10_000, 100_000),
    memory_batch=1_000,
    memory_connections=4,
    drain_timeout_s=300.0,
    wrk_seconds=5,
)
QUICK = Plan(
    loads=(Load(1, 200, 1), Load(100, 4, 2), Load(1_000, 1, 1)),
    runs=2,
    memory_checkpoints=(500, 1_000),
    memory_batch=250,
    memory_connections=2,
    drain_timeout_s=10.0,
    wrk_seconds=1,
)


# ---------------------------------------------------------------- one load


def send(server: Server, batch: int, requests: int, connections: int, first: int) -> dict[str, object]:
    """Run the load generator against `server` and return its result; stop the benchmark when a request failed."""
    spec = {
        "target": server.name,
        "port": server.port,
        "batch": batch,
        "requests": requests,
        "connections": connections,
        "first": first,
        "token": server.token,
    }
    cpu_before = servers.cpu_seconds(server.process.pid)
    completed = subprocess.run([sys.executable, str(LOAD_SCRIPT), json.dumps(spec)], capture_output=True, text=True, check=False)
    cpu_after = servers.cpu_seconds(server.process.pid)
    if completed.returncode != 0:
        raise RuntimeError(f"the load generator failed against {server.name}:\n{completed.stderr}")
    result = {
        **json.loads(completed.stdout),
        "load_1min": os.getloadavg()[0],
        "server_cpu_start_s": cpu_before,
        "server_cpu_s": cpu_after - cpu_before,
    }
    if result["ok_requests"] != requests:
        raise RuntimeError(
            f"{server.name} responded with {result['statuses']} to {requests} requests of {batch} alerts; first error: {result['sample_error']}\n"
            f"{servers.log_tail(server)}"
        )
    return result


def pipeline_numbers(server: Server, result: dict[str, object], timeout: float) -> dict[str, object]:
    """Wait for the daemon's pipeline to apply what the run stored, and add the drain time and end-to-end rate to `result`."""
    drain_s, pending = servers.wait_for_drain(server, timeout)
    alerts = int(result["alerts_sent"])
    return {
        **result,
        "drain_s": drain_s,
        "server_cpu_drained_s": servers.cpu_seconds(server.process.pid) - float(result["server_cpu_start_s"]),
        "pending_after_drain": pending,
        "applied_per_s": (alerts - pending) / (float(result["wall_s"]) + drain_s),
    }


# ---------------------------------------------------------------- phases


def measure_throughput(plan: Plan, scratch: Path, wrk: str | None) -> dict[str, object]:
    """Send every load of `plan` to both servers in turns; return the runs of each, and the alert events stored.

    With `wrk`, each batch-1 run is followed by a run of wrk against Alertmanager, a check
    that the Python load generator does not hold Alertmanager's rate down.
    """
    irules = servers.start_irules(scratch)
    alertmanager = servers.start_alertmanager(scratch)
    runs: dict[str, dict[int, list[dict[str, object]]]] = {"irules": {}, "alertmanager": {}}
    wrk_runs: list[dict[str, float]] = []
    first = 0
    try:
        for load in plan.loads:
            for number in range(plan.runs):
                # Both servers get the same alert numbers, so the same label sets.
                ours = send(irules, load.batch, load.requests, load.connections, first)
                ours = pipeline_numbers(irules, ours, plan.drain_timeout_s)
                theirs = send(alertmanager, load.batch, load.requests, load.connections, first)
                runs["irules"].setdefault(load.batch, []).append(ours)
                runs["alertmanager"].setdefault(load.batch, []).append(theirs)
                if wrk and load.batch == 1:
                    wrk_first = WRK_FIRST + len(wrk_runs) * 100_000_000
                    wrk_runs.append(run_wrk(wrk, alertmanager.port, wrk_first, plan.wrk_seconds, scratch))
                first += load.batch * load.requests
                _progress(f"batch {load.batch:>5}, run {number + 1}/{plan.runs}: ", ours, theirs)
        stored = servers.stored_alert_events(irules)
    finally:
        status = servers.stop(irules)
        servers.stop(alertmanager)
    loads = [float(run["load_1min"]) for by_batch in runs.values() for batch_runs in by_batch.values() for run in batch_runs]
    return {
        "runs": runs,
        "wrk": wrk_runs,
        "max_load_1min": max(loads),
        "alerts_sent": first,
        "alert_events_stored": stored,
        "irules_exit_status": status,
    }


def _progress(prefix: str, ours: dict[str, object], theirs: dict[str, object]) -> None:
    print(
        f"{prefix}irules {ours['alerts_per_s']:,.0f} alerts/s (drain {ours['drain_s']:.1f} s), "
        f"Alertmanager {theirs['alerts_per_s']:,.0f} alerts/s",
        file=sys.stderr,
    )


def measure_memory(plan: Plan, scratch: Path) -> dict[str, object]:
    """Fill two new servers with distinct firing alerts up to each checkpoint, and read their RSS at each one."""
    irules = servers.start_irules(scratch)
    alertmanager = servers.start_alertmanager(scratch)
    rows = []
    sent = 0
    try:
        idle = {
            "irules": servers.resident_kib(irules.process.pid),
            "alertmanager": servers.resident_kib(alertmanager.process.pid),
        }
        for checkpoint in plan.memory_checkpoints:
            requests = (checkpoint - sent) // plan.memory_batch
            ours = send(irules, plan.memory_batch, requests, plan.memory_connections, sent)
            stored_kib = servers.resident_kib(irules.process.pid)
            ours = pipeline_numbers(irules, ours, plan.drain_timeout_s)
            applied_kib = servers.resident_kib(irules.process.pid)
            send(alertmanager, plan.memory_batch, requests, plan.memory_connections, sent)
            time.sleep(ALERTMANAGER_SETTLE_S)
            theirs_kib = servers.resident_kib(alertmanager.process.pid)
            sent += requests * plan.memory_batch
            rows.append(
                {
                    "alerts": sent,
                    "irules_stored_kib": stored_kib,
                    "irules_applied_kib": applied_kib,
                    "irules_pending": ours["pending_after_drain"],
                    "irules_drain_s": ours["drain_s"],
                    "alertmanager_kib": theirs_kib,
                }
            )
            print(
                f"memory at {sent:,} alerts: irules {applied_kib / 1024:.0f} MiB, Alertmanager {theirs_kib / 1024:.0f} MiB",
                file=sys.stderr,
            )
        stored = servers.stored_alert_events(irules)
        active = servers.active_alerts(alertmanager)
    finally:
        servers.stop(irules)
        servers.stop(alertmanager)
    return {"idle_kib": idle, "rows": rows, "alert_events_stored": stored, "alertmanager_active": active, "alerts_sent": sent}


# ---------------------------------------------------------------- figures


def summarise(runs: list[dict[str, object]]) -> dict[str, float]:
    """Return best and median rates, and the medians of the runs' latency percentiles and server CPU time per alert."""
    rates = [float(run["alerts_per_s"]) for run in runs]
    request_rates = [float(run["requests_per_s"]) for run in runs]
    summary = {
        "alerts_best": max(rates),
        "alerts_median": statistics.median(rates),
        "requests_median": statistics.median(request_rates),
        "requests_best": max(request_rates),
        "p50_ms": statistics.median(float(run["p50_ms"]) for run in runs),
        "p99_ms": statistics.median(float(run["p99_ms"]) for run in runs),
        "client_cpu_share": max(float(run["client_cpu_share"]) for run in runs),
        "cpu_us_per_alert": statistics.median(float(run["server_cpu_s"]) / int(run["alerts_sent"]) * 1e6 for run in runs),
    }
    if "drain_s" in runs[0]:
        summary["cpu_drained_us_per_alert"] = statistics.median(
            float(run["server_cpu_drained_s"]) / int(run["alerts_sent"]) * 1e6 for run in runs
        )
        summary["drain_median_s"] = statistics.median(float(run["drain_s"]) for run in runs)
        summary["drain_max_s"] = max(float(run["drain_s"]) for run in runs)
        summary["applied_median_per_s"] = statistics.median(float(run["applied_per_s"]) for run in runs)
        summary["pending_max"] = max(int(run["pending_after_drain"]) for run in runs)
    return summary


def summaries(throughput: dict[str, object]) -> dict[str, dict[int, dict[str, float]]]:
    return {name: {batch: summarise(runs) for batch, runs in by_batch.items()} for name, by_batch in throughput["runs"].items()}


# ---------------------------------------------------------------- report


def throughput_table(plan: Plan, figures: dict[str, dict[int, dict[str, float]]]) -> list[str]:
    lines = [
        "| batch | connections | server | alerts/s best | alerts/s median | requests/s median | p50 latency (ms) | p99 latency (ms) "
        "| server CPU per alert (µs) |",
        "| ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for load in plan.loads:
        for name, display_name in (("irules", "irules"), ("alertmanager", "Alertmanager")):
            row = figures[name][load.batch]
            lines.append(
                f"| {load.batch:,} | {load.connections} | {display_name} | {row['alerts_best']:,.0f} | {row['alerts_median']:,.0f} "
                f"| {row['requests_median']:,.0f} | {row['p50_ms']:.2f} | {row['p99_ms']:.2f} | {row['cpu_us_per_alert']:,.0f} |"
            )
    return lines


def ratio_table(plan: Plan, figures: dict[str, dict[int, dict[str, float]]]) -> list[str]:
    lines = ["| batch | irules / Alertmanager, best | median | p50 latency ratio |", "| ---: | ---: | ---: | ---: |"]
    for load in plan.loads:
        ours, theirs = figures["irules"][load.batch], figures["alertmanager"][load.batch]
        lines.append(
            f"| {load.batch:,} | {ours['alerts_best'] / theirs['alerts_best']:.2f} | {ours['alerts_median'] / theirs['alerts_median']:.2f} "
            f"| {ours['p50_ms'] / theirs['p50_ms']:.1f} |"
        )
    return lines


def pipeline_table(plan: Plan, figures: dict[str, dict[int, dict[str, float]]]) -> list[str]:
    lines = [
        "| batch | alerts per run | drain after the last response, median (s) | max (s) | alerts applied per s, first request to drained (median) "
        "| still pending at the timeout | CPU per alert, first request to drained (µs) |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for load in plan.loads:
        row = figures["irules"][load.batch]
        lines.append(
            f"| {load.batch:,} | {load.batch * load.requests:,} | {row['drain_median_s']:.2f} | {row['drain_max_s']:.2f} "
            f"| {row['applied_median_per_s']:,.0f} | {row['pending_max']:,} | {row['cpu_drained_us_per_alert']:,.0f} |"
        )
    return lines


def memory_table(memory: dict[str, object]) -> list[str]:
    idle = memory["idle_kib"]
    lines = [
        "| active alerts | irules, all stored (MiB) | irules, all applied (MiB) | pending at the timeout | Alertmanager (MiB) | irules / Alertmanager |",
        "| ---: | ---: | ---: | ---: | ---: | ---: |",
        f"| 0 (started) | {idle['irules'] / 1024:,.0f} | {idle['irules'] / 1024:,.0f} | 0 | {idle['alertmanager'] / 1024:,.0f} "
        f"| {idle['irules'] / idle['alertmanager']:.1f} |",
    ]
    for row in memory["rows"]:
        lines.append(
            f"| {row['alerts']:,} | {row['irules_stored_kib'] / 1024:,.0f} | {row['irules_applied_kib'] / 1024:,.0f} | {row['irules_pending']:,} "
            f"| {row['alertmanager_kib'] / 1024:,.0f} | {row['irules_applied_kib'] / row['alertmanager_kib']:.1f} |"
        )
    return lines


def target_lines(
    figures: dict[str, dict[int, dict[str, float]]], throughput: dict[str, object], memory: dict[str, object]
) -> list[str]:
    ours, theirs = figures["irules"][1], figures["alertmanager"][1]
    sent, stored = throughput["alerts_sent"], throughput["alert_events_stored"]
    memory_sent, memory_stored = memory["alerts_sent"], memory["alert_events_stored"]
    ours_100, theirs_100 = figures["irules"][100], figures["alertmanager"][100]
    largest = max(memory["rows"], key=lambda row: row["alerts"])
    ours_kib = max(largest["irules_stored_kib"], largest["irules_applied_kib"])
    return [
        f"- Batch 100, irules at least as many alerts/s as Alertmanager: {ours_100['alerts_median']:,.0f} against "
        f"{theirs_100['alerts_median']:,.0f} (median), {ours_100['alerts_best']:,.0f} against {theirs_100['alerts_best']:,.0f} "
        f"(best): {_two_verdicts(ours_100, theirs_100)}.",
        f"- Memory at {largest['alerts']:,} active alerts no more than Alertmanager's: irules {ours_kib / 1024:,.0f} MiB "
        f"against {largest['alertmanager_kib'] / 1024:,.0f} MiB: {_verdict(ours_kib <= largest['alertmanager_kib'])}.",
        f"- Batch 1, irules at least as fast as Alertmanager: {ours['requests_median']:,.0f} against "
        f"{theirs['requests_median']:,.0f} requests/s (median): {_verdict(ours['requests_median'] >= theirs['requests_median'])}.",
        f"- Batch 1, about {TARGET_REQUESTS_PER_S:,} requests/s: irules {ours['requests_median']:,.0f} (median): "
        f"{_verdict(ours['requests_median'] >= TARGET_REQUESTS_PER_S)}.",
        f"- Every alert persisted: {stored:,} rows in `alert_events` for {sent:,} alerts accepted with 2xx in the throughput runs, "
        f"and {memory_stored:,} for {memory_sent:,} in the memory runs: {_verdict(stored == sent and memory_stored == memory_sent)}.",
        f"- Alertmanager listed {memory['alertmanager_active']:,} active alerts after the memory runs, of {memory_sent:,} sent.",
    ]


def wrk_lines(throughput: dict[str, object], figures: dict[str, dict[int, dict[str, float]]]) -> list[str]:
    """State how Alertmanager's batch-1 rate under wrk compares with the rate under the Python load generator."""
    runs = throughput["wrk"]
    if not runs:
        return ["- wrk was not run (`--wrk`), so no load generator in C checked the batch-1 rate of Alertmanager."]
    rate = statistics.median(run["requests_per_s"] for run in runs)
    p50 = statistics.median(run["p50_ms"] for run in runs)
    ours = figures["alertmanager"][1]["requests_median"]
    return [
        f"- Cross-check: wrk ({len(runs)} runs, one connection) drove Alertmanager at {rate:,.0f} requests/s with a p50 of {p50:.2f} ms"
        f" at batch 1, where the Python load generator reached {ours:,.0f}. Measured with wrk, Alertmanager's batch-1 rate"
        f" is {rate / ours:.2f} times as high, and the batch-1 ratio of irules to Alertmanager {ours / rate:.2f} times the one above."
    ]


def _verdict(met: bool) -> str:
    return "met" if met else "missed"


def _two_verdicts(ours: dict[str, float], theirs: dict[str, float]) -> str:
    """Return the verdict on the median and on the best run, which differ when a server's rate varies between runs."""
    median = ours["alerts_median"] >= theirs["alerts_median"]
    best = ours["alerts_best"] >= theirs["alerts_best"]
    if median == best:
        return _verdict(median)
    return f"{_verdict(median)} on the median, {_verdict(best)} on the best run, so not settled by this run"


def report(plan: Plan, throughput: dict[str, object], memory: dict[str, object], context: dict[str, str]) -> str:
    figures = summaries(throughput)
    client_share = max(row["client_cpu_share"] for by_batch in figures.values() for row in by_batch.values())
    batch_one = next(load for load in plan.loads if load.batch == 1)
    return "\n".join(
        [
            "## Alert ingest: the irules daemon against Alertmanager",
            "",
            "`bench/ingest_bench.py` starts both servers on 127.0.0.1 and sends them the same distinct firing alerts,",
            "spread over 6 alert names, 20 clusters and the 8 services of examples/production:",
            "",
            "- irules: `irules daemon --rules examples/production --env production` with a new SQLite store,",
            "  `POST /hooks/alertmanager` with Alertmanager webhook payloads (version 4) of N alerts and the bearer token",
            "  that its `source alertmanager` asks for, read from a `--secrets-dir` file;",
            "- Alertmanager: `POST /api/v2/alerts` with the same N alerts, `endsAt` one hour ahead, gossip off",
            "  and one receiver without integrations.",
            "",
            "The load generator is a separate process that sends prepared HTTP/1.1 requests over keep-alive connections,"
            f" one thread and blocking socket per connection; its CPU time stayed at or below {client_share:.0%} of one core in every run.",
            f"Batch 1 sends each of {batch_one.requests:,} requests on one connection after the previous response. The servers take turns,"
            f" {plan.runs} runs each per batch size, and every run sends new alerts. Latencies are the median over the runs of each run's percentile.",
            "Server CPU per alert is the CPU time (user and system, all threads, from /proc) that the server process used"
            " while the load ran, over the alerts sent, as a median over the runs. It depends less on other load on the"
            " machine than the rates do. irules' figure includes what its pipeline applied meanwhile.",
            "",
            *throughput_table(plan, figures),
            "",
            "Ratios of irules to Alertmanager (above 1.00, irules accepts more alerts per second; the latency ratio is irules' p50 over Alertmanager's):",
            "",
            *ratio_table(plan, figures),
            "",
            "irules responds 202 once a payload is committed to SQLite, and its pipeline applies the stored alerts to incidents",
            "in the background. After each run the script polls `GET /status` until `pending_events` is 0:",
            "",
            *pipeline_table(plan, figures),
            "",
            "Resident memory (VmRSS from /proc, with child processes) of two new servers filled with distinct firing alerts,"
            f" in batches of {plan.memory_batch:,} over {plan.memory_connections} connections. irules is measured when every"
            " payload is stored and again when the pipeline has applied them; Alertmanager"
            f" {ALERTMANAGER_SETTLE_S:.0f} s after its last response:",
            "",
            *memory_table(memory),
            "",
            "Targets and checks:",
            "",
            *target_lines(figures, throughput, memory),
            *wrk_lines(throughput, figures),
            "",
            f"- CPU: {context['cpu']}, {context['cores']} cores; Python {context['python']} on {context['system']}",
            f"- Alertmanager: {context['alertmanager']}",
            f"- Load average over 1 minute: {context['load_before']} before the run, {context['load_after']} after it,"
            f" and at most {throughput['max_load_1min']:.2f} at the end of a throughput run (other processes on the machine count too)",
            f"- Command: `{context['command']}`",
            "",
        ]
    )


# ---------------------------------------------------------------- main


def recorded_command(arguments: list[str]) -> str:
    """Return the command line for the record, without `--json FILE`, which names a local file and changes no figure."""
    kept = []
    skip_next = False
    for argument in arguments:
        if skip_next:
            skip_next = False
        elif argument == "--json":
            skip_next = True
        elif not argument.startswith("--json="):
            kept.append(argument)
    return ("python bench/ingest_bench.py " + shlex.join(kept)).strip()


def main() -> None:
    parser = argparse.ArgumentParser(description="Benchmark alert ingest of the irules daemon against Alertmanager.")
    parser.add_argument("--quick", action="store_true", help="smoke run with small counts; its figures say little")
    parser.add_argument("--runs", type=int, help="runs per batch size and server (default 3, or 2 with --quick)")
    parser.add_argument("--write", action="store_true", help="rewrite the ingest section of docs/benchmarks.md")
    parser.add_argument("--json", type=Path, help="also write every measurement to this JSON file")
    parser.add_argument(
        "--wrk", action="store_true", help="also drive Alertmanager with wrk at batch size 1, to check the load generator"
    )
    options = parser.parse_args()

    if not Path(servers.ALERTMANAGER_BINARY).exists():
        sys.exit(f"ingest_bench: {servers.ALERTMANAGER_BINARY} not found; install Debian's prometheus-alertmanager")
    wrk = shutil.which("wrk") if options.wrk else None
    if options.wrk and wrk is None:
        sys.exit("ingest_bench: --wrk needs wrk on PATH; install Debian's wrk package")
    plan = QUICK if options.quick else FULL
    if options.runs:
        plan = dataclasses.replace(plan, runs=options.runs)

    load_before = f"{os.getloadavg()[0]:.2f}"
    with tempfile.TemporaryDirectory(prefix="irules-ingest-bench-") as scratch:
        throughput = measure_throughput(plan, Path(scratch) / "throughput", wrk)
        memory = measure_memory(plan, Path(scratch) / "memory")
    info = machine()
    context = {
        **info,
        "alertmanager": servers.version(),
        "load_before": load_before,
        "load_after": info["load"],
        "command": recorded_command(sys.argv[1:]),
    }
    text = report(plan, throughput, memory, context)
    print(text)
    if options.json:
        options.json.write_text(
            json.dumps({"throughput": throughput, "memory": memory, "context": context}, indent=2), encoding="utf-8"
        )
    if options.write:
        path = replace_section(REPO / "docs" / "benchmarks.md", "ingest", text)
        print(f"wrote the ingest section of {path.relative_to(REPO)}")


if __name__ == "__main__":
    main()
