"""Decisions of the rules about one alert: dedup key, severity, receivers, team, services, correlation.

`Policy` wraps a compiled ruleset with what the pipeline needs precomputed
(the router, the service graph). Every decision is a pure function of the
ruleset and the alert, so `irules explain`, tests and the daemon agree.
"""

from __future__ import annotations

import datetime
import logging
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from compiler import ir
from compiler.evaluate import (
    SeverityDecision,
    Silence,
    TimeIntervals,
    condition_holds,
    group_key,
    service_for,
    severity_of,
)
from compiler.expr import SEVERITY_LEVELS
from compiler.router import Router, fingerprint
from runtime.alerts import Alert

log = logging.getLogger("irules.policy")

# Highest first, as the language orders them.
SEVERITY_RANK = {level: len(SEVERITY_LEVELS) - index for index, level in enumerate(SEVERITY_LEVELS)}

# How a sender's own severity maps onto the rules' levels when no rule decides.
SOURCE_SEVERITY_LEVELS = {"critical": "critical", "error": "high", "warning": "medium", "info": "low"}

_ID_FIELDS = {"year", "number"}


def higher_severity(first: str | None, second: str | None) -> str | None:
    """Return the more severe of two levels; `None` counts as the lowest."""
    if first is None:
        return second
    if second is None:
        return first
    return first if SEVERITY_RANK.get(first, 0) >= SEVERITY_RANK.get(second, 0) else second


def format_incident_id(template: str, year: int, number: int) -> str:
    """Fill `{year}` and `{number}` (with an optional format spec such as `{number:04d}`) in the id format."""
    for _text, name, _spec, _conversion in string.Formatter().parse(template):
        if name is not None and name not in _ID_FIELDS:
            raise ValueError(f"incident_id_format {template!r} uses `{{{name}}}`; only {{year}} and {{number}} are known")
    return template.format(year=year, number=number)


@dataclass(frozen=True, slots=True)
class DedupDecision:
    """The alert's dedup key, and the `by` fields that had no value when a rule fell back to the fingerprint."""

    key: str
    rule: str | None
    missing: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Correlation:
    """The incident grouping of an alert.

    `key` is equal for alerts that share an incident. `window_s` bounds how long after
    an incident's last alert another one still joins it (`None`: while it is open).
    With `follow_dependencies`, alerts whose `by` labels differ only in `service` also
    join when their services depend on each other.
    """

    rule: str | None
    key: str
    labels: dict[str, str]
    window_s: float | None
    follow_dependencies: bool = False


# (group wait s, group interval s, repeat interval s, route id)
Timing = tuple[float, float, float, str]


@dataclass(slots=True)
class Assessment:
    """Everything the rules decide about one firing alert."""

    severity: str | None
    severity_source: str
    receivers: list[str]
    team: str | None
    service: str | None
    correlation: Correlation
    values: dict = field(default_factory=dict)
    # Group wait, group interval and repeat interval in seconds and the route's id, by
    # receiver, from the first route that sends to it.
    timings: dict[str, Timing] = field(default_factory=dict)
    # The classifier's verdict where the rules left the level to it, as `incidents.triage` keeps it.
    triage: dict | None = None


class Policy:
    """A ruleset prepared for the pipeline."""

    def __init__(self, ruleset: ir.Ruleset, classifier: Any = None) -> None:
        """Prepare `ruleset`; `classifier` (a `runtime.triage.classifier.Classifier`) decides where the rules say `classify`."""
        self.ruleset = ruleset
        self.classifier = classifier
        # Verdicts predicted ahead for the alerts of one pipeline batch, by the alert's id;
        # the alert itself is kept so that the id cannot be reused while the entry exists.
        self._verdicts: dict[int, tuple[Alert, Any]] = {}
        # The services and severity decisions that `preclassify` found, so that `assess` need not repeat them.
        self._decisions: dict[int, tuple[Alert, ir.Service | None, SeverityDecision]] = {}
        self.router = Router(ruleset.route)
        self.dedup_rules = [rule for rule in ruleset.groupings if rule.kind == "dedup"]
        self.correlate_rules = [rule for rule in ruleset.groupings if rule.kind == "correlate"]
        self.teams = {team.name: team for team in ruleset.teams}
        self.receivers = {receiver.name: receiver for receiver in ruleset.receivers}
        self.services = {service.name: service for service in ruleset.services}
        self.escalations = {escalation.name: escalation for escalation in ruleset.escalations}
        self.routes = {route.id: route for route in _walk(ruleset.route)}
        self.time_intervals = TimeIntervals(ruleset.time_intervals)
        self._owner = {service: team.name for team in ruleset.teams for service in team.owns}
        self._depends_on = _transitive_dependencies(ruleset.services)
        # Rules and missing labels already logged, so a steady stream of such alerts logs once.
        self._warned_missing: set[tuple[str, tuple[str, ...]]] = set()

    # ------------------------------------------------------------ deduplication

    def dedup(self, alert: Alert) -> DedupDecision:
        """Return the key that repeats of this alert share.

        A `dedup` rule keys alerts by its `by` labels. When one of them is missing
        on an alert, keying by the rest could fold unrelated alerts into one, so
        the alert keeps its own fingerprint and the miss is logged once per rule
        and set of missing labels.
        """
        rule = self._first_holding(self.dedup_rules, alert)
        if rule is None or not rule.by:
            return DedupDecision(alert.fingerprint, None)
        missing = tuple(name for name in rule.by if not alert.labels.get(name))
        if missing:
            self._warn_missing("dedup", rule.name, missing, alert)
            return DedupDecision(alert.fingerprint, rule.name, missing)
        return DedupDecision(fingerprint({name: alert.labels[name] for name in rule.by}), rule.name)

    def dedup_window_s(self, alert: Alert) -> float | None:
        rule = self._first_holding(self.dedup_rules, alert)
        return None if rule is None else rule.window_s

    def flap_settings(self, alert: Alert) -> tuple[float, int] | None:
        rule = self._first_holding(self.dedup_rules, alert)
        if rule is None or rule.flap_window_s is None or rule.flap_threshold is None:
            return None
        return rule.flap_window_s, rule.flap_threshold

    # ------------------------------------------------------------ assessment

    def preclassify(self, alerts: list[Alert]) -> None:
        """Predict the severity of the alerts that the classifier decides, in one call for the whole batch.

        One prediction at a time costs about 9 ms and a batch about 0.4 ms per alert
        (the shipped model on a 2-core EPYC), so the pipeline asks for a batch's
        verdicts up front and `assess` reads them.
        """
        self._verdicts = {}
        self._decisions = {}
        if self.classifier is None or not self.ruleset.severity.classify:
            return
        chosen = []
        for alert in alerts:
            service = self.service_of(alert.labels)
            decision = severity_of(self.ruleset, alert.labels, alert.annotations, service, alert_fingerprint=alert.fingerprint)
            self._decisions[id(alert)] = (alert, service, decision)
            if decision.source == "classify":
                chosen.append(alert)
        if not chosen:
            return
        threshold = self.ruleset.severity.classify_confidence
        verdicts = self.classifier.classify_many(chosen, threshold)
        self._verdicts = {id(alert): (alert, verdict) for alert, verdict in zip(chosen, verdicts, strict=True)}

    def _verdict(self, alert: Alert) -> Any:
        cached = self._verdicts.get(id(alert))
        if cached is not None and cached[0] is alert:
            return cached[1]
        return self.classifier.classify(alert, self.ruleset.severity.classify_confidence)

    def assess(self, alert: Alert) -> Assessment:
        """Decide severity, receivers, team, service and correlation for a firing alert."""
        known = self._decisions.get(id(alert))
        if known is not None and known[0] is alert:
            _alert, service, decision = known
        else:
            service = self.service_of(alert.labels)
            decision = severity_of(self.ruleset, alert.labels, alert.annotations, service, alert_fingerprint=alert.fingerprint)
        severity, severity_source = decision.level, decision.source
        # Rules win, and so does a fixed `else LEVEL`. Where the rules leave the level open
        # (no `else`) or to the classifier, the sender's own severity comes before the
        # classifier's fallback level.
        # A classifier verdict below the rules' confidence counts as no verdict, and the
        # incident is flagged for review.
        triage = None
        if decision.source == "classify" and self.classifier is not None:
            verdict = self._verdict(alert)
            triage = {"classifier": verdict.to_json(), "review": verdict.needs_review}
            if verdict.level is not None:
                severity, severity_source = verdict.level, "classifier"
        open_level = severity_source != "classifier" and (
            decision.source == "classify" or (decision.source == "fallback" and decision.level is None)
        )
        from_source = SOURCE_SEVERITY_LEVELS.get(alert.source_severity or "")
        if open_level and from_source is not None:
            severity, severity_source = from_source, "source"
        elif decision.source == "classify" and severity_source != "classifier":
            # No classifier, or one that is not sure enough: the level is the policy's fallback.
            severity_source = "fallback"
        paths = self.router.trace(alert.labels)
        receivers = list(dict.fromkeys(path[-1].receiver for path in paths))
        timings: dict[str, Timing] = {}
        for path in paths:
            route = path[-1]
            timings.setdefault(route.receiver, (route.group_wait_s, route.group_interval_s, route.repeat_interval_s, route.id))
        team = self._team_for(service, alert.labels, receivers)
        correlation = self._correlation(alert, service, paths)
        return Assessment(
            severity=severity,
            severity_source=severity_source,
            receivers=receivers,
            team=team,
            service=service.name if service else None,
            correlation=correlation,
            timings=timings,
            triage=triage,
        )

    def service_of(self, labels: Mapping[str, str]) -> ir.Service | None:
        service = service_for(self.ruleset, labels)
        if service is None:
            service = self.services.get(labels.get("service", ""))
        return service

    def _team_for(self, service: ir.Service | None, labels: Mapping[str, str], receivers: list[str]) -> str | None:
        """Return the owning team: the service's, then a `team` label naming a team, then the first team receiver."""
        if service is not None:
            if service.team:
                return service.team
            if service.name in self._owner:
                return self._owner[service.name]
        if labels.get("team") in self.teams:
            return labels["team"]
        for name in receivers:
            receiver = self.receivers.get(name)
            if receiver is not None and receiver.is_team:
                return name
        return None

    def _correlation(self, alert: Alert, service: ir.Service | None, paths: list[list[ir.Route]]) -> Correlation:
        """Return the first correlate rule whose condition is true and whose `by` labels all have values.

        A rule whose labels are missing on the alert is skipped rather than applied with
        empty values, which would put every such alert into one incident.
        """
        values = alert_values(alert, service)
        for rule in self.correlate_rules:
            if rule.when is not None and not condition_holds(rule.when, values):
                continue
            labels = {name: alert.labels.get(name, "") for name in rule.by}
            if service is not None and "service" in labels and not labels["service"]:
                labels["service"] = service.name
            missing = tuple(name for name, value in labels.items() if not value)
            if missing:
                self._warn_missing("correlate", rule.name, missing, alert)
                continue
            key = f"{rule.name or 'correlate'}:" + ",".join(f"{name}={value}" for name, value in sorted(labels.items()))
            return Correlation(rule.name or "correlate", key, labels, rule.window_s, rule.follow_dependencies)
        # Without a correlate rule that applies, an incident is an Alertmanager group: the
        # first matching route's group key.
        key = group_key(paths[0], alert.labels) if paths else f"fingerprint:{alert.fingerprint}"
        return Correlation(None, key, {}, None)

    def _warn_missing(self, kind: str, rule: str | None, missing: tuple[str, ...], alert: Alert) -> None:
        """Log a rule that could not use its labels, once per rule and set of missing labels.

        A dedup rule that does not resolve is a warning: repeats of the alert are not
        folded as the rule intends. A correlate rule that does not apply is routine,
        since the next rule or the route's group takes the alert, so it is only info.
        """
        marker = (f"{kind}:{rule}", missing)
        if marker in self._warned_missing:
            return
        self._warned_missing.add(marker)
        log.log(
            logging.WARNING if kind == "dedup" else logging.INFO,
            "%s rule %s: labels %s missing on alert %s (fingerprint %s); %s",
            kind,
            rule or "(unnamed)",
            ", ".join(missing),
            alert.name,
            alert.fingerprint,
            "keeping the alert's own fingerprint" if kind == "dedup" else "trying the next rule",
        )

    def timings_of(self, receiver: str) -> Timing:
        """Return the timing of a receiver no route of this alert names: the root route's."""
        root = self.ruleset.route
        return root.group_wait_s, root.group_interval_s, root.repeat_interval_s, root.id

    def silence(self, route_id: str | None, moment: datetime.datetime) -> Silence | None:
        """Return why the route sends nothing at `moment` (a mute or active time interval), or None when it sends."""
        route = self.routes.get(route_id or "")
        return None if route is None else self.time_intervals.silence(route, moment)

    def escalation_for(self, team: str | None, receivers: list[str]) -> ir.Escalation | None:
        """Return the escalation policy of the incident's team, else of the first team receiver that has one."""
        for name in [team, *receivers]:
            owner = self.teams.get(name or "")
            if owner is not None and owner.escalation:
                return self.escalations.get(owner.escalation)
        return None

    def services_related(self, first: str | None, second: str | None) -> bool:
        """Return whether one service depends on the other, directly or through others.

        Two services that only share a dependency are not related: a database used
        by every team would otherwise merge the whole estate into one incident.
        """
        if first is None or second is None:
            return False
        return first == second or second in self._depends_on.get(first, ()) or first in self._depends_on.get(second, ())

    def _first_holding(self, rules: list[ir.Grouping], alert: Alert, service: ir.Service | None = None) -> ir.Grouping | None:
        values = None
        for rule in rules:
            if rule.when is None:
                return rule
            if values is None:
                values = alert_values(alert, service if service is not None else self.service_of(alert.labels))
            if condition_holds(rule.when, values):
                return rule
        return None


def alert_values(alert: Alert, service: ir.Service | None) -> dict:
    """Return the `values` tree that conditions read for an alert."""
    values: dict = {
        "labels": dict(alert.labels),
        "annotations": dict(alert.annotations),
        "alert": {
            "name": alert.name,
            "status": alert.status,
            "source": alert.source,
            "fingerprint": alert.fingerprint,
            "starts_at": alert.starts_at.isoformat() if alert.starts_at else None,
        },
    }
    if service is not None:
        values["service"] = {"name": service.name, "tier": service.tier, "team": service.team}
    return values


def _walk(route: ir.Route) -> list[ir.Route]:
    found = [route]
    for child in route.routes:
        found.extend(_walk(child))
    return found


def _transitive_dependencies(services: list[ir.Service]) -> dict[str, frozenset[str]]:
    """Return, for each service, every service it depends on directly or through others."""
    direct = {service.name: set(service.depends_on) for service in services}
    closure: dict[str, frozenset[str]] = {}
    for start in direct:
        seen: set[str] = set()
        stack = list(direct[start])
        while stack:
            name = stack.pop()
            if name in seen or name == start:
                continue
            seen.add(name)
            stack.extend(direct.get(name, ()))
        closure[start] = frozenset(seen)
    return closure
