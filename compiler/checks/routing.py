"""Routing checks: the route tree obeys Alertmanager's rules and every route can receive alerts.

Alertmanager walks the tree depth first. A route matches when all its
matchers match. It then hands the alert to its children, and keeps it for its
own receiver only when no child matches. Among siblings the first match
wins, unless that sibling has `continue`, which lets later siblings match
too.
"""

from __future__ import annotations

from collections.abc import Iterator

from compiler import ast
from compiler.checks.context import Context
from compiler.codes import Code
from compiler.diagnostics import Label
from compiler.span import Span

CODES = {
    "IR0401": Code(
        "no route",
        "The project declares no `route`. Alertmanager needs a route tree, and its root\n"
        "names the receiver of every alert that no child route takes. Declare one:\n"
        '`route { receiver default  match team = "db" -> db }`.',
    ),
    "IR0402": Code(
        "route declared twice",
        "A project has exactly one route tree, like an Alertmanager configuration. Merge\n"
        "the two `route` blocks into one; branches go inside it as child routes.",
    ),
    "IR0403": Code(
        "root route without receiver",
        "The root route must name a receiver: alerts that no child route matches go there.\n"
        "Alertmanager rejects a root route without one.",
    ),
    "IR0404": Code(
        "`continue` on the root route",
        "`continue` lets later siblings of a route see an alert, and the root has no\n"
        "siblings. Alertmanager rejects it. Put `continue` on the child routes that\n"
        "should not stop the search.",
    ),
    "IR0405": Code(
        "time interval on the root route",
        "Alertmanager does not allow `mute_during` (mute_time_intervals) or `active_during`\n"
        "(active_time_intervals) on the root route. Put them on child routes.",
    ),
    "IR0406": Code(
        "route shadowed by an earlier sibling",
        "An earlier sibling route without `continue` matches every alert this route would\n"
        "match, because its matchers are a subset of this route's (or it has none). The\n"
        "search stops at the earlier route, so this one never receives an alert. Move this\n"
        "route above the other, or add `continue` to the earlier one.",
    ),
    "IR0407": Code(
        "parent receiver is a fallback only",
        "A route with child routes keeps an alert for its own receiver only when none of\n"
        "its children match; `continue` does not change that, it only lets later siblings\n"
        "match too. To send every matching alert to this receiver and still route it to\n"
        "the children's receivers, add a childless sibling route with the same matchers,\n"
        "this receiver and `continue`, placed before this one.",
    ),
    "IR0408": Code(
        "alert delivered twice to the same receiver",
        "Two sibling routes have the same matchers and the same receiver, and the first\n"
        "has `continue`. Every alert that matches goes to that receiver through both\n"
        "routes, so it is notified twice. Remove one of the routes.",
    ),
    "IR0409": Code(
        "inhibit rule that never silences",
        "Alertmanager ignores a source alert that also matches the target side of the same\n"
        "rule, so an alert never silences itself. When the source and target matchers are\n"
        "identical, every source alert matches the target side too, and the rule silences\n"
        "nothing. Make the target matchers differ, for example\n"
        '`inhibit severity = "critical" silences severity = "warning" on [alertname]`.',
    ),
}

MatcherKey = tuple[str, str, str]


def _walk(route: ast.Route) -> Iterator[ast.Route]:
    yield route
    for child in route.children:
        yield from _walk(child)


def _props(route: ast.Route, key: str) -> list[ast.Property]:
    return [item for item in route.properties if item.key == key]


def _continues(route: ast.Route) -> bool:
    return bool(_props(route, "continue"))


def _matcher_keys(matchers: list[ast.Matcher]) -> frozenset[MatcherKey]:
    # `=~ ".*"` matches every value, a missing label included, so it restricts nothing.
    return frozenset((m.label.value, m.op, m.value.value) for m in matchers if not (m.op == "=~" and m.value.value == ".*"))


def _head(route: ast.Route) -> Span:
    """Return the span of a child route's first line: `match a = "b"` or the `route` keyword."""
    if route.matchers:
        return route.span.to(route.matchers[-1].span)
    span = route.span
    width = len("route")
    return Span(span.path, span.start, span.start + width, span.line, span.column, span.line, span.column + width)


# ---------------------------------------------------------------- the root


def check_single_route(context: Context) -> None:
    routes = context.symbols.routes
    if not routes:
        context.sink.error(
            "IR0401",
            "the project has no `route`",
            None,
            help="declare the route tree: `route { receiver NAME }`, with child routes inside",
        )
        return
    first = routes[0]
    for extra in routes[1:]:
        context.sink.error(
            "IR0402",
            "`route` is declared twice",
            extra.keyword_span,
            label="declared again here",
            labels=(Label(first.keyword_span, "first declared here"),),
            help="merge the two blocks: a project has one route tree",
        )


def check_root_route(context: Context) -> None:
    for decl in context.symbols.routes:
        root = decl.root
        if root.receiver is None:
            context.sink.error(
                "IR0403",
                "the root route has no receiver",
                decl.keyword_span,
                label="alerts that no child route matches have nowhere to go",
                help="add `receiver NAME` to the root route",
            )
        for prop in _props(root, "continue"):
            context.sink.error(
                "IR0404",
                "the root route cannot have `continue`",
                prop.key_span,
                label="the root has no siblings to continue to",
                help="remove it, or move it to a child route",
            )
        for key in ("mute_during", "active_during"):
            for prop in _props(root, key):
                context.sink.error(
                    "IR0405",
                    f"the root route cannot have `{key}`",
                    prop.key_span,
                    label="Alertmanager rejects time intervals on the root route",
                    help=f"move `{key}` to the child routes it should apply to",
                )


# ---------------------------------------------------------------- siblings


def check_shadowed_routes(context: Context) -> None:
    for decl in context.symbols.routes:
        for parent in _walk(decl.root):
            _check_siblings_shadowing(context, parent.children)


def _check_siblings_shadowing(context: Context, children: list[ast.Route]) -> None:
    # Earlier siblings without `continue`, indexed by their smallest matcher, so
    # a route is compared only with siblings that share one of its matchers.
    catch_all: ast.Route | None = None
    by_matcher: dict[MatcherKey, list[tuple[frozenset[MatcherKey], ast.Route]]] = {}
    for route in children:
        keys = _matcher_keys(route.matchers)
        earlier = catch_all or _find_subset(keys, by_matcher)
        if earlier is not None:
            context.sink.warning(
                "IR0406",
                "route is shadowed by an earlier sibling",
                _head(route),
                label="no alert can reach this route",
                labels=(Label(_head(earlier), "this route matches all of its alerts first and has no `continue`"),),
                help="move this route above the earlier one, or add `continue` to the earlier one",
            )
        if _continues(route):
            continue
        if not keys:
            catch_all = catch_all or route
        else:
            by_matcher.setdefault(min(keys), []).append((keys, route))


def _find_subset(keys: frozenset[MatcherKey], by_matcher: dict) -> ast.Route | None:
    found = [route for key in keys for earlier, route in by_matcher.get(key, ()) if earlier <= keys]
    return min(found, key=lambda route: route.span.start) if found else None


def check_fallback_receivers(context: Context) -> None:
    for decl in context.symbols.routes:
        for route in _walk(decl.root):
            if route.is_root or route.receiver is None or not route.children or not _continues(route):
                continue
            receiver = route.receiver.value
            # When every child delivers to this same receiver anyway, the receiver gets
            # every matching alert and there is nothing to warn about.
            if all(_delivers_only_to(child, receiver) for child in route.children):
                continue
            context.sink.warning(
                "IR0407",
                f"receiver `{receiver}` gets only the alerts that no child route matches",
                route.receiver.span,
                label="a fallback for the child routes",
                labels=(Label(_props(route, "continue")[0].key_span, "`continue` lets later siblings match, not this receiver"),),
                help=f"to send every matching alert to `{receiver}`, add a childless sibling route before this one "
                f"with the same matchers, `-> {receiver}` and `continue`",
            )


def _delivers_only_to(route: ast.Route, receiver: str) -> bool:
    """Tell whether `route` and all routes below it inherit or name `receiver`."""
    if route.receiver is not None and route.receiver.value != receiver:
        return False
    return all(_delivers_only_to(child, receiver) for child in route.children)


def check_duplicate_deliveries(context: Context) -> None:
    for decl in context.symbols.routes:
        _check_deliveries(context, decl.root, None)


def _check_deliveries(context: Context, parent: ast.Route, inherited: str | None) -> None:
    receiver = _receiver_of(parent, inherited)
    delivering: dict[tuple[frozenset[MatcherKey], str | None], ast.Route] = {}
    for route in parent.children:
        _check_deliveries(context, route, receiver)
        if route.children:
            continue
        key = (_matcher_keys(route.matchers), _receiver_of(route, receiver))
        earlier = delivering.get(key)
        if earlier is not None:
            context.sink.warning(
                "IR0408",
                f"alerts reach receiver `{key[1]}` twice through two identical routes",
                _head(route),
                label="same matchers and receiver as an earlier route",
                labels=(Label(_head(earlier), "this route has `continue`, so the alert also goes on"),),
                help="remove one of the two routes",
            )
        elif _continues(route):
            delivering[key] = route


def _receiver_of(route: ast.Route, inherited: str | None) -> str | None:
    return route.receiver.value if route.receiver is not None else inherited


# ---------------------------------------------------------------- inhibit rules


def check_inhibit_rules(context: Context) -> None:
    for decl in context.symbols.inhibits:
        if not decl.source or _matcher_keys(decl.source) != _matcher_keys(decl.target):
            continue
        target = decl.target[0].span.to(decl.target[-1].span)
        source = decl.source[0].span.to(decl.source[-1].span)
        context.sink.warning(
            "IR0409",
            "inhibit rule never silences anything: its source and target matchers are the same",
            target,
            label="identical to the source matchers",
            labels=(Label(source, "source matchers"),),
            help="Alertmanager ignores a source alert that also matches the target side; make the target matchers differ",
        )


CHECKS = [
    check_single_route,
    check_root_route,
    check_shadowed_routes,
    check_fallback_receivers,
    check_duplicate_deliveries,
    check_inhibit_rules,
]
