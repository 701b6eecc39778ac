"""Impact analysis on a service graph written for these tests: blast radius, likely causes, scores, the store.

The graph, with an arrow from a service to what it depends on (tiers in brackets)::

    admin[4] -> web[1] ---> api[1] -> database[1] -> storage[0]
                mobile[1] -^      \\-> cache[2]       ^
    reports[-] -> worker[3] -> queue[2] -------------/
                       \\-----------> database

    ci[3] has no dependencies and no dependents.
"""

from __future__ import annotations

import datetime
import json

import pytest
import sqlalchemy as sa

from compiler.api import compile_rules
from runtime.incidents import open_incident
from runtime.policy import Policy
from runtime.store import Store
from runtime.store.schema import alerts
from runtime.triage import impact
from runtime.triage.impact import Affected, Cause, Impact, ServiceGraph, analyse, analyse_incident, recent_alert_count

T0 = datetime.datetime(2026, 3, 8, 10, 0, tzinfo=datetime.UTC)

RULES = """
receiver ops {
  webhook "http://127.0.0.1:9/ops"
}

team platform {
  webhook "http://127.0.0.1:9/platform"
}

service storage {
  team platform
  tier 0
}

service database {
  team platform
  depends_on [storage]
  tier 1
}

service cache {
  tier 2
}

service queue {
  depends_on [storage]
  tier 2
}

service api {
  depends_on [database, cache]
  tier 1
}

service worker {
  depends_on [queue, database]
  tier 3
}

service web {
  depends_on [api]
  tier 1
}

service mobile {
  depends_on [api]
  tier 1
}

service reports {
  depends_on [worker]
}

service admin {
  depends_on [web]
  tier 4
}

service ci {
  tier 3
}

route {
  receiver ops
}
"""


@pytest.fixture(scope="module")
def policy(tmp_path_factory: pytest.TempPathFactory) -> Policy:
    folder = tmp_path_factory.mktemp("rules")
    (folder / "rules.irules").write_text(RULES)
    return Policy(compile_rules(folder))


def affected_of(result: Impact) -> list[tuple[str, int, int | None]]:
    return [(item.service, item.distance, item.tier) for item in result.affected]


def causes_of(result: Impact) -> list[tuple[str, tuple[str, ...], bool, int]]:
    return [(cause.service, cause.explains, cause.alerting, cause.depth) for cause in result.causes]


# ---------------------------------------------------------------- the graph


def test_graph_edges_point_to_dependencies(policy: Policy) -> None:
    graph = ServiceGraph.of(policy).graph
    assert sorted(graph.successors("api")) == ["cache", "database"]
    assert sorted(graph.predecessors("api")) == ["mobile", "web"]
    assert graph.number_of_nodes() == 11
    assert graph.number_of_edges() == 10


def test_graph_of_policy_is_built_once(policy: Policy) -> None:
    assert ServiceGraph.of(policy) is ServiceGraph.of(policy)


def test_dependents_and_dependencies_with_distance(policy: Policy) -> None:
    graph = ServiceGraph.of(policy)
    assert graph.dependents("database") == {"api": 1, "worker": 1, "web": 2, "mobile": 2, "reports": 2, "admin": 3}
    assert graph.dependencies("worker") == {"queue": 1, "database": 1, "storage": 2}
    assert graph.dependents("nowhere") == {}


def test_undeclared_dependency_becomes_untiered_node() -> None:
    from compiler import ir

    graph = ServiceGraph([ir.Service(name="api", depends_on=["billing"], tier=1)])
    assert graph.dependencies("api") == {"billing": 1}
    assert graph.knows("api")
    assert not graph.knows("billing")
    assert graph.tier("billing") is None


# ---------------------------------------------------------------- blast radius


def test_blast_radius_of_database(policy: Policy) -> None:
    result = analyse(policy, ["database"], "critical")
    assert affected_of(result) == [
        ("database", 0, 1),
        ("api", 1, 1),
        ("worker", 1, 3),
        ("mobile", 2, 1),
        ("web", 2, 1),
        ("reports", 2, None),
        ("admin", 3, 4),
    ]
    assert result.user_facing == ("database", "api", "mobile", "web")


def test_blast_radius_of_storage(policy: Policy) -> None:
    result = analyse(policy, ["storage"], "critical")
    assert affected_of(result) == [
        ("storage", 0, 0),
        ("database", 1, 1),
        ("queue", 1, 2),
        ("api", 2, 1),
        ("worker", 2, 3),
        ("mobile", 3, 1),
        ("web", 3, 1),
        ("reports", 3, None),
        ("admin", 4, 4),
    ]


def test_blast_radius_keeps_smallest_distance(policy: Policy) -> None:
    result = analyse(policy, ["cache", "database"], "high")
    by_name = {item.service: item for item in result.affected}
    assert by_name["api"] == Affected("api", 1, 1, None, False, ("cache", "database"))
    assert by_name["worker"] == Affected("worker", 1, 3, None, False, ("database",))
    assert by_name["database"] == Affected("database", 0, 1, "platform", True, ("database",))


def test_blast_radius_of_isolated_service_is_itself(policy: Policy) -> None:
    result = analyse(policy, ["ci"], "low")
    assert affected_of(result) == [("ci", 0, 3)]
    assert result.user_facing == ()


def test_unknown_service_counts_untiered(policy: Policy) -> None:
    result = analyse(policy, ["api", "billing"], "high")
    assert result.unknown == ("billing",)
    assert affected_of(result) == [("api", 0, 1), ("billing", 0, None), ("mobile", 1, 1), ("web", 1, 1), ("admin", 2, 4)]


def test_repeated_service_names_count_once(policy: Policy) -> None:
    result = analyse(policy, ["api", "", "api"], "high")
    assert result.alerting == ("api",)


# ---------------------------------------------------------------- likely causes


def test_silent_common_dependency_ranks_first(policy: Policy) -> None:
    result = analyse(policy, ["web", "mobile", "worker"], "high", max_causes=10)
    assert causes_of(result) == [
        ("database", ("mobile", "web", "worker"), False, 2),
        ("storage", ("mobile", "web", "worker"), False, 3),
        ("api", ("mobile", "web"), False, 1),
        ("cache", ("mobile", "web"), False, 2),
        ("mobile", ("mobile",), True, 0),
        ("web", ("web",), True, 0),
        ("worker", ("worker",), True, 0),
        ("queue", ("worker",), False, 1),
    ]
    assert result.likely_cause == "database"


def test_alerting_common_dependency_ranks_first(policy: Policy) -> None:
    result = analyse(policy, ["web", "api", "database"], "critical", max_causes=10)
    assert causes_of(result) == [
        ("database", ("api", "database", "web"), True, 2),
        ("storage", ("api", "database", "web"), False, 3),
        ("api", ("api", "web"), True, 1),
        ("cache", ("api", "web"), False, 2),
        ("web", ("web",), True, 0),
    ]


def test_single_alert_ranks_itself_first(policy: Policy) -> None:
    result = analyse(policy, ["api"], "high")
    assert [cause.service for cause in result.causes] == ["api", "database", "cache", "storage"]


def test_causes_are_cut_to_max_causes(policy: Policy) -> None:
    result = analyse(policy, ["web", "mobile", "worker"], "high")
    assert [cause.service for cause in result.causes] == ["database", "storage", "api", "cache", "mobile"]


def test_cause_records_hops(policy: Policy) -> None:
    result = analyse(policy, ["web", "mobile", "worker"], "high")
    assert result.causes[0] == Cause("database", ("mobile", "web", "worker"), False, 2, 5, 1, "platform")


def test_no_alerting_service_gives_empty_result(policy: Policy) -> None:
    result = analyse(policy, [], None)
    assert result.affected == ()
    assert result.causes == ()
    assert result.likely_cause is None
    assert result.impact == 0
    assert result.urgency == 20


# ---------------------------------------------------------------- scores


def test_impact_of_lone_service_is_tier_weight(policy: Policy) -> None:
    assert analyse(policy, ["ci"], "low").impact == 20
    assert analyse(policy, ["billing"], "low").impact == 20


def test_impact_of_database_by_formula(policy: Policy) -> None:
    # database 0.7, api 0.35, worker 0.1, mobile and web 0.175 each, reports 0.05, admin 0.0125:
    # 1 - 0.3 * 0.65 * 0.9 * 0.825 * 0.825 * 0.95 * 0.9875 = 0.8879
    assert analyse(policy, ["database"], "critical").impact == 89


def test_impact_of_storage_by_formula(policy: Policy) -> None:
    # storage 0.9, database 0.35, queue 0.2, api 0.175, worker 0.05, mobile and web 0.0875 each,
    # reports 0.025, admin 0.00625: 1 - 0.1 * 0.65 * 0.8 * 0.825 * 0.95 * 0.9125**2 * 0.975 * 0.99375 = 0.9682
    assert analyse(policy, ["storage"], "critical").impact == 97


def test_impact_grows_with_affected_services(policy: Policy) -> None:
    # api 0.7, mobile and web 0.35 each, admin 0.025: 1 - 0.3 * 0.65**2 * 0.975 = 0.8764
    alone = analyse(policy, ["api"], "high").impact
    # and worker 0.2, reports 0.1: 1 - 0.12358 * 0.8 * 0.9 = 0.9110
    together = analyse(policy, ["api", "worker"], "high").impact
    assert alone == 88
    assert together == 91


def test_urgency_by_formula(policy: Policy) -> None:
    # 0.5 * 1.0 + 0.3 * 0.89 + 0.2 * 3 / 5 = 0.887
    result = analyse(policy, ["database"], "critical", recent_alerts=3)
    assert result.urgency == 89
    assert result.factors == impact.Urgency(severity=1.0, impact=0.89, spread=0.6)


def test_urgency_rounds_half_up(policy: Policy) -> None:
    # 0.5 * 0.15 + 0.3 * 0.2 + 0 = 0.135
    assert analyse(policy, ["ci"], "low").urgency == 14


def test_urgency_spread_saturates(policy: Policy) -> None:
    five = analyse(policy, ["ci"], "low", recent_alerts=5)
    many = analyse(policy, ["ci"], "low", recent_alerts=500)
    assert five.urgency == many.urgency == 34
    assert many.factors.spread == 1.0


def test_urgency_rises_with_spread(policy: Policy) -> None:
    # 0.5 * 0.4 + 0.3 * 0.88 = 0.464, and 0.2 * 2 / 5 = 0.08 more with two recent alerts
    quiet = analyse(policy, ["api"], "medium", recent_alerts=0).urgency
    spreading = analyse(policy, ["api"], "medium", recent_alerts=2).urgency
    assert quiet == 46
    assert spreading == 54


def test_unknown_severity_weighs_as_medium(policy: Policy) -> None:
    assert analyse(policy, ["api"], None).urgency == analyse(policy, ["api"], "medium").urgency
    assert analyse(policy, ["api"], "page-everyone").factors.severity == impact.UNKNOWN_SEVERITY_WEIGHT


@pytest.mark.parametrize("severity", ["critical", "high", "medium", "low", None])
@pytest.mark.parametrize("services", [["ci"], ["storage"], ["web", "mobile", "worker"], ["billing", "database"]])
def test_scores_stay_within_bounds(policy: Policy, severity: str | None, services: list[str]) -> None:
    for recent in (0, 1, 10_000):
        result = analyse(policy, services, severity, recent_alerts=recent)
        assert 0 <= result.impact <= 100
        assert 0 <= result.urgency <= 100


# ---------------------------------------------------------------- inputs and outputs


def test_policy_ruleset_and_graph_give_same_result(policy: Policy) -> None:
    from_policy = analyse(policy, ["web", "worker"], "high", recent_alerts=1)
    from_ruleset = analyse(policy.ruleset, ["web", "worker"], "high", recent_alerts=1)
    from_graph = analyse(ServiceGraph(policy.ruleset.services), ["web", "worker"], "high", recent_alerts=1)
    assert from_policy == from_ruleset
    assert from_policy == from_graph


def test_json_round_trip(policy: Policy) -> None:
    result = analyse(policy, ["web", "mobile", "worker", "billing"], "critical", recent_alerts=2)
    document = json.loads(json.dumps(result.to_json()))
    assert Impact.from_json(document) == result


def test_json_shape(policy: Policy) -> None:
    # Impact: api and web 0.7 each, mobile 0.35, admin 0.05: 1 - 0.3 * 0.3 * 0.65 * 0.95 = 0.9444.
    # Urgency: 0.5 * 0.7 + 0.3 * 0.94 + 0.2 * 2 / 5 = 0.712.
    document = analyse(policy, ["api", "web"], "high", recent_alerts=2).to_json()
    assert document == {
        "method": "impact-v1",
        "alerting": ["api", "web"],
        "severity": "high",
        "impact": 94,
        "urgency": 71,
        "factors": {"severity": 0.7, "impact": 0.94, "spread": 0.4},
        "recent_alerts": 2,
        "spread_window_s": 600.0,
        "affected": [
            {"service": "api", "distance": 0, "tier": 1, "team": None, "alerting": True, "via": ["api"]},
            {"service": "web", "distance": 0, "tier": 1, "team": None, "alerting": True, "via": ["web"]},
            {"service": "mobile", "distance": 1, "tier": 1, "team": None, "alerting": False, "via": ["api"]},
            {"service": "admin", "distance": 1, "tier": 4, "team": None, "alerting": False, "via": ["web"]},
        ],
        "user_facing": ["api", "web", "mobile"],
        "causes": [
            {
                "service": "api",
                "explains": ["api", "web"],
                "alerting": True,
                "depth": 1,
                "total_distance": 1,
                "tier": 1,
                "team": None,
            },
            {
                "service": "database",
                "explains": ["api", "web"],
                "alerting": False,
                "depth": 2,
                "total_distance": 3,
                "tier": 1,
                "team": "platform",
            },
            {
                "service": "cache",
                "explains": ["api", "web"],
                "alerting": False,
                "depth": 2,
                "total_distance": 3,
                "tier": 2,
                "team": None,
            },
            {
                "service": "storage",
                "explains": ["api", "web"],
                "alerting": False,
                "depth": 3,
                "total_distance": 5,
                "tier": 0,
                "team": "platform",
            },
            {
                "service": "web",
                "explains": ["web"],
                "alerting": True,
                "depth": 0,
                "total_distance": 0,
                "tier": 1,
                "team": None,
            },
        ],
        "unknown": [],
    }


def test_summary_line(policy: Policy) -> None:
    # Impact: web and mobile 0.7 each, worker 0.2, reports 0.1, admin 0.05: 1 - 0.09 * 0.8 * 0.9 * 0.95 = 0.9384.
    result = analyse(policy, ["web", "mobile", "worker"], "high", recent_alerts=1)
    assert result.summary() == (
        "Impact 94/100, urgency 67/100: 5 services affected (user-facing: mobile, web); likely cause: database"
    )


def test_summary_of_one_service(policy: Policy) -> None:
    assert analyse(policy, ["ci"], "low").summary() == "Impact 20/100, urgency 14/100: 1 service affected; likely cause: ci"


# ---------------------------------------------------------------- from the store


def add_alert(connection: sa.Connection, incident_id: int, key: str, service: str, first_seen: datetime.datetime) -> None:
    """Insert an alert row as the pipeline writes it, belonging to `incident_id`."""
    connection.execute(
        alerts.insert().values(
            key=key,
            fingerprint=key,
            source="alertmanager",
            name="ServiceDown",
            status="firing",
            labels={"alertname": "ServiceDown", "service": service},
            annotations={},
            starts_at=first_seen,
            first_seen=first_seen,
            last_seen=first_seen,
            occurrences=1,
            severity="critical",
            receivers=["ops"],
            incident_id=incident_id,
            transitions=[],
            flapping=False,
        )
    )


def open_with_alerts(store: Store, services: list[str], seen: list[datetime.datetime]) -> dict:
    with store.write() as connection:
        incident = open_incident(
            connection,
            store,
            "INC-{year}-{number:04d}",
            seen[0],
            title="Services down",
            severity="critical",
            severity_source="rule",
            team=None,
            services=services,
            receivers=["ops"],
            correlation="test",
            correlation_rule=None,
            labels={},
            actor="source:alertmanager",
        )
        for index, moment in enumerate(seen):
            add_alert(connection, incident["id"], f"alert-{index}", services[index % len(services)], moment)
    return incident


def test_recent_alert_count_reads_window(store: Store) -> None:
    minute = datetime.timedelta(minutes=1)
    # The alert at 10:16 comes after `now` and counts in no window; the one at 10:05 is on the edge of the default window.
    seen = [T0, T0 + 5 * minute, T0 + 12 * minute, T0 + 14 * minute, T0 + 15 * minute, T0 + 16 * minute]
    incident = open_with_alerts(store, ["database", "api"], seen)
    now = T0 + 15 * minute
    with store.read() as connection:
        assert recent_alert_count(connection, incident["id"], now) == 4
        assert recent_alert_count(connection, incident["id"], now, window_s=120) == 2
        assert recent_alert_count(connection, incident["id"] + 1, now) == 0


def test_analyse_incident_reads_store(store: Store, policy: Policy) -> None:
    minute = datetime.timedelta(minutes=1)
    incident = open_with_alerts(store, ["database", "api"], [T0, T0 + 9 * minute, T0 + 10 * minute])
    with store.read() as connection:
        result = analyse_incident(connection, policy, incident, T0 + 10 * minute)
    assert result.alerting == ("database", "api")
    assert result.severity == "critical"
    assert result.recent_alerts == 3
    assert result.likely_cause == "database"
    assert result == analyse(policy, ["database", "api"], "critical", recent_alerts=3)


def test_impact_json_fits_incident_column(store: Store, policy: Policy) -> None:
    from runtime.store.schema import incidents

    incident = open_with_alerts(store, ["storage"], [T0])
    with store.read() as connection:
        result = analyse_incident(connection, policy, incident, T0)
    with store.write() as connection:
        connection.execute(incidents.update().where(incidents.c.id == incident["id"]).values(impact=result.to_json()))
    with store.read() as connection:
        stored = connection.execute(sa.select(incidents.c.impact).where(incidents.c.id == incident["id"])).scalar_one()
    assert Impact.from_json(stored) == result
