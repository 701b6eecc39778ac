"""Expressions: every condition, mapping and `set` step is typed in the scope where it is written.

The typing itself lives in `compiler.expr`, and this module finds each
expression in the project and picks its scope. Whether a step named in `steps.X` runs
before the condition that reads it is the runbook check's concern.
"""

from __future__ import annotations

from collections.abc import Iterator

from compiler import ast, expr, ir
from compiler.checks.context import Context
from compiler.codes import Code
from compiler.stepgraph import written_steps
from compiler.suggest import closest

CODES = {
    "IR0701": Code(
        "unknown field in expression",
        "An expression reads a name that does not exist. Expressions start from a root:\n"
        "`label.X` (or a bare `X`), `annotation.X`, `alert.name`, `incident.severity`,\n"
        "`service.tier`, `steps.NAME.ok` or `body.X`, and each root has its own fields.\n"
        "Label and annotation values are strings and have no fields. A label whose name\n"
        'contains a dot is written `label["a.b"]`.',
    ),
    "IR0702": Code(
        "field not available here",
        "Each place reads only the data that exists when it runs. Severity rules and\n"
        "grouping conditions see the alert (labels, annotations, `alert`, `service`).\n"
        "Runbook triggers and PagerDuty rules also see the `incident`. Step conditions\n"
        "also see earlier `steps`. A source mapping sees only the webhook's JSON `body`.\n"
        "An action reads its parameters by bare name and no steps: pass a step's value\n"
        "to the action as an argument.",
    ),
    "IR0703": Code(
        "comparison of unrelated types",
        "Both sides of a comparison must have the same kind of type. Numbers, integers and\n"
        "percentages compare with each other (`90%` equals `0.9`). Durations compare with\n"
        "durations such as `10m`. Severity levels compare with the strings `critical`,\n"
        "`high`, `medium` and `low`. Label values are strings, so `label.replicas == 3`\n"
        'never holds. Write `label.replicas == "3"`.',
    ),
    "IR0704": Code(
        "value cannot be ordered",
        "`<`, `<=`, `>` and `>=` compare numbers, percentages, durations and severity levels\n"
        "(`critical` > `high` > `medium` > `low`). Strings other than severity levels and\n"
        "booleans have no order.",
    ),
    "IR0705": Code(
        "invalid use of a pattern match",
        "`=~` and `!~` match a string on the left against a regular expression written as a\n"
        "string literal on the right. The pattern cannot come from alert data: patterns\n"
        "are compiled when the rules compile, so a label value never becomes a pattern.",
    ),
    "IR0706": Code(
        "invalid regular expression",
        "Patterns use RE2 syntax, as Alertmanager does: no lookaround and no\n"
        "backreferences. A pattern must match the whole value, because it is anchored as\n"
        '`^(?:PATTERN)$`: `"api.*"` matches `api-gateway` but not `my-api`.',
    ),
    "IR0707": Code(
        "invalid use of `in`",
        "`x in [a, b]` holds when `x` equals one of the items, and `x in s` holds when the\n"
        "string `s` contains the string `x`. The right side must be a list or a string,\n"
        "and list items must be comparable with the left side.",
    ),
    "IR0708": Code(
        "condition is not true or false",
        "`and`, `or`, `not` and every condition (`when`, severity rules, `resolved when`)\n"
        "need a comparison or a boolean such as `steps.check.ok`. A bare label is a string:\n"
        'write `label.team != ""` to test that a label is set.',
    ),
    "IR0709": Code(
        "value is not one of the allowed choices",
        "Some fields hold one of a fixed set of values. Severity levels are `critical`,\n"
        "`high`, `medium` and `low`. An incident's status is `triggered`, `acknowledged`,\n"
        "`mitigating` or `resolved`. An alert's status is `firing` or `resolved`. A\n"
        "comparison with any other literal could never hold, so it is rejected.",
    ),
    "IR0712": Code(
        "incomplete step reference",
        "A step's results are read as `steps.NAME.FIELD`: `ok` (true when the step\n"
        "succeeded), `output`, `value` (a number, such as a query's result), `exit_code`,\n"
        "`status_code`, or any other field of the step's JSON output.",
    ),
    "IR0710": Code(
        "field cannot be set",
        "A `set` step changes the incident: `set incident.status = mitigating`,\n"
        '`set incident.severity = high` or `set incident.title = "..."`. Other fields are\n'
        "derived from the alerts (`incident.age`, `incident.alert_count`) or fixed when the\n"
        "incident opens.",
    ),
    "IR0711": Code(
        "value does not fit the field",
        "The value of a `set` step must have the field's type. `incident.status` takes one\n"
        "of `triggered`, `acknowledged`, `mitigating` and `resolved`. `incident.severity`\n"
        "takes a severity level, and `incident.title` takes a string. A bare name such as\n"
        "`mitigating` stands for that choice.",
    ),
    "IR0714": Code(
        "severity compared with a bare name",
        "In an expression a bare name reads the label of that name, so\n"
        "`incident.severity >= high` compares with the value of a label `high`, which is\n"
        'almost never meant. Write levels as strings: `incident.severity >= "high"`.',
    ),
    "IR0713": Code(
        "invalid source mapping target",
        "A source maps fields of the webhook's JSON body to alert fields. A target is\n"
        "`alert.name`, `alert.status`, `alert.source`, `alert.fingerprint`,\n"
        "`alert.starts_at`, `labels.NAME` or `annotations.NAME`, or `labels` or\n"
        "`annotations` as a whole to take a JSON object of strings.",
    ),
    "IR0715": Code(
        "invalid setting for a built-in source",
        "The built-in sources `alertmanager`, `cloudwatch`, `azure` and `grafana` read\n"
        "their vendor's payload themselves, so a `source` block with one of these names\n"
        "only sets how requests authenticate (`auth`) and, for `cloudwatch`, which SNS\n"
        "topics may have their subscriptions confirmed (`confirm_subscriptions`). A `map`\n"
        "or `resolved when` belongs to a custom source with a name of its own, and\n"
        "`auth none` cannot be combined with another `auth`.",
    ),
    "IR0717": Code(
        "invalid `auth basic`",
        '`auth basic user "NAME" password secret("SECRET")` accepts requests whose\n'
        "`Authorization` header carries HTTP Basic credentials: `Basic` and the base64 of\n"
        "`NAME:PASSWORD` (RFC 7617). It needs both `user` and `password`. The password is a\n"
        "credential, so it must be a `secret(...)`, because a plain string would end up in\n"
        "the compiled artifacts and in version control. The user name ends at the first `:`\n"
        "of the credentials, so it cannot contain `:` or control characters. The password\n"
        "may contain `:`.",
    ),
    "IR0716": Code(
        "invalid path for a custom source",
        "A custom source receives at `/hooks/NAME`, or at the `path` it sets. That path\n"
        "starts with `/` and lies outside the prefixes the daemon keeps for itself:\n"
        "`/hooks/`, where the rest of the path names the source, and `/api/`, `/slack/`\n"
        "and `/ui/`, where its own endpoints are and new ones may come.",
    ),
}

# Path prefixes that the daemon keeps for its own endpoints and for `/hooks/<source>`.
_DAEMON_PREFIXES = ("/hooks/", "/api/", "/slack/", "/ui/")


def _props(items: list[object], key: str) -> Iterator[ast.Property]:
    for item in items:
        if isinstance(item, ast.Property) and item.key == key:
            yield item


def check_severity_rules(context: Context) -> None:
    for decl in context.project.decls:
        if isinstance(decl, ast.SeverityDecl):
            for rule in decl.rules:
                expr.check_condition(rule.condition, expr.SEVERITY_SCOPE, context.sink)


def check_grouping_conditions(context: Context) -> None:
    for decl in context.project.decls:
        if isinstance(decl, ast.Grouping):
            for prop in _props(decl.items, "when"):
                expr.check_condition(prop.args[0], expr.GROUPING_SCOPE, context.sink)


def check_pagerduty_conditions(context: Context) -> None:
    for decl in context.project.decls:
        if isinstance(decl, ast.PagerDuty):
            for rule in decl.items:
                if isinstance(rule, ast.PagerDutyRule):
                    for prop in _props(rule.items, "when"):
                        expr.check_condition(prop.args[0], expr.PAGERDUTY_SCOPE, context.sink)


def check_source_mappings(context: Context) -> None:
    for decl in context.project.decls:
        if not isinstance(decl, ast.Source):
            continue
        _check_source_settings(context, decl)
        for prop in _props(decl.items, "resolved when"):
            expr.check_condition(prop.args[0], expr.SOURCE_SCOPE, context.sink)
        for mapping in decl.mappings:
            _check_mapping_target(context, mapping.target)
            expr.check_expr(mapping.value, expr.SOURCE_SCOPE, context.sink)


def _check_source_settings(context: Context, decl: ast.Source) -> None:
    name = decl.name.value
    builtin = name in ir.BUILTIN_SOURCES
    auth = [prop for prop in decl.items if isinstance(prop, ast.Property) and prop.key.startswith("auth ")]
    if any(prop.key == "auth none" for prop in auth) and len(auth) > 1:
        none = next(prop for prop in auth if prop.key == "auth none")
        context.sink.error(
            "IR0715",
            f"source `{name}` has `auth none` and another `auth`",
            none.key_span,
            label="`auth none` accepts every request",
            help="remove `auth none` to require the other method, or remove the other methods",
        )
    for prop in decl.items:
        if not isinstance(prop, ast.Property):
            continue
        if prop.key == "auth hmac" and name == "alertmanager":
            context.sink.error(
                "IR0715",
                "Alertmanager cannot sign its webhooks with an HMAC",
                prop.key_span,
                label="Alertmanager would be rejected",
                help='use `auth bearer secret("...")` or `auth basic user "..." password secret("...")`: '
                "the compiled alertmanager.yml then sends those credentials",
            )
        elif prop.key == "auth basic":
            _check_basic_auth(context, name, prop)
        elif prop.key == "confirm_subscriptions" and name != "cloudwatch":
            context.sink.error(
                "IR0715",
                f"`confirm_subscriptions` in source `{name}`",
                prop.key_span,
                label="only SNS subscriptions can be confirmed",
                help="move it into `source cloudwatch { ... }`",
            )
        elif prop.key == "path" and not builtin:
            _check_source_path(context, name, prop)
        elif builtin and prop.key in ("path", "resolved when"):
            context.sink.error(
                "IR0715",
                f"built-in source `{name}` cannot set `{prop.key}`",
                prop.key_span,
                label=f"`{name}` payloads are read by irules itself",
                help="give a custom source a name of its own, such as `source my-sender { ... }`",
            )
    if builtin and decl.mappings:
        context.sink.error(
            "IR0715",
            f"built-in source `{name}` cannot have a `map`",
            decl.mappings[0].span,
            label=f"`{name}` payloads are read by irules itself",
            help="give a custom source a name of its own, such as `source my-sender { ... }`",
        )


def _check_basic_auth(context: Context, name: str, prop: ast.Property) -> None:
    """Report an `auth basic` without a user or a password, a password in clear, or a user name that Basic credentials cannot carry."""
    users = list(_props(prop.args, "user"))
    passwords = list(_props(prop.args, "password"))
    example = 'auth basic user "NAME" password secret("SECRET")'
    if not users:
        context.sink.error(
            "IR0717",
            f"`auth basic` of source `{name}` has no `user`",
            prop.span,
            label="the user name is missing",
            help=f"write `{example}`",
        )
    else:
        _check_basic_user(context, name, users[0].args[0])
    if not passwords:
        context.sink.error(
            "IR0717",
            f"`auth basic` of source `{name}` has no `password`",
            prop.span,
            label="the password is missing",
            help=f"write `{example}`",
        )
    elif isinstance(passwords[0].args[0], ast.Str):
        context.sink.error(
            "IR0717",
            f"the password of `auth basic` in source `{name}` is written in clear",
            passwords[0].args[0].span,
            label="a credential in a plain string",
            help='keep it in a secret: `password secret("NAME")`, read from the secrets folder or the environment',
        )


def _check_basic_user(context: Context, name: str, user: ast.Str) -> None:
    if ":" in user.value:
        context.sink.error(
            "IR0717",
            f"user name `{user.value}` of `auth basic` in source `{name}` contains `:`",
            user.span,
            label="Basic credentials end the user name at the first `:`",
            help="choose a user name without `:`, which only the password may contain",
        )
    elif any(ord(character) < 0x20 or ord(character) == 0x7F for character in user.value):
        context.sink.error(
            "IR0717",
            f"user name of `auth basic` in source `{name}` contains a control character",
            user.span,
            label="Basic credentials cannot carry control characters",
            help="remove the control character from the user name",
        )


def _check_source_path(context: Context, name: str, prop: ast.Property) -> None:
    argument = prop.args[0] if prop.args else None
    if not isinstance(argument, ast.Str):
        return
    path = argument.value
    if not path.startswith("/"):
        context.sink.error(
            "IR0716",
            f"path `{path}` of source `{name}` does not start with `/`",
            argument.span,
            label="senders post to a path on the daemon",
            help=f'write it from the root, such as "/{path}"',
        )
    elif path != f"/hooks/{name}" and (path + "/").startswith(_DAEMON_PREFIXES):
        prefix = next(prefix for prefix in _DAEMON_PREFIXES if (path + "/").startswith(prefix))
        label = (
            "requests here go to the source named by the last part of the path"
            if prefix == "/hooks/"
            else "the daemon keeps this prefix for its own endpoints"
        )
        context.sink.error(
            "IR0716",
            f"path `{path}` of source `{name}` is under `{prefix}`, which the daemon serves itself",
            argument.span,
            label=label,
            help=f"leave `path` out to receive at /hooks/{name}, or choose a path such as /webhooks/{name}",
        )


_MAPPED_WHOLE = ("labels", "annotations")


def _check_mapping_target(context: Context, target: ast.Path) -> None:
    parts = target.parts
    root = expr.ROOT_ALIASES.get(parts[0])
    if len(parts) == 1 and parts[0] in _MAPPED_WHOLE:
        return
    if root in ("label", "annotation") and len(parts) == 2:
        return
    if root == "alert" and len(parts) == 2 and parts[1] in expr.ALERT_FIELDS:
        return
    if root == "alert" and len(parts) == 2:
        suggestion = closest(parts[1], expr.ALERT_FIELDS)
        fields = ", ".join(f"`alert.{name}`" for name in expr.ALERT_FIELDS)
        context.sink.error(
            "IR0713",
            f"unknown alert field `{parts[1]}` in a source mapping",
            target.part_spans[1],
            label="not a field of `alert`",
            help=f"a field with a similar name exists: `{suggestion}`" if suggestion else f"alerts have the fields {fields}",
        )
        return
    context.sink.error(
        "IR0713",
        f"a source mapping cannot set `{'.'.join(parts)}`",
        target.span,
        label="not an alert field",
        help="map to `alert.name`, `alert.status`, `alert.source`, `alert.fingerprint`, `alert.starts_at`, "
        "`labels.NAME` or `annotations.NAME`",
    )


def check_runbook_conditions(context: Context) -> None:
    for runbook in context.symbols.runbooks.values():
        for prop in _props(runbook.items, "when"):
            expr.check_condition(prop.args[0], expr.RUNBOOK_SCOPE, context.sink)
        for step in written_steps(runbook):
            _check_step_items(context, step.items, expr.STEP_SCOPE)


def check_action_conditions(context: Context) -> None:
    for action in context.symbols.actions.values():
        params = {param.name.value: expr.param_type(param.type.value) for param in action.params}
        _check_step_items(context, action.items, expr.action_scope(params))


def _check_step_items(context: Context, items: list[object], scope: expr.Scope) -> None:
    for prop in _props(items, "when"):
        expr.check_condition(prop.args[0], scope, context.sink)
    for item in items:
        if isinstance(item, ast.StepKind) and item.kind == "set":
            _check_set(context, item, scope)


def _check_set(context: Context, step: ast.StepKind, scope: expr.Scope) -> None:
    target, value = step.args
    expected = _settable(context, target)
    if expected is None:
        expr.check_expr(value, scope, context.sink)
        return

    choice = expr.set_literal(target, value)
    if choice is not None:
        expr.check_choice(expected, ast.Str(span=value.span, value=choice), context.sink)
        return

    found = expr.check_expr(value, scope, context.sink)
    if found is expr.INVALID or found is expr.ANY:
        return
    if found.name not in ("string", "severity"):
        context.sink.error(
            "IR0711",
            f"cannot set `{'.'.join(target.parts)}` to {_a(found.name)}",
            value.span,
            label=f"this is {_a(found.name)}",
            help=_set_help(target.parts[1]),
        )
    elif isinstance(value, ast.Str):
        expr.check_choice(expected, value, context.sink)


def _settable(context: Context, target: ast.Path) -> expr.Type | None:
    parts = target.parts
    if len(parts) == 2 and parts[0] == "incident" and parts[1] in expr.SETTABLE_FIELDS:
        return expr.SETTABLE_FIELDS[parts[1]]
    suggestion = closest(parts[-1], expr.SETTABLE_FIELDS) if parts[0] == "incident" else None
    context.sink.error(
        "IR0710",
        f"`set` cannot change `{'.'.join(parts)}`",
        target.span,
        label="not a field that a step can set",
        help=f"a settable field with a similar name exists: `incident.{suggestion}`"
        if suggestion
        else "`set` changes `incident.status`, `incident.severity` or `incident.title`",
    )
    return None


def _set_help(field: str) -> str:
    if field == "title":
        return 'write the title as a string, such as `"Disk full on {{ label.instance }}"`'
    if field == "severity":
        return "write a severity level: `critical`, `high`, `medium` or `low`"
    return "write a status: `triggered`, `acknowledged`, `mitigating` or `resolved`"


def _a(name: str) -> str:
    return f"an {name}" if name[0] in "aeiou" else f"a {name}"


CHECKS = [
    check_severity_rules,
    check_grouping_conditions,
    check_pagerduty_conditions,
    check_source_mappings,
    check_runbook_conditions,
    check_action_conditions,
]
