"""A fast contextual lexer for .irules that feeds lark's LALR tables.

Words are keywords only where the parser state accepts that keyword, so a
team may be called `page` and a label `service`. Tokens are small slotted
objects, cheaper than lark's `Token`.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Container, Iterator
from dataclasses import dataclass

from compiler.span import Span

# Spaces and tabs before a token belong to its match, so they cost no
# iteration of the loop. Line breaks are tokens of their own, because they
# move the line count. ERROR matches any other character, which starts no token.
# Only strings and numbers share first characters, and they keep their order,
# so the most frequent alternatives can come first.
_MASTER = re.compile(
    r"""
    [ \t\r\f]*+
    (?:
      (?P<WORD>[A-Za-z_][A-Za-z0-9_]*(?:-[A-Za-z0-9_]+)*)
    | (?P<OP>->|==|<=|>=|=~|!~|!=|[<>={}\[\](),.:])
    | (?P<NEWLINE>\n[ \t\r\f\n]*)
    | (?P<BLOCK_STRING>\"\"\"(?:[^"\\]|\\.|"(?!""))*\"\"\")
    | (?P<STRING>"(?:[^"\\\n]|\\.)*")
    | (?P<DURATION>(?:\d+(?:ms|s|m|h|d|w))+(?![A-Za-z0-9_%]))
    | (?P<PERCENT>\d+(?:\.\d+)?%)
    | (?P<NUMBER>\d+\.\d+(?![A-Za-z0-9_%.]))
    | (?P<INT>\d+(?![A-Za-z0-9_%.]))
    | (?P<COMMENT>\#[^\n]*)
    | (?P<SQ_STRING>'[^'\n]*')
    | (?P<ERROR>[^ \t\r\f])
    )
    """,
    re.VERBOSE | re.DOTALL,
)

# Builds a Span from a tuple of its fields without the Python-level `__new__`
# of a named tuple. The parser makes one for nearly every token and node.
new_span = functools.partial(tuple.__new__, Span)

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
    # The keyword terminals a word can stand for, until `read_word` picks its type.
    keywords: tuple[str, ...] | None = None

    def span(self, path: str) -> Span:
        return new_span((path, self.start, self.end, self.line, self.column, self.end_line, self.end_column))


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


def scan(text: str, keywords: dict[str, tuple[str, ...]], comments: list[tuple[int, str]]) -> tuple[list[Tok], LexError | None]:
    """Return the tokens of `text` up to the first character that starts no token, and the error for that character.

    A word that spells a keyword gets the type `WORD` and its possible
    terminals in `keywords`, and the parser calls `read_word` on it when it
    arrives, because only the parser state distinguishes a keyword from a name.
    The error is returned rather than raised, so that the parser first
    reports a syntax error before it, as it would with a lazy lexer.
    """
    tokens: list[Tok] = []
    append = tokens.append
    line = 1
    line_start = 0
    for match in _MASTER.finditer(text):
        kind = match.lastgroup
        if kind == "NEWLINE":
            value = match.group(kind)
            line += value.count("\n")
            line_start = match.end() - len(value) + value.rindex("\n") + 1
            continue
        position = match.start(kind)
        end = match.end()
        if kind == "COMMENT":
            comments.append((position, text[position:end].rstrip()))
            continue
        if kind == "ERROR":
            return tokens, LexError(position, line, position - line_start + 1, text[position])
        value = text[position:end]
        column = position - line_start + 1
        if kind == "WORD":
            candidates = keywords.get(value)
            if candidates:
                append(Tok("WORD", value, position, end, line, column, line, column + end - position, None, candidates))
            else:
                append(Tok("IDENT", value, position, end, line, column, line, column + end - position))
            continue
        if kind == "OP":
            kind = _OPERATORS[value]
        elif kind == "BLOCK_STRING" and "\n" in value:
            end_line = line + value.count("\n")
            last_break = position + value.rindex("\n")
            append(Tok(kind, value, position, end, line, column, end_line, end - last_break))
            line = end_line
            line_start = last_break + 1
            continue
        append(Tok(kind, value, position, end, line, column, line, column + end - position))
    return tokens, None


def read_word(token: Tok, expected: Container[str]) -> None:
    """Set the type of a keyword-spelled word from the terminals the parser accepts next.

    The keyword wins where the parser takes it. Where it takes a name as well,
    `alternative` keeps that reading for a retry.
    """
    candidates = token.keywords or ()
    token.keywords = None
    for kind in candidates:
        if kind in expected:
            if "IDENT" in expected:
                token.alternative = "IDENT"
            break
    else:
        kind = "IDENT" if "IDENT" in expected else candidates[0]
    token.type = kind


def tokenize(
    text: str,
    keywords: dict[str, tuple[str, ...]],
    accepted: Callable[[], Container[str]],
    comments: list[tuple[int, str]],
) -> Iterator[Tok]:
    """Yield the tokens of `text`, where `accepted()` returns the terminals the parser can take next.

    Raises:
        LexError: a character that starts no token, such as `@` or the quote of an unterminated string.
    """
    tokens, error = scan(text, keywords, comments)
    for token in tokens:
        if token.keywords is not None:
            read_word(token, accepted())
        yield token
    if error is not None:
        raise error
