"""Webhooks handled in the HTTP protocol, over real sockets on 127.0.0.1 against uvicorn and a SQLite store.

Each test compares the protocol's responses with those of the ASGI path, which
takes the requests the protocol leaves to uvicorn (chunked bodies,
`Expect: 100-continue`, requests pipelined behind one in progress).
"""

from __future__ import annotations

import json
import socket
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest
import uvicorn

from runtime.daemon import app as app_module
from runtime.daemon.app import build_app
from runtime.daemon.http import protocol_for
from runtime.daemon.service import Daemon, DaemonConfig
from tests.runtime.test_daemon_hooks import TOKEN, daemon_config

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def config(tmp_path: Path) -> DaemonConfig:
    return daemon_config(tmp_path)


@pytest.fixture
def asgi_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record the source of every webhook that reaches the ASGI path instead of the protocol."""
    calls: list[str] = []
    serve_webhook = app_module._serve_webhook

    async def recording(daemon, source, scope, receive, send):  # type: ignore[no-untyped-def]
        calls.append(source)
        await serve_webhook(daemon, source, scope, receive, send)

    monkeypatch.setattr(app_module, "_serve_webhook", recording)
    return calls


def stored_payloads(config: DaemonConfig) -> int:
    path = config.database_url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as connection:
        return connection.execute("SELECT count(*) FROM payloads").fetchone()[0]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@asynccontextmanager
async def serving(config: DaemonConfig) -> AsyncIterator[tuple[int, Daemon]]:
    """Serve the daemon's app on uvicorn with `HookProtocol` on a free port, and yield the port."""
    daemon = Daemon(config)
    await daemon.start()
    assert daemon.writer is not None and daemon.store is not None
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            build_app(daemon),
            host="127.0.0.1",
            port=port,
            http=protocol_for(daemon),
            log_config=None,
            access_log=False,
            lifespan="off",
        )
    )
    try:
        async with anyio.create_task_group() as group:
            group.start_soon(daemon.writer.run)
            group.start_soon(server.serve)
            while not server.started:
                await anyio.sleep(0.01)
            yield port, daemon
            server.should_exit = True
            daemon.writer.close()
    finally:
        daemon.store.close()


def run(config: DaemonConfig, check: Callable[[int, Daemon], Awaitable[None]]) -> None:
    async def main() -> None:
        async with serving(config) as (port, daemon):
            try:
                await check(port, daemon)
            finally:
                while _open:
                    await _open.pop().stream.aclose()

    anyio.run(main)


def webhook(token: str = TOKEN, *, chunked: bool = False, extra: str = "", version: str = "1.1") -> bytes:
    body = (FIXTURES / "alertmanager" / "firing-two-alerts.json").read_bytes()
    head = f"POST /hooks/alertmanager HTTP/{version}\r\nhost: daemon\r\nauthorization: Bearer {token}\r\ncontent-type: application/json\r\n{extra}"
    if chunked:
        return f"{head}transfer-encoding: chunked\r\n\r\n{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n"
    return f"{head}content-length: {len(body)}\r\n\r\n".encode() + body


class Connection:
    """A keep-alive HTTP/1.1 connection that reads whole responses with a `content-length`."""

    def __init__(self, stream: anyio.abc.SocketStream) -> None:
        self.stream = stream
        self.buffer = b""

    async def send(self, data: bytes) -> None:
        await self.stream.send(data)

    async def response(self) -> tuple[int, dict[str, str], bytes]:
        while b"\r\n\r\n" not in self.buffer:
            self.buffer += await self.stream.receive()
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
        length = int(headers["content-length"])
        while len(self.buffer) < length:
            self.buffer += await self.stream.receive()
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return int(status_line.split()[1]), headers, body

    async def closed(self) -> bool:
        """Return True when the server closes the connection."""
        try:
            with anyio.fail_after(5):
                return await self.stream.receive() == b""
        except anyio.EndOfStream:
            return True


_open: list[Connection] = []


async def connect(port: int) -> Connection:
    """Open a connection that `run` closes after the check."""
    connection = Connection(await anyio.connect_tcp("127.0.0.1", port))
    _open.append(connection)
    return connection


def test_protocol_matches_asgi_path(config: DaemonConfig, asgi_calls: list[str]) -> None:
    answers: dict[str, list[tuple[int, str, dict[str, object]]]] = {}

    async def check(port: int, daemon: Daemon) -> None:
        connection = await connect(port)
        for path, chunked in (("protocol", False), ("asgi", True)):
            for token in (TOKEN, "wrong-token"):
                await connection.send(webhook(token, chunked=chunked))
                status, headers, body = await connection.response()
                answers.setdefault(path, []).append((status, headers["content-type"], json.loads(body)))

    run(config, check)

    # The chunked requests took the ASGI path, the others did not.
    assert asgi_calls == ["alertmanager", "alertmanager"]
    protocol, asgi = answers["protocol"], answers["asgi"]
    assert [(status, kind) for status, kind, _ in protocol] == [(202, "application/json"), (403, "application/json")]
    assert [(status, kind) for status, kind, _ in asgi] == [(202, "application/json"), (403, "application/json")]
    assert protocol[0][2] == {"payload_id": 1, "kind": "alerts", "alerts": 2}
    assert asgi[0][2] == {"payload_id": 2, "kind": "alerts", "alerts": 2}
    # The rejections have the same reason, and each left its own dead letter.
    assert protocol[1][2]["error"] == asgi[1][2]["error"]
    assert (protocol[1][2]["dead_letter"], asgi[1][2]["dead_letter"]) == (1, 2)


def test_pipelined_webhooks_keep_order(config: DaemonConfig, asgi_calls: list[str]) -> None:
    statuses: list[tuple[int, object]] = []

    async def check(port: int, daemon: Daemon) -> None:
        connection = await connect(port)
        # Three webhooks and a status request in one write: the wrong token waits for a
        # dead letter in a task, and the requests behind it must not overtake it.
        await connection.send(webhook() + webhook("wrong-token") + webhook() + b"GET /healthz HTTP/1.1\r\nhost: daemon\r\n\r\n")
        for _ in range(3):
            status, _headers, body = await connection.response()
            answer = json.loads(body)
            statuses.append((status, answer.get("payload_id", answer.get("dead_letter"))))
        status, _headers, body = await connection.response()
        statuses.append((status, body.decode()))

    run(config, check)

    assert statuses == [(202, 1), (403, 1), (202, 2), (200, "ok\n")]
    # The third webhook arrived while the second was still in progress, so uvicorn queued it for ASGI.
    assert asgi_calls == ["alertmanager"]


def test_http10_and_close_end_connection(config: DaemonConfig, asgi_calls: list[str]) -> None:
    seen: list[tuple[int, str | None, bool]] = []

    async def check(port: int, daemon: Daemon) -> None:
        for request in (webhook(version="1.0"), webhook(extra="connection: close\r\n")):
            connection = await connect(port)
            await connection.send(request)
            status, headers, _body = await connection.response()
            seen.append((status, headers.get("connection"), await connection.closed()))

    run(config, check)

    assert seen == [(202, "close", True), (202, "close", True)]
    assert asgi_calls == []


def test_requests_after_close_are_not_stored(config: DaemonConfig, asgi_calls: list[str]) -> None:
    seen: list[tuple[int, str | None, bool]] = []

    async def check(port: int, daemon: Daemon) -> None:
        connection = await connect(port)
        # An HTTP/1.0 connection closes after the first response, even with `connection: keep-alive`.
        await connection.send(webhook(version="1.0", extra="connection: keep-alive\r\n") * 3)
        status, headers, _body = await connection.response()
        seen.append((status, headers.get("connection"), await connection.closed()))

    run(config, check)

    assert seen == [(202, "close", True)]
    assert stored_payloads(config) == 1


def test_expect_continue_goes_to_uvicorn(config: DaemonConfig, asgi_calls: list[str]) -> None:
    seen: list[tuple[int, int]] = []

    async def check(port: int, daemon: Daemon) -> None:
        connection = await connect(port)
        request = webhook(extra="expect: 100-continue\r\n")
        head, _, body = request.partition(b"\r\n\r\n")
        await connection.send(head + b"\r\n\r\n")
        with anyio.fail_after(5):
            while b"\r\n\r\n" not in connection.buffer:
                connection.buffer += await connection.stream.receive()
        interim, _, connection.buffer = connection.buffer.partition(b"\r\n\r\n")
        await connection.send(body)
        status, _headers, _body = await connection.response()
        seen.append((int(interim.split()[1]), status))

    run(config, check)

    assert seen == [(100, 202)]
    assert asgi_calls == ["alertmanager"]


def test_busy_writer_delays_response(config: DaemonConfig, asgi_calls: list[str]) -> None:
    answers: list[tuple[int, object]] = []

    async def check(port: int, daemon: Daemon) -> None:
        assert daemon.store is not None
        connection = await connect(port)
        # Holding SQLite's writer makes the protocol hand the webhook to a task,
        # which queues it for the writer. The response comes after the commit.
        with daemon.store.sqlite_write() as _held:
            await connection.send(webhook())
            await anyio.sleep(0.2)
            assert connection.buffer == b""
        status, _headers, body = await connection.response()
        answers.append((status, json.loads(body)["payload_id"]))

    run(config, check)

    assert answers == [(202, 1)]
    assert asgi_calls == []
