"""The Claude Code provider: the `claude` CLI in print mode, run as a child process in a working folder.

The argv is

    claude -p PROMPT --output-format json --allowedTools TOOLS --max-turns N [--model MODEL]

run from an argv list, never through a shell, with stdin from /dev/null, in
the working folder the settings name (by default the rules folder), in a
session of its own so that a timeout kills every process it started. The
child sees only `PATH`, `HOME`, the locale, `TZ`, `USER`, `ANTHROPIC_API_KEY`
and the variables named in `IRULES_CLAUDE_ENV`. The tools are read-only by
default (`Read,Grep,Glob`), so the investigation reads the rules and the
documentation but changes nothing.

With `--output-format json`, Claude Code prints one JSON object when it ends:
`type` is `result`, `subtype` is `success` or an error such as
`error_max_turns`, `is_error` says whether it failed, `result` holds the
final text, and `session_id` names the session, which `claude -r SESSION`
resumes in the same folder. The final text must be the JSON answer. An error
result, garbage, a crash or a timeout raises a `ProviderError`. That error
carries the session id whenever one was printed, so a person can resume
the session to see what went wrong.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from pydantic import BaseModel, ConfigDict, Field

from runtime.triage.assist.model import MalformedAnswer, parse_answer
from runtime.triage.assist.provider import SESSION_ID, MalformedReply, ProviderError, ProviderUnavailable, Reply, Request

log = logging.getLogger("irules.assist.claude_code")

DEFAULT_TOOLS = ("Read", "Grep", "Glob")
BASE_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "USER", "ANTHROPIC_API_KEY")
OUTPUT_LIMIT = 4 * 1024 * 1024
_ERROR_CHARS = 300


class ClaudeCodeSettings(BaseModel):
    """How to run the `claude` CLI."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    workdir: Path = Field(description="Folder the CLI runs in and reads (IRULES_CLAUDE_WORKDIR, else the rules folder).")
    executable: str = Field("claude", min_length=1, description="Program name or path (IRULES_CLAUDE_BIN).")
    allowed_tools: tuple[str, ...] = Field(DEFAULT_TOOLS, description="Tools the session may use (IRULES_CLAUDE_TOOLS).")
    max_turns: int = Field(8, ge=1, le=100, description="Maximum agent turns (IRULES_CLAUDE_MAX_TURNS).")
    timeout_s: float = Field(600.0, gt=0, description="Seconds before the process is killed (IRULES_ASSIST_TIMEOUT_S).")
    model: str | None = Field(None, description="Model passed with --model (IRULES_ASSIST_MODEL).")
    extra_env: tuple[str, ...] = Field((), description="More environment variables to pass on (IRULES_CLAUDE_ENV).")

    @classmethod
    def from_env(cls, environ: Mapping[str, str], workdir: Path | None) -> ClaudeCodeSettings:
        """Read the settings from environment variables, with `workdir` as the folder unless IRULES_CLAUDE_WORKDIR names one.

        Raises:
            ProviderUnavailable: no working folder, or a value is invalid.
        """
        folder = environ.get("IRULES_CLAUDE_WORKDIR") or workdir
        if folder is None:
            raise ProviderUnavailable(
                "the claude-code provider needs a working folder: pass --rules DIR or set IRULES_CLAUDE_WORKDIR"
            )
        given: dict[str, Any] = {"workdir": Path(folder)}
        if environ.get("IRULES_CLAUDE_BIN"):
            given["executable"] = environ["IRULES_CLAUDE_BIN"]
        if environ.get("IRULES_CLAUDE_TOOLS"):
            given["allowed_tools"] = _names(environ["IRULES_CLAUDE_TOOLS"])
        if environ.get("IRULES_CLAUDE_MAX_TURNS"):
            given["max_turns"] = environ["IRULES_CLAUDE_MAX_TURNS"]
        if environ.get("IRULES_ASSIST_TIMEOUT_S"):
            given["timeout_s"] = environ["IRULES_ASSIST_TIMEOUT_S"]
        if environ.get("IRULES_ASSIST_MODEL"):
            given["model"] = environ["IRULES_ASSIST_MODEL"]
        if environ.get("IRULES_CLAUDE_ENV"):
            given["extra_env"] = _names(environ["IRULES_CLAUDE_ENV"])
        try:
            return cls.model_validate(given)
        except ValueError as error:
            raise ProviderUnavailable(f"invalid claude-code setting: {error}") from None


class ClaudeCodeProvider:
    """Ask Claude Code, which may read the working folder with the allowed tools."""

    name = "claude-code"

    def __init__(self, settings: ClaudeCodeSettings, environ: Mapping[str, str] | None = None) -> None:
        self.settings = settings
        self._environ = os.environ if environ is None else environ

    def argv(self, prompt: str) -> list[str]:
        """Return the argv for `prompt`, with the program as the settings name it."""
        argv = [
            self.settings.executable,
            "-p",
            prompt,
            "--output-format",
            "json",
            "--allowedTools",
            ",".join(self.settings.allowed_tools),
            "--max-turns",
            str(self.settings.max_turns),
        ]
        if self.settings.model:
            argv += ["--model", self.settings.model]
        return argv

    def child_environment(self) -> dict[str, str]:
        names = (*BASE_ENV, *self.settings.extra_env)
        return {name: self._environ[name] for name in names if name in self._environ}

    def diagnose(self, request: Request) -> Reply:
        workdir = self.settings.workdir
        if not workdir.is_dir():
            raise ProviderUnavailable(f"the claude-code working folder {str(workdir)!r} does not exist")
        env = self.child_environment()
        program = shutil.which(self.settings.executable, path=env.get("PATH", os.defpath))
        if program is None:
            raise ProviderUnavailable(
                f"{self.settings.executable!r} is not installed or not on PATH; install Claude Code or set IRULES_CLAUDE_BIN"
            )

        argv = [program, *self.argv(request.prompt.text())[1:]]
        code, stdout, stderr = _run(argv, workdir, env, self.settings.timeout_s)
        result = _result_object(stdout, code, stderr)
        session_id = _session_id(result.get("session_id"))

        if result.get("is_error") or result.get("subtype") != "success":
            detail = _excerpt(str(result.get("result") or result.get("errors") or "no detail"))
            raise ProviderError(f"claude ended with {result.get('subtype') or 'an error'}: {detail}", session_id=session_id)
        text = result.get("result")
        if not isinstance(text, str):
            raise MalformedReply("claude's result has no `result` text", session_id=session_id)
        try:
            answer = parse_answer(text)
        except MalformedAnswer as error:
            raise MalformedReply(f"claude's answer is malformed: {error}", session_id=session_id) from None

        return Reply(
            answer=answer,
            provider=self.name,
            model=self.settings.model,
            session_id=session_id,
            usage=_usage(result),
            resume=[self.settings.executable, "-r", session_id] if session_id else None,
            workdir=str(workdir),
        )


def _run(argv: Sequence[str], workdir: Path, env: dict[str, str], timeout_s: float) -> tuple[int, str, str]:
    """Run `argv` and return its exit code, stdout and stderr, each cut at `OUTPUT_LIMIT` bytes."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        try:
            child = subprocess.Popen(
                list(argv), cwd=workdir, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err, start_new_session=True
            )
        except OSError as error:
            raise ProviderUnavailable(f"cannot start {argv[0]!r}: {error.strerror}") from None
        try:
            code = child.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _kill_group(child.pid)
            child.wait()
            raise ProviderError(f"claude timed out after {timeout_s:g} s and was stopped") from None
        finally:
            # Whatever it started in its session ends with it.
            _kill_group(child.pid)
        return code, _read(out), _read(err)


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _read(stream: IO[bytes]) -> str:
    stream.seek(0)
    return stream.read(OUTPUT_LIMIT).decode("utf-8", errors="replace")


def _result_object(stdout: str, code: int, stderr: str) -> dict[str, Any]:
    """Return the result object Claude Code printed: the whole output, or its last JSON line."""
    text = stdout.strip()
    if not text:
        raise ProviderError(
            f"claude exited with {code} and printed nothing" + (f": {_excerpt(stderr)}" if stderr.strip() else "")
        )
    candidates = [text, *reversed([line for line in text.splitlines() if line.strip()])]
    for candidate in candidates:
        try:
            data = json.loads(candidate)
        except ValueError:
            continue
        if isinstance(data, dict) and data.get("type") == "result":
            return data
    raise MalformedReply(f"claude exited with {code} and printed no result object: {_excerpt(text)!r}")


def _session_id(value: Any) -> str | None:
    if isinstance(value, str) and SESSION_ID.fullmatch(value):
        return value
    if value is not None:
        log.warning("claude printed a session id that is not plain text; it is ignored")
    return None


def _usage(result: dict[str, Any]) -> dict[str, Any]:
    usage = result.get("usage") if isinstance(result.get("usage"), dict) else {}
    found: dict[str, Any] = {}
    for name in ("input_tokens", "output_tokens"):
        if isinstance(usage.get(name), int):
            found[name] = usage[name]
    if isinstance(result.get("total_cost_usd"), int | float):
        found["cost_usd"] = result["total_cost_usd"]
    if isinstance(result.get("num_turns"), int):
        found["turns"] = result["num_turns"]
    return found


def _names(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _excerpt(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _ERROR_CHARS else text[:_ERROR_CHARS] + "..."
