"""`auth basic` through the daemon's HTTP path: CloudWatch alarms by SNS raw message delivery, with and without credentials."""

from __future__ import annotations

import base64
import json
import logging
import sqlite3
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from runtime.daemon.service import DaemonConfig
from tests.runtime.test_daemon_hooks import daemon_config, running

FIXTURES = Path(__file__).parent / "fixtures" / "cloudwatch"
PASSWORD = "basic-password-for:tests"
RULES = """
source cloudwatch {
  auth basic user "sns" password secret("CLOUDWATCH_BASIC_PASSWORD")
}

receiver ops {
  webhook "http://127.0.0.1:9/ops"
}

route {
  receiver ops
}
"""
# What SNS sends for a subscription with raw message delivery on, less the Authorization header.
RAW_DELIVERY = {
    "content-type": "text/plain; charset=UTF-8",
    "user-agent": "Amazon Simple Notification Service Agent",
    "x-amz-sns-message-type": "Notification",
    "x-amz-sns-message-id": "da41e39f-ea4d-435a-b922-c6aae3915ebe",
    "x-amz-sns-topic-arn": "arn:aws:sns:us-east-1:123456789012:incident-alarms",
    "x-amz-sns-rawdelivery": "true",
}
# Both paths that serve `/hooks/cloudwatch`: the app's own ASGI handler, and Starlette's router under a root path.
ROOT_PATHS = pytest.mark.parametrize("root_path", ["", "/irules"], ids=["own-app", "under-root-path"])


@pytest.fixture
def config(tmp_path: Path) -> DaemonConfig:
    # The secret file ends with a newline, as an editor writes it, and the daemon removes it.
    return daemon_config(tmp_path, RULES, {"CLOUDWATCH_BASIC_PASSWORD": PASSWORD + "\n"})


def authorization(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def post_alarm(config: DaemonConfig, headers: dict[str, str], root_path: str) -> httpx.Response:
    """Post the raw-delivery alarm fixture to an in-process daemon and return its response."""
    body = (FIXTURES / "sns-alarm-raw-delivery.json").read_bytes()
    responses: list[httpx.Response] = []

    async def main() -> None:
        async with running(config, root_path) as (client, _daemon):
            responses.append(await client.post(f"{root_path}/hooks/cloudwatch", content=body, headers=headers))

    anyio.run(main)
    return responses[0]


def rows(config: DaemonConfig, query: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(config.database_url.removeprefix("sqlite:///")) as connection:
        return connection.execute(query).fetchall()


@ROOT_PATHS
def test_raw_delivery_with_basic_credentials_is_accepted(config: DaemonConfig, root_path: str) -> None:
    headers = {**RAW_DELIVERY, "authorization": authorization("sns", PASSWORD)}
    response = post_alarm(config, headers, root_path)

    assert response.status_code == 202, response.text
    assert response.json()["kind"] == "alerts"
    assert response.json()["alerts"] == 1
    assert rows(config, "SELECT source, kind, alert_count FROM payloads") == [("cloudwatch", "alerts", 1)]
    ((status, alert),) = rows(config, "SELECT status, alert FROM alert_events")
    assert status == "firing"
    assert json.loads(alert)["labels"]["alertname"] == "web-cpu-high"


@ROOT_PATHS
def test_raw_delivery_without_credentials_is_unauthorized(config: DaemonConfig, root_path: str) -> None:
    response = post_alarm(config, RAW_DELIVERY, root_path)

    assert response.status_code == 401
    assert response.json()["error"] == (
        "missing Authorization header: expected `Basic` credentials, the base64 of `user:password`"
    )
    # The challenge that makes SNS send the credentials of its subscription URL.
    assert response.headers["www-authenticate"] == 'Basic realm="irules", charset="UTF-8"'
    assert rows(config, "SELECT source, status FROM dead_letters") == [("cloudwatch", 401)]
    assert rows(config, "SELECT count(*) FROM payloads") == [(0,)]


@ROOT_PATHS
def test_raw_delivery_with_wrong_password_is_forbidden(
    config: DaemonConfig, root_path: str, caplog: pytest.LogCaptureFixture
) -> None:
    header = authorization("sns", "not-the-password")
    with caplog.at_level(logging.DEBUG):
        response = post_alarm(config, {**RAW_DELIVERY, "authorization": header}, root_path)

    assert response.status_code == 403
    assert response.json()["error"] == "invalid basic credentials"
    assert "www-authenticate" not in response.headers
    assert "source cloudwatch: request rejected with 403: invalid basic credentials" in caplog.text
    for text in (caplog.text, response.text):
        assert header.split()[1] not in text
        assert "not-the-password" not in text
        assert PASSWORD not in text


def test_dead_letter_keeps_no_credentials(config: DaemonConfig) -> None:
    header = authorization("sns", "not-the-password")
    assert post_alarm(config, {**RAW_DELIVERY, "authorization": header}, "").status_code == 403

    ((stored,),) = rows(config, "SELECT headers FROM dead_letters")
    kept_headers = json.loads(stored)
    assert "authorization" not in {name.lower() for name in kept_headers}
    assert kept_headers["x-amz-sns-rawdelivery"] == "true"


def test_uvicorn_protocol_sends_the_challenge(config: DaemonConfig) -> None:
    # A real socket, so the webhook goes through the daemon's own HTTP protocol, not the ASGI app.
    from tests.runtime.test_daemon_protocol import connect
    from tests.runtime.test_daemon_protocol import run as serve

    body = (FIXTURES / "sns-alarm-raw-delivery.json").read_bytes()
    head = "".join(f"{name}: {value}\r\n" for name, value in RAW_DELIVERY.items())
    answers: list[tuple[int, dict[str, str]]] = []

    async def check(port: int, _daemon: object) -> None:
        connection = await connect(port)
        for extra in ("", f"authorization: {authorization('sns', PASSWORD)}\r\n"):
            request = f"POST /hooks/cloudwatch HTTP/1.1\r\nhost: daemon\r\n{head}{extra}content-length: {len(body)}\r\n\r\n"
            await connection.send(request.encode() + body)
            status, headers, _body = await connection.response()
            answers.append((status, headers))

    serve(config, check)

    (first_status, first_headers), (second_status, second_headers) = answers
    assert first_status == 401
    assert first_headers["www-authenticate"] == 'Basic realm="irules", charset="UTF-8"'
    assert second_status == 202
    assert "www-authenticate" not in second_headers
