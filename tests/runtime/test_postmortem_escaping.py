"""Alert data with HTML, script and Markdown in it shows as text in post-mortems, never as markup."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

import pytest
from markdown_it import MarkdownIt

from runtime.reports.postmortem import collect, render
from runtime.store import Store
from tests.runtime.postmortem_scenario import alert, script_incident

ALERT_NAME = '<script>alert("pm")</script>'
INSTANCE = "<img src=x onerror=alert(1)>"
NOTE = "**bold** _it_ [click](javascript:alert(1)) ![i](http://127.0.0.1:9/x.png) `code` ~~gone~~ a | b"
SUMMARY = "</td></tr><tr><td>injected\n# Heading\n1. item\n<b>&lt;b&gt;</b>"

# Token types that only markup in the source creates; the shipped template writes none of them.
MARKUP_TOKENS = {"html_block", "html_inline", "link_open", "image", "code_inline", "code_block", "fence", "s_open"}


@pytest.fixture
def hostile(store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """Play the scripted incident with hostile alert data and return the incident's key."""
    scripted = script_incident(
        store,
        tmp_path,
        monkeypatch,
        alert(ALERT_NAME, "checkout", summary=SUMMARY, severity="critical", instance=INSTANCE, note=NOTE),
        alert("LedgerErrors", "ledger"),
    )
    return scripted.key


def markdown_text(tokens: list) -> str:
    """Return the text that readers see in rendered Markdown, one line per block, entities decoded."""
    return "\n".join(inline_text(token) for token in tokens if token.type == "inline")


def inline_text(token) -> str:  # type: ignore[no-untyped-def]
    return "".join(child.content for child in token.children or [] if child.type == "text")


@pytest.mark.slow
def test_markdown_shows_alert_data_as_text(store: Store, hostile: str) -> None:
    document = render(collect(store, hostile), locale="en", output_format="md")
    tokens = MarkdownIt("commonmark").enable("table").enable("strikethrough").parse(document)

    assert {token.type for token in tokens} & MARKUP_TOKENS == set()
    for child in (child for token in tokens for child in token.children or []):
        assert child.type not in MARKUP_TOKENS
    visible = markdown_text(tokens)
    assert ALERT_NAME in visible
    assert f"instance={INSTANCE}" in visible
    assert f"note={NOTE}" in visible
    # Line breaks became spaces, so the summary stays in its table cell.
    assert "</td></tr><tr><td>injected # Heading 1. item <b>&lt;b&gt;</b>" in visible
    headings = [inline_text(tokens[index + 1]) for index, token in enumerate(tokens) if token.type == "heading_open"]
    assert headings == [
        f"Post-mortem {hostile}: {ALERT_NAME}: {SUMMARY.replace(chr(10), ' ')}",
        "Summary",
        "Impact",
        "Detection and response times",
        "Timeline",
        "Alerts",
        "Actions and runbooks",
        "Run 1 of runbook rollback",
        "Communication log",
        "Root cause and contributing factors",
        "Root cause",
        "Contributing factors",
        "Assistant sessions",
        "Lessons learned",
        "Action items",
    ]


def table_after(tokens: list, heading: str) -> list[list[str]]:
    """Return the rows, as cell texts, of the first table after the heading `heading`."""
    start = next(index for index, token in enumerate(tokens) if token.type == "inline" and inline_text(token) == heading)
    rows: list[list[str]] = []
    for token in tokens[start:]:
        if token.type == "tr_open":
            rows.append([])
        elif token.type == "inline" and rows:
            rows[-1].append(inline_text(token))
        elif token.type == "table_close":
            break
    return rows


@pytest.mark.slow
def test_markdown_tables_keep_their_cells(store: Store, hostile: str) -> None:
    document = render(collect(store, hostile), locale="de", output_format="md")
    tokens = MarkdownIt("commonmark").enable("table").parse(document)

    rows = table_after(tokens, "Alarme")
    assert rows == [
        ["Alarm", "Status", "Labels", "Beginn", "Ende", "Vorkommen", "Flattert"],
        [
            f"{ALERT_NAME}: {SUMMARY.replace(chr(10), ' ')}",
            "aktiv",
            f"cluster=eu-1, instance={INSTANCE}, note={NOTE}, service=checkout, severity=critical",
            "08.03.2026 10:00:00 UTC",
            "",
            "1",
            "nein",
        ],
        ["LedgerErrors: LedgerErrors on ledger", "behoben", "cluster=eu-1, service=ledger"]
        + ["08.03.2026 10:00:00 UTC", "08.03.2026 10:11:00 UTC", "1", "nein"],
    ]
    timeline = table_after(tokens, "Zeitverlauf")
    assert timeline[2] == ["08.03.2026 10:02:00 UTC", "alert.added", "source:grafana", f"Alert {ALERT_NAME} firing"]


class _Elements(HTMLParser):
    """A parser that collects every element with its attributes, and the text outside tags."""

    def __init__(self) -> None:
        super().__init__()
        self.elements: list[tuple[str, list[tuple[str, str | None]]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, attrs))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


@pytest.mark.slow
def test_html_shows_alert_data_as_text(store: Store, hostile: str) -> None:
    document = render(collect(store, hostile), locale="de", output_format="html")
    parser = _Elements()
    parser.feed(document)

    tags = {tag for tag, _attrs in parser.elements}
    assert tags <= {"html", "head", "meta", "title", "style", "body", "section", "h1", "h2", "h3", "dl", "dt", "dd"} | {
        "table", "tr", "th", "td", "code", "ul", "li", "p", "span", "div",
    }  # fmt: skip
    assert not [name for _tag, attrs in parser.elements for name, _value in attrs if name.startswith("on")]
    visible = "".join(parser.text)
    assert ALERT_NAME in visible
    assert INSTANCE in visible
    assert NOTE in visible
    assert SUMMARY in visible
