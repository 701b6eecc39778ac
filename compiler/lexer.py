"""A fast contextual lexer for .irules that feeds lark's LALR tables.

Words are keywords only where the parser state accepts that keyword, so a
team may be called `page` and a label `service`. Tokens are small slotted
objects, cheaper than lark's `Token`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from compiler.span import Span

_MASTER = re.compile(
    r"""
    (?P<WS>[ \t\r\f\n]+)
  | (?P<COMMENT>\#[^\n]*)
  | (?P<BLOCK_STRING>\"\"\"(?:[^"\\]|\\.|"(?!""))*\"\"\")
  | (?P<STRING>"(?:[^"\\\n]|\\.)*")
  | (?P<SQ_STRING>'[^'\n]*')
  | (?P<DURATION>(?:\d+(?:ms|s|m|h|d|w))+(?![A-Za-z0-9_%]))
  | (?P<PERCENT>\d+(?:\.\d+)?%)
  | (?P<NUMBER>\d+\.\d+(?![A-Za-z0-9_%.]))
  | (?P<INT>\d+(?![A-Za-z0-9_%.]))
  | (?P<WORD>[A-Za-z_][A-Za-z0-9_]*(?:-[A-Za-z0-9_]+)*)
  | (?P<OP>->|==|<=|>=|=~|!~|!=|[<>={}\[\](),.:])
    """,
    re.VERBOSE | re.DOTALL,
)

_OPERATORS = {
    "->": "ARROW",
    "=": "EQUAL",
    "==": "CMP_OP",
    "<=": "CMP_OP",
    ">=": "CMP_OP",
    "<": "CMP_OP",
    ">": "CMP_OP",
    "=~": "MATCH_OP",
    "!~": "MATCH_OP",
    "!=": "MATCH_OP",
    "{": "LBRACE",
    "}": "RBRACE",
    "[": "LSQB",
    "]": "RSQB",
    "(": "LPAR",
    ")": "RPAR",
    ",": "COMMA",
    ".": "DOT",
    ":": "COLON",
}


@dataclass(slots=True)
class Tok:
    """One token: its terminal name, text and position (1-based line and column)."""

    type: str
    value: str
    start: int
    end: int
    line: int
    column: int
    end_line: int
    end_column: int
    # The other reading of a word that is both a keyword and a name in this
    # state; LALR lookahead sets are merged, so the parser may need to retry.
    alternative: str | None = None

    def span(self, path: str) -> Span:
        return Span(path, self.start, self.end, self.line, self.column, self.end_line, self.end_column)


class LexError(Exception):
    """A character that starts no token, or an unterminated string."""

    def __init__(self, offset: int, line: int, column: int, text: str) -> None:
        super().__init__(f"unexpected character {text!r}")
        self.offset = offset
        self.line = line
        self.column = column
        self.text = text


def word_types(terminals: list[tuple[str, list[str]]]) -> dict[str, tuple[str, ...]]:
    """Map each keyword spelling to the terminal names it can stand for."""
    table: dict[str, list[str]] = {}
    for name, words in terminals:
        for word in words:
            table.setdefault(word, []).append(name)
    return {word: tuple(names) for word, names in table.items()}


def tokenize(
    text: str,
    keywords: dict[str, tuple[str, ...]],
    accepted: callable,
    comments: list[tuple[int, str]],
) -> Iterator[Tok]:
    """Yield the tokens of `text`; `accepted()` returns the terminals the parser can take next."""
    match_at = _MASTER.match
    position = 0
    line = 1
    line_start = 0
    length = len(text)
    while position < length:
        match = match_at(text, position)
        if match is None:
            raise LexError(position, line, position - line_start + 1, text[position])
        kind = match.lastgroup
        end = match.end()
        value = match.group()
        if kind == "WS":
            newlines = value.count("\n")
            if newlines:
                line += newlines
                line_start = position + value.rindex("\n") + 1
            position = end
            continue
        if kind == "COMMENT":
            comments.append((position, value.rstrip()))
            position = end
            continue
        alternative = None
        if kind == "WORD":
            candidates = keywords.get(value)
            kind = "IDENT"
            if candidates:
                expected = accepted()
                kind = next((name for name in candidates if name in expected), None)
                if kind is None:
                    kind = "IDENT" if "IDENT" in expected else candidates[0]
                elif "IDENT" in expected:
                    alternative = "IDENT"
        elif kind == "OP":
            kind = _OPERATORS[value]
        column = position - line_start + 1
        if kind == "BLOCK_STRING" and "\n" in value:
            end_line = line + value.count("\n")
            end_column = end - (position + value.rindex("\n") + 1) + 1
            yield Tok(kind, value, position, end, line, column, end_line, end_column)
            line = end_line
            line_start = position + value.rindex("\n") + 1
        else:
            yield Tok(kind, value, position, end, line, column, line, column + end - position, alternative)
        position = end
