"""Differential test: our router against the real amtool, on the same configurations.

Each Alertmanager configuration under `amconfigs/` is imported into .irules,
checked, lowered and rendered back to YAML. For label sets drawn from the
matchers' values plus random values, three answers must agree: amtool on the
original file, amtool on the generated file, and our router on the IR.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from compiler import ir
from compiler.api import check_text
from compiler.importer import import_alertmanager, load_alertmanager_yaml
from compiler.router import Router
from targets.alertmanager import render
from tests.targets.amtool import check_config, requires_amtool, route_receivers_many

CONFIGS = sorted((Path(__file__).parent / "amconfigs").glob("*.yml"))
LABEL_SETS_PER_CONFIG = 200
RANDOM_VALUES = ["", "x", "prod", "db-12", "db-", "DISKfull", "a,b", 'quote"d', "back\\slash", "eu-west-1", "données", "*", "  "]


def _matcher_values(route: ir.Route, values: dict[str, set[str]]) -> None:
    for matcher in route.matchers:
        bucket = values.setdefault(matcher.name, set())
        bucket.add(matcher.value)
        if matcher.op in {ir.MatchOp.REGEX, ir.MatchOp.NOT_REGEX}:
            bucket.update(part for part in matcher.value.split("|") if part.isprintable())
    for child in route.routes:
        _matcher_values(child, values)


def label_sets(ruleset: ir.Ruleset, count: int, seed: int) -> list[dict[str, str]]:
    """Draw label sets whose values come from the matchers (so routes match) or from a random pool."""
    values: dict[str, set[str]] = {}
    _matcher_values(ruleset.route, values)
    for rule in ruleset.inhibit_rules:
        for matcher in rule.source_matchers + rule.target_matchers:
            values.setdefault(matcher.name, set()).add(matcher.value)
    names = sorted(values) + ["extra"]
    generator = random.Random(seed)
    drawn = []
    for _ in range(count):
        labels = {}
        for name in names:
            roll = generator.random()
            if roll < 0.25:
                continue
            pool = sorted(values.get(name, ())) if roll < 0.8 else RANDOM_VALUES
            labels[name] = generator.choice(pool or RANDOM_VALUES)
        drawn.append(labels)
    return drawn


def compile_imported(source: Path) -> tuple[ir.Ruleset, dict[str, str]]:
    imported = import_alertmanager(source.read_text())
    result = check_text(imported.text, source.stem + ".irules")
    assert not result.has_errors, [item.message for item in result.diagnostics]
    return result.ruleset(), imported.renamed


@requires_amtool
@pytest.mark.slow
@pytest.mark.parametrize("source", CONFIGS, ids=[path.stem for path in CONFIGS])
def test_router_agrees_with_amtool(source: Path, tmp_path: Path) -> None:
    assert check_config(source).returncode == 0, f"{source.name} must be a valid Alertmanager 0.25 config"
    ruleset, renamed = compile_imported(source)
    generated = tmp_path / "alertmanager.yml"
    generated.write_text(render(ruleset))
    checked = check_config(generated)
    assert checked.returncode == 0, checked.stdout + checked.stderr

    router = Router(ruleset.route)
    sets = label_sets(ruleset, LABEL_SETS_PER_CONFIG, seed=len(source.name))
    original = route_receivers_many(source, sets)
    compiled = route_receivers_many(generated, sets)
    for labels, expected, ours_in_amtool in zip(sets, original, compiled, strict=True):
        renamed_expected = [renamed.get(name, name) for name in expected]
        assert router.receivers(labels) == renamed_expected, labels
        assert ours_in_amtool == renamed_expected, labels


def test_string_loader_keeps_yaml_scalars_as_strings() -> None:
    document = load_alertmanager_yaml("a: NO\nb: yes\nc: 0123\nd: 13:00\ne: 24:00\n")
    assert document == {"a": "NO", "b": "yes", "c": "0123", "d": "13:00", "e": "24:00"}
