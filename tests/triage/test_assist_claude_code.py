"""The claude-code provider running a stand-in `claude` executable: argv, folder, environment, results, errors."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from runtime.triage.assist.claude_code import ClaudeCodeProvider, ClaudeCodeSettings
from runtime.triage.assist.context import IncidentContext, Prompt
from runtime.triage.assist.provider import MalformedReply, ProviderError, ProviderUnavailable, Request
from tests.triage import fake_claude

FAKE = Path(fake_claude.__file__)
PASSED_ON = ("FAKE_CLAUDE_MODE", "FAKE_CLAUDE_LOG", "FAKE_CLAUDE_ANSWER")
ANSWER = {"summary": "the disk is full", "recommendations": [{"kind": "runbook", "name": "clean", "confidence": 0.9}]}


def install_fake(folder: Path) -> Path:
    """Put the stand-in on a new PATH folder as `claude`, started by this interpreter without a shell."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / "claude"
    source = FAKE.read_text(encoding="utf-8")
    target.write_text(f"#!{sys.executable}\n{source}", encoding="utf-8")
    target.chmod(0o755)
    return folder


class Harness:
    def __init__(self, tmp_path: Path) -> None:
        self.bin = install_fake(tmp_path / "bin")
        self.workdir = tmp_path / "rules"
        self.workdir.mkdir()
        self.log = tmp_path / "claude.log"
        self.environ = {
            "PATH": f"{self.bin}{os.pathsep}{os.environ.get('PATH', os.defpath)}",
            "HOME": str(tmp_path),
            "LANG": "C.UTF-8",
            "ANTHROPIC_API_KEY": "sk-for-claude",
            "IRULES_ANTHROPIC_API_KEY": "sk-irules-secret",
            "IRULES_API_TOKEN": "token-secret",
            "AWS_SECRET_ACCESS_KEY": "aws-secret",
            "FAKE_CLAUDE_LOG": str(self.log),
            "FAKE_CLAUDE_ANSWER": json.dumps(ANSWER),
        }

    def provider(self, mode: str = "success", **settings: Any) -> ClaudeCodeProvider:
        chosen = {"workdir": self.workdir, "extra_env": PASSED_ON, **settings}
        return ClaudeCodeProvider(ClaudeCodeSettings(**chosen), {**self.environ, "FAKE_CLAUDE_MODE": mode})

    def calls(self) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text(encoding="utf-8").splitlines()]


@pytest.fixture
def harness(tmp_path: Path) -> Harness:
    return Harness(tmp_path)


def request(user: str = "the material") -> Request:
    context = IncidentContext(incident_id=1, key="INC-1", incident={}, values={}, data={}, catalog={})
    return Request(focus="root-cause", context=context, prompt=Prompt("the instructions", user, []))


def test_success_returns_the_answer_and_session(harness: Harness) -> None:
    reply = harness.provider().diagnose(request())
    assert reply.answer.summary == "the disk is full"
    assert reply.session_id == fake_claude.SESSION
    assert reply.resume == ["claude", "-r", fake_claude.SESSION]
    assert reply.workdir == str(harness.workdir)
    assert reply.usage == {"input_tokens": 900, "output_tokens": 120, "cost_usd": 0.0123, "turns": 2}


def test_argv_is_print_mode_with_json_output(harness: Harness) -> None:
    harness.provider(max_turns=5, allowed_tools=("Read", "Grep")).diagnose(request())
    [call] = harness.calls()
    assert call["argv"] == [
        "-p",
        "the instructions\n\nthe material",
        "--output-format",
        "json",
        "--allowedTools",
        "Read,Grep",
        "--max-turns",
        "5",
    ]


def test_model_is_passed_when_set(harness: Harness) -> None:
    harness.provider(model="claude-test").diagnose(request())
    assert harness.calls()[0]["argv"][-2:] == ["--model", "claude-test"]


def test_runs_in_the_working_folder(harness: Harness) -> None:
    harness.provider().diagnose(request())
    assert harness.calls()[0]["cwd"] == str(harness.workdir)


def test_environment_is_reduced(harness: Harness) -> None:
    harness.provider().diagnose(request())
    env = harness.calls()[0]["env"]
    assert env["ANTHROPIC_API_KEY"] == "sk-for-claude"
    assert env["FAKE_CLAUDE_MODE"] == "success"
    for name in ("IRULES_ANTHROPIC_API_KEY", "IRULES_API_TOKEN", "AWS_SECRET_ACCESS_KEY"):
        assert name not in env, name


def test_hostile_prompt_is_one_argument(harness: Harness) -> None:
    hostile = 'x\'; rm -rf / #\n$(reboot) `id` --dangerously-skip-permissions "quoted" *'
    harness.provider().diagnose(request(hostile))
    argv = harness.calls()[0]["argv"]
    assert argv[1] == f"the instructions\n\n{hostile}"
    assert len(argv) == 8


def test_stream_output_uses_the_result_line(harness: Harness) -> None:
    reply = harness.provider("stream").diagnose(request())
    assert reply.answer.summary == "the disk is full"


def test_max_turns_error_keeps_the_session(harness: Harness) -> None:
    with pytest.raises(ProviderError) as raised:
        harness.provider("max_turns").diagnose(request())
    assert str(raised.value).startswith("claude ended with error_max_turns")
    assert raised.value.session_id == fake_claude.SESSION


def test_is_error_result_is_an_error(harness: Harness) -> None:
    with pytest.raises(ProviderError) as raised:
        harness.provider("is_error").diagnose(request())
    assert str(raised.value) == "claude ended with success: API Error: 529 Overloaded"
    assert raised.value.session_id == fake_claude.SESSION


def test_text_answer_is_malformed(harness: Harness) -> None:
    with pytest.raises(MalformedReply) as raised:
        harness.provider("bad_answer").diagnose(request())
    assert "claude's answer is malformed" in str(raised.value)
    assert raised.value.session_id == fake_claude.SESSION


def test_garbage_output_is_malformed(harness: Harness) -> None:
    with pytest.raises(MalformedReply) as raised:
        harness.provider("garbage").diagnose(request())
    assert "printed no result object" in str(raised.value)
    assert raised.value.session_id is None


def test_empty_output_is_an_error(harness: Harness) -> None:
    with pytest.raises(ProviderError) as raised:
        harness.provider("empty").diagnose(request())
    assert str(raised.value) == "claude exited with 0 and printed nothing"


def test_crash_reports_stderr(harness: Harness) -> None:
    with pytest.raises(ProviderError) as raised:
        harness.provider("crash").diagnose(request())
    assert str(raised.value) == "claude exited with 3 and printed nothing: claude: something broke"


@pytest.mark.slow
def test_timeout_kills_the_process_group(harness: Harness) -> None:
    with pytest.raises(ProviderError) as raised:
        harness.provider("hang", timeout_s=1.0).diagnose(request())
    assert str(raised.value) == "claude timed out after 1 s and was stopped"
    child = harness.calls()[0]["child_pid"]
    assert not _running(child)


def test_missing_executable_is_unavailable(harness: Harness) -> None:
    with pytest.raises(ProviderUnavailable) as raised:
        harness.provider(executable="claude-not-installed").diagnose(request())
    assert "'claude-not-installed' is not installed or not on PATH" in str(raised.value)


def test_missing_working_folder_is_unavailable(harness: Harness, tmp_path: Path) -> None:
    with pytest.raises(ProviderUnavailable) as raised:
        harness.provider(workdir=tmp_path / "absent").diagnose(request())
    assert "does not exist" in str(raised.value)


def test_session_id_with_shell_characters_is_ignored(harness: Harness, tmp_path: Path) -> None:
    script = tmp_path / "bin" / "claude"
    text = script.read_text(encoding="utf-8").replace(fake_claude.SESSION, "x; rm -rf /")
    script.write_text(text, encoding="utf-8")
    reply = harness.provider().diagnose(request())
    assert reply.session_id is None
    assert reply.resume is None


def test_settings_from_environment(tmp_path: Path) -> None:
    settings = ClaudeCodeSettings.from_env(
        {
            "IRULES_CLAUDE_TOOLS": "Read, Grep ,Bash(kubectl get:*)",
            "IRULES_CLAUDE_MAX_TURNS": "3",
            "IRULES_CLAUDE_ENV": "KUBECONFIG",
            "IRULES_ASSIST_TIMEOUT_S": "60",
        },
        tmp_path,
    )
    assert settings.workdir == tmp_path
    assert settings.allowed_tools == ("Read", "Grep", "Bash(kubectl get:*)")
    assert settings.max_turns == 3
    assert settings.extra_env == ("KUBECONFIG",)
    assert settings.timeout_s == 60.0


def test_settings_workdir_variable_wins(tmp_path: Path) -> None:
    settings = ClaudeCodeSettings.from_env({"IRULES_CLAUDE_WORKDIR": str(tmp_path / "other")}, tmp_path)
    assert settings.workdir == tmp_path / "other"


def test_settings_need_a_working_folder() -> None:
    with pytest.raises(ProviderUnavailable) as raised:
        ClaudeCodeSettings.from_env({}, None)
    assert "IRULES_CLAUDE_WORKDIR" in str(raised.value)


def test_invalid_setting_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(ProviderUnavailable) as raised:
        ClaudeCodeSettings.from_env({"IRULES_CLAUDE_MAX_TURNS": "0"}, tmp_path)
    assert "invalid claude-code setting" in str(raised.value)


def _running(pid: int) -> bool:
    """Return whether `pid` is a live process; a zombie waiting for its parent to reap it counts as ended."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return False
        if state in ("Z", "X"):
            return False
        time.sleep(0.05)
    return True
