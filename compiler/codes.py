"""Every diagnostic code, with a one-line summary and a longer explanation.

`irules codes CODE` prints the explanation. Ranges: IR01xx syntax, IR02xx
names, IR03xx values, IR04xx routing, IR05xx runbooks, IR06xx safety, IR07xx
expressions, IR08xx templates, IR09xx unused or unreachable declarations,
IR10xx files, IR11xx tests and scenarios, IR12xx artifacts.
"""

from __future__ import annotations

from typing import NamedTuple


class Code(NamedTuple):
    summary: str
    explanation: str


CODES: dict[str, Code] = {
    "IR0101": Code(
        "unexpected character",
        "A character appears that starts no token of the language, such as `@` or `;`\n"
        "outside a string. Remove it, or put the text inside double quotes.",
    ),
    "IR0102": Code(
        "unterminated string",
        'A string opened with `"` has no closing quote on the same line. Strings in double\n'
        'quotes cannot span lines; use a block string in triple quotes (`"""`) for text\n'
        "that spans several lines.",
    ),
    "IR0103": Code(
        "unexpected token",
        "The parser found a token where the grammar allows something else. The message lists\n"
        "what may stand at that place. When a misspelt keyword is the cause, the help line\n"
        "names the closest keyword.",
    ),
    "IR0104": Code(
        "unexpected end of file",
        "The file ends inside a declaration, most often because a closing `}` is missing.\n"
        "Count the braces of the declaration that the caret points into.",
    ),
    "IR0105": Code(
        "single-quoted string",
        "Strings are written in double quotes. Alertmanager keeps single quotes as part of a\n"
        "matcher value, so `label = 'x'` would match the three-character value `'x'` and\n"
        "never the value `x`. irules rejects single quotes to rule out that silent mismatch.",
    ),
    "IR0106": Code(
        "invalid or missing duration",
        "Durations need a unit: `ms`, `s`, `m`, `h`, `d` or `w`, and may be compound such as\n"
        "`1h30m`. A bare number is not a duration.",
    ),
    "IR0107": Code(
        "wrong comparison operator",
        "Matchers (in `match`, `inhibit` and `service`) use Alertmanager's operators `=`, `!=`,\n"
        "`=~` and `!~`. Expressions (in `when` and mappings) compare with `==`, `!=`, `<`,\n"
        "`<=`, `>`, `>=`, `=~`, `!~`, `in` and `not in`.",
    ),
    "IR0108": Code(
        "nested too deeply",
        "An expression or a route tree is nested more than 64 levels deep. Nothing in a real\n"
        "policy needs that depth, and the checker walks these trees recursively, so irules\n"
        "rejects them. Split a long condition into several rules or flatten the routes.",
    ),
    "IR0109": Code(
        "invalid string escape",
        "A `\\uXXXX` escape names half of a UTF-16 surrogate pair (D800 to DFFF) without the\n"
        "other half. Such a value is not a character and cannot be written to a UTF-8 file,\n"
        "a YAML artifact or JSON. Write the character itself, or both halves in order.",
    ),
    "IR0110": Code(
        "function call in an expression",
        "Expressions compare fields with literals and have no functions. Instead of\n"
        '`lower(label.x) == "db"`, match with a case-insensitive regex:\n'
        '`label.x =~ "(?i)db"`. Templates (`{{ ... }}`) are Jinja and do have filters.',
    ),
    "IR0201": Code(
        "nested environment",
        "An `environment` block holds declarations that replace or extend the base ones for\n"
        "that environment. It cannot contain another environment.",
    ),
    "IR0202": Code(
        "unknown environment",
        "`--env NAME` selects the `environment NAME { ... }` blocks of the project. The project\n"
        "declares environments, but none with this name.",
    ),
    "IR0203": Code(
        "unknown name",
        "A reference names a declaration that does not exist, or one of another kind. All\n"
        "files of a project form one namespace, and the standard library adds its actions.\n"
        "Teams count as receivers: a route may send to a team.",
    ),
    "IR0204": Code(
        "duplicate declaration",
        "Two declarations of the same kind share a name. irules never lets the last one win\n"
        "silently: rename or merge them. Teams and receivers share one namespace because\n"
        "both become Alertmanager receivers.",
    ),
    "IR0205": Code(
        "invalid `use`",
        "`use runbooks [rb-001, ...]` turns on stock runbooks of the standard library. Nothing\nelse can be enabled with `use`.",
    ),
    "IR1001": Code("file is not UTF-8", "Rules files must be encoded in UTF-8."),
    "IR1002": Code("file cannot be read", "The file could not be opened; the message gives the reason."),
    "IR1003": Code(
        "no rules files",
        "The folder holds no file ending in `.irules`, searched recursively. irules reads\n"
        "every `.irules` file below the folder it is given as one project.",
    ),
    "IR1201": Code(
        "the artifacts cannot be generated",
        "The rules pass every check, but a target cannot turn them into its artifact,\n"
        "so `irules compile` would stop. Examples: an `email` channel while `settings`\n"
        "has no `smtp` server with a `from` address; a `slack` channel without `url`\n"
        "while `settings` has no `slack_api_url`; a channel that only the daemon can\n"
        "deliver (`sms`, a `pagerduty` channel with only an `escalation_policy`) while\n"
        "`settings` has no `daemon_url`. The message names what to set.",
    ),
}


def all_codes() -> dict[str, Code]:
    """Return every code: the ones above and each check module's own `CODES`."""
    from compiler.checks import check_modules

    merged = dict(CODES)
    for module in check_modules():
        merged.update(getattr(module, "CODES", {}))
    return merged


def explain(code: str) -> str | None:
    entry = all_codes().get(code.upper())
    if entry is None:
        return None
    return f"{code.upper()}: {entry.summary}\n\n{entry.explanation}\n"
