"""Rewrite one benchmark's section of docs/benchmarks.md and keep the rest of the file."""

from __future__ import annotations

from pathlib import Path


def replace_section(path: Path, name: str, text: str) -> Path:
    """Put `text` between the start and end markers of section `name`, appending the section when it is new.

    The markers are HTML comments, so they do not show in the rendered page.
    """
    start = f"<!-- section {name}: start -->"
    end = f"<!-- section {name}: end -->"
    block = f"{start}\n{text.rstrip()}\n{end}\n"
    current = path.read_text(encoding="utf-8") if path.exists() else ""

    if start in current and end in current:
        before, rest = current.split(start, 1)
        after = rest.split(end, 1)[1].lstrip("\n")
        updated = before + block + ("\n" + after if after else "")
    else:
        updated = current.rstrip("\n") + ("\n\n" if current else "") + block
    path.write_text(updated, encoding="utf-8")
    return path
