"""Shared fixtures: paths of the repository and of the shared fixtures beside it, and the fake SaaS servers."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
RULES = REPO / "rules"

# `fake_saas` and `smtp_server`: local servers speaking Slack's, PagerDuty's, Twilio's,
# Teams' and SMTP's protocols, for every test that sends notifications.
pytest_plugins = ["tests.runtime.fakes"]


@pytest.fixture
def anyio_backend() -> str:
    """Run anyio tests on asyncio only, the event loop the daemon uses."""
    return "asyncio"


@pytest.fixture
def repo() -> Path:
    return REPO
