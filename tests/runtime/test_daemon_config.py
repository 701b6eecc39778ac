"""Daemon start-up checks and HTTP errors, in-process: warnings about its configuration, JSON error bodies."""

from __future__ import annotations

import logging
from pathlib import Path

import anyio
import httpx
import pytest

from runtime.daemon.app import build_app
from runtime.daemon.service import Daemon, DaemonConfig

RULES = """
source alertmanager {
  auth bearer secret("IRULES_TEST_MISSING_TOKEN")
}

source deploys {
  auth none
}

receiver ops {
  webhook "http://127.0.0.1:9/ops"
}

receiver pager {
  pagerduty key secret("IRULES_TEST_MISSING_PAGER_KEY")
}

route {
  receiver ops
}
"""


@pytest.fixture
def daemon(tmp_path: Path) -> Daemon:
    (tmp_path / "rules.irules").write_text(RULES, encoding="utf-8")
    config = DaemonConfig(
        rules=tmp_path,
        environment=None,
        database_url=f"sqlite:///{tmp_path / 'irules.db'}",
        host="0.0.0.0",
        secrets_dir=tmp_path / "nowhere",
    )
    loaded = Daemon(config)
    assert loaded.rules.reload()
    return loaded


def test_missing_secret_logged_at_start(daemon: Daemon, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="irules.daemon"):
        daemon.warn_about_configuration()
    messages = [record.getMessage() for record in caplog.records]
    assert any(
        "secret IRULES_TEST_MISSING_TOKEN is not set" in message and "source alertmanager" in message for message in messages
    )
    assert any("secrets folder" in message and "does not exist" in message for message in messages)
    assert any("source grafana declares no auth" in message for message in messages)
    assert not any("source alertmanager declares no auth" in message for message in messages)
    assert any("incident API on 0.0.0.0 needs no token" in message for message in messages)


def test_receiver_secret_logged_only_with_notifications(daemon: Daemon, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="irules.daemon"):
        daemon.warn_about_configuration()
        notifying = [record for record in caplog.records if "IRULES_TEST_MISSING_PAGER_KEY" in record.getMessage()]
        caplog.clear()
        daemon.config.notify = False
        daemon.warn_about_configuration()
        quiet = [record for record in caplog.records if "IRULES_TEST_MISSING_PAGER_KEY" in record.getMessage()]

    assert [(record.levelname, record.getMessage()) for record in notifying] == [
        (
            "ERROR",
            "receiver pager: the pagerduty channel's secret IRULES_TEST_MISSING_PAGER_KEY is not set; "
            "its messages wait and are retried until it is",
        )
    ]
    # With --no-notify nothing is sent, so a first start shows no errors about channels it will not use.
    assert quiet == []


def get(daemon: Daemon, path: str) -> httpx.Response:
    async def fetch() -> httpx.Response:
        transport = httpx.ASGITransport(app=build_app(daemon))
        async with httpx.AsyncClient(transport=transport, base_url="http://daemon") as client:
            return await client.get(path)

    return anyio.run(fetch)


def test_unknown_path_is_json(daemon: Daemon) -> None:
    response = get(daemon, "/nothing/here")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"] == (
        "Not Found: GET /nothing/here; see /openapi.json for the HTTP API and /ui/ for the web view"
    )
    missing = get(daemon, "/api/v1/incidents/INC-1/unknown")
    assert missing.status_code == 404
    assert "error" in missing.json()


def test_cli_names_the_token_variable_on_401() -> None:
    from runtime.client import BackendError, RemoteBackend

    backend = RemoteBackend("http://daemon")
    backend.client = httpx.Client(
        base_url="http://daemon",
        transport=httpx.MockTransport(
            lambda _request: httpx.Response(
                401, json={"error": "missing or wrong API token: send `Authorization: Bearer <token>`"}
            )
        ),
    )
    with pytest.raises(BackendError) as raised:
        backend.list()
    backend.close()

    assert str(raised.value) == (
        "the daemon responded with HTTP 401: missing or wrong API token: send `Authorization: Bearer <token>`; "
        "set IRULES_API_TOKEN to the token the daemon was started with"
    )


def test_hook_rejection_names_source_auth() -> None:
    from runtime.client import BackendError, RemoteBackend

    seen: list[str | None] = []

    def answer(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            return httpx.Response(200, json={"ready": True})
        assert request.url.path == "/hooks/ci-webhook"
        seen.append(request.headers.get("authorization"))
        return httpx.Response(403, json={"error": "wrong signature in X-Signature-256"})

    backend = RemoteBackend("http://daemon", token="api-token")
    backend.client = httpx.Client(base_url="http://daemon", headers=backend.client.headers, transport=httpx.MockTransport(answer))
    # A daemon that lists no sources in `/status` gets the post at /hooks/<source>.
    with pytest.raises(BackendError) as raised:
        backend.post_hook("ci-webhook", b"{}", {"content-type": "application/json"})
    # A header the user passes goes out as given.
    with pytest.raises(BackendError):
        backend.post_hook("ci-webhook", b"{}", {"authorization": "Bearer hook-token"})
    backend.close()

    assert str(raised.value) == (
        "the daemon responded with HTTP 403: wrong signature in X-Signature-256; "
        "source ci-webhook checks its own credentials, not IRULES_API_TOKEN: pass the header it expects with "
        "--header 'NAME: VALUE' (for an HMAC source, the signature of the file with its prefix), "
        "or set IRULES_HOOK_TOKEN to its bearer token"
    )
    # The API token is not a webhook credential, so it is not sent to the source.
    assert seen == [None, "Bearer hook-token"]


def test_cli_posts_a_webhook_where_its_source_receives(tmp_path: Path) -> None:
    from runtime.client import RemoteBackend
    from runtime.daemon.app import receiving_paths

    (tmp_path / "rules.irules").write_text(
        RULES + 'source ci {\n  path "/webhooks/ci"\n  auth none\n  map {\n    label.alertname = body.check\n  }\n}\n',
        encoding="utf-8",
    )
    daemon = Daemon(DaemonConfig(rules=tmp_path, environment=None, database_url=f"sqlite:///{tmp_path / 'irules.db'}"))
    assert daemon.rules.reload()
    paths = receiving_paths(daemon)
    assert paths == {
        "alertmanager": "/hooks/alertmanager",
        "azure": "/hooks/azure",
        "ci": "/webhooks/ci",
        "cloudwatch": "/hooks/cloudwatch",
        "deploys": "/hooks/deploys",
        "grafana": "/hooks/grafana",
    }

    posted: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/status":
            return httpx.Response(200, json={"ready": True, "sources": paths})
        posted.append(request.url.path)
        return httpx.Response(202, json={"payload_id": 1, "kind": "alerts", "alerts": 1})

    backend = RemoteBackend("http://daemon")
    backend.client = httpx.Client(base_url="http://daemon", transport=httpx.MockTransport(answer))
    backend.post_hook("ci", b'{"check": "lint"}', {})
    backend.post_hook("grafana", b"{}", {})
    backend.close()

    assert posted == ["/webhooks/ci", "/hooks/grafana"]
