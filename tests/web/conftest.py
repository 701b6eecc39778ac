"""Fixtures of the web view tests: a daemon served in-process on a real SQLite store, and the store fixtures on both backends."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from runtime.daemon.app import build_app
from runtime.daemon.service import Daemon, DaemonConfig
from tests.runtime.conftest import postgres_schema_url, store, store_url  # noqa: F401
from tests.runtime.daemon_process import alertmanager_webhook

RULES = """
settings {
  incident_id_format "INC-{number}"
  timezone "UTC"
}

receiver ops {
  webhook "http://127.0.0.1:9/ops"
}

route {
  receiver ops
  group_by [alertname, service]
}

team infrastructure {
  webhook "http://127.0.0.1:9/infrastructure"
  members ["alice@example.com"]
}

service api {
  team infrastructure
  depends_on [database]
  tier 1
  match service = "api"
}

service database {
  team infrastructure
  tier 1
  match service = "database"
}

runbook look-then-change "Look, then change" {
  manual

  step look {
    run ["tool", "get", "{{ label.service }}"]
    read_only
  }

  step approval {
    approve from infrastructure timeout 1h
  }

  step change {
    run ["tool", "set", "{{ label.service }}"]
    mutating
    on_failure undo
  }

  step undo {
    run ["tool", "undo", "{{ label.service }}"]
  }
}
"""

HOSTILE_LABEL = "<script>alert(1)</script>"
HOSTILE_SUMMARY = "<img src=x onerror=alert(2)> latency & more"
CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')


def alertmanager_body(name: str, labels: dict[str, str], annotations: dict[str, str] | None = None) -> bytes:
    """Return an Alertmanager webhook body with one firing alert."""
    return alertmanager_webhook(name, labels, annotations)


def csrf_of(html: str) -> str:
    """Return the CSRF token of the first form on a page."""
    found = CSRF_FIELD.search(html)
    assert found is not None, f"no csrf_token field on the page:\n{html[:2000]}"
    return found.group(1)


@dataclass
class Served:
    """A daemon whose app a client calls in-process; `apply` runs the pipeline on what the webhooks stored."""

    client: httpx.AsyncClient
    daemon: Daemon

    async def post_alert(self, name: str, labels: dict[str, str], annotations: dict[str, str] | None = None) -> None:
        response = await self.client.post(
            "/hooks/alertmanager",
            content=alertmanager_body(name, labels, annotations),
            headers={"content-type": "application/json"},
        )
        assert response.status_code == 202, response.text
        assert self.daemon.pipeline is not None
        await anyio.to_thread.run_sync(self.daemon.pipeline.process_pending)

    async def page(self, path: str) -> httpx.Response:
        response = await self.client.get(path)
        assert response.status_code == 200, f"GET {path}: {response.status_code} {response.text[:500]}"
        return response

    def incident(self, reference: str) -> dict[str, Any]:
        from runtime import incidents

        assert self.daemon.store is not None
        return incidents.show(self.daemon.store, reference)


def daemon_config(folder: Path, api_token: str | None = None) -> DaemonConfig:
    (folder / "rules").mkdir(exist_ok=True)
    (folder / "rules" / "rules.irules").write_text(RULES, encoding="utf-8")
    return DaemonConfig(
        rules=folder / "rules",
        environment=None,
        database_url=f"sqlite:///{folder / 'irules.db'}",
        allow_unauthenticated=True,
        api_token=api_token,
        watch=False,
        notify=False,
        runbooks=False,
    )


@asynccontextmanager
async def serving(config: DaemonConfig, base_url: str = "http://127.0.0.1") -> AsyncIterator[Served]:
    """Start the daemon's store, rules and writer, and yield a client that calls its ASGI app directly."""
    daemon = Daemon(config)
    await daemon.start()
    assert daemon.writer is not None and daemon.store is not None
    try:
        async with anyio.create_task_group() as group:
            group.start_soon(daemon.writer.run)
            transport = httpx.ASGITransport(app=build_app(daemon))
            async with httpx.AsyncClient(transport=transport, base_url=base_url) as client:
                yield Served(client, daemon)
            daemon.writer.close()
    finally:
        daemon.store.close()


@pytest.fixture
def open_config(tmp_path: Path) -> DaemonConfig:
    """A daemon without an API token: the web view is open, as the API is."""
    return daemon_config(tmp_path)


@pytest.fixture
def token_config(tmp_path: Path) -> Iterator[DaemonConfig]:
    """A daemon with an API token: the web view asks for it on its login page."""
    yield daemon_config(tmp_path, api_token="web-test-token-5f1c")
