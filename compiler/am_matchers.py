"""Alertmanager's matcher strings, parsed as Alertmanager 0.25 parses them.

A `matchers` entry is `name op value` or a brace list `{a="1", b=~"x"}`.
Values in double quotes are unescaped (`\\"`, `\\\\`, `\\n`); unquoted values
are taken literally, so single quotes stay part of the value and a comma
outside quotes separates two matchers.
"""

from __future__ import annotations

import re

from compiler import ir

_MATCHER = re.compile(r"^\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(=~|=|!=|!~)\s*(.*?)\s*$", re.S)


class MatcherSyntaxError(ValueError):
    """A matcher string Alertmanager would reject; the message is Alertmanager's wording."""


def parse_matchers(text: str) -> list[ir.Matcher]:
    """Parse one `matchers` list entry into matchers.

    Raises:
        MatcherSyntaxError: Alertmanager would reject the entry.
    """
    body = text.strip()
    if body.startswith("{") and body.endswith("}"):
        body = body[1:-1]
    matchers = []
    for part in _split(body):
        if part.strip():
            matchers.append(parse_matcher(part))
    return matchers


def _split(body: str) -> list[str]:
    """Split on commas that stand outside double-quoted values."""
    parts: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    for char in body:
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == "," and not quoted:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    parts.append("".join(current))
    return parts


def parse_matcher(text: str) -> ir.Matcher:
    match = _MATCHER.match(text)
    if match is None:
        raise MatcherSyntaxError(f"bad matcher format: {text}")
    name, op, raw = match.groups()
    if len(raw) >= 2 and raw.startswith('"') and raw.endswith('"'):
        value = _unescape(raw[1:-1], text)
    else:
        if '"' in raw.replace('\\"', ""):
            raise MatcherSyntaxError(f"matcher value contains unescaped double quote: {raw}")
        value = raw
    return ir.Matcher(name=name, op=ir.MatchOp(op), value=value)


def _unescape(body: str, text: str) -> str:
    out: list[str] = []
    index = 0
    while index < len(body):
        char = body[index]
        if char == "\\" and index + 1 < len(body):
            following = body[index + 1]
            out.append({"n": "\n", '"': '"', "\\": "\\"}.get(following, "\\" + following))
            index += 2
            continue
        if char == '"':
            raise MatcherSyntaxError(f"matcher value contains unescaped double quote: {text}")
        out.append(char)
        index += 1
    return "".join(out)
