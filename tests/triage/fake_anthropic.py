"""A local HTTP server that speaks the Anthropic Messages API, for tests of the anthropic provider.

`POST /v1/messages` checks the request as the real API does: the `x-api-key`
header (401 `authentication_error` when it is wrong), the `anthropic-version`
header, and a JSON body with `model`, `max_tokens` and `messages` (400
`invalid_request_error` otherwise). It then sends the next scripted reply, or
a message holding `default_answer` when the script is empty.

Scripted replies: `message(text)` (a 200 message with text content and
usage), `error(status, type)` (the API's error shape, with optional headers
such as `retry-after`), `raw(status, body)` (any bytes, such as a non-JSON
body), `slow(seconds, reply)` (waits before replying, for client timeouts)
and `OBEY`. `OBEY` plays a model that a prompt injection has taken over: it
finds the first string in the prompt's untrusted-data blocks that starts
with `DIRECTIVE:`, and answers with the JSON after it.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

API_KEY = "sk-test-not-a-real-key"
DIRECTIVE = "DIRECTIVE:"
OBEY = "obey"
_BLOCK = re.compile(r'<untrusted-data id="([0-9a-f]+)">\n(.*?)\n</untrusted-data id="\1">', re.DOTALL)


@dataclass(frozen=True, slots=True)
class Scripted:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


@dataclass(frozen=True, slots=True)
class Recorded:
    path: str
    headers: dict[str, str]
    body: Any


def message(text: str, *, input_tokens: int = 100, output_tokens: int = 50, stop_reason: str = "end_turn") -> Scripted:
    body = {
        "id": "msg_test",
        "type": "message",
        "role": "assistant",
        "model": "claude-test",
        "content": [{"type": "text", "text": text}],
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens},
    }
    return Scripted(200, json.dumps(body).encode())


def error(status: int, kind: str, text: str = "", *, headers: dict[str, str] | None = None, details: Any = None) -> Scripted:
    inner: dict[str, Any] = {"type": kind, "message": text or kind}
    if details is not None:
        inner["details"] = details
    body = {"type": "error", "error": inner, "request_id": "req_test"}
    return Scripted(status, json.dumps(body).encode(), headers or {})


def raw(status: int, body: bytes, content_type: str = "text/plain") -> Scripted:
    return Scripted(status, body, {"content-type": content_type})


def slow(seconds: float, reply: Scripted) -> Scripted:
    return Scripted(reply.status, reply.body, reply.headers, seconds)


class FakeAnthropic:
    """The server, started in a thread on 127.0.0.1 by `with FakeAnthropic() as server:`."""

    def __init__(self, default_answer: dict[str, Any] | None = None) -> None:
        self.default_answer = default_answer or {"summary": "nothing found", "hypotheses": [], "recommendations": []}
        self.requests: list[Recorded] = []
        self._script: deque[Scripted | str] = deque()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, name="fake-anthropic", daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def enqueue(self, *replies: Scripted | str) -> None:
        with self._lock:
            self._script.extend(replies)

    def __enter__(self) -> FakeAnthropic:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def reply_to(self, path: str, headers: dict[str, str], raw_body: bytes) -> Scripted:
        try:
            body: Any = json.loads(raw_body)
        except ValueError:
            body = raw_body
        with self._lock:
            self.requests.append(Recorded(path, headers, body))
            scripted = self._script.popleft() if self._script else None
        if path != "/v1/messages":
            return error(404, "not_found_error", f"no route {path}")
        if headers.get("x-api-key") != API_KEY:
            return error(401, "authentication_error", "invalid x-api-key")
        if not headers.get("anthropic-version"):
            return error(400, "invalid_request_error", "anthropic-version: header is required")
        problem = _request_problem(body)
        if problem:
            return error(400, "invalid_request_error", problem)
        if scripted == OBEY:
            return message(_directive(body))
        if isinstance(scripted, Scripted):
            return scripted
        return message(json.dumps(self.default_answer))


def _request_problem(body: Any) -> str | None:
    if not isinstance(body, dict):
        return "the body is not a JSON object"
    if not isinstance(body.get("model"), str) or not body["model"]:
        return "model: field required"
    if not isinstance(body.get("max_tokens"), int) or body["max_tokens"] < 1:
        return "max_tokens: field required"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "messages: at least one message is required"
    for item in messages:
        if not isinstance(item, dict) or item.get("role") not in ("user", "assistant") or not item.get("content"):
            return "messages: each message needs a role and content"
    if messages[0]["role"] != "user":
        return "messages: the first message must use the user role"
    return None


def _directive(body: dict[str, Any]) -> str:
    """Return the JSON after the first `DIRECTIVE:` string in the prompt's untrusted data, as an obedient model would."""
    prompt = "\n".join(item["content"] for item in body["messages"] if isinstance(item["content"], str))
    for match in _BLOCK.finditer(prompt):
        for text in _strings(json.loads(match.group(2))):
            if text.startswith(DIRECTIVE):
                return text.removeprefix(DIRECTIVE)
    return json.dumps({"summary": "no directive found"})


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [text for item in value for text in _strings(item)]
    if isinstance(value, dict):
        return [text for item in value.values() for text in _strings(item)]
    return []


def _handler(fake: FakeAnthropic) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            raw_body = self.rfile.read(length)
            headers = {name.lower(): value for name, value in self.headers.items()}
            reply = fake.reply_to(self.path, headers, raw_body)
            if reply.delay_s:
                time.sleep(reply.delay_s)
            try:
                self.send_response(reply.status)
                self.send_header("content-type", reply.headers.get("content-type", "application/json"))
                for name, value in reply.headers.items():
                    if name != "content-type":
                        self.send_header(name, value)
                self.send_header("content-length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up waiting, as a timeout test intends

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler
