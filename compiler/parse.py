"""The cached LALR parser for .irules files.

lark builds the LALR(1) tables and the tree-building callbacks, with our
`ToAst` transformer inlined. Tokens come from `compiler.lexer`, and the
shift/reduce loop is ours, so a syntax error keeps the parser state that
`syntax_errors` needs to name the construct that was expected.
"""

from __future__ import annotations

import functools
import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lark import Lark
from lark.lexer import PatternRE, PatternStr
from lark.parsers.lalr_analysis import Shift

from compiler import ast
from compiler.lexer import Tok, tokenize, word_types
from compiler.span import Span
from compiler.transform import ToAst

GRAMMAR_PATH = Path(__file__).parent / "grammar" / "irules.lark"
_WORD_ALTERNATIVES = re.compile(r"^\(\?:((?:[A-Za-z_]+\|)*[A-Za-z_]+)\)$")


class NestedTooDeep(Exception):
    """An expression or route tree nested deeper than `transform.MAX_NESTING` levels."""

    def __init__(self, what: str, span: Span) -> None:
        super().__init__(f"{what} nested too deeply")
        self.what = what
        self.span = span


class InvalidEscape(Exception):
    """A string escape that stands for no character, such as a lone surrogate `\\uD800`."""

    def __init__(self, escape: str, span: Span) -> None:
        super().__init__(f"invalid escape {escape}")
        self.escape = escape
        self.span = span


class ParseFailed(Exception):
    """A token the grammar does not allow here; carries what was expected."""

    def __init__(self, token: Tok, expected: frozenset[str], states: tuple[int, ...], previous: Tok | None = None) -> None:
        super().__init__(f"unexpected {token.type} {token.value!r}")
        self.token = token
        self.expected = expected
        self.states = states
        self.previous = previous


@dataclass(frozen=True, slots=True)
class Tables:
    states: dict[int, dict[str, tuple[Any, Any]]]
    start: int
    end: int
    callbacks: dict[Any, Any]
    keywords: dict[str, tuple[str, ...]]
    transformer: ToAst
    terminal_text: dict[str, str]


@functools.cache
def tables() -> Tables:
    """Build the LALR tables once per process; lark caches the grammar analysis on disk."""
    transformer = ToAst()
    lark = Lark(
        GRAMMAR_PATH.read_text(encoding="utf-8"),
        parser="lalr",
        lexer="basic",
        keep_all_tokens=True,
        maybe_placeholders=True,
        transformer=transformer,
        cache=True,
    )
    lalr = lark.parser.parser.parser
    keyword_terminals: list[tuple[str, list[str]]] = []
    terminal_text: dict[str, str] = {}
    for terminal in lark.terminals:
        pattern = terminal.pattern
        if isinstance(pattern, PatternStr):
            terminal_text[terminal.name] = pattern.value
            if pattern.value.isidentifier():
                keyword_terminals.append((terminal.name, [pattern.value]))
        elif isinstance(pattern, PatternRE):
            alternatives = _WORD_ALTERNATIVES.match(pattern.value)
            if alternatives:
                keyword_terminals.append((terminal.name, alternatives.group(1).split("|")))
    return Tables(
        states=_plain_states(lalr.parse_table.states, lalr.callbacks),
        start=lalr.parse_table.start_states["start"],
        end=lalr.parse_table.end_states["start"],
        callbacks=lalr.callbacks,
        keywords=word_types(keyword_terminals),
        transformer=transformer,
        terminal_text=terminal_text,
    )


def _plain_states(
    states: dict[int, dict[Any, tuple[Any, Any]]], callbacks: dict[Any, Any]
) -> dict[int, dict[str, tuple[Any, ...]]]:
    """Re-key the action table by plain strings and unpack each reduction.

    A shift becomes `(None, next_state)`; a reduction becomes
    `(size, rule_name, callback)`. lark's keys are `Token` objects whose
    `__eq__` would run on every lookup.
    """
    plain: dict[int, dict[str, tuple[Any, ...]]] = {}
    for state, actions in states.items():
        row: dict[str, tuple[Any, ...]] = {}
        for terminal, (kind, argument) in actions.items():
            if kind is Shift:
                row[str(terminal)] = (None, argument)
            else:
                row[str(terminal)] = (len(argument.expansion), str(argument.origin.name), callbacks[argument])
        plain[state] = row
    return plain


def parse_text(text: str, path: str) -> ast.Module:
    """Parse one file into a module that carries its comments.

    Raises `ParseFailed` or `compiler.lexer.LexError` on a syntax error, and
    `NestedTooDeep` for trees deeper than the checks can walk.
    """
    table = tables()
    table.transformer.file_path = path
    table.transformer.text = text
    table.transformer.reset()
    comments: list[tuple[int, str]] = []
    stack: list[int] = [table.start]
    states = table.states
    tokens = tokenize(text, table.keywords, lambda: states[stack[-1]], comments)
    module: ast.Module = _run(table, stack, tokens, _end_token(text))
    module.comments = comments
    too_deep, bad_escape = table.transformer.too_deep, table.transformer.bad_escape
    table.transformer.reset()
    if bad_escape is not None:
        raise InvalidEscape(*bad_escape)
    if too_deep is not None:
        raise NestedTooDeep(*too_deep)
    return module


def _feed_either(states: dict[int, dict[str, tuple[Any, ...]]], stack: list[int], values: list[Any], token: Tok) -> None:
    """Feed a word that reads as a keyword or as a name, trying the keyword first.

    Both readings were acceptable to the lexer, but LALR shares lookahead sets
    between states, so one of them may fail a few reductions later. The stacks
    are restored before the second try.
    """
    saved_stack, saved_values = list(stack), list(values)
    try:
        _feed(states, stack, values, token)
    except ParseFailed as first:
        stack[:], values[:] = saved_stack, saved_values
        first_type, token.type, token.alternative = token.type, token.alternative, None
        try:
            _feed(states, stack, values, token)
        except ParseFailed as second:
            # Report the reading whose expectation is narrower: it names the construct better.
            if len(first.expected) <= len(second.expected):
                token.type = first_type
                raise first from None
            raise


def _feed(states: dict[int, dict[str, tuple[Any, ...]]], stack: list[int], values: list[Any], token: Tok) -> None:
    """Shift one token that is not the end of input, after every reduction it triggers."""
    while True:
        action = states[stack[-1]].get(token.type)
        if action is None:
            raise ParseFailed(token, accepted_terminals(states, stack), tuple(stack))
        size = action[0]
        if size is None:
            stack.append(action[1])
            values.append(token)
            return
        if size:
            children = values[-size:]
            del stack[-size:]
            del values[-size:]
        else:
            children = []
        values.append(action[2](children))
        stack.append(states[stack[-1]][action[1]][1])


def accepted_terminals(states: dict[int, dict[str, tuple[Any, ...]]], stack: list[int]) -> frozenset[str]:
    """Return the terminals the parser would really shift next from `stack`.

    An LALR state's lookahead set can contain terminals that only a merged
    sibling state accepts. Simulating the reductions on a copy of the state
    stack keeps the ones that lead to a shift, so messages list only those.
    """
    accepted = set()
    for terminal in states[stack[-1]]:
        if terminal.isupper() and _would_shift(states, list(stack), terminal):
            accepted.add(terminal)
    return frozenset(accepted)


def _would_shift(states: dict[int, dict[str, tuple[Any, ...]]], stack: list[int], terminal: str) -> bool:
    while True:
        action = states[stack[-1]].get(terminal)
        if action is None:
            return False
        size = action[0]
        if size is None or (terminal == "$END" and action[1] == "start"):
            return True
        if size:
            del stack[-size:]
        goto = states[stack[-1]].get(action[1])
        if goto is None:
            return False
        stack.append(goto[1])


def _end_token(text: str) -> Tok:
    line = text.count("\n") + 1
    column = len(text) - (text.rfind("\n") + 1) + 1
    return Tok("$END", "", len(text), len(text), line, column, line, column)


def _run(table: Tables, stack: list[int], tokens: Iterator[Tok], end_token: Tok) -> Any:
    """Drive the LALR tables over `tokens`; `stack` is shared with the lexer."""
    states = table.states
    end_state = table.end
    values: list[Any] = []
    previous = None
    for token in itertools.chain(tokens, (end_token,)):
        if token.alternative is not None:
            try:
                _feed_either(states, stack, values, token)
            except ParseFailed as error:
                error.previous = previous
                raise
            previous = token
            continue
        while True:
            action = states[stack[-1]].get(token.type)
            if action is None:
                raise ParseFailed(token, accepted_terminals(states, stack), tuple(stack), previous)
            size = action[0]
            if size is None:
                stack.append(action[1])
                values.append(token)
                previous = token
                break
            if size:
                children = values[-size:]
                del stack[-size:]
                del values[-size:]
            else:
                children = []
            values.append(action[2](children))
            stack.append(states[stack[-1]][action[1]][1])
            if stack[-1] == end_state and token.type == "$END":
                return values[-1]
    raise AssertionError("the LALR loop ended without accepting or failing")
