"""An assistant's answer, and the check that keeps its recommendations within what the rules declare.

An answer comes from outside irules: a language model that read alert data,
which anyone who can raise an alert controls. So an answer is only data. Its
recommendations name a runbook or an action of the rules, and
`validate_answer` drops every one that names something undeclared, passes a
parameter the action does not have, or gives a value that fails the
parameter's type or `matching` pattern. A dropped recommendation is reported
as rejected and never executed.

Parameter values are taken literally. A value with template syntax (`{{`,
`{%`, `{#`) is rejected, because the executor renders action arguments as
templates and an answer must never become template source.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, field_validator

from compiler import ir
from compiler.suggest import closest

FOCUSES = ("root-cause", "impact", "remediation")

# Bounds of an answer, so that a runaway answer cannot flood the timeline.
MAX_HYPOTHESES = 10
MAX_RECOMMENDATIONS = 10
MAX_EVIDENCE = 20
MAX_CITATIONS = 50
MAX_TEXT = 2000

# Characters of a model-supplied value that a rejection message shows.
_EXCERPT_CHARS = 80

Text = Annotated[str, StringConstraints(max_length=MAX_TEXT)]


class AssistError(Exception):
    """Assisted diagnosis failed. The message names what failed and what to do next."""


class MalformedAnswer(AssistError):
    """An answer that is not the JSON object the prompt requests, or that breaks its schema."""


class _AnswerModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Hypothesis(_AnswerModel):
    """A possible explanation, with the facts that support it."""

    title: str = Field(min_length=1, max_length=500, description="The explanation in one sentence.")
    evidence: list[Text] = Field(default_factory=list, max_length=MAX_EVIDENCE, description="Facts that support it.")
    confidence: float = Field(ge=0.0, le=1.0, description="How likely the explanation is, from 0 to 1.")


class Recommendation(_AnswerModel):
    """A runbook or action of the rules to run, with the action's parameters."""

    kind: Literal["runbook", "action"]
    name: str = Field(min_length=1, max_length=200, description="The runbook id or action name, as the rules declare it.")
    params: dict[str, Text] = Field(default_factory=dict, max_length=50, description="Action parameters by name.")
    confidence: float = Field(ge=0.0, le=1.0, description="How sure the assistant is that this helps, from 0 to 1.")
    reason: Text = Field("", description="Why it helps.")

    @field_validator("params", mode="before")
    @classmethod
    def _params_as_text(cls, value: Any) -> Any:
        # A model writes `"replicas": 4` as often as `"replicas": "4"`, and both mean the text the rules would write.
        if not isinstance(value, Mapping):
            return value
        return {name: _literal_text(item) for name, item in value.items()}


class Answer(_AnswerModel):
    """An assistant's conclusion about an incident: hypotheses, recommendations and the documents it used."""

    summary: Text = Field("", description="The conclusion in a few sentences.")
    hypotheses: list[Hypothesis] = Field(default_factory=list, max_length=MAX_HYPOTHESES)
    recommendations: list[Recommendation] = Field(default_factory=list, max_length=MAX_RECOMMENDATIONS)
    citations: list[Annotated[str, StringConstraints(max_length=300)]] = Field(default_factory=list, max_length=MAX_CITATIONS)


def _literal_text(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return value


def answer_schema() -> dict[str, Any]:
    """Return the JSON schema of `Answer`, which prompts include to give the model the exact shape."""
    return Answer.model_json_schema()


def parse_answer(text: str) -> Answer:
    """Parse an assistant's reply into an `Answer`.

    The reply should be one JSON object. A reply that wraps it in a Markdown
    code fence, or puts a sentence before or after it, is accepted too.

    Raises:
        MalformedAnswer: no JSON object is found, or the object breaks the
            schema. The message lists at most five problems by field.
    """
    data = _json_object(text)
    try:
        return Answer.model_validate(data)
    except ValidationError as error:
        problems = [f"{'.'.join(str(part) for part in item['loc']) or 'answer'}: {item['msg']}" for item in error.errors()]
        more = f" and {len(problems) - 5} more" if len(problems) > 5 else ""
        raise MalformedAnswer(f"the answer does not match the schema: {'; '.join(problems[:5])}{more}") from None


def _json_object(text: str) -> Any:
    stripped = text.strip()
    candidates = [stripped]
    if stripped.startswith("```"):
        # A fenced block: drop the opening line (```json) and the closing fence.
        body = stripped.split("\n", 1)[1] if "\n" in stripped else ""
        candidates.append(body.rsplit("```", 1)[0])
    start, end = stripped.find("{"), stripped.rfind("}")
    if 0 <= start < end:
        candidates.append(stripped[start : end + 1])
    for candidate in candidates:
        try:
            data = json.loads(candidate)
        except ValueError:
            continue
        if isinstance(data, dict):
            return data
    excerpt = stripped[:_EXCERPT_CHARS].replace("\n", " ")
    raise MalformedAnswer(f"the answer is not a JSON object: {excerpt!r}" if stripped else "the answer is empty")


# ---------------------------------------------------------------- checking recommendations against the rules


class RecommendationRejected(Exception):
    """A recommendation that names something the rules do not declare, or gives a value they do not allow."""


@dataclass(frozen=True, slots=True)
class CheckedRecommendation:
    """A recommendation that names a declared runbook or action, with the action's parameters bound and checked.

    `params` holds every parameter of an action, defaults included, as the
    checked text that the action's argv or request receives.
    """

    recommendation: Recommendation
    params: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Rejection:
    recommendation: Recommendation
    reason: str


@dataclass(frozen=True, slots=True)
class Validation:
    """The recommendations of an answer, split into those the rules allow and those they reject."""

    accepted: list[CheckedRecommendation]
    rejected: list[Rejection]


def validate_answer(answer: Answer, ruleset: ir.Ruleset, values: Mapping[str, Any] | None = None) -> Validation:
    """Check every recommendation of `answer` against the declared runbooks and actions of `ruleset`.

    `values` are the incident's alert values, which action bodies may read;
    with them, an action's operation is rendered once here, so a value that
    the argv checks would reject is rejected now. A recommendation that
    repeats an earlier one is rejected too.
    """
    accepted: list[CheckedRecommendation] = []
    rejected: list[Rejection] = []
    seen: set[tuple[str, str, tuple[tuple[str, str], ...]]] = set()
    for recommendation in answer.recommendations:
        identity = (recommendation.kind, recommendation.name, tuple(sorted(recommendation.params.items())))
        if identity in seen:
            rejected.append(Rejection(recommendation, "repeats an earlier recommendation"))
            continue
        seen.add(identity)
        try:
            accepted.append(check_recommendation(recommendation, ruleset, values or {}))
        except RecommendationRejected as error:
            rejected.append(Rejection(recommendation, str(error)))
    return Validation(accepted, rejected)


def check_recommendation(
    recommendation: Recommendation, ruleset: ir.Ruleset, values: Mapping[str, Any] | None = None
) -> CheckedRecommendation:
    """Return the recommendation with its parameters checked, or raise `RecommendationRejected` saying why not."""
    if recommendation.kind == "runbook":
        find_runbook(ruleset, recommendation.name)
        if recommendation.params:
            names = ", ".join(f"`{_excerpt(name)}`" for name in recommendation.params)
            raise RecommendationRejected(
                f"runbook `{recommendation.name}` takes no parameters, but the recommendation gives {names}"
            )
        return CheckedRecommendation(recommendation)
    action = find_action(ruleset, recommendation.name)
    return CheckedRecommendation(recommendation, bind_params(ruleset, action, recommendation.params, values or {}))


def find_runbook(ruleset: ir.Ruleset, name: str) -> ir.Runbook:
    """Return the declared runbook `name`, or raise `RecommendationRejected` naming the closest declared one."""
    for runbook in ruleset.runbooks:
        if runbook.id == name:
            return runbook
    raise RecommendationRejected(_undeclared("runbook", name, [runbook.id for runbook in ruleset.runbooks]))


def find_action(ruleset: ir.Ruleset, name: str) -> ir.Action:
    """Return the declared action `name`, or raise `RecommendationRejected` naming the closest declared one."""
    for action in ruleset.actions:
        if action.name == name:
            return action
    raise RecommendationRejected(_undeclared("action", name, [action.name for action in ruleset.actions]))


def bind_params(ruleset: ir.Ruleset, action: ir.Action, params: Mapping[str, str], values: Mapping[str, Any]) -> dict[str, str]:
    """Bind literal parameter values to `action` and check them as a runbook step's arguments are checked.

    The action's operation is planned once with the bound values, so a value
    that the argv checks reject (such as a value that would start an option)
    is rejected here, before anyone is asked about it.

    Raises:
        RecommendationRejected: a parameter is unknown or missing, a value
            contains template syntax, fails the parameter's type or pattern,
            or makes the action's operation fail its checks.
    """
    from runtime.runbooks import process
    from runtime.runbooks.model import StepRejected
    from runtime.runbooks.plan import build_plan

    declared = {param.name for param in action.params}
    for name, value in params.items():
        if name not in declared:
            known = ", ".join(f"`{param}`" for param in sorted(declared)) or "none"
            raise RecommendationRejected(f"action `{action.name}` has no parameter `{_excerpt(name)}` (parameters: {known})")
        if process.has_template(value):
            raise RecommendationRejected(
                f"parameter `{name}` of action `{action.name}` contains template syntax, "
                f"but recommended values are taken literally: {_excerpt(value)!r}"
            )
    arguments = [{"name": name, "value": value} for name, value in params.items()]
    try:
        bound = process.bind_action(action, arguments, values)
    except StepRejected as error:
        raise RecommendationRejected(str(error)) from None
    for step in build_plan(ruleset, action_runbook(action, bound), dict(values)).steps:
        if step.rejected:
            raise RecommendationRejected(step.rejected)
    return bound


# Prefix of the id of a one-step runbook that runs a recommended action.
ACTION_RUNBOOK_PREFIX = "assist-action-"


def action_runbook(action: ir.Action, params: Mapping[str, str]) -> ir.Runbook:
    """Return a manual one-step runbook that calls `action` with literal, already checked parameters.

    Plans and runs execute runbooks, so a recommended action is judged and
    started as this runbook. Its id is `assist-action-NAME`.
    """
    step = ir.Step(
        name=action.name,
        kind="call",
        action=action.name,
        args=[{"name": name, "value": value} for name, value in params.items()],
        risk=action.risk,
        read_only=action.read_only,
        idempotent=action.idempotent,
    )
    return ir.Runbook(
        id=f"{ACTION_RUNBOOK_PREFIX}{action.name}",
        title=f"Action {action.name} recommended by the assistant",
        risk=action.risk,
        steps=[step],
    )


def _undeclared(kind: str, name: str, known: list[str]) -> str:
    message = f"{kind} `{_excerpt(name)}` is not declared in the rules"
    suggestion = closest(name, known)
    if suggestion is not None:
        article = "an" if kind[0] in "aeiou" else "a"
        message += f"; {article} {kind} with a similar name exists: `{suggestion}`"
    return message


def _excerpt(text: str) -> str:
    return text if len(text) <= _EXCERPT_CHARS else text[:_EXCERPT_CHARS] + "..."
