"""Webhooks served before Starlette's middleware, in-process against a real SQLite store: responses, errors, edge cases."""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from runtime.daemon import app as app_module
from runtime.daemon.app import build_app
from runtime.daemon.service import Daemon, DaemonConfig
from runtime.ingest import MAX_BODY_BYTES

FIXTURES = Path(__file__).parent / "fixtures"
TOKEN = "hooks-token-for-tests"
RULES = """
source alertmanager {
  auth bearer secret("IRULES_TEST_HOOKS_TOKEN")
}

receiver ops {
  webhook "http://127.0.0.1:9/ops"
}

route {
  receiver ops
}
"""
AUTHORIZED = {"authorization": f"Bearer {TOKEN}", "content-type": "application/json"}

Check = Callable[[httpx.AsyncClient, Daemon], Awaitable[None]]


@pytest.fixture
def config(tmp_path: Path) -> DaemonConfig:
    return daemon_config(tmp_path)


def daemon_config(tmp_path: Path, rules: str = RULES, secrets: dict[str, str] | None = None) -> DaemonConfig:
    """Write `rules` and `secrets` (by default this file's token) under `tmp_path`, and return a config for an in-process daemon on SQLite."""
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "rules.irules").write_text(rules, encoding="utf-8")
    (tmp_path / "secrets").mkdir()
    for name, value in ({"IRULES_TEST_HOOKS_TOKEN": TOKEN} if secrets is None else secrets).items():
        (tmp_path / "secrets" / name).write_text(value, encoding="utf-8")
    return DaemonConfig(
        rules=tmp_path / "rules",
        environment=None,
        database_url=f"sqlite:///{tmp_path / 'irules.db'}",
        secrets_dir=tmp_path / "secrets",
        watch=False,
        notify=False,
        runbooks=False,
    )


@asynccontextmanager
async def running(config: DaemonConfig, root_path: str = "") -> AsyncIterator[tuple[httpx.AsyncClient, Daemon]]:
    """Start the daemon's store, rules and writer, and yield a client that calls its ASGI app directly."""
    daemon = Daemon(config)
    await daemon.start()
    assert daemon.writer is not None and daemon.store is not None
    try:
        async with anyio.create_task_group() as group:
            group.start_soon(daemon.writer.run)
            transport = httpx.ASGITransport(app=build_app(daemon), root_path=root_path)
            async with httpx.AsyncClient(transport=transport, base_url="http://daemon") as client:
                yield client, daemon
            daemon.writer.close()
    finally:
        daemon.store.close()


def run(config: DaemonConfig, check: Check, root_path: str = "") -> None:
    async def main() -> None:
        async with running(config, root_path) as (client, daemon):
            await check(client, daemon)

    anyio.run(main)


def two_alerts() -> bytes:
    return (FIXTURES / "alertmanager" / "firing-two-alerts.json").read_bytes()


def stored(config: DaemonConfig, query: str) -> list[tuple[Any, ...]]:
    path = config.database_url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as connection:
        return connection.execute(query).fetchall()


async def call_asgi(daemon: Daemon, headers: list[tuple[bytes, bytes]], messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Call the app with a raw ASGI scope, feed it `messages`, and return what it sent."""
    app = build_app(daemon)
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/hooks/alertmanager",
        "raw_path": b"/hooks/alertmanager",
        "root_path": "",
        "query_string": b"",
        "headers": headers,
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8080),
    }
    pending = list(messages)
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return pending.pop(0) if pending else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent


def raw_headers(body_length: int | str) -> list[tuple[bytes, bytes]]:
    return [
        (b"authorization", f"Bearer {TOKEN}".encode()),
        (b"content-type", b"application/json"),
        (b"content-length", str(body_length).encode()),
    ]


def test_hook_accepts_webhook(config: DaemonConfig) -> None:
    async def check(client: httpx.AsyncClient, daemon: Daemon) -> None:
        response = await client.post("/hooks/alertmanager", content=two_alerts(), headers=AUTHORIZED)

        assert response.status_code == 202
        assert response.headers["content-type"] == "application/json"
        assert response.json() == {"payload_id": 1, "kind": "alerts", "alerts": 2}

    run(config, check)
    assert stored(config, "SELECT id, source, alert_count FROM payloads") == [(1, "alertmanager", 2)]
    assert stored(config, "SELECT count(*) FROM alert_events WHERE payload_id = 1") == [(2,)]


def test_hook_accepts_put(config: DaemonConfig) -> None:
    async def check(client: httpx.AsyncClient, daemon: Daemon) -> None:
        response = await client.put("/hooks/alertmanager", content=two_alerts(), headers=AUTHORIZED)

        assert response.status_code == 202
        assert response.json()["alerts"] == 2

    run(config, check)


def test_hook_counts_accepted_payloads(config: DaemonConfig) -> None:
    async def check(client: httpx.AsyncClient, daemon: Daemon) -> None:
        await client.post("/hooks/alertmanager", content=two_alerts(), headers=AUTHORIZED)

        assert daemon.metrics.payloads.labels("alertmanager", "accepted")._value.get() == 1
        assert daemon.metrics.alerts.labels("alertmanager")._value.get() == 2

    run(config, check)


def test_hook_rejects_invalid_json(config: DaemonConfig) -> None:
    async def check(client: httpx.AsyncClient, daemon: Daemon) -> None:
        response = await client.post("/hooks/alertmanager", content=b'{"version": "4",', headers=AUTHORIZED)

        assert response.status_code == 400
        assert response.json()["error"].startswith("body is not valid JSON")
        assert response.json()["dead_letter"] == 1

    run(config, check)
    assert stored(config, "SELECT status, body FROM dead_letters") == [(400, b'{"version": "4",')]
    assert stored(config, "SELECT count(*) FROM payloads") == [(0,)]


def test_hook_rejects_wrong_token(config: DaemonConfig) -> None:
    async def check(client: httpx.AsyncClient, daemon: Daemon) -> None:
        response = await client.post("/hooks/alertmanager", content=two_alerts(), headers={"authorization": "Bearer wrong"})

        assert response.status_code == 403
        assert response.json()["error"] == "invalid bearer token"

    run(config, check)


def test_hook_get_is_not_allowed(config: DaemonConfig) -> None:
    async def check(client: httpx.AsyncClient, daemon: Daemon) -> None:
        response = await client.get("/hooks/alertmanager")

        assert response.status_code == 405
        assert response.json()["error"] == "Method Not Allowed: GET /hooks/alertmanager"

    run(config, check)


def test_hook_nested_path_names_no_source(config: DaemonConfig) -> None:
    async def check(client: httpx.AsyncClient, daemon: Daemon) -> None:
        response = await client.post("/hooks/alertmanager/extra", content=two_alerts(), headers=AUTHORIZED)

        assert response.status_code == 404
        assert response.json()["error"].startswith("no source receives at /hooks/alertmanager/extra")

    run(config, check)


def test_hook_empty_source_names_no_source(config: DaemonConfig) -> None:
    async def check(client: httpx.AsyncClient, daemon: Daemon) -> None:
        response = await client.post("/hooks/", content=two_alerts(), headers=AUTHORIZED)

        assert response.status_code == 404
        assert response.json()["error"].startswith("no source receives at /hooks/")

    run(config, check)


def test_hook_under_root_path_goes_through_starlette(config: DaemonConfig) -> None:
    async def check(client: httpx.AsyncClient, daemon: Daemon) -> None:
        response = await client.post("/irules/hooks/alertmanager", content=two_alerts(), headers=AUTHORIZED)

        assert response.status_code == 202
        assert response.json() == {"payload_id": 1, "kind": "alerts", "alerts": 2}

    run(config, check, root_path="/irules")


def test_hook_while_starting_is_unavailable(config: DaemonConfig) -> None:
    async def check(client: httpx.AsyncClient, daemon: Daemon) -> None:
        daemon.ready = False
        response = await client.post("/hooks/alertmanager", content=two_alerts(), headers=AUTHORIZED)

        assert response.status_code == 503
        assert response.json() == {"error": "the daemon is starting; retry shortly"}

    run(config, check)


def test_hook_unexpected_error_is_json_500(
    config: DaemonConfig, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("normaliser bug")

    monkeypatch.setattr(app_module, "receive", broken)

    async def check(client: httpx.AsyncClient, daemon: Daemon) -> None:
        with caplog.at_level(logging.ERROR, logger="irules.http"):
            response = await client.post("/hooks/alertmanager", content=two_alerts(), headers=AUTHORIZED)

        assert response.status_code == 500
        assert "internal error" in response.json()["error"]
        assert "normaliser bug" not in response.text

    run(config, check)
    assert any("receiving a webhook failed" in record.getMessage() and record.exc_info for record in caplog.records)


def test_hook_reads_body_in_chunks(config: DaemonConfig) -> None:
    body = two_alerts()
    half = len(body) // 2

    async def check(client: httpx.AsyncClient, daemon: Daemon) -> None:
        sent = await call_asgi(
            daemon,
            raw_headers(len(body)),
            [
                {"type": "http.request", "body": body[:half], "more_body": True},
                {"type": "http.request", "body": b"", "more_body": True},
                {"type": "http.request", "body": body[half:], "more_body": False},
            ],
        )

        assert sent[0]["status"] == 202
        assert json.loads(sent[1]["body"]) == {"payload_id": 1, "kind": "alerts", "alerts": 2}

    run(config, check)
    assert stored(config, "SELECT body FROM payloads") == [(body,)]


def test_hook_declared_size_over_limit(config: DaemonConfig) -> None:
    async def check(client: httpx.AsyncClient, daemon: Daemon) -> None:
        sent = await call_asgi(
            daemon, raw_headers(MAX_BODY_BYTES + 1), [{"type": "http.request", "body": b"{}", "more_body": True}]
        )

        assert sent[0]["status"] == 413
        assert json.loads(sent[1]["body"])["error"].startswith(f"body of {MAX_BODY_BYTES + 1} bytes is larger than")

    run(config, check)
    assert stored(config, "SELECT count(*) FROM dead_letters") == [(0,)]


def test_hook_client_gone_gets_no_response(config: DaemonConfig) -> None:
    async def check(client: httpx.AsyncClient, daemon: Daemon) -> None:
        sent = await call_asgi(daemon, raw_headers(1000), [{"type": "http.request", "body": b'{"version"', "more_body": True}])

        assert sent == []

    run(config, check)
    assert stored(config, "SELECT count(*) FROM payloads") == [(0,)]
    assert stored(config, "SELECT count(*) FROM dead_letters") == [(0,)]


def test_hook_reports_alerts_the_sender_left_out(config: DaemonConfig, caplog: pytest.LogCaptureFixture) -> None:
    # The fixture's sender cut its group at `max_alerts` and states how many it left out.
    body = (FIXTURES / "alertmanager" / "firing-unicode-empty-long.json").read_bytes()
    sent = json.loads(body)

    async def check(client: httpx.AsyncClient, daemon: Daemon) -> None:
        response = await client.post("/hooks/alertmanager", content=body, headers=AUTHORIZED)

        assert response.status_code == 202
        assert response.json() == {"payload_id": 1, "kind": "alerts", "alerts": len(sent["alerts"]), "truncated_alerts": 3}

    with caplog.at_level(logging.WARNING, logger="irules.http"):
        run(config, check)
    [record] = [record for record in caplog.records if "left out" in record.getMessage()]
    assert record.levelname == "WARNING"
    assert record.getMessage() == (
        f"source alertmanager: payload 1 (group {sent['groupKey']}) left out 3 alerts; "
        "raise the receiver's max_alerts to receive them"
    )
