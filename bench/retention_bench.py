"""Benchmark retention's payload purge on a large SQLite store, with and without the index on the events' payload id.

The script builds a store of N payloads with two applied events each, a tenth of
them older than the retention period. A copy of it loses `ix_alert_events_payload_id`,
as the schema was before migration 0008. Then it times purge batches of 500 payloads
on both. A batch holds SQLite's write lock for its whole time, and webhooks wait for it.

    python bench/retention_bench.py                  # 300,000 payloads
    python bench/retention_bench.py --payloads 20000 # smaller and faster
    python bench/retention_bench.py --write          # also rewrite its section of docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from docs_section import replace_section  # noqa: E402

from runtime.retention import _Cursor, _purge_payloads  # noqa: E402
from runtime.store import Store  # noqa: E402

EVENTS_PER_PAYLOAD = 2
BATCH = 500
OLD = "2026-01-01 00:00:00.000000"
NEW = "2026-12-01 00:00:00.000000"
BEFORE = datetime.datetime(2026, 6, 1, tzinfo=datetime.UTC)
# An alert of ten labels and a summary, about the size of an Alertmanager alert.
ALERT_TEXT = json.dumps(
    {"labels": {f"label_{number}": "value" * 4 for number in range(10)}, "annotations": {"summary": "s" * 200}}
)


def build(path: Path, count: int) -> None:
    """Create a store at `path` with `count` payloads and their applied events, the first tenth of them old."""
    Store.open(f"sqlite:///{path}").close()
    old_until = count // 10
    with sqlite3.connect(path) as connection:
        connection.executemany(
            "INSERT INTO payloads (id, source, kind, received_at, body, headers, alert_count, details)"
            " VALUES (?, 'alertmanager', 'alerts', ?, ?, '{}', ?, '{}')",
            ((number, OLD if number <= old_until else NEW, b"b" * 800, EVENTS_PER_PAYLOAD) for number in range(1, count + 1)),
        )
        connection.executemany(
            "INSERT INTO alert_events (payload_id, source, fingerprint, status, alert, received_at, processed_at, outcome)"
            " VALUES (?, 'alertmanager', 'f', 'firing', ?, ?, ?, 'added')",
            (
                (number, ALERT_TEXT, OLD if number <= old_until else NEW, NEW)
                for number in range(1, count + 1)
                for _ in range(EVENTS_PER_PAYLOAD)
            ),
        )


def time_batches(path: Path, batches: int) -> list[float]:
    """Run `batches` purge batches on the store at `path` and return the seconds of each."""
    store = Store.open(f"sqlite:///{path}")
    seconds = []
    cursor = _Cursor()
    try:
        for _ in range(batches):
            started = time.perf_counter()
            deleted, _more = _purge_payloads(store, BEFORE, BATCH, cursor)
            seconds.append(time.perf_counter() - started)
            assert deleted.get("payloads") == BATCH, deleted
    finally:
        store.close()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--payloads", type=int, default=300_000, help="payloads in the store (default 300,000)")
    parser.add_argument("--batches", type=int, default=3, help="purge batches timed per store (default 3)")
    parser.add_argument("--write", action="store_true", help="rewrite the retention section of docs/benchmarks.md")
    arguments = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        indexed = Path(scratch) / "indexed.db"
        print(f"building a store of {arguments.payloads:,} payloads", flush=True)
        build(indexed, arguments.payloads)
        size_mb = indexed.stat().st_size / 1e6
        unindexed = Path(scratch) / "unindexed.db"
        shutil.copy(indexed, unindexed)
        with sqlite3.connect(unindexed) as connection:
            connection.execute("DROP INDEX ix_alert_events_payload_id")
        results = {}
        for name, path in (("with the index", indexed), ("without the index", unindexed)):
            print(f"purging {arguments.batches} batches {name}", flush=True)
            results[name] = time_batches(path, arguments.batches)
            print(f"  median {statistics.median(results[name]) * 1000:,.0f} ms per batch", flush=True)

    with_index = statistics.median(results["with the index"])
    without_index = statistics.median(results["without the index"])
    lines = [
        "## Retention: purging old payloads",
        "",
        f"`bench/retention_bench.py` builds a SQLite store of {arguments.payloads:,} payloads ({size_mb:,.0f} MB) with"
        f" {EVENTS_PER_PAYLOAD} applied events each, a tenth of them past the retention period. It times"
        f" {arguments.batches} purge batches of {BATCH} payloads on that store and on a copy without"
        " `ix_alert_events_payload_id`, the schema before migration 0008. A batch holds SQLite's write lock, and"
        " webhooks wait for it.",
        "",
        "| store | median per batch (ms) | max (ms) | payloads purged per s |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name, seconds in results.items():
        median = statistics.median(seconds)
        lines.append(f"| {name} | {median * 1000:,.0f} | {max(seconds) * 1000:,.0f} | {BATCH / median:,.0f} |")
    lines += [
        "",
        f"- Without the index a batch takes {without_index / with_index:,.0f} times as long.",
        "",
        f"- CPU: {_cpu_model()}, {os.cpu_count()} cores; Python {platform.python_version()} on {platform.system()} {platform.release()}",
        f"- Load average over 1 minute, taken after the run: {os.getloadavg()[0]:.2f}",
        f"- Command: `python bench/retention_bench.py{' --payloads ' + str(arguments.payloads) if arguments.payloads != 300_000 else ''} --write`",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if arguments.write:
        path = replace_section(REPO / "docs" / "benchmarks.md", "retention", text)
        print(f"wrote the retention section of {path.relative_to(REPO)}")


def _cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "unknown"


if __name__ == "__main__":
    main()
