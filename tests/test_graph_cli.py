"""`irules graph`: DOT and SVG output of a runbook's step graph, and its errors."""

from __future__ import annotations

import shutil
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest
from click.testing import Result
from typer.testing import CliRunner

from runtime.cli import app

REPO = Path(__file__).resolve().parent.parent
PRODUCTION = REPO / "examples" / "production"
SVG_NAMESPACE = "{http://www.w3.org/2000/svg}"

RUNBOOK = """\
team ops { slack "#ops" }
route { receiver ops }

runbook deploy-fix "Roll back a bad deploy" {
  manual
  step inspect { run ["kubectl", "get", "pods"] }
  step rollback {
    run ["kubectl", "rollout", "undo", "deployment/web"]
    risk high
    approval from ops timeout 10m
    on_failure page_ops
  }
  step page_ops { notify ops }
}
"""

requires_graphviz = pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz `dot` is not installed")


def run_graph(*args: str) -> Result:
    return CliRunner().invoke(app, ["graph", *args])


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "rules.irules").write_text(RUNBOOK, encoding="utf-8")
    return tmp_path


def test_dot_labels_kind_risk_and_approval(project: Path):
    result = run_graph(str(project), "--runbook", "deploy-fix")
    assert result.exit_code == 0, result.stderr
    assert '"rollback" [label="rollback\\nrun\\nrisk high\\napproval from ops"];' in result.stdout


def test_dot_compensation_edge_is_dashed(project: Path):
    result = run_graph(str(project), "--runbook", "deploy-fix")
    assert '"rollback" -> "page_ops" [label="on_failure", style=dashed, color=red];' in result.stdout
    assert '"page_ops" [label="page_ops\\nnotify", style=dashed];' in result.stdout


def test_dot_dependency_edge_is_plain(project: Path):
    result = run_graph(str(project), "--runbook", "deploy-fix")
    assert '  "inspect" -> "rollback";\n' in result.stdout


def test_output_option_writes_file(project: Path, tmp_path: Path):
    target = tmp_path / "graph.dot"
    result = run_graph(str(project), "--runbook", "deploy-fix", "--output", str(target))
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""
    assert target.read_text(encoding="utf-8").startswith('digraph "deploy-fix" {')


@requires_graphviz
@pytest.mark.slow
def test_svg_is_well_formed(project: Path, tmp_path: Path):
    target = tmp_path / "graph.svg"
    result = run_graph(str(project), "--runbook", "deploy-fix", "--format", "svg", "--output", str(target))
    assert result.exit_code == 0, result.stderr
    root = ElementTree.fromstring(target.read_bytes())
    assert root.tag == f"{SVG_NAMESPACE}svg"
    titles = {element.text for element in root.iter(f"{SVG_NAMESPACE}title")}
    assert {"inspect", "rollback", "page_ops"} <= titles


@requires_graphviz
@pytest.mark.slow
def test_svg_of_stdlib_runbook_in_example():
    result = run_graph(str(PRODUCTION), "--runbook", "rb-002", "--format", "svg")
    assert result.exit_code == 0, result.stderr
    assert ElementTree.fromstring(result.stdout_bytes).tag == f"{SVG_NAMESPACE}svg"


def test_missing_graphviz_exits_2(project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    result = run_graph(str(project), "--runbook", "deploy-fix", "--format", "svg")
    assert result.exit_code == 2
    assert "install Graphviz" in result.stderr


def test_unknown_runbook_suggests_close_name(project: Path):
    result = run_graph(str(project), "--runbook", "deploy-fx")
    assert result.exit_code == 1
    assert result.stderr == "irules: unknown runbook `deploy-fx`; a runbook with a similar name exists: `deploy-fix`\n"


def test_unknown_runbook_lists_known_ones(project: Path):
    result = run_graph(str(project), "--runbook", "nothing-like-it")
    assert result.exit_code == 1
    assert "the runbooks are `deploy-fix`, `rb-001`, `rb-002`, `rb-003`" in result.stderr


def test_rules_with_errors_exit_1(tmp_path: Path):
    (tmp_path / "rules.irules").write_text(RUNBOOK.replace("receiver ops", "receiver opz"), encoding="utf-8")
    result = run_graph(str(tmp_path), "--runbook", "deploy-fix")
    assert result.exit_code == 1
    assert "error[IR0203]" in result.stderr
    assert "no graph was drawn" in result.stderr


def test_environment_selects_overrides(tmp_path: Path):
    source = RUNBOOK + "environment staging {\n  runbook deploy-fix { step only { wait 1s } }\n}\n"
    (tmp_path / "rules.irules").write_text(source, encoding="utf-8")
    result = run_graph(str(tmp_path), "--runbook", "deploy-fix", "--env", "staging")
    assert result.exit_code == 0, result.stderr
    assert '"only" [label="only\\nwait"];' in result.stdout
    assert '"rollback"' not in result.stdout


def test_missing_path_exits_2(tmp_path: Path):
    result = run_graph(str(tmp_path / "absent"), "--runbook", "x")
    assert result.exit_code == 2
