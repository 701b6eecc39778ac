"""`irules import`: files written, report printed, secrets never shown, exit codes, no tracebacks."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import Result
from typer.testing import CliRunner

from compiler.api import check_path
from runtime.cli import app

REPO = Path(__file__).resolve().parent.parent
SHARED_CONFIG = REPO.parent / "shared" / "fixtures" / "alertmanager-config" / "alertmanager-v0.25.yml"

# Every secret value below contains `LEAK`; none may appear in a file or a message.
WITH_SECRETS = """\
global:
  smtp_smarthost: smtp.example.com:587
  smtp_from: alerts@example.com
  smtp_auth_password: LEAK-smtp-password
  slack_api_url: https://hooks.slack.com/services/T0/B0/LEAK-slack-url
  opsgenie_api_key: LEAK-opsgenie-key
  victorops_api_key: LEAK-victorops-key
  http_config:
    basic_auth: {username: am, password: LEAK-basic-password}
route:
  receiver: web.hook
  routes:
    - matchers: [severity="critical"]
      receiver: pager
receivers:
  - name: web.hook
    webhook_configs:
      - url: https://hooks.example.com/alerts
        http_config:
          authorization: {type: Bearer, credentials: LEAK-bearer-token}
  - name: pager
    pagerduty_configs: [{routing_key: LEAK-routing-key}, {service_key: LEAK-service-key}]
    slack_configs: [{channel: "#pager", api_url: "https://hooks.slack.com/services/T1/B1/LEAK-receiver-url"}]
    email_configs: [{to: pager@example.com, auth_password: LEAK-email-password}]
    opsgenie_configs: [{api_key: LEAK-opsgenie-receiver}]
"""


def run_import(*args: str) -> Result:
    return CliRunner().invoke(app, ["import", *args])


def assert_no_traceback(result: Result) -> None:
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.stdout + result.stderr
    assert "internal error" not in result.stderr


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "alertmanager.yml"
    path.write_text(WITH_SECRETS, encoding="utf-8")
    return path


def test_import_writes_files_and_exits_0(config: Path, tmp_path: Path):
    out = tmp_path / "rules"
    result = run_import(str(config), "--out", str(out))
    assert result.exit_code == 0, result.stderr
    assert sorted(path.name for path in out.iterdir()) == ["receivers.irules", "routes.irules", "settings.irules"]
    assert_no_traceback(result)


def test_imported_project_checks_clean(config: Path, tmp_path: Path):
    out = tmp_path / "rules"
    run_import(str(config), "--out", str(out))
    result = check_path(out)
    assert not result.has_errors


def test_secret_values_never_appear(config: Path, tmp_path: Path):
    out = tmp_path / "rules"
    result = run_import(str(config), "--out", str(out))
    written = "".join(path.read_text(encoding="utf-8") for path in out.iterdir())
    assert "LEAK" not in written
    assert "LEAK" not in result.stdout
    assert "LEAK" not in result.stderr


def test_secret_names_to_provide_are_printed(config: Path, tmp_path: Path):
    result = run_import(str(config), "--out", str(tmp_path / "rules"))
    assert "secrets to provide, one file per name in the secrets folder" in result.stdout
    for name in ("SMTP_PASSWORD", "SLACK_API_URL", "PAGER_PAGERDUTY_KEY", "PAGER_PAGERDUTY_KEY_2", "PAGER_SLACK_API_URL"):
        assert f"\n  {name} " in result.stdout, name


def test_rename_and_left_out_parts_are_reported(config: Path, tmp_path: Path):
    result = run_import(str(config), "--out", str(tmp_path / "rules"))
    assert "renamed receiver `web.hook` to `web-hook`, because .irules names are identifiers" in result.stdout
    assert "receiver `pager`: `opsgenie_configs` has no .irules channel and was not converted" in result.stdout
    assert "global setting `http_config` was not converted" in result.stdout


def test_existing_files_are_not_overwritten(config: Path, tmp_path: Path):
    out = tmp_path / "rules"
    out.mkdir()
    (out / "routes.irules").write_text("# mine\n", encoding="utf-8")
    result = run_import(str(config), "--out", str(out))
    assert result.exit_code == 2
    assert "already exist; pass --force to overwrite them" in result.stderr
    assert (out / "routes.irules").read_text(encoding="utf-8") == "# mine\n"


def test_force_overwrites_existing_files(config: Path, tmp_path: Path):
    out = tmp_path / "rules"
    out.mkdir()
    (out / "routes.irules").write_text("# mine\n", encoding="utf-8")
    result = run_import(str(config), "--out", str(out), "--force")
    assert result.exit_code == 0, result.stderr
    assert (out / "routes.irules").read_text(encoding="utf-8").startswith("route {")


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("route: {receiver: a\n", "invalid YAML: expected ',' or '}'"),
        ("just text\n", "the top level must be a mapping"),
        ("route:\n  receiver: a\n  routes: [{matchers: ['service != processing,speech']}]\n", "bad matcher format: speech"),
    ],
)
def test_invalid_input_exits_1_with_reason(tmp_path: Path, text: str, reason: str):
    path = tmp_path / "alertmanager.yml"
    path.write_text(text, encoding="utf-8")
    result = run_import(str(path), "--out", str(tmp_path / "rules"))
    assert result.exit_code == 1
    assert reason in result.stderr
    assert not (tmp_path / "rules").exists()
    assert_no_traceback(result)


def test_binary_input_exits_1(tmp_path: Path):
    path = tmp_path / "alertmanager.yml"
    path.write_bytes(b"\xff\xfe\x00route")
    result = run_import(str(path), "--out", str(tmp_path / "rules"))
    assert result.exit_code == 1
    assert "is not valid UTF-8" in result.stderr
    assert_no_traceback(result)


def test_errors_in_result_exit_1_after_writing(tmp_path: Path):
    path = tmp_path / "alertmanager.yml"
    path.write_text('route: {receiver: a, routes: [{matchers: [x="1"], receiver: fake}]}\nreceivers: [{name: a}]\n')
    result = run_import(str(path), "--out", str(tmp_path / "rules"))
    assert result.exit_code == 1
    assert "error[IR0203]: unknown receiver `fake` in route" in result.stderr
    assert (tmp_path / "rules" / "routes.irules").exists()


def test_missing_config_exits_2(tmp_path: Path):
    result = run_import(str(tmp_path / "absent.yml"), "--out", str(tmp_path / "rules"))
    assert result.exit_code == 2
    assert "path not found" in result.stderr


def test_shared_fixture_imports_clean(tmp_path: Path):
    if not SHARED_CONFIG.exists():
        pytest.skip(f"the shared fixture {SHARED_CONFIG} is not present beside the repository")
    result = run_import(str(SHARED_CONFIG), "--out", str(tmp_path / "rules"))
    assert result.exit_code == 0, result.stderr
    assert "check without errors" in result.stdout
