"""The contract of `irules compile` and `irules diff`: exit codes, written files, unified diffs, no traceback.

compile: 0 when the artifacts are written, 1 on errors in the rules or an
artifact that cannot be produced (nothing written), 2 on usage and I/O errors.
diff: 0 when the compiled artifacts equal the folder, 1 when any differs or
is missing, 2 on errors in the rules and usage errors.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import Result
from typer.testing import CliRunner

from runtime.cli import app
from tests.conftest import EXAMPLES, REPO

ARTIFACTS = ["alertmanager.yml", "pagerduty.json", "ruleset.json"]
CLEAN = """
receiver chat {
  webhook "https://hooks.example.com/chat"
}

route {
  receiver chat
  match team = "db" -> chat
}
"""
UNKNOWN_RECEIVER = 'receiver chat { webhook "https://hooks.example.com/chat" }\nroute { receiver chaat }\n'
# Valid rules that Alertmanager cannot deliver: email needs an SMTP server in `settings`.
UNDELIVERABLE = 'receiver mail { email "ops@example.com" }\nroute { receiver mail }\n'
SLACK_APP = '\nsettings { daemon_url "https://irules.example.com" }\nslack { app_name "Ops" }\n'


def run(*args: str | Path) -> Result:
    result = CliRunner().invoke(app, [str(arg) for arg in args])
    assert_no_traceback(result)
    return result


def assert_no_traceback(result: Result) -> None:
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    assert "internal error" not in result.output


def rules(folder: Path, text: str = CLEAN) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "rules.irules").write_text(text, encoding="utf-8")
    return folder


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return rules(tmp_path / "rules")


@pytest.fixture
def built(project: Path, tmp_path: Path) -> Path:
    out = tmp_path / "build"
    assert run("compile", project, "--out", out).exit_code == 0
    return out


# ---------------------------------------------------------------- compile


def test_compile_writes_every_artifact(project: Path, tmp_path: Path) -> None:
    out = tmp_path / "build"
    result = run("compile", project, "--out", out)
    assert result.exit_code == 0, result.output
    assert sorted(path.name for path in out.iterdir()) == sorted(ARTIFACTS)
    for name in ARTIFACTS:
        assert f"wrote {out / name}" in result.stdout


def test_compile_writes_slack_manifest_for_slack_app(tmp_path: Path) -> None:
    out = tmp_path / "build"
    result = run("compile", rules(tmp_path / "rules", CLEAN + SLACK_APP), "--out", out)
    assert result.exit_code == 0, result.output
    assert (out / "slack-manifest.yaml").is_file()


def test_compile_again_keeps_unchanged_files(project: Path, built: Path) -> None:
    before = {name: (built / name).stat().st_ino for name in ARTIFACTS}
    result = run("compile", project, "--out", built)
    assert result.exit_code == 0
    assert "wrote" not in result.stdout
    assert f"0 written, 3 unchanged in {built}" in result.stdout
    assert {name: (built / name).stat().st_ino for name in ARTIFACTS} == before


def test_compile_rewrites_only_changed_files(project: Path, built: Path) -> None:
    (built / "pagerduty.json").write_text("{}\n", encoding="utf-8")
    result = run("compile", project, "--out", built)
    assert result.exit_code == 0
    assert result.stdout.count("wrote ") == 1
    assert f"wrote {built / 'pagerduty.json'}" in result.stdout


def test_compile_leaves_no_temporary_files(built: Path) -> None:
    assert sorted(path.name for path in built.iterdir()) == sorted(ARTIFACTS)


def test_compile_removes_artifact_no_longer_produced(tmp_path: Path) -> None:
    folder = rules(tmp_path / "rules", CLEAN + SLACK_APP)
    out = tmp_path / "build"
    run("compile", folder, "--out", out)
    (out / "README.md").write_text("kept\n", encoding="utf-8")
    rules(folder, CLEAN)
    result = run("compile", folder, "--out", out)
    assert result.exit_code == 0
    assert not (out / "slack-manifest.yaml").exists()
    assert (out / "README.md").read_text(encoding="utf-8") == "kept\n"
    assert "removed" in result.stdout


def test_compile_rule_errors_exit_1(tmp_path: Path) -> None:
    out = tmp_path / "build"
    result = run("compile", rules(tmp_path / "rules", UNKNOWN_RECEIVER), "--out", out)
    assert result.exit_code == 1
    assert "error[" in result.stderr
    assert not out.exists()


def test_compile_target_error_exits_1(tmp_path: Path) -> None:
    out = tmp_path / "build"
    result = run("compile", rules(tmp_path / "rules", UNDELIVERABLE), "--out", out)
    assert result.exit_code == 1
    assert "irules: cannot generate the artifacts: receiver `mail` has an `email` channel" in result.stderr
    assert not out.exists()


def test_compile_without_out_exits_2(project: Path) -> None:
    assert run("compile", project).exit_code == 2


def test_compile_missing_path_exits_2(tmp_path: Path) -> None:
    result = run("compile", tmp_path / "nowhere", "--out", tmp_path / "build")
    assert result.exit_code == 2
    assert "path not found" in result.stderr


def test_compile_out_is_a_file_exits_2(project: Path, tmp_path: Path) -> None:
    file = tmp_path / "file"
    file.write_text("", encoding="utf-8")
    result = run("compile", project, "--out", file)
    assert result.exit_code == 2
    assert "--out must be a folder" in result.stderr


# ---------------------------------------------------------------- diff


def test_diff_equal_folder_exits_0(project: Path, built: Path) -> None:
    result = run("diff", project, "--against", built)
    assert result.exit_code == 0, result.output
    assert result.stdout == ""


def test_diff_changed_file_prints_unified_diff(project: Path, built: Path) -> None:
    config = built / "alertmanager.yml"
    config.write_text(config.read_text(encoding="utf-8").replace('team=\\"db\\"', 'team=\\"web\\"'), encoding="utf-8")
    result = run("diff", project, "--against", built)
    assert result.exit_code == 1
    assert f"--- {config}\n" in result.stdout
    assert f"+++ alertmanager.yml (compiled from {project})\n" in result.stdout
    assert "@@ " in result.stdout
    assert '-    - "team=\\"web\\""\n' in result.stdout
    assert '+    - "team=\\"db\\""\n' in result.stdout
    assert "1 artifact(s) differ" in result.stderr


def test_diff_missing_file_counts_as_different(project: Path, built: Path) -> None:
    (built / "ruleset.json").unlink()
    result = run("diff", project, "--against", built)
    assert result.exit_code == 1
    assert f"--- {built / 'ruleset.json'} (missing)\n" in result.stdout
    assert "ruleset.json (missing)" in result.stderr


def test_diff_stale_artifact_counts_as_different(project: Path, built: Path) -> None:
    (built / "slack-manifest.yaml").write_text("_metadata: {}\n", encoding="utf-8")
    result = run("diff", project, "--against", built)
    assert result.exit_code == 1
    assert "+++ slack-manifest.yaml (not produced by these rules)\n" in result.stdout


def test_diff_ignores_other_files(project: Path, built: Path) -> None:
    (built / "README.md").write_text("notes\n", encoding="utf-8")
    assert run("diff", project, "--against", built).exit_code == 0


def test_diff_environment_is_named_in_diff(tmp_path: Path) -> None:
    folder = rules(tmp_path / "rules", CLEAN + "\nenvironment prod {\n  defaults { repeat_interval 1h }\n}\n")
    out = tmp_path / "build"
    run("compile", folder, "--out", out)
    result = run("diff", folder, "--env", "prod", "--against", out)
    assert result.exit_code == 1
    assert f"(compiled from {folder} --env prod)" in result.stdout


def test_diff_json_lists_differences(project: Path, built: Path) -> None:
    (built / "ruleset.json").unlink()
    result = run("diff", project, "--against", built, "--format", "json")
    document = json.loads(result.stdout)
    assert result.exit_code == 1
    assert document["equal"] is False
    assert [(item["name"], item["status"]) for item in document["files"]] == [("ruleset.json", "missing")]


def test_diff_rule_errors_exit_2(tmp_path: Path, built: Path) -> None:
    result = run("diff", rules(tmp_path / "broken", UNKNOWN_RECEIVER), "--against", built)
    assert result.exit_code == 2
    assert "error[" in result.stderr


def test_diff_target_error_exits_2(tmp_path: Path, built: Path) -> None:
    result = run("diff", rules(tmp_path / "mail", UNDELIVERABLE), "--against", built)
    assert result.exit_code == 2
    assert "cannot generate the artifacts" in result.stderr


def test_diff_missing_against_exits_2(project: Path, tmp_path: Path) -> None:
    result = run("diff", project, "--against", tmp_path / "nowhere")
    assert result.exit_code == 2
    assert "path not found" in result.stderr


def test_diff_against_file_exits_2(project: Path) -> None:
    result = run("diff", project, "--against", project / "rules.irules")
    assert result.exit_code == 2


def test_diff_without_against_exits_2(project: Path) -> None:
    assert run("diff", project).exit_code == 2


# ---------------------------------------------------------------- diff --routing


def test_routing_diff_same_rules_exits_0(project: Path) -> None:
    result = run("diff", project, "--against", project, "--routing")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("routing diff: no change")


def test_routing_diff_changed_route_exits_1(project: Path, tmp_path: Path) -> None:
    changed = rules(
        tmp_path / "new",
        CLEAN.replace('team = "db" -> chat', 'team = "db" -> chat\n  match team = "web" -> pager')
        + '\nreceiver pager { webhook "https://hooks.example.com/pager" }\n',
    )
    result = run("diff", changed, "--against", project, "--routing")
    assert result.exit_code == 1, result.output
    assert "receivers [chat] -> [pager]" in result.stdout
    assert '{team="web"}' in result.stdout


def test_routing_diff_json(project: Path) -> None:
    result = run("diff", project, "--against", project, "--routing", "--format", "json")
    assert result.exit_code == 0
    assert json.loads(result.stdout)["changes"] == []


def test_routing_diff_errors_in_old_rules_exit_2(project: Path, tmp_path: Path) -> None:
    result = run("diff", project, "--against", rules(tmp_path / "old", UNKNOWN_RECEIVER), "--routing")
    assert result.exit_code == 2


# ---------------------------------------------------------------- the committed build of the production example


def test_production_build_is_up_to_date(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    result = run("diff", "examples/production", "--env", "production", "--against", "examples/production/build")
    assert result.exit_code == 0, (
        f"examples/production/build is stale; run `irules compile examples/production --env production --out examples/production/build`\n{result.stdout}"
    )


def test_production_build_independent_of_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = run("diff", EXAMPLES / "production", "--env", "production", "--against", EXAMPLES / "production" / "build")
    assert result.exit_code == 0, result.stdout


@pytest.mark.slow
def test_real_process_exit_codes(project: Path, tmp_path: Path) -> None:
    # One end-to-end run of the installed entry point, as CI and users invoke it.
    env = {key: value for key, value in os.environ.items() if key != "IRULES_DEBUG"}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    out = tmp_path / "build"

    def irules(*args: str | Path) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "runtime.cli", *map(str, args)]
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)

    compiled = irules("compile", project, "--out", out)
    (out / "ruleset.json").unlink()
    differs = irules("diff", project, "--against", out)
    broken = irules("compile", rules(tmp_path / "broken", UNKNOWN_RECEIVER), "--out", tmp_path / "other")
    for result in (compiled, differs, broken):
        assert "Traceback" not in result.stderr
    assert compiled.returncode == 0
    assert differs.returncode == 1
    assert broken.returncode == 1
