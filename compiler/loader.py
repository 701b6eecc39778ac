"""Load a rules project: every .irules file of a folder, the standard library and one environment.

All files form one namespace. Syntax errors are collected from every file:
after an error the parser skips to the next top-level declaration, so one
run reports every broken declaration.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from compiler import ast
from compiler.diagnostics import DiagnosticSink
from compiler.lexer import LexError
from compiler.parse import InvalidEscape, NestedTooDeep, ParseFailed, parse_text
from compiler.span import SourceFile
from compiler.suggest import closest
from compiler.syntax_errors import TOP_LEVEL_KEYWORDS, lex_error_diagnostic, parse_error_diagnostic
from compiler.transform import MAX_NESTING

_DECL_START = re.compile(r"^(?:" + "|".join(TOP_LEVEL_KEYWORDS) + r")\b", re.M)
_MAX_SYNTAX_ERRORS_PER_FILE = 50

# Declarations that an environment replaces whole, by kind and name.
_SINGLETONS = (ast.RouteDecl, ast.SeverityDecl, ast.PagerDuty, ast.Slack)
_MERGED = (ast.Settings, ast.Defaults)


@dataclass(slots=True)
class Project:
    """The parsed project: its files, and its declarations after the environment is applied."""

    root: str
    sources: dict[str, SourceFile] = field(default_factory=dict)
    modules: list[ast.Module] = field(default_factory=list)
    decls: list[ast.Decl] = field(default_factory=list)
    stdlib_paths: set[str] = field(default_factory=set)
    environment: str | None = None
    environment_names: list[str] = field(default_factory=list)
    syntax_ok: bool = True

    def is_stdlib(self, decl: ast.Decl) -> bool:
        return decl.span.path in self.stdlib_paths


def stdlib_dir() -> Path:
    """Return the folder of the standard library's .irules files."""
    beside_source = Path(__file__).resolve().parent.parent / "rules"
    if beside_source.is_dir():
        return beside_source
    return Path(str(resources.files("irules_rules")))


def display_path(path: Path) -> str:
    """Return `path` relative to the working directory when it lies below it, else absolute."""
    try:
        relative = os.path.relpath(path)
    except ValueError:
        return str(path)
    return str(path.resolve()) if relative.startswith("..") else relative


def find_rule_files(root: Path) -> list[Path]:
    if root.is_file():
        return [root]
    return sorted(path for path in root.rglob("*.irules") if path.is_file())


def load_project(root: Path, environment: str | None, sink: DiagnosticSink, *, with_stdlib: bool = True) -> Project:
    """Parse every file below `root` and the standard library, then apply `environment`.

    Problems go to `sink`, and the returned project contains whatever parsed.
    """
    project = Project(root=display_path(root), environment=environment)
    paths = [(path, False) for path in find_rule_files(root)]
    if not paths:
        sink.error(
            "IR1003",
            f"no .irules files found in `{display_path(root)}`",
            None,
            help="point irules at the folder of your rules, or create one with a `.irules` file",
        )
        project.syntax_ok = False
    if with_stdlib:
        paths += [(path, True) for path in find_rule_files(stdlib_dir())]

    for path, is_stdlib in paths:
        shown = display_path(path)
        module = _load_file(path, shown, project, sink)
        if module is None:
            continue
        if is_stdlib:
            project.stdlib_paths.add(shown)
        project.modules.append(module)

    project.decls = _apply_environment(project, sink)
    return project


def load_text(text: str, path: str, sink: DiagnosticSink) -> Project:
    """Load one in-memory file as a whole project, without the standard library."""
    project = Project(root=path)
    source = SourceFile(path, text)
    project.sources[path] = source
    module = parse_recovering(source, sink)
    project.syntax_ok = not sink.has_errors
    project.modules.append(module)
    project.decls = _apply_environment(project, sink)
    return project


def _load_file(path: Path, shown: str, project: Project, sink: DiagnosticSink) -> ast.Module | None:
    try:
        # utf-8-sig drops a byte-order mark that some editors write first.
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as error:
        sink.error("IR1001", f"file `{shown}` is not valid UTF-8 (byte {error.start})", None)
        project.syntax_ok = False
        return None
    except OSError as error:
        sink.error("IR1002", f"cannot read `{shown}`: {error.strerror}", None)
        project.syntax_ok = False
        return None
    source = SourceFile(shown, text)
    project.sources[shown] = source
    before = len(sink.items)
    module = parse_recovering(source, sink)
    if any(item.severity == "error" for item in sink.items[before:]):
        project.syntax_ok = False
    return module


def parse_recovering(source: SourceFile, sink: DiagnosticSink) -> ast.Module:
    """Parse a file; on a syntax error, report it, blank out that declaration and parse again."""
    text = source.text
    for _ in range(_MAX_SYNTAX_ERRORS_PER_FILE):
        try:
            return parse_text(text, source.path)
        except LexError as error:
            sink.extend([lex_error_diagnostic(error, source.path)])
            offset = error.offset
        except ParseFailed as error:
            sink.extend([parse_error_diagnostic(error, source)])
            offset = error.token.start
        except InvalidEscape as error:
            sink.error(
                "IR0109",
                f"invalid escape `{error.escape}` in string",
                error.span,
                label="half of a surrogate pair, not a character",
                help="write the character itself, or both halves of the pair (`\\uD83D\\uDE00`)",
            )
            offset = error.span.start
        except NestedTooDeep as error:
            sink.error(
                "IR0108",
                f"{error.what} nested more than {MAX_NESTING} levels deep",
                error.span,
                help="split it: give parts of the condition their own rules, or flatten the route tree",
            )
            offset = error.span.start
        blanked = _blank_declaration(text, offset)
        if blanked == text:
            break
        text = blanked
    return ast.Module(span=source.span(0, len(source.text)), decls=[])


def _blank_declaration(text: str, offset: int) -> str:
    """Replace the top-level declaration around `offset` with spaces, keeping line breaks."""
    start = 0
    for match in _DECL_START.finditer(text, 0, offset + 1):
        if match.start() <= offset:
            start = match.start()
    following = _DECL_START.search(text, max(offset, start) + 1)
    end = following.start() if following else len(text)
    if end <= start:
        end = len(text)
    middle = re.sub(r"[^\n]", " ", text[start:end])
    return text[:start] + middle + text[end:]


def _apply_environment(project: Project, sink: DiagnosticSink) -> list[ast.Decl]:
    base: list[ast.Decl] = []
    overrides: list[ast.Environment] = []
    for module in project.modules:
        for decl in module.decls:
            if isinstance(decl, ast.Environment):
                overrides.append(decl)
                if decl.name.value not in project.environment_names:
                    project.environment_names.append(decl.name.value)
            else:
                base.append(decl)

    for environment in overrides:
        for decl in environment.decls:
            if isinstance(decl, ast.Environment):
                sink.error(
                    "IR0201",
                    "an environment cannot contain another environment",
                    decl.keyword_span,
                    help="move the inner block to the top level of a file",
                )

    wanted = project.environment
    if wanted is None:
        return base
    selected = [environment for environment in overrides if environment.name.value == wanted]
    if not selected and project.environment_names:
        suggestion = closest(wanted, project.environment_names)
        declared = ", ".join(f"`{name}`" for name in project.environment_names)
        sink.error(
            "IR0202",
            f"unknown environment `{wanted}`",
            None,
            help=(
                f"an environment with a similar name exists: `{suggestion}`"
                if suggestion
                else f"declared environments: {declared}"
            ),
        )
        return base
    for environment in selected:
        for decl in environment.decls:
            if not isinstance(decl, ast.Environment):
                base = _override(base, decl)
    return base


def _override(decls: list[ast.Decl], new: ast.Decl) -> list[ast.Decl]:
    """Return `decls` with `new` merged in, replaced by kind and name, or appended."""
    if isinstance(new, _MERGED):
        for index, old in enumerate(decls):
            if type(old) is type(new):
                keys = {item.key for item in new.items}
                merged = [item for item in old.items if item.key not in keys] + list(new.items)
                decls[index] = type(new)(span=new.span, keyword_span=new.keyword_span, items=merged)
                return decls
        return decls + [new]
    key = _identity(new)
    if key is not None:
        for index, old in enumerate(decls):
            if _identity(old) == key:
                decls[index] = new
                return decls
    return decls + [new]


def _identity(decl: ast.Decl) -> tuple[str, str] | None:
    if isinstance(decl, _SINGLETONS):
        return (type(decl).__name__, "")
    name = decl.decl_name
    if isinstance(decl, (ast.Team, ast.Receiver)) and name is not None:
        # Teams and receivers share one namespace: both compile to receivers.
        return ("receiver", name.value)
    if name is not None:
        return (type(decl).__name__ + getattr(decl, "kind", ""), name.value)
    return None
