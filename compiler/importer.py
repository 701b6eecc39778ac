"""Convert an existing Alertmanager configuration into readable .irules sources.

The YAML is read the way Alertmanager (Go, yaml.v2 decoding into strings)
reads it: unquoted `NO`, `yes`, `0123` and `13:00` stay strings. Matchers in
all three forms (`match`, `match_re`, `matchers`) become .irules matchers with
the same meaning, receivers become receivers, and every secret becomes a
`secret("NAME")` reference: no secret value is ever written to the output.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from compiler import ir
from compiler.am_matchers import parse_matchers

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(-[A-Za-z0-9_]+)*$")
_TRUE = {"y", "yes", "true", "on"}


class ImportError_(ValueError):
    """The configuration cannot be imported; the message says where and why."""


class _StringLoader(yaml.SafeLoader):
    """A YAML loader that keeps every scalar a string, as Go does for string fields."""


_StringLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag == "tag:yaml.org,2002:null"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def load_alertmanager_yaml(text: str) -> dict[str, Any]:
    document = yaml.load(text, Loader=_StringLoader)
    if not isinstance(document, dict):
        raise ImportError_("the file is not an Alertmanager configuration (expected a mapping at the top)")
    return document


@dataclass
class ImportResult:
    """The generated sources, the secrets the user must provide, and notes on what was not converted."""

    text: str
    secrets: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    renamed: dict[str, str] = field(default_factory=dict)


def import_alertmanager(text: str) -> ImportResult:
    """Convert Alertmanager YAML into one .irules file.

    Raises:
        ImportError_: the YAML is not an Alertmanager configuration or holds a bad matcher.
    """
    document = load_alertmanager_yaml(text)
    converter = _Converter()
    return converter.convert(document)


def _quote(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
    return f'"{escaped}"'


def _is_true(value: Any) -> bool:
    return str(value).strip().lower() in _TRUE


class _Converter:
    def __init__(self) -> None:
        self.result = ImportResult(text="")
        self.lines: list[str] = []

    # ------------------------------------------------------------ helpers

    def name(self, raw: str) -> str:
        """Return an .irules name for an Alertmanager name, renaming it when it is not an identifier."""
        if _IDENT.match(raw):
            return raw
        cleaned = re.sub(r"[^A-Za-z0-9_]+", "-", raw).strip("-") or "unnamed"
        if not cleaned[0].isalpha() and cleaned[0] != "_":
            cleaned = "r-" + cleaned
        if raw not in self.result.renamed:
            self.result.renamed[raw] = cleaned
            self.result.notes.append(f"renamed `{raw}` to `{cleaned}`: .irules names are identifiers")
        return cleaned

    def secret(self, hint: str, path: str | None = None) -> str:
        base = path.rsplit("/", 1)[-1] if path else hint
        secret_name = re.sub(r"[^A-Z0-9]+", "_", base.upper()).strip("_") or "SECRET"
        if not secret_name[0].isalpha():
            secret_name = "S_" + secret_name
        if secret_name not in self.result.secrets:
            self.result.secrets.append(secret_name)
        return f'secret("{secret_name}")'

    def emit(self, line: str = "") -> None:
        self.lines.append(line)

    # ------------------------------------------------------------ document

    def convert(self, document: dict[str, Any]) -> ImportResult:
        self.settings(document.get("global") or {})
        route = document.get("route")
        if not isinstance(route, dict):
            raise ImportError_("the configuration has no `route`")
        self.defaults(route)
        for receiver in document.get("receivers") or []:
            self.receiver(receiver)
        self.route(route)
        for rule in document.get("inhibit_rules") or []:
            self.inhibit(rule)
        for interval in (document.get("time_intervals") or []) + (document.get("mute_time_intervals") or []):
            self.time_interval(interval)
        self.result.text = "\n".join(self.lines).rstrip("\n") + "\n"
        return self.result

    def settings(self, section: dict[str, Any]) -> None:
        items: list[str] = []
        if "resolve_timeout" in section:
            items.append(f"resolve_timeout {section['resolve_timeout']}")
        if "smtp_smarthost" in section:
            smtp = f"smtp {_quote(str(section['smtp_smarthost']))}"
            if "smtp_from" in section:
                smtp += f" from {_quote(str(section['smtp_from']))}"
            if "smtp_auth_username" in section:
                smtp += f" username {_quote(str(section['smtp_auth_username']))}"
            if "smtp_auth_password" in section or "smtp_auth_password_file" in section:
                smtp += " password " + self.secret("SMTP_AUTH_PASSWORD", section.get("smtp_auth_password_file"))
            if "smtp_require_tls" in section:
                smtp += f" require_tls {'true' if _is_true(section['smtp_require_tls']) else 'false'}"
            items.append(smtp)
        if "slack_api_url" in section or "slack_api_url_file" in section:
            items.append("slack_api_url " + self.secret("SLACK_API_URL", section.get("slack_api_url_file")))
        for key in sorted(section):
            if key not in {
                "resolve_timeout",
                "smtp_smarthost",
                "smtp_from",
                "smtp_auth_username",
                "smtp_auth_password",
                "smtp_auth_password_file",
                "smtp_require_tls",
                "slack_api_url",
                "slack_api_url_file",
            }:
                self.result.notes.append(f"global setting `{key}` was not converted")
        if items:
            self.emit("settings {")
            for item in items:
                self.emit(f"  {item}")
            self.emit("}")
            self.emit()

    def defaults(self, root: dict[str, Any]) -> None:
        items = self.timing(root)
        if items:
            self.emit("defaults {")
            for item in items:
                self.emit(f"  {item}")
            self.emit("}")
            self.emit()

    def timing(self, route: dict[str, Any]) -> list[str]:
        items = []
        if "group_by" in route:
            labels = ", ".join(
                _quote(label) if label == "..." or not _IDENT.match(label) else label for label in route["group_by"] or []
            )
            items.append(f"group_by [{labels}]")
        for key in ("group_wait", "group_interval", "repeat_interval"):
            if key in route:
                items.append(f"{key} {route[key]}")
        return items

    # ------------------------------------------------------------ receivers

    def receiver(self, receiver: dict[str, Any]) -> None:
        raw_name = str(receiver.get("name", ""))
        lines: list[str] = []
        for config in receiver.get("email_configs") or []:
            lines.append(f"email {_quote(str(config.get('to', '')))}" + self.resolved(config))
        for config in receiver.get("slack_configs") or []:
            line = "slack" + (f" {_quote(str(config['channel']))}" if "channel" in config else "")
            if "api_url" in config or "api_url_file" in config:
                line += " url " + self.secret(f"{raw_name}_SLACK_API_URL", config.get("api_url_file"))
            lines.append(line + self.resolved(config))
        for config in receiver.get("pagerduty_configs") or []:
            key_file = config.get("routing_key_file") or config.get("service_key_file")
            lines.append("pagerduty key " + self.secret(f"{raw_name}_PAGERDUTY_KEY", key_file) + self.resolved(config))
        for config in receiver.get("webhook_configs") or []:
            if "url_file" in config:
                lines.append("webhook url " + self.secret(f"{raw_name}_WEBHOOK_URL", config["url_file"]) + self.resolved(config))
            else:
                lines.append(f"webhook {_quote(str(config.get('url', '')))}" + self.resolved(config))
        for key in ("msteams_configs", "msteamsv2_configs"):
            for config in receiver.get(key) or []:
                lines.append(
                    "teams url "
                    + self.secret(f"{raw_name}_TEAMS_WEBHOOK_URL", config.get("webhook_url_file"))
                    + self.resolved(config)
                )
        for key in sorted(receiver):
            if key.endswith("_configs") and key not in {
                "email_configs",
                "slack_configs",
                "pagerduty_configs",
                "webhook_configs",
                "msteams_configs",
                "msteamsv2_configs",
            }:
                self.result.notes.append(f"receiver `{raw_name}`: `{key}` has no .irules channel and was not converted")
        self.emit(f"receiver {self.name(raw_name)} {{")
        for line in lines:
            self.emit(f"  {line}")
        self.emit("}")
        self.emit()

    @staticmethod
    def resolved(config: dict[str, Any]) -> str:
        if "send_resolved" not in config:
            return ""
        return f" send_resolved {'true' if _is_true(config['send_resolved']) else 'false'}"

    # ------------------------------------------------------------ routes

    def matchers(self, route: dict[str, Any], prefix: str = "") -> list[ir.Matcher]:
        found: list[ir.Matcher] = []
        for name, value in (route.get(f"{prefix}match") or {}).items():
            found.append(ir.Matcher(name=str(name), op=ir.MatchOp.EQUAL, value="" if value is None else str(value)))
        for name, value in (route.get(f"{prefix}match_re") or {}).items():
            found.append(ir.Matcher(name=str(name), op=ir.MatchOp.REGEX, value="" if value is None else str(value)))
        for entry in route.get(f"{prefix}matchers") or []:
            found.extend(parse_matchers(str(entry)))
        return found

    @staticmethod
    def matcher_text(matcher: ir.Matcher) -> str:
        label = matcher.name if _IDENT.match(matcher.name) and "-" not in matcher.name else _quote(matcher.name)
        return f"{label} {matcher.op.value} {_quote(matcher.value)}"

    def route(self, root: dict[str, Any]) -> None:
        self.emit("route {")
        if "receiver" in root:
            self.emit(f"  receiver {self.name(str(root['receiver']))}")
        for child in root.get("routes") or []:
            self.child_route(child, "  ")
        self.emit("}")
        self.emit()

    def child_route(self, route: dict[str, Any], indent: str) -> None:
        matchers = self.matchers(route)
        head = "match " + ", ".join(self.matcher_text(matcher) for matcher in matchers) if matchers else "route"
        if "receiver" in route:
            head += f" -> {self.name(str(route['receiver']))}"
        body: list[str] = []
        if _is_true(route.get("continue", "false")):
            body.append("continue")
        body.extend(self.timing(route))
        if route.get("mute_time_intervals"):
            body.append("mute_during [" + ", ".join(self.name(str(name)) for name in route["mute_time_intervals"]) + "]")
        if route.get("active_time_intervals"):
            body.append("active_during [" + ", ".join(self.name(str(name)) for name in route["active_time_intervals"]) + "]")
        children = route.get("routes") or []
        if not body and not children:
            self.emit(indent + head)
            return
        self.emit(indent + head + " {")
        for item in body:
            self.emit(indent + "  " + item)
        for child in children:
            self.child_route(child, indent + "  ")
        self.emit(indent + "}")

    # ------------------------------------------------------------ inhibit and time intervals

    def inhibit(self, rule: dict[str, Any]) -> None:
        source = self.matchers(rule, "source_")
        target = self.matchers(rule, "target_")
        line = "inhibit " + ", ".join(map(self.matcher_text, source)) + " silences " + ", ".join(map(self.matcher_text, target))
        if not source or not target:
            self.result.notes.append("an inhibit rule without source or target matchers was not converted")
            return
        if rule.get("equal"):
            labels = ", ".join(label if _IDENT.match(label) and "-" not in label else _quote(label) for label in rule["equal"])
            line += f" on [{labels}]"
        self.emit(line)
        self.emit()

    def time_interval(self, interval: dict[str, Any]) -> None:
        self.emit(f"time_interval {self.name(str(interval.get('name', '')))} {{")
        for period in interval.get("time_intervals") or []:
            self.emit("  period {")
            if period.get("times"):
                ranges = ", ".join(_quote(f"{item['start_time']}-{item['end_time']}") for item in period["times"])
                self.emit(f"    times [{ranges}]")
            for key in ("weekdays", "days_of_month", "months", "years"):
                if period.get(key):
                    self.emit(f"    {key} [" + ", ".join(_quote(str(value)) for value in period[key]) + "]")
            if period.get("location"):
                self.emit(f"    location {_quote(str(period['location']))}")
            self.emit("  }")
        self.emit("}")
        self.emit()
