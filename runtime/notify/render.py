"""Render the texts of a notification: pick the template, build its values and run it in a bounded sandbox.

A `Message` contains one notification's inputs and renders its fields (title,
text, subject, body, summary) on demand. A field's text comes from the
channel's `template NAME` when the rules give one, else from the templates
shipped in `runtime/notify/templates/`, in the message's locale or its
language and finally English. A rules template that fails is logged, and
the shipped text is used instead.

Template sources come only from the rules and from the shipped files. Alert
data reaches a template only as values of its context and is never compiled.

Every render runs under a budget: at most `MAX_STEPS` steps and
`RENDER_TIMEOUT_S` seconds. A step is one loop iteration, call, filter,
attribute lookup, operator or piece of output, and both limits are checked at
every step. Operators, filters and calls are also refused arguments that would
build huge values (`"x" * 10**9`, `center(10**9)`, `"%099999999d" % 1`), and
the output is cut at `MAX_FIELD_CHARS`. A template that fails or exceeds its
budget raises `TemplateFailed`.

Three escaping modes exist, because the same data lands in different markup:
`plain` (nothing escaped), `mrkdwn` (the output of every `{{ ... }}` has Slack's
`&`, `<` and `>` escaped, while the template's own text is kept, so a template
may write `<https://example.com|a link>`) and `html` (autoescaping, for the
shipped e-mail layout only).
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import datetime
import functools
import logging
import math
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from jinja2 import ChainableUndefined, nodes, pass_context
from jinja2.runtime import Context, markup_join, str_join
from jinja2.sandbox import ImmutableSandboxedEnvironment, SandboxedEnvironment
from jinja2.visitor import NodeTransformer
from markupsafe import Markup

from compiler import ir
from runtime.incidents import ENDED
from targets import slack_blocks

log = logging.getLogger("irules.notify")

Escape = Literal["plain", "mrkdwn", "html"]

MAX_STEPS = 100_000
RENDER_TIMEOUT_S = 1.0
# Output of one rendered field; channels cut it further to their own limits.
MAX_FIELD_CHARS = 4_000
MAX_SOURCE_CHARS = 20_000
# Largest string, list or mapping an operator or filter may build.
MAX_VALUE_SIZE = 100_000
# Largest integer argument of a call or filter, so `center(10**9)` cannot allocate a gigabyte.
MAX_ARGUMENT = 100_000
MAX_INTEGER_BITS = 4_096
MAX_EXPONENT = 128

_COUNTED = "irules_counted"
_JOINED = "irules_joined"
# A field width of seven or more digits in a format string: `%0999999999d`, `{:>9999999}`.
_WIDE_FORMAT = re.compile(r"\d{7}")
_TEMPLATES = resources.files("runtime.notify") / "templates"


# Fields of a rules template that each message field reads, in order, and the shipped template that fills it otherwise.
_TEMPLATE_FIELDS = {
    "title": ("title",),
    "text": ("text",),
    "subject": ("subject", "title"),
    "body": ("body", "text"),
    "summary": ("summary", "title"),
}
_SHIPPED_FIELDS = {"title": "title", "text": "text", "subject": "title", "body": "text", "summary": "summary"}


# ---------------------------------------------------------------- a message's texts


# Words that messages show outside templates, per locale. Each locale has every key of `en`.
TEXTS: dict[str, dict[str, Any]] = {
    "en": {
        "severities": {"critical": "Critical", "high": "High", "medium": "Medium", "low": "Low"},
        "unclassified": "Unclassified",
        "statuses": {
            "detected": "Detected",
            "triaged": "Triaged",
            "investigating": "Investigating",
            "mitigating": "Mitigating",
            "resolved": "Resolved",
            "closed": "Closed",
        },
        "alert_statuses": {"firing": "firing", "resolved": "resolved"},
        "fields": {
            "severity": "Severity",
            "status": "Status",
            "team": "Team",
            "services": "Services",
            "owner": "Owner",
            "started": "Started",
            "acknowledged_by": "Acknowledged by",
            "escalation": "Escalation",
        },
        "alerts": "Alerts · {firing} of {total} firing",
        "more": "… and {count} more",
        "runbooks": "Runbooks",
        "similar": "Similar incidents",
        "similar_resolved": "resolved {time}",
        "level": "Level {level}",
        "incident": "Incident",
        "open_incident": "Open incident",
        "approve": "Approve",
        "deny": "Deny",
        "time_format": "%Y-%m-%d %H:%M %Z",
        "units": {"d": "d", "h": "h", "min": "min", "s": "s"},
    },
    "de": {
        "severities": {"critical": "Kritisch", "high": "Hoch", "medium": "Mittel", "low": "Niedrig"},
        "unclassified": "Nicht eingestuft",
        "statuses": {
            "detected": "Erkannt",
            "triaged": "Eingestuft",
            "investigating": "In Untersuchung",
            "mitigating": "Gegenmaßnahmen laufen",
            "resolved": "Behoben",
            "closed": "Abgeschlossen",
        },
        "alert_statuses": {"firing": "aktiv", "resolved": "behoben"},
        "fields": {
            "severity": "Schweregrad",
            "status": "Status",
            "team": "Team",
            "services": "Dienste",
            "owner": "Zuständig",
            "started": "Beginn",
            "acknowledged_by": "Bestätigt von",
            "escalation": "Eskalation",
        },
        "alerts": "Alarme · {firing} von {total} aktiv",
        "more": "… und {count} weitere",
        "runbooks": "Runbooks",
        "similar": "Ähnliche Vorfälle",
        "similar_resolved": "behoben am {time}",
        "level": "Stufe {level}",
        "incident": "Vorfall",
        "open_incident": "Vorfall öffnen",
        "approve": "Freigeben",
        "deny": "Ablehnen",
        "time_format": "%d.%m.%Y, %H:%M %Z",
        "units": {"d": "Tg.", "h": "Std.", "min": "Min.", "s": "Sek."},
    },
}


@dataclass(slots=True)
class Message:
    """The inputs of one message, the values its templates see and the fields rendered so far."""

    channel: ir.Channel
    receiver: str
    context: Mapping[str, Any]
    ruleset: ir.Ruleset
    locales: tuple[str, ...]
    event: str
    texts: dict[str, Any]
    zone: datetime.tzinfo
    url: str | None
    template: ir.Template | None
    values: dict[str, Any] = field(default_factory=dict)
    rendered: dict[tuple[str, Escape], str] = field(default_factory=dict)

    @classmethod
    def prepare(
        cls,
        channel: ir.Channel,
        receiver: str,
        context: Mapping[str, Any],
        ruleset: ir.Ruleset,
        locale: str,
        event: str | None = None,
    ) -> Message:
        locales = _locale_chain(locale)
        texts = TEXTS[next(tag for tag in locales if tag in TEXTS)]
        zone = _zone(ruleset.settings.timezone)
        url = _incident_url(context["incident"], ruleset.settings)
        event = event or context["event"]
        # A channel's own template describes incidents; approval requests always use the shipped texts,
        # which show the operation and how to decide.
        template = None if event == "approval" else _find_template(channel, ruleset, context["incident"]["id"])
        message = cls(channel, receiver, context, ruleset, locales, event, texts, zone, url, template)
        message.values = _template_values(message)
        return message

    def as_root(self) -> Message:
        """Return this message as the incident's first message, with the incident as it is now."""
        root = dataclasses.replace(self, event="opened", values={}, rendered={})
        root.values = _template_values(root)
        return root

    @property
    def incident(self) -> Mapping[str, Any]:
        return self.context["incident"]

    @property
    def language(self) -> str:
        """Return `en` or `de`, the locales that the compiled Slack texts exist in."""
        return next((tag for tag in self.locales if tag in slack_blocks.LOCALES), "en")

    def field(self, name: str, escape: Escape = "plain") -> str:
        """Return the text of message field `name` (title, text, subject, body or summary), rendered once."""
        key = (name, escape)
        if key not in self.rendered:
            self.rendered[key] = self._render(name, escape)
        return self.rendered[key]

    def time(self, value: Any) -> str:
        """Return a point in time in the configured time zone and the locale's format, or empty text for None."""
        moment = as_datetime(value)
        return moment.astimezone(self.zone).strftime(self.texts["time_format"]) if moment else ""

    def _render(self, name: str, escape: Escape) -> str:
        template = self.template
        source = _template_source(template, name, self.locales) if template else None
        if source is not None:
            try:
                return render_text(source, self.values, escape=escape)
            except TemplateFailed as error:
                log.warning(
                    "template %s failed for field %s of incident %s; using the shipped text: %s",
                    template.name,
                    name,
                    self.incident["id"],
                    error,
                    extra={"incident_id": self.incident["id"], "template": template.name, "field": name, "err": str(error)},
                )
        return self._render_shipped(name, escape)

    def _render_shipped(self, name: str, escape: Escape) -> str:
        shipped = _SHIPPED_FIELDS[name]
        source = _shipped_template(shipped, self.locales)
        try:
            return render_text(source, self.values, escape=escape)
        except TemplateFailed as error:
            # NOTE: shipped templates read only values this module builds, so this is a bug in them.
            log.error(
                "shipped template %s.%s failed for incident %s: %s",
                shipped,
                self.locales[0],
                self.incident["id"],
                error,
                extra={"incident_id": self.incident["id"], "template": shipped, "field": name, "err": str(error)},
            )
            text = f"{self.incident['id']} {self.incident.get('title') or ''}".strip()
            return mrkdwn_escape(text) if escape == "mrkdwn" else text


def _find_template(channel: ir.Channel, ruleset: ir.Ruleset, incident_id: str) -> ir.Template | None:
    name = channel.template
    if name is None:
        return None
    found = next((template for template in ruleset.templates if template.name == name), None)
    if found is None:
        log.warning(
            "template %s of a %s channel is not declared; using the shipped text",
            name,
            channel.kind,
            extra={"incident_id": incident_id, "template": name},
        )
    return found


def _template_source(template: ir.Template, name: str, locales: tuple[str, ...]) -> str | None:
    """Return the rules' text for message field `name`: the first locale that defines one of its fields wins."""
    for tag in (*locales, "en"):
        texts = template.locales.get(tag, {})
        for candidate in _TEMPLATE_FIELDS[name]:
            if candidate in texts:
                return texts[candidate]
    return None


def _shipped_template(name: str, locales: tuple[str, ...]) -> str:
    for tag in locales:
        source = shipped_source(f"{name}.{tag}")
        if source is not None:
            return source
    raise AssertionError(f"no shipped template {name}.en")


def _locale_chain(locale: str) -> tuple[str, ...]:
    language = locale.split("-")[0].split("_")[0].lower()
    return tuple(dict.fromkeys([locale, language, "en"]))


@functools.cache
def _zone(name: str) -> datetime.tzinfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        log.warning("unknown time zone %r; showing times in UTC", name)
        return datetime.UTC


def _incident_url(incident: Mapping[str, Any], settings: ir.Settings) -> str | None:
    """Return the incident's page: its own URL, or `<incident_url>/incidents/<id>` as the Slack artifact links it."""
    url = incident.get("url")
    if not url and settings.incident_url:
        url = f"{settings.incident_url.rstrip('/')}/incidents/{incident['id']}"
    return url if is_web_url(url) else None


def is_web_url(url: Any) -> bool:
    """Return whether `url` is an absolute http or https URL, the only links messages show."""
    return isinstance(url, str) and url.startswith(("https://", "http://"))


def as_datetime(value: Any) -> datetime.datetime | None:
    """Return `value` as an aware datetime (ISO 8601 text is parsed, naive times are UTC), or None."""
    if isinstance(value, str):
        try:
            value = datetime.datetime.fromisoformat(value)
        except ValueError:
            return None
    if not isinstance(value, datetime.datetime):
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=datetime.UTC)


def _format_duration(seconds: float, units: Mapping[str, str]) -> str:
    """Return a duration as its two largest units, such as `2 h 5 min` or `3 Tg. 4 Std.`."""
    remaining = max(int(seconds), 0)
    days, remaining = divmod(remaining, 86_400)
    hours, remaining = divmod(remaining, 3_600)
    minutes, secs = divmod(remaining, 60)
    parts = [(days, "d"), (hours, "h"), (minutes, "min"), (secs, "s")]
    first = next((index for index, (amount, _) in enumerate(parts) if amount), len(parts) - 1)
    words = [f"{amount} {units[unit]}" for amount, unit in parts[first : first + 2] if amount]
    return " ".join(words) or f"0 {units['s']}"


def _template_values(message: Message) -> dict[str, Any]:
    """Return the variables of templates, as the language reference lists them, plus display texts of the incident."""
    context = message.context
    incident = message.incident

    # `label` and `annotation` are those of the first firing alert, or of the first alert when none fires.
    alerts = list(context.get("alerts") or [])
    first = next((alert for alert in alerts if alert.get("status") == "firing"), alerts[0] if alerts else {})
    labels = first.get("labels") or {}
    annotations = first.get("annotations") or {}

    services = list(context.get("services") or [])
    names = list(incident.get("services") or [])
    service: dict[str, Any] = {}
    if services:
        service = services[0]
    elif names:
        service = {"name": names[0]}

    settings = message.ruleset.settings
    now = as_datetime(context.get("now")) or datetime.datetime.now(datetime.UTC)
    return {
        "event": message.event,
        "incident": _incident_view(message, incident, annotations, now),
        "alert": first,
        "alerts": alerts,
        "label": labels,
        "labels": labels,
        "annotation": annotations,
        "annotations": annotations,
        "service": service,
        "services": services,
        "owner": context.get("owner"),
        "runbooks": list(context.get("runbooks") or []),
        "similar": list(context.get("similar") or []),
        "escalation": context.get("escalation"),
        "approval": _approval_view(message, context.get("approval")),
        "receiver": message.receiver,
        "settings": {
            "locale": settings.locale,
            "timezone": settings.timezone,
            "external_url": settings.external_url,
            "incident_url": settings.incident_url,
            "daemon_url": settings.daemon_url,
        },
        "now": now,
        "url": message.url or "",
    }


def _approval_view(message: Message, approval: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Return a runbook approval request with its timeout as text in the message's zone and format."""
    if approval is None:
        return None
    return {**approval, "timeout": message.time(approval.get("timeout_at"))}


def _incident_view(
    message: Message, incident: Mapping[str, Any], annotations: Mapping[str, Any], now: datetime.datetime
) -> dict[str, Any]:
    """Return the incident with display texts added: names in the locale, times in the configured zone, its age."""
    texts = message.texts
    status = incident.get("status")
    is_open = status not in ENDED
    created = as_datetime(incident.get("created_at"))
    resolved = None if is_open else as_datetime(incident.get("resolved_at"))
    age = ((resolved or now) - created).total_seconds() if created else 0
    names = list(incident.get("services") or [])
    return {
        **incident,
        "service": names[0] if names else "",
        "summary": annotations.get("summary") or annotations.get("description") or "",
        "severity_name": texts["severities"].get(incident.get("severity"), texts["unclassified"]),
        "status_name": texts["statuses"].get(status, status or ""),
        "open": is_open,
        "started": message.time(created),
        "started_unix": int(created.timestamp()) if created else None,
        "acknowledged": message.time(incident.get("acknowledged_at")),
        "resolved": message.time(resolved),
        "age": _format_duration(age, texts["units"]),
        "url": message.url or "",
    }


# ---------------------------------------------------------------- rendering one template


class TemplateFailed(Exception):
    """A template did not compile, raised an error, or exceeded its render budget."""


@dataclass(slots=True)
class _Budget:
    steps: int
    deadline: float

    def spend(self) -> None:
        self.steps -= 1
        if self.steps < 0:
            raise TemplateFailed(f"template exceeded the render budget of {MAX_STEPS} steps")
        if time.monotonic() > self.deadline:
            raise TemplateFailed(f"template timed out after {RENDER_TIMEOUT_S} s")


_budget: contextvars.ContextVar[_Budget] = contextvars.ContextVar("irules_render_budget")


def _spend() -> None:
    _budget.get().spend()


def render_text(source: str, values: Mapping[str, Any], *, escape: Escape = "plain", limit: int = MAX_FIELD_CHARS) -> str:
    """Render `source` with `values` and return the output, stripped and cut to `limit` characters.

    Example:
        render_text("{{ incident.id }} {{ label.alertname }}", values)

    Raises:
        TemplateFailed: the source does not compile, rendering raised an error,
            or the render exceeded `MAX_STEPS` or `RENDER_TIMEOUT_S`.
    """
    if len(source) > MAX_SOURCE_CHARS:
        raise TemplateFailed(f"template has {len(source)} characters; at most {MAX_SOURCE_CHARS} are rendered")
    token = _budget.set(_Budget(MAX_STEPS, time.monotonic() + RENDER_TIMEOUT_S))
    try:
        template = _compile(escape, source)
        pieces: list[str] = []
        size = 0
        with contextlib.closing(template.generate(dict(values))) as stream:
            for piece in stream:
                _spend()
                pieces.append(piece)
                size += len(piece)
                if size > limit:
                    break
    except TemplateFailed:
        raise
    # Any failure of a template, whatever its type, means the shipped text is used instead.
    except Exception as error:
        raise TemplateFailed(f"{type(error).__name__}: {error}") from error
    finally:
        _budget.reset(token)
    return cut("".join(pieces).strip(), limit)


def shipped_source(name: str) -> str | None:
    """Return the text of the shipped template `name` (such as `title.de`), or None when there is none."""
    return _shipped(name)


@functools.cache
def _shipped(name: str) -> str | None:
    path = _TEMPLATES / f"{name}.j2"
    return path.read_text(encoding="utf-8") if path.is_file() else None


def cut(text: str, limit: int) -> str:
    """Return `text` cut to at most `limit` characters, ending with an ellipsis when it was cut."""
    if len(text) <= limit:
        return text
    return text[: max(limit - 1, 0)].rstrip() + "…"


def mrkdwn_escape(text: str) -> str:
    """Escape the three characters that Slack's mrkdwn reserves, so text can neither mention anyone nor make a link."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# ---------------------------------------------------------------- the sandbox


class _BoundedSandbox(ImmutableSandboxedEnvironment):
    """Jinja's immutable sandbox with a step budget on calls, lookups, operators and filters, and size checks on their arguments.

    Immutable, because the values are the caller's context: a template must not
    be able to `update` a label that the next channel's message shows.
    """

    intercepted_binops = frozenset({"+", "*", "**", "%"})

    def __init__(self, **options: Any) -> None:
        super().__init__(undefined=ChainableUndefined, **options)
        self.filters = {name: _guarded_filter(name, function) for name, function in self.filters.items()}
        self.filters[_COUNTED] = _counted
        self.filters[_JOINED] = _joined

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        _spend()
        _check_arguments(args, kwargs)
        return SandboxedEnvironment.call(__self, __context, __obj, *args, **kwargs)

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        _spend()
        _check_operands(operator, left, right)
        result = self.binop_table[operator](left, right)
        if isinstance(result, int) and result.bit_length() > MAX_INTEGER_BITS:
            raise TemplateFailed(f"a number in the template exceeds {MAX_INTEGER_BITS} bits")
        return result

    def getattr(self, obj: Any, attribute: str) -> Any:
        _spend()
        # Keys come before methods, so a label called `items` or `values` is the label.
        if isinstance(obj, dict) and attribute in obj:
            return obj[attribute]
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        _spend()
        return super().getitem(obj, argument)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        wrapper = super().wrap_str_format(value)
        if wrapper is not None:
            _check_format(value.__self__)
        return wrapper


class _BudgetedLoops(NodeTransformer):
    """Route every `for` loop through a filter that spends a step per item, and every `~` through a size check.

    Without this, nested loops over small lists run unchecked, and a `~` in a
    loop can double a string each iteration.
    """

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        node.iter = nodes.Filter(node.iter, _COUNTED, [], [], None, None, lineno=node.lineno)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        joined = nodes.List(list(node.nodes), lineno=node.lineno)
        return nodes.Filter(joined, _JOINED, [], [], None, None, lineno=node.lineno)


@functools.cache
def _environment(escape: Escape) -> _BoundedSandbox:
    if escape == "html":
        return _BoundedSandbox(autoescape=True, finalize=_empty_none)
    if escape == "mrkdwn":
        return _BoundedSandbox(autoescape=False, finalize=_mrkdwn_output)
    return _BoundedSandbox(autoescape=False, finalize=_empty_none)


@functools.lru_cache(maxsize=512)
def _compile(escape: Escape, source: str) -> Any:
    environment = _environment(escape)
    tree = environment.parse(source)
    tree = _BudgetedLoops().visit(tree)
    tree.set_environment(environment)
    return environment.from_string(tree)


def _empty_none(value: Any) -> Any:
    return "" if value is None else value


def _mrkdwn_output(value: Any) -> str:
    return mrkdwn_escape("" if value is None else str(value))


# Both internal filters take the context, so Jinja never folds them into constants at compile time.
@pass_context
def _counted(context: Context, items: Iterable[Any]) -> Iterator[Any]:
    for item in items:
        _spend()
        yield item


@pass_context
def _joined(context: Context, items: list[Any]) -> str:
    _spend()
    size = sum(len(item) for item in items if isinstance(item, str))
    if size > MAX_VALUE_SIZE:
        raise TemplateFailed(f"a `~` in the template builds {size} characters; at most {MAX_VALUE_SIZE} are allowed")
    join = markup_join if context.eval_ctx.autoescape else str_join
    return join(items)


def _guarded_filter(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a built-in filter so it spends a step, rejects huge arguments and refuses huge results."""
    # Filters marked `pass_context` and the like get that object first, then the value.
    value_index = 1 if getattr(function, "jinja_pass_arg", None) is not None else 0

    @functools.wraps(function)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        _spend()
        _check_arguments(args[value_index + 1 :], kwargs)
        if name == "format" and len(args) > value_index and isinstance(args[value_index], str):
            _check_format(args[value_index])
        result = function(*args, **kwargs)
        _check_size(result)
        return result

    return guarded


def _check_arguments(args: Iterable[Any], kwargs: Mapping[str, Any]) -> None:
    for value in [*args, *kwargs.values()]:
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and abs(value) > MAX_ARGUMENT:
            raise TemplateFailed(f"argument {value!r} exceeds {MAX_ARGUMENT}")


def _check_operands(operator: str, left: Any, right: Any) -> None:
    if operator == "**" and isinstance(right, int | float) and abs(right) > MAX_EXPONENT:
        raise TemplateFailed(f"exponent {right!r} exceeds {MAX_EXPONENT}")
    if operator == "%" and isinstance(left, str):
        _check_format(left)
    if operator == "*":
        for sequence, count in ((left, right), (right, left)):
            if isinstance(count, int) and _size(sequence) * count > MAX_VALUE_SIZE:
                raise TemplateFailed(f"a `*` in the template builds more than {MAX_VALUE_SIZE} items")
    if operator == "+" and _size(left) + _size(right) > MAX_VALUE_SIZE:
        raise TemplateFailed(f"a `+` in the template builds more than {MAX_VALUE_SIZE} items")


def _check_format(text: str) -> None:
    if _WIDE_FORMAT.search(text):
        raise TemplateFailed("a format string in the template contains a number of seven or more digits")


def _check_size(value: Any) -> None:
    if _size(value) > MAX_VALUE_SIZE:
        raise TemplateFailed(f"a filter in the template built {_size(value)} items; at most {MAX_VALUE_SIZE} are allowed")


def _size(value: Any) -> int:
    return len(value) if isinstance(value, str | list | tuple | dict | Markup) else 0
