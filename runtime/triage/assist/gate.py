"""The gate between an assistant's recommendation and a run: what may start without a person, and what is only offered.

A recommendation may run automatically only when all of these hold:

1. It names a declared runbook or action, with parameters that pass the
   action's types and patterns (`model.check_recommendation`, checked again
   here rather than trusted).
2. The rules already allow it to run without a person. For a runbook this is
   the runbook's `auto` flag, and its `when` condition must hold for the
   incident's alert, as it would for the pipeline. For an action, the action
   must be declared `read_only`, since the language has no `auto` for
   actions.
3. Its confidence is above `AUTO_CONFIDENCE` (0.8).
4. Its plan (`runtime.runbooks.plan.build_plan`) is safe: no step is
   rejected, no step needs an approval or is an `approve` step, and every
   step that may run is read-only or mutating with risk `low`. A step whose
   condition is false for the alert is skipped and does not count, while a
   step whose condition is decided at run time does. A runbook that declares
   `risk high` as a whole never runs automatically.

Everything else is offered for approval. What runs is always the runbook as
the rules declare it, or the action with the checked literal parameters, and
the alert's values fill its templates exactly as they would in a run the
rules started. So no text in an alert or in the answer changes what a run
executes: at most it changes which of the rules' own safe runbooks the
assistant names.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from compiler import ir
from compiler.evaluate import condition_holds
from runtime.triage.assist.model import (
    Recommendation,
    RecommendationRejected,
    action_runbook,
    check_recommendation,
    find_action,
    find_runbook,
)

AUTO_CONFIDENCE = 0.8
_RISK_ORDER = {"low": 0, "medium": 1, "high": 2}


def may_run_automatically(recommendation: Recommendation, ruleset: ir.Ruleset, values: Mapping[str, Any]) -> tuple[bool, str]:
    """Decide whether `recommendation` may run without a person, and return the reason as one sentence.

    `values` are the incident's alert values, which the runbook's condition
    and templates read. The module docstring lists the conditions.
    """
    try:
        runbook = runbook_for(recommendation, ruleset, values)
    except RecommendationRejected as error:
        return False, f"rejected: {error}"
    if recommendation.confidence <= AUTO_CONFIDENCE:
        return False, f"confidence {recommendation.confidence:.2f} is not above {AUTO_CONFIDENCE}"
    allowed = _rules_allow(recommendation, ruleset, runbook, values)
    if allowed is not None:
        return False, allowed
    unsafe = _unsafe_step(ruleset, runbook, values)
    if unsafe is not None:
        return False, unsafe
    what = "runbook is automatic" if recommendation.kind == "runbook" else "action is read-only"
    return True, (
        f"the {what} in the rules, confidence {recommendation.confidence:.2f} is above {AUTO_CONFIDENCE}, "
        "and every step is read-only or low risk without approval"
    )


def runbook_for(recommendation: Recommendation, ruleset: ir.Ruleset, values: Mapping[str, Any] | None = None) -> ir.Runbook:
    """Return the runbook that carrying out `recommendation` starts: the declared one, or a one-step runbook for an action.

    Raises:
        RecommendationRejected: the recommendation names nothing declared or
            gives a value the rules do not allow.
    """
    checked = check_recommendation(recommendation, ruleset, values or {})
    if recommendation.kind == "runbook":
        return find_runbook(ruleset, recommendation.name)
    return action_runbook(find_action(ruleset, recommendation.name), checked.params)


def _rules_allow(
    recommendation: Recommendation, ruleset: ir.Ruleset, runbook: ir.Runbook, values: Mapping[str, Any]
) -> str | None:
    """Return why the rules do not let this run without a person, or None when they do."""
    if recommendation.kind == "action":
        action = find_action(ruleset, recommendation.name)
        if not action.read_only:
            return f"action `{action.name}` is mutating, and only read-only actions run without a person"
        return None
    if not runbook.auto:
        return f"runbook `{runbook.id}` is manual in the rules"
    if runbook.risk == "high":
        return f"runbook `{runbook.id}` declares risk high"
    if runbook.when is not None:
        try:
            holds = condition_holds(runbook.when, dict(values))
        except Exception as error:  # a condition that cannot be evaluated on this alert does not start the runbook
            return f"the trigger of runbook `{runbook.id}` cannot be evaluated on the incident's alert: {error}"
        if not holds:
            return f"the trigger of runbook `{runbook.id}` does not hold for the incident's alert"
    return None


def _unsafe_step(ruleset: ir.Ruleset, runbook: ir.Runbook, values: Mapping[str, Any]) -> str | None:
    """Return why a step of the runbook's plan needs a person, or None when every step is safe to run alone."""
    from runtime.runbooks.plan import build_plan

    for step in build_plan(ruleset, runbook, dict(values)).steps:
        if step.rejected:
            return f"step `{step.name}` is rejected: {step.rejected}"
        if step.condition_holds is False:
            continue
        if step.kind == "approve" or step.approval:
            return f"step `{step.name}` needs approval"
        if step.mutating and _RISK_ORDER.get(step.risk, len(_RISK_ORDER)) > _RISK_ORDER["low"]:
            return f"step `{step.name}` is mutating with risk {step.risk}"
    return None
