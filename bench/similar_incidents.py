"""Benchmark similar-incident retrieval: the time of `find_similar` over a store of 10,000 ended incidents.

The script writes a history into a new SQLite file, or into a new schema of
the PostgreSQL database given with `--database`. It then times `find_similar`
for a set of open incidents. Each is searched with `max_candidates` at the
default (1,000) and at the whole history, once with the token cache emptied
before each search (cold) and once with it kept (warm). It prints the best,
median and maximum time per search. It also prints the time of each phase of a cold whole-history search:
reading the candidates' numbers, reading their rows and alerts to build their
tokens, taking the same tokens from the cache, and TF-IDF with cosine
similarity.

The history is drawn from a fixed seed: 40 alert names, 30 services, 6
clusters and 1 to 5 alerts per incident with `service`, `cluster`,
`instance` and `namespace` labels. Incidents open through
`runtime.incidents.open_incident`. Alerts, resolutions on the timeline and
runbook runs are bulk-inserted rows of the shape that the pipeline,
`runtime.incidents.update` and the runbook runner write.

Usage:
    python bench/similar_incidents.py                      # 10,000 incidents in SQLite, 20 searches
    python bench/similar_incidents.py --incidents 2000 --searches 5
    python bench/similar_incidents.py --database postgresql+psycopg://postgres@127.0.0.1:5432/test
"""

from __future__ import annotations

import argparse
import datetime
import random
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import sqlalchemy as sa  # noqa: E402

from runtime.incidents import get_row, open_incident  # noqa: E402
from runtime.store import Store, database_url  # noqa: E402
from runtime.store.schema import alerts, incidents, runbook_runs, timeline  # noqa: E402
from runtime.triage import similar  # noqa: E402

SEED = 20260308
T0 = datetime.datetime(2025, 1, 1, tzinfo=datetime.UTC)
SUBJECTS = ["Pod", "Node", "Disk", "Memory", "CPU", "Latency", "Error", "Queue", "Replica", "Certificate"]
CONDITIONS = ["High", "Down", "Full", "Saturated", "Restarting", "Lagging", "Expiring", "Missing"]
ALERT_NAMES = sorted({f"{subject}{condition}" for subject in SUBJECTS for condition in CONDITIONS})[:40]
SERVICES = [f"service-{index:02d}" for index in range(30)]
CLUSTERS = ["eu-1", "eu-2", "us-1", "us-2", "ap-1", "ap-2"]
SUMMARIES = [
    "{service} in {cluster} crossed its threshold for 10 minutes",
    "p99 latency of {service} above 800 ms in {cluster}",
    "{service} pods restarting in {cluster}",
    "disk of {service} above 90% in {cluster}",
    "error rate of {service} above 5% in {cluster}",
]
PEOPLE = ["alice", "bob", "carol", "dave", "erin", "irules"]
RUNBOOKS = ["restart-pods", "scale-out", "rollback", "failover", "clear-queue"]
INSERT_BATCH = 1000


def write_history(store: Store, count: int, rng: random.Random) -> None:
    """Write `count` ended incidents with alerts, a status change to resolved each, and runbook runs on a third."""
    for start in range(0, count, INSERT_BATCH):
        with store.write() as connection:
            alert_rows, ending_rows, run_rows = [], [], []
            for number in range(start, min(start + INSERT_BATCH, count)):
                alert_rows_of, ending, runs = _incident(connection, store, number, rng)
                alert_rows.extend(alert_rows_of)
                ending_rows.append(ending)
                run_rows.extend(runs)
            connection.execute(alerts.insert(), alert_rows)
            connection.execute(timeline.insert(), ending_rows)
            if run_rows:
                connection.execute(runbook_runs.insert(), run_rows)


def _incident(connection: sa.Connection, store: Store, number: int, rng: random.Random) -> tuple[list, dict, list]:
    """Open incident `number` as resolved, and return its alert rows, its status change and its runbook runs."""
    opened_at = T0 + datetime.timedelta(minutes=47 * number)
    name = rng.choice(ALERT_NAMES)
    service = rng.choice(SERVICES)
    cluster = rng.choice(CLUSTERS)
    summary = rng.choice(SUMMARIES).format(service=service, cluster=cluster)
    row = open_incident(
        connection,
        store,
        "INC-{year}-{number:05d}",
        opened_at,
        title=f"{name}: {summary}",
        severity=rng.choice(["critical", "high", "medium", "low"]),
        severity_source="rule",
        team=f"team-{SERVICES.index(service) % 6}",
        services=[service],
        receivers=["ops"],
        correlation=f"by-service:alertname={name},cluster={cluster},service={service}",
        correlation_rule="by-service",
        labels={"alertname": name, "cluster": cluster, "service": service},
        actor="source:alertmanager",
    )

    resolved_at = opened_at + datetime.timedelta(minutes=rng.randint(5, 240))
    connection.execute(incidents.update().where(incidents.c.id == row["id"]).values(status="resolved", resolved_at=resolved_at))
    alert_rows = [
        _alert(row["id"], f"{number}-{index}", name, service, cluster, opened_at, rng) for index in range(rng.randint(1, 5))
    ]
    runs = [_run(row["id"], opened_at, resolved_at, rng)] if number % 3 == 0 else []
    return alert_rows, _ending(row["id"], resolved_at, rng), runs


def _ending(incident_id: int, resolved_at: datetime.datetime, rng: random.Random) -> dict:
    """Return the timeline entry of a resolution by a person, with or without a note, or by the pipeline."""
    actor = rng.choice(PEOPLE)
    if actor == "irules":
        message = "Resolved: every alert resolved"
    else:
        note = rng.choice(["", "Restarted the pods", "Rolled back the release", "Added capacity"])
        message = "Status changed from investigating to resolved" + (f": {note}" if note else "")
    return {
        "incident_id": incident_id,
        "at": resolved_at,
        "kind": "incident.status",
        "actor": actor,
        "message": message,
        "data": {"from": "investigating", "to": "resolved", "firing": 0},
    }


def _run(incident_id: int, started_at: datetime.datetime, finished_at: datetime.datetime, rng: random.Random) -> dict:
    return {
        "runbook_id": rng.choice(RUNBOOKS),
        "incident_id": incident_id,
        "status": rng.choice(["succeeded", "succeeded", "failed"]),
        "trigger": "manual",
        "requested_by": "alice",
        "values": {},
        "created_at": started_at,
        "finished_at": finished_at,
    }


def _alert(incident_id: int, key: str, name: str, service: str, cluster: str, at: datetime.datetime, rng: random.Random) -> dict:
    labels = {
        "alertname": name,
        "service": service,
        "cluster": cluster,
        "instance": f"{service}-{rng.randint(0, 40)}:9100",
        "namespace": f"ns-{rng.randint(0, 12)}",
    }
    return {
        "key": key,
        "fingerprint": key,
        "source": "alertmanager",
        "name": name,
        "status": "resolved",
        "labels": labels,
        "annotations": {},
        "starts_at": at,
        "first_seen": at,
        "last_seen": at,
        "resolved_at": at,
        "occurrences": 1,
        "severity": None,
        "receivers": ["ops"],
        "incident_id": incident_id,
        "transitions": [],
        "flapping": False,
    }


def open_queries(store: Store, first: int, count: int, rng: random.Random) -> list[int]:
    """Open `count` new incidents after the `first` written ones to search from, and return their numbers."""
    numbers = []
    with store.write() as connection:
        for number in range(first, first + count):
            alert_rows, _ending, _runs = _incident(connection, store, number, rng)
            incident_id = alert_rows[0]["incident_id"]
            connection.execute(
                incidents.update().where(incidents.c.id == incident_id).values(status="detected", resolved_at=None)
            )
            connection.execute(alerts.insert(), alert_rows)
            numbers.append(incident_id)
    return numbers


def time_searches(store: Store, queries: list[int], max_candidates: int, *, cold: bool) -> list[float]:
    """Return the seconds of each search; with `cold`, the token cache is emptied before each one."""
    durations = []
    for incident_id in queries:
        if cold:
            similar._TOKEN_CACHE.clear()
        with store.read() as connection:
            began = time.perf_counter()
            similar.find_similar(connection, incident_id, max_candidates=max_candidates)
            durations.append(time.perf_counter() - began)
    return durations


def time_phases(store: Store, incident_id: int, max_candidates: int) -> dict[str, float]:
    """Return the seconds of each phase of one search with an empty cache, run step by step as `find_similar` runs them."""
    similar._TOKEN_CACHE.clear()
    phases: dict[str, float] = {}
    with store.read() as connection:
        began = time.perf_counter()
        row = get_row(connection, str(incident_id))
        own = similar._alerts_where(connection, alerts.c.incident_id == row["id"])
        query_tokens = similar._tokens_of(row, own.get(row["id"], []))
        mark = time.perf_counter()
        candidates = connection.execute(similar._candidate_keys(row["id"], max_candidates)).all()
        phases["candidate keys"] = time.perf_counter() - mark
        mark = time.perf_counter()
        similar.candidate_tokens(connection, candidates)
        phases["tokens, cold"] = time.perf_counter() - mark
        mark = time.perf_counter()
        documents = [query_tokens, *similar.candidate_tokens(connection, candidates)]
        phases["tokens, cached"] = time.perf_counter() - mark
        mark = time.perf_counter()
        similar._scores(documents)
        phases["tf-idf and cosine"] = time.perf_counter() - mark
        phases["total, cold"] = time.perf_counter() - began - phases["tokens, cached"]
    return phases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--incidents", type=int, default=10_000, help="number of ended incidents to write (default 10,000)")
    parser.add_argument("--searches", type=int, default=20, help="number of open incidents searched from (default 20)")
    parser.add_argument("--database", help="a PostgreSQL URL; the script works in a new schema and drops it afterwards")
    arguments = parser.parse_args()

    rng = random.Random(SEED)
    with tempfile.TemporaryDirectory() as folder:
        if arguments.database:
            schema = f"irules_bench_{uuid.uuid4().hex[:12]}"
            admin = sa.create_engine(database_url(url=arguments.database))
            with admin.begin() as connection:
                connection.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
            url = f"{database_url(url=arguments.database)}?options=-csearch_path%3D{schema}"
        else:
            admin, schema, url = None, None, database_url(Path(folder))
        store = Store.open(url)
        try:
            run(store, arguments, rng)
        finally:
            store.close()
            if admin is not None:
                with admin.begin() as connection:
                    connection.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
                admin.dispose()


def run(store: Store, arguments: argparse.Namespace, rng: random.Random) -> None:
    began = time.perf_counter()
    write_history(store, arguments.incidents, rng)
    queries = open_queries(store, arguments.incidents, arguments.searches, rng)
    print(
        f"backend {store.engine.dialect.name}: wrote {arguments.incidents:,} ended incidents in {time.perf_counter() - began:.1f} s"
    )

    # One unmeasured search warms the connection pool, the statement cache and scikit-learn's imports.
    time_searches(store, queries[:1], similar.MAX_CANDIDATES, cold=True)
    print(f"\n{'max_candidates':>14}  {'cache':>6}  {'searches':>8}  {'best ms':>8}  {'median ms':>9}  {'max ms':>7}")
    for limit in sorted({similar.MAX_CANDIDATES, arguments.incidents}):
        for cold in (True, False):
            durations = time_searches(store, queries, limit, cold=cold)
            print(
                f"{limit:>14,}  {'cold' if cold else 'warm':>6}  {len(durations):>8}  {min(durations) * 1000:>8.1f}  "
                f"{statistics.median(durations) * 1000:>9.1f}  {max(durations) * 1000:>7.1f}"
            )

    print(f"\nphases of one search over {arguments.incidents:,} candidates, median of {len(queries)} searches:")
    samples = [time_phases(store, incident_id, arguments.incidents) for incident_id in queries]
    for phase in samples[0]:
        print(f"  {phase:<18} {statistics.median(sample[phase] for sample in samples) * 1000:8.1f} ms")


if __name__ == "__main__":
    main()
