"""Similar incidents on a real store: an incident history built by the pipeline, people and runbook runs.

The history is written once per backend (SQLite and the machine's PostgreSQL)
and only read by the tests that share it. Alerts reach the store through the
real pipeline, people resolve and close incidents through `runtime.incidents`,
and runbook runs go through `runtime.runbooks.runs`.
"""

from __future__ import annotations

import datetime
import math
import uuid
from collections import Counter
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from compiler.api import compile_rules
from runtime import incidents as incident_ops
from runtime.alerts import Alert
from runtime.pipeline import Accepted, Pipeline, accept
from runtime.policy import Policy
from runtime.runbooks import runs
from runtime.sources.base import Inbound, Outcome
from runtime.store import Store, database_url
from runtime.store.schema import incidents
from runtime.triage import similar
from runtime.triage.similar import find_similar, incident_tokens, words
from tests.runtime.conftest import POSTGRES_URL

T0 = datetime.datetime(2026, 3, 1, 9, 0, tzinfo=datetime.UTC)
MINUTE = datetime.timedelta(minutes=1)
DAY = datetime.timedelta(days=1)

RULES = """
settings {
  incident_id_format "INC-{year}-{number:04d}"
}

receiver ops {
  webhook "http://127.0.0.1:9/ops"
}

service database {
  tier 1
  match service = "database"
}

service api {
  depends_on [database]
  tier 1
  match service = "api"
}

service storage {
  tier 0
  match service = "storage"
}

service ingress {
  tier 2
  match service = "ingress"
}

route {
  receiver ops
  group_by [alertname]
}

dedup {
  by [alertname, service, cluster, instance]
  window 5m
}

correlate by-service {
  by [alertname, service, cluster]
  window 10m
}

runbook db-pool "Database connection pool recovery" {
  step list_sessions {
    run ["psql", "--command=select 1"]
    read_only
  }
}

runbook db-failover "Database failover" {
  step promote {
    run ["pg_ctl", "promote"]
  }
}
"""

POOL = "connection pool of the orders database exhausted"


# ---------------------------------------------------------------- the history


def fire(at: datetime.datetime, name: str, summary: str, status: str = "firing", **labels: str) -> Accepted:
    alert = Alert(
        source="alertmanager",
        name=name,
        status=status,
        labels={"alertname": name, **labels},
        annotations={"summary": summary},
    )
    return Accepted("alertmanager", Inbound(b'{"test": true}', {}, at), Outcome("alertmanager", "alerts", [alert]))


def run_pipeline(store: Store, policy: Policy, *items: Accepted) -> None:
    accept(store, list(items))
    Pipeline(store, lambda: policy).process_pending()


def run_runbook(store: Store, policy: Policy, runbook_id: str, key: str, state: str, at: datetime.datetime) -> None:
    runbook = next(item for item in policy.ruleset.runbooks if item.id == runbook_id)
    with store.read() as connection:
        incident_id = incident_ops.get_row(connection, key)["id"]
    run_id = runs.start_run(store, runbook, incident_id=incident_id, values={}, trigger="manual", requested_by="alice", now=at)
    runs.finish_run(store, run_id, state, "test run", at + 2 * MINUTE)


def resolve(store: Store, key: str, actor: str, at: datetime.datetime, note: str | None = None, status: str = "resolved") -> None:
    incident_ops.update(store, key, incident_ops.Change(status=status, note=note), actor, at)


def write_history(store: Store, policy: Policy) -> None:
    """Write seven incidents: five ended, one still open, and the one the tests search from (INC-2026-0007)."""
    # 0001: the database pool of eu-1, resolved by alice while its alert still fired, after runbooks.
    run_pipeline(
        store, policy, fire(T0, "DatabaseConnectionsExhausted", POOL, service="database", cluster="eu-1", instance="db-1")
    )
    run_runbook(store, policy, "db-failover", "INC-2026-0001", "failed", T0 + 2 * MINUTE)
    run_runbook(store, policy, "db-pool", "INC-2026-0001", "succeeded", T0 + 5 * MINUTE)
    resolve(store, "INC-2026-0001", "alice", T0 + 20 * MINUTE, note="Raised max_connections to 400")

    # 0002: API latency in eu-1, resolved by the pipeline when its alert resolved.
    start = T0 + DAY
    latency = "p99 latency of the public API above 800 ms"
    labels = {"service": "api", "cluster": "eu-1", "instance": "api-1"}
    run_pipeline(store, policy, fire(start, "APIHighLatency", latency, **labels))
    run_pipeline(store, policy, fire(start + 30 * MINUTE, "APIHighLatency", latency, status="resolved", **labels))

    # 0003: a full disk in us-1, closed by bob without a note.
    start = T0 + 2 * DAY
    disk = "disk /var/lib/postgresql above 90%"
    run_pipeline(store, policy, fire(start, "DiskAlmostFull", disk, service="storage", cluster="us-1", instance="disk-7"))
    resolve(store, "INC-2026-0003", "bob", start + 120 * MINUTE, status="closed")

    # 0004: the database pool of us-1, two successful runs of one runbook, resolved by carol.
    start = T0 + 3 * DAY
    run_pipeline(
        store, policy, fire(start, "DatabaseConnectionsExhausted", POOL, service="database", cluster="us-1", instance="db-4")
    )
    run_runbook(store, policy, "db-pool", "INC-2026-0004", "succeeded", start + 5 * MINUTE)
    run_runbook(store, policy, "db-pool", "INC-2026-0004", "succeeded", start + 10 * MINUTE)
    resolve(store, "INC-2026-0004", "carol", start + 45 * MINUTE, note="Killed idle transactions")

    # 0005: an expiring certificate in eu-1, resolved by dave.
    start = T0 + 4 * DAY
    certificate = "TLS certificate of shop.example.com expires in 7 days"
    run_pipeline(
        store, policy, fire(start, "CertificateExpiring", certificate, service="ingress", cluster="eu-1", instance="lb-1")
    )
    resolve(store, "INC-2026-0005", "dave", start + 60 * MINUTE)

    # 0006: the database pool of eu-2, still open, so never a candidate.
    start = T0 + 5 * DAY
    run_pipeline(
        store, policy, fire(start, "DatabaseConnectionsExhausted", POOL, service="database", cluster="eu-2", instance="db-9")
    )

    # 0007: the database pool of eu-1 again, open: the incident the tests search from.
    start = T0 + 6 * DAY
    run_pipeline(
        store, policy, fire(start, "DatabaseConnectionsExhausted", POOL, service="database", cluster="eu-1", instance="db-2")
    )


@pytest.fixture(scope="module")
def policy(tmp_path_factory: pytest.TempPathFactory) -> Policy:
    folder = tmp_path_factory.mktemp("rules")
    (folder / "rules.irules").write_text(RULES)
    return Policy(compile_rules(folder))


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def history(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, policy: Policy) -> Iterator[Store]:
    """Return a store with the history of `write_history`, on a new SQLite file or a new PostgreSQL schema."""
    if request.param == "sqlite":
        store = Store.open(database_url(tmp_path_factory.mktemp("state")))
        try:
            write_history(store, policy)
            yield store
        finally:
            store.close()
        return
    schema = f"irules_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(POSTGRES_URL)
    with admin.begin() as connection:
        connection.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    store = Store.open(f"{POSTGRES_URL}?options=-csearch_path%3D{schema}")
    try:
        write_history(store, policy)
        yield store
    finally:
        store.close()
        with admin.begin() as connection:
            connection.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def search(store: Store, incident: int | str = "INC-2026-0007", **options: float) -> list[similar.SimilarIncident]:
    with store.read() as connection:
        return find_similar(connection, incident, **options)


# ---------------------------------------------------------------- tokens


def test_words_split_names_at_case_and_digits() -> None:
    assert words("APIHighLatency") == ["api", "high", "latency", "apihighlatency"]
    assert words("HTTP5xxErrors") == ["http", "xx", "errors", "http5xxerrors"]


def test_words_drop_single_characters() -> None:
    assert words("p99 of a disk_usage") == ["99", "p99", "of", "disk", "usage"]


def test_words_keep_non_ascii_runs_whole() -> None:
    assert words("Störung im Zahlungsdienst") == ["störung", "im", "zahlungsdienst"]


def test_words_read_at_most_max_text_characters() -> None:
    assert len(words("ab " * 10_000)) == similar.MAX_TEXT // 3 + 1


def test_incident_tokens_tag_fields() -> None:
    tokens = incident_tokens(
        "Disk full",
        ["storage", "storage"],
        ["DiskAlmostFull", "DiskAlmostFull"],
        [{"alertname": "DiskAlmostFull", "cluster": "us-1"}, {"cluster": "us-1", "__meta": "x"}],
    )
    assert tokens == [
        "disk",
        "full",
        "service=storage",
        "storage",
        "alert=diskalmostfull",
        "disk",
        "almost",
        "full",
        "diskalmostfull",
        "label:cluster=us-1",
        "us",
    ]


def test_incident_tokens_leave_out_long_label_values() -> None:
    tokens = incident_tokens("", [], [], [{"blob": "x" * (similar.MAX_LABEL_VALUE + 1), "zone": "a" * similar.MAX_LABEL_VALUE}])
    assert tokens == [f"label:zone={'a' * similar.MAX_LABEL_VALUE}", "a" * similar.MAX_LABEL_VALUE]


def test_incident_tokens_ignore_pattern_characters() -> None:
    tokens = incident_tokens("(a+)+$ {{ 7*7 }} $(reboot)", [], ["(x|y)*"], [{"path": "/var/.*"}])
    assert tokens == ["reboot", "alert=(x|y)*", "label:path=/var/.*", "var"]


# ---------------------------------------------------------------- ranking and scores


def test_ranking_for_repeat_of_pool_exhaustion(history: Store) -> None:
    found = search(history, k=10, min_score=0.0)
    assert [(entry.id, entry.score) for entry in found] == [
        ("INC-2026-0001", 0.9275),
        ("INC-2026-0004", 0.8568),
        ("INC-2026-0002", 0.066),
        ("INC-2026-0005", 0.0511),
        ("INC-2026-0003", 0.0),
    ]


def test_default_options_apply_min_score(history: Store) -> None:
    assert [entry.id for entry in search(history)] == ["INC-2026-0001", "INC-2026-0004"]


def test_min_score_filters(history: Store) -> None:
    assert [entry.id for entry in search(history, min_score=0.9)] == ["INC-2026-0001"]


def test_k_limits_results(history: Store) -> None:
    assert [entry.id for entry in search(history, k=1, min_score=0.0)] == ["INC-2026-0001"]


def test_zero_k_returns_nothing(history: Store) -> None:
    assert search(history, k=0) == []


def test_open_incidents_are_no_candidates(history: Store) -> None:
    found = {entry.id for entry in search(history, k=10, min_score=0.0)}
    assert "INC-2026-0006" not in found


def test_incident_itself_is_excluded_when_ended(history: Store) -> None:
    found = [entry.id for entry in search(history, "INC-2026-0001", k=10, min_score=0.0)]
    assert found == ["INC-2026-0004", "INC-2026-0002", "INC-2026-0005", "INC-2026-0003"]


def test_incident_found_by_number(history: Store) -> None:
    assert [entry.id for entry in search(history, 7)] == ["INC-2026-0001", "INC-2026-0004"]


def test_max_candidates_bounds_search_to_newest(history: Store) -> None:
    # The two newest ended incidents are 0005 and 0004; the best match, 0001, is older.
    found = search(history, k=10, min_score=0.0, max_candidates=2)
    assert [entry.id for entry in found] == ["INC-2026-0004", "INC-2026-0005"]


def test_unknown_incident_is_404(history: Store) -> None:
    with pytest.raises(incident_ops.IncidentError) as caught:
        search(history, "INC-2026-9999")
    assert caught.value.status == 404


def test_score_matches_tfidf_by_hand(history: Store, policy: Policy) -> None:
    """Recompute the score of 0004 with smooth IDF, sublinear TF and the L2 norm, without scikit-learn."""
    pool_labels = {"alertname": "DatabaseConnectionsExhausted", "service": "database"}
    title = f"DatabaseConnectionsExhausted: {POOL}"

    def document(title_text: str, service_name: str, alert_name: str, **labels: str) -> list[str]:
        correlation = {"cluster": labels["cluster"], "service": service_name}
        return incident_tokens(title_text, [service_name], [alert_name], [correlation, labels])

    query = document(title, "database", "DatabaseConnectionsExhausted", **pool_labels, cluster="eu-1", instance="db-2")
    corpus = [
        query,
        document("CertificateExpiring: TLS certificate of shop.example.com expires in 7 days", "ingress", "CertificateExpiring",
                 cluster="eu-1", instance="lb-1", service="ingress", alertname="CertificateExpiring"),
        document(title, "database", "DatabaseConnectionsExhausted", **pool_labels, cluster="us-1", instance="db-4"),
        document("DiskAlmostFull: disk /var/lib/postgresql above 90%", "storage", "DiskAlmostFull",
                 cluster="us-1", instance="disk-7", service="storage", alertname="DiskAlmostFull"),
        document("APIHighLatency: p99 latency of the public API above 800 ms", "api", "APIHighLatency",
                 cluster="eu-1", instance="api-1", service="api", alertname="APIHighLatency"),
        document(title, "database", "DatabaseConnectionsExhausted", **pool_labels, cluster="eu-1", instance="db-1"),
    ]  # fmt: skip
    frequency = Counter(token for tokens in corpus for token in set(tokens))

    def vector(tokens: list[str]) -> dict[str, float]:
        weights = {
            token: (1 + math.log(count)) * (math.log((1 + len(corpus)) / (1 + frequency[token])) + 1)
            for token, count in Counter(tokens).items()
        }
        norm = math.sqrt(sum(weight * weight for weight in weights.values()))
        return {token: weight / norm for token, weight in weights.items()}

    first, other = vector(query), vector(corpus[2])
    expected = sum(weight * other.get(token, 0.0) for token, weight in first.items())
    found = {entry.id: entry.score for entry in search(history, k=10, min_score=0.0)}
    assert found["INC-2026-0004"] == round(expected, 4)


# ---------------------------------------------------------------- how they ended


def test_resolution_by_person_with_note(history: Store) -> None:
    entry = search(history)[0]
    assert entry.id == "INC-2026-0001"
    assert entry.resolved_by == "alice"
    assert entry.resolution == "Raised max_connections to 400"
    assert entry.runbooks == ("db-pool",)
    assert entry.duration_s == 1200.0
    assert entry.status == "resolved"
    assert entry.services == ("database",)


def test_runbook_listed_once(history: Store) -> None:
    entry = search(history)[1]
    assert entry.id == "INC-2026-0004"
    assert entry.runbooks == ("db-pool",)
    assert entry.resolved_by == "carol"
    assert entry.resolution == "Killed idle transactions"
    assert entry.duration_s == 2700.0


def test_resolution_by_pipeline_names_irules(history: Store) -> None:
    entry = next(item for item in search(history, k=10, min_score=0.0) if item.id == "INC-2026-0002")
    assert entry.resolved_by == "irules"
    assert entry.resolution is None
    assert entry.runbooks == ()
    assert entry.duration_s == 1800.0


def test_closed_incident_names_who_closed_it(history: Store) -> None:
    entry = next(item for item in search(history, k=10, min_score=0.0) if item.id == "INC-2026-0003")
    assert entry.status == "closed"
    assert entry.resolved_by == "bob"
    assert entry.resolution is None
    assert entry.duration_s == 7200.0


def test_entry_json_shape(history: Store) -> None:
    document = search(history)[0].to_json()
    assert document == {
        "id": "INC-2026-0001",
        "number": 1,
        "title": f"DatabaseConnectionsExhausted: {POOL}",
        "score": 0.9275,
        "status": "resolved",
        "severity": None,
        "team": None,
        "services": ["database"],
        "created_at": "2026-03-01T09:00:00Z",
        "resolved_at": "2026-03-01T09:20:00Z",
        "duration_s": 1200.0,
        "resolved_by": "alice",
        "resolution": "Raised max_connections to 400",
        "runbooks": ["db-pool"],
    }


# ---------------------------------------------------------------- bounds, on a store of its own


def test_only_first_alerts_of_storm_are_read(store: Store, policy: Policy) -> None:
    count = similar.MAX_ALERTS_PER_INCIDENT + 5
    storm = [
        fire(T0 + index * datetime.timedelta(seconds=1), "NodeDown", "node unreachable", service="storage", cluster="eu-1",
             instance=f"node-{index:02d}")
        for index in range(count)
    ]  # fmt: skip
    run_pipeline(store, policy, *storm)
    with store.read() as connection:
        found = similar._alerts_where(connection, sa.true())
    assert list(found) == [1]
    instances = [alert["labels"]["instance"] for alert in found[1]]
    assert sorted(instances) == [f"node-{index:02d}" for index in range(similar.MAX_ALERTS_PER_INCIDENT)]


def test_no_ended_incidents_finds_nothing(store: Store, policy: Policy) -> None:
    run_pipeline(store, policy, fire(T0, "DiskAlmostFull", "disk full", service="storage", cluster="eu-1", instance="disk-1"))
    assert search(store, "INC-2026-0001", min_score=0.0) == []


def test_incident_without_tokens_finds_nothing(store: Store, policy: Policy) -> None:
    run_pipeline(store, policy, fire(T0, "DiskAlmostFull", "disk full", service="storage", cluster="eu-1", instance="disk-1"))
    resolve(store, "INC-2026-0001", "alice", T0 + MINUTE)
    blank = incident_ops.create(
        store, "INC-{year}-{number:04d}", T0, title="?", severity=None, services=[], team=None, actor="alice"
    )
    with store.read() as connection:
        assert connection.execute(sa.select(incidents.c.title).where(incidents.c.key == blank["key"])).scalar_one() == "?"
    assert search(store, blank["key"], min_score=0.0) == []


# ---------------------------------------------------------------- the token cache


def test_cache_is_bounded(history: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    expected = [(entry.id, entry.score) for entry in search(history, k=10, min_score=0.0)]
    monkeypatch.setattr(similar, "MAX_CACHED", 2)
    found = [(entry.id, entry.score) for entry in search(history, k=10, min_score=0.0)]
    assert found == expected
    assert len(similar._TOKEN_CACHE[history.engine]) == 2


def test_cached_search_equals_fresh_search(history: Store) -> None:
    search(history, k=10, min_score=0.0)
    cached = [(entry.id, entry.score) for entry in search(history, k=10, min_score=0.0)]
    similar._TOKEN_CACHE.pop(history.engine, None)
    fresh = [(entry.id, entry.score) for entry in search(history, k=10, min_score=0.0)]
    assert cached == fresh


def test_incident_ended_again_is_read_again(store: Store, policy: Policy) -> None:
    run_pipeline(store, policy, fire(T0, "DiskAlmostFull", "disk full", service="storage", cluster="eu-1", instance="disk-1"))
    resolve(store, "INC-2026-0001", "alice", T0 + MINUTE)
    query = fire(T0 + 2 * MINUTE, "NodeDown", "node unreachable", service="storage", cluster="eu-1", instance="node-1")
    run_pipeline(store, policy, query)
    before = search(store, "INC-2026-0002", min_score=0.0)[0].score

    # Reopened, 0001 takes an alert from node-1 that correlates into it, and is resolved again.
    resolve(store, "INC-2026-0001", "alice", T0 + 3 * MINUTE, status="investigating")
    joining = fire(T0 + 4 * MINUTE, "DiskAlmostFull", "disk full", service="storage", cluster="eu-1", instance="node-1")
    run_pipeline(store, policy, joining)
    resolve(store, "INC-2026-0001", "alice", T0 + 5 * MINUTE)
    after = search(store, "INC-2026-0002", min_score=0.0)[0].score
    similar._TOKEN_CACHE.pop(store.engine, None)
    fresh = search(store, "INC-2026-0002", min_score=0.0)[0].score

    assert after > before
    assert after == fresh


def test_candidate_without_tokens_scores_zero(store: Store, policy: Policy) -> None:
    blank = incident_ops.create(
        store, "INC-{year}-{number:04d}", T0, title="?", severity=None, services=[], team=None, actor="bob"
    )
    resolve(store, blank["key"], "bob", T0 + MINUTE)
    run_pipeline(store, policy, fire(T0, "DiskAlmostFull", "disk full", service="storage", cluster="eu-1", instance="disk-1"))
    found = search(store, "INC-2026-0002", min_score=0.0)
    assert [(entry.id, entry.score) for entry in found] == [("INC-2026-0001", 0.0)]
