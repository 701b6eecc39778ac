"""Render a step into its exact operation: the JSON document that a dry run shows, an approver sees and the runner performs.

One function renders for both the plan of `irules test-runbook --dry-run` and
the executor, so the argv or request in a plan is the one a run executes for
the same values. The one difference is `defer_step_reads`: a dry run has no
step outputs, so templates that read `steps.NAME` stay as written and are
decided at run time, while arguments known from the alert are still checked.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from compiler import ir
from runtime.notify.render import TemplateFailed, render_text
from runtime.runbooks import process
from runtime.runbooks.model import StepRejected

AT_RUN_TIME = "decided at run time"
RISK_ORDER = {"low": 0, "medium": 1, "high": 2}


def template_values(values: Mapping[str, Any]) -> dict[str, Any]:
    """Return `values` with the names templates use: `label` and `annotation` beside `labels` and `annotations`."""
    result = dict(values)
    if "labels" in result:
        result.setdefault("label", result["labels"])
    if "annotations" in result:
        result.setdefault("annotation", result["annotations"])
    return result


def render_operation(
    step: ir.Step,
    actions: Mapping[str, ir.Action],
    values: Mapping[str, Any],
    *,
    defer_step_reads: bool = False,
) -> dict[str, Any]:
    """Return the operation of `step` for `values`, with every template rendered and every action argument checked.

    Example:
        render_operation(step, {action.name: action for action in ruleset.actions}, values)
        # {"kind": "run", "argv": ["kubectl", "rollout", "restart", ...], "exit_codes": [0], "action": "restart", ...}

    Raises:
        StepRejected: the step calls an undeclared action, a template fails,
            or a value fails its action parameter's pattern or an argv check.
    """
    if step.kind == "call":
        return _call(step, actions.get(step.action or ""), values, defer_step_reads)
    if step.kind == "run":
        return _run(step, values, defer_step_reads)
    return _primitive(step, values, defer_step_reads)


def step_safety(step: ir.Step, action: ir.Action | None) -> tuple[bool, str]:
    """Return whether `step` is read-only and its risk: the higher of its own and its action's.

    NOTE: the IR keeps no trace of a `mutating` attribute that overrides a read-only
    action, so a call of a read-only action counts as read-only here.
    """
    read_only = step.read_only or (action is not None and action.read_only)
    risks = [step.risk, action.risk if action is not None else "low"]
    return read_only, max(risks, key=lambda level: RISK_ORDER.get(level, 0))


def auto_approvable(step: ir.Step, action: ir.Action | None) -> bool:
    """Return True when `--auto-approve-safe` may grant the step's approval: it is read-only or low risk.

    An `approve` step is never granted this way, because it stands for the steps after it.
    """
    if step.kind == "approve":
        return False
    read_only, risk = step_safety(step, action)
    return read_only or risk == "low"


def operation_text(operation: Mapping[str, Any]) -> str:
    """Return an operation as one line for people: the argv as a shell would quote it, or the request."""
    import json
    import shlex

    if "argv" in operation:
        return shlex.join(str(part) for part in operation["argv"])
    if "method" in operation:
        return f"{operation['method']} {operation['url']}"
    fields = {name: value for name, value in operation.items() if name not in ("kind", "values")}
    return f"{operation.get('kind', 'step')} {json.dumps(fields, sort_keys=True, default=str)}"


def reads_steps(template: str) -> bool:
    """Return True when `template` reads the output of an earlier step."""
    return "steps." in template and ("{{" in template or "{%" in template)


def _call(step: ir.Step, action: ir.Action | None, values: Mapping[str, Any], defer: bool) -> dict[str, Any]:
    if action is None:
        raise StepRejected(f"step `{step.name}` calls action `{step.action}`, which the rules do not declare")
    body = action.steps[0] if action.steps else None
    if body is None:
        raise StepRejected(f"action `{action.name}` has no step")
    if defer and any(reads_steps(str(argument.get("value", ""))) for argument in step.args):
        return _deferred_call(step, action, body, values)
    if body.kind == "run":
        prepared = process.prepare_process(step, values, action)
        return {
            "kind": "run",
            "argv": list(prepared.argv),
            "exit_codes": sorted(prepared.exit_codes),
            "action": action.name,
            "params": dict(prepared.params),
        }
    params = process.bind_action(action, step.args, values)
    return {**_primitive(body, {**values, **params}, defer), "action": action.name, "params": params}


def _deferred_call(step: ir.Step, action: ir.Action, body: ir.Step, values: Mapping[str, Any]) -> dict[str, Any]:
    """Describe a call whose arguments read earlier steps: what is known now is rendered and checked, the rest waits."""
    written: dict[str, str] = {}
    for index, argument in enumerate(step.args):
        name = argument.get("name") or (action.params[index].name if index < len(action.params) else None)
        if name is not None:
            written[name] = _render(str(argument.get("value")), values, defer=True)
    declared = {param.name: param for param in action.params}
    for name, text in written.items():
        param = declared.get(name)
        if param is not None and param.pattern and not reads_steps(text):
            process.check_pattern(f"argument `{name}` of action `{action.name}`", param.pattern, text)
    return {
        "kind": body.kind,
        "action": action.name,
        "params": written,
        "note": f"arguments reading earlier steps are {AT_RUN_TIME}",
    }


def _run(step: ir.Step, values: Mapping[str, Any], defer: bool) -> dict[str, Any]:
    templates = step.args[0] if step.args and isinstance(step.args[0], list) else None
    if defer and templates is not None and any(reads_steps(str(part)) for part in templates):
        argv = [_render(str(part), values, defer=True) for part in templates]
        return {"kind": "run", "argv": argv, "note": f"arguments reading earlier steps are {AT_RUN_TIME}"}
    prepared = process.prepare_process(step, values)
    return {"kind": "run", "argv": list(prepared.argv), "exit_codes": sorted(prepared.exit_codes)}


def _primitive(step: ir.Step, values: Mapping[str, Any], defer: bool) -> dict[str, Any]:
    kind = step.kind
    if kind == "http":
        return _http(step, values, defer)
    if kind == "query":
        return {"kind": "query", "query": _render(str(step.args[0]), values, defer)}
    if kind == "notify":
        return {"kind": "notify", "receiver": str(step.args[0]), "template": step.args[1] if len(step.args) > 1 else None}
    if kind == "approve":
        timeout_s = step.args[1] if len(step.args) > 1 else None
        return {
            "kind": "approve",
            "team": str(step.args[0]) if step.args else None,
            "timeout_s": float(timeout_s) if timeout_s is not None else None,
        }
    if kind == "wait":
        return {"kind": "wait", "seconds": float(step.args[0]) if step.args else 0.0}
    if kind == "report":
        return {"kind": "report", "template": str(step.args[0]) if step.args else None}
    if kind == "set":
        return {"kind": "set", "args": [_render(str(argument), values, defer) for argument in step.args]}
    if kind == "assist":
        return {"kind": "assist", "focus": str(step.args[0]) if step.args else ""}
    raise StepRejected(f"step `{step.name}` has the unknown kind `{kind}`")


def _http(step: ir.Step, values: Mapping[str, Any], defer: bool) -> dict[str, Any]:
    request: dict[str, Any] = {"kind": "http", "method": str(step.args[0]), "url": _render(str(step.args[1]), values, defer)}
    header = step.options.get("header")
    if header:
        request["headers"] = {str(header[0]): _render(str(header[1]), values, defer)}
    body = step.options.get("body")
    if body:
        request["body"] = _render(str(body[0]), values, defer)
    expect = step.options.get("expect")
    request["expect"] = expect[0] if expect else None
    url = request["url"]
    if not (defer and reads_steps(url)) and not url.startswith(("http://", "https://")):
        raise StepRejected(f"step `{step.name}`: the URL {url[:80]!r} is not an http or https URL")
    return request


def _render(template: str, values: Mapping[str, Any], defer: bool) -> str:
    if defer and reads_steps(template):
        return template
    try:
        return render_text(template, dict(values))
    except TemplateFailed as error:
        raise StepRejected(f"the template {template[:80]!r} failed: {error}") from error
