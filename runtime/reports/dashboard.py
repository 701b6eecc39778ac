"""The metrics dashboard: one self-contained HTML file with inline CSS and SVG charts.

The page needs no JavaScript and no network: it loads no script, style sheet,
font or image. Charts are laid out here, as rectangles and labels in pixels,
and drawn by the Jinja2 template `templates/dashboard.html.j2`, which escapes
every value. So an incident title or team name from the store appears as text
in the page, whatever markup it contains.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from jinja2 import FileSystemLoader, StrictUndefined
from jinja2.sandbox import SandboxedEnvironment

from runtime.reports.metrics import NONE, PERCENTILE_METHOD, Breakdown, Distribution, Metrics, format_duration

TEMPLATES = Path(__file__).with_name("templates")

# Colours of the charts: a neutral one, one per percentile, and one per severity.
BAR_COLOR = "#4c78a8"
PERCENTILE_COLORS = {"p50": "#9ecae9", "p90": "#4c78a8", "p95": "#1f3b5a"}
SEVERITY_COLORS = {"critical": "#c0392b", "high": "#e67e22", "medium": "#d4ac0d", "low": "#2e86c1", NONE: "#95a5a6"}

# Geometry of the horizontal bar charts, in pixels.
CHART_WIDTH = 440
LABEL_WIDTH = 130
VALUE_WIDTH = 70
BAR_HEIGHT = 14
ROW_GAP = 8
LABEL_CHARS = 20
# Rows of a chart by team or by service. The tables list every team and service.
MAX_ROWS = 12

# Geometry of the incidents-per-day chart.
DAYS_WIDTH = 900
DAYS_HEIGHT = 180
DAYS_LEFT = 36
DAYS_BOTTOM = 22
DAYS_TOP = 10
DAY_LABELS = 10


@dataclass(frozen=True, slots=True)
class Bar:
    """One horizontal bar: its row's label (empty for the second bar of a row onward), position, size and texts."""

    label: str
    tooltip: str
    value_text: str
    y: float
    width: float
    color: str


@dataclass(frozen=True, slots=True)
class BarChart:
    """Horizontal bars, one row per label and one bar per series in each row."""

    width: int
    height: int
    label_width: int
    bar_height: int
    bars: list[Bar]
    legend: list[tuple[str, str]]

    @property
    def empty(self) -> bool:
        return not self.bars


@dataclass(frozen=True, slots=True)
class Column:
    """One day of the incidents-per-day chart."""

    x: float
    y: float
    width: float
    height: float
    tooltip: str


@dataclass(frozen=True, slots=True)
class ColumnChart:
    """Vertical columns over the days of the window, with date labels under some of them and a scale on the left."""

    width: int
    height: int
    left: int
    top: int
    bottom: float
    columns: list[Column]
    day_labels: list[tuple[float, str]]
    scale: list[tuple[float, str]]


def bar_chart(rows: Sequence[tuple[str, Sequence[tuple[float, str, str]]]], legend: Sequence[tuple[str, str]] = ()) -> BarChart:
    """Lay out `rows` of (label, bars), each bar a (value, shown value, colour), on one scale from zero to the largest value."""
    largest = max((value for _label, bars in rows for value, _text, _color in bars), default=0.0)
    span = CHART_WIDTH - LABEL_WIDTH - VALUE_WIDTH
    laid_out = []
    y = 0.0
    for label, bars in rows:
        for index, (value, text, color) in enumerate(bars):
            width = _bar_width(value, largest, span)
            row_label = _shorten(label) if index == 0 else ""
            laid_out.append(Bar(row_label, f"{label}: {text}", text, round(y, 1), round(width, 1), color))
            y += BAR_HEIGHT + 2
        y += ROW_GAP - 2
    return BarChart(CHART_WIDTH, int(y) + 2, LABEL_WIDTH, BAR_HEIGHT, laid_out, list(legend))


def count_chart(counts: Mapping[str, int], colors: Mapping[str, str] | None = None) -> BarChart:
    """Lay out one bar per name of `counts`, at most `MAX_ROWS` of them."""
    rows = [
        (name, [(float(count), str(count), (colors or {}).get(name, BAR_COLOR))])
        for name, count in list(counts.items())[:MAX_ROWS]
    ]
    return bar_chart(rows)


def percentile_chart(overall: Distribution, by_group: Mapping[str, Distribution], everything: str) -> BarChart:
    """Lay out p50, p90 and p95 of a duration over every incident (labelled `everything`) and by group.

    Only the `MAX_ROWS` groups with the most incidents get a row, in the order of `by_group`.
    """
    largest = set(sorted(by_group, key=lambda name: (-by_group[name].count, name))[:MAX_ROWS])
    groups = [(everything, overall), *((name, values) for name, values in by_group.items() if name in largest)]
    rows = []
    for name, values in groups:
        if values.count == 0:
            continue
        bars = [(values.p50, "p50"), (values.p90, "p90"), (values.p95, "p95")]
        rows.append((name, [(seconds or 0.0, format_duration(seconds), PERCENTILE_COLORS[which]) for seconds, which in bars]))
    return bar_chart(rows, legend=[(name, color) for name, color in PERCENTILE_COLORS.items()])


def days_chart(per_day: Sequence[tuple[datetime.date, int]]) -> ColumnChart:
    """Lay out one column per day, with dates under at most `DAY_LABELS` of them."""
    bottom = DAYS_HEIGHT - DAYS_BOTTOM
    plot_height = bottom - DAYS_TOP
    slot = (DAYS_WIDTH - DAYS_LEFT) / max(1, len(per_day))
    largest = max((count for _day, count in per_day), default=0)
    columns = []
    for index, (day, count) in enumerate(per_day):
        height = 0.0 if largest == 0 else count / largest * plot_height
        x = DAYS_LEFT + index * slot + slot * 0.1
        noun = "incident" if count == 1 else "incidents"
        columns.append(
            Column(
                round(x, 1),
                round(bottom - height, 1),
                round(max(1.0, slot * 0.8), 1),
                round(height, 1),
                f"{day.isoformat()}: {count} {noun}",
            )
        )
    step = max(1, -(-len(per_day) // DAY_LABELS))
    labels = [
        (round(DAYS_LEFT + index * slot + slot / 2, 1), day.strftime("%m-%d"))
        for index, (day, _count) in enumerate(per_day)
        if index % step == 0
    ]
    scale = [(float(bottom), "0")]
    if largest:
        scale.append((float(DAYS_TOP), str(largest)))
    return ColumnChart(DAYS_WIDTH, DAYS_HEIGHT, DAYS_LEFT, DAYS_TOP, float(bottom), columns, labels, scale)


def _bar_width(value: float, largest: float, span: float) -> float:
    """Return the width of a bar for `value`: at least one pixel when it is above zero, so it stays visible."""
    if value <= 0 or largest <= 0:
        return 0.0
    return max(1.0, value / largest * span)


def _shorten(label: str) -> str:
    return label if len(label) <= LABEL_CHARS else label[: LABEL_CHARS - 1] + "…"


def _duration_rows(breakdown: Breakdown) -> list[tuple[str, str, Distribution]]:
    """Return (group, name, distribution) rows of a breakdown for its table, overall first."""
    rows = [("all", "", breakdown.overall)]
    for group, values in (("team", breakdown.by_team), ("service", breakdown.by_service), ("severity", breakdown.by_severity)):
        rows += [(group, name, value) for name, value in values.items()]
    return rows


def _environment() -> SandboxedEnvironment:
    environment = SandboxedEnvironment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters["duration"] = format_duration
    return environment


def render_dashboard(metrics: Metrics, *, timeframe: str, generated_at: datetime.datetime | None = None) -> str:
    """Return the dashboard of `metrics` as one HTML page.

    Example:
        html = render_dashboard(collect_metrics(connection, window), timeframe="30d")
    """
    generated_at = generated_at or datetime.datetime.now(datetime.UTC)
    counts = metrics.counts
    template = _environment().get_template("dashboard.html.j2")
    return template.render(
        metrics=metrics,
        timeframe=timeframe,
        generated_at=generated_at.astimezone(datetime.UTC).strftime("%Y-%m-%d %H:%M"),
        window_start=metrics.window.start.strftime("%Y-%m-%d %H:%M"),
        window_end=metrics.window.end.strftime("%Y-%m-%d %H:%M"),
        percentile_method=PERCENTILE_METHOD,
        days=days_chart(counts.per_day),
        by_team=count_chart(counts.by_team),
        by_severity=count_chart(counts.by_severity, SEVERITY_COLORS),
        by_service=count_chart(counts.by_service),
        by_status=count_chart(counts.by_status),
        acknowledge_chart=percentile_chart(metrics.acknowledge.overall, metrics.acknowledge.by_team, "all teams"),
        resolve_chart=percentile_chart(metrics.resolve.overall, metrics.resolve.by_team, "all teams"),
        acknowledge_rows=_duration_rows(metrics.acknowledge),
        resolve_rows=_duration_rows(metrics.resolve),
        outcomes=count_chart(metrics.noise.events_by_outcome),
        escalations=count_chart({f"level {level}": count for level, count in metrics.escalations.reached.items()}),
    )
