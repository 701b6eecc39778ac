"""The dashboard's chart layout, and the escaping of store text in its SVG and tables."""

from __future__ import annotations

import datetime
from pathlib import Path

from runtime.reports.dashboard import bar_chart, days_chart, render_dashboard
from runtime.reports.metrics import Window, collect_metrics
from runtime.store import Store, database_url
from runtime.store.schema import incidents, runbook_runs

UTC = datetime.UTC
HOSTILE_TEAM = '<img src=x onerror="alert(1)">'
HOSTILE_SERVICE = "</svg><script>alert(2)</script>"
HOSTILE_RUNBOOK = "rb-<b>bold</b>"


def test_bar_chart_scales_to_largest():
    chart = bar_chart([("a", [(10.0, "10", "#000")]), ("b", [(5.0, "5", "#000")]), ("c", [(0.0, "0", "#000")])])

    assert [bar.width for bar in chart.bars] == [240.0, 120.0, 0.0]
    assert [bar.y for bar in chart.bars] == [0.0, 22.0, 44.0]
    assert chart.height == 68


def test_bar_chart_groups_bars_of_one_row():
    chart = bar_chart([("team", [(1.0, "1s", "#1"), (2.0, "2s", "#2"), (4.0, "4s", "#3")])])

    assert [bar.label for bar in chart.bars] == ["team", "", ""]
    assert [bar.tooltip for bar in chart.bars] == ["team: 1s", "team: 2s", "team: 4s"]
    assert [bar.width for bar in chart.bars] == [60.0, 120.0, 240.0]


def test_days_chart_heights_and_labels():
    chart = days_chart([(datetime.date(2026, 2, day), count) for day, count in ((1, 0), (2, 2), (3, 1))])

    assert [column.height for column in chart.columns] == [0.0, 148.0, 74.0]
    assert [column.tooltip for column in chart.columns] == [
        "2026-02-01: 0 incidents",
        "2026-02-02: 2 incidents",
        "2026-02-03: 1 incident",
    ]
    assert [text for _x, text in chart.day_labels] == ["02-01", "02-02", "02-03"]
    assert chart.scale == [(158.0, "0"), (10.0, "2")]


def test_days_chart_labels_at_most_ten_days():
    start = datetime.date(2026, 1, 1)
    chart = days_chart([(start + datetime.timedelta(days=offset), 1) for offset in range(30)])

    assert [text for _x, text in chart.day_labels] == [
        "01-01",
        "01-04",
        "01-07",
        "01-10",
        "01-13",
        "01-16",
        "01-19",
        "01-22",
        "01-25",
        "01-28",
    ]


def test_hostile_store_text_is_escaped(tmp_path: Path):
    created = datetime.datetime(2026, 2, 1, tzinfo=UTC)
    store = Store.open(database_url(tmp_path / "state"))
    try:
        with store.write() as connection:
            incident_id = connection.execute(
                incidents.insert()
                .values(
                    key="INC-1",
                    title="title",
                    status="resolved",
                    team=HOSTILE_TEAM,
                    services=[HOSTILE_SERVICE],
                    receivers=[],
                    labels={},
                    created_at=created,
                    updated_at=created,
                    last_alert_at=created,
                    acknowledged_at=created + datetime.timedelta(minutes=1),
                    resolved_at=created + datetime.timedelta(minutes=2),
                    alert_count=0,
                    firing_count=0,
                )
                .returning(incidents.c.id)
            ).scalar_one()
            connection.execute(
                runbook_runs.insert().values(
                    runbook_id=HOSTILE_RUNBOOK,
                    incident_id=incident_id,
                    status="succeeded",
                    trigger="auto",
                    requested_by="irules",
                    values={},
                    created_at=created,
                )
            )
        with store.read() as connection:
            metrics = collect_metrics(connection, Window(created, created + datetime.timedelta(days=1)))
    finally:
        store.close()

    html = render_dashboard(metrics, timeframe="1d", generated_at=created)

    for raw in (HOSTILE_TEAM, HOSTILE_SERVICE, HOSTILE_RUNBOOK, "<script", "<img", "<b>"):
        assert raw not in html
    assert "&lt;img src=x onerror=&#34;alert(1)&#34;&gt;" in html
    assert "&lt;/svg&gt;&lt;script&gt;alert(2)&lt;/script&gt;" in html
    assert "rb-&lt;b&gt;bold&lt;/b&gt;" in html
