"""The incident list's filters and pages, read from a real store on SQLite and on PostgreSQL."""

from __future__ import annotations

import datetime

import pytest

from runtime import incidents as incident_ops
from runtime.store import Store
from runtime.store.schema import alerts
from runtime.web import reading
from runtime.web.reading import PAGE_SIZE, Filters, incident_page

NOW = datetime.datetime(2026, 3, 8, 10, 0, tzinfo=datetime.UTC)
SEVERITIES = ("critical", "high", "medium", "low")

pytestmark = pytest.mark.slow


def services_of(number: int) -> list[str]:
    return [["api"], ["api-gateway"], ["database", "api"]][number % 3]


@pytest.fixture
def history(store: Store) -> Store:
    """Thirty incidents, numbered 1 to 30, with severity, team and services cycling; every fifth is resolved."""
    for number in range(1, 31):
        incident_ops.create(
            store,
            "INC-{number}",
            NOW + datetime.timedelta(minutes=number),
            title=f"Incident {number}" if number != 7 else "100% CPU_load on web-1",
            severity=SEVERITIES[number % 4],
            services=services_of(number),
            team="payments" if number % 2 else "platform",
            actor="test",
        )
        if number % 5 == 0:
            change = incident_ops.Change(status="resolved")
            incident_ops.update(store, f"INC-{number}", change, "test", NOW + datetime.timedelta(hours=1))
    with store.write() as connection:
        connection.execute(
            alerts.insert().values(
                key="k1",
                fingerprint="f1",
                source="alertmanager",
                name="DiskFullOnReplica",
                status="firing",
                labels={},
                annotations={},
                first_seen=NOW,
                last_seen=NOW,
                occurrences=1,
                receivers=[],
                incident_id=12,
                transitions=[],
                flapping=False,
            )
        )
    return store


def numbers(store: Store, filters: Filters, **cursor: int) -> list[int]:
    return [item["number"] for item in incident_page(store, filters, **cursor).incidents]


def test_first_page_is_newest(history: Store) -> None:
    page = incident_page(history, Filters())
    assert [item["number"] for item in page.incidents] == list(range(30, 5, -1))
    assert len(page.incidents) == PAGE_SIZE
    assert (page.newer, page.older) == (None, 6)


def test_older_and_newer_pages(history: Store) -> None:
    older = incident_page(history, Filters(), before=6)
    assert [item["number"] for item in older.incidents] == [5, 4, 3, 2, 1]
    assert (older.newer, older.older) == (5, None)
    newer = incident_page(history, Filters(), after=5)
    assert [item["number"] for item in newer.incidents] == list(range(30, 5, -1))
    assert (newer.newer, newer.older) == (None, 6)


def test_service_filter_matches_whole_names(history: Store) -> None:
    assert numbers(history, Filters(service="api-gateway")) == [28, 25, 22, 19, 16, 13, 10, 7, 4, 1]
    api = numbers(history, Filters(service="api"))
    assert api == [number for number in range(30, 0, -1) if number % 3 != 1][:PAGE_SIZE]
    assert len(api) == 20
    assert numbers(history, Filters(service="ap")) == []


def test_status_and_open_filters(history: Store) -> None:
    assert numbers(history, Filters(status=("resolved",))) == [30, 25, 20, 15, 10, 5]
    open_numbers = numbers(history, Filters(open_only=True), before=31)
    assert open_numbers == [number for number in range(30, 0, -1) if number % 5][:PAGE_SIZE]


def test_severity_and_team_filters(history: Store) -> None:
    assert numbers(history, Filters(severity=("critical",), team="platform")) == [28, 24, 20, 16, 12, 8, 4]
    # Odd numbers are `payments`, and their severity alternates between high (1 mod 4) and low (3 mod 4).
    assert numbers(history, Filters(severity=("low", "high"), team="payments")) == list(range(29, 0, -2))


def test_text_filter_matches_key_title_and_alert_name(history: Store) -> None:
    assert numbers(history, Filters(text="incident 2")) == [29, 28, 27, 26, 25, 24, 23, 22, 21, 20, 2]
    assert numbers(history, Filters(text="INC-30")) == [30]
    assert numbers(history, Filters(text="diskfull")) == [12]


def test_text_filter_takes_wildcards_literally(history: Store) -> None:
    assert numbers(history, Filters(text="100%")) == [7]
    assert numbers(history, Filters(text="CPU_load")) == [7]
    assert numbers(history, Filters(text="%")) == [7]
    assert numbers(history, Filters(text="_")) == [7]
    assert numbers(history, Filters(text="CPU%load")) == []


def test_filtered_pages_cut_by_matches(history: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    # Small pages and small reads, so three pages and several reads per page are exercised.
    monkeypatch.setattr(reading, "PAGE_SIZE", 8)
    monkeypatch.setattr(reading, "_SCAN_CHUNK", 3)
    api = Filters(service="api")
    first = incident_page(history, api)
    assert [item["number"] for item in first.incidents] == [30, 29, 27, 26, 24, 23, 21, 20]
    assert (first.newer, first.older) == (None, 20)
    second = incident_page(history, api, before=20)
    assert [item["number"] for item in second.incidents] == [18, 17, 15, 14, 12, 11, 9, 8]
    assert (second.newer, second.older) == (18, 8)
    third = incident_page(history, api, before=8)
    assert [item["number"] for item in third.incidents] == [6, 5, 3, 2]
    assert (third.newer, third.older) == (6, None)
    back = incident_page(history, api, after=18)
    assert [item["number"] for item in back.incidents] == [30, 29, 27, 26, 24, 23, 21, 20]
    assert (back.newer, back.older) == (None, 20)


def test_empty_page_has_no_cursors(history: Store) -> None:
    page = incident_page(history, Filters(team="nobody"))
    assert page == reading.Page(incidents=[], newer=None, older=None)
