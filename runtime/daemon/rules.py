"""The daemon's current ruleset: loading, atomic swaps, and keeping the last good one.

A reload compiles the sources (or reads a compiled `ruleset.json`) off the event
loop. When the new rules have errors, the daemon keeps serving the last good
ruleset and reports the diagnostics in the log and on `/status`.
"""

from __future__ import annotations

import datetime
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from compiler import ir
from runtime.policy import Policy

log = logging.getLogger("irules.rules")


class RulesError(Exception):
    """The rules could not be loaded; `diagnostics` has one line per problem."""

    def __init__(self, diagnostics: list[str]) -> None:
        super().__init__("\n".join(diagnostics))
        self.diagnostics = diagnostics


def load_ruleset(path: Path, environment: str | None) -> ir.Ruleset:
    """Compile `.irules` sources, or read a compiled `ruleset.json`; raise `RulesError` on problems."""
    if path.is_file() and path.suffix == ".json":
        return _read_compiled(path)
    from compiler.api import check_path
    from compiler.diagnostics import Severity, render_text

    if not path.exists():
        raise RulesError([f"{path}: no such file or folder"])
    result = check_path(path, environment)
    if result.has_errors:
        text = render_text([item for item in result.diagnostics if item.severity is Severity.ERROR], result.project.sources)
        raise RulesError([line for line in text.splitlines() if line.strip()])
    return result.ruleset()


def _read_compiled(path: Path) -> ir.Ruleset:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise RulesError([f"{path}:{error.lineno}:{error.colno}: invalid JSON: {error.msg}"]) from error
    except (OSError, UnicodeDecodeError) as error:
        raise RulesError([f"{path}: cannot read: {error}"]) from error
    try:
        return ir.Ruleset.model_validate(data)
    except ValueError as error:
        raise RulesError([f"{path}: not a ruleset this irules can load: {error}"]) from error


@dataclass(slots=True)
class RulesState:
    """The ruleset in force, when it was loaded, and the problems of the last failed reload."""

    path: Path
    environment: str | None
    policy: Policy | None = None
    loaded_at: datetime.datetime | None = None
    generation: int = 0
    last_error: list[str] = field(default_factory=list)
    last_error_at: datetime.datetime | None = None
    # Why the severity model asked for by `classify` was rejected, or None.
    classifier_error: str | None = None
    _models: dict[tuple[str, int | None], tuple[Any, str | None]] = field(default_factory=dict)

    def current(self) -> Policy:
        if self.policy is None:
            raise RuntimeError("no ruleset loaded yet")
        return self.policy

    def reload(self) -> bool:
        """Load the rules again; on errors keep the current ruleset. Return whether the new one is in force."""
        now = datetime.datetime.now(datetime.UTC)
        try:
            ruleset = load_ruleset(self.path, self.environment)
            policy = Policy(ruleset, self._classifier(ruleset))
        except RulesError as error:
            self.last_error = error.diagnostics
            self.last_error_at = now
            kept = f"keeping ruleset {self.policy.ruleset.source_digest[:12]}" if self.policy else "no ruleset in force yet"
            log.error(
                "rules reload failed with %d problem lines; %s:\n%s", len(error.diagnostics), kept, "\n".join(error.diagnostics)
            )
            return False
        # One assignment: readers see either the old policy or the new one, never a mix.
        self.policy = policy
        self.loaded_at = now
        self.generation += 1
        self.last_error = []
        self.last_error_at = None
        log.info(
            "rules loaded from %s (environment %s, digest %s, %d routes)",
            self.path,
            self.environment or "none",
            ruleset.source_digest[:12],
            _count_routes(ruleset.route),
        )
        return True

    def _classifier(self, ruleset: ir.Ruleset) -> Any:
        """Return the severity model the rules ask for with `classify`, or None on rules alone.

        A model that cannot be loaded (missing, tampered with, not a skops file) is
        rejected with one log line per file and digest; the daemon then runs on the
        rules alone and `/status` says why.
        """
        if not ruleset.severity.classify:
            self.classifier_error = None
            return None
        from runtime.triage.classifier import DEFAULT_MODEL, ModelError, load

        written = ruleset.severity.classify_model
        base = self.path if self.path.is_dir() else self.path.parent
        path = DEFAULT_MODEL if written is None else (base / written).resolve()
        try:
            stamp = path.stat().st_mtime_ns
        except OSError:
            stamp = None
        pinned = ruleset.severity.classify_model_version
        key = (f"{path}@{pinned or ''}", stamp)
        if key in self._models:
            model, self.classifier_error = self._models[key]
            return model
        try:
            model, error = load(path), None
            if pinned is not None and model.version != pinned:
                raise ModelError(path, f"its version is {model.version}, but the rules pin version {pinned}")
            log.info("severity model %s loaded (version %s)", path, model.version)
        except ModelError as rejected:
            model, error = None, str(rejected)
            log.error(
                "severity model %s rejected: %s; alerts that no severity rule matches keep the sender's severity "
                "or the fallback level",
                path,
                rejected,
            )
        self._models = {key: (model, error)}
        self.classifier_error = error
        return model

    def status(self) -> dict:
        ruleset = self.policy.ruleset if self.policy else None
        return {
            "path": str(self.path),
            "environment": self.environment,
            "loaded": ruleset is not None,
            "digest": ruleset.source_digest if ruleset else None,
            "loaded_at": self.loaded_at.isoformat() if self.loaded_at else None,
            "generation": self.generation,
            "last_error": self.last_error,
            "last_error_at": self.last_error_at.isoformat() if self.last_error_at else None,
            "classifier": None
            if ruleset is None or not ruleset.severity.classify
            else {"loaded": self.policy is not None and self.policy.classifier is not None, "error": self.classifier_error},
        }


def _count_routes(route: ir.Route) -> int:
    return 1 + sum(_count_routes(child) for child in route.routes)
