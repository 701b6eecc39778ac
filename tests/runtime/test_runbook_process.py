"""The `run` step: hostile alert data stays one argument, actions check their parameters, processes stay bounded.

The injection tests run a real process, the fake kubectl in `fake_kubectl.py`,
and read back the argv it received from its log, so they prove what a program
receives rather than what the code meant to pass.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import time
import tracemalloc
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest

from compiler import ir
from compiler.api import check_path
from runtime.runbooks.process import (
    DEFAULT_ENV,
    MAX_ARGUMENT_BYTES,
    PreparedProcess,
    StepRejected,
    bind_action,
    child_environment,
    prepare_process,
    render_argv,
    run_process,
)

FAKE_KUBECTL = Path(__file__).with_name("fake_kubectl.py")
FAKE_ENV = DEFAULT_ENV | {"FAKE_KUBECTL_LOG", "FAKE_KUBECTL_STATE", "FAKE_KUBECTL_EXIT"}
NAME_PATTERN = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"

RULES = """
team ops {
  slack "#ops"
}

route {
  receiver ops
}

runbook rb-test "Process steps" {
  when label.alertname == "Test"
  manual

  step list_pods {
    run ["kubectl", "get", "pods", "--namespace={{ label.namespace }}", "--", "{{ label.pod }}"]
    read_only
    timeout 30s
  }

  step restart_pod {
    restart pod "{{ label.pod }}" namespace = "{{ label.namespace }}"
  }

  step restart_deployment {
    restart deployment "{{ label.deployment }}"
  }

  step scale_out {
    scale deployment "{{ label.deployment }}" replicas = "{{ label.replicas }}" namespace = "{{ label.namespace }}"
  }

  step roll_back {
    approval from ops timeout 5m
    rollback deployment "{{ label.deployment }}" revision = "{{ label.revision }}"
  }

  step check_config {
    run ["kubectl", "exec", "--namespace={{ label.namespace }}", "deployment/{{ label.deployment }}", "--", "promtool", "check", "config", "/etc/prometheus/prometheus.yml"]
      exit_codes [0, 2]
    read_only
    timeout 1m
  }

  step failover {
    circuit_breaker "api"
  }
}
"""

# Values that a shell, a glob, Jinja or an option parser would read as more than data.
# `{canary}` is replaced by a file that must never be created.
HOSTILE = {
    "semicolon": "web; touch {canary}",
    "and": "web && touch {canary}",
    "pipe": "web | touch {canary}",
    "redirect": "web > {canary}",
    "command_substitution": "$(touch {canary})",
    "backticks": "`touch {canary}`",
    "variables": "$HOME ${PATH} $((6*7))",
    "newline": "web\ntouch {canary}",
    "carriage_return": "web\r\n--all",
    "glob": "*",
    "glob_path": "/etc/*",
    "braces": "{a,b}",
    "dash_rf": "-rf",
    "kubeconfig": "--kubeconfig=/etc/x",
    "double_dash": "--",
    "quotes": "'\"\\",
    "whitespace": "  web  \t",
    "jinja_expression": "{{ 7*7 }}",
    "jinja_block": "{% for x in range(3) %}{{ x }}{% endfor %}",
    "jinja_comment": "{# hidden #}",
    "unicode": "ünïcødé-名前-🚀-\u202eevil",
    "large": "x " * 50_000,
}


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def ruleset(tmp_path_factory: pytest.TempPathFactory) -> ir.Ruleset:
    folder = tmp_path_factory.mktemp("rules")
    (folder / "policy.irules").write_text(RULES, encoding="utf-8")
    return check_path(folder).ruleset()


@dataclass
class FakeKubectl:
    log: Path
    state: Path

    def calls(self) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text(encoding="utf-8").splitlines()]


@pytest.fixture
def kubectl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeKubectl:
    """Put the fake kubectl, and this interpreter as `python3` for its shebang, first on PATH."""
    folder = tmp_path / "bin"
    folder.mkdir()
    (folder / "kubectl").symlink_to(FAKE_KUBECTL)
    (folder / "python3").symlink_to(sys.executable)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ.get('PATH', os.defpath)}")
    fake = FakeKubectl(tmp_path / "kubectl.jsonl", tmp_path / "kubectl-state.json")
    monkeypatch.setenv("FAKE_KUBECTL_LOG", str(fake.log))
    monkeypatch.setenv("FAKE_KUBECTL_STATE", str(fake.state))
    monkeypatch.delenv("FAKE_KUBECTL_EXIT", raising=False)
    return fake


@pytest.fixture
def canary(tmp_path: Path) -> Path:
    """Return a file that a value such as `; touch FILE` would create if a shell ever read it."""
    return tmp_path / "pwned"


def step(ruleset: ir.Ruleset, name: str) -> ir.Step:
    return next(item for item in ruleset.runbooks[0].steps if item.name == name)


def action(ruleset: ir.Ruleset, name: str) -> ir.Action:
    return next(item for item in ruleset.actions if item.name == name)


def prepare(ruleset: ir.Ruleset, name: str, labels: dict[str, str]) -> PreparedProcess:
    found = step(ruleset, name)
    declared = action(ruleset, found.action) if found.action else None
    return prepare_process(found, {"label": labels}, declared)


def hostile(case: str, canary: Path) -> str:
    return HOSTILE[case].replace("{canary}", str(canary))


def wait_until_dead(pid: int) -> bool:
    """Return whether process `pid` is gone or a zombie within five seconds; an unreaped zombie has no effect left."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.02)
    return False


# ---------------------------------------------------------------- hostile data reaches the program as one argument


@pytest.mark.anyio
@pytest.mark.parametrize("case", sorted(HOSTILE))
async def test_run_value_reaches_program_unchanged(ruleset: ir.Ruleset, kubectl: FakeKubectl, canary: Path, case: str) -> None:
    value = hostile(case, canary)
    prepared = prepare(ruleset, "list_pods", {"namespace": value, "pod": value})

    outcome = await prepared.run(env_allowlist=FAKE_ENV)

    expected = ["kubectl", "get", "pods", f"--namespace={value}", "--", value]
    assert outcome.ok is True
    assert outcome.operation == {"argv": expected}
    assert prepared.operation == {"argv": expected}
    assert [call["argv"] for call in kubectl.calls()] == [expected]
    assert not canary.exists()


@pytest.mark.anyio
async def test_run_template_in_data_stays_literal(ruleset: ir.Ruleset, kubectl: FakeKubectl) -> None:
    prepared = prepare(ruleset, "list_pods", {"namespace": "shop", "pod": "{{ 7*7 }}{% if true %}yes{% endif %}"})

    await prepared.run(env_allowlist=FAKE_ENV)

    assert kubectl.calls()[0]["argv"][-1] == "{{ 7*7 }}{% if true %}yes{% endif %}"


@pytest.mark.anyio
async def test_action_runs_its_argv_once(ruleset: ir.Ruleset, kubectl: FakeKubectl) -> None:
    prepared = prepare(ruleset, "restart_pod", {"pod": "web-7d4b9c6f5-x2x7q", "namespace": "shop"})

    outcome = await prepared.run(env_allowlist=FAKE_ENV)

    expected = ["kubectl", "delete", "--wait=false", "--namespace=shop", "pod", "--", "web-7d4b9c6f5-x2x7q"]
    assert prepared.params == {"kind": "pod", "name": "web-7d4b9c6f5-x2x7q", "namespace": "shop"}
    assert prepared.timeout_s == 60.0
    assert outcome.operation == {"argv": expected}
    assert outcome.output == 'pod "web-7d4b9c6f5-x2x7q" deleted\n'
    assert [call["argv"] for call in kubectl.calls()] == [expected]


@pytest.mark.anyio
async def test_action_scale_and_rollback_argv(ruleset: ir.Ruleset, kubectl: FakeKubectl) -> None:
    labels = {"deployment": "checkout", "namespace": "shop", "replicas": "6", "revision": "0"}

    scaled = await prepare(ruleset, "scale_out", labels).run(env_allowlist=FAKE_ENV)
    rolled = await prepare(ruleset, "roll_back", labels).run(env_allowlist=FAKE_ENV)

    assert scaled.output == "deployment.apps/checkout scaled\n"
    assert rolled.output == "deployment.apps/checkout rolled back\n"
    assert [call["argv"] for call in kubectl.calls()] == [
        ["kubectl", "scale", "--namespace=shop", "--replicas=6", "deployment", "--", "checkout"],
        ["kubectl", "rollout", "undo", "--namespace=default", "--to-revision=0", "deployment", "--", "checkout"],
    ]


# ---------------------------------------------------------------- action patterns reject before anything runs


@pytest.mark.parametrize("case", sorted(HOSTILE))
@pytest.mark.parametrize(("name", "action_name"), [("restart_pod", "restart"), ("scale_out", "scale"), ("roll_back", "rollback")])
def test_action_rejects_hostile_name(
    ruleset: ir.Ruleset, kubectl: FakeKubectl, canary: Path, case: str, name: str, action_name: str
) -> None:
    value = hostile(case, canary)
    labels = {"pod": value, "deployment": value, "namespace": "shop", "replicas": "3", "revision": "2"}

    with pytest.raises(StepRejected) as raised:
        prepare(ruleset, name, labels)

    message = str(raised.value)
    assert message.startswith(f"argument `name` of action `{action_name}` does not match the pattern `{NAME_PATTERN}`: ")
    assert len(message) < 450
    assert kubectl.calls() == []
    assert not canary.exists()


def test_action_rejection_cuts_long_value(ruleset: ir.Ruleset) -> None:
    value = "x; " + "y" * 100_000

    with pytest.raises(StepRejected) as raised:
        prepare(ruleset, "restart_deployment", {"deployment": value})

    expected_excerpt = repr(value[:80]) + "… (100003 characters)"
    assert (
        str(raised.value)
        == f"argument `name` of action `restart` does not match the pattern `{NAME_PATTERN}`: {expected_excerpt}"
    )


@pytest.mark.parametrize("case", ["semicolon", "kubeconfig", "dash_rf", "whitespace", "newline"])
def test_action_rejects_hostile_namespace(ruleset: ir.Ruleset, canary: Path, case: str) -> None:
    with pytest.raises(StepRejected, match=r"^argument `namespace` of action `restart` does not match the pattern"):
        prepare(ruleset, "restart_pod", {"pod": "web", "namespace": hostile(case, canary)})


def test_action_rejects_trailing_newline(ruleset: ir.Ruleset) -> None:
    # RE2's `$` matches only at the very end, unlike Python's, so `web\n` fails `^...$`.
    with pytest.raises(StepRejected, match="does not match the pattern"):
        prepare(ruleset, "restart_deployment", {"deployment": "web\n"})


@pytest.mark.parametrize(
    ("replicas", "message"),
    [
        ("3.0", "argument `replicas` of action `scale` must be an int, not '3.0'"),
        ("three", "argument `replicas` of action `scale` must be an int, not 'three'"),
        ("\u0663", "argument `replicas` of action `scale` must be an int, not '\u0663'"),
        (" 3", "argument `replicas` of action `scale` must be an int, not ' 3'"),
        ("", "argument `replicas` of action `scale` must be an int, not ''"),
        ("12345", "argument `replicas` of action `scale` does not match the pattern `^[0-9]{1,4}$`: '12345'"),
        ("-1", "argument `replicas` of action `scale` does not match the pattern `^[0-9]{1,4}$`: '-1'"),
    ],
)
def test_scale_rejects_invalid_replicas(ruleset: ir.Ruleset, replicas: str, message: str) -> None:
    labels = {"deployment": "checkout", "namespace": "shop", "replicas": replicas}

    with pytest.raises(StepRejected) as raised:
        prepare(ruleset, "scale_out", labels)

    assert str(raised.value) == message


def test_bind_action_defaults_and_names(ruleset: ir.Ruleset) -> None:
    restart = action(ruleset, "restart")
    call = [{"name": None, "value": "deployment"}, {"name": None, "value": "{{ label.app }}-api"}]

    assert bind_action(restart, call, {"label": {"app": "shop"}}) == {
        "kind": "deployment",
        "name": "shop-api",
        "namespace": "default",
    }
    named = [*call, {"name": "namespace", "value": "payments"}]
    assert bind_action(restart, named, {"label": {"app": "shop"}})["namespace"] == "payments"


def test_bind_action_renders_int_literals(ruleset: ir.Ruleset) -> None:
    scale = action(ruleset, "scale")
    call = [{"name": None, "value": "deployment"}, {"name": None, "value": "web"}, {"name": "replicas", "value": 4}]

    assert bind_action(scale, call, {})["replicas"] == "4"


@pytest.mark.parametrize(
    ("call", "message"),
    [
        ([{"name": None, "value": "deployment"}], "action `restart` needs a value for parameter `name`"),
        (
            [{"name": None, "value": "deployment"}, {"name": None, "value": "web"}, {"name": "replicas", "value": "3"}],
            "action `restart` has no parameter `replicas`",
        ),
        (
            [{"name": None, "value": "pod"}, {"name": "kind", "value": "pod"}],
            "argument `kind` of action `restart` is given twice",
        ),
        (
            [
                {"name": None, "value": "pod"},
                {"name": None, "value": "web"},
                {"name": None, "value": "shop"},
                {"name": None, "value": "x"},
            ],
            "action `restart` takes 3 arguments, but more were given",
        ),
    ],
)
def test_bind_action_rejects_wrong_arguments(ruleset: ir.Ruleset, call: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(StepRejected) as raised:
        bind_action(action(ruleset, "restart"), call, {})

    assert str(raised.value) == message


def test_action_parameters_shadow_roots(ruleset: ir.Ruleset) -> None:
    prepared = prepare(ruleset, "restart_deployment", {"deployment": "web", "namespace": "ignored"})

    assert prepared.argv == ("kubectl", "rollout", "restart", "--namespace=default", "deployment", "--", "web")


def test_prepare_rejects_non_run_action(ruleset: ir.Ruleset) -> None:
    with pytest.raises(ValueError, match=r"^action `circuit_breaker` does not run a program$"):
        prepare(ruleset, "failover", {})


# ---------------------------------------------------------------- argv checks


@pytest.mark.parametrize(
    ("templates", "message"),
    [
        ([], "the argv is empty, so there is no program to execute"),
        ([""], "the program of the argv is empty"),
        (
            ["{{ label.program }}", "get"],
            "the program '{{ label.program }}' is a template, but the rules must name the program to run",
        ),
        (["kube\x00ctl"], "the program contains a NUL character, which a program argument cannot carry"),
    ],
)
def test_render_argv_rejects_program(templates: list[str], message: str) -> None:
    with pytest.raises(StepRejected) as raised:
        render_argv(templates, {"label": {"program": "sh"}})

    assert str(raised.value) == message


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("web\x00--all", "argument 2 contains a NUL character, which a program argument cannot carry"),
        ("web\ud800", "argument 2 is not valid UTF-8 text: surrogates not allowed at character 3"),
        ("y" * (MAX_ARGUMENT_BYTES + 1), f"argument 2 renders to more than {MAX_ARGUMENT_BYTES} characters"),
        ("é" * 70_000, f"argument 2 is 140000 bytes long, but an argument may have at most {MAX_ARGUMENT_BYTES} bytes"),
    ],
    ids=["nul", "surrogate", "too_many_characters", "too_many_bytes"],
)
def test_render_argv_rejects_argument(value: str, message: str) -> None:
    with pytest.raises(StepRejected) as raised:
        render_argv(["kubectl", "--", "{{ label.pod }}"], {"label": {"pod": value}})

    assert str(raised.value) == message


@pytest.mark.parametrize("case", ["dash_rf", "kubeconfig", "double_dash"])
def test_render_argv_rejects_option_value(case: str) -> None:
    value = HOSTILE[case]

    with pytest.raises(StepRejected) as raised:
        render_argv(["kubectl", "logs", "{{ label.pod }}", "--", "{{ label.pod }}"], {"label": {"pod": value}})

    assert str(raised.value) == (
        f"argument 2 renders to {value!r}, which starts with `-` and would be read as an option "
        "unless it follows a literal `--` or a written prefix such as `--name=`"
    )


@pytest.mark.parametrize(
    ("template", "value", "argument"),
    [
        ("--namespace={{ label.x }}", "-rf", "--namespace=-rf"),
        ("-{{ label.x }}", "rf", "-rf"),
        ("{{ '--wait=false' if label.x == 'pod' else 'restart' }}", "pod", "--wait=false"),
        ("{% if label.x %}--all{% endif %}", "yes", "--all"),
    ],
)
def test_render_argv_accepts_written_dash(template: str, value: str, argument: str) -> None:
    assert render_argv(["kubectl", template], {"label": {"x": value}}) == ["kubectl", argument]


def test_render_argv_rejects_extended_written_dash() -> None:
    with pytest.raises(StepRejected, match=r"^argument 1 renders to '-nrf', which starts with `-`"):
        render_argv(["kubectl", "{{ label.x | default('-n') }}"], {"label": {"x": "-nrf"}})


def test_render_argv_keeps_whitespace() -> None:
    templates = ["kubectl", "--", "{{ label.x }}", " {{ label.x }} \n"]

    assert render_argv(templates, {"label": {"x": "\n a b \t"}}) == ["kubectl", "--", "\n a b \t", " \n a b \t \n"]


def test_render_argv_rejects_shell_template() -> None:
    with pytest.raises(StepRejected) as raised:
        render_argv(["sh", "-c", "kubectl delete pod {{ label.pod }}"], {"label": {"pod": "web"}})

    assert (
        str(raised.value)
        == "argument 2 is a template that `sh` parses as shell code, so run the program directly to keep the value one argument"
    )


@pytest.mark.anyio
async def test_shell_positional_parameter_stays_data(canary: Path) -> None:
    value = f"$(touch {canary}); `touch {canary}`"
    argv = render_argv(["sh", "-c", 'printf "%s" "$1"', "sh", "{{ label.x }}"], {"label": {"x": value}})

    outcome = await run_process(argv, timeout_s=10)

    assert outcome.output == value
    assert not canary.exists()


def test_render_argv_rejects_failing_template() -> None:
    with pytest.raises(
        StepRejected, match=r"^argument 1 failed to render: a `\*` in the template builds more than 100000 items$"
    ):
        render_argv(["kubectl", "{{ 'x' * 1000000 }}"], {})


# ---------------------------------------------------------------- exit codes


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("code", "ok", "detail"), [(0, True, ""), (2, True, "exited with code 2"), (1, False, "exited with code 1")]
)
async def test_exit_codes_count_as_success(
    ruleset: ir.Ruleset, kubectl: FakeKubectl, monkeypatch: pytest.MonkeyPatch, code: int, ok: bool, detail: str
) -> None:
    monkeypatch.setenv("FAKE_KUBECTL_EXIT", str(code))
    prepared = prepare(ruleset, "check_config", {"namespace": "monitoring", "deployment": "prometheus"})

    outcome = await prepared.run(env_allowlist=FAKE_ENV)

    assert prepared.exit_codes == frozenset({0, 2})
    assert (outcome.ok, outcome.exit_code, outcome.detail) == (ok, code, detail)
    assert outcome.output.startswith("Checking /etc/prometheus/prometheus.yml\n")


@pytest.mark.anyio
async def test_default_exit_code_is_zero(ruleset: ir.Ruleset, kubectl: FakeKubectl, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_KUBECTL_EXIT", "2")

    outcome = await prepare(ruleset, "list_pods", {"namespace": "shop", "pod": "web"}).run(env_allowlist=FAKE_ENV)

    assert (outcome.ok, outcome.exit_code, outcome.detail) == (False, 2, "exited with code 2")


@pytest.mark.anyio
async def test_fake_kubectl_exit_codes_from_state(ruleset: ir.Ruleset, kubectl: FakeKubectl) -> None:
    kubectl.state.write_text(json.dumps({"exit_codes": [1]}), encoding="utf-8")
    prepared = prepare(ruleset, "check_config", {"namespace": "monitoring", "deployment": "prometheus"})

    first = await prepared.run(env_allowlist=FAKE_ENV)
    second = await prepared.run(env_allowlist=FAKE_ENV)

    assert (first.ok, first.exit_code) == (False, 1)
    assert (second.ok, second.exit_code) == (True, 0)
    assert len(kubectl.calls()) == 2


@pytest.mark.anyio
async def test_signal_exit_is_reported() -> None:
    outcome = await run_process([sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGTERM)"], timeout_s=10)

    assert (outcome.ok, outcome.exit_code, outcome.detail) == (False, -15, "killed by signal SIGTERM")


@pytest.mark.anyio
async def test_missing_program_fails_without_retry() -> None:
    outcome = await run_process(["irules-no-such-program", "--version"], timeout_s=10)

    assert outcome.ok is False
    assert outcome.retryable is False
    assert outcome.detail == "could not start `irules-no-such-program`: No such file or directory"
    assert outcome.operation == {"argv": ["irules-no-such-program", "--version"]}


@pytest.mark.anyio
async def test_run_without_timeout_is_refused() -> None:
    with pytest.raises(ValueError, match=r"^the step has no timeout, so pass `timeout_s`$"):
        await PreparedProcess(("true",)).run()


# ---------------------------------------------------------------- output, stdin and environment


@pytest.mark.anyio
async def test_output_cut_without_buffering() -> None:
    program = "import sys\nfor _ in range(160): sys.stdout.buffer.write(b'x' * 62_500)"
    tracemalloc.start()
    try:
        outcome = await run_process([sys.executable, "-c", program], timeout_s=60)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert outcome.ok is True
    assert outcome.output == "x" * 65_536 + "\n[output cut at 65536 bytes; 9934464 more bytes were discarded]"
    assert peak < 2_000_000


@pytest.mark.anyio
async def test_output_cut_keeps_whole_characters() -> None:
    outcome = await run_process([sys.executable, "-c", "print('é' * 40_000, end='')"], timeout_s=10, output_limit=1001)

    assert outcome.output == "é" * 500 + "\n[output cut at 1001 bytes; 78999 more bytes were discarded]"


@pytest.mark.anyio
async def test_output_merges_stderr_and_replaces_nul() -> None:
    program = "import sys\nsys.stdout.write('a\\x00b\\n'); sys.stdout.flush(); sys.stderr.write('warning\\n')"

    outcome = await run_process([sys.executable, "-c", program], timeout_s=10)

    assert outcome.output == "a\ufffdb\nwarning\n"


@pytest.mark.anyio
async def test_stdin_is_empty() -> None:
    outcome = await run_process([sys.executable, "-c", "import sys; print(repr(sys.stdin.read()))"], timeout_s=10)

    assert outcome.output == "''\n"


@pytest.mark.anyio
async def test_child_environment_is_allowlisted(
    ruleset: ir.Ruleset, kubectl: FakeKubectl, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IRULES_TEST_SECRET", "s3cr3t-value")
    monkeypatch.setenv("KUBECONFIG", "/etc/kube/config")

    outcome = await prepare(ruleset, "list_pods", {"namespace": "shop", "pod": "web"}).run(env_allowlist=FAKE_ENV)

    seen = set(kubectl.calls()[0]["env"])
    assert outcome.ok is True
    assert "IRULES_TEST_SECRET" not in seen
    assert {"PATH", "KUBECONFIG", "FAKE_KUBECTL_LOG", "FAKE_KUBECTL_STATE"} <= seen


def test_child_environment_picks_allowed_names(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in DEFAULT_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PATH", "/usr/bin")
    monkeypatch.setenv("TZ", "Europe/Berlin")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s3cr3t-value")
    monkeypatch.setenv("AWS_PROFILE", "prod")

    assert child_environment() == {"PATH": "/usr/bin", "TZ": "Europe/Berlin"}
    assert child_environment(DEFAULT_ENV | {"AWS_PROFILE"}) == {"AWS_PROFILE": "prod", "PATH": "/usr/bin", "TZ": "Europe/Berlin"}


# ---------------------------------------------------------------- timeouts and process groups


@pytest.mark.anyio
@pytest.mark.slow
async def test_timeout_kills_process() -> None:
    started = time.monotonic()

    outcome = await run_process(["sleep", "30"], timeout_s=0.5)

    assert (outcome.ok, outcome.exit_code, outcome.detail) == (False, None, "timed out after 0.5s")
    assert outcome.operation == {"argv": ["sleep", "30"]}
    assert time.monotonic() - started < 10


@pytest.mark.anyio
@pytest.mark.slow
async def test_timeout_kills_process_group() -> None:
    program = "import subprocess\nchild = subprocess.Popen(['sleep', '30'])\nprint(child.pid, flush=True)\nchild.wait()"

    outcome = await run_process([sys.executable, "-c", program], timeout_s=1)

    assert outcome.detail == "timed out after 1s"
    assert wait_until_dead(int(outcome.output))


@pytest.mark.anyio
async def test_exit_kills_leftover_processes() -> None:
    program = "import subprocess\nchild = subprocess.Popen(['sleep', '30'])\nprint(child.pid, flush=True)"
    started = time.monotonic()

    outcome = await run_process([sys.executable, "-c", program], timeout_s=20)

    assert (outcome.ok, outcome.exit_code, outcome.detail) == (True, 0, "")
    assert time.monotonic() - started < 10
    assert wait_until_dead(int(outcome.output))


@pytest.mark.anyio
async def test_cancelled_caller_kills_process(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    program = f"import os, time\nopen({str(pid_file)!r}, 'w').write(str(os.getpid()))\ntime.sleep(30)"

    async with anyio.create_task_group() as group:
        group.start_soon(functools.partial(run_process, [sys.executable, "-c", program], timeout_s=60))
        with anyio.fail_after(10):
            while not pid_file.exists() or not pid_file.read_text():
                await anyio.sleep(0.01)
        group.cancel_scope.cancel()

    assert wait_until_dead(int(pid_file.read_text()))
