"""Differential test: our router against the real amtool, on the same configurations.

Each Alertmanager configuration under `amconfigs/`, and the shared 0.25
fixture when it is present beside the repository, is imported into .irules
files, checked with the standard library, lowered and rendered back to YAML.
For label sets drawn from the matchers' values plus random values, three
results must agree: amtool on the original file, amtool on the generated
file, and our router on the IR. The example projects have no original YAML,
so for them our router must agree with amtool on the rendered file.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from compiler import ir
from compiler.api import check_path
from compiler.importer import import_alertmanager, load_alertmanager_yaml
from compiler.router import Router
from targets.alertmanager import render
from tests.targets.amtool import check_config, requires_amtool, route_receivers_many

REPO = Path(__file__).resolve().parents[2]
CONFIGS = sorted((Path(__file__).parent / "amconfigs").glob("*.yml"))
SHARED_CONFIG = REPO.parent / "shared" / "fixtures" / "alertmanager-config" / "alertmanager-v0.25.yml"
# Rules projects only, because examples/ also contains deployment files such as the systemd unit.
EXAMPLES = sorted(path for path in (REPO / "examples").iterdir() if path.is_dir() and any(path.glob("*.irules")))
LABEL_SETS_PER_CONFIG = 200
LABEL_SETS_PER_EXAMPLE = 100
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
    """Draw `count` distinct label sets whose values come from the matchers (so routes match) or from a random pool."""
    values: dict[str, set[str]] = {}
    _matcher_values(ruleset.route, values)
    for rule in ruleset.inhibit_rules:
        for matcher in rule.source_matchers + rule.target_matchers:
            values.setdefault(matcher.name, set()).add(matcher.value)
    names = sorted(values) + ["extra"]
    generator = random.Random(seed)
    drawn: dict[tuple[tuple[str, str], ...], dict[str, str]] = {}
    for _ in range(count * 20):
        labels = {}
        for name in names:
            roll = generator.random()
            if roll < 0.25:
                continue
            pool = sorted(values.get(name, ())) if roll < 0.8 else RANDOM_VALUES
            labels[name] = generator.choice(pool or RANDOM_VALUES)
        drawn.setdefault(tuple(sorted(labels.items())), labels)
        if len(drawn) == count:
            break
    assert len(drawn) == count, f"only {len(drawn)} distinct label sets could be drawn"
    return list(drawn.values())


def compile_imported(source: Path, folder: Path) -> tuple[ir.Ruleset, dict[str, str]]:
    """Import `source` into `folder`, check it as a project and return its ruleset and receiver renames."""
    imported = import_alertmanager(source.read_text(encoding="utf-8"))
    for name, text in imported.files.items():
        (folder / name).write_text(text, encoding="utf-8")
    result = check_path(folder)
    assert not result.has_errors, [item.message for item in result.diagnostics]
    return result.ruleset(), imported.renamed


def _config_cases() -> list[pytest.param]:
    cases = [pytest.param(path, id=path.stem) for path in CONFIGS]
    cases.append(pytest.param(SHARED_CONFIG, id="shared-alertmanager-v0.25"))
    return cases


def test_differential_test_covers_2000_label_sets():
    total = (len(CONFIGS) + 1) * LABEL_SETS_PER_CONFIG + len(EXAMPLES) * LABEL_SETS_PER_EXAMPLE
    assert total >= 2000


@requires_amtool
@pytest.mark.slow
@pytest.mark.parametrize("source", _config_cases())
def test_router_agrees_with_amtool(source: Path, tmp_path: Path) -> None:
    if not source.exists():
        pytest.skip(f"the shared fixture {source} is not present beside the repository")
    assert check_config(source).returncode == 0, f"{source.name} must be a valid Alertmanager 0.25 config"
    rules = tmp_path / "rules"
    rules.mkdir()
    ruleset, renamed = compile_imported(source, rules)
    generated = tmp_path / "alertmanager.yml"
    generated.write_text(render(ruleset), encoding="utf-8")
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


@requires_amtool
@pytest.mark.slow
@pytest.mark.parametrize("folder", EXAMPLES, ids=[path.name for path in EXAMPLES])
def test_example_router_agrees_with_amtool(folder: Path, tmp_path: Path) -> None:
    ruleset = check_path(folder).ruleset()
    generated = tmp_path / "alertmanager.yml"
    generated.write_text(render(ruleset), encoding="utf-8")
    checked = check_config(generated)
    assert checked.returncode == 0, checked.stdout + checked.stderr

    router = Router(ruleset.route)
    sets = label_sets(ruleset, LABEL_SETS_PER_EXAMPLE, seed=len(folder.name))
    for labels, expected in zip(sets, route_receivers_many(generated, sets), strict=True):
        assert router.receivers(labels) == expected, labels


def test_string_loader_keeps_yaml_scalars_as_strings() -> None:
    document = load_alertmanager_yaml("a: NO\nb: yes\nc: 0123\nd: 13:00\ne: 24:00\n")
    assert document == {"a": "NO", "b": "yes", "c": "0123", "d": "13:00", "e": "24:00"}
