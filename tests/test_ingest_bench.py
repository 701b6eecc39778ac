"""Smoke run of bench/ingest_bench.py: `--quick` against a real daemon and a real Alertmanager, without `--write`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
ALERTMANAGER = Path("/usr/bin/prometheus-alertmanager")
BATCHES = ("1", "100", "1,000")

# Outside CI a missing Alertmanager skips; in CI it fails, because .ci/run installs it.
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not ALERTMANAGER.exists() and not os.environ.get("CI"), reason="prometheus-alertmanager is not installed"),
]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict, str, str]:
    """Run the benchmark once for every test here; return its stdout, its JSON, and docs/benchmarks.md before and after."""
    docs = REPO / "docs" / "benchmarks.md"
    before = docs.read_text(encoding="utf-8")
    result_path = tmp_path_factory.mktemp("ingest-bench") / "result.json"
    completed = subprocess.run(
        [sys.executable, "bench/ingest_bench.py", "--quick", "--json", str(result_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    return completed.stdout, json.loads(result_path.read_text(encoding="utf-8")), before, docs.read_text(encoding="utf-8")


def table_after(text: str, header_start: str) -> list[list[str]]:
    """Return the body rows of the Markdown table whose header line starts with `header_start`, as lists of cells."""
    lines = text.splitlines()
    start = next(index for index, line in enumerate(lines) if line.startswith(header_start))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def number(cell: str) -> float:
    return float(cell.replace(",", ""))


def test_quick_throughput_table(quick_run: tuple[str, dict, str, str]) -> None:
    stdout = quick_run[0]
    rows = table_after(stdout, "| batch | connections | server |")

    assert [(row[0], row[2]) for row in rows] == [(batch, server) for batch in BATCHES for server in ("irules", "Alertmanager")]
    for row in rows:
        best, median, p50, p99 = number(row[3]), number(row[4]), number(row[6]), number(row[7])
        assert best >= median > 0
        assert p99 >= p50 > 0


def test_quick_ratio_and_pipeline_tables(quick_run: tuple[str, dict, str, str]) -> None:
    stdout, result = quick_run[0], quick_run[1]
    ratios = table_after(stdout, "| batch | irules / Alertmanager")
    pipeline = table_after(stdout, "| batch | alerts per run |")
    sent_per_run = [runs[0]["alerts_sent"] for runs in result["throughput"]["runs"]["irules"].values()]

    assert [row[0] for row in ratios] == list(BATCHES)
    assert all(number(row[1]) > 0 for row in ratios)
    assert [row[0] for row in pipeline] == list(BATCHES)
    assert [number(row[1]) for row in pipeline] == sent_per_run


def test_quick_every_alert_stored(quick_run: tuple[str, dict, str, str]) -> None:
    result = quick_run[1]
    throughput, memory = result["throughput"], result["memory"]

    sent = sum(run["alerts_sent"] for runs in throughput["runs"]["irules"].values() for run in runs)
    assert sent == throughput["alerts_sent"]
    assert throughput["alert_events_stored"] == sent
    assert memory["alerts_sent"] == memory["rows"][-1]["alerts"] > 0
    assert memory["alert_events_stored"] == memory["alerts_sent"]
    assert memory["alertmanager_active"] == memory["alerts_sent"]
    assert throughput["irules_exit_status"] == 0


def test_quick_every_request_accepted(quick_run: tuple[str, dict, str, str]) -> None:
    runs = quick_run[1]["throughput"]["runs"]

    for server, expected in (("irules", "202"), ("alertmanager", "200")):
        for run in (run for by_batch in runs[server].values() for run in by_batch):
            assert run["statuses"] == {expected: run["requests"]}


def test_quick_memory_table(quick_run: tuple[str, dict, str, str]) -> None:
    stdout, result = quick_run[0], quick_run[1]
    rows = table_after(stdout, "| active alerts |")
    checkpoints = [f"{row['alerts']:,}" for row in result["memory"]["rows"]]

    assert [row[0] for row in rows] == ["0 (started)", *checkpoints]
    assert len(checkpoints) == 2
    for row in rows:
        assert number(row[1]) > 0
        assert number(row[4]) > 0


def test_quick_leaves_docs_alone(quick_run: tuple[str, dict, str, str]) -> None:
    stdout, _result, before, after = quick_run

    assert "wrote the ingest section" not in stdout
    assert after == before
