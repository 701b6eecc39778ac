"""Run the real amtool (Debian's prometheus-alertmanager) from tests."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

AMTOOL = shutil.which("amtool")

# Outside CI a missing amtool skips; in CI it fails, because .ci/run installs it.
requires_amtool = pytest.mark.skipif(AMTOOL is None and not os.environ.get("CI"), reason="amtool is not installed")


def _amtool() -> str:
    # In CI amtool must exist: .ci/run installs it, and a skip would hide a broken install.
    assert AMTOOL is not None, "amtool not found; install Debian's prometheus-alertmanager"
    return AMTOOL


def check_config(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([_amtool(), "check-config", str(path)], capture_output=True, text=True, timeout=60, check=False)


def _label_argument(name: str, value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'{name}="{escaped}"'


def route_receivers(config: Path, labels: Mapping[str, str]) -> list[str]:
    """Return the receivers amtool's `config routes test` prints for one label set, in order."""
    arguments = [_label_argument(name, value) for name, value in sorted(labels.items())]
    completed = subprocess.run(
        [_amtool(), "config", "routes", "test", f"--config.file={config}", *arguments],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 0, f"amtool failed for {labels!r}: {completed.stderr}"
    output = completed.stdout.strip()
    return output.split(",") if output else []


def route_receivers_many(config: Path, label_sets: Iterable[Mapping[str, str]], workers: int = 8) -> list[list[str]]:
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda labels: route_receivers(config, labels), label_sets))
