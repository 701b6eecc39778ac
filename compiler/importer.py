"""Convert an existing Alertmanager configuration into readable .irules sources.

The YAML is read the way Alertmanager 0.25 (Go, yaml.v2 decoding into
string fields) reads it: unquoted `NO`, `yes`, `0123` and `13:00` stay
strings, and a key given twice is an error. The result is a few formatted
files (settings, receivers, routes, inhibit rules, time intervals) that mean
what the YAML meant:

- matchers in every form (`match`, `match_re`, `matchers`, brace lists) keep
  Alertmanager's parsing, including its quoting rules;
- receivers keep their email, Slack, PagerDuty, webhook and Teams channels,
  and every secret, written inline or as a `*_file`, becomes a
  `secret("NAME")` reference. No secret value is written or put in a message;
- names that are not .irules identifiers are renamed, and the result lists the new names;
- whatever has no .irules equivalent (other receiver kinds, `http_config`,
  notification texts, ...) is listed in `notes`, never dropped silently.

Input that Alertmanager would reject and that .irules cannot even express
(a bad matcher, matchers on the root route, a time range that ends before
it starts) raises `ImportFailed`. Other mistakes, such as an undefined
receiver, are converted as written, so that `irules check` reports them with
a position in the generated files.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from compiler import ir
from compiler.am_matchers import MatcherSyntaxError, parse_matchers
from compiler.errors import IrulesError
from compiler.fmt import format_source, quote

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:-[A-Za-z0-9_]+)*")
_TRUE = {"y", "yes", "true", "on"}
# A Prometheus duration (`model.ParseDuration`): units from years down to milliseconds, in this order.
_DURATION = re.compile(r"(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?")
# Alertmanager's clock times: `HH:MM` from 00:00 to 23:59, and 24:00.
_CLOCK = re.compile(r"(?:[01][0-9]|2[0-3]):[0-5][0-9]|24:00")
_SUPPORTED_VERSION = (0, 25)

_TOP_LEVEL_KEYS = {"global", "route", "receivers", "inhibit_rules", "time_intervals", "mute_time_intervals", "templates"}
_GLOBAL_CONVERTED = {
    "resolve_timeout",
    "smtp_smarthost",
    "smtp_from",
    "smtp_auth_username",
    "smtp_auth_password",
    "smtp_auth_password_file",
    "smtp_require_tls",
    "slack_api_url",
    "slack_api_url_file",
}
_ROUTE_KEYS = {
    "receiver",
    "group_by",
    "continue",
    "match",
    "match_re",
    "matchers",
    "group_wait",
    "group_interval",
    "repeat_interval",
    "mute_time_intervals",
    "active_time_intervals",
    "routes",
}
_TIMING_KEYS = ("group_wait", "group_interval", "repeat_interval")
_PERIOD_LISTS = ("weekdays", "days_of_month", "months", "years")

# Per receiver kind: the keys a channel keeps. The other keys of a config are reported.
_CHANNEL_KEYS = {
    "email_configs": {"to", "send_resolved"},
    "slack_configs": {"channel", "api_url", "api_url_file", "send_resolved"},
    "pagerduty_configs": {"routing_key", "routing_key_file", "service_key", "service_key_file", "send_resolved"},
    "webhook_configs": {"url", "url_file", "send_resolved"},
    "msteams_configs": {"webhook_url", "webhook_url_file", "send_resolved"},
    "msteamsv2_configs": {"webhook_url", "webhook_url_file", "send_resolved"},
}

FILE_ORDER = ("settings.irules", "receivers.irules", "routes.irules", "inhibit.irules", "time_intervals.irules")


class ImportFailed(IrulesError, ValueError):
    """Raised when the configuration cannot be imported. The message names the place and the reason."""


@dataclass(frozen=True, slots=True)
class RequiredSecret:
    """A secret the imported rules reference: its name and where its value was in the old configuration."""

    name: str
    origin: str


@dataclass
class ImportResult:
    """The generated files, the secrets the user must provide, and notes on what changed or was left out."""

    files: dict[str, str] = field(default_factory=dict)
    secrets: list[RequiredSecret] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    # Old name -> new name, for names that are not .irules identifiers.
    renamed: dict[str, str] = field(default_factory=dict)
    renamed_time_intervals: dict[str, str] = field(default_factory=dict)

    @property
    def text(self) -> str:
        """Return all files as one source text, for checking them as one in-memory file."""
        return "\n".join(self.files[name] for name in FILE_ORDER if name in self.files)


def import_alertmanager(text: str) -> ImportResult:
    """Convert Alertmanager YAML into formatted .irules files.

    Example:
        result = import_alertmanager(Path("alertmanager.yml").read_text())
        for name, source in result.files.items(): ...

    Raises:
        ImportFailed: the text is not an Alertmanager configuration, or contains something
            Alertmanager rejects and .irules cannot express (such as a bad matcher).
    """
    document = load_alertmanager_yaml(text)
    return _Converter(document).convert()


# ---------------------------------------------------------------- YAML


class _StringLoader(yaml.SafeLoader):
    """A YAML loader that keeps every scalar a string, as Go does for string fields, and rejects repeated keys."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, str) and key in seen:
                line = key_node.start_mark.line + 1
                raise ImportFailed(f"invalid YAML: key `{key}` is given twice in one mapping (line {line})")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


_StringLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag == "tag:yaml.org,2002:null"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def load_alertmanager_yaml(text: str) -> dict[str, Any]:
    """Parse Alertmanager YAML with every scalar kept as a string.

    Raises:
        ImportFailed: the text is not YAML, or its top level is not a mapping.
    """
    try:
        document = yaml.load(text, Loader=_StringLoader)
    except yaml.MarkedYAMLError as error:
        # Only the problem and its position: the YAML library's excerpt of the
        # source line could show a secret written on that line.
        mark = error.problem_mark
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        raise ImportFailed(f"invalid YAML: {error.problem or error.context}{where}") from None
    except yaml.YAMLError as error:
        raise ImportFailed(f"invalid YAML: {type(error).__name__}") from None
    if not isinstance(document, dict):
        raise ImportFailed("not an Alertmanager configuration: the top level must be a mapping with a `route`")
    return document


# ---------------------------------------------------------------- small converters


def _kind_of(value: object) -> str:
    if value is None:
        return "empty"
    return {dict: "a mapping", list: "a list", str: "a string"}.get(type(value), type(value).__name__)


def _mapping(value: object, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ImportFailed(f"`{where}` must be a mapping, not {_kind_of(value)}")
    return value


def _list(value: object, where: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ImportFailed(f"`{where}` must be a list, not {_kind_of(value)}")
    return value


def _text(value: object, where: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ImportFailed(f"`{where}` must be a string, not {_kind_of(value)}")
    return value


def _is_true(value: object) -> bool:
    return str(value).strip().lower() in _TRUE


def _boolean(value: object) -> str:
    return "true" if _is_true(value) else "false"


def _duration(value: object, where: str) -> str:
    """Return a Prometheus duration as an .irules duration. Years become days, 1y being 365d as in Prometheus."""
    text = _text(value, where).strip()
    if text == "0":
        return "0s"
    match = _DURATION.fullmatch(text)
    if not text or match is None:
        raise ImportFailed(f"`{where}`: not a valid duration string: {text!r}")
    years = match.group(1)
    if years is None:
        return text
    days = int(years) * 365 + int(match.group(3) or 0)
    units = zip(("w", "d", "h", "m", "s", "ms"), (match.group(2), str(days), *match.groups()[3:]), strict=True)
    return "".join(f"{count}{unit}" for unit, count in units if count not in (None, "0"))


def label_text(name: str) -> str:
    """Return a label name as .irules writes it: bare when it is an .irules name, else quoted.

    A name with a hyphen stays bare, so that `irules check` reports it as the
    invalid label name it is for Alertmanager 0.25.
    """
    return name if _IDENT.fullmatch(name) else quote(name)


def matcher_text(matcher: ir.Matcher) -> str:
    return f"{label_text(matcher.name)} {matcher.op.value} {quote(matcher.value)}"


def _clock_minutes(text: str) -> int | None:
    if not _CLOCK.fullmatch(text):
        return None
    hours, minutes = text.split(":")
    return int(hours) * 60 + int(minutes)


@dataclass(frozen=True, slots=True)
class _ChannelSource:
    """One entry of a receiver's `*_configs` list and where it sits, for messages."""

    config: dict[str, Any]
    key: str
    receiver: str
    where: str
    path: str


class _Names:
    """Map names of one kind to .irules identifiers: identifiers stay, others get a unique new name."""

    def __init__(self, kind: str, declared: list[str], notes: list[str]) -> None:
        self.kind = kind
        self.renamed: dict[str, str] = {}
        self._used_names = {name for name in declared if _IDENT.fullmatch(name)}
        self._notes = notes
        for name in declared:
            self.get(name)

    def get(self, raw: str) -> str:
        if _IDENT.fullmatch(raw):
            return raw
        if raw not in self.renamed:
            self.renamed[raw] = self._new_name(raw)
            self._notes.append(f"renamed {self.kind} `{raw}` to `{self.renamed[raw]}`, because .irules names are identifiers")
        return self.renamed[raw]

    def _new_name(self, raw: str) -> str:
        base = re.sub(r"[^A-Za-z0-9_]+", "-", raw).strip("-")
        if not base or not (base[0].isalpha() or base[0] == "_"):
            base = f"{self.kind.replace(' ', '-')}-{base}".rstrip("-")
        candidate, number = base, 2
        while candidate in self._used_names:
            candidate, number = f"{base}-{number}", number + 1
        self._used_names.add(candidate)
        return candidate


# ---------------------------------------------------------------- the converter


class _Converter:
    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self.result = ImportResult()
        self.version = _SUPPORTED_VERSION
        self.secret_origins: dict[str, str] = {}
        self.secret_files: dict[str, str] = {}
        self.global_slack_url: str | None = None

    def note(self, text: str) -> None:
        self.result.notes.append(text)

    def convert(self) -> ImportResult:
        document = self.document
        for key in sorted(set(document) - _TOP_LEVEL_KEYS, key=str):
            self.note(f"top-level key `{key}` is not an Alertmanager 0.25 setting and was ignored")
        if document.get("templates"):
            self.note("`templates` (Go notification templates) were not converted; declare `template` blocks instead")
        route = document.get("route")
        if not isinstance(route, dict):
            raise ImportFailed("not an Alertmanager configuration: `route` is missing or not a mapping")

        receivers = _list(document.get("receivers"), "receivers")
        intervals = self._time_interval_entries()
        self.receiver_names = _Names("receiver", self._declared_names(receivers, "receivers"), self.result.notes)
        self.interval_names = _Names("time interval", [name for name, _, _ in intervals], self.result.notes)

        # Settings first: a Slack channel without its own URL uses the global one.
        settings = self.settings_items(_mapping(document.get("global"), "global"))
        sections = {
            "receivers.irules": [self.receiver(entry, index) for index, entry in enumerate(receivers)],
            "routes.irules": [self.root_route(route)],
            "inhibit.irules": [
                self.inhibit(rule, index) for index, rule in enumerate(_list(document.get("inhibit_rules"), "inhibit_rules"))
            ],
            "time_intervals.irules": [self.time_interval(*entry) for entry in intervals],
        }
        if self.version > _SUPPORTED_VERSION:
            version = ".".join(map(str, self.version))
            self.note(f"the configuration uses features of Alertmanager {version}; `alertmanager_version` is set to it")
            settings.append(f'alertmanager_version "{version}"')
        settings_block = ["settings {\n" + "\n".join(settings) + "\n}"] if settings else []
        sections["settings.irules"] = settings_block + self.defaults(route)

        for name in FILE_ORDER:
            blocks = [block for block in sections[name] if block]
            if blocks:
                self.result.files[name] = format_source("\n\n".join(blocks) + "\n", name)
        self.result.renamed = self.receiver_names.renamed
        self.result.renamed_time_intervals = self.interval_names.renamed
        return self.result

    @staticmethod
    def _declared_names(entries: list[Any], where: str) -> list[str]:
        names = []
        for index, entry in enumerate(entries):
            entry = _mapping(entry, f"{where}[{index}]")
            if entry.get("name") in (None, ""):
                raise ImportFailed(f"`{where}[{index}]` has no `name`")
            names.append(_text(entry["name"], f"{where}[{index}].name"))
        return names

    def _time_interval_entries(self) -> list[tuple[str, dict[str, Any], str]]:
        entries = []
        for key in ("time_intervals", "mute_time_intervals"):
            listed = _list(self.document.get(key), key)
            if key == "mute_time_intervals" and listed:
                self.note("the deprecated top-level `mute_time_intervals` became `time_interval` declarations")
            for index, (name, entry) in enumerate(zip(self._declared_names(listed, key), listed, strict=True)):
                entries.append((name, entry, f"{key}[{index}]"))
        return entries

    # ------------------------------------------------------------ secrets

    def secret(self, hint: str, origin: str, path: object = None) -> str:
        """Return a `secret("NAME")` reference. A secret read from a `*_file` is named after that file."""
        if path is not None:
            path = str(path)
            if path in self.secret_files:
                return f'secret("{self.secret_files[path]}")'
            hint = path.rstrip("/").rsplit("/", 1)[-1]
            origin = f"the file `{path}` ({origin})"
        base = re.sub(r"[^A-Z0-9]+", "_", hint.upper()).strip("_") or "SECRET"
        if not base[0].isalpha():
            base = "S_" + base
        name, number = base, 2
        while name in self.secret_origins:
            name, number = f"{base}_{number}", number + 1
        self.secret_origins[name] = origin
        if path is not None:
            self.secret_files[path] = name
        self.result.secrets.append(RequiredSecret(name, origin))
        return f'secret("{name}")'

    def secret_of(self, config: dict[str, Any], key: str, hint: str, where: str) -> str | None:
        """Return the reference for `key` or `key_file` of `config`, or None when neither is set."""
        if config.get(f"{key}_file") not in (None, ""):
            return self.secret(hint, f"`{key}_file` of {where}", config[f"{key}_file"])
        if config.get(key) not in (None, ""):
            return self.secret(hint, f"`{key}` of {where}, written inline in the configuration")
        return None

    # ------------------------------------------------------------ settings and defaults

    def settings_items(self, section: dict[str, Any]) -> list[str]:
        items: list[str] = []
        if section.get("resolve_timeout") is not None:
            items.append("resolve_timeout " + _duration(section["resolve_timeout"], "global.resolve_timeout"))
        smtp = self._smtp(section)
        if smtp:
            items.append(smtp)
        slack = self.secret_of(section, "slack_api_url", "SLACK_API_URL", "`global`")
        if slack is not None:
            items.append(f"slack_api_url {slack}")
            self.global_slack_url = slack
        for key in sorted(set(section) - _GLOBAL_CONVERTED, key=str):
            self.note(f"global setting `{key}` was not converted")
        return items

    def _smtp(self, section: dict[str, Any]) -> str | None:
        if section.get("smtp_smarthost") in (None, ""):
            for key in sorted(_GLOBAL_CONVERTED & set(section), key=str):
                if key.startswith("smtp_"):
                    self.note(f"global setting `{key}` was not converted, because `smtp_smarthost` is not set")
            return None
        parts = ["smtp " + quote(_text(section["smtp_smarthost"], "global.smtp_smarthost"))]
        if section.get("smtp_from") not in (None, ""):
            parts.append("from " + quote(_text(section["smtp_from"], "global.smtp_from")))
        if section.get("smtp_auth_username") not in (None, ""):
            parts.append("username " + quote(_text(section["smtp_auth_username"], "global.smtp_auth_username")))
        password = self.secret_of(section, "smtp_auth_password", "SMTP_PASSWORD", "`global`")
        if password is not None:
            parts.append(f"password {password}")
        if section.get("smtp_require_tls") is not None:
            parts.append("require_tls " + _boolean(section["smtp_require_tls"]))
        return " ".join(parts)

    def defaults(self, root: dict[str, Any]) -> list[str]:
        items = self.timing(root, "route")
        return ["defaults {\n" + "\n".join(items) + "\n}"] if items else []

    def timing(self, route: dict[str, Any], where: str) -> list[str]:
        items = []
        if route.get("group_by") is not None:
            labels = [label_text(_text(label, f"{where}.group_by")) for label in _list(route["group_by"], f"{where}.group_by")]
            items.append("group_by [" + ", ".join(labels) + "]")
        for key in _TIMING_KEYS:
            if route.get(key) is not None:
                items.append(f"{key} {_duration(route[key], f'{where}.{key}')}")
        return items

    # ------------------------------------------------------------ receivers

    def receiver(self, entry: dict[str, Any], index: int) -> str:
        raw_name = _text(entry["name"], f"receivers[{index}].name")
        name = self.receiver_names.get(raw_name)
        where = f"receiver `{raw_name}`"
        channels: list[str] = []
        for key, value in entry.items():
            if key == "name":
                continue
            if key not in _CHANNEL_KEYS:
                kind = "has no .irules channel" if str(key).endswith("_configs") else "is not a receiver setting"
                self.note(f"{where}: `{key}` {kind} and was not converted")
                continue
            for position, config in enumerate(_list(value, f"receivers[{index}].{key}")):
                source = _ChannelSource(
                    _mapping(config, f"receivers[{index}].{key}[{position}]"),
                    key,
                    name,
                    where,
                    f"receivers[{index}].{key}[{position}]",
                )
                channels.append(self.channel(source) + self.send_resolved(source.config))
                left_out = sorted(set(source.config) - _CHANNEL_KEYS[key], key=str)
                if left_out:
                    listed = ", ".join(f"`{item}`" for item in left_out)
                    self.note(f"{where}: {key} settings {listed} were not converted")
        body = "\n".join(channels)
        return f"receiver {name} {{\n{body}\n}}" if body else f"receiver {name} {{}}"

    @staticmethod
    def send_resolved(config: dict[str, Any]) -> str:
        if config.get("send_resolved") is None:
            return ""
        return " send_resolved " + _boolean(config["send_resolved"])

    def channel(self, source: _ChannelSource) -> str:
        converter = {
            "email_configs": self.email,
            "slack_configs": self.slack,
            "pagerduty_configs": self.pagerduty,
            "webhook_configs": self.webhook,
            "msteams_configs": self.teams,
            "msteamsv2_configs": self.teams,
        }[source.key]
        return converter(source)

    def email(self, source: _ChannelSource) -> str:
        return "email " + quote(_text(source.config.get("to"), f"{source.path}.to"))

    def slack(self, source: _ChannelSource) -> str:
        line = "slack"
        channel = _text(source.config.get("channel"), f"{source.path}.channel")
        if channel:
            if channel[0] not in "#@":
                self.note(
                    f"{source.where}: Slack channel `{channel}` is written as `#{channel}`; check that this is the channel meant"
                )
                channel = "#" + channel
            line += " " + quote(channel)
        url = self.secret_of(source.config, "api_url", f"{source.receiver}_SLACK_API_URL", f"the Slack channel of {source.where}")
        if url is None and not channel and self.global_slack_url is not None:
            url = self.global_slack_url
        if url is not None:
            line += f" url {url}"
        return line

    def pagerduty(self, source: _ChannelSource) -> str:
        config = source.config
        if any(config.get(key) not in (None, "") for key in ("service_key", "service_key_file")):
            self.note(
                f"{source.where}: the PagerDuty `service_key` (Events API v1) became a routing key; "
                "the generated configuration sends Events API v2 events with it"
            )
        hint, origin = f"{source.receiver}_PAGERDUTY_KEY", f"the PagerDuty channel of {source.where}"
        found = self.secret_of(config, "routing_key", hint, origin) or self.secret_of(config, "service_key", hint, origin)
        return "pagerduty" + (f" key {found}" if found is not None else "")

    def webhook(self, source: _ChannelSource) -> str:
        if source.config.get("url_file") not in (None, ""):
            self.version = max(self.version, (0, 26))
            origin = f"`url_file` of {source.where}"
            return "webhook url " + self.secret(f"{source.receiver}_WEBHOOK_URL", origin, source.config["url_file"])
        return "webhook " + quote(_text(source.config.get("url"), f"{source.path}.url"))

    def teams(self, source: _ChannelSource) -> str:
        # The Teams channel renders as `msteams_configs`, which irules writes for Alertmanager 0.27 and later.
        self.version = max(self.version, (0, 28) if source.key == "msteamsv2_configs" else (0, 27))
        if source.key == "msteamsv2_configs":
            self.note(
                f"{source.where}: a `msteamsv2_configs` entry (Teams Workflows) became a `teams` channel, "
                "which is sent as `msteams_configs`"
            )
        hint = f"{source.receiver}_TEAMS_WEBHOOK_URL"
        url = self.secret_of(source.config, "webhook_url", hint, f"the Teams channel of {source.where}")
        return "teams" + (f" url {url}" if url is not None else "")

    # ------------------------------------------------------------ routes

    def matchers(self, section: dict[str, Any], where: str, prefix: str = "") -> list[ir.Matcher]:
        found: list[ir.Matcher] = []
        for key, op in ((f"{prefix}match", ir.MatchOp.EQUAL), (f"{prefix}match_re", ir.MatchOp.REGEX)):
            for name, value in _mapping(section.get(key), f"{where}.{key}").items():
                found.append(ir.Matcher(name=str(name), op=op, value=_text(value, f"{where}.{key}.{name}")))
        key = f"{prefix}matchers"
        for index, entry in enumerate(_list(section.get(key), f"{where}.{key}")):
            try:
                found.extend(parse_matchers(_text(entry, f"{where}.{key}[{index}]")))
            except MatcherSyntaxError as error:
                raise ImportFailed(f"`{where}.{key}[{index}]`: {error}") from None
        return found

    def root_route(self, root: dict[str, Any]) -> str:
        if self.matchers(root, "route"):
            raise ImportFailed("`route`: root route must not have any matchers")
        self._report_unknown_route_keys(root, "route")
        items = []
        if root.get("receiver") not in (None, ""):
            items.append("receiver " + self.receiver_names.get(_text(root["receiver"], "route.receiver")))
        items.extend(self.route_options(root))
        for index, child in enumerate(_list(root.get("routes"), "route.routes")):
            items.append(self.child_route(_mapping(child, f"route.routes[{index}]"), f"route.routes[{index}]"))
        return "route {\n" + "\n".join(items) + "\n}"

    def route_options(self, route: dict[str, Any]) -> list[str]:
        """Return the route items other than receiver, timing and children: `continue` and time intervals."""
        items = ["continue"] if _is_true(route.get("continue", "false")) else []
        for key, keyword in (("mute_time_intervals", "mute_during"), ("active_time_intervals", "active_during")):
            names = [_text(name, f"route.{key}") for name in _list(route.get(key), key)]
            if names:
                items.append(f"{keyword} [" + ", ".join(self.interval_names.get(name) for name in names) + "]")
        return items

    def child_route(self, route: dict[str, Any], where: str) -> str:
        self._report_unknown_route_keys(route, where)
        matchers = self.matchers(route, where)
        head = "match " + ", ".join(map(matcher_text, matchers)) if matchers else "route"
        if route.get("receiver") not in (None, ""):
            head += " -> " + self.receiver_names.get(_text(route["receiver"], f"{where}.receiver"))
        body = self.route_options(route) + self.timing(route, where)
        for index, child in enumerate(_list(route.get("routes"), f"{where}.routes")):
            body.append(self.child_route(_mapping(child, f"{where}.routes[{index}]"), f"{where}.routes[{index}]"))
        return head + (" {\n" + "\n".join(body) + "\n}" if body else "")

    def _report_unknown_route_keys(self, route: dict[str, Any], where: str) -> None:
        for key in sorted(set(route) - _ROUTE_KEYS, key=str):
            self.note(f"`{where}`: `{key}` is not a route setting and was ignored")

    # ------------------------------------------------------------ inhibit rules and time intervals

    def inhibit(self, rule: object, index: int) -> str:
        where = f"inhibit_rules[{index}]"
        rule = _mapping(rule, where)
        sides = []
        for prefix, role in (("source_", "source"), ("target_", "target")):
            matchers = self.matchers(rule, where, prefix)
            if not matchers:
                # Alertmanager's empty list matches every alert, and so does `alertname =~ ".*"`, because an absent label is "".
                self.note(f'`{where}` has no {role} matchers, so every alert is a {role}; written as `alertname =~ ".*"`')
                matchers = [ir.Matcher(name="alertname", op=ir.MatchOp.REGEX, value=".*")]
            sides.append(", ".join(map(matcher_text, matchers)))
        line = f"inhibit {sides[0]} silences {sides[1]}"
        equal = [label_text(_text(label, f"{where}.equal")) for label in _list(rule.get("equal"), f"{where}.equal")]
        if equal:
            line += " on [" + ", ".join(equal) + "]"
        known = {"equal"} | {f"{side}_{form}" for side in ("source", "target") for form in ("match", "match_re", "matchers")}
        for key in sorted(set(rule) - known, key=str):
            self.note(f"`{where}`: `{key}` is not an inhibit rule setting and was ignored")
        return line

    def time_interval(self, raw_name: str, entry: dict[str, Any], where: str) -> str:
        for key in sorted(set(entry) - {"name", "time_intervals"}, key=str):
            self.note(f"`{where}`: `{key}` is not a time interval setting and was ignored")
        periods = [
            self.period(_mapping(period, f"{where}.time_intervals[{index}]"), f"{where}.time_intervals[{index}]")
            for index, period in enumerate(_list(entry.get("time_intervals"), f"{where}.time_intervals"))
        ]
        name = self.interval_names.get(raw_name)
        if len(periods) == 1 and periods[0]:
            return f"time_interval {name} {{\n" + "\n".join(periods[0]) + "\n}"
        blocks = ["period {\n" + "\n".join(fields) + "\n}" if fields else "period {}" for fields in periods]
        return f"time_interval {name} {{\n" + "\n".join(blocks) + "\n}"

    def period(self, period: dict[str, Any], where: str) -> list[str]:
        fields = []
        times = [
            self.time_range(_mapping(item, f"{where}.times[{index}]"), f"{where}.times[{index}]")
            for index, item in enumerate(_list(period.get("times"), f"{where}.times"))
        ]
        if times:
            fields.append("times [" + ", ".join(map(quote, times)) + "]")
        for key in _PERIOD_LISTS:
            values = [_text(value, f"{where}.{key}") for value in _list(period.get(key), f"{where}.{key}")]
            if values:
                fields.append(f"{key} [" + ", ".join(map(quote, values)) + "]")
        if period.get("location") not in (None, ""):
            fields.append("location " + quote(_text(period["location"], f"{where}.location")))
        for key in sorted(set(period) - {"times", "location", *_PERIOD_LISTS}, key=str):
            self.note(f"`{where}`: `{key}` is not a time interval field and was ignored")
        return fields

    @staticmethod
    def time_range(item: dict[str, Any], where: str) -> str:
        """Return `HH:MM-HH:MM`, or raise for a range that does not end after it starts, as Alertmanager does."""
        start = _text(item.get("start_time"), f"{where}.start_time").strip()
        end = _text(item.get("end_time"), f"{where}.end_time").strip()
        if not start or not end:
            raise ImportFailed(f"`{where}` needs both `start_time` and `end_time`")
        start_minute, end_minute = _clock_minutes(start), _clock_minutes(end)
        # In .irules a start after the end crosses midnight, but Alertmanager rejects such a range.
        if start_minute is not None and end_minute is not None and start_minute >= end_minute:
            raise ImportFailed(
                f"`{where}`: start time cannot be equal or greater than end time ({start} to {end}); "
                "split a range across midnight in two, such as 22:00 to 24:00 and 00:00 to 06:00"
            )
        # A malformed time stays as written, so that `irules check` points at it.
        return f"{start}-{end}"
