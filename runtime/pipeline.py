"""From stored alert events to incidents: deduplicate, assess, correlate, resolve, damp flapping.

Ingestion (`accept`) stores a payload and its normalised alerts in one
transaction and is all that happens before the sender gets its 2xx. The
pipeline (`process_pending`) then applies the stored events in arrival order.
Each batch of events is applied and marked processed in one transaction, so a
crash at any point either applies an event completely or leaves it pending
for the next run: an event is never applied twice or lost.
"""

from __future__ import annotations

import datetime
import logging
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import sqlalchemy as sa

from runtime import incidents as incident_ops
from runtime.alerts import FIRING, RESOLVED, Alert
from runtime.faults import crash_point
from runtime.notify import escalation, planner
from runtime.policy import Assessment, Policy, higher_severity
from runtime.sources.base import Inbound, Outcome
from runtime.store import Store
from runtime.store.schema import alert_events, alerts, dead_letters, payloads
from runtime.store.store import json_text, sqlite_time
from runtime.unit_of_work import UnitOfWork

log = logging.getLogger("irules.pipeline")

Clock = Callable[[], datetime.datetime]

# Request headers worth keeping with a payload. Credentials and signatures are never stored.
KEPT_HEADERS = frozenset(
    {
        "content-type",
        "user-agent",
        "x-amz-sns-message-type",
        "x-amz-sns-message-id",
        "x-amz-sns-topic-arn",
        "x-amz-sns-subscription-arn",
        "x-amz-sns-rawdelivery",
        "x-request-id",
    }
)
DEAD_LETTER_BODY_LIMIT = 256 * 1024
# Requests that failed authentication, named no source, or could not be authenticated
# (503, which senders retry) may come from anyone. So only enough of each is kept to see
# what it was, and none is ever replayed.
UNTRUSTED_BODY_LIMIT = 4 * 1024
UNTRUSTED_STATUSES = frozenset({401, 403, 404, 503})
BATCH_SIZE = 200
# First key of the PostgreSQL advisory lock that one node holds while it applies events; the
# second is the schema's hash. Any 32-bit constant works if no other code in the database uses it.
APPLY_LOCK_ID = 0x69727573


# Errors of the connection or the server rather than of one event's statements.
_CONNECTION_ERRORS = (sa.exc.OperationalError, sa.exc.InterfaceError, sa.exc.DisconnectionError, sa.exc.TimeoutError)


def utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def kept_headers(headers: dict[str, str] | Any) -> dict[str, str]:
    return {name: value for name, value in headers.items() if name.lower() in KEPT_HEADERS}


@dataclass(frozen=True, slots=True)
class Accepted:
    """One payload ready to be stored: its source, the request and what the source made of it."""

    source: str
    inbound: Inbound
    outcome: Outcome
    replay_of: int | None = None


def accept(store: Store, batch: Sequence[Accepted]) -> list[int]:
    """Store payloads and their alert events in one transaction and return the payload ids.

    When this returns, everything in `batch` is committed; that is the moment a
    sender may get its 2xx.
    """
    if store.is_sqlite:
        with store.sqlite_write() as connection:
            assert connection is not None
            return _insert_sqlite(connection, batch)
    with store.write() as connection:
        return [insert_payload(connection, item) for item in batch]


def accept_if_free(store: Store, batch: Sequence[Accepted]) -> list[int] | None:
    """Store like `accept` when the SQLite writer is free at once, else return None without waiting.

    PostgreSQL always returns None, because its writes wait on the network.
    """
    if not store.is_sqlite:
        return None
    with store.sqlite_write(wait=False) as connection:
        if connection is None:
            return None
        return _insert_sqlite(connection, batch)


# The statements of `_insert_sqlite`, sent to the driver as they are. Their values are
# converted as the columns' SQLAlchemy types would convert them for SQLite: times by
# `sqlite_time`, JSON by `json_text` and `_alert_text`.
_SQLITE_INSERT_PAYLOAD = (
    "INSERT INTO payloads (source, kind, received_at, body, headers, alert_count, details, replay_of) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
_SQLITE_INSERT_EVENT = (
    "INSERT INTO alert_events (payload_id, source, fingerprint, status, alert, received_at) VALUES (?, ?, ?, ?, ?, ?)"
)


def _insert_sqlite(connection: sqlite3.Connection, batch: Sequence[Accepted]) -> list[int]:
    ids = []
    for item in batch:
        outcome = item.outcome
        received_at = sqlite_time(item.inbound.received_at)
        cursor = connection.execute(
            _SQLITE_INSERT_PAYLOAD,
            (
                item.source,
                outcome.kind,
                received_at,
                item.inbound.body,
                json_text(kept_headers(item.inbound.headers)),
                len(outcome.alerts),
                json_text(outcome.details),
                item.replay_of,
            ),
        )
        payload_id = cursor.lastrowid
        assert payload_id is not None
        if outcome.alerts:
            connection.executemany(
                _SQLITE_INSERT_EVENT,
                [
                    (payload_id, alert.source, alert.fingerprint, alert.status, _alert_text(alert), received_at)
                    for alert in outcome.alerts
                ],
            )
        ids.append(payload_id)
    return ids


def _alert_text(alert: Alert) -> str:
    """Serialise `alert` as `json_text(alert.to_json())` would, letting orjson format the times, which is faster than `isoformat`."""
    document = {
        "source": alert.source,
        "name": alert.name,
        "status": alert.status,
        "labels": alert.labels,
        "annotations": alert.annotations,
        "starts_at": None if alert.starts_at is None else alert.starts_at.astimezone(datetime.UTC),
        "ends_at": None if alert.ends_at is None else alert.ends_at.astimezone(datetime.UTC),
        "fingerprint": alert.fingerprint,
        "generator_url": alert.generator_url,
        "source_severity": alert.source_severity,
        "details": alert.details,
    }
    try:
        return orjson.dumps(document, option=orjson.OPT_UTC_Z).decode()
    except TypeError:
        return json_text(alert.to_json())


_INSERT_PAYLOAD = payloads.insert()
_INSERT_EVENT = alert_events.insert()


def insert_payload(connection: sa.Connection, item: Accepted) -> int:
    """Insert one payload and its alert events in the caller's transaction, and return the payload id."""
    # The statements are built once, so SQLAlchemy finds them in its compiled cache.
    outcome = item.outcome
    payload_id = connection.execute(
        _INSERT_PAYLOAD,
        {
            "source": item.source,
            "kind": outcome.kind,
            "received_at": item.inbound.received_at,
            "body": item.inbound.body,
            "headers": kept_headers(item.inbound.headers),
            "alert_count": len(outcome.alerts),
            "details": outcome.details,
            "replay_of": item.replay_of,
        },
    ).inserted_primary_key[0]
    if outcome.alerts:
        connection.execute(
            _INSERT_EVENT,
            [
                {
                    "payload_id": payload_id,
                    "source": alert.source,
                    "fingerprint": alert.fingerprint,
                    "status": alert.status,
                    "alert": alert.to_json(),
                    "received_at": item.inbound.received_at,
                }
                for alert in outcome.alerts
            ],
        )
    return payload_id


# The statement that marks events applied. SQLite runs it through `exec_driver_sql` with the
# time converted by `sqlite_time`, which skips SQLAlchemy's per-row parameter processing.
_MARK_PROCESSED = (
    alert_events.update()
    .where(alert_events.c.id == sa.bindparam("b_id"))
    .values(processed_at=sa.bindparam("b_processed_at"), outcome=sa.bindparam("b_outcome"))
)
_SQLITE_MARK_PROCESSED = "UPDATE alert_events SET processed_at = ?, outcome = ? WHERE id = ?"


def record_dead_letter(
    store: Store,
    source: str,
    inbound: Inbound,
    status: int,
    reason: str,
    payload_id: int | None = None,
    body_limit: int = DEAD_LETTER_BODY_LIMIT,
) -> int:
    """Keep a request that did not become alerts, with the reason; a body over `body_limit` bytes is cut."""
    with store.write() as connection:
        return insert_dead_letter(
            connection,
            source,
            inbound.received_at,
            status,
            reason,
            inbound.body,
            kept_headers(inbound.headers),
            payload_id,
            body_limit,
        )


def insert_dead_letter(
    connection: sa.Connection,
    source: str,
    received_at: datetime.datetime,
    status: int,
    reason: str,
    body: bytes,
    headers: dict[str, str],
    payload_id: int | None = None,
    body_limit: int = DEAD_LETTER_BODY_LIMIT,
) -> int:
    """Insert a dead letter in the caller's transaction and return its id; a body over `body_limit` bytes is cut."""
    kept = body[:body_limit]
    return connection.execute(
        dead_letters.insert().values(
            source=source[:200],
            received_at=received_at,
            status=status,
            reason=reason,
            body=kept,
            body_truncated=len(body) > len(kept),
            headers=headers,
            payload_id=payload_id,
        )
    ).inserted_primary_key[0]


class Pipeline:
    """Applies stored alert events to alerts and incidents under the current policy.

    An incident is resolved when, at the end of a batch, every one of its alerts is
    resolved and none is flapping. It takes the time of the last resolution.
    """

    def __init__(self, store: Store, policy: Callable[[], Policy], clock: Clock = utc_now) -> None:
        self.store = store
        self._policy = policy
        self.clock = clock
        self._applied: list[tuple[datetime.datetime, str]] = []
        # Incidents whose last alert resolved while an escalation message to them was being
        # sent; they are resolved by a later batch, once the send is over.
        self._deferred_quiet: dict[int, datetime.datetime] = {}

    def take_applied(self) -> list[tuple[datetime.datetime, str]]:
        """Return (received at, outcome) of each event applied since the last call, for metrics."""
        applied, self._applied = self._applied, []
        return applied

    def process_pending(self, limit: int | None = None) -> int:
        """Apply pending events in arrival order, a batch per transaction; return how many were applied."""
        done = 0
        while limit is None or done < limit:
            size = BATCH_SIZE if limit is None else min(BATCH_SIZE, limit - done)
            applied = self._process_batch(size)
            done += applied
            if applied < size:
                break
        return done

    def _process_batch(self, size: int) -> int:
        policy = self._policy()
        with self.store.write() as connection:
            if not _take_apply_lock(connection):
                return 0
            rows = connection.execute(
                sa.select(alert_events.c.id, alert_events.c.payload_id, alert_events.c.alert, alert_events.c.received_at)
                .where(alert_events.c.processed_at.is_(None))
                .order_by(alert_events.c.id)
                .limit(size)
            ).all()
            if not rows:
                return 0
            try:
                with connection.begin_nested():
                    outcomes = self._apply_batch(connection, policy, rows)
            except _CONNECTION_ERRORS:
                # The connection failed (a database outage), not one event: applying the events one at a
                # time would only fail again on the dead connection. The caller handles the outage.
                raise
            except Exception:
                # Find the event at fault: apply them one at a time, each in its own savepoint.
                log.warning("a batch of %d alert events failed; applying them one at a time", len(rows), exc_info=True)
                outcomes = [self._apply_alone(connection, policy, row) for row in rows]
            processed_at = self.clock()
            if self.store.is_sqlite:
                processed_text = sqlite_time(processed_at)
                connection.exec_driver_sql(
                    _SQLITE_MARK_PROCESSED,
                    [(processed_text, outcome, row.id) for row, outcome in zip(rows, outcomes, strict=True)],
                )
            else:
                connection.execute(
                    _MARK_PROCESSED,
                    [
                        {"b_id": row.id, "b_processed_at": processed_at, "b_outcome": outcome}
                        for row, outcome in zip(rows, outcomes, strict=True)
                    ],
                )
            crash_point("pipeline.before_commit")
        crash_point("pipeline.after_commit")
        # Handed to metrics after the commit, and bounded in case no caller collects it.
        applied = [(row.received_at, outcome) for row, outcome in zip(rows, outcomes, strict=True)]
        self._applied = [*self._applied, *applied][-10_000:]
        return len(rows)

    def _apply_batch(self, connection: sa.Connection, policy: Policy, rows: Sequence[sa.Row]) -> list[str]:
        work = UnitOfWork(connection, self.store)
        events = [(Alert.from_json(row.alert), row.received_at) for row in rows]
        policy.preclassify([alert for alert, _received in events if alert.status == FIRING])
        decisions = [policy.dedup(alert) for alert, _received in events]
        work.preload_alerts(decision.key for decision in decisions)
        # Alerts that are new or fire again are assessed up front, so that the open incidents
        # of their correlation keys can be read in one query instead of one each.
        assessments: dict[int, Assessment] = {}
        for index, ((alert, _received), decision) in enumerate(zip(events, decisions, strict=True)):
            row = work.alert(decision.key)
            if alert.status == FIRING and (row is None or row["status"] != FIRING):
                assessments[index] = policy.assess(alert)
        work.preload_correlations(assessment.correlation.key for assessment in assessments.values())
        # Related incidents are read ahead only for alerts whose correlation key has no open
        # incident, because the others usually join that incident.
        work.preload_related(
            (assessment.correlation.rule, _related_labels(assessment))
            for assessment in assessments.values()
            if _follows_dependencies(assessment) and not work.has_open_incident(assessment.correlation.key)
        )
        outcomes = [
            self._apply(work, policy, alert, decision.key, received_at, assessments.get(index))
            for index, ((alert, received_at), decision) in enumerate(zip(events, decisions, strict=True))
        ]
        self._finish(work, policy)
        return outcomes

    def _apply_alone(self, connection: sa.Connection, policy: Policy, event: sa.Row) -> str:
        savepoint = connection.begin_nested()
        try:
            outcome = self._apply_batch(connection, policy, [event])[0]
        except Exception as error:
            savepoint.rollback()
            log.exception(
                "alert event %s (payload %s) could not be applied; its payload is kept as a dead letter",
                event.id,
                event.payload_id,
            )
            payload = connection.execute(sa.select(payloads).where(payloads.c.id == event.payload_id)).mappings().one()
            reason = (
                f"alert event {event.id} of payload {event.payload_id} failed in the pipeline: {type(error).__name__}: {error}"
            )
            insert_dead_letter(connection, payload["source"], event.received_at, 500, reason, payload["body"], payload["headers"])
            return "failed"
        savepoint.commit()
        return outcome

    def _finish(self, work: UnitOfWork, policy: Policy) -> None:
        """Write the batch back, resolve the incidents whose last firing alert it resolved, and start or stop escalations."""
        work.flush()
        self._assess_impact(work, policy)
        for incident_id, at in self._deferred_quiet.items():
            work.quieted_at.setdefault(incident_id, at)
        self._deferred_quiet = {}
        for incident_id, at in sorted(work.quieted_at.items()):
            row = work.incident(incident_id)
            if row["status"] in incident_ops.ENDED or row["firing_count"] > 0 or work.flapping_in(incident_id):
                continue
            if escalation.sending(work.connection, incident_id, "resolved", self.clock()):
                self._deferred_quiet[incident_id] = at
                continue
            work.change_incident(incident_id, status="resolved", resolved_at=at, updated_at=at)
            work.resolved[incident_id] = at
            work.touch(incident_id, at)
            work.add_timeline(
                incident_id,
                at,
                "incident.status",
                "irules",
                "Resolved: every alert resolved",
                {"from": row["status"], "to": "resolved"},
            )
        work.flush()
        self._start_and_stop(work, policy)

    def _assess_impact(self, work: UnitOfWork, policy: Policy) -> None:
        """Analyse the impact of incidents with services opened in the batch, or whose services or severity it changed.

        The analysis reads the batch's alerts, so it runs after they are flushed. A change of
        the likely cause goes onto the timeline; a change of the scores alone does not.
        """
        from runtime.triage.impact import analyse_incident

        for incident_id in sorted(set(work.opened_by) | set(work.touched)):
            row = work.incident(incident_id)
            old = row.get("impact")
            if not row["services"]:
                continue
            if (
                old is not None
                and sorted(old.get("alerting") or []) == sorted(row["services"])
                and old.get("severity") == row["severity"]
            ):
                continue
            at = row["last_alert_at"]
            try:
                result = analyse_incident(work.connection, policy, row, at)
            except Exception:  # the analysis must never keep alerts from being applied
                log.exception("incident %s: the impact analysis failed", row["key"])
                continue
            work.change_incident(incident_id, impact=result.to_json())
            if old is None or old.get("causes", [{}])[:1] != result.to_json()["causes"][:1]:
                work.add_timeline(
                    incident_id,
                    at,
                    "incident.impact",
                    "irules",
                    result.summary(),
                    {
                        "impact": result.impact,
                        "urgency": result.urgency,
                        "likely_cause": result.likely_cause,
                        "user_facing": list(result.user_facing),
                    },
                )

    def _start_and_stop(self, work: UnitOfWork, policy: Policy) -> None:
        """Start escalation of opened incidents, stop it for resolved ones, and make their receivers due."""
        connection = work.connection
        for incident_id, at in sorted(work.escalate.items()):
            if incident_id not in work.resolved:
                escalation.schedule(connection, policy, work.incident(incident_id), at)
        for incident_id, at in sorted(work.resolved.items()):
            stopped, withdrawn = escalation.cancel(connection, incident_id, "resolved", at)
            entry = escalation.cancellation_entry(connection, incident_id, "resolved", stopped, withdrawn)
            if entry is not None:
                message, data = entry
                incident_ops.add_timeline(connection, incident_id, at, "escalation.cancelled", "irules", message, data)
        if work.touched:
            planner.mark_due(connection, policy, work.touched)
        for incident_id, alert in sorted(work.opened_by.items()):
            if incident_id not in work.resolved:
                self._start_runbooks(work, policy, incident_id, alert)
        work.opened_by.clear()
        work.escalate.clear()
        work.resolved.clear()
        work.touched.clear()

    # ------------------------------------------------------------ one event

    def _apply(
        self,
        work: UnitOfWork,
        policy: Policy,
        alert: Alert,
        key: str,
        received_at: datetime.datetime,
        assessment: Assessment | None = None,
    ) -> str:
        """Apply one alert event; `assessment` is the policy's assessment of the alert when the caller made it already."""
        # Event time is when the daemon received the alert, not when the pipeline got to
        # it, so windows and the timeline do not depend on how far processing lagged.
        now = received_at
        row = work.alert(key)
        if alert.status == RESOLVED:
            return self._resolve(work, policy, alert, row, now)
        if row is not None and row["status"] == FIRING:
            work.change_alert(
                key,
                last_seen=now,
                occurrences=row["occurrences"] + 1,
                labels=alert.labels,
                annotations=alert.annotations,
                ends_at=alert.ends_at,
            )
            return "repeat"
        if assessment is None:
            assessment = policy.assess(alert)
        if row is not None:
            return self._refire(work, policy, alert, row, assessment, now)
        incident = self._incident_for(work, policy, alert, assessment, now)
        work.add_alert(
            {
                "key": key,
                "fingerprint": alert.fingerprint,
                "source": alert.source,
                "name": alert.name,
                "status": FIRING,
                "labels": alert.labels,
                "annotations": alert.annotations,
                "starts_at": alert.starts_at,
                "ends_at": alert.ends_at,
                "first_seen": now,
                "last_seen": now,
                "resolved_at": None,
                "occurrences": 1,
                "severity": assessment.severity,
                "receivers": assessment.receivers,
                "incident_id": incident["id"],
                "transitions": [],
                "flapping": False,
            }
        )
        work.touch(incident["id"], now, assessment.timings, alert.source)
        work.add_timeline(
            incident["id"],
            now,
            "alert.added",
            f"source:{alert.source}",
            f"Alert {alert.name} firing",
            {"fingerprint": alert.fingerprint, "key": key, "labels": alert.labels, "severity": assessment.severity},
        )
        work.timeline_alert_done()
        return "new"

    def _refire(
        self, work: UnitOfWork, policy: Policy, alert: Alert, row: dict, assessment: Assessment, now: datetime.datetime
    ) -> str:
        """Handle a resolved alert firing again: the same episode when recent, else a new one."""
        transitions, flapping, started = _record_transition(policy, alert, row, now)
        window = policy.dedup_window_s(alert)
        incident = work.incident(row["incident_id"]) if row["incident_id"] is not None else None
        resolved_at = row["resolved_at"] or now
        recent = window is not None and (now - resolved_at).total_seconds() <= window
        status = incident["status"] if incident is not None else None
        same_episode = incident is not None and (status not in incident_ops.ENDED or (recent and status != "closed"))
        if incident is not None and (same_episode or (flapping and status != "closed")):
            if status in incident_ops.ENDED:
                reopened = "investigating" if incident["acknowledged_at"] else "detected"
                work.change_incident(incident["id"], status=reopened, resolved_at=None, updated_at=now)
                work.add_timeline(
                    incident["id"],
                    now,
                    "incident.reopened",
                    "irules",
                    f"Reopened: alert {alert.name} fired again",
                    {"from": status, "to": reopened},
                )
            work.quieted_at.pop(incident["id"], None)
            if status in incident_ops.ENDED:
                work.escalate[incident["id"]] = now
            outcome = "refire"
        else:
            incident = self._incident_for(work, policy, alert, assessment, now)
            outcome = "new"
        work.change_alert(
            row["key"],
            status=FIRING,
            labels=alert.labels,
            annotations=alert.annotations,
            starts_at=alert.starts_at if outcome == "new" else row["starts_at"],
            ends_at=alert.ends_at,
            last_seen=now,
            resolved_at=None,
            occurrences=row["occurrences"] + 1,
            severity=assessment.severity,
            receivers=assessment.receivers,
            incident_id=incident["id"],
            transitions=transitions,
            flapping=flapping,
        )
        work.touch(incident["id"], now, assessment.timings, alert.source)
        if started:
            work.add_timeline(
                incident["id"],
                now,
                "alert.flapping",
                "irules",
                f"Alert {alert.name} is flapping: {len(transitions)} state changes; changes are damped",
                {"key": row["key"], "transitions": len(transitions)},
            )
        elif not flapping:
            work.add_timeline(
                incident["id"],
                now,
                "alert.added" if outcome == "new" else "alert.refired",
                f"source:{alert.source}",
                f"Alert {alert.name} firing again",
                {"fingerprint": alert.fingerprint, "key": row["key"]},
            )
        work.timeline_alert_done()
        return outcome

    def _resolve(self, work: UnitOfWork, policy: Policy, alert: Alert, row: dict | None, now: datetime.datetime) -> str:
        if row is None:
            # A resolution for an alert this store never saw firing: nothing to end.
            return "resolved-unknown"
        if row["status"] == RESOLVED:
            return "repeat"
        transitions, flapping, started = _record_transition(policy, alert, row, now)
        work.change_alert(
            row["key"],
            status=RESOLVED,
            ends_at=alert.ends_at or now,
            resolved_at=now,
            last_seen=now,
            # Sources that key alerts by identity (a CloudWatch alarm ARN, an Azure alert id)
            # send the state as a label, which must read OK once resolved. A resolution that
            # carries fewer labels than the firing alert keeps the ones it leaves out.
            labels={**row["labels"], **alert.labels},
            annotations=alert.annotations or row["annotations"],
            transitions=transitions,
            flapping=flapping,
        )
        incident_id = row["incident_id"]
        if incident_id is None:
            return "resolved"
        work.touch(incident_id, now, None, alert.source)
        if not flapping:
            work.add_timeline(
                incident_id,
                now,
                "alert.resolved",
                f"source:{alert.source}",
                f"Alert {alert.name} resolved",
                {"fingerprint": alert.fingerprint, "key": row["key"]},
            )
        elif started:
            work.add_timeline(
                incident_id,
                now,
                "alert.flapping",
                "irules",
                f"Alert {alert.name} is flapping: {len(transitions)} state changes; changes are damped",
                {"key": row["key"], "transitions": len(transitions)},
            )
        work.quieted_at[incident_id] = now
        return "resolved"

    # ------------------------------------------------------------ correlation

    def _incident_for(
        self, work: UnitOfWork, policy: Policy, alert: Alert, assessment: Assessment, now: datetime.datetime
    ) -> dict:
        """Return the open incident this alert joins, updated, or a new incident."""
        correlation = assessment.correlation
        incident = self._matching_incident(work, policy, assessment, now)
        if incident is None:
            opened = work.open_incident(
                policy.ruleset.settings.incident_id_format,
                now,
                title=_title(alert),
                severity=assessment.severity,
                severity_source=assessment.severity_source,
                team=assessment.team,
                services=[assessment.service] if assessment.service else [],
                receivers=assessment.receivers,
                correlation=correlation.key,
                correlation_rule=correlation.rule,
                labels=correlation.labels,
                actor=f"source:{alert.source}",
                triage=assessment.triage,
            )
            if assessment.triage is not None:
                verdict = assessment.triage["classifier"]
                outcome = "sets the severity" if verdict["accepted"] else "is below the threshold; flagged for review"
                work.add_timeline_after_alert(
                    opened["id"],
                    now,
                    "incident.classified",
                    "classifier",
                    f"Classifier predicts {verdict['level']} at {verdict['confidence']:.0%} confidence, which {outcome}",
                    assessment.triage,
                )
            work.escalate[opened["id"]] = now
            work.opened_by[opened["id"]] = alert
            log.info(
                "incident %s opened by alert %s (fingerprint %s, source %s): severity %s, team %s",
                opened["key"],
                alert.name,
                alert.fingerprint,
                alert.source,
                assessment.severity or "none",
                assessment.team or "none",
            )
            return opened
        services = list(incident["services"])
        if assessment.service and assessment.service not in services:
            services.append(assessment.service)
        receivers = list(dict.fromkeys([*incident["receivers"], *assessment.receivers]))
        severity = higher_severity(incident["severity"], assessment.severity)
        changes: dict[str, Any] = {
            "services": services,
            "receivers": receivers,
            "last_alert_at": max(now, incident["last_alert_at"]),
            "updated_at": now,
        }
        if severity != incident["severity"]:
            changes["severity"] = severity
            changes["severity_source"] = assessment.severity_source
            work.add_timeline_after_alert(
                incident["id"],
                now,
                "incident.severity",
                f"source:{alert.source}",
                f"Severity raised from {incident['severity'] or 'none'} to {severity} by alert {alert.name}",
                {"from": incident["severity"], "to": severity},
            )
        if not incident["team"] and assessment.team:
            changes["team"] = assessment.team
        work.quieted_at.pop(incident["id"], None)
        return work.change_incident(incident["id"], **changes)

    def _matching_incident(self, work: UnitOfWork, policy: Policy, assessment: Assessment, now: datetime.datetime) -> dict | None:
        correlation = assessment.correlation
        since = None if correlation.window_s is None else now - datetime.timedelta(seconds=correlation.window_s)
        exact = work.find_open_incident(correlation.key, since)
        if exact is not None or not _follows_dependencies(assessment):
            return exact
        for candidate in work.find_related_incidents(correlation.rule, since, _related_labels(assessment)):
            if any(policy.services_related(assessment.service, other) for other in candidate["services"]):
                return candidate
        return None

    def _start_runbooks(self, work: UnitOfWork, policy: Policy, incident_id: int, alert: Alert) -> None:
        """Start the automatic runbooks whose condition holds for the alert that opened the incident."""
        from runtime.policy import alert_values
        from runtime.runbooks import runs

        values = alert_values(alert, policy.service_of(alert.labels))
        incident = work.incident(incident_id)
        values["incident"] = {
            "id": incident["key"],
            "title": incident["title"],
            "severity": incident["severity"],
            "team": incident["team"],
        }
        now = incident["created_at"]
        for runbook in runs.matching_runbooks(policy, values, auto_only=True):
            savepoint = work.connection.begin_nested()
            try:
                runs.start_run_in(
                    work.connection,
                    runbook,
                    incident_id=incident_id,
                    values=values,
                    trigger="auto",
                    requested_by="irules",
                    now=now,
                )
            except runs.RunRefused as refused:
                savepoint.rollback()
                incident_ops.add_timeline(
                    work.connection,
                    incident_id,
                    now,
                    "runbook.refused",
                    "irules",
                    f"Runbook {runbook.id} not started: {refused}",
                    {"runbook": runbook.id},
                )
                continue
            savepoint.commit()

    # ------------------------------------------------------------ timers

    def settle_flapping(self) -> int:
        """End flapping for alerts quiet for a whole flap window, and resolve incidents that became quiet.

        Returns how many alerts stopped flapping.
        """
        policy = self._policy()
        now = self.clock()
        settled = 0
        with self.store.write() as connection:
            if not _take_apply_lock(connection):
                return 0
            work = UnitOfWork(connection, self.store)
            rows = connection.execute(sa.select(alerts.c.key).where(alerts.c.flapping.is_(True))).scalars().all()
            work.preload_alerts(rows)
            for key in rows:
                row = work.alert(key)
                assert row is not None
                alert = Alert.from_row(row)
                settings = policy.flap_settings(alert)
                window = settings[0] if settings else 0.0
                last = _parse_moment(row["transitions"][-1]) if row["transitions"] else row["last_seen"]
                if (now - last).total_seconds() < window:
                    continue
                work.change_alert(key, flapping=False, transitions=[])
                settled += 1
                if row["incident_id"] is None:
                    continue
                work.add_timeline(
                    row["incident_id"],
                    now,
                    "alert.settled",
                    "irules",
                    f"Alert {row['name']} stopped flapping and is {row['status']}",
                    {"key": key, "status": row["status"]},
                )
                if row["status"] == RESOLVED:
                    work.quieted_at[row["incident_id"]] = now
            self._finish(work, policy)
        return settled


def _take_apply_lock(connection: sa.Connection) -> bool:
    """Take the cluster-wide lock on applying events for this transaction, and return False when another node holds it.

    On PostgreSQL this is a transaction-level advisory lock: it ends with the
    transaction, so a node that dies frees it at once. One node applies events at a
    time, so the events of one alert are applied in arrival order. SQLite has one
    writer per file, so it needs no lock.
    """
    if connection.dialect.name != "postgresql":
        return True
    # Advisory locks are per database, so the key includes a hash of the schema name. Stores in other
    # schemas share the lock only when their names collide in `hashtext`.
    schema_key = sa.func.hashtext(sa.func.current_schema())
    return connection.execute(sa.select(sa.func.pg_try_advisory_xact_lock(APPLY_LOCK_ID, schema_key))).scalar_one()


def _follows_dependencies(assessment: Assessment) -> bool:
    """Return whether an alert without an incident of its own may join an incident of a related service."""
    return assessment.correlation.follow_dependencies and assessment.service is not None


def _related_labels(assessment: Assessment) -> dict[str, str]:
    """Return the correlation labels that an incident of a related service must share with the alert: all but `service`."""
    return {name: value for name, value in assessment.correlation.labels.items() if name != "service"}


def _record_transition(policy: Policy, alert: Alert, row: dict, now: datetime.datetime) -> tuple[list[str], bool, bool]:
    """Record a state change and return (transitions, flapping now, flapping just started)."""
    settings = policy.flap_settings(alert)
    if settings is None:
        return [], False, False
    window, threshold = settings
    horizon = now - datetime.timedelta(seconds=window)
    transitions = [moment for moment in row["transitions"] if _parse_moment(moment) >= horizon]
    transitions.append(now.isoformat())
    was_flapping = bool(row["flapping"])
    flapping = was_flapping or len(transitions) >= threshold
    return transitions, flapping, flapping and not was_flapping


def _parse_moment(text: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(text)


def _title(alert: Alert) -> str:
    summary = alert.annotations.get("summary") or alert.annotations.get("title") or ""
    title = f"{alert.name}: {summary}" if summary and summary != alert.name else alert.name
    return title[:1000]
