"""The LALR parser for .irules files.

The tables come from `compiler.parse_tables`, tokens from `compiler.lexer`,
and AST nodes from the `ToAst` callbacks. The shift/reduce loop is ours, so a
syntax error keeps the parser state that `syntax_errors` needs to name the
construct that was expected.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

from compiler import ast
from compiler.lexer import LexError, Tok, read_word, scan, word_types
from compiler.parse_tables import Rule, load_tables
from compiler.span import Span
from compiler.transform import ToAst

# One entry of the action table: `(None, state)` shifts a terminal or goes to
# the state after a rule, and `(size, rule, callback, goto)` reduces, where
# `goto` maps the state uncovered by the reduction to the next one. The
# callback is None for a unit rule whose one child stands for the rule.
Action = tuple[Any, ...]


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


class Tables(NamedTuple):
    states: dict[int, dict[str, Action]]
    start: int
    end: int
    keywords: dict[str, tuple[str, ...]]
    transformer: ToAst
    terminal_text: dict[str, str]


@functools.cache
def tables() -> Tables:
    """Load the parser tables once per process and bind their reductions to a `ToAst`."""
    grammar = load_tables()
    transformer = ToAst()
    gotos: dict[str, dict[int, int]] = {}
    for state, row in grammar.actions.items():
        for symbol, action in row.items():
            if not symbol.isupper() and action >= 0:
                gotos.setdefault(symbol, {})[state] = action
    reductions = [_reduction(rule, transformer, gotos.get(rule.origin, {})) for rule in grammar.rules]
    states = {
        state: {symbol: (None, action) if action >= 0 else reductions[-action - 1] for symbol, action in row.items()}
        for state, row in grammar.actions.items()
    }
    return Tables(
        states=states,
        start=grammar.start,
        end=grammar.end,
        keywords=word_types([(name, list(words)) for name, words in grammar.keyword_terminals]),
        transformer=transformer,
        terminal_text=grammar.terminal_text,
    )


def _reduction(rule: Rule, transformer: ToAst, goto: dict[int, int]) -> Action:
    """Return the action entry that reduces by `rule`, with the callback that shapes its children."""
    if rule.expand_single and rule.keep is None and rule.size == 1:
        return (1, rule.origin, None, goto)
    build = transformer.callback(rule.callback, one_child=rule.size == 1 and rule.keep is None)
    if rule.expand_single:
        build = _expand_single(build)
    if rule.keep is not None:
        build = _keep_children(rule.keep, rule.trailing_placeholders, build)
    return (rule.size, rule.origin, build, goto)


def _expand_single(build: Callable[[list[Any]], Any]) -> Callable[[list[Any]], Any]:
    """Wrap the callback of a `?rule`, which stands for its only child when it has one."""

    def expand(children: list[Any]) -> Any:
        return children[0] if len(children) == 1 else build(children)

    return expand


def _keep_children(
    keep: tuple[tuple[int, bool, int], ...], trailing: int, build: Callable[[list[Any]], Any]
) -> Callable[[list[Any]], Any]:
    """Wrap a callback so that it gets only the selected children, helper rules spliced in and placeholders added."""

    def select(children: list[Any]) -> Any:
        selected: list[Any] = []
        for index, inline, placeholders in keep:
            if placeholders:
                selected += [None] * placeholders
            if not inline:
                selected.append(children[index])
            elif selected:
                selected += children[index]
            else:
                # A left-recursive helper rule: extend its list in place, or long lists would copy quadratically.
                selected = children[index]
        if trailing:
            selected += [None] * trailing
        return build(selected)

    return select


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
    tokens, lex_error = scan(text, table.keywords, comments)
    module: ast.Module = _run(table, tokens, lex_error, _end_token(text))
    module.comments = comments
    too_deep, bad_escape = table.transformer.too_deep, table.transformer.bad_escape
    table.transformer.reset()
    if bad_escape is not None:
        raise InvalidEscape(*bad_escape)
    if too_deep is not None:
        raise NestedTooDeep(*too_deep)
    return module


def _feed_either(states: dict[int, dict[str, Action]], stack: list[int], values: list[Any], token: Tok) -> None:
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


def _feed(states: dict[int, dict[str, Action]], stack: list[int], values: list[Any], token: Tok) -> None:
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
        _reduce(stack, values, action)


def _reduce(stack: list[int], values: list[Any], action: Action) -> None:
    size, _rule, callback, goto = action
    if callback is None:
        stack[-1] = goto[stack[-2]]
        return
    if size:
        children = values[-size:]
        del stack[-size:]
        del values[-size:]
    else:
        children = []
    values.append(callback(children))
    stack.append(goto[stack[-1]])


def accepted_terminals(states: dict[int, dict[str, Action]], stack: list[int]) -> frozenset[str]:
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


def _would_shift(states: dict[int, dict[str, Action]], stack: list[int], terminal: str) -> bool:
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


def _run(table: Tables, tokens: list[Tok], lex_error: LexError | None, end_token: Tok) -> Any:
    """Drive the tables over `tokens`, then raise `lex_error` or accept at `end_token`.

    The loop repeats `_feed` and `_reduce` inline, because it runs once per
    token and once per reduction.
    """
    states = table.states
    end_state = table.end
    stack: list[int] = [table.start]
    values: list[Any] = []
    previous = None
    for token in tokens:
        if token.keywords is not None:
            read_word(token, states[stack[-1]])
        if token.alternative is not None:
            try:
                _feed_either(states, stack, values, token)
            except ParseFailed as error:
                error.previous = previous
                raise
            previous = token
            continue
        kind = token.type
        while True:
            action = states[stack[-1]].get(kind)
            if action is None:
                raise ParseFailed(token, accepted_terminals(states, stack), tuple(stack), previous)
            size = action[0]
            if size is None:
                stack.append(action[1])
                values.append(token)
                previous = token
                break
            callback = action[2]
            if callback is None:
                stack[-1] = action[3][stack[-2]]
            else:
                if size:
                    children = values[-size:]
                    del stack[-size:]
                    del values[-size:]
                else:
                    children = []
                values.append(callback(children))
                stack.append(action[3][stack[-1]])
    if lex_error is not None:
        raise lex_error
    return _accept(states, stack, values, end_token, end_state, previous)


def _accept(
    states: dict[int, dict[str, Action]], stack: list[int], values: list[Any], token: Tok, end_state: int, previous: Tok | None
) -> Any:
    """Reduce at the end of input until the start rule is accepted, and return the module."""
    while True:
        action = states[stack[-1]].get("$END")
        if action is None:
            raise ParseFailed(token, accepted_terminals(states, stack), tuple(stack), previous)
        _reduce(stack, values, action)
        if stack[-1] == end_state:
            return values[-1]
