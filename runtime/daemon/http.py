"""uvicorn's httptools protocol, with webhooks handled in the protocol itself.

Through ASGI, uvicorn builds a scope, a request cycle, a task and a message per
response part before the daemon's code runs for a webhook. Skipping them raised the
one-alert rate of `bench/ingest_bench.py` from about 2,200 to 2,800 requests per
second on the benchmark machine. `HookProtocol` takes a request whose headers
show a plain `POST` or `PUT /hooks/<source>` with a `Content-Length` body, and
when the body is complete it calls `receive_webhook_now` on the event loop and
writes the response. When that cannot finish without waiting, a task runs
`_receive_body`, as the ASGI path would.

Every other request, and any request it is unsure of (chunked bodies,
`Expect: 100-continue`, upgrades, a request pipelined behind one still in
progress, a root path), goes to uvicorn's own code unchanged, so both paths
give the same answers; the tests post the same webhooks through both.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import urllib.parse
from typing import Any

import httptools
import orjson
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from runtime.daemon.app import (
    HOOK_METHODS,
    INTERNAL_ERROR,
    Answer,
    _hook_source,
    _own_path,
    _receive_body,
    challenge,
    receive_webhook_now,
)
from runtime.daemon.service import Daemon
from runtime.ingest import MAX_BODY_BYTES
from runtime.sources.base import Inbound

log = logging.getLogger("irules.http")


class _HookRequest:
    """One webhook taken by `HookProtocol`, in the attributes that uvicorn's protocol reads from its request cycle."""

    __slots__ = ("body", "disconnected", "headers", "keep_alive", "message_event", "response_complete", "source")

    def __init__(self, source: str, headers: dict[str, str], keep_alive: bool) -> None:
        self.source = source
        self.headers = headers
        self.body: list[bytes] = []
        self.keep_alive = keep_alive
        self.response_complete = False
        self.disconnected = False
        # uvicorn sets this when the connection is lost; nothing waits on it here.
        self.message_event = asyncio.Event()


class HookProtocol(HttpToolsProtocol):
    """uvicorn's HTTP/1.1 protocol for the daemon; set `daemon` on a subclass, as `protocol_for` does."""

    daemon: Daemon

    def on_headers_complete(self) -> None:
        request = self._take_webhook()
        if request is None:
            super().on_headers_complete()
            return
        self.cycle = request  # type: ignore[assignment]

    def _take_webhook(self) -> _HookRequest | None:
        """Return the webhook this request is when the protocol handles it itself, else None."""
        if self.parser.get_method().decode("ascii") not in HOOK_METHODS or self.root_path or self.expect_100_continue:
            return None
        if self.parser.should_upgrade():
            return None
        existing = self.cycle
        if existing is not None and not existing.response_complete:
            # A request pipelined behind one in progress waits in uvicorn's queue.
            return None
        path = httptools.parse_url(self.url).path.decode("ascii")
        if "%" in path:
            path = urllib.parse.unquote(path)
        source = _hook_source(path)
        if source is None or _own_path(self.daemon, source) is not None:
            # A custom source with a path of its own does not receive here, so the app responds with 404.
            return None
        headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in self.headers}
        length = headers.get("content-length")
        if "transfer-encoding" in headers or length is None or not length.isdigit() or int(length) > MAX_BODY_BYTES:
            return None
        http_version = self.parser.get_http_version()
        keep_alive = http_version != "1.0" and self.parser.should_keep_alive()
        return _HookRequest(source, headers, keep_alive)

    def on_body(self, body: bytes) -> None:
        request = self.cycle
        if isinstance(request, _HookRequest):
            request.body.append(body)
            return
        super().on_body(body)

    def on_message_complete(self) -> None:
        request = self.cycle
        if not isinstance(request, _HookRequest):
            super().on_message_complete()
            return
        if self.transport.is_closing():
            # Pipelined behind a response that closed the connection: the sender gets no
            # response for it, so it must not be stored either.
            return
        received_at = datetime.datetime.now(datetime.UTC)
        body = request.body[0] if len(request.body) == 1 else b"".join(request.body)
        inbound = Inbound(body, request.headers, received_at)
        try:
            answer = receive_webhook_now(self.daemon, request.source, inbound)
        except Exception:
            log.exception("source %s: receiving a webhook failed", request.source)
            answer = INTERNAL_ERROR
        if answer is not None:
            self._respond(request, answer)
            return
        # Reading stops until the response is written, as for any request in progress.
        self.flow.pause_reading()
        task = self.loop.create_task(self._receive_later(request, inbound))
        task.add_done_callback(self.tasks.discard)
        self.tasks.add(task)

    async def _receive_later(self, request: _HookRequest, inbound: Inbound) -> None:
        try:
            answer = await _receive_body(self.daemon, request.source, inbound)
        except Exception:
            log.exception("source %s: receiving a webhook failed", request.source)
            answer = INTERNAL_ERROR
        if request.disconnected:
            # The payload may be stored: a sender that went away learns it by sending again,
            # which deduplication absorbs.
            return
        self._respond(request, answer)

    def _respond(self, request: _HookRequest, answer: Answer) -> None:
        status, content = answer
        body = orjson.dumps(content)
        parts: list[bytes] = [STATUS_LINE[status]]
        for name, value in self.server_state.default_headers:
            parts += [name, b": ", value, b"\r\n"]
        parts.append(b"content-type: application/json\r\ncontent-length: %d\r\n" % len(body))
        header = challenge(self.daemon, request.source, status)
        if header is not None:
            parts += [header[0].encode("latin-1"), b": ", header[1].encode("latin-1"), b"\r\n"]
        if not request.keep_alive:
            parts.append(b"connection: close\r\n")
        parts += [b"\r\n", body]
        self.transport.write(b"".join(parts))
        request.response_complete = True
        if not request.keep_alive:
            self.transport.close()
        self.on_response_complete()


def protocol_for(daemon: Daemon) -> type[HookProtocol]:
    """Return the protocol class that uvicorn's `Config(http=...)` takes, bound to `daemon`."""
    attributes: dict[str, Any] = {"daemon": daemon}
    return type("DaemonHookProtocol", (HookProtocol,), attributes)
