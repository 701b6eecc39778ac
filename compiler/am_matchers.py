"""Alertmanager's matcher strings, parsed as Alertmanager 0.25 parses them (`pkg/labels/parse.go`).

A `matchers` entry is `name op value` or a list `{a="1", b=~"x"}`. The rules,
including the surprising ones, follow Alertmanager 0.25:

- One leading `{` and one trailing `}` are removed, each on its own, before
  anything else (no whitespace is trimmed first).
- The text is split at every comma outside double quotes. An empty piece
  before a comma is an error; a blank piece at the end is ignored.
- A value may be double-quoted. Inside, `\\"`, `\\\\` and `\\n` are escapes and
  any other backslash stays as written. The same escapes apply to an unquoted
  value, where a double quote is an error and single quotes are ordinary
  characters, so `'x'` is the three-character value `'x'`.
"""

from __future__ import annotations

import re

from compiler import ir

# Go's `\s` is ASCII whitespace only, and its `$` matches only at the very end.
_SPACE = "[\t\n\f\r ]"
_MATCHER = re.compile(rf"{_SPACE}*([a-zA-Z_:][a-zA-Z0-9_:]*){_SPACE}*(=~|=|!=|!~){_SPACE}*(.*?){_SPACE}*\Z", re.S)


class MatcherSyntaxError(ValueError):
    """A matcher string Alertmanager would reject; the message is Alertmanager's wording."""


def parse_matchers(text: str) -> list[ir.Matcher]:
    """Parse one `matchers` list entry into matchers.

    Example:
        parse_matchers('{env="prod", region=~"eu-.*"}')  # two matchers

    Raises:
        MatcherSyntaxError: Alertmanager would reject the entry.
    """
    body = text.removeprefix("{").removesuffix("}")
    return [parse_matcher(piece) for piece in split_matchers(body)]


def split_matchers(body: str) -> list[str]:
    """Split at commas outside double quotes, keeping Alertmanager's treatment of empty pieces."""
    pieces: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    for char in body:
        if char == ",":
            if not quoted:
                pieces.append("".join(current))
                current = []
                continue
        elif char == '"':
            if escaped:
                escaped = False
            else:
                quoted = not quoted
        elif char == "\\":
            escaped = not escaped
        else:
            escaped = False
        current.append(char)
    last = "".join(current).strip()
    if last:
        pieces.append(last)
    return pieces


def parse_matcher(text: str) -> ir.Matcher:
    """Parse one `name op value` matcher.

    Raises:
        MatcherSyntaxError: Alertmanager would reject the matcher.
    """
    match = _MATCHER.match(text)
    if match is None:
        raise MatcherSyntaxError(f"bad matcher format: {text}")
    name, op, raw = match.groups()
    return ir.Matcher(name=name, op=ir.MatchOp(op), value=_unquote(raw))


def _unquote(raw: str) -> str:
    body = raw
    expect_closing_quote = body.startswith('"')
    if expect_closing_quote:
        body = body[1:]
    value: list[str] = []
    escaped = False
    last = len(body) - 1
    for index, char in enumerate(body):
        if escaped:
            escaped = False
            value.append({"n": "\n", '"': '"', "\\": "\\"}.get(char, "\\" + char))
        elif char == "\\":
            if index < last:
                escaped = True
            else:
                value.append(char)
        elif char == '"':
            if not expect_closing_quote or index < last:
                raise MatcherSyntaxError(f"matcher value contains unescaped double quote: {raw}")
            expect_closing_quote = False
        else:
            value.append(char)
    if expect_closing_quote:
        raise MatcherSyntaxError(f"matcher value contains unescaped double quote: {raw}")
    return "".join(value)
