"""`irules post-mortem` as a child process: output, exit codes, store options and template overrides."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from runtime import incidents as incident_ops
from runtime.reports.postmortem import collect, render
from runtime.store import Store, database_url
from tests.runtime.postmortem_scenario import at, script_incident

REPO = Path(__file__).resolve().parents[2]

# Each test starts at least one Python interpreter.
pytestmark = pytest.mark.slow


def irules(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run `python -m runtime.cli ARGS` with this repository importable and no store taken from the environment."""
    clean = {key: value for key, value in os.environ.items() if key not in ("IRULES_DEBUG", "IRULES_STATE", "IRULES_DATABASE")}
    clean["PYTHONPATH"] = os.pathsep.join([str(REPO), clean.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return subprocess.run(
        [sys.executable, "-m", "runtime.cli", "post-mortem", *args],
        cwd=REPO,
        env={**clean, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def hand_made(store: Store) -> str:
    """Open an incident without alerts, which is enough for a post-mortem, and return its key."""
    incident_ops.create(
        store, "INC-{number}", at(0), title="Slow logins", severity="high", services=["web"], team="identity", actor="erin"
    )
    return "INC-1"


def test_markdown_to_standard_output(store: Store, store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = script_incident(store, tmp_path, monkeypatch).key

    result = irules("--incident-id", key, "--output", "-", "--database", store_url)

    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == render(collect(store, key), locale="en", output_format="md")
    assert "- **Time to acknowledge:** 7 min" in result.stdout


def test_html_file_in_german(store: Store, store_url: str, tmp_path: Path) -> None:
    key = hand_made(store)
    target = tmp_path / "pm.html"

    result = irules(
        "--incident-id", key, "--output", str(target), "--locale", "de", "--format", "html", env={"IRULES_DATABASE": store_url}
    )

    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == f"INC-1: post-mortem written to {target}\n"
    text = target.read_text(encoding="utf-8")
    assert text.startswith('<!DOCTYPE html>\n<html lang="de">\n')
    assert "<dt>Schweregrad</dt><dd>Hoch</dd>" in text
    assert text == render(collect(store, key), locale="de", output_format="html")


def test_incident_found_by_number(store: Store, store_url: str) -> None:
    hand_made(store)

    result = irules("--incident-id", "1", "--output", "-", "--database", store_url)

    assert result.returncode == 0
    assert result.stdout.startswith("# Post-mortem INC-1: Slow logins\n")


def test_unknown_incident_exits_1(store: Store, store_url: str) -> None:
    result = irules("--incident-id", "INC-2026-9999", "--output", "-", "--database", store_url)

    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == "irules: incident 'INC-2026-9999' not found\n"


def test_bad_locale_is_a_usage_error(tmp_path: Path) -> None:
    result = irules("--incident-id", "1", "--output", "-", "--state", str(tmp_path), "--locale", "fr")

    assert result.returncode == 2
    assert "Invalid value for '--locale'" in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_format_is_a_usage_error(tmp_path: Path) -> None:
    result = irules("--incident-id", "1", "--output", "-", "--state", str(tmp_path), "--format", "pdf")

    assert result.returncode == 2
    assert "Invalid value for '--format'" in result.stderr


def test_store_is_required(tmp_path: Path) -> None:
    result = irules("--incident-id", "1", "--output", "-")

    assert result.returncode == 2
    assert result.stderr == "irules: pass exactly one of --state DIR, --database URL or --daemon URL (none was given)\n"


def test_folder_without_store_is_a_usage_error(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()

    result = irules("--incident-id", "1", "--output", "-", "--state", str(empty))

    assert result.returncode == 2
    assert result.stderr == f"irules: no store in {empty}: irules.db not found\n"
    # A mistyped folder gets no stray database.
    assert list(empty.iterdir()) == []


def test_missing_state_folder_is_a_usage_error(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"

    result = irules("--incident-id", "1", "--output", "-", "--state", str(missing))

    assert result.returncode == 2
    assert result.stderr == f"irules: state folder {str(missing)!r} does not exist\n"
    assert not missing.exists()


def test_missing_template_folder_is_a_usage_error(tmp_path: Path) -> None:
    result = irules("--incident-id", "1", "--output", "-", "--state", str(tmp_path), "--template-dir", str(tmp_path / "none"))

    assert result.returncode == 2
    assert result.stderr == f"irules: template folder {str(tmp_path / 'none')!r} does not exist\n"


# ---------------------------------------------------------------- templates


def test_template_override_replaces_sections_by_name(store: Store, store_url: str, tmp_path: Path) -> None:
    key = hand_made(store)
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "postmortem.md.j2").write_text(
        '{% extends "shipped/postmortem.md.j2" %}\n'
        "{% block lessons %}\n\n## What we learned\n\n{{ incident.title }} taught us {{ '**nothing**' }}.\n{% endblock %}\n",
        encoding="utf-8",
    )
    (templates / "postmortem.de.md.j2").write_text("Vorfall {{ incident.key }}: {{ incident.status | status_name }}\n")

    english = irules("--incident-id", key, "--output", "-", "--database", store_url, "--template-dir", str(templates))
    german = irules(
        "--incident-id", key, "--output", "-", "--database", store_url, "--template-dir", str(templates), "--locale", "de"
    )

    assert english.returncode == 0, english.stderr
    assert "## What we learned\n\nSlow logins taught us \\*\\*nothing\\*\\*.\n" in english.stdout
    assert "## Lessons learned" not in english.stdout
    assert "## Summary" in english.stdout
    assert german.returncode == 0, german.stderr
    assert german.stdout == "Vorfall INC-1: Erkannt\n"


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("{% if %}", "irules: template postmortem.md.j2, line 1: Expected an expression, got 'end of statement block'\n"),
        (
            "{{ incident.__class__ }}",
            "irules: template postmortem.md.j2 failed: access to attribute '__class__' of 'Incident' object is unsafe.\n",
        ),
        (
            "{{ t.fields.update({}) }}",
            "irules: template postmortem.md.j2 failed: access to attribute 'update' of 'dict' object is unsafe.\n",
        ),
        ("{{ no_such_value }}", "irules: template postmortem.md.j2 failed: 'no_such_value' is undefined\n"),
        ('{% include "../postmortem.md.j2" %}', "irules: template postmortem.md.j2: template ../postmortem.md.j2 not found\n"),
        (
            '{% extends "postmortem.md.j2" %}',
            "irules: template postmortem.md.j2 extends or includes itself; extend `shipped/postmortem.md.j2` instead\n",
        ),
    ],
)
def test_broken_or_unsafe_template_exits_1(tmp_path: Path, source: str, message: str) -> None:
    # Templates fail the same way on every database, so SQLite alone is used here.
    store = Store.open(database_url(tmp_path / "state"))
    try:
        hand_made(store)
    finally:
        store.close()
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "postmortem.md.j2").write_text(source, encoding="utf-8")
    target = tmp_path / "pm.md"

    result = irules(
        "--incident-id", "INC-1", "--output", str(target), "--state", str(tmp_path / "state"), "--template-dir", str(templates)
    )

    assert (result.returncode, result.stderr) == (1, message)
    assert not target.exists()
