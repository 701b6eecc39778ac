"""`irules init`: a new repository whose policy checks clean, whose tests pass and whose CI passes."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import Result
from typer.testing import CliRunner

from compiler.api import check_path
from compiler.fmt import format_source
from compiler.rule_tests import run_tests
from runtime.cli import app
from runtime.commands.init import INTEGRATIONS

POLICY_FILES = ["routes.irules", "settings.irules", "severity.irules", "teams.irules", "tests.irules"]


def run_init(*args: str) -> Result:
    return CliRunner().invoke(app, ["init", *args])


@pytest.fixture
def repository(tmp_path: Path) -> Path:
    folder = tmp_path / "rules-repo"
    result = run_init("production", str(folder), "--integrations", "slack,pagerduty,teams")
    assert result.exit_code == 0, result.stderr
    return folder


def test_policy_files_are_created(repository: Path):
    assert sorted(path.name for path in repository.glob("*.irules")) == POLICY_FILES


def test_policy_checks_clean_for_environment(repository: Path):
    result = check_path(repository, "production")
    assert [item.message for item in result.diagnostics] == []


def test_policy_has_a_team_per_integration(repository: Path):
    teams = check_path(repository, "production").ruleset().teams
    assert sorted(team.name for team in teams) == ["oncall-pager", "ops-chat", "ops-teams"]


def test_rule_tests_pass(repository: Path):
    report = run_tests(check_path(repository, "production").ruleset())
    assert report.failed == 0
    assert report.passed == 3


def test_policy_files_are_formatted(repository: Path):
    for path in repository.glob("*.irules"):
        text = path.read_text(encoding="utf-8")
        assert format_source(text, path.name) == text, path.name


def test_build_folder_matches_compiled_rules(repository: Path):
    result = CliRunner().invoke(
        app, ["diff", str(repository), "--env", "production", "--against", str(repository / "build" / "production")]
    )
    assert result.exit_code == 0, result.stdout + result.stderr


def test_workflow_runs_check_test_and_diff(repository: Path):
    workflow = yaml.safe_load((repository / ".github" / "workflows" / "irules.yml").read_text(encoding="utf-8"))
    commands = [step["run"] for step in workflow["jobs"]["rules"]["steps"] if "run" in step]
    assert "irules check . --env production" in commands
    assert "irules test . --env production" in commands
    assert "irules diff . --env production --against build/production" in commands


def test_pre_commit_runs_fmt_and_check(repository: Path):
    config = yaml.safe_load((repository / ".pre-commit-config.yaml").read_text(encoding="utf-8"))
    hooks = config["repos"][0]["hooks"]
    assert config["repos"][0]["repo"] == "local"
    assert [hook["entry"] for hook in hooks] == ["irules fmt --check .", "irules check . --env production"]
    assert all(hook["language"] == "system" for hook in hooks)


def test_readme_names_environment_and_secrets(repository: Path):
    readme = (repository / "README.md").read_text(encoding="utf-8")
    assert "irules compile . --env production --out build/production" in readme
    assert "- `ONCALL_PAGERDUTY_KEY`" in readme


@pytest.mark.slow
@pytest.mark.parametrize("kinds", [*sorted(INTEGRATIONS), "sms,pagerduty", ",".join(sorted(INTEGRATIONS))])
def test_every_integration_checks_clean(kinds: str, tmp_path: Path):
    result = run_init("staging", str(tmp_path), "--integrations", kinds)
    assert result.exit_code == 0, result.stderr
    ruleset_result = check_path(tmp_path, "staging")
    assert [item.message for item in ruleset_result.diagnostics] == []
    assert run_tests(ruleset_result.ruleset()).failed == 0


def test_existing_files_are_kept(repository: Path):
    (repository / "teams.irules").write_text("# mine\n", encoding="utf-8")
    result = run_init("production", str(repository), "--integrations", "slack")
    assert result.exit_code == 2
    assert "already exist; pass --force to overwrite them" in result.stderr
    assert (repository / "teams.irules").read_text(encoding="utf-8") == "# mine\n"


def test_force_overwrites(repository: Path):
    (repository / "teams.irules").write_text("# mine\n", encoding="utf-8")
    result = run_init("production", str(repository), "--integrations", "email", "--force")
    assert result.exit_code == 0, result.stderr
    assert "team ops-email" in (repository / "teams.irules").read_text(encoding="utf-8")


def test_unknown_integration_lists_known_ones(tmp_path: Path):
    result = run_init("production", str(tmp_path), "--integrations", "slack,pagerdty")
    assert result.exit_code == 2
    assert result.stderr == (
        "irules: unknown integration `pagerdty`; the known integrations are email, pagerduty, slack, sms, teams, webhook\n"
    )
    assert list(tmp_path.iterdir()) == []


def test_invalid_environment_name_exits_2(tmp_path: Path):
    result = run_init("prod env", str(tmp_path))
    assert result.exit_code == 2
    assert "invalid environment name `prod env`" in result.stderr


def test_directory_defaults_to_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    result = run_init("production")
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "routes.irules").exists()
