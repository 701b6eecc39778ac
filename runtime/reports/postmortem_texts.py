"""The fixed wording of post-mortems in English and German, and the formats of times, durations and shares.

Templates read these texts as `t`. Every locale has every key of `en`, which
`tests/runtime/test_postmortem.py` checks. Times are always shown in UTC with
the zone named, whatever the locale.
"""

from __future__ import annotations

import datetime
from typing import Any

from runtime.notify.render import TEXTS as NOTIFICATION_TEXTS

LOCALES = ("en", "de")

TEXTS: dict[str, dict[str, Any]] = {
    "en": {
        "document": "Post-mortem",
        "sections": {
            "summary": "Summary",
            "impact": "Impact",
            "times": "Detection and response times",
            "timeline": "Timeline",
            "alerts": "Alerts",
            "actions": "Actions and runbooks",
            "communication": "Communication log",
            "cause": "Root cause and contributing factors",
            "root_cause": "Root cause",
            "contributing": "Contributing factors",
            "similar": "Similar past incidents",
            "sessions": "Assistant sessions",
            "lessons": "Lessons learned",
            "action_items": "Action items",
        },
        "fields": {
            "incident": "Incident",
            "title": "Title",
            "severity": "Severity",
            "team": "Team",
            "services": "Services",
            "status": "Status",
            "duration": "Duration",
            "assignee": "Assignee",
            "acknowledged_by": "Acknowledged by",
            "impact_score": "Impact score",
            "urgency_score": "Urgency score",
            "likely_cause": "Likely cause",
            "user_facing": "User-facing services",
            "classifier": "Severity from the classifier",
            "service": "Service",
            "distance": "Distance (hops)",
            "tier": "Tier",
            "alerting": "Alerting",
            "via": "Reached through",
            "moment": "Moment",
            "time": "Time",
            "event": "Event",
            "actor": "Actor",
            "message": "Message",
            "alert": "Alert",
            "labels": "Labels",
            "start": "Start",
            "end": "End",
            "occurrences": "Occurrences",
            "flapping": "Flapping",
            "step": "Step",
            "outcome": "Outcome",
            "operation": "Operation",
            "approval": "Approval",
            "detail": "Detail",
            "requested_by": "Requested by",
            "started": "Started",
            "finished": "Finished",
            "created": "Queued",
            "channel": "Channel",
            "receiver": "Receiver",
            "sent": "Sent",
            "attempts": "Attempts",
            "source": "Source",
            "confidence": "Confidence",
            "score": "Similarity",
            "resolution": "Resolution",
            "focus": "Focus",
            "action": "Action",
            "owner": "Owner",
            "due": "Due",
            "ticket": "Ticket",
        },
        "moments": {
            "started": "Started (earliest alert)",
            "detected": "Detected (incident opened)",
            "acknowledged": "Acknowledged",
            "resolved": "Resolved",
        },
        "durations": {
            "detect": "Time to detect",
            "acknowledge": "Time to acknowledge",
            "resolve": "Time to resolve",
        },
        "times_note": "Every duration counts from the start of the incident's earliest alert, as its sender reported it.",
        "run": "Run {run} of runbook {runbook}",
        "session": "{provider} session {session}, linked by {by} at {at}",
        "similar_resolved": "Resolved by {by} at {at}",
        "triggers": {"manual": "manual", "auto": "automatic", "automatic": "automatic", "assist": "assisted diagnosis"},
        "step_states": {
            "pending": "pending",
            "running": "running",
            "waiting": "waiting",
            "succeeded": "succeeded",
            "failed": "failed",
            "skipped": "skipped",
            "compensated": "failed, compensated",
            "interrupted": "interrupted",
            "cancelled": "cancelled",
        },
        "run_states": {
            "running": "running",
            "waiting": "waiting",
            "succeeded": "succeeded",
            "failed": "failed",
            "cancelled": "cancelled",
        },
        "approvals": {
            "granted": "approved by {by} at {at}",
            "denied": "denied by {by} at {at}",
            "timed_out": "timed out at {at}",
            "expired": "expired at {at}, when the run ended",
            "pending": "waiting for {team}",
            "retry": "{by} decided to retry at {at}",
            "skip": "{by} decided to skip at {at}",
            "fail": "{by} decided to fail at {at}",
        },
        "events": {
            "opened": "opened",
            "updated": "updated",
            "acknowledged": "acknowledged",
            "resolved": "resolved",
            "escalated": "escalated",
            "reminder": "reminder",
            "approval": "approval request",
        },
        "delivery": {
            "pending": "pending",
            "sending": "sending",
            "delivered": "delivered",
            "failed": "failed",
            "cancelled": "cancelled",
            "folded": "folded into a digest",
        },
        "sources": {
            "impact": "impact analysis of the service graph",
            "assist": "assisted diagnosis by {provider} ({focus}) at {at}",
            "responder": "resolution note by {by} at {at}",
        },
        "explains": "explains the alerts of {services}",
        "classifier": "{level} at {confidence} confidence",
        "review": "flagged for review",
        "yes": "yes",
        "no": "no",
        "none": "none",
        "not_yet": "not yet",
        "not_resolved": "not resolved yet",
        "nothing": {
            "impact": "No impact analysis was recorded for this incident.",
            "timeline": "The timeline is empty.",
            "alerts": "No alerts belong to this incident.",
            "actions": "No runbook ran for this incident.",
            "steps": "The run recorded no steps.",
            "communication": "No notification was queued for this incident.",
            "root_cause": "Neither the incident nor an assisted diagnosis names a root cause. Fill it in below.",
            "contributing": "None recorded.",
        },
        "placeholders": {
            "root_cause": "Replace this line with the root cause as the team established it.",
            "lessons": [
                "What went well?",
                "What went wrong?",
                "Where did we get lucky?",
            ],
            "lessons_hint": "Replace these questions with the team's answers.",
            "action_item": "Describe one change that prevents a repeat or shortens the next incident.",
        },
    },
    "de": {
        "document": "Post-Mortem",
        "sections": {
            "summary": "Zusammenfassung",
            "impact": "Auswirkungen",
            "times": "Erkennungs- und Reaktionszeiten",
            "timeline": "Zeitverlauf",
            "alerts": "Alarme",
            "actions": "Maßnahmen und Runbooks",
            "communication": "Kommunikationsprotokoll",
            "cause": "Ursache und beitragende Faktoren",
            "root_cause": "Ursache",
            "contributing": "Beitragende Faktoren",
            "similar": "Ähnliche frühere Vorfälle",
            "sessions": "Sitzungen mit Assistenten",
            "lessons": "Erkenntnisse",
            "action_items": "Folgemaßnahmen",
        },
        "fields": {
            "incident": "Vorfall",
            "title": "Titel",
            "severity": "Schweregrad",
            "team": "Team",
            "services": "Dienste",
            "status": "Status",
            "duration": "Dauer",
            "assignee": "Zuständig",
            "acknowledged_by": "Bestätigt von",
            "impact_score": "Auswirkung",
            "urgency_score": "Dringlichkeit",
            "likely_cause": "Wahrscheinliche Ursache",
            "user_facing": "Dienste mit Nutzerkontakt",
            "classifier": "Schweregrad laut Klassifikator",
            "service": "Dienst",
            "distance": "Abstand (Schritte)",
            "tier": "Stufe",
            "alerting": "Alarmiert",
            "via": "Erreicht über",
            "moment": "Zeitpunkt",
            "time": "Zeit",
            "event": "Ereignis",
            "actor": "Ausgelöst von",
            "message": "Meldung",
            "alert": "Alarm",
            "labels": "Labels",
            "start": "Beginn",
            "end": "Ende",
            "occurrences": "Vorkommen",
            "flapping": "Flattert",
            "step": "Schritt",
            "outcome": "Ergebnis",
            "operation": "Vorgang",
            "approval": "Freigabe",
            "detail": "Details",
            "requested_by": "Angefordert von",
            "started": "Gestartet",
            "finished": "Beendet",
            "created": "Eingereiht",
            "channel": "Kanal",
            "receiver": "Empfänger",
            "sent": "Gesendet",
            "attempts": "Versuche",
            "source": "Quelle",
            "confidence": "Konfidenz",
            "score": "Ähnlichkeit",
            "resolution": "Lösung",
            "focus": "Schwerpunkt",
            "action": "Maßnahme",
            "owner": "Verantwortlich",
            "due": "Fällig",
            "ticket": "Ticket",
        },
        "moments": {
            "started": "Beginn (frühester Alarm)",
            "detected": "Erkannt (Vorfall eröffnet)",
            "acknowledged": "Bestätigt",
            "resolved": "Behoben",
        },
        "durations": {
            "detect": "Zeit bis zur Erkennung",
            "acknowledge": "Zeit bis zur Bestätigung",
            "resolve": "Zeit bis zur Behebung",
        },
        "times_note": "Alle Dauern zählen ab dem Beginn des frühesten Alarms, so wie sein Absender ihn gemeldet hat.",
        "run": "Lauf {run} von Runbook {runbook}",
        "session": "Sitzung {session} von {provider}, verknüpft von {by} am {at}",
        "similar_resolved": "Behoben von {by} am {at}",
        "triggers": {"manual": "manuell", "auto": "automatisch", "automatic": "automatisch", "assist": "assistierte Diagnose"},
        "step_states": {
            "pending": "ausstehend",
            "running": "läuft",
            "waiting": "wartet",
            "succeeded": "erfolgreich",
            "failed": "fehlgeschlagen",
            "skipped": "übersprungen",
            "compensated": "fehlgeschlagen, ausgeglichen",
            "interrupted": "unterbrochen",
            "cancelled": "abgebrochen",
        },
        "run_states": {
            "running": "läuft",
            "waiting": "wartet",
            "succeeded": "erfolgreich",
            "failed": "fehlgeschlagen",
            "cancelled": "abgebrochen",
        },
        "approvals": {
            "granted": "freigegeben von {by} am {at}",
            "denied": "abgelehnt von {by} am {at}",
            "timed_out": "Frist abgelaufen am {at}",
            "expired": "verfallen am {at}, als der Lauf endete",
            "pending": "wartet auf {team}",
            "retry": "{by} hat am {at} einen neuen Versuch angeordnet",
            "skip": "{by} hat am {at} das Überspringen angeordnet",
            "fail": "{by} hat am {at} den Abbruch angeordnet",
        },
        "events": {
            "opened": "eröffnet",
            "updated": "aktualisiert",
            "acknowledged": "bestätigt",
            "resolved": "behoben",
            "escalated": "eskaliert",
            "reminder": "Erinnerung",
            "approval": "Freigabeanfrage",
        },
        "delivery": {
            "pending": "ausstehend",
            "sending": "wird gesendet",
            "delivered": "zugestellt",
            "failed": "fehlgeschlagen",
            "cancelled": "storniert",
            "folded": "in einer Sammelnachricht zusammengefasst",
        },
        "sources": {
            "impact": "Auswirkungsanalyse des Dienstgraphen",
            "assist": "assistierte Diagnose durch {provider} ({focus}) am {at}",
            "responder": "Notiz zur Behebung von {by} am {at}",
        },
        "explains": "erklärt die Alarme von {services}",
        "classifier": "{level} mit {confidence} Konfidenz",
        "review": "zur Prüfung markiert",
        "yes": "ja",
        "no": "nein",
        "none": "keine",
        "not_yet": "noch nicht",
        "not_resolved": "noch nicht behoben",
        "nothing": {
            "impact": "Für diesen Vorfall wurde keine Auswirkungsanalyse erfasst.",
            "timeline": "Der Zeitverlauf ist leer.",
            "alerts": "Zu diesem Vorfall gehören keine Alarme.",
            "actions": "Für diesen Vorfall lief kein Runbook.",
            "steps": "Der Lauf hat keine Schritte erfasst.",
            "communication": "Für diesen Vorfall wurde keine Benachrichtigung eingereiht.",
            "root_cause": "Weder der Vorfall noch eine assistierte Diagnose nennt eine Ursache. Bitte unten ergänzen.",
            "contributing": "Keine erfasst.",
        },
        "placeholders": {
            "root_cause": "Ersetzen Sie diese Zeile durch die Ursache, wie das Team sie festgestellt hat.",
            "lessons": [
                "Was lief gut?",
                "Was lief schlecht?",
                "Wo hatten wir Glück?",
            ],
            "lessons_hint": "Ersetzen Sie diese Fragen durch die Antworten des Teams.",
            "action_item": "Beschreiben Sie eine Änderung, die eine Wiederholung verhindert oder den nächsten Vorfall verkürzt.",
        },
    },
}

# Severities and states are named as notifications name them, so that both read alike.
for _locale, _texts in TEXTS.items():
    _texts.update({key: NOTIFICATION_TEXTS[_locale][key] for key in ("severities", "unclassified", "statuses", "alert_statuses")})

_TIME_FORMATS = {"en": "%Y-%m-%d %H:%M:%S UTC", "de": "%d.%m.%Y %H:%M:%S UTC"}
# Units of days, hours, minutes and seconds.
_UNITS = {"en": ("d", "h", "min", "s"), "de": ("Tg.", "Std.", "Min.", "Sek.")}


def texts(locale: str) -> dict[str, Any]:
    """Return the wording of `locale`, one of `LOCALES`."""
    return TEXTS[locale]


def format_time(moment: datetime.datetime | None, locale: str) -> str:
    """Return `moment` in UTC in the locale's format with the zone named, or empty text for None."""
    if moment is None:
        return ""
    return moment.astimezone(datetime.UTC).strftime(_TIME_FORMATS[locale])


def format_duration(seconds: float | None, locale: str) -> str:
    """Return a duration with every non-zero unit down to seconds, such as `1 h 5 min` or `1 Std. 5 Min.`.

    None, for a moment that has not come yet, gives the locale's "not yet".
    """
    if seconds is None:
        return TEXTS[locale]["not_yet"]
    # Whole seconds are cut off, as the times beside the durations are shown, so the two agree.
    remaining = max(int(seconds), 0)
    days, remaining = divmod(remaining, 86_400)
    hours, remaining = divmod(remaining, 3_600)
    minutes, secs = divmod(remaining, 60)
    units = _UNITS[locale]
    parts = [f"{amount} {unit}" for amount, unit in zip((days, hours, minutes, secs), units, strict=True) if amount]
    return " ".join(parts) or f"0 {units[3]}"


def format_share(value: float | None, locale: str) -> str:
    """Return a share from 0 to 1 as whole percent: `65%` in English, `65 %` in German."""
    if value is None:
        return ""
    percent = round(value * 100)
    return f"{percent} %" if locale == "de" else f"{percent}%"
