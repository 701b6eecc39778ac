"""Answers of an assistant: parsing them strictly, and dropping every recommendation the rules do not allow."""

from __future__ import annotations

import json

import pytest

from compiler import ir
from compiler.api import compile_rules
from runtime.triage.assist.model import (
    Answer,
    MalformedAnswer,
    Recommendation,
    action_runbook,
    parse_answer,
    validate_answer,
)

RULES = """
receiver ops {
  webhook "http://127.0.0.1:9/ops"
}

route {
  receiver ops
}

action inspect(pod: string matching "^[a-z0-9-]+$", lines: int = 100 matching "^[0-9]{1,4}$") {
  run ["kubectl", "logs", "--tail={{ lines }}", "--", "{{ pod }}"]
  read_only
}

action note(text: string) {
  run ["logger", "{{ text }}"]
  read_only
}

runbook collect "Collect evidence" {
  when label.alertname == "Down"
  auto
  step logs {
    run ["kubectl", "logs", "--", "{{ label.pod }}"]
    read_only
  }
}
"""


@pytest.fixture(scope="module")
def ruleset(tmp_path_factory: pytest.TempPathFactory) -> ir.Ruleset:
    folder = tmp_path_factory.mktemp("rules")
    (folder / "rules.irules").write_text(RULES, encoding="utf-8")
    return compile_rules(folder)


def answer_with(*recommendations: dict) -> Answer:
    return Answer.model_validate({"recommendations": list(recommendations)})


def reasons(answer: Answer, ruleset: ir.Ruleset) -> list[str]:
    return [item.reason for item in validate_answer(answer, ruleset).rejected]


# ---------------------------------------------------------------- parsing


def test_parse_answer_reads_plain_json() -> None:
    text = json.dumps(
        {
            "summary": "the database is down",
            "hypotheses": [{"title": "database down", "evidence": ["DbDown fires"], "confidence": 0.7}],
            "recommendations": [{"kind": "runbook", "name": "collect", "confidence": 0.9, "reason": "logs"}],
            "citations": ["runbook:collect"],
        }
    )
    answer = parse_answer(text)
    assert answer.summary == "the database is down"
    assert answer.hypotheses[0].evidence == ["DbDown fires"]
    assert answer.recommendations[0].name == "collect"
    assert answer.citations == ["runbook:collect"]


def test_parse_answer_reads_a_fenced_block() -> None:
    answer = parse_answer('```json\n{"summary": "fenced"}\n```')
    assert answer.summary == "fenced"


def test_parse_answer_reads_json_between_sentences() -> None:
    answer = parse_answer('Here is my answer: {"summary": "inline"} I hope it helps.')
    assert answer.summary == "inline"


def test_parse_answer_turns_numbers_into_parameter_text() -> None:
    answer = parse_answer(
        '{"recommendations": [{"kind": "action", "name": "inspect", "params": {"pod": "a", "lines": 20, "all": true},'
        ' "confidence": 0.5}]}'
    )
    assert answer.recommendations[0].params == {"pod": "a", "lines": "20", "all": "true"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "the answer is empty"),
        ("I could not find anything.", "not a JSON object"),
        ("[1, 2]", "not a JSON object"),
        ('{"summary": "x", "verdict": "run everything"}', "verdict: Extra inputs are not permitted"),
        ('{"hypotheses": [{"title": "x", "confidence": 1.5}]}', "hypotheses.0.confidence"),
        ('{"recommendations": [{"kind": "shell", "name": "x", "confidence": 0.5}]}', "recommendations.0.kind"),
        ('{"recommendations": [{"kind": "action", "name": "", "confidence": 0.5}]}', "recommendations.0.name"),
        ('{"recommendations": [{"kind": "action", "name": "x", "params": {"a": ["b"]}, "confidence": 0.5}]}', "params.a"),
    ],
)
def test_parse_answer_rejects_malformed_text(text: str, expected: str) -> None:
    with pytest.raises(MalformedAnswer) as raised:
        parse_answer(text)
    assert expected in str(raised.value)


def test_parse_answer_bounds_the_number_of_recommendations() -> None:
    items = [{"kind": "runbook", "name": f"r{index}", "confidence": 0.5} for index in range(11)]
    with pytest.raises(MalformedAnswer) as raised:
        parse_answer(json.dumps({"recommendations": items}))
    assert "recommendations" in str(raised.value)


# ---------------------------------------------------------------- validating against the rules


def test_declared_runbook_is_accepted(ruleset: ir.Ruleset) -> None:
    validation = validate_answer(answer_with({"kind": "runbook", "name": "collect", "confidence": 0.9}), ruleset)
    assert [item.recommendation.name for item in validation.accepted] == ["collect"]
    assert validation.rejected == []


def test_undeclared_runbook_is_rejected_with_a_suggestion(ruleset: ir.Ruleset) -> None:
    found = reasons(answer_with({"kind": "runbook", "name": "colect", "confidence": 0.9}), ruleset)
    assert found == ["runbook `colect` is not declared in the rules; a runbook with a similar name exists: `collect`"]


def test_undeclared_action_is_rejected(ruleset: ir.Ruleset) -> None:
    found = reasons(answer_with({"kind": "action", "name": "delete_cluster", "confidence": 1.0}), ruleset)
    assert found == ["action `delete_cluster` is not declared in the rules"]


def test_runbook_with_parameters_is_rejected(ruleset: ir.Ruleset) -> None:
    found = reasons(answer_with({"kind": "runbook", "name": "collect", "params": {"pod": "x"}, "confidence": 0.9}), ruleset)
    assert found == ["runbook `collect` takes no parameters, but the recommendation gives `pod`"]


def test_unknown_parameter_is_rejected(ruleset: ir.Ruleset) -> None:
    recommendation = {"kind": "action", "name": "inspect", "params": {"pod": "api-1", "kubeconfig": "/x"}, "confidence": 0.9}
    found = reasons(answer_with(recommendation), ruleset)
    assert found == ["action `inspect` has no parameter `kubeconfig` (parameters: `lines`, `pod`)"]


def test_missing_parameter_is_rejected(ruleset: ir.Ruleset) -> None:
    found = reasons(answer_with({"kind": "action", "name": "inspect", "params": {}, "confidence": 0.9}), ruleset)
    assert found == ["action `inspect` needs a value for parameter `pod`"]


@pytest.mark.parametrize("value", ["api-1; rm -rf /", "$(reboot)", "API", "api-1\n", "a b"])
def test_parameter_failing_its_pattern_is_rejected(ruleset: ir.Ruleset, value: str) -> None:
    found = reasons(answer_with({"kind": "action", "name": "inspect", "params": {"pod": value}, "confidence": 0.9}), ruleset)
    assert len(found) == 1
    assert "does not match the pattern `^[a-z0-9-]+$`" in found[0]


def test_parameter_of_wrong_type_is_rejected(ruleset: ir.Ruleset) -> None:
    params = {"pod": "api-1", "lines": "many"}
    found = reasons(answer_with({"kind": "action", "name": "inspect", "params": params, "confidence": 0.9}), ruleset)
    assert found == ["argument `lines` of action `inspect` must be an int, not 'many'"]


@pytest.mark.parametrize("value", ["{{ 7 * 7 }}", "{% for x in y %}{% endfor %}", "{# hidden #}"])
def test_parameter_with_template_syntax_is_rejected(ruleset: ir.Ruleset, value: str) -> None:
    found = reasons(answer_with({"kind": "action", "name": "note", "params": {"text": value}, "confidence": 0.9}), ruleset)
    assert len(found) == 1
    assert "contains template syntax" in found[0]


def test_parameter_that_would_become_an_option_is_rejected(ruleset: ir.Ruleset) -> None:
    params = {"text": "--kubeconfig=/etc/evil"}
    found = reasons(answer_with({"kind": "action", "name": "note", "params": params, "confidence": 0.9}), ruleset)
    assert len(found) == 1
    assert "would be read as an option" in found[0]


def test_action_parameters_are_bound_with_defaults(ruleset: ir.Ruleset) -> None:
    validation = validate_answer(
        answer_with({"kind": "action", "name": "inspect", "params": {"pod": "api-1"}, "confidence": 0.9}), ruleset
    )
    assert validation.accepted[0].params == {"pod": "api-1", "lines": "100"}


def test_repeated_recommendation_is_rejected(ruleset: ir.Ruleset) -> None:
    item = {"kind": "runbook", "name": "collect", "confidence": 0.9}
    validation = validate_answer(answer_with(item, item), ruleset)
    assert len(validation.accepted) == 1
    assert [rejection.reason for rejection in validation.rejected] == ["repeats an earlier recommendation"]


def test_action_runbook_calls_the_action_with_literal_values(ruleset: ir.Ruleset) -> None:
    action = next(item for item in ruleset.actions if item.name == "inspect")
    runbook = action_runbook(action, {"pod": "api-1", "lines": "100"})
    assert runbook.id == "assist-action-inspect"
    assert runbook.auto is False
    assert [(step.kind, step.action, step.read_only) for step in runbook.steps] == [("call", "inspect", True)]
    assert runbook.steps[0].args == [{"name": "pod", "value": "api-1"}, {"name": "lines", "value": "100"}]


def test_recommendation_is_frozen() -> None:
    recommendation = Recommendation(kind="runbook", name="collect", confidence=0.5)
    with pytest.raises(ValueError):
        recommendation.name = "other"  # type: ignore[misc]
