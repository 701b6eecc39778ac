"""Post-mortems of a scripted incident on SQLite and PostgreSQL: times, timeline, steps, messages, causes, snapshots."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest
from syrupy.assertion import SnapshotAssertion
from syrupy.extensions.single_file import SingleFileSnapshotExtension, WriteMode

from runtime import incidents as incident_ops
from runtime.reports.postmortem import collect, render
from runtime.reports.postmortem_render import escape_markdown
from runtime.reports.postmortem_texts import TEXTS, format_duration, format_share, format_time
from runtime.store import Store
from tests.runtime.postmortem_scenario import SESSION, Scripted, at, script_incident


class MarkdownSnapshot(SingleFileSnapshotExtension):
    _write_mode = WriteMode.TEXT
    file_extension = "md"


class HtmlSnapshot(SingleFileSnapshotExtension):
    _write_mode = WriteMode.TEXT
    file_extension = "html"


@pytest.fixture
def scripted(store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Scripted:
    return script_incident(store, tmp_path, monkeypatch)


def section(document: str, heading: str) -> list[str]:
    """Return the lines of the Markdown section under `## heading`, up to the next `## ` heading."""
    lines = document.splitlines()
    start = lines.index(f"## {heading}") + 1
    end = next((index for index in range(start, len(lines)) if lines[index].startswith("## ")), len(lines))
    return [line for line in lines[start:end] if line]


def table_rows(lines: list[str]) -> list[str]:
    """Return the body rows of the first Markdown table in `lines`, without its header and separator."""
    rows = [line for line in lines if line.startswith("| ")]
    return rows[2:]


# ---------------------------------------------------------------- times


@pytest.mark.slow
def test_timings_of_the_scripted_incident(store: Store, scripted: Scripted) -> None:
    timings = collect(store, scripted.key).timings

    assert timings.started_at == at(0)
    assert timings.detected_at == at(2)
    assert timings.acknowledged_at == at(7)
    assert timings.resolved_at == at(12)
    assert timings.time_to_detect == 120.0
    assert timings.time_to_acknowledge == 420.0
    assert timings.time_to_resolve == 720.0


@pytest.mark.slow
def test_durations_shown_in_both_locales(store: Store, scripted: Scripted) -> None:
    post_mortem = collect(store, scripted.key)
    english = render(post_mortem, locale="en")
    german = render(post_mortem, locale="de")

    assert section(english, "Detection and response times")[:6] == [
        "| Moment | Time |",
        "| --- | --- |",
        "| Started (earliest alert) | 2026-03-08 10:00:00 UTC |",
        "| Detected (incident opened) | 2026-03-08 10:02:00 UTC |",
        "| Acknowledged | 2026-03-08 10:07:00 UTC |",
        "| Resolved | 2026-03-08 10:12:00 UTC |",
    ]
    assert section(english, "Detection and response times")[6:9] == [
        "- **Time to detect:** 2 min",
        "- **Time to acknowledge:** 7 min",
        "- **Time to resolve:** 12 min",
    ]
    assert section(german, "Erkennungs- und Reaktionszeiten")[2:9] == [
        "| Beginn (frühester Alarm) | 08.03.2026 10:00:00 UTC |",
        "| Erkannt (Vorfall eröffnet) | 08.03.2026 10:02:00 UTC |",
        "| Bestätigt | 08.03.2026 10:07:00 UTC |",
        "| Behoben | 08.03.2026 10:12:00 UTC |",
        "- **Zeit bis zur Erkennung:** 2 Min.",
        "- **Zeit bis zur Bestätigung:** 7 Min.",
        "- **Zeit bis zur Behebung:** 12 Min.",
    ]
    assert "- **Duration:** 12 min" in section(english, "Summary")
    assert "- **Dauer:** 12 Min." in section(german, "Zusammenfassung")


# ---------------------------------------------------------------- timeline


@pytest.mark.slow
def test_timeline_lists_every_event_in_order(store: Store, scripted: Scripted) -> None:
    stored = incident_ops.show(store, scripted.key)["timeline"]
    document = render(collect(store, scripted.key))

    rows = table_rows(section(document, "Timeline"))
    expected = [
        "| {} | {} | {} | {} |".format(
            format_time(datetime.datetime.fromisoformat(entry["at"]), "en"),
            escape_markdown(entry["kind"]),
            escape_markdown(entry["actor"]),
            escape_markdown(entry["message"]),
        )
        for entry in stored
    ]
    assert rows == expected
    assert len(rows) == 32
    assert rows[0] == (
        "| 2026-03-08 10:02:00 UTC | incident.detected | source:grafana "
        "| Incident INC-2026-0002 opened: CheckoutDown: CheckoutDown on checkout |"
    )
    assert rows[12] == (
        "| 2026-03-08 10:09:00 UTC | step.approval | bob "
        "| bob approved step look of runbook rollback run 1: checked the dashboards first |"
    )
    assert rows[-3] == (
        "| 2026-03-08 10:12:00 UTC | incident.status | carol "
        "| Status changed from investigating to resolved: reverted deploy 41 by hand (1 of its alerts still firing) |"
    )


# ---------------------------------------------------------------- alerts, runs, messages


@pytest.mark.slow
def test_alerts_show_labels_times_and_counts(store: Store, scripted: Scripted) -> None:
    rows = table_rows(section(render(collect(store, scripted.key)), "Alerts"))

    assert rows == [
        "| CheckoutDown: CheckoutDown on checkout | firing | cluster=eu-1, service=checkout, severity=critical "
        "| 2026-03-08 10:00:00 UTC |  | 1 | no |",
        "| LedgerErrors: LedgerErrors on ledger | resolved | cluster=eu-1, service=ledger "
        "| 2026-03-08 10:00:00 UTC | 2026-03-08 10:11:00 UTC | 1 | no |",
    ]


@pytest.mark.slow
def test_every_step_shows_outcome_and_approver(store: Store, scripted: Scripted) -> None:
    post_mortem = collect(store, scripted.key)
    (run,) = post_mortem.runs

    assert (run.runbook, run.status, run.requested_by, run.trigger) == ("rollback", "failed", "alice", "manual")
    assert [(step.name, step.state) for step in run.steps] == [
        ("look", "succeeded"),
        ("revert", "compensated"),
        ("undo", "succeeded"),
    ]
    (approval,) = run.steps[0].approvals
    assert (approval.status, approval.decided_by, approval.decided_at) == ("granted", "bob", at(9))
    assert scripted.tool_log.read_text(encoding="utf-8").splitlines() == [
        '["status", "checkout"]',
        '["fail", "checkout"]',
        '["undo", "checkout"]',
    ]

    english = section(render(post_mortem, locale="en"), "Actions and runbooks")
    assert english[:6] == [
        "### Run 1 of runbook rollback",
        "- **Status:** failed",
        "- **Requested by:** alice (manual)",
        "- **Started:** 2026-03-08 10:08:00 UTC",
        "- **Finished:** 2026-03-08 10:09:00 UTC",
        "- **Detail:** step \\`revert\\` failed: exited with code 1",
    ]
    assert table_rows(english) == [
        "| look | succeeded | tool status checkout "
        "| approved by bob at 2026-03-08 10:09:00 UTC: checked the dashboards first | 2026-03-08 10:09:00 UTC |  |",
        "| revert | failed, compensated | tool fail checkout |  | 2026-03-08 10:09:00 UTC | exited with code 1 |",
        "| undo | succeeded | tool undo checkout |  | 2026-03-08 10:09:00 UTC |  |",
    ]
    german = section(render(post_mortem, locale="de"), "Maßnahmen und Runbooks")
    assert [row.split(" | ")[1:4] for row in table_rows(german)] == [
        ["erfolgreich", "tool status checkout", "freigegeben von bob am 08.03.2026 10:09:00 UTC: checked the dashboards first"],
        ["fehlgeschlagen, ausgeglichen", "tool fail checkout", ""],
        ["erfolgreich", "tool undo checkout", ""],
    ]


@pytest.mark.slow
def test_communication_log_lists_the_outbox(store: Store, scripted: Scripted) -> None:
    rows = table_rows(section(render(collect(store, scripted.key)), "Communication log"))

    # `opened` goes out after the 30 s group wait and `acknowledged` at once. The ledger alert
    # resolved at 10:11, so `updated` goes out when the 5 min group interval after 10:07 ends.
    assert rows == [
        "| 2026-03-08 10:02:30 UTC | webhook | payments | opened | delivered | 2026-03-08 10:02:30 UTC | 1 |",
        "| 2026-03-08 10:07:00 UTC | webhook | payments | acknowledged | delivered | 2026-03-08 10:07:00 UTC | 1 |",
        "| 2026-03-08 10:08:00 UTC | webhook | payments | approval request | delivered | 2026-03-08 10:09:00 UTC | 1 |",
        "| 2026-03-08 10:12:00 UTC | webhook | payments | updated | delivered | 2026-03-08 10:12:00 UTC | 1 |",
        "| 2026-03-08 10:12:00 UTC | webhook | payments | resolved | delivered | 2026-03-08 10:12:00 UTC | 1 |",
    ]


# ---------------------------------------------------------------- root cause


@pytest.mark.slow
def test_root_causes_name_their_sources(store: Store, scripted: Scripted) -> None:
    post_mortem = collect(store, scripted.key)

    assert [(item.source, item.text, item.by) for item in post_mortem.root_causes] == [
        ("impact", "ledger", None),
        ("assist", "`ledger` is the likely origin, because `checkout` depends on it and both alert", "local"),
        # The note without the " (1 of its alerts still firing)" that the timeline entry adds.
        ("responder", "reverted deploy 41 by hand", "carol"),
    ]
    assert post_mortem.root_causes[0].explains == ("checkout", "ledger")
    assert post_mortem.root_causes[1].confidence == 0.65
    assert post_mortem.root_causes[1].focus == "root-cause"
    assert [(item.source, item.text) for item in post_mortem.contributing_factors] == [("impact", "checkout")]
    assert [(item.id, item.resolution, item.resolved_by) for item in post_mortem.similar] == [
        ("INC-2026-0001", "restarted the ledger pods", "erin")
    ]
    assert [(item.provider, item.session_id, item.linked_by) for item in post_mortem.sessions] == [
        ("claude-code", SESSION, "dave")
    ]

    german = section(render(post_mortem, locale="de"), "Ursache und beitragende Faktoren")
    assert german[1] == "- ledger: erklärt die Alarme von checkout, ledger — *Quelle: Auswirkungsanalyse des Dienstgraphen*"
    assert german[4] == "- reverted deploy 41 by hand — *Quelle: Notiz zur Behebung von carol am 08.03.2026 10:12:00 UTC*"


# ---------------------------------------------------------------- snapshots


@pytest.mark.slow
def test_documents_match_snapshots(store: Store, scripted: Scripted, snapshot: SnapshotAssertion) -> None:
    post_mortem = collect(store, scripted.key)

    assert render(post_mortem, locale="en") == snapshot(name="en", extension_class=MarkdownSnapshot)
    assert render(post_mortem, locale="de") == snapshot(name="de", extension_class=MarkdownSnapshot)
    assert render(post_mortem, locale="de", output_format="html") == snapshot(name="de", extension_class=HtmlSnapshot)


@pytest.mark.slow
def test_rendering_twice_gives_the_same_text(store: Store, scripted: Scripted) -> None:
    first = render(collect(store, scripted.key), locale="de", output_format="html")

    assert render(collect(store, scripted.key), locale="de", output_format="html") == first


# ---------------------------------------------------------------- an incident without alerts


@pytest.mark.slow
def test_hand_made_incident_shows_what_is_missing(store: Store) -> None:
    incident_ops.create(store, "INC-{number}", at(0), title="Slow logins", severity=None, services=[], team=None, actor="erin")
    document = render(collect(store, "INC-1"))

    assert "- **Duration:** not resolved yet" in section(document, "Summary")
    assert "- **Severity:** Unclassified" in section(document, "Summary")
    assert section(document, "Impact") == ["No impact analysis was recorded for this incident."]
    assert section(document, "Alerts") == ["No alerts belong to this incident."]
    assert section(document, "Actions and runbooks") == ["No runbook ran for this incident."]
    assert section(document, "Communication log") == ["No notification was queued for this incident."]
    assert "- **Time to acknowledge:** not yet" in section(document, "Detection and response times")
    assert section(document, "Root cause and contributing factors")[:3] == [
        "### Root cause",
        "Neither the incident nor an assisted diagnosis names a root cause. Fill it in below.",
        "> Replace this line with the root cause as the team established it.",
    ]


def test_unknown_incident_is_not_found(store: Store) -> None:
    with pytest.raises(incident_ops.IncidentError, match="incident 'INC-9' not found"):
        collect(store, "INC-9")


# ---------------------------------------------------------------- wording and formats


def _keys(texts: dict, prefix: str = "") -> set[str]:
    found = set()
    for name, value in texts.items():
        found.add(prefix + name)
        if isinstance(value, dict):
            found |= _keys(value, f"{prefix}{name}.")
    return found


def test_every_locale_has_every_text() -> None:
    assert _keys(TEXTS["de"]) == _keys(TEXTS["en"])
    assert len(TEXTS["de"]["placeholders"]["lessons"]) == len(TEXTS["en"]["placeholders"]["lessons"])


@pytest.mark.parametrize(
    ("seconds", "english", "german"),
    [
        (0, "0 s", "0 Sek."),
        (45, "45 s", "45 Sek."),
        (120, "2 min", "2 Min."),
        (750, "12 min 30 s", "12 Min. 30 Sek."),
        (3_900, "1 h 5 min", "1 Std. 5 Min."),
        (90_061, "1 d 1 h 1 min 1 s", "1 Tg. 1 Std. 1 Min. 1 Sek."),
        # Cut, not rounded: shown times drop their fraction, so 10:00:00 to 10:18:49.6 reads 18 min 49 s.
        (1_129.6, "18 min 49 s", "18 Min. 49 Sek."),
        (None, "not yet", "noch nicht"),
    ],
)
def test_format_duration(seconds: float | None, english: str, german: str) -> None:
    assert format_duration(seconds, "en") == english
    assert format_duration(seconds, "de") == german


def test_format_time_and_share() -> None:
    moment = datetime.datetime(2026, 3, 8, 11, 2, 3, tzinfo=datetime.timezone(datetime.timedelta(hours=1)))

    assert format_time(moment, "en") == "2026-03-08 10:02:03 UTC"
    assert format_time(moment, "de") == "08.03.2026 10:02:03 UTC"
    assert format_share(0.654, "en") == "65%"
    assert format_share(0.654, "de") == "65 %"


@pytest.mark.parametrize(
    ("value", "escaped"),
    [
        ("plain words", "plain words"),
        ("<script>alert(1)</script>", "&lt;script&gt;alert(1)&lt;/script&gt;"),
        ("**bold** _it_ `code` ~~gone~~", "\\*\\*bold\\*\\* \\_it\\_ \\`code\\` \\~\\~gone\\~\\~"),
        ("[a](javascript:x) ![i](x)", "\\[a\\](javascript:x) !\\[i\\](x)"),
        ("a | b", "a \\| b"),
        ("line\nbreak\r\n# heading", "line break  # heading"),
        ("# heading", "\\# heading"),
        ("- item", "\\- item"),
        ("  + item", "  \\+ item"),
        ("1. item", "1\\. item"),
        ("12) item", "12\\) item"),
        ("08.03.2026", "08.03.2026"),
        ("&amp; \\", "&amp;amp; \\\\"),
        ("$x$", "\\$x\\$"),
    ],
)
def test_escape_markdown(value: str, escaped: str) -> None:
    assert escape_markdown(value) == escaped


def test_fixed_texts_need_no_escaping() -> None:
    # Markdown escaping leaves the wording as written, so no fixed text shows a stray backslash.
    for locale, texts in TEXTS.items():
        for text in _strings(texts):
            assert escape_markdown(text) == text, (locale, text)


def _strings(value: object) -> list[str]:
    if isinstance(value, dict):
        return [text for item in value.values() for text in _strings(item)]
    if isinstance(value, list):
        return [text for item in value for text in _strings(item)]
    return [value] if isinstance(value, str) else []


def test_alert_end_is_senders_ends_at() -> None:
    # The start is the sender's `startsAt`, so the end must be its `endsAt`, not when irules
    # received the resolution (a replayed fixture would otherwise seem to fire for years).
    from runtime.reports.postmortem import _alert

    start = datetime.datetime(2024, 5, 14, 9, 21, 7, tzinfo=datetime.UTC)
    row = {
        "name": "CheckoutDown", "status": "resolved", "severity": "high", "source": "alertmanager",
        "labels": {"alertname": "CheckoutDown"}, "annotations": {}, "starts_at": start, "first_seen": start,
        "ends_at": start + datetime.timedelta(minutes=27), "resolved_at": datetime.datetime(2026, 12, 5, tzinfo=datetime.UTC),
        "occurrences": 1, "flapping": False,
    }  # fmt: skip
    assert _alert(row).ends_at == start + datetime.timedelta(minutes=27)
    assert _alert({**row, "ends_at": None}).ends_at == row["resolved_at"]
    assert _alert({**row, "status": "firing"}).ends_at is None
