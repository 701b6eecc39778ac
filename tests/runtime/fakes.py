"""Local fakes of the services notifications go to, for tests.

`FakeSaaS` is one real HTTP server on 127.0.0.1, run in a background thread.
It responds as these services do: the Slack Web API (`chat.postMessage`,
`chat.update`), Slack incoming webhooks and `response_url`s, the PagerDuty
Events API v2, Twilio's Messages resource, Teams webhooks of both kinds and a
generic webhook. It checks credentials and validates requests as the real
services document them, and records every request with its arrival time.
Tests can script an error or a delay for the next requests to a path:

    fake.fail_next("/v2/enqueue", status=429, headers={"Retry-After": "2"}, times=3)
    fake.delay_next(fake.webhook_path, 5.0)

`FakeSmtp` is an aiosmtpd server that records the messages it accepts and
can reject recipients or messages with scripted SMTP replies.

Both are thread-safe, start in a few milliseconds, and come as the pytest
fixtures `fake_saas` and `smtp_server`.
"""

from __future__ import annotations

import base64
import collections
import datetime
import email
import email.policy
import hashlib
import ipaddress
import itertools
import json
import re
import ssl
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from compiler import ir
from runtime.notify.model import Endpoints

# Credentials the fakes accept. Each contains "TOKEN" so that tests can check
# that no secret reached a message or a log.
SLACK_TOKEN = "xoxb-fake-slack-TOKEN-0123456789"
PAGERDUTY_KEY = "TOKEN-PLACEHOLDER000000000000000"
TWILIO_ACCOUNT_SID = "AC00000000000000000000000000000000"
TWILIO_AUTH_TOKEN = "twilio-fake-auth-TOKEN-0123456789"
TWILIO_FROM = "+15555550199"
TWILIO_MESSAGING_SERVICE_SID = "MG00000000000000000000000000000000"
SMTP_USERNAME = "alerts"
SMTP_PASSWORD = "smtp-fake-TOKEN-password"

PAGERDUTY_ACTIONS = ("trigger", "acknowledge", "resolve")
PAGERDUTY_SEVERITIES = ("critical", "error", "warning", "info")
# E.164 allows up to 15 digits; the shortest numbers in use have 7.
E164 = re.compile(r"\+[1-9][0-9]{6,14}")
SLACK_CHANNEL_ID = re.compile(r"[CGD][A-Z0-9]{8,}")
TWILIO_MESSAGES = re.compile(r"/2010-04-01/Accounts/([^/]+)/Messages\.json")


@dataclass(frozen=True, slots=True)
class Request:
    """One request the fake received: `data` is the parsed JSON or form body, or `None`."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    data: Any
    at: float
    status: int

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


@dataclass(slots=True)
class Scripted:
    """The response to the next `times` requests to a path, where `status None` means the service's usual response."""

    status: int | None
    headers: dict[str, str]
    body: Any
    delay_s: float
    times: int
    # The `time.monotonic()` at which the script stops applying, whatever `times` is left.
    until: float | None = None


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


def json_answer(status: int, data: Any, headers: dict[str, str] | None = None) -> Answer:
    return Answer(status, json.dumps(data).encode(), {"Content-Type": "application/json; charset=utf-8", **(headers or {})})


def text_answer(status: int, text: str) -> Answer:
    return Answer(status, text.encode(), {"Content-Type": "text/plain; charset=utf-8"})


class FakeSaaS:
    """A fake of Slack, PagerDuty, Twilio, Teams and a generic webhook on one local HTTP server."""

    slack_webhook_path = "/hooks/services/T00000000/B00000000/TOKEN000000000000000000"
    slack_response_path = "/hooks/actions/T00000000/1715678467000/TOKEN0000000000"
    teams_legacy_path = "/teams/legacy/webhookb2/TOKEN-0000/IncomingWebhook/0000"
    teams_workflows_path = "/teams/workflows/workflows/0000/triggers/manual/paths/invoke"
    webhook_path = "/webhook/incidents"
    pagerduty_path = "/v2/enqueue"
    twilio_messages_path = f"/2010-04-01/Accounts/{TWILIO_ACCOUNT_SID}/Messages.json"

    def __init__(self, timeout_s: float = 2.0) -> None:
        self.timeout_s = timeout_s
        # Events a PagerDuty integration key may send in any 60 seconds before it gets 429.
        self.pagerduty_limit_per_minute = 120
        self.slack_messages: dict[tuple[str, str], dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._requests: list[Request] = []
        self._scripts: dict[str, collections.deque[Scripted]] = collections.defaultdict(collections.deque)
        self._pagerduty_sent: dict[str, collections.deque[float]] = collections.defaultdict(collections.deque)
        self._counter = itertools.count(1)
        self._closing = threading.Event()
        # Connections whose handler thread still runs; `wait_idle` waits for none.
        self._open_connections = 0
        self._idle = threading.Condition(self._lock)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    # --- lifecycle -------------------------------------------------------------

    def start(self) -> FakeSaaS:
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop the server; requests still waiting out a scripted delay get their response at once."""
        self._closing.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> FakeSaaS:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- addresses -------------------------------------------------------------

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def endpoints(self) -> Endpoints:
        return Endpoints(
            slack_api=self.url + "/api",
            pagerduty_events=self.url + self.pagerduty_path,
            twilio_api=self.url,
            slack_hooks=self.url + "/hooks/",
            timeout_s=self.timeout_s,
        )

    @property
    def slack_webhook_url(self) -> str:
        return self.url + self.slack_webhook_path

    @property
    def slack_response_url(self) -> str:
        return self.url + self.slack_response_path

    @property
    def teams_legacy_url(self) -> str:
        return self.url + self.teams_legacy_path

    @property
    def teams_workflows_url(self) -> str:
        return self.url + self.teams_workflows_path

    @property
    def webhook_url(self) -> str:
        return self.url + self.webhook_path

    @property
    def secrets(self) -> dict[str, str]:
        """Secrets by name, for a `secrets` lookup such as `fake.secrets.get`."""
        return {
            "SLACK_TOKEN": SLACK_TOKEN,
            "SLACK_WEBHOOK_URL": self.slack_webhook_url,
            "PAGERDUTY_KEY": PAGERDUTY_KEY,
            "TWILIO_ACCOUNT_SID": TWILIO_ACCOUNT_SID,
            "TWILIO_AUTH_TOKEN": TWILIO_AUTH_TOKEN,
            "TWILIO_FROM": TWILIO_FROM,
            "TWILIO_MESSAGING_SERVICE_SID": TWILIO_MESSAGING_SERVICE_SID,
            "TEAMS_URL": self.teams_workflows_url,
            "TEAMS_LEGACY_URL": self.teams_legacy_url,
            "WEBHOOK_URL": self.webhook_url,
            "SMTP_PASSWORD": SMTP_PASSWORD,
        }

    # --- scripting and records ----------------------------------------------------

    def fail_next(
        self, path: str, status: int, *, headers: dict[str, str] | None = None, body: Any = b"", times: int = 1
    ) -> None:
        """Respond to the next `times` requests to `path` with `status`, `headers` and `body` (bytes, text or JSON)."""
        self._script(path, Scripted(status, dict(headers or {}), body, 0.0, times))

    def fail_for(self, path: str, status: int, seconds: float, *, headers: dict[str, str] | None = None) -> None:
        """Respond to every request to `path` with `status` for the next `seconds`, then as usual."""
        self._script(path, Scripted(status, dict(headers or {}), b"", 0.0, 2**62, time.monotonic() + seconds))

    def delay_next(self, path: str, seconds: float, *, times: int = 1) -> None:
        """Hold the response to the next `times` requests to `path` back for `seconds`."""
        self._script(path, Scripted(None, {}, b"", seconds, times))

    def _script(self, path: str, scripted: Scripted) -> None:
        assert scripted.times >= 1, "a script must apply to at least one request"
        with self._lock:
            self._scripts[path].append(scripted)

    def connection_opened(self) -> None:
        with self._lock:
            self._open_connections += 1

    def connection_closed(self) -> None:
        with self._lock:
            self._open_connections -= 1
            self._idle.notify_all()

    def wait_idle(self, timeout_s: float = 10.0) -> None:
        """Wait until every connection has ended, so each request that arrived whole is recorded.

        After a sender is killed, a request whose body had arrived may still be in a handler
        thread. Records read before that thread is done would miss it.
        """
        with self._idle:
            if not self._idle.wait_for(lambda: self._open_connections == 0, timeout=timeout_s):
                raise TimeoutError(f"{self._open_connections} connections still open after {timeout_s} s")

    def requests(self, path: str | None = None) -> list[Request]:
        """Return the requests received so far, to `path` only when given, oldest first."""
        with self._lock:
            return [request for request in self._requests if path is None or request.path == path]

    def slack_channel_id(self, channel: str) -> str:
        """Return the id the fake gives a channel name such as `#alerts` (ids stay as they are)."""
        if SLACK_CHANNEL_ID.fullmatch(channel):
            return channel
        return "C" + hashlib.sha256(channel.encode()).hexdigest()[:8].upper()

    # --- responses ----------------------------------------------------------------

    def handle(self, method: str, target: str, headers: dict[str, str], body: bytes) -> tuple[Answer, float]:
        """Build the response to one request and record the request; return the response and how long to hold it back."""
        arrived = time.monotonic()
        parts = urlsplit(target)
        data = parse_body(headers.get("content-type", ""), body)
        with self._lock:
            scripted = self._next_script(parts.path)
            if scripted is not None and scripted.status is not None:
                answer = scripted_answer(scripted)
            else:
                answer = self._answer(method, parts.path, headers, data, body, arrived)
            self._requests.append(Request(method, parts.path, parts.query, headers, body, data, arrived, answer.status))
        return answer, scripted.delay_s if scripted else 0.0

    def wait_delay(self, seconds: float) -> None:
        self._closing.wait(seconds)

    def _next_script(self, path: str) -> Scripted | None:
        queue = self._scripts.get(path)
        while queue and queue[0].until is not None and time.monotonic() >= queue[0].until:
            queue.popleft()
        if not queue:
            return None
        scripted = queue[0]
        scripted.times -= 1
        if scripted.times == 0:
            queue.popleft()
        return scripted

    def _answer(self, method: str, path: str, headers: dict[str, str], data: Any, body: bytes, arrived: float) -> Answer:
        if method != "POST":
            return text_answer(405, "method not allowed")
        if path.startswith("/api/"):
            return self._slack_api(path.removeprefix("/api/"), headers, data)
        if path.startswith("/hooks/services/"):
            return self._slack_webhook(path, data)
        if path.startswith(("/hooks/actions/", "/hooks/app/")):
            # NOTE: Slack documents a response_url as working like an incoming webhook,
            # so the fake responds as one.
            return text_answer(200, "ok") if isinstance(data, dict) else text_answer(400, "invalid_payload")
        if path == self.pagerduty_path:
            return self._pagerduty(data, body, arrived)
        if match := TWILIO_MESSAGES.fullmatch(path):
            return self._twilio(match.group(1), headers, data)
        if path.startswith("/teams/"):
            return self._teams(path, data)
        if path.startswith("/webhook/"):
            return Answer(200) if data is not None else text_answer(400, "invalid JSON")
        return text_answer(404, "not found")

    # --- Slack -----------------------------------------------------------------

    def _slack_api(self, method: str, headers: dict[str, str], data: Any) -> Answer:
        authorization = headers.get("authorization")
        if not authorization:
            return slack_error("not_authed")
        if authorization != f"Bearer {SLACK_TOKEN}":
            return slack_error("invalid_auth")
        if not isinstance(data, dict):
            return slack_error("invalid_json")
        if method == "chat.postMessage":
            return self._slack_post_message(data)
        if method == "chat.update":
            return self._slack_update(data)
        return Answer(404, json.dumps({"ok": False, "error": "unknown_method"}).encode())

    def _slack_post_message(self, data: dict[str, Any]) -> Answer:
        if not data.get("channel"):
            return slack_error("channel_not_found")
        if not data.get("text") and not data.get("blocks"):
            return slack_error("no_text")
        channel = self.slack_channel_id(data["channel"])
        thread_ts = data.get("thread_ts")
        if thread_ts and (channel, thread_ts) not in self.slack_messages:
            return slack_error("thread_not_found")
        ts = f"1715678467.{next(self._counter):06d}"
        message = {
            "type": "message",
            "ts": ts,
            "text": data.get("text", ""),
            "blocks": data.get("blocks", []),
            "bot_id": "B00000000",
        }
        if thread_ts:
            message["thread_ts"] = thread_ts
        self.slack_messages[(channel, ts)] = message
        return json_answer(200, {"ok": True, "channel": channel, "ts": ts, "message": message})

    def _slack_update(self, data: dict[str, Any]) -> Answer:
        channel = self.slack_channel_id(str(data.get("channel", "")))
        message = self.slack_messages.get((channel, str(data.get("ts", ""))))
        if message is None:
            return slack_error("message_not_found")
        if not data.get("text") and not data.get("blocks"):
            return slack_error("no_text")
        message.update(text=data.get("text", ""), blocks=data.get("blocks", []))
        return json_answer(200, {"ok": True, "channel": channel, "ts": message["ts"], "text": message["text"]})

    def _slack_webhook(self, path: str, data: Any) -> Answer:
        if path != self.slack_webhook_path:
            return text_answer(404, "no_service")
        if not isinstance(data, dict):
            return text_answer(400, "invalid_payload")
        if not data.get("text") and not data.get("blocks"):
            return text_answer(400, "no_text")
        return text_answer(200, "ok")

    # --- PagerDuty ---------------------------------------------------------------

    def _pagerduty(self, data: Any, body: bytes, arrived: float) -> Answer:
        if not isinstance(data, dict):
            return pagerduty_invalid(["Could not parse the request body as a JSON object"])
        errors = pagerduty_errors(data, body)
        if errors:
            return pagerduty_invalid(errors)

        sent = self._pagerduty_sent[data["routing_key"]]
        while sent and sent[0] <= arrived - 60:
            sent.popleft()
        if len(sent) >= self.pagerduty_limit_per_minute:
            return Answer(429, b"", {"Content-Type": "application/json"})
        sent.append(arrived)
        dedup_key = data.get("dedup_key") or uuid.uuid4().hex
        return json_answer(202, {"status": "success", "message": "Event processed", "dedup_key": dedup_key})

    # --- Twilio ------------------------------------------------------------------

    def _twilio(self, account_sid: str, headers: dict[str, str], data: Any) -> Answer:
        if (
            basic_credentials(headers.get("authorization", "")) != (TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN)
            or account_sid != TWILIO_ACCOUNT_SID
        ):
            return twilio_error(401, 20003, "Authenticate")
        form = data if isinstance(data, dict) else {}
        to = form.get("To", "")
        if not E164.fullmatch(to):
            return twilio_error(400, 21211, f"The 'To' number {to} is not a valid phone number.")
        if not form.get("From") and not form.get("MessagingServiceSid"):
            return twilio_error(400, 21603, "The 'From' phone number is required.")
        text = form.get("Body", "")
        if not text:
            return twilio_error(400, 21602, "Message body is required.")
        # Counted in UTF-16 code units, stricter than Twilio, so a body the fake takes fits the service.
        if len(text.encode("utf-16-le")) // 2 > 1600:
            return twilio_error(400, 21617, "The concatenated message body exceeds the 1600 character limit.")

        sid = f"SM{next(self._counter):032x}"
        service = form.get("MessagingServiceSid")
        created = {
            "account_sid": TWILIO_ACCOUNT_SID,
            "api_version": "2010-04-01",
            "body": text,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": None if service else form["From"],
            "messaging_service_sid": service,
            "num_media": "0",
            "num_segments": "0" if service else "1",
            "sid": sid,
            "status": "accepted" if service else "queued",
            "to": to,
            "uri": f"/2010-04-01/Accounts/{TWILIO_ACCOUNT_SID}/Messages/{sid}.json",
        }
        return json_answer(201, created)

    # --- Teams ---------------------------------------------------------------------

    def _teams(self, path: str, data: Any) -> Answer:
        if not isinstance(data, dict):
            return text_answer(400, "Bad payload received by generic incoming webhook.")
        if path.startswith("/teams/legacy/"):
            return text_answer(200, "1")
        if path.startswith("/teams/workflows/"):
            return Answer(202)
        return text_answer(404, "not found")


def slack_error(code: str) -> Answer:
    return json_answer(200, {"ok": False, "error": code})


def pagerduty_invalid(errors: list[str]) -> Answer:
    return json_answer(400, {"status": "invalid event", "message": "Event object is invalid", "errors": errors})


def pagerduty_errors(event: dict[str, Any], body: bytes) -> list[str]:
    """Check an event against the Events API v2 limits and return what is wrong with it."""
    errors = []
    if len(body) > 512_000:
        errors.append("Request body is larger than 512000 bytes")
    if not isinstance(event.get("routing_key"), str) or len(event["routing_key"]) != 32:
        errors.append("Length of 'routing_key' is incorrect (should be 32 characters)")
    action = event.get("event_action")
    if action not in PAGERDUTY_ACTIONS:
        errors.append("'event_action' is invalid (must be one of: trigger, acknowledge, resolve)")
    dedup_key = event.get("dedup_key")
    if dedup_key is not None and (not isinstance(dedup_key, str) or len(dedup_key) > 255):
        errors.append("'dedup_key' must be a string of at most 255 characters")
    if action in ("acknowledge", "resolve") and not dedup_key:
        errors.append("'dedup_key' is missing or blank")
    if action == "trigger":
        errors.extend(pagerduty_payload_errors(event.get("payload")))
    return errors


def pagerduty_payload_errors(payload: Any) -> list[str]:
    if not isinstance(payload, dict):
        return ["'payload' is missing or not an object"]
    errors = []
    summary = payload.get("summary")
    if not isinstance(summary, str) or not summary:
        errors.append("'payload.summary' is missing or blank")
    elif len(summary) > 1024:
        errors.append("Length of 'payload.summary' is greater than 1024 characters")
    if not isinstance(payload.get("source"), str) or not payload["source"]:
        errors.append("'payload.source' is missing or blank")
    if payload.get("severity") not in PAGERDUTY_SEVERITIES:
        errors.append("'payload.severity' is invalid (must be one of: critical, error, warning, info)")
    return errors


def twilio_error(status: int, code: int, message: str) -> Answer:
    return json_answer(
        status, {"code": code, "message": message, "more_info": f"https://www.twilio.com/docs/errors/{code}", "status": status}
    )


def basic_credentials(authorization: str) -> tuple[str, str] | None:
    scheme, _, encoded = authorization.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
    except ValueError:
        return None
    return user, password


def scripted_answer(scripted: Scripted) -> Answer:
    body = scripted.body
    if isinstance(body, bytes):
        return Answer(scripted.status or 500, body, scripted.headers)
    if isinstance(body, str):
        answer = text_answer(scripted.status or 500, body)
    else:
        answer = json_answer(scripted.status or 500, body)
    return Answer(answer.status, answer.body, {**answer.headers, **scripted.headers})


def parse_body(content_type: str, body: bytes) -> Any:
    """Return a JSON body parsed, a form as a dict (last value wins), other bodies as `None`."""
    media_type = content_type.split(";")[0].strip().lower()
    if media_type == "application/x-www-form-urlencoded":
        try:
            return dict(parse_qsl(body.decode(), keep_blank_values=True, strict_parsing=bool(body)))
        except (UnicodeDecodeError, ValueError):
            return None
    try:
        return json.loads(body)
    except ValueError:
        return None


def make_handler(fake: FakeSaaS) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body go out in two writes; with Nagle's algorithm the second
        # waits for the client's delayed ACK, about 40 ms on Linux.
        disable_nagle_algorithm = True

        def setup(self) -> None:
            fake.connection_opened()
            super().setup()

        def finish(self) -> None:
            try:
                super().finish()
            finally:
                fake.connection_closed()

        def do_POST(self) -> None:
            self.answer()

        def do_GET(self) -> None:
            self.answer()

        def answer(self) -> None:
            body = self.read_body()
            if body is None:
                # The sender died or gave up in the middle of its body. A real service ignores
                # such a request, so it is no delivery: nothing is recorded and no response is sent.
                self.close_connection = True
                return
            headers = {name.lower(): value for name, value in self.headers.items()}
            answer, delay_s = fake.handle(self.command, self.path, headers, body)
            if delay_s:
                fake.wait_delay(delay_s)
            try:
                self.send_response(answer.status)
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(answer.body)))
                self.end_headers()
                self.wfile.write(answer.body)
            except (BrokenPipeError, ConnectionResetError):
                # The client gave up waiting, as tests of timeouts intend.
                self.close_connection = True

        def read_body(self) -> bytes | None:
            """Return the request body, or None when the connection ended before all of it arrived."""
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                chunks = []
                while True:
                    line = self.rfile.readline()
                    if not line.endswith(b"\n"):
                        return None
                    size = int(line.split(b";")[0], 16)
                    if not size:
                        break
                    chunk = self.rfile.read(size)
                    if len(chunk) < size:
                        return None
                    chunks.append(chunk)
                    self.rfile.readline()
                self.rfile.readline()
                return b"".join(chunks)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            return body if len(body) == length else None

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


# --- SMTP ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Mail:
    """One message the fake SMTP server accepted."""

    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    message: EmailMessage
    at: float


class _Controller(Controller):
    """A controller that listens on a free port, found when the server binds port 0."""

    def _trigger_server(self) -> None:
        assert self.server is not None, "the server is bound before it is triggered"
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


class FakeSmtp:
    """An SMTP server on 127.0.0.1 that records messages and sends scripted SMTP replies.

    With a `tls_context` it offers STARTTLS, and AUTH only after it, checking
    `SMTP_USERNAME` and `SMTP_PASSWORD`.
    """

    def __init__(self, tls_context: Any = None) -> None:
        self.messages: list[Mail] = []
        # Addresses refused at RCPT with the given reply, such as "550 5.1.1 no such user".
        self.refused_recipients: dict[str, str] = {}
        self.logins: list[str] = []
        self._lock = threading.Lock()
        self._scripts: dict[str, collections.deque[str]] = collections.defaultdict(collections.deque)
        self._controller = _Controller(
            self,
            hostname="127.0.0.1",
            port=0,
            tls_context=tls_context,
            authenticator=self._authenticate,
            auth_require_tls=True,
        )

    def start(self) -> FakeSmtp:
        self._controller.start()
        return self

    def close(self) -> None:
        self._controller.stop()

    @property
    def port(self) -> int:
        return self._controller.port

    @property
    def smarthost(self) -> str:
        return f"127.0.0.1:{self.port}"

    def settings(self, **smtp: Any) -> ir.Settings:
        """Return settings whose `smtp` is this server, without TLS unless `smtp` sets `require_tls`."""
        options = {"smarthost": self.smarthost, "sender": "irules@example.com", "require_tls": False, **smtp}
        return ir.Settings(smtp=ir.Smtp(**options))

    def fail_next(self, stage: str, reply: str, *, times: int = 1) -> None:
        """Reply to the next `times` commands of `stage` (`RCPT` or `DATA`) with `reply`, such as "451 4.3.0 try later"."""
        assert stage in ("RCPT", "DATA"), f"unknown SMTP stage {stage!r}"
        with self._lock:
            self._scripts[stage].extend([reply] * times)

    def _scripted(self, stage: str) -> str | None:
        with self._lock:
            queue = self._scripts[stage]
            return queue.popleft() if queue else None

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]) -> str:
        reply = self._scripted("RCPT") or self.refused_recipients.get(address)
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        reply = self._scripted("DATA")
        if reply:
            return reply
        data = envelope.original_content or b""
        # Parsed with the line ends of Python text, so that contents compare with plain strings.
        message = email.message_from_bytes(data.replace(b"\r\n", b"\n"), policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        with self._lock:
            self.messages.append(Mail(str(envelope.mail_from), list(envelope.rcpt_tos), data, message, time.monotonic()))
        return "250 Message accepted for delivery"

    def _authenticate(self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        login = auth_data.login.decode()
        accepted = (login, auth_data.password.decode()) == (SMTP_USERNAME, SMTP_PASSWORD)
        if accepted:
            with self._lock:
                self.logins.append(login)
        return AuthResult(success=accepted, handled=False)


def self_signed_tls(folder: Path) -> tuple[ssl.SSLContext, Path]:
    """Return a server TLS context for 127.0.0.1 and the path of its certificate.

    A client trusts the server when the certificate is its CA file, for example
    through the `SSL_CERT_FILE` environment variable.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    certificate_path = folder / "smtp-cert.pem"
    key_path = folder / "smtp-key.pem"
    certificate_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certificate_path, key_path)
    return context, certificate_path


# --- fixtures -------------------------------------------------------------------------


@pytest.fixture
def fake_saas() -> Iterator[FakeSaaS]:
    with FakeSaaS() as fake:
        yield fake


@pytest.fixture
def smtp_server() -> Iterator[FakeSmtp]:
    server = FakeSmtp().start()
    try:
        yield server
    finally:
        server.close()
