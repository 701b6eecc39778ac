"""Render a `PostMortem` to Markdown or HTML through Jinja2 templates that users can replace.

Templates are looked up by name, first in the user's template folder and then
among the shipped ones in `runtime/reports/templates/`:
`postmortem.<locale>.<format>.j2` (such as `postmortem.de.md.j2`), then
`postmortem.<format>.j2`. The shipped templates are also reachable as
`shipped/postmortem.<format>.j2`, so a user's template can extend one and
replace only some of its blocks.

Every template, shipped or not, renders in Jinja's
`ImmutableSandboxedEnvironment`, so it cannot reach Python internals or
change the values it is given. The values (the post-mortem and the fixed
texts) are never compiled as templates. What a `{{ ... }}` prints is escaped
for the output format: HTML-escaped in HTML, and in Markdown by
`escape_markdown`, so that alert data shows as text and never becomes markup.
"""

from __future__ import annotations

import datetime
import functools
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jinja2 import (
    ChoiceLoader,
    FileSystemLoader,
    FunctionLoader,
    PrefixLoader,
    StrictUndefined,
    TemplateError,
    TemplateNotFound,
    TemplateSyntaxError,
)
from jinja2.sandbox import ImmutableSandboxedEnvironment

from runtime.reports.postmortem_texts import LOCALES, format_duration, format_share, format_time, texts

if TYPE_CHECKING:
    from runtime.reports.postmortem import Approval, Finding, PostMortem

FORMATS = ("md", "html")
SHIPPED_PREFIX = "shipped"

_SHIPPED = resources.files("runtime.reports") / "templates"

# Characters with a meaning inside a Markdown line (CommonMark, GitHub's tables,
# strikethrough and math), and line breaks, which would let a value start a new block.
_MARKDOWN_ESCAPES = str.maketrans(
    {
        "\\": "\\\\",
        "`": "\\`",
        "*": "\\*",
        "_": "\\_",
        "[": "\\[",
        "]": "\\]",
        "|": "\\|",
        "~": "\\~",
        "$": "\\$",
        "<": "&lt;",
        ">": "&gt;",
        "&": "&amp;",
        "\r": " ",
        "\n": " ",
    }
)
# Characters that open a heading, list item, setext underline or thematic break at the start of a line.
_BLOCK_MARKERS = "#-+="


class PostMortemError(Exception):
    """A template is missing, invalid or failed while rendering; the message names the template and the problem."""


def escape_markdown(value: Any) -> str:
    """Return `value` as Markdown text that renders as exactly that text, on one line.

    Inline markup characters get a backslash, `<`, `>` and `&` become entities,
    and line breaks become spaces. A value that would open a block where it
    starts a line (`# `, `- `, `1. `) gets its marker escaped too.
    """
    text = str(value).translate(_MARKDOWN_ESCAPES)
    start = len(text) - len(text.lstrip(" "))
    if text[start : start + 1] and text[start] in _BLOCK_MARKERS:
        return text[:start] + "\\" + text[start:]
    # An ordered list item is up to nine digits, `.` or `)`, and then a space or the end of the line.
    digits = start
    while digits < len(text) and text[digits].isascii() and text[digits].isdigit():
        digits += 1
    if 0 < digits - start <= 9 and text[digits : digits + 1] in (".", ")") and text[digits + 1 : digits + 2] in ("", " ", "\t"):
        return text[:digits] + "\\" + text[digits:]
    return text


def render(post_mortem: PostMortem, *, locale: str = "en", output_format: str = "md", template_dir: Path | None = None) -> str:
    """Render `post_mortem` in `locale` (`en` or `de`) as `md` or `html`, with the templates of `template_dir` first.

    Example:
        render(collect(store, "INC-2026-0042"), locale="de", output_format="html")

    Raises:
        ValueError: `locale` or `output_format` is not one of the supported ones.
        PostMortemError: a template has a syntax error, reads an undefined
            value, does something the sandbox forbids, cannot be found, or
            extends itself.
    """
    if locale not in LOCALES:
        raise ValueError(f"unsupported locale {locale!r}; use one of {', '.join(LOCALES)}")
    if output_format not in FORMATS:
        raise ValueError(f"unsupported format {output_format!r}; use one of {', '.join(FORMATS)}")
    environment = _environment(output_format, template_dir, locale)
    names = [f"postmortem.{locale}.{output_format}.j2", f"postmortem.{output_format}.j2"]
    name = names[-1]
    try:
        template = environment.select_template(names)
        name = template.name or name
        return template.render(_values(post_mortem, locale, output_format))
    except TemplateSyntaxError as error:
        raise PostMortemError(f"template {error.name or name}, line {error.lineno}: {error.message}") from error
    except TemplateNotFound as error:
        raise PostMortemError(f"template {name}: template {error.message} not found") from error
    except TemplateError as error:
        raise PostMortemError(f"template {name} failed: {error.message}") from error
    except RecursionError as error:
        # A user's template that extends or includes itself; the shipped one is `shipped/NAME`.
        raise PostMortemError(f"template {name} extends or includes itself; extend `shipped/{names[-1]}` instead") from error
    except (TypeError, ValueError, LookupError, AttributeError) as error:
        # A filter or method given a value of the wrong kind by a user's template.
        raise PostMortemError(f"template {name} failed: {type(error).__name__}: {error}") from error


# ---------------------------------------------------------------- the environment


def _environment(output_format: str, template_dir: Path | None, locale: str) -> ImmutableSandboxedEnvironment:
    shipped = FunctionLoader(_shipped_source)
    loaders: list[Any] = [PrefixLoader({SHIPPED_PREFIX: shipped})]
    if template_dir is not None:
        loaders.append(FileSystemLoader(str(template_dir)))
    loaders.append(shipped)
    html = output_format == "html"
    environment = ImmutableSandboxedEnvironment(
        loader=ChoiceLoader(loaders),
        autoescape=html,
        finalize=_finalize_html if html else _finalize_markdown,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    environment.filters.update(_filters(locale))
    return environment


def _shipped_source(name: str) -> tuple[str, None, Callable[[], bool]] | None:
    """Return a shipped template's source, or None; only `postmortem.*` names directly in the folder exist."""
    if "/" in name or "\\" in name or not name.startswith("postmortem."):
        return None
    path = _SHIPPED / name
    if not path.is_file():
        return None
    return path.read_text(encoding="utf-8"), None, lambda: True


def _finalize_markdown(value: Any) -> str:
    return "" if value is None else escape_markdown(value)


def _finalize_html(value: Any) -> Any:
    # Autoescaping runs after this and escapes the value.
    return "" if value is None else value


# ---------------------------------------------------------------- what templates see


def _values(post_mortem: PostMortem, locale: str, output_format: str) -> dict[str, Any]:
    return {
        "t": texts(locale),
        "locale": locale,
        "format": output_format,
        "incident": post_mortem.incident,
        "timings": post_mortem.timings,
        "impact": post_mortem.impact,
        "timeline": post_mortem.timeline,
        "alerts": post_mortem.alerts,
        "runs": post_mortem.runs,
        "notifications": post_mortem.notifications,
        "root_causes": post_mortem.root_causes,
        "contributing_factors": post_mortem.contributing_factors,
        "similar": post_mortem.similar,
        "sessions": post_mortem.sessions,
    }


def _filters(locale: str) -> dict[str, Callable[..., str]]:
    words = texts(locale)
    return {
        "time": functools.partial(_time, locale=locale),
        "duration": functools.partial(_duration, locale=locale),
        "share": functools.partial(format_share, locale=locale),
        "severity_name": lambda level: words["severities"].get(level, level) if level else words["unclassified"],
        "status_name": lambda status: words["statuses"].get(status, status),
        "step_state": lambda state: words["step_states"].get(state, state),
        "run_state": lambda state: words["run_states"].get(state, state),
        "trigger_name": lambda trigger: words["triggers"].get(trigger, trigger),
        "event_name": lambda event: words["events"].get(event, event),
        "delivery": lambda status: words["delivery"].get(status, status),
        "yes_no": lambda value: words["yes"] if value else words["no"],
        "labels": _labels,
        "approval": functools.partial(_approval, locale=locale),
        "source": functools.partial(_source, locale=locale),
    }


def _time(moment: datetime.datetime | None, *, locale: str) -> str:
    return format_time(moment, locale)


def _duration(seconds: float | None, *, locale: str) -> str:
    return format_duration(seconds, locale)


def _labels(pairs: Any) -> str:
    return ", ".join(f"{name}={value}" for name, value in pairs)


def _approval(approval: Approval, *, locale: str) -> str:
    """Return who decided an approval request or interrupted step and when, in the locale's words."""
    wording = texts(locale)["approvals"]
    template = wording.get(approval.status, approval.status)
    text = template.format(by=approval.decided_by or "", at=format_time(approval.decided_at, locale), team=approval.team or "")
    return f"{text}: {approval.note}" if approval.note else text


def _source(finding: Finding, *, locale: str) -> str:
    """Return where a finding came from, in the locale's words."""
    wording = texts(locale)["sources"]
    return wording[finding.source].format(
        provider=finding.by or "", by=finding.by or "", focus=finding.focus or "", at=format_time(finding.at, locale)
    )
