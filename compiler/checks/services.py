"""Service checks: tiers in range, and a dependency graph without self-loops or cycles."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from compiler import ast
from compiler.checks.channels import check_url
from compiler.checks.context import Context
from compiler.codes import Code
from compiler.diagnostics import Label

CODES = {
    "IR0321": Code(
        "service tier out of range",
        "`tier` ranks a service from 0 (most critical) to 4 (least critical).",
    ),
    "IR0322": Code(
        "service depends on itself",
        "`depends_on` lists the services a service needs. A service cannot need itself;\nremove its own name from the list.",
    ),
    "IR0323": Code(
        "service dependency cycle",
        "Services depend on each other in a circle, so the dependency graph has no root\n"
        "cause to point at: correlation walks from a failing service to what it depends\n"
        "on and would never stop. The message prints the cycle; remove one of its edges.",
    ),
}


def _props(items: Iterable[object], *keys: str) -> Iterator[ast.Property]:
    for item in items:
        if isinstance(item, ast.Property) and item.key in keys:
            yield item


def check_services(context: Context) -> None:
    for decl in context.project_decls():
        if not isinstance(decl, ast.Service):
            continue
        for prop in _props(decl.items, "tier"):
            tier = prop.args[0]
            if not 0 <= tier.value <= 4:
                context.sink.error(
                    "IR0321",
                    f"tier {tier.value} is out of range",
                    tier.span,
                    label="tiers run from 0 to 4",
                    help="use 0 for the most critical services and 4 for the least",
                )
        for prop in _props(decl.items, "runbook_url"):
            check_url(context, prop.args[0], "`runbook_url`")
        for prop in _props(decl.items, "depends_on"):
            for name in prop.args[0].items:
                if name.value == decl.name.value:
                    context.sink.error(
                        "IR0322",
                        f"service `{name.value}` depends on itself",
                        name.span,
                        label="its own name",
                        help="remove it from `depends_on`",
                    )


def check_service_cycles(context: Context) -> None:
    services = {decl.name.value: decl for decl in context.project_decls() if isinstance(decl, ast.Service)}
    edges = {name: _dependencies(decl, services) for name, decl in services.items()}
    component = _strong_components(edges)
    members: dict[int, list[str]] = {}
    for node in edges:
        members.setdefault(component[node], []).append(node)
    reported: set[int] = set()
    # One cycle per strongly connected component, found from its first-declared service.
    for start in services:
        group = component[start]
        if group in reported:
            continue
        within = {node: [edge for edge in edges[node] if component[edge.value] == group] for node in members[group]}
        cycle = _shortest_cycle(start, within)
        if cycle is None:
            continue
        reported.add(group)
        path = " → ".join(f"`{node}`" for node, _ in cycle) + f" → `{start}`"
        first_edge = cycle[0][1]
        context.sink.error(
            "IR0323",
            f"services depend on each other in a cycle: {path}",
            first_edge.span,
            label="the cycle starts here",
            labels=tuple(Label(edge.span, f"`{node}` depends on `{edge.value}`") for node, edge in cycle[1:]),
            help="remove one dependency of the cycle",
        )


def _dependencies(decl: ast.Service, services: dict[str, ast.Service]) -> list[ast.Name]:
    found = []
    for prop in _props(decl.items, "depends_on"):
        found.extend(name for name in prop.args[0].items if name.value in services and name.value != decl.name.value)
    return found


def _strong_components(edges: dict[str, list[ast.Name]]) -> dict[str, int]:
    """Number the strongly connected components of the dependency graph (Tarjan's algorithm, without recursion)."""
    index: dict[str, int] = {}
    lowlink: dict[str, int] = {}
    component: dict[str, int] = {}
    stack: list[str] = []
    for root in edges:
        if root in index:
            continue
        work = [(root, 0)]
        while work:
            node, position = work.pop()
            if position == 0:
                index[node] = lowlink[node] = len(index)
                stack.append(node)
            targets = edges[node]
            if position < len(targets):
                work.append((node, position + 1))
                target = targets[position].value
                if target not in index:
                    work.append((target, 0))
                elif target not in component:
                    lowlink[node] = min(lowlink[node], index[target])
                continue
            if lowlink[node] == index[node]:
                while True:
                    member = stack.pop()
                    component[member] = index[node]
                    if member == node:
                        break
            if work:
                parent = work[-1][0]
                lowlink[parent] = min(lowlink[parent], lowlink[node])
    return component


def _shortest_cycle(start: str, edges: dict[str, list[ast.Name]]) -> list[tuple[str, ast.Name]] | None:
    """Return the shortest cycle through `start` as (service, dependency name) steps, by breadth-first search."""
    came_from: dict[str, tuple[str, ast.Name]] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for edge in edges[node]:
                if edge.value == start:
                    return _trace(start, node, edge, came_from)
                if edge.value not in came_from:
                    came_from[edge.value] = (node, edge)
                    following.append(edge.value)
        frontier = following
    return None


def _trace(start: str, last: str, closing: ast.Name, came_from: dict) -> list[tuple[str, ast.Name]]:
    steps = [(last, closing)]
    node = last
    while node != start:
        previous, edge = came_from[node]
        steps.append((previous, edge))
        node = previous
    return list(reversed(steps))
