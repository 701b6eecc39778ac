"""The picture of a runbook run: its step graph as Graphviz DOT, coloured by step state, and the SVG that `dot` draws.

Only the runbook definition from the rules and the step states from the store
go into the DOT text, never alert data. Every name is still quoted and
escaped, so a step name cannot end a string or inject DOT attributes.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict

from compiler import ir

# State of a step: fill colour, border colour. A step without a row in the store has not started.
STATE_COLOURS = {
    "not started": ("#ffffff", "#8a8f98"),
    "pending": ("#ffffff", "#8a8f98"),
    "running": ("#dbeafe", "#1d4ed8"),
    "waiting": ("#fef3c7", "#b45309"),
    "interrupted": ("#fde68a", "#92400e"),
    "succeeded": ("#dcfce7", "#15803d"),
    "failed": ("#fee2e2", "#b91c1c"),
    "compensated": ("#ede9fe", "#6d28d9"),
    "skipped": ("#f3f4f6", "#6b7280"),
    "cancelled": ("#f3f4f6", "#6b7280"),
}
NOT_STARTED = "not started"
# Drawn SVGs kept in memory, by the SHA-256 of their DOT text. A page polls every few seconds, so equal graphs are drawn once.
MAX_CACHED_SVG = 128

_cache_lock = threading.Lock()
_svg_cache: OrderedDict[str, bytes] = OrderedDict()


def run_dot(runbook: ir.Runbook, states: dict[str, str]) -> str:
    """Return the DOT text of `runbook`'s steps, each labelled and coloured with its state in `states` (by step name).

    Edges run from a step to the steps that depend on it. An `on_failure` edge
    is dashed and red, from the step to its compensation step, which has a
    dashed border. A step with a `when` condition has a double border.
    """
    lines = [
        f"digraph {_quote(runbook.id)} {{",
        "  rankdir=TB;",
        '  node [shape=box, style="rounded,filled", fontname="Helvetica", fontsize=10];',
        '  edge [fontname="Helvetica", fontsize=9, color="#6b7280"];',
    ]
    for step in runbook.steps:
        lines.append(f"  {_quote(step.name)} [{_node_attributes(step, states.get(step.name, NOT_STARTED))}];")
    names = {step.name for step in runbook.steps}
    for step in runbook.steps:
        for before in step.depends_on:
            if before in names:
                lines.append(f"  {_quote(before)} -> {_quote(step.name)};")
        if step.on_failure is not None and step.on_failure in names:
            lines.append(
                f'  {_quote(step.name)} -> {_quote(step.on_failure)} [label="on_failure", style=dashed, color="#b91c1c"];'
            )
    lines.append("}")
    return "\n".join(lines) + "\n"


def _node_attributes(step: ir.Step, state: str) -> str:
    label = [step.name, f"action {step.action}" if step.action else step.kind]
    if step.risk != "low":
        label.append(f"risk {step.risk}")
    if step.approval_team:
        label.append(f"approval from {step.approval_team}")
    label.append(f"[{state}]")
    fill, border = STATE_COLOURS.get(state, STATE_COLOURS[NOT_STARTED])
    style = "rounded,filled,dashed" if step.compensation else "rounded,filled"
    attributes = [f"label={_quote(chr(10).join(label))}", f"style={_quote(style)}"]
    attributes += [f"fillcolor={_quote(fill)}", f"color={_quote(border)}"]
    if step.when is not None:
        attributes.append("peripheries=2")
    return ", ".join(attributes)


def _quote(text: str) -> str:
    """Return `text` as a DOT string. A backslash stays a literal backslash, so label escapes such as `\\N` cannot form."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\r", "").replace("\n", "\\n")
    return f'"{escaped}"'


def draw_svg(dot: str) -> bytes:
    """Return the SVG that Graphviz draws for `dot`, from the cache when the same text was drawn before.

    Raises:
        GraphFailed: `dot` is not installed, failed or timed out (see `runtime.commands.graph.render_svg`).
    """
    from runtime.commands.graph import render_svg

    digest = hashlib.sha256(dot.encode("utf-8")).hexdigest()
    with _cache_lock:
        if digest in _svg_cache:
            _svg_cache.move_to_end(digest)
            return _svg_cache[digest]
    svg = render_svg(dot)
    with _cache_lock:
        _svg_cache[digest] = svg
        while len(_svg_cache) > MAX_CACHED_SVG:
            _svg_cache.popitem(last=False)
    return svg
