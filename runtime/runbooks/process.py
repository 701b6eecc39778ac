"""The `run` step: render an argv from templates, bind an action's arguments, and run the program without a shell.

Alert data is hostile. It is only ever a value in a template's context, never
template source, and these rules hold before anything runs:

- Each element of a `run` list becomes exactly one argument, whatever the
  inserted values contain (spaces, quotes, `;`, `$(...)`, newlines, globs).
  The program runs from the argv list, and no shell parses it.
- The program, the first element, is written in the rules: an empty argv, an
  empty program or a template as the program is rejected. So is any argument
  that contains NUL, is not valid UTF-8, or is longer than Linux accepts for
  one argument (`MAX_ARGUMENT_BYTES`).
- A template argument that a shell in the argv would parse (`sh -c`, `ssh`) is
  rejected, as the compiler does with IR0602, for rulesets that skipped it.
- Options: before the first literal `--` element, a template argument that
  renders to text starting with `-` is rejected unless the rules wrote that
  dash, because a value such as `--kubeconfig=/etc/x` would become an option.
  The rules wrote it when the template itself starts with `-`
  (`--namespace={{ namespace }}`), or when the whole argument equals a string
  written in the template (`{{ '--wait=false' if kind == 'pod' else 'restart' }}`).
  After `--`, a value starting with `-` is an operand, which is what `--` is for.
  NOTE: a program that passes its operands on (`kubectl exec ... -- CMD`)
  lets CMD parse them, and this check cannot see that.
- An action's arguments are rendered and checked against each parameter's
  type and `matching` pattern (RE2, matching the whole value) before the
  action's argv is rendered, so a rejected value never reaches an argv, an
  approval request or a dry run.

The executor calls `prepare_process` once, shows its `operation` for approval,
and then runs exactly that argv with `PreparedProcess.run`.

`run_process` starts the program in a session of its own, with stdin from
/dev/null, only the allowed environment variables, and stdout and stderr
merged into one pipe. It keeps the first `output_limit` bytes of output and
reads the rest in chunks that it discards. When the program exits, or the
timeout passes, or the caller is cancelled, the whole process group is killed,
so nothing the step started outlives it.
"""

from __future__ import annotations

import codecs
import contextlib
import functools
import logging
import os
import re
import signal
import subprocess
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio
import re2
from anyio.abc import ByteReceiveStream
from jinja2 import TemplateSyntaxError, nodes
from jinja2.sandbox import SandboxedEnvironment

from compiler import ir
from compiler.checks.safety import program_name, shell_parsed
from runtime.notify.render import TemplateFailed, render_text
from runtime.runbooks.model import StepOutcome, StepRejected

log = logging.getLogger("irules.runbooks.process")

# Environment variables a program inherits from the daemon unless the caller allows more.
DEFAULT_ENV = frozenset({"PATH", "HOME", "LANG", "LC_ALL", "TZ", "KUBECONFIG"})
OUTPUT_LIMIT = 64 * 1024
# Linux rejects one argument of 32 pages or more, counting its terminating NUL: with 4 KiB pages,
# 131,071 bytes start and 131,072 fail with E2BIG (checked on Linux x86-64).
MAX_ARGUMENT_BYTES = 128 * 1024 - 1

_READ_CHUNK = 64 * 1024
# How long a killed process gets to be reaped before the step gives up waiting for it.
_REAP_TIMEOUT_S = 5.0
# Characters of a rejected value that a message shows.
_EXCERPT_CHARS = 80
_ERROR_CHARS = 200
_JINJA_START = ("{{", "{%", "{#")

# The text forms of typed parameters, as the rules write their literals.
_TYPE_SYNTAX = {
    "int": re.compile(r"-?[0-9]+"),
    "number": re.compile(r"-?[0-9]+(?:\.[0-9]+)?"),
    "duration": re.compile(r"(?:[0-9]+(?:ms|s|m|h|d|w))+"),
    "percent": re.compile(r"[0-9]+(?:\.[0-9]+)?%"),
    "bool": re.compile(r"true|false"),
}
_ARTICLES = {"int": "an"}


# ---------------------------------------------------------------- rendering an argv


def render_argv(templates: Sequence[str], values: Mapping[str, Any]) -> list[str]:
    """Render the elements of a `run` list with `values`, each to exactly one argument.

    Example:
        render_argv(["kubectl", "logs", "--namespace={{ label.namespace }}", "--", "{{ label.pod }}"], values)

    Raises:
        StepRejected: the argv or its program is empty, or the program is a
            template. Or an argument fails to render, contains NUL, is not
            valid UTF-8 or is too long. Or a shell in the argv would parse a
            template, or a rendered value would start an option, as the module
            docstring describes.
    """
    if not templates:
        raise StepRejected("the argv is empty, so there is no program to execute")
    program = templates[0]
    if not isinstance(program, str) or not program:
        raise StepRejected("the program of the argv is empty")
    if has_template(program):
        raise StepRejected(f"the program {_excerpt(program)} is a template, but the rules must name the program to run")
    _check_text(program, "the program")
    _check_shell(templates)

    argv = [program]
    after_separator = False
    for index, template in enumerate(templates[1:], start=1):
        where = f"argument {index}"
        argument = _render(template, values, where)
        _check_text(argument, where)
        if not after_separator and argument.startswith("-") and not _rules_wrote_dash(template, argument):
            raise StepRejected(
                f"{where} renders to {_excerpt(argument)}, which starts with `-` and would be read as an option "
                "unless it follows a literal `--` or a written prefix such as `--name=`"
            )
        after_separator = after_separator or template == "--"
        argv.append(argument)
    return argv


def has_template(text: str) -> bool:
    """Return whether `text` contains Jinja syntax, as the compiler decides which strings to render."""
    return any(start in text for start in _JINJA_START)


def _render(template: Any, values: Mapping[str, Any], where: str) -> str:
    """Render one template to text exactly as written, keeping leading and trailing whitespace."""
    if not isinstance(template, str):
        raise StepRejected(f"{where} is {type(template).__name__}, not a string")
    if not has_template(template):
        return template
    # `render_text` strips its output. Brackets around the template keep the
    # whitespace at both ends, and a missing `]` means the output was cut.
    try:
        framed = render_text(f"[{template}]", values, limit=MAX_ARGUMENT_BYTES + 2)
    except TemplateFailed as error:
        raise StepRejected(f"{where} failed to render: {_cut(str(error), _ERROR_CHARS)}") from error
    if not framed.endswith("]"):
        raise StepRejected(f"{where} renders to more than {MAX_ARGUMENT_BYTES} characters")
    return framed[1:-1]


def _check_text(argument: str, where: str) -> None:
    if "\x00" in argument:
        raise StepRejected(f"{where} contains a NUL character, which a program argument cannot carry")
    try:
        size = len(argument.encode("utf-8"))
    except UnicodeEncodeError as error:
        raise StepRejected(f"{where} is not valid UTF-8 text: {error.reason} at character {error.start}") from None
    if size > MAX_ARGUMENT_BYTES:
        raise StepRejected(f"{where} is {size} bytes long, but an argument may have at most {MAX_ARGUMENT_BYTES} bytes")


def _check_shell(templates: Sequence[str]) -> None:
    found = shell_parsed([str(template) for template in templates])
    if found is None:
        return
    shell, parsed = found
    for index in parsed:
        if has_template(templates[index]):
            raise StepRejected(
                f"argument {index} is a template that `{program_name(templates[shell])}` parses as shell code, "
                "so run the program directly to keep the value one argument"
            )


def _rules_wrote_dash(template: str, argument: str) -> bool:
    """Return whether the leading `-` of a rendered argument comes from the rules rather than from a value."""
    if not has_template(template) or template.startswith("-"):
        return True
    return argument in _written_strings(template)


@functools.lru_cache(maxsize=1024)
def _written_strings(template: str) -> frozenset[str]:
    """Return the string constants and the literal text pieces of a template."""
    try:
        tree = _parser().parse(template)
    except TemplateSyntaxError:  # `_render` has already rejected such a template
        return frozenset()
    constants = {node.value for node in tree.find_all(nodes.Const) if isinstance(node.value, str)}
    pieces = {node.data for node in tree.find_all(nodes.TemplateData)}
    return frozenset(constants | pieces)


@functools.cache
def _parser() -> SandboxedEnvironment:
    # Only parses the rules' own templates; rendering happens in `runtime.notify.render`.
    return SandboxedEnvironment()


# ---------------------------------------------------------------- binding an action's arguments


def bind_action(action: ir.Action, call_args: Sequence[Mapping[str, Any]], values: Mapping[str, Any]) -> dict[str, str]:
    """Bind a call's arguments to the action's parameters and return each parameter's checked text.

    Positional arguments (`name` None) fill the parameters in declared order,
    named ones their parameter, and a parameter left out takes its default.
    Templates render with `values`, the context of the calling step. Each text
    is then checked against the parameter's type and its `matching` pattern,
    so what this returns is safe to insert into the action's argv.

    Example:
        bind_action(restart, [{"name": None, "value": "pod"}, {"name": None, "value": "{{ label.pod }}"}], values)

    Raises:
        StepRejected: an argument is unknown, given twice or missing, fails
            to render, or its text does not have the parameter's type or
            match its pattern. The message names the parameter and the
            pattern and shows at most 80 characters of the value.
    """
    given = _assign(action, call_args)
    bound: dict[str, str] = {}
    for param in action.params:
        if param.name in given:
            value = given[param.name]
        elif param.default is not None:
            value = param.default
        else:
            raise StepRejected(f"action `{action.name}` needs a value for parameter `{param.name}`")
        bound[param.name] = _param_text(action, param, value, values)
    return bound


def _assign(action: ir.Action, call_args: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    names = [param.name for param in action.params]
    given: dict[str, Any] = {}
    position = 0
    for arg in call_args:
        name = arg.get("name")
        if name is None:
            if position >= len(names):
                raise StepRejected(f"action `{action.name}` takes {len(names)} arguments, but more were given")
            name = names[position]
            position += 1
        elif name not in names:
            raise StepRejected(f"action `{action.name}` has no parameter `{name}`")
        if name in given:
            raise StepRejected(f"argument `{name}` of action `{action.name}` is given twice")
        given[name] = arg.get("value")
    return given


def _param_text(action: ir.Action, param: ir.Param, value: Any, values: Mapping[str, Any]) -> str:
    where = f"argument `{param.name}` of action `{action.name}`"
    if isinstance(value, str):
        text = _render(value, values, where)
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, int):
        text = str(value)
    elif isinstance(value, float):
        # NOTE: the IR keeps number, duration and percent literals as floats,
        # not as written, and the compiler checked the written text against
        # the type and the pattern, so they are not checked again here.
        return _float_text(param.type, value)
    else:
        raise StepRejected(f"{where} is {type(value).__name__}, which an action parameter cannot take")

    _check_text(text, where)
    syntax = _TYPE_SYNTAX.get(param.type)
    if syntax is not None and syntax.fullmatch(text) is None:
        raise StepRejected(f"{where} must be {_ARTICLES.get(param.type, 'a')} {param.type}, not {_excerpt(text)}")
    if param.pattern is not None:
        check_pattern(where, param.pattern, text)
    return text


def _float_text(type_name: str, value: float) -> str:
    if type_name == "duration":
        return f"{value:g}s"
    if type_name == "percent":
        return f"{value * 100:g}%"
    return repr(value)


def check_pattern(where: str, pattern: str, text: str) -> None:
    compiled = _compile_pattern(pattern)
    if compiled is None:
        raise StepRejected(f"the pattern `{pattern}` of {where} is not a valid RE2 expression")
    # `fullmatch` anchors at both ends, and RE2's `$` does not match before a final newline.
    if compiled.fullmatch(text) is None:
        raise StepRejected(f"{where} does not match the pattern `{pattern}`: {_excerpt(text)}")


@functools.lru_cache(maxsize=512)
def _compile_pattern(pattern: str) -> Any:
    options = re2.Options()
    options.log_errors = False  # RE2 would print its own copy of the error on stderr
    try:
        return re2.compile(pattern, options)
    except re2.error:
        return None


# ---------------------------------------------------------------- preparing a step


@dataclass(frozen=True, slots=True)
class PreparedProcess:
    """A `run` step with every template rendered and checked: exactly the argv that will execute."""

    argv: tuple[str, ...]
    exit_codes: frozenset[int] = frozenset({0})
    timeout_s: float | None = None
    action: str | None = None
    params: Mapping[str, str] = field(default_factory=dict)

    @property
    def operation(self) -> dict[str, Any]:
        """The operation shown for approval and dry runs, the same `{"argv": [...]}` that running it reports."""
        return {"argv": list(self.argv)}

    async def run(
        self,
        *,
        timeout_s: float | None = None,
        output_limit: int = OUTPUT_LIMIT,
        env_allowlist: Collection[str] = DEFAULT_ENV,
        cwd: str | os.PathLike[str] | None = None,
    ) -> StepOutcome:
        """Run the prepared argv; `timeout_s` replaces the step's own timeout.

        Raises:
            ValueError: neither the step nor the caller gives a timeout.
        """
        limit = timeout_s if timeout_s is not None else self.timeout_s
        if limit is None:
            raise ValueError("the step has no timeout, so pass `timeout_s`")
        return await run_process(
            self.argv,
            timeout_s=limit,
            output_limit=output_limit,
            env_allowlist=env_allowlist,
            cwd=cwd,
            exit_codes=self.exit_codes,
        )


def prepare_process(step: ir.Step, values: Mapping[str, Any], action: ir.Action | None = None) -> PreparedProcess:
    """Render and check a `run` step, or a call of an action whose body is a `run` step, without running anything.

    For a call, `action` is the declared action: its arguments are bound and
    checked first, then its argv renders with `values` and the parameters,
    which shadow a root of the same name. The call's `timeout` replaces the
    action's.

    Raises:
        StepRejected: a value or the argv fails a check (see `bind_action` and `render_argv`).
        ValueError: the step neither runs a program nor calls `action`, or `action` does not run a program.
    """
    if step.kind == "run":
        argv = render_argv(_argv_templates(step), values)
        return PreparedProcess(tuple(argv), _exit_codes(step), step.timeout_s)
    if step.kind != "call" or action is None or action.name != step.action:
        raise ValueError(
            f"step `{step.name}` is a {step.kind} step, but only a run step or a call with its declared action runs a program"
        )
    body = action.steps[0] if action.steps else None
    if body is None or body.kind != "run":
        raise ValueError(f"action `{action.name}` does not run a program")

    params = bind_action(action, step.args, values)
    argv = render_argv(_argv_templates(body), {**values, **params})
    timeout_s = step.timeout_s if step.timeout_s is not None else body.timeout_s
    return PreparedProcess(tuple(argv), _exit_codes(body), timeout_s, action.name, params)


def _argv_templates(step: ir.Step) -> list[str]:
    if not step.args or not isinstance(step.args[0], list):
        raise StepRejected(f"step `{step.name}` has no argv to run")
    return step.args[0]


def _exit_codes(step: ir.Step) -> frozenset[int]:
    listed = step.options.get("exit_codes")
    if not listed:
        return frozenset({0})
    codes = listed[0]
    if not codes or not all(type(code) is int and 0 <= code <= 255 for code in codes):
        raise StepRejected(f"`exit_codes` of step `{step.name}` must list exit codes from 0 to 255, not {codes!r}")
    return frozenset(codes)


# ---------------------------------------------------------------- running a program


async def run_process(
    argv: Sequence[str],
    *,
    timeout_s: float,
    output_limit: int = OUTPUT_LIMIT,
    env_allowlist: Collection[str] = DEFAULT_ENV,
    cwd: str | os.PathLike[str] | None = None,
    exit_codes: Collection[int] = (0,),
) -> StepOutcome:
    """Run `argv` without a shell and return its outcome; an exit code in `exit_codes` counts as success.

    The outcome's `operation` is `{"argv": argv}` as executed, and its
    `output` is stdout and stderr as one text, cut to `output_limit` bytes
    with a note of how much was discarded. A program that runs past
    `timeout_s` is killed with its process group and reported as
    `timed out after Ns`. A program that cannot start fails without retries.

    Example:
        outcome = await run_process(["kubectl", "get", "pods"], timeout_s=30, env_allowlist=DEFAULT_ENV | {"AWS_PROFILE"})

    Raises:
        StepRejected: the argv is empty, or an argument contains NUL or is not valid UTF-8.
    """
    command = list(argv)
    if not command or not command[0]:
        raise StepRejected("the argv is empty, so there is no program to execute")
    for index, argument in enumerate(command):
        _check_text(argument, f"argument {index}")
    operation = {"argv": list(command)}
    environment = child_environment(env_allowlist)
    missing = _missing_program(command[0], environment, cwd)
    if missing is not None:
        return StepOutcome(ok=False, detail=f"could not start `{command[0]}`: {missing}", operation=operation, retryable=False)

    try:
        process = await anyio.open_process(
            _dies_with_parent(command),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=environment,
            start_new_session=True,
        )
    except OSError as error:  # not found, not executable, or the argv is too long for the kernel
        reason = error.strerror or str(error)
        return StepOutcome(ok=False, detail=f"could not start `{command[0]}`: {reason}", operation=operation, retryable=False)
    log.debug("process started", extra={"pid": process.pid, "program": command[0]})

    output = _BoundedOutput(output_limit)
    try:
        with anyio.move_on_after(timeout_s) as deadline:
            async with anyio.create_task_group() as group:
                group.start_soon(output.read_all, process.stdout)
                await process.wait()
                # Whatever the program left running would keep the pipe open and outlive the step.
                _kill_group(process.pid)
    finally:
        with anyio.move_on_after(_REAP_TIMEOUT_S, shield=True) as reaping:
            _kill_group(process.pid)
            await process.aclose()
        if reaping.cancelled_caught:
            log.warning(
                "killed process was not reaped within %s s, so the step stops waiting for it",
                _REAP_TIMEOUT_S,
                extra={"pid": process.pid, "program": command[0]},
            )

    if deadline.cancelled_caught:
        return StepOutcome(ok=False, output=output.text(), detail=f"timed out after {timeout_s:g}s", operation=operation)
    code = process.returncode
    return StepOutcome(
        ok=code in exit_codes, output=output.text(), exit_code=code, detail=_exit_detail(code), operation=operation
    )


@functools.cache
def _setpriv() -> str | None:
    """Return util-linux's `setpriv`, which can give a program a parent-death signal, or None when it is absent."""
    import shutil

    found = shutil.which("setpriv", path=os.defpath + os.pathsep + os.environ.get("PATH", ""))
    if found is None:
        log.warning("setpriv (util-linux) not found: a program still runs when the daemon that started it is killed")
    return found


def _dies_with_parent(command: list[str]) -> list[str]:
    """Return the argv that runs `command` so that the kernel kills it when the daemon dies, even by SIGKILL.

    `setpriv --pdeathsig KILL` sets the signal and then replaces itself with the
    program, so the program keeps its pid and its process group. Without it, a
    program that a killed daemon started would run on while another node takes
    the run over, and a retry could run it a second time alongside.
    """
    setpriv = _setpriv()
    return command if setpriv is None else [setpriv, "--pdeathsig", "KILL", "--", *command]


def _missing_program(program: str, environment: Mapping[str, str], cwd: str | os.PathLike[str] | None) -> str | None:
    """Return why `program` cannot be started (as the kernel would word it), or None when it can.

    Checked before starting, because through `setpriv` a missing program is an exit
    status rather than an error of the start itself.
    """
    import shutil

    if os.sep in program:
        path = program if cwd is None or os.path.isabs(program) else os.path.join(cwd, program)
        if not os.path.exists(path):
            return os.strerror(2)
        return None if os.access(path, os.X_OK) and not os.path.isdir(path) else os.strerror(13)
    return None if shutil.which(program, path=environment.get("PATH", os.defpath)) else os.strerror(2)


def child_environment(names: Collection[str] = DEFAULT_ENV) -> dict[str, str]:
    """Return the variables of the daemon's environment that `names` lists: all a child process gets."""
    return {name: os.environ[name] for name in sorted(names) if name in os.environ}


class _BoundedOutput:
    """The first `limit` bytes of a stream; later bytes are counted and dropped as they arrive."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.kept = bytearray()
        self.total = 0

    async def read_all(self, stream: ByteReceiveStream | None) -> None:
        assert stream is not None, "the process was started with stdout=PIPE"
        while True:
            try:
                chunk = await stream.receive(_READ_CHUNK)
            except anyio.EndOfStream:
                return
            self.total += len(chunk)
            room = self.limit - len(self.kept)
            if room > 0:
                self.kept += chunk[:room]

    def text(self) -> str:
        """Return the kept output as text, ending with a note when bytes were discarded."""
        discarded = self.total - len(self.kept)
        # A cut can split a UTF-8 sequence, and decoding with `final=False` drops the incomplete tail.
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        text = decoder.decode(bytes(self.kept), final=discarded == 0)
        # Stores such as PostgreSQL reject NUL in text columns.
        text = text.replace("\x00", "\ufffd")
        if discarded:
            text += f"\n[output cut at {self.limit} bytes; {discarded} more bytes were discarded]"
        return text


def _kill_group(pid: int) -> None:
    # The process leads its own session, so its group id is its pid.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def _exit_detail(code: int | None) -> str:
    if code is None or code == 0:
        return ""
    if code < 0:
        try:
            return f"killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with code {code}"


def _excerpt(text: str) -> str:
    """Return `text` quoted, cut to its first 80 characters with the full length noted."""
    if len(text) <= _EXCERPT_CHARS:
        return repr(text)
    return f"{text[:_EXCERPT_CHARS]!r}… ({len(text)} characters)"


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
