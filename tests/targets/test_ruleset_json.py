"""ruleset.json: the header fields always come first, defaults are left out, and the daemon reads it back whole."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from compiler import ir
from compiler.api import check_path, check_text
from tests.conftest import EXAMPLES

SOURCE = """
team ops { email "ops@example.com" }
route {
  receiver ops
  match severity = "critical" -> ops
  match team = "db" -> ops { continue }
}
"""


def _ruleset(text: str = SOURCE) -> ir.Ruleset:
    result = check_text(text, "r.irules")
    assert not result.has_errors, result.diagnostics
    return result.ruleset()


def test_header_fields_always_first() -> None:
    document = json.loads(_ruleset().to_json())
    assert list(document)[: len(ir.HEADER_FIELDS)] == list(ir.HEADER_FIELDS)
    assert document["version"] == ir.IR_VERSION
    assert document["environment"] is None


def test_default_values_are_left_out() -> None:
    document = json.loads(_ruleset().to_json())
    first, second = document["route"]["routes"]
    assert "continue" not in first
    assert second["continue"] is True
    assert "mute_time_intervals" not in first
    channel = document["receivers"][0]["channels"][0]
    assert channel == {"kind": "email", "target": "ops@example.com"}


def test_text_is_indented_json() -> None:
    text = _ruleset().to_json()
    assert text.startswith('{\n  "version": 1,\n')
    assert text.endswith("}\n")
    assert json.loads(text) is not None


@pytest.mark.parametrize("folder", sorted(path for path in EXAMPLES.iterdir() if any(path.glob("*.irules"))))
def test_examples_read_back_equal(folder: Path) -> None:
    result = check_path(folder)
    assert not result.has_errors
    ruleset = result.ruleset()
    assert ir.Ruleset.model_validate_json(ruleset.to_json()) == ruleset
    assert ir.Ruleset.model_validate(json.loads(ruleset.to_json())) == ruleset
