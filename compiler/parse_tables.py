"""The LALR(1) tables of the .irules grammar, built by lark once and cached as JSON.

Importing lark and loading its own cache took about 50 ms on the machine of
docs/benchmarks.md (measured with `python -X importtime`), a tenth of a
1,000-route compile. The tables that `compiler.parse` drives are plain data, so
they are written to the user's cache folder after the first build, keyed by
a digest of the grammar, and later processes load them without lark.

A reduction keeps what lark's tree builder would do with the children of a
rule: which children it keeps, which helper rules (names starting with `_`)
it inlines, where `None` stands for a missing `[optional]` part, and
whether a `?rule` with one child is replaced by that child.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any, NamedTuple

GRAMMAR_PATH = Path(__file__).parent / "grammar" / "irules.lark"
# Change when the JSON layout or the meaning of a field changes, so old caches are rebuilt.
FORMAT = 1
_WORD_ALTERNATIVES = re.compile(r"^\(\?:((?:[A-Za-z_]+\|)*[A-Za-z_]+)\)$")


class Rule(NamedTuple):
    """The shape that one grammar rule gives its children when it reduces.

    `keep` lists the children that reach the callback as `(index, inline,
    placeholders)`: the child's position, whether it is a helper rule whose
    own children are spliced in, and how many `None` placeholders come
    before it. `None` means every child is kept as it is.
    """

    origin: str
    size: int
    callback: str
    expand_single: bool
    keep: tuple[tuple[int, bool, int], ...] | None
    trailing_placeholders: int


class GrammarTables(NamedTuple):
    """The action table, the rules it reduces by, and the keyword terminals for the lexer.

    In `actions`, a number of 0 or more shifts the terminal (or, for a rule
    name, goes to that state), and a negative number `-n` reduces by `rules[n - 1]`.
    """

    actions: dict[int, dict[str, int]]
    start: int
    end: int
    rules: tuple[Rule, ...]
    keyword_terminals: tuple[tuple[str, tuple[str, ...]], ...]
    terminal_text: dict[str, str]


def load_tables(cache_dir: Path | None = None) -> GrammarTables:
    """Return the tables from the cache, or build them with lark and write the cache.

    A missing, unreadable or outdated cache file is rebuilt. When the cache
    folder cannot be written, the tables are built in every process.
    """
    grammar = GRAMMAR_PATH.read_text(encoding="utf-8")
    digest = hashlib.sha256(f"{FORMAT}\n{grammar}".encode()).hexdigest()
    path = (cache_dir or default_cache_dir()) / f"parser-tables-{digest[:32]}.json"
    try:
        return _from_json(json.loads(path.read_text(encoding="utf-8")), digest)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass
    data = _build(grammar)
    tables = _from_json({**data, "digest": digest}, digest)
    _write(path, {**data, "digest": digest})
    return tables


def default_cache_dir() -> Path:
    """Return `$XDG_CACHE_HOME/irules`, or `~/.cache/irules` when that variable is unset."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "irules"


def _write(path: Path, data: dict[str, Any]) -> None:
    """Write the cache atomically. A folder that cannot be written only costs the next process a rebuild."""
    import tempfile

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(descriptor, "w", encoding="utf-8") as stream:
                json.dump(data, stream, separators=(",", ":"))
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
    except OSError:
        return


def _from_json(data: dict[str, Any], digest: str) -> GrammarTables:
    """Rebuild the tables from their JSON form.

    Raises:
        ValueError: the data was written for another grammar or format, or an action points nowhere.
    """
    if data["format"] != FORMAT or data["digest"] != digest:
        raise ValueError("the cached parser tables belong to another grammar or format")
    rules = tuple(
        Rule(
            origin=str(origin),
            size=int(size),
            callback=str(callback),
            expand_single=bool(expand_single),
            keep=None if keep is None else tuple((int(index), bool(inline), int(count)) for index, inline, count in keep),
            trailing_placeholders=int(trailing),
        )
        for origin, size, callback, expand_single, keep, trailing in data["rules"]
    )
    actions = {int(state): {str(symbol): int(action) for symbol, action in row.items()} for state, row in data["actions"].items()}
    for row in actions.values():
        for action in row.values():
            if action < -len(rules) or (action >= 0 and action not in actions):
                raise ValueError(f"the cached parser tables have an action {action} that points nowhere")
    return GrammarTables(
        actions=actions,
        start=int(data["start"]),
        end=int(data["end"]),
        rules=rules,
        keyword_terminals=tuple((str(name), tuple(map(str, words))) for name, words in data["keyword_terminals"]),
        terminal_text={str(name): str(text) for name, text in data["terminal_text"].items()},
    )


def _build(grammar: str) -> dict[str, Any]:
    """Build the tables with lark and return their JSON form."""
    from lark import Lark
    from lark.lexer import PatternRE, PatternStr
    from lark.parse_tree_builder import maybe_create_child_filter
    from lark.parsers.lalr_analysis import Shift

    lark = Lark(grammar, parser="lalr", lexer="basic", keep_all_tokens=True, maybe_placeholders=True, cache=True)
    rule_numbers = {rule: number for number, rule in enumerate(lark.rules, start=1)}
    rules = [_rule_json(rule, maybe_create_child_filter) for rule in lark.rules]
    parse_table = lark.parser.parser.parser.parse_table
    actions = {
        state: {str(symbol): argument if kind is Shift else -rule_numbers[argument] for symbol, (kind, argument) in row.items()}
        for state, row in parse_table.states.items()
    }
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
    return {
        "format": FORMAT,
        "actions": actions,
        "start": parse_table.start_states["start"],
        "end": parse_table.end_states["start"],
        "rules": rules,
        "keyword_terminals": keyword_terminals,
        "terminal_text": terminal_text,
    }


def _rule_json(rule: Any, maybe_create_child_filter: Any) -> list[Any]:
    """Describe one lark rule as lark's tree builder would shape its children.

    The builder's child filter is a `functools.partial` whose arguments list
    the kept children, with placeholder counts only when the rule has
    `[optional]` parts.
    """
    options = rule.options
    child_filter = maybe_create_child_filter(rule.expansion, options.keep_all_tokens, False, options.empty_indices)
    keep: list[tuple[int, bool, int]] | None = None
    trailing = 0
    if child_filter is not None:
        if len(child_filter.args) == 2:
            included, trailing = child_filter.args
            keep = [(index, inline, count) for index, inline, count in included]
        else:
            keep = [(index, inline, 0) for index, inline in child_filter.args[0]]
    callback = rule.alias or options.template_source or rule.origin.name
    expand_single = bool(options.expand1) and not rule.alias
    return [str(rule.origin.name), len(rule.expansion), str(callback), expand_single, keep, trailing]
