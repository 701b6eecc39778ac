"""Shared fixtures: paths of the repository and of the shared fixtures beside it."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
RULES = REPO / "rules"


@pytest.fixture
def repo() -> Path:
    return REPO
