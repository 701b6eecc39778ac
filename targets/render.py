"""Render every artifact of a ruleset: file name to text, in a fixed order."""

from __future__ import annotations

from compiler import ir
from compiler.collector import collector_paused
from targets import alertmanager, pagerduty

# Every file name `render_all` can return, in the order it returns them.
ARTIFACTS = ("alertmanager.yml", "pagerduty.json", "slack-manifest.yaml", "slack-blocks.json", "ruleset.json")


def render_all(ruleset: ir.Ruleset) -> dict[str, str]:
    """Return every artifact; each is a pure function of the ruleset, so the output is byte-stable.

    The Slack manifest and message templates are produced only when the project declares a `slack` app.
    Python's cyclic garbage collector is paused meanwhile: each of its full passes would scan the whole
    IR, and rendering a large ruleset builds many short-lived objects.

    Example:
        artifacts = render_all(compile_rules(Path("examples/production"), "production"))
        Path("build/alertmanager.yml").write_text(artifacts["alertmanager.yml"])

    Raises:
        compiler.errors.TargetError: an artifact cannot be produced from this ruleset.
    """
    with collector_paused():
        return _render(ruleset)


def check_targets(ruleset: ir.Ruleset) -> None:
    """Render every target that can reject a ruleset, and keep nothing, so `irules check` finds what `compile` would.

    Raises:
        compiler.errors.TargetError: an artifact cannot be produced from this ruleset.
    """
    with collector_paused():
        _render_targets(ruleset)


def _render(ruleset: ir.Ruleset) -> dict[str, str]:
    return {**_render_targets(ruleset), "ruleset.json": ruleset.to_json()}


def _render_targets(ruleset: ir.Ruleset) -> dict[str, str]:
    """Return the artifacts of the targets, which are every artifact but `ruleset.json`."""
    artifacts = {
        "alertmanager.yml": alertmanager.render(ruleset),
        "pagerduty.json": pagerduty.render(ruleset),
    }
    if ruleset.slack is not None:
        # Only projects with a Slack app need these targets, and slack_blocks imports Jinja.
        from targets import slack_blocks, slack_manifest

        artifacts["slack-manifest.yaml"] = slack_manifest.render(ruleset)
        artifacts["slack-blocks.json"] = slack_blocks.render(ruleset)
    return artifacts
