"""The README's first command produces the output the README shows."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO


def first_command() -> list[str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    block = re.search(r"```sh\n(.+?)\n```", text, re.S)
    assert block is not None, "README.md must open with a sh code block"
    install, separator, run = block.group(1).partition(" && ")
    assert separator and install.startswith("pip install"), block.group(1)
    return shlex.split(run)


def test_readme_first_command(tmp_path: Path) -> None:
    argv = first_command()
    assert argv[:2] == ["irules", "handle"]
    state = argv.index("--state")
    argv[state + 1] = str(tmp_path / "state")
    done = subprocess.run([sys.executable, "-m", "runtime.cli", *argv[1:]], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "payload 1 from alertmanager: alerts, 1 alert"
    assert re.fullmatch(r"INC-\d{4}-0001  APIHighLatency: p99 latency of the public API above 800 ms", lines[1])
    assert "  severity: high (set by a severity rule)" in lines
    assert "  team: application" in lines
    assert (tmp_path / "state" / "irules.db").is_file()
