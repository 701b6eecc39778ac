"""Impact analysis: which services an incident reaches, which service likely caused it, and how urgent it is.

The rules' services form a directed graph with an edge A -> B when A
`depends_on` B. For the services whose alerts make up an incident:

- The **blast radius** is every service that depends on an alerting service,
  directly or through others, with its distance in hops (0 for the alerting
  service itself) and its tier. Services of tier 0 or 1 are named as
  user-facing.
- The **likely causes** are the alerting services and everything they depend
  on. A candidate explains an alerting service when it is that service or one
  of its dependencies. Candidates rank by these keys in turn:

  1. how many alerting services they explain, more first;
  2. alerting before silent;
  3. depth, the largest number of hops from an explained alerting service
     down to the candidate, fewer first;
  4. the sum of those hops, smaller first;
  5. tier, most critical first and no tier last, then name.

  So an alerting service that explains others ranks first. A silent common
  dependency ranks above it only when it explains more alerting services.

Scores, each an integer from 0 to 100, rounded half up:

- **Impact** combines every service in the blast radius as a noisy-OR::

      weight(s) = TIER_WEIGHT[tier(s)] * DISTANCE_DECAY ** distance(s)
      impact    = 100 * (1 - prod(1 - weight(s)))

  with tier weights 0: 0.9, 1: 0.7, 2: 0.4, 3: 0.2, 4: 0.1 (0.2 without a tier
  or for a service the rules do not declare) and a decay of 0.5 per hop. One
  alerting tier-1 service scores 70, and each further affected service raises
  the score by a share of what is left up to 100.
- **Urgency** weighs severity, impact and spread::

      urgency = 100 * (0.5 * SEVERITY_WEIGHT[severity] + 0.3 * impact / 100 + 0.2 * spread)
      spread  = min(recent_alerts, SPREAD_SATURATION) / SPREAD_SATURATION

  with severity weights critical 1.0, high 0.7, medium 0.4, low 0.15 (0.4
  without a severity), and `recent_alerts` the number of the incident's alerts
  first seen in the last `spread_window_s` seconds (600 by default);
  SPREAD_SATURATION is 5.

docs/impact.md works through examples.
"""

from __future__ import annotations

import datetime
import math
import weakref
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import networkx as nx
import sqlalchemy as sa

from compiler import ir
from runtime.policy import Policy
from runtime.store.schema import alerts

# Version of the formulas above, stored with each result so that results of older formulas can be recognised.
METHOD = "impact-v1"

TIER_WEIGHT = {0: 0.9, 1: 0.7, 2: 0.4, 3: 0.2, 4: 0.1}
# Weight of a service without a tier, or one that the rules do not declare.
UNTIERED_WEIGHT = 0.2
DISTANCE_DECAY = 0.5
# Tiers up to this one count as user-facing in `Impact.user_facing`.
USER_FACING_MAX_TIER = 1

SEVERITY_WEIGHT = {"critical": 1.0, "high": 0.7, "medium": 0.4, "low": 0.15}
# Weight of an incident without a severity, or with a level the table does not list.
UNKNOWN_SEVERITY_WEIGHT = 0.4
URGENCY_SHARES = {"severity": 0.5, "impact": 0.3, "spread": 0.2}
SPREAD_SATURATION = 5
SPREAD_WINDOW_S = 600.0
MAX_CAUSES = 5


# ---------------------------------------------------------------- the service graph

# Graphs of the policies in use. A reload of the rules makes a new `Policy`, and the old one's graph goes with it.
_POLICY_GRAPHS: weakref.WeakKeyDictionary[Policy, ServiceGraph] = weakref.WeakKeyDictionary()


class ServiceGraph:
    """The rules' services as a networkx DiGraph, with an edge A -> B when A depends on B.

    Node attributes are `tier`, `team` and `declared` (False for a name that a
    `depends_on` list mentions but no `service` declares). Build it once per
    ruleset and pass it to `analyse` to save rebuilding it for every incident.
    """

    def __init__(self, services: Iterable[ir.Service]) -> None:
        self.graph: nx.DiGraph = nx.DiGraph()
        declared = list(services)
        for service in declared:
            self.graph.add_node(service.name, tier=service.tier, team=service.team, declared=True)
        for service in declared:
            for dependency in service.depends_on:
                if dependency not in self.graph:
                    self.graph.add_node(dependency, tier=None, team=None, declared=False)
                self.graph.add_edge(service.name, dependency)
        self._reversed = self.graph.reverse(copy=False)

    @classmethod
    def of(cls, rules: Any) -> ServiceGraph:
        """Return the graph of a `Policy`, an `ir.Ruleset` or a list of `ir.Service`; a graph is returned as is.

        The graph of a `Policy` is built once and kept for as long as the policy lives.
        """
        if isinstance(rules, ServiceGraph):
            return rules
        if isinstance(rules, ir.Ruleset):
            return cls(rules.services)
        if isinstance(rules, Policy):
            graph = _POLICY_GRAPHS.get(rules)
            if graph is None:
                graph = _POLICY_GRAPHS[rules] = cls(rules.services.values())
            return graph
        return cls(rules)

    def knows(self, name: str) -> bool:
        return name in self.graph and self.graph.nodes[name]["declared"]

    def tier(self, name: str) -> int | None:
        return self.graph.nodes[name]["tier"] if name in self.graph else None

    def team(self, name: str) -> str | None:
        return self.graph.nodes[name]["team"] if name in self.graph else None

    def dependents(self, name: str) -> dict[str, int]:
        """Return every service that depends on `name`, directly or through others, with its distance in hops."""
        if name not in self.graph:
            return {}
        found = nx.single_source_shortest_path_length(self._reversed, name)
        found.pop(name)
        return found

    def dependencies(self, name: str) -> dict[str, int]:
        """Return every service that `name` depends on, directly or through others, with its distance in hops."""
        if name not in self.graph:
            return {}
        found = nx.single_source_shortest_path_length(self.graph, name)
        found.pop(name)
        return found


# ---------------------------------------------------------------- results


@dataclass(frozen=True, slots=True)
class Affected:
    """A service in the blast radius: its hops from the nearest alerting service, and which alerting services reach it."""

    service: str
    distance: int
    tier: int | None
    team: str | None
    alerting: bool
    via: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "distance": self.distance,
            "tier": self.tier,
            "team": self.team,
            "alerting": self.alerting,
            "via": list(self.via),
        }


@dataclass(frozen=True, slots=True)
class Cause:
    """A candidate root cause: the alerting services it explains, and the hops from them down to it."""

    service: str
    explains: tuple[str, ...]
    alerting: bool
    depth: int
    total_distance: int
    tier: int | None
    team: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "explains": list(self.explains),
            "alerting": self.alerting,
            "depth": self.depth,
            "total_distance": self.total_distance,
            "tier": self.tier,
            "team": self.team,
        }


@dataclass(frozen=True, slots=True)
class Urgency:
    """The three factors of the urgency score, each from 0 to 1."""

    severity: float
    impact: float
    spread: float


@dataclass(frozen=True, slots=True)
class Impact:
    """The result of `analyse`: blast radius, likely causes and the two scores."""

    alerting: tuple[str, ...]
    severity: str | None
    affected: tuple[Affected, ...]
    causes: tuple[Cause, ...]
    impact: int
    urgency: int
    factors: Urgency
    recent_alerts: int
    spread_window_s: float
    unknown: tuple[str, ...] = ()
    method: str = METHOD
    user_facing: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        names = tuple(item.service for item in self.affected if item.tier is not None and item.tier <= USER_FACING_MAX_TIER)
        object.__setattr__(self, "user_facing", names)

    @property
    def likely_cause(self) -> str | None:
        return self.causes[0].service if self.causes else None

    def summary(self) -> str:
        """Return one line for the timeline, such as `Impact 82/100, urgency 79/100: 3 services affected ...`."""
        count = len(self.affected)
        text = f"Impact {self.impact}/100, urgency {self.urgency}/100: {count} service{'s' if count != 1 else ''} affected"
        if self.user_facing:
            text += f" (user-facing: {', '.join(self.user_facing)})"
        if self.likely_cause is not None:
            text += f"; likely cause: {self.likely_cause}"
        return text

    def to_json(self) -> dict[str, Any]:
        """Return the result as JSON-compatible values, as stored in `incidents.impact`."""
        return {
            "method": self.method,
            "alerting": list(self.alerting),
            "severity": self.severity,
            "impact": self.impact,
            "urgency": self.urgency,
            "factors": {"severity": self.factors.severity, "impact": self.factors.impact, "spread": self.factors.spread},
            "recent_alerts": self.recent_alerts,
            "spread_window_s": self.spread_window_s,
            "affected": [item.to_json() for item in self.affected],
            "user_facing": list(self.user_facing),
            "causes": [cause.to_json() for cause in self.causes],
            "unknown": list(self.unknown),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Impact:
        """Rebuild a result from `to_json` output, such as the `incidents.impact` column."""
        return cls(
            alerting=tuple(data["alerting"]),
            severity=data["severity"],
            affected=tuple(Affected(**{**item, "via": tuple(item["via"])}) for item in data["affected"]),
            causes=tuple(Cause(**{**item, "explains": tuple(item["explains"])}) for item in data["causes"]),
            impact=data["impact"],
            urgency=data["urgency"],
            factors=Urgency(**data["factors"]),
            recent_alerts=data["recent_alerts"],
            spread_window_s=data["spread_window_s"],
            unknown=tuple(data.get("unknown", ())),
            method=data.get("method", METHOD),
        )


# ---------------------------------------------------------------- analysis


def blast_radius(graph: ServiceGraph, alerting_services: Sequence[str]) -> list[Affected]:
    """Return the alerting services (distance 0) and every service depending on them, nearest first.

    A service reached from several alerting services gets its smallest distance,
    and `via` lists the alerting services at that distance. The order is
    distance, then tier (most critical first, no tier last), then name.
    """
    alerting = list(dict.fromkeys(alerting_services))
    reached: dict[str, tuple[int, list[str]]] = {name: (0, [name]) for name in alerting}
    for origin in alerting:
        for name, distance in graph.dependents(origin).items():
            best, via = reached.get(name, (math.inf, []))
            if distance < best:
                reached[name] = (distance, [origin])
            elif distance == best and origin not in via:
                via.append(origin)
    found = [
        Affected(
            service=name,
            distance=distance,
            tier=graph.tier(name),
            team=graph.team(name),
            alerting=name in alerting,
            via=tuple(sorted(via)),
        )
        for name, (distance, via) in reached.items()
    ]
    return sorted(found, key=lambda item: (item.distance, _tier_order(item.tier), item.service))


def likely_causes(graph: ServiceGraph, alerting_services: Sequence[str], limit: int = MAX_CAUSES) -> list[Cause]:
    """Return up to `limit` candidate root causes, best first, ranked as the module docstring describes."""
    alerting = list(dict.fromkeys(alerting_services))
    hops: dict[str, dict[str, int]] = {}
    for origin in alerting:
        hops.setdefault(origin, {})[origin] = 0
        for name, distance in graph.dependencies(origin).items():
            hops.setdefault(name, {})[origin] = distance
    causes = [
        Cause(
            service=name,
            explains=tuple(sorted(explained)),
            alerting=name in alerting,
            depth=max(explained.values()),
            total_distance=sum(explained.values()),
            tier=graph.tier(name),
            team=graph.team(name),
        )
        for name, explained in hops.items()
    ]
    causes.sort(
        key=lambda cause: (
            -len(cause.explains),
            not cause.alerting,
            cause.depth,
            cause.total_distance,
            _tier_order(cause.tier),
            cause.service,
        )
    )
    return causes[:limit]


def impact_score(affected: Iterable[Affected]) -> int:
    """Return the noisy-OR impact of the affected services, from 0 to 100."""
    unaffected = 1.0
    for item in affected:
        unaffected *= 1.0 - _service_weight(item.tier) * DISTANCE_DECAY**item.distance
    return _percent(1.0 - unaffected)


def urgency_factors(severity: str | None, impact: int, recent_alerts: int) -> Urgency:
    """Return the severity, impact and spread factors of the urgency score."""
    spread = min(max(recent_alerts, 0), SPREAD_SATURATION) / SPREAD_SATURATION
    return Urgency(
        severity=SEVERITY_WEIGHT.get(severity or "", UNKNOWN_SEVERITY_WEIGHT),
        impact=impact / 100,
        spread=spread,
    )


def urgency_score(factors: Urgency) -> int:
    total = (
        URGENCY_SHARES["severity"] * factors.severity
        + URGENCY_SHARES["impact"] * factors.impact
        + URGENCY_SHARES["spread"] * factors.spread
    )
    return _percent(total)


def analyse(
    rules: Any,
    alerting_services: Sequence[str],
    severity: str | None,
    *,
    recent_alerts: int = 0,
    spread_window_s: float = SPREAD_WINDOW_S,
    max_causes: int = MAX_CAUSES,
) -> Impact:
    """Analyse the impact of an incident whose alerts come from `alerting_services`.

    `rules` is a `Policy`, an `ir.Ruleset` or a `ServiceGraph`. `recent_alerts` is
    the number of the incident's alerts first seen in the last `spread_window_s`
    seconds (see `recent_alert_count`). Services that the rules do not declare
    count with the untiered weight and are listed in `unknown`.

    Example, with the rules of examples/production:
        >>> result = analyse(policy, ["api", "web"], "high", recent_alerts=2)
        >>> result.likely_cause, result.impact, result.urgency
        ('api', 82, 68)
    """
    graph = ServiceGraph.of(rules)
    alerting = tuple(dict.fromkeys(name for name in alerting_services if name))
    affected = blast_radius(graph, alerting)
    impact = impact_score(affected)
    factors = urgency_factors(severity, impact, recent_alerts)
    return Impact(
        alerting=alerting,
        severity=severity,
        affected=tuple(affected),
        causes=tuple(likely_causes(graph, alerting, max_causes)),
        impact=impact,
        urgency=urgency_score(factors),
        factors=factors,
        recent_alerts=recent_alerts,
        spread_window_s=spread_window_s,
        unknown=tuple(name for name in alerting if not graph.knows(name)),
    )


# ---------------------------------------------------------------- from the store


def recent_alert_count(
    connection: sa.Connection, incident_id: int, now: datetime.datetime, window_s: float = SPREAD_WINDOW_S
) -> int:
    """Return how many of the incident's alerts were first seen in the `window_s` seconds up to `now`."""
    since = now - datetime.timedelta(seconds=window_s)
    query = (
        sa.select(sa.func.count())
        .select_from(alerts)
        .where(alerts.c.incident_id == incident_id, alerts.c.first_seen >= since, alerts.c.first_seen <= now)
    )
    return connection.execute(query).scalar_one()


def analyse_incident(
    connection: sa.Connection,
    rules: Any,
    incident: Mapping[str, Any],
    now: datetime.datetime,
    *,
    spread_window_s: float = SPREAD_WINDOW_S,
) -> Impact:
    """Analyse a stored incident: its `services` and `severity`, and its alerts of the last `spread_window_s` seconds.

    The incident's alerts must be written already. The pipeline keeps a batch's
    alerts in memory until the batch is flushed, so call this after the flush.
    """
    recent = recent_alert_count(connection, incident["id"], now, spread_window_s)
    return analyse(rules, incident["services"], incident["severity"], recent_alerts=recent, spread_window_s=spread_window_s)


def _service_weight(tier: int | None) -> float:
    return TIER_WEIGHT.get(tier, UNTIERED_WEIGHT) if tier is not None else UNTIERED_WEIGHT


def _tier_order(tier: int | None) -> int:
    return tier if tier is not None else len(TIER_WEIGHT)


def _percent(fraction: float) -> int:
    """Return a fraction from 0 to 1 as a whole percentage, rounded half up and clamped to 0..100."""
    # Rounding to 9 places first keeps a product such as 0.845 * 100 = 84.49999999999999 from rounding down.
    return min(max(math.floor(round(fraction * 100, 9) + 0.5), 0), 100)
