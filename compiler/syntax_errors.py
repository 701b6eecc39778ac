"""Turn parser failures into diagnostics that name what was expected.

The LALR parser reports the set of terminals it could have taken. We phrase
that set for people ("a duration such as `10s`", "`}`"), recognise a few
common mistakes and say how to fix them, and suggest the closest keyword
when a misspelt word is where a keyword was expected.
"""

from __future__ import annotations

from compiler.diagnostics import Diagnostic, Label, Severity
from compiler.lexer import LexError, Tok, tokenize
from compiler.parse import ParseFailed, tables
from compiler.span import SourceFile, Span
from compiler.suggest import closest

_DESCRIPTIONS = {
    "IDENT": "a name",
    "STRING": "a string",
    "BLOCK_STRING": "a string",
    "SQ_STRING": "a string",
    "DURATION": "a duration such as `30s` or `1h30m`",
    "PERCENT": "a percentage such as `90%`",
    "NUMBER": "a number",
    "INT": "an integer",
    "MATCH_OP": "a matcher operator (`=`, `!=`, `=~`, `!~`)",
    "CMP_OP": "a comparison operator",
    "EQUAL": "`=`",
    "ARROW": "`->`",
    "RISK_LEVEL": "a risk level (`low`, `medium`, `high`)",
    "ESC_STATE": "`unacknowledged` or `unresolved`",
    "HTTP_METHOD": "an HTTP method such as `GET` or `POST`",
    "TRUE": "`true`",
    "FALSE": "`false`",
    "$END": "the end of the file",
}
# Keywords that start a top-level declaration; the loader resumes parsing at them after an error.
TOP_LEVEL_KEYWORDS = (
    "settings", "environment", "defaults", "team", "receiver", "service", "route", "inhibit", "time_interval",
    "severity", "pagerduty", "slack", "escalation", "source", "dedup", "correlate", "action", "runbook",
    "template", "test", "use",
)  # fmt: skip
_VALUE_ORDER = ["DURATION", "PERCENT", "INT", "NUMBER", "STRING", "IDENT"]
_MAX_LISTED = 8


def lex_error_diagnostic(error: LexError, path: str) -> Diagnostic:
    span = Span(path, error.offset, error.offset + 1, error.line, error.column, error.line, error.column + 1)
    if error.text == '"':
        return Diagnostic(
            Severity.ERROR,
            "IR0102",
            "unterminated string",
            span,
            label="this string has no closing quote on its line",
            help='close the string with `"`; use `"""` for text that spans several lines',
        )
    if error.text == "'":
        return Diagnostic(
            Severity.ERROR,
            "IR0102",
            "unterminated string",
            span,
            help='strings are written in double quotes: `"value"`',
        )
    return Diagnostic(
        Severity.ERROR,
        "IR0101",
        f"unexpected character `{error.text}`",
        span,
        label="no token starts with this character",
        help="remove the character, or put it inside a string",
    )


def parse_error_diagnostic(error: ParseFailed, source: SourceFile) -> Diagnostic:
    token = error.token
    span = token.span(source.path)
    expected = error.expected
    previous = _previous_text(error.previous) if error.previous is not None else _previous_word(source.text, token.start)
    special = _unclosed_block(token, expected, source, span) or _known_mistake(token, expected, previous, span, source)
    if special is not None:
        return special
    wanted = describe_expected(expected)
    if token.type == "$END":
        message = "unexpected end of file"
        if "RBRACE" in expected:
            message += "; a `}` is missing"
        return Diagnostic(Severity.ERROR, "IR0104", message, span, label=f"expected {wanted}")
    found = describe_token(token)
    message = f"expected {wanted} after `{previous}`, found {found}" if previous else f"expected {wanted}, found {found}"
    help_text = ""
    if token.type == "IDENT" or token.value.isidentifier():
        keywords = sorted(_keyword_texts(expected))
        suggestion = closest(token.value, keywords)
        if suggestion:
            help_text = f"the keyword closest to `{token.value}` here is `{suggestion}`"
    return Diagnostic(Severity.ERROR, "IR0103", message, span, label="unexpected here", help=help_text)


_FOUND = {
    "IDENT": "a name",
    "STRING": "a string",
    "INT": "an integer",
    "NUMBER": "a number",
    "DURATION": "a duration",
    "PERCENT": "a percentage",
}


def _shorten(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _previous_text(token: Tok) -> str:
    return _shorten(token.value.replace("\n", " "), 24)


def describe_token(token: Tok) -> str:
    if token.type in _FOUND:
        return f"{_FOUND[token.type]} `{_shorten(token.value)}`"
    if token.type == "$END":
        return "the end of the file"
    return f"`{token.value}`"


def describe_expected(expected: frozenset[str]) -> str:
    """Phrase a set of terminal names for a person, values first, then keywords and symbols."""
    terminal_text = tables().terminal_text
    values = [name for name in _VALUE_ORDER if name in expected]
    others = sorted(name for name in expected if name not in values and name not in {"BLOCK_STRING", "SQ_STRING"})
    phrases = [_DESCRIPTIONS[name] for name in values]
    for name in others:
        if name in _DESCRIPTIONS:
            phrases.append(_DESCRIPTIONS[name])
        elif name in terminal_text:
            phrases.append(f"`{terminal_text[name]}`")
    if len(phrases) > _MAX_LISTED:
        phrases = phrases[:_MAX_LISTED] + [f"{len(phrases) - _MAX_LISTED} more"]
    if len(phrases) == 1:
        return phrases[0]
    return "one of " + ", ".join(phrases)


def _keyword_texts(expected: frozenset[str]) -> list[str]:
    terminal_text = tables().terminal_text
    words = [terminal_text[name] for name in expected if name in terminal_text and terminal_text[name].isidentifier()]
    for name, words_of in (("RISK_LEVEL", ["low", "medium", "high"]), ("ESC_STATE", ["unacknowledged", "unresolved"])):
        if name in expected:
            words.extend(words_of)
    return words


def _previous_word(text: str, offset: int) -> str:
    """Return the token-like text just before `offset`, for "after `x`" in messages."""
    end = offset
    while end > 0 and text[end - 1].isspace():
        end -= 1
    start = end
    while start > 0 and (text[start - 1].isalnum() or text[start - 1] in "_-"):
        start -= 1
    if start == end and end > 0:
        start = end - 1
        if end >= 2 and text[end - 2 : end] in {"->", "==", "!=", "=~", "!~", "<=", ">="}:
            start = end - 2
    word = text[start:end]
    return word if "\n" not in word else ""


def _unclosed_block(token: Tok, expected: frozenset[str], source: SourceFile, span: Span) -> Diagnostic | None:
    """Explain a `}` that is missing before the end of the file or before the next declaration."""
    if "RBRACE" not in expected:
        return None
    at_end = token.type == "$END"
    starts_declaration = token.column == 1 and token.value in TOP_LEVEL_KEYWORDS and token.type != "IDENT"
    if not (at_end or starts_declaration):
        return None
    brace = _unclosed_brace(source, token.start)
    labels = (Label(brace, "this `{` is not closed"),) if brace is not None else ()
    if at_end:
        primary = brace or span
        return Diagnostic(
            Severity.ERROR,
            "IR0104",
            "unexpected end of file: a block is not closed",
            primary,
            label="this `{` has no matching `}`",
            help="add `}` after the last line of the block",
        )
    return Diagnostic(
        Severity.ERROR,
        "IR0104",
        f"missing `}}` before `{token.value}`",
        span,
        label="a new declaration starts here",
        labels=labels,
        help="close the block above with `}` before starting the next declaration",
    )


def _unclosed_brace(source: SourceFile, offset: int) -> Span | None:
    """Return the span of the last `{` before `offset` that no `}` closes."""
    open_braces: list[Tok] = []
    try:
        for token in tokenize(source.text[:offset], {}, lambda: {}, []):
            if token.type == "LBRACE":
                open_braces.append(token)
            elif token.type == "RBRACE" and open_braces:
                open_braces.pop()
    except LexError:
        return None
    return open_braces[-1].span(source.path) if open_braces else None


def _known_mistake(token: Tok, expected: frozenset[str], previous: str, span: Span, source: SourceFile) -> Diagnostic | None:
    """Recognise common mistakes and explain them better than an expected-token list can."""
    if token.type == "SQ_STRING":
        return Diagnostic(
            Severity.ERROR,
            "IR0105",
            "single quotes do not delimit strings",
            span,
            label="written in single quotes",
            help=f'write the value in double quotes: `"{token.value[1:-1]}"`',
        )
    if expected == {"DURATION"} or ("DURATION" in expected and "INT" not in expected):
        if token.type in {"INT", "NUMBER"}:
            return Diagnostic(
                Severity.ERROR,
                "IR0106",
                f"missing unit in duration `{token.value}`",
                span,
                label="a duration needs a unit",
                help=f"add a unit: `{token.value}ms`, `{token.value}s`, `{token.value}m`, `{token.value}h`, `{token.value}d` or `{token.value}w`",
            )
        if expected == {"DURATION"}:
            return Diagnostic(
                Severity.ERROR,
                "IR0106",
                f"missing duration after `{previous}`",
                span,
                label="expected a duration such as `30s` or `1h30m`",
            )
    if token.type == "CMP_OP" and token.value == "==" and "MATCH_OP" in expected:
        return Diagnostic(
            Severity.ERROR,
            "IR0107",
            "matchers use `=`, not `==`",
            span,
            label="Alertmanager matcher syntax",
            help='write `label = "value"`; `==` compares values in `when` expressions',
        )
    if token.type == "EQUAL" and "CMP_OP" in expected:
        return Diagnostic(
            Severity.ERROR,
            "IR0107",
            "expressions compare with `==`, not `=`",
            span,
            label="assignment is not allowed here",
            help=f"write `{_with_double_equals(source, token)}`",
        )
    if token.type == "LPAR" and _follows_name(source, token):
        return Diagnostic(
            Severity.ERROR,
            "IR0110",
            f"expressions have no functions: `{previous}(...)` cannot be called",
            span,
            label="a call is not allowed here",
            help='compare the field itself, or match it with a regex such as `label.x =~ "(?i)value"`',
        )
    return None


def _follows_name(source: SourceFile, token: Tok) -> bool:
    """Tell whether `(` directly follows a word, as in a function call."""
    before = source.text[: token.start]
    return bool(before) and (before[-1].isalnum() or before[-1] == "_")


def _with_double_equals(source: SourceFile, token: Tok) -> str:
    """Return the statement around `token` with its `=` written as `==`, for the help line."""
    line = source.line_text(token.line)
    fixed = (line[: token.column - 1] + "==" + line[token.column :]).strip()
    _, found, condition = fixed.rpartition("when ")
    return condition.strip() if found else fixed
