"""Lower a checked project to the IR: resolve names, inheritance and defaults.

Lowering runs only after the checker found no errors, so it trusts what the
checks established (names resolve, durations parse, graphs are acyclic) and
asserts instead of reporting.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from pathlib import PurePath
from typing import Any

from compiler import ast, ir
from compiler.checks import scenarios
from compiler.checks.context import Context
from compiler.loader import Project
from compiler.version import __version__

# Alertmanager's own defaults for the root route, used when `defaults` omits them.
DEFAULT_GROUP_WAIT_S = 30.0
DEFAULT_GROUP_INTERVAL_S = 300.0
DEFAULT_REPEAT_INTERVAL_S = 4 * 3600.0

_READ_ONLY_KINDS = {"query", "wait", "notify", "report", "assist", "approve", "set"}
_PATH_ALIASES = {"labels": "label", "annotations": "annotation", "step": "steps"}


def lower(context: Context) -> ir.Ruleset:
    """Build the ruleset of a project that passed the checker."""
    symbols = context.symbols
    return ir.Ruleset(
        irules_version=__version__,
        source_digest=source_digest(context),
        environment=context.project.environment,
        settings=_settings(symbols.settings),
        receivers=[_receiver(decl) for decl in _sorted_by_name(symbols.receivers.values())],
        teams=[_team(decl) for decl in _sorted_by_name(symbols.teams.values())],
        services=[_service(decl) for decl in _sorted_by_name(symbols.services.values())],
        route=_root_route(symbols.routes[0].root, symbols.defaults),
        inhibit_rules=[_inhibit(decl) for decl in symbols.inhibits],
        time_intervals=[_time_interval(decl) for decl in _sorted_by_name(symbols.time_intervals.values())],
        severity=_severity(symbols.severities),
        pagerduty=_pagerduty(symbols.pagerduty),
        slack=_slack(symbols.slack[0]) if symbols.slack else None,
        escalations=[_escalation(decl) for decl in _sorted_by_name(symbols.escalations.values())],
        sources=[_source(decl) for decl in _sorted_by_name(symbols.sources.values())],
        groupings=[_grouping(decl) for decl in context.project.decls if isinstance(decl, ast.Grouping)],
        actions=[_action(decl) for decl in _sorted_by_name(symbols.actions.values())],
        runbooks=[_runbook(decl, context) for decl in _sorted_by_name(symbols.runbooks.values())],
        templates=[_template(decl) for decl in _sorted_by_name(symbols.templates.values())],
        tests=[_test(decl) for decl in symbols.tests],
    )


def source_digest(context: Context) -> str:
    """Return a SHA-256 over every source file, independent of file order and working directory."""
    project = context.project
    entries = []
    for path, source in project.sources.items():
        entries.append((portable_path(path, project), source.text))
    digest = hashlib.sha256()
    for name, text in sorted(entries):
        digest.update(name.encode() + b"\0" + text.encode() + b"\0")
    return digest.hexdigest()


def portable_path(shown: str, project: Project) -> str:
    """Return a source path that does not depend on the working directory.

    Files of the standard library become `stdlib/NAME`; the others are made
    relative to the project folder, or reduced to their name outside it.
    """
    if shown in project.stdlib_paths:
        return "stdlib/" + PurePath(shown).name
    try:
        return PurePath(shown).relative_to(project.root).as_posix()
    except ValueError:
        return PurePath(shown).name


def _sorted_by_name(decls: Iterable[Any]) -> list[Any]:
    return sorted(decls, key=lambda decl: decl.decl_name.value)


def _props(items: Iterable[object]) -> Iterator[ast.Property]:
    for item in items:
        if isinstance(item, ast.Property):
            yield item


def _first(items: Iterable[object], key: str) -> ast.Property | None:
    return next((prop for prop in _props(items) if prop.key == key), None)


# ---------------------------------------------------------------- values


def value(node: object) -> Any:
    """Return the plain value of a literal node: seconds for durations, fractions for percentages."""
    match node:
        case None:
            return None
        case ast.Str(value=text) | ast.Name(value=text):
            return text
        case ast.Secret(name=name):
            return ir.SecretRef(secret=name.value)
        case ast.Int(value=number) | ast.Bool(value=number):
            return number
        case ast.Number(value=number):
            return number
        case ast.Duration(seconds=seconds):
            return float(seconds)
        case ast.Percent(value=percent):
            return percent / 100
        case ast.NameList(items=items) | ast.StrList(items=items) | ast.LabelList(items=items) | ast.IntList(items=items):
            return [item.value for item in items]
    raise AssertionError(f"not a literal node: {type(node).__name__}")


def _literal_type(node: object) -> str:
    return {
        ast.Str: "string",
        ast.Int: "int",
        ast.Number: "number",
        ast.Duration: "duration",
        ast.Percent: "percent",
        ast.Bool: "bool",
        ast.Name: "string",
    }[type(node)]


def expression(node: ast.Expr, params: frozenset[str] = frozenset()) -> ir.Expr:
    """Return the JSON tree of an expression; bare names are labels, or parameters inside actions."""
    match node:
        case ast.Path(parts=parts):
            if len(parts) == 1:
                return {"path": ["params", parts[0]] if parts[0] in params else ["label", parts[0]]}
            return {"path": [_PATH_ALIASES.get(parts[0], parts[0]), *parts[1:]]}
        case ast.ListExpr(items=items):
            return {"list": [expression(item, params) for item in items]}
        case ast.Compare(op=op, left=left, right=right):
            return {"op": op, "left": expression(left, params), "right": expression(right, params)}
        case ast.BoolOp(op=op, items=items):
            return {op: [expression(item, params) for item in items]}
        case ast.Not(item=item):
            return {"not": expression(item, params)}
    return {"value": value(node), "type": _literal_type(node)}


def _matcher(node: ast.Matcher) -> ir.Matcher:
    return ir.Matcher(name=node.label.value, op=ir.MatchOp(node.op), value=node.value.value)


# ---------------------------------------------------------------- settings, people, services


def _settings(decls: list[ast.Settings]) -> ir.Settings:
    fields: dict[str, Any] = {}
    for decl in decls:
        for prop in decl.items:
            if prop.key == "smtp":
                fields["smtp"] = _smtp(prop)
            elif prop.key == "resolve_timeout":
                fields["resolve_timeout_s"] = value(prop.args[0])
            else:
                fields[prop.key] = value(prop.args[0])
    return ir.Settings(**fields)


def _smtp(prop: ast.Property) -> ir.Smtp:
    options = {option.key: value(option.args[0]) for option in _props(prop.args[1:])}
    return ir.Smtp(
        smarthost=value(prop.args[0]),
        sender=options.get("from"),
        username=options.get("username"),
        password=options.get("password"),
        require_tls=options.get("require_tls"),
    )


def _channel(node: ast.Channel) -> ir.Channel:
    options = {option.key: value(option.args[0]) for option in node.options}
    return ir.Channel(kind=node.kind, target=value(node.target), **options)


def _receiver(decl: ast.Team | ast.Receiver) -> ir.Receiver:
    return ir.Receiver(
        name=decl.name.value, is_team=isinstance(decl, ast.Team), channels=[_channel(item) for item in decl.channels]
    )


def _team(decl: ast.Team) -> ir.Team:
    fields: dict[str, Any] = {}
    for prop in _props(decl.items):
        fields[prop.key] = value(prop.args[0])
    return ir.Team(name=decl.name.value, **fields)


def _service(decl: ast.Service) -> ir.Service:
    fields: dict[str, Any] = {}
    for prop in decl.items:
        if prop.key == "match":
            fields["matchers"] = [_matcher(matcher) for matcher in prop.args]
        else:
            fields[prop.key] = value(prop.args[0])
    return ir.Service(name=decl.name.value, **fields)


# ---------------------------------------------------------------- routing


def _root_route(root: ast.Route, defaults: list[ast.Defaults]) -> ir.Route:
    inherited = {
        "group_by": [],
        "group_wait_s": DEFAULT_GROUP_WAIT_S,
        "group_interval_s": DEFAULT_GROUP_INTERVAL_S,
        "repeat_interval_s": DEFAULT_REPEAT_INTERVAL_S,
    }
    for decl in defaults:
        inherited.update(_timing(decl.items))
    assert root.receiver is not None, "the checker requires a root receiver"
    return _route(root, "0", root.receiver.value, inherited)


_TIMING_KEYS = frozenset({"group_wait", "group_interval", "repeat_interval"})


def _timing(items: Iterable[object]) -> dict[str, Any]:
    timing: dict[str, Any] = {}
    for prop in _props(items):
        if prop.key == "group_by":
            timing["group_by"] = value(prop.args[0])
        elif prop.key in _TIMING_KEYS:
            timing[prop.key + "_s"] = value(prop.args[0])
    return timing


def _route(node: ast.Route, route_id: str, parent_receiver: str, inherited: dict[str, Any]) -> ir.Route:
    # One pass over the items, because this runs once per route of trees with 10,000 routes.
    receiver = node.receiver.value if node.receiver is not None else parent_receiver
    options = dict(inherited)
    mute: list[str] = []
    active: list[str] = []
    children: list[ast.Route] = []
    continues = False
    for item in node.items:
        if isinstance(item, ast.Route):
            children.append(item)
        elif isinstance(item, ast.Property):
            key = item.key
            if key == "group_by":
                options["group_by"] = value(item.args[0])
            elif key in _TIMING_KEYS:
                options[key + "_s"] = value(item.args[0])
            elif key == "mute_during":
                mute.extend(value(item.args[0]))
            elif key == "active_during":
                active.extend(value(item.args[0]))
            elif key == "continue":
                continues = True
    routes = [_route(child, f"{route_id}.{index}", receiver, options) for index, child in enumerate(children)]
    return ir.Route(
        id=route_id,
        matchers=[_matcher(matcher) for matcher in node.matchers],
        receiver=receiver,
        continue_=continues,
        mute_time_intervals=mute,
        active_time_intervals=active,
        routes=routes,
        path=node.span.path,
        line=node.span.line,
        **options,
    )


def _inhibit(decl: ast.Inhibit) -> ir.Inhibit:
    return ir.Inhibit(
        source_matchers=[_matcher(matcher) for matcher in decl.source],
        target_matchers=[_matcher(matcher) for matcher in decl.target],
        equal=value(decl.equal) if decl.equal is not None else [],
    )


def _time_interval(decl: ast.TimeInterval) -> ir.TimeInterval:
    from compiler.timeintervals import parse_times

    periods = []
    for period in decl.periods:
        fields: dict[str, Any] = {}
        for prop in period.items:
            if prop.key == "times":
                fields["times"] = [
                    ir.TimeRange(start_minute=span.start_minute, end_minute=span.end_minute)
                    for text in value(prop.args[0])
                    for span in parse_times(text)
                ]
            else:
                fields[prop.key] = value(prop.args[0])
        periods.append(ir.Period(**fields))
    return ir.TimeInterval(name=decl.name.value, periods=periods)


# ---------------------------------------------------------------- triage and integrations


def _severity(decls: list[ast.SeverityDecl]) -> ir.SeverityPolicy:
    if not decls:
        return ir.SeverityPolicy()
    decl = decls[0]
    rules = [
        ir.SeverityRule(level=rule.level.value, when=expression(rule.condition), path=rule.span.path, line=rule.span.line)
        for rule in decl.rules
    ]
    fallback = decl.fallback
    if fallback is None:
        return ir.SeverityPolicy(rules=rules)
    options = {prop.key: value(prop.args[0]) for prop in fallback.options}
    return ir.SeverityPolicy(
        rules=rules,
        fallback_level=fallback.level.value if fallback.level else options.get("fallback"),
        classify=fallback.classify,
        classify_confidence=options.get("confidence"),
        classify_model=options.get("model"),
        classify_model_version=options.get("version"),
    )


def _pagerduty(decls: list[ast.PagerDuty]) -> ir.PagerDuty:
    priorities: dict[str, str] = {}
    rules: list[ir.PagerDutyRule] = []
    for decl in decls:
        for item in decl.items:
            if isinstance(item, ast.PagerDutyRule):
                rules.append(_pagerduty_rule(item))
            else:
                priorities[item.args[0].value] = item.args[1].value
    return ir.PagerDuty(priorities=priorities, rules=rules)


def _pagerduty_rule(rule: ast.PagerDutyRule) -> ir.PagerDutyRule:
    fields: dict[str, Any] = {}
    for prop in rule.items:
        if prop.key == "when":
            fields["when"] = expression(prop.args[0])
        elif prop.key == "suppress":
            fields["suppress"] = True
        else:
            fields[prop.key] = value(prop.args[0])
    return ir.PagerDutyRule(title=rule.title.value, **fields)


def _slack(decl: ast.Slack) -> ir.Slack:
    return ir.Slack(**{prop.key: value(prop.args[0]) for prop in decl.items})


def _escalation(decl: ast.Escalation) -> ir.Escalation:
    steps: list[ir.EscalationStep] = []
    repeat, repeat_every = 0, None
    for item in decl.items:
        if isinstance(item, ast.EscalationStep):
            steps.append(_escalation_step(item, []))
        elif isinstance(item, ast.EscalationSeverityBlock):
            levels = value(item.levels)
            steps.extend(_escalation_step(step, levels) for step in item.steps)
        else:
            repeat, repeat_every = value(item.args[0]), value(item.args[1])
    steps.sort(key=lambda step: step.after_s)
    return ir.Escalation(name=decl.name.value, steps=steps, repeat=repeat, repeat_every_s=repeat_every)


def _escalation_step(step: ast.EscalationStep, levels: list[str]) -> ir.EscalationStep:
    action = step.action
    target = level = None
    if action.key == "escalate":
        level = value(action.args[0]) if action.args else None
    else:
        target = value(action.args[0])
    return ir.EscalationStep(
        after_s=step.delay.seconds, state=step.state, action=action.key, target=target, level=level, severities=levels
    )


def _source(decl: ast.Source) -> ir.Source:
    path = f"/hooks/{decl.name.value}"
    auth: list[ir.SourceAuth] = []
    resolved_when = None
    confirm: list[str] = []
    for prop in decl.items:
        if prop.key == "path":
            path = value(prop.args[0])
        elif prop.key == "auth none":
            auth.append(ir.SourceAuth(kind="none"))
        elif prop.key == "confirm_subscriptions":
            confirm = [value(item) for item in prop.args[0].items]
        elif prop.key in {"auth bearer", "auth hmac"}:
            options = {option.key: value(option.args[0]) for option in _props(prop.args[1:])}
            auth.append(ir.SourceAuth(kind=prop.key.split()[1], secret=value(prop.args[0]), **options))
        elif prop.key == "auth basic":
            options = {option.key: value(option.args[0]) for option in _props(prop.args)}
            auth.append(ir.SourceAuth(kind="basic", user=options.get("user"), secret=options.get("password")))
        elif prop.key == "resolved when":
            resolved_when = expression(prop.args[0])
    mappings = {".".join(mapping.target.parts): expression(mapping.value) for mapping in decl.mappings}
    return ir.Source(
        name=decl.name.value,
        path=path,
        auth=auth,
        mappings=mappings,
        resolved_when=resolved_when,
        confirm_subscriptions=confirm,
    )


def _grouping(decl: ast.Grouping) -> ir.Grouping:
    fields: dict[str, Any] = {}
    for prop in decl.items:
        if prop.key == "when":
            fields["when"] = expression(prop.args[0])
        elif prop.key == "follow_dependencies":
            fields["follow_dependencies"] = True
        elif prop.key in {"window", "flap_window"}:
            fields[prop.key + "_s"] = value(prop.args[0])
        else:
            fields[prop.key] = value(prop.args[0])
    return ir.Grouping(kind=decl.kind, name=decl.name.value if decl.name else None, **fields)


# ---------------------------------------------------------------- actions and runbooks


def _action(decl: ast.Action) -> ir.Action:
    params = frozenset(param.name.value for param in decl.params)
    flags = _flags(decl.items)
    step = _step_from_items(decl.name.value, decl.items, params)
    return ir.Action(
        name=decl.name.value,
        params=[
            ir.Param(name=param.name.value, type=param.type.value, default=value(param.default), pattern=value(param.pattern))
            for param in decl.params
        ],
        steps=[step],
        risk=flags.get("risk", "low"),
        read_only=flags.get("read_only", False),
        idempotent=flags.get("idempotent", False),
    )


def _flags(items: Iterable[object]) -> dict[str, Any]:
    flags: dict[str, Any] = {}
    for prop in _props(items):
        if prop.key in {"read_only", "idempotent"}:
            flags[prop.key] = True
        elif prop.key == "mutating":
            flags["read_only"] = False
        elif prop.key == "risk":
            flags["risk"] = value(prop.args[0])
    return flags


def _step_from_items(name: str, items: list[object], params: frozenset[str] = frozenset()) -> ir.Step:
    fields: dict[str, Any] = {"name": name, "kind": "call"}
    for item in items:
        if isinstance(item, ast.StepKind):
            fields["kind"] = item.kind
            fields["args"] = [_step_arg(arg, params) for arg in item.args]
            fields["options"] = {option.key: [value(arg) for arg in option.args] for option in item.options}
            if item.kind in _READ_ONLY_KINDS:
                fields["read_only"] = True
        elif isinstance(item, ast.ActionCall):
            fields["action"] = item.action.value
            fields["args"] = [{"name": arg.name.value if arg.name else None, "value": value(arg.value)} for arg in item.args]
    for prop in _props(items):
        match prop.key:
            case "when":
                fields["when"] = expression(prop.args[0], params)
            case "timeout":
                fields["timeout_s"] = value(prop.args[0])
            case "retry":
                fields["retry"] = value(prop.args[0])
                fields["backoff_s"] = value(prop.args[1])
            case "on_failure":
                fields["on_failure"] = value(prop.args[0])
            case "risk":
                fields["risk"] = value(prop.args[0])
            case "approval":
                fields["approval_team"] = value(prop.args[0])
                fields["approval_timeout_s"] = value(prop.args[1])
            case "read_only" | "idempotent":
                fields[prop.key] = True
            case "mutating":
                fields["read_only"] = False
    return ir.Step(**fields)


def _step_arg(arg: object, params: frozenset[str]) -> Any:
    if isinstance(arg, ast.Path):
        return {"path": arg.parts}
    if isinstance(arg, ast.Compare | ast.BoolOp | ast.Not | ast.ListExpr):
        return expression(arg, params)
    return value(arg)


def _runbook(decl: ast.Runbook, context: Context) -> ir.Runbook:
    graph = context.step_graph(decl)
    dependencies = graph.dependencies
    fields: dict[str, Any] = {}
    for prop in _props(decl.items):
        match prop.key:
            case "when":
                fields["when"] = expression(prop.args[0])
            case "auto":
                fields["auto"] = True
            case "manual":
                fields["auto"] = False
            case "timeout":
                fields["timeout_s"] = value(prop.args[0])
            case "risk" | "description":
                fields[prop.key] = value(prop.args[0])
            case "concurrency":
                fields["concurrency"] = value(prop.args[0])
            case "rate_limit":
                fields["rate_limit"] = (value(prop.args[0]), value(prop.args[1]))
    steps = []
    for step in _steps(decl):
        lowered = _step_from_items(step.name.value, step.items)
        name = step.name.value
        extra = {
            "depends_on": sorted(dependencies.predecessors(name)),
            "compensation": bool(graph.graph.nodes[name]["compensation"]),
        }
        steps.append(lowered.model_copy(update=extra))
    return ir.Runbook(id=decl.name.value, title=value(decl.title), steps=steps, **fields)


def _steps(decl: ast.Runbook) -> Iterator[ast.Step]:
    for item in decl.items:
        if isinstance(item, ast.Step):
            yield item
        elif isinstance(item, ast.Parallel):
            yield from item.steps


def _template(decl: ast.Template) -> ir.Template:
    return ir.Template(
        name=decl.name.value,
        locales={
            locale.locale.value: {field.name.value: field.value.value for field in locale.fields} for locale in decl.locales
        },
    )


def _test(decl: ast.Test) -> ir.TestCase:
    fields: dict[str, Any] = {"name": decl.title.value, "line": decl.span.line, "path": decl.span.path}
    if decl.scenario_items:
        return ir.TestCase(**fields, scenario=_scenario(decl))
    for item in decl.items:
        pairs = {pair.name.value: pair.value.value for pair in item.pairs}
        match item.key:
            case "alert":
                fields["labels"] = pairs
            case "annotations":
                fields["annotations"] = pairs
            case "also_firing":
                fields.setdefault("also_firing", []).append(pairs)
            case "at":
                fields["at"] = value(item.args[0])
            case "expect receivers":
                fields["expect_receivers"] = value(item.args[0])
            case "expect severity":
                fields["expect_severity"] = value(item.args[0])
            case "expect inhibited":
                fields["expect_inhibited"] = True
            case "expect not inhibited":
                fields["expect_inhibited"] = False
            case "expect runbooks":
                fields["expect_runbooks"] = value(item.args[0])
            case "expect group_by":
                fields["expect_group_by"] = value(item.args[0])
        if item.key in _EXPECTATION_NAMES:
            fields.setdefault("expect_lines", {})[_EXPECTATION_NAMES[item.key]] = item.span.line
    return ir.TestCase(**fields)


# The name under which `irules test` reports each `expect` line of a single-alert test.
_EXPECTATION_NAMES = {
    "expect receivers": "receivers",
    "expect severity": "severity",
    "expect inhibited": "inhibition",
    "expect not inhibited": "inhibition",
    "expect runbooks": "runbooks",
    "expect group_by": "group_by",
}


def _scenario(decl: ast.Test) -> ir.Scenario:
    """Lower a scenario test, whose start and times the checks have parsed and found not negative."""
    start = scenarios.start_of(decl)
    assert start is not None, "a scenario without `at` is rejected by check_scenario_start"
    begin = scenarios.parse_moment(start.value)
    assert begin is not None, "an `at` that does not parse is rejected by check_scenario_start"

    def offset(moment: ast.Duration | ast.Str | None) -> float | None:
        return None if moment is None else scenarios.moment_seconds(moment, begin)

    events = [_scenario_event(item, offset(item.at)) for item in decl.items if isinstance(item, ast.ScenarioEvent)]
    expectations = [
        _scenario_expectation(item, offset)
        for item in decl.items
        if isinstance(item, ast.TestItem) and item.key.startswith("expect ")
    ]
    until = scenarios.until_of(decl)
    if until is not None:
        until_s = offset(until.args[0])
    else:
        times = [event.at_s for event in events] + [item.at_s for item in expectations if item.at_s is not None]
        until_s = max(times, default=0.0)
    return ir.Scenario(start=start.value, until_s=until_s, events=events, expectations=expectations)


def _scenario_event(event: ast.ScenarioEvent, at_s: float | None) -> ir.ScenarioEvent:
    kind = ir.ScenarioEventKind(event.kind)
    if kind is ir.ScenarioEventKind.RESOLVE and event.by is not None:
        kind = ir.ScenarioEventKind.RESOLVE_INCIDENT
    return ir.ScenarioEvent(
        kind=kind,
        labels={pair.name.value: pair.value.value for pair in event.labels},
        annotations={pair.name.value: pair.value.value for pair in event.annotations or []},
        by=None if event.by is None else event.by.value,
        at_s=at_s,
        line=event.span.line,
    )


def _scenario_expectation(item: ast.TestItem, offset: Any) -> ir.ScenarioExpectation:
    kind = ir.ScenarioExpectationKind(item.key.removeprefix("expect "))
    fields: dict[str, Any] = {"kind": kind, "line": item.span.line}
    match kind:
        case ir.ScenarioExpectationKind.INCIDENTS:
            fields["count"] = item.args[0].value
        case ir.ScenarioExpectationKind.PAGE:
            receiver, event, at = item.args
            fields.update(receiver=receiver.value, event=value(event), at_s=offset(at))
        case ir.ScenarioExpectationKind.NO_PAGE:
            receiver, event = item.args
            fields.update(receiver=receiver.value, event=value(event))
        case ir.ScenarioExpectationKind.ESCALATION:
            level, target, at = item.args
            fields.update(level=level.value, receiver=value(target), at_s=offset(at))
        case ir.ScenarioExpectationKind.RUNBOOK:
            runbook, path, at = item.args
            fields.update(runbook=runbook.value, path=value(path), at_s=offset(at))
        case ir.ScenarioExpectationKind.NO_RUNBOOK:
            fields["runbook"] = item.args[0].value
    return ir.ScenarioExpectation(**fields)
