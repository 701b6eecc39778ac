"""The Alertmanager release a project targets, which decides what the generated configuration may use."""

from __future__ import annotations

import re

from compiler.checks.context import Context

SUPPORTED_VERSIONS = ((0, 25), (0, 26), (0, 27), (0, 28))
DEFAULT_VERSION = (0, 25)

_VERSION = re.compile(r"(\d+)\.(\d+)(?:\.\d+)?")


def alertmanager_version(context: Context) -> tuple[int, int]:
    """Return the targeted Alertmanager version as `(major, minor)`, which is 0.25 unless `settings` sets another."""
    version = DEFAULT_VERSION
    for settings in context.symbols.settings:
        for prop in settings.items:
            if prop.key != "alertmanager_version":
                continue
            parsed = parse_version(prop.args[0].value)
            if parsed in SUPPORTED_VERSIONS:
                version = parsed
    return version


def parse_version(text: str) -> tuple[int, int] | None:
    """Parse `0.27` or `0.27.1` into `(0, 27)`, or return None for anything else."""
    match = _VERSION.fullmatch(text.strip())
    return (int(match.group(1)), int(match.group(2))) if match else None


def version_text(version: tuple[int, int]) -> str:
    return f"{version[0]}.{version[1]}"
