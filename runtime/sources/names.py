"""The built-in source names and the lookup of a source's declaration in the rules."""

from __future__ import annotations

from compiler import ir
from compiler.ir import BUILTIN_SOURCES

ALERTMANAGER, GRAFANA, CLOUDWATCH, AZURE = BUILTIN_SOURCES


def declared_source(ruleset: ir.Ruleset | None, name: str) -> ir.Source | None:
    """Return the ruleset's `source NAME { ... }` declaration, or `None` when it has none."""
    if ruleset is None:
        return None
    return next((source for source in ruleset.sources if source.name == name), None)
