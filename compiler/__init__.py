"""The irules compiler: .irules sources to a checked project and its diagnostics.

Exceptions for bugs and I/O, diagnostics for user input:

    IrulesError
    ├── CompileFailed   the rules have errors; contains the diagnostics
    └── TargetError     an artifact could not be produced from a valid ruleset

Imports are lazy so that `irules --help` does not load the parser.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["CheckResult", "CompileFailed", "Diagnostic", "IrulesError", "Severity", "TargetError", "check_path", "check_text"]

if TYPE_CHECKING:
    from compiler.api import CheckResult, check_path, check_text
    from compiler.diagnostics import Diagnostic, Severity
    from compiler.errors import CompileFailed, IrulesError, TargetError

_LAZY = {
    "CheckResult": "compiler.api",
    "check_path": "compiler.api",
    "check_text": "compiler.api",
    "Diagnostic": "compiler.diagnostics",
    "Severity": "compiler.diagnostics",
    "CompileFailed": "compiler.errors",
    "IrulesError": "compiler.errors",
    "TargetError": "compiler.errors",
}


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'compiler' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module_name), name)
