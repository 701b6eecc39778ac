"""`irules metrics` run as a real child process on the history of test_metrics.py: table, JSON and dashboard."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from runtime.store import Store, database_url
from tests.runtime.test_metrics import HOSTILE_TITLE, write_history

REPO = Path(__file__).resolve().parents[2]
WINDOW_ARGS = ("--until", "2026-03-01T00:00:00Z", "--timeframe", "30d")

# Each test starts a Python interpreter, which takes most of a second.
pytestmark = pytest.mark.slow


def irules(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run `python -m runtime.cli ARGS` with this repository importable and no store variables inherited."""
    base = {key: value for key, value in os.environ.items() if not key.startswith("IRULES_")}
    base["PYTHONPATH"] = os.pathsep.join([str(REPO), base.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return subprocess.run(
        [sys.executable, "-m", "runtime.cli", *args],
        cwd=REPO,
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def state(tmp_path: Path) -> Path:
    """Return a state folder whose SQLite store contains the history."""
    folder = tmp_path / "state"
    store = Store.open(database_url(folder))
    try:
        write_history(store)
    finally:
        store.close()
    return folder


def _section(text: str, title: str) -> list[str]:
    """Return the lines of the table-format section that starts with the line `title`, up to the next blank line."""
    lines = text.splitlines()
    start = lines.index(title) + 1
    end = lines.index("", start) if "" in lines[start:] else len(lines)
    return lines[start:end]


def test_table_shows_hand_computed_figures(state: Path):
    result = irules("metrics", "--state", str(state), *WINDOW_ARGS)

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "12 incidents created from 2026-01-30 00:00 to 2026-03-01 00:00 UTC (30d)"
    acknowledge = _section(result.stdout, "Time to acknowledge (MTTA)")
    assert acknowledge[0].split() == ["BY", "VALUE", "COUNT", "MEAN", "P50", "P90", "P95"]
    assert acknowledge[1].split() == ["all", "-", "11", "13m", "33s", "6m", "30m", "1h"]
    assert acknowledge[2].split() == ["team", "payments", "3", "4m", "4m", "6m", "6m"]
    resolve = _section(result.stdout, "Time to resolve (MTTR)")
    assert resolve[1].split() == ["all", "-", "9", "1h", "28m", "1h", "4h", "4h"]
    assert "  success rate: 75% (6 of 8 finished runs)" in result.stdout
    assert "  reached level 2: 2 incidents" in result.stdout
    assert "  distinct alerts: 15; deduplicated events: 20" in result.stdout


def test_json_parses_with_hand_computed_values(state: Path):
    result = irules("metrics", "--format", "json", *WINDOW_ARGS, env={"IRULES_STATE": str(state)})

    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["incidents"]["total"] == 12
    assert document["incidents"]["by_team"] == {"payments": 4, "search": 4, "storage": 4}
    assert document["time_to_acknowledge"]["all"] == {
        "count": 11,
        "mean": 149 * 60 / 11,
        "p50": 360.0,
        "p90": 1800.0,
        "p95": 3600.0,
    }
    assert document["time_to_resolve"]["by_team"]["search"]["p50"] == 3600.0
    assert document["noise"]["alerts_per_incident"]["mean"] == 1.25
    assert document["noise"]["inhibited"] is None
    assert document["remediation"]["success_rate"] == 0.75
    assert document["escalations"]["reached"] == {"1": 4, "2": 2, "3": 1}


def test_json_reads_postgresql_through_environment(postgres_schema_url: str):
    store = Store.open(postgres_schema_url)
    try:
        write_history(store)
    finally:
        store.close()

    result = irules("metrics", "--format", "json", *WINDOW_ARGS, env={"IRULES_DATABASE": postgres_schema_url})

    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["incidents"]["by_status"]["resolved"] == 8
    assert document["time_to_resolve"]["all"]["p90"] == 14400.0


def test_dashboard_is_self_contained_and_escaped(state: Path, tmp_path: Path):
    page = tmp_path / "dashboard.html"

    result = irules("metrics", "--state", str(state), *WINDOW_ARGS, "--format", "dashboard", "--output", str(page))

    assert result.returncode == 0, result.stderr
    assert result.stdout == f"wrote {page}: 12 incidents from 2026-01-30 00:00 to 2026-03-01 00:00 UTC\n"
    html = page.read_text(encoding="utf-8")
    assert html.count("<svg") == 9
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert HOSTILE_TITLE not in html
    assert "<script" not in html.lower()
    assert re.search(r"https?://", html) is None
    assert re.search(r"\b(src|href)\s*=|url\(|@import|<link|<iframe|<object", html, re.IGNORECASE) is None


def test_output_file_holds_table(state: Path, tmp_path: Path):
    report = tmp_path / "report.txt"

    result = irules("metrics", "--state", str(state), *WINDOW_ARGS, "--output", str(report))

    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert report.read_text(encoding="utf-8").startswith("12 incidents created from 2026-01-30 00:00")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("--timeframe", "30x"),
            "irules: invalid timeframe '30x': write a number and a unit (s, m, h, d or w), such as 30d or 12h\n",
        ),
        (
            ("--until", "yesterday"),
            "irules: invalid --until 'yesterday': write an ISO 8601 moment such as 2026-03-01T00:00:00Z\n",
        ),
        (("--format", "dashboard"), "irules: --format dashboard writes an HTML file: pass --output FILE\n"),
        (
            ("--timeframe", "100000w"),
            "irules: invalid timeframe '100000w': a report covers at most 3660 days (about 10 years)\n",
        ),
        (
            ("--until", "0001-01-01"),
            "irules: a window of 2592000 s ending at 0001-01-01T00:00:00+00:00 would start before year 1\n",
        ),
        (
            ("--database", "sqlite:///x.db"),
            "irules: pass exactly one of --state DIR, --database URL or --daemon URL (--state and --database were given)\n",
        ),
    ],
)
def test_usage_errors_exit_2(state: Path, args: tuple[str, ...], message: str):
    result = irules("metrics", "--state", str(state), *args)

    assert result.returncode == 2
    assert result.stderr == message


def test_missing_store_is_not_created(tmp_path: Path):
    folder = tmp_path / "nothing"

    result = irules("metrics", "--state", str(folder))

    assert result.returncode == 2
    assert result.stderr == f"irules: state folder {str(folder)!r} does not exist\n"
    assert not folder.exists()
