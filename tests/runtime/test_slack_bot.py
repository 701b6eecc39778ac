"""The Slack bot end to end: signed requests through the routes, stored, performed on incidents, replied to.

Requests reach the routes through httpx's ASGI transport. Replies go over real
HTTP to a small server on 127.0.0.1 that plays Slack: `chat.postMessage` under
`/api` and `response_url`s under `/hooks/`. Every test runs on SQLite and on
PostgreSQL (the `store` fixture). The clock is fixed at the time the Slack
fixtures were signed, so their signatures verify.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
import threading
import urllib.parse
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import sqlalchemy as sa
from starlette.applications import Starlette

from compiler import ir
from compiler.api import compile_rules
from runtime import incidents as incident_ops
from runtime.notify.model import Endpoints
from runtime.slack import routes as slack_routes_module
from runtime.slack.bot import APPROVE, DENY, ApprovalDecision, RemediationRequest, Reply, SlackBot
from runtime.slack.routes import slack_routes
from runtime.slack.verify import sign
from runtime.store import Store
from runtime.store.schema import slack_requests, timeline
from targets.slack_blocks import ACKNOWLEDGE, START_RESPONSE

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "slack"
VECTORS = json.loads((FIXTURES / "signing-vectors.json").read_text())

# Test values, not credentials.
SIGNING_SECRET = "test-signing-secret"
BOT_TOKEN = "xoxb-test-bot-token"
NOW = 1715678400
USER = "U00000001"
ACTOR = "slack:U00000001 (zoe)"

RULES = """
settings {
  incident_id_format "INC-{number}"
  daemon_url "https://irules.example.com"
}

team payments {
  webhook "http://127.0.0.1:9/payments"
}

receiver catch-all {
  webhook "http://127.0.0.1:9/all"
}

service checkout {
  team payments
  match service = "checkout"
}

service search {
  match service = "search"
}

route {
  receiver catch-all
}

slack {
  command "/incident"
  signing_secret secret("SLACK_SIGNING_SECRET")
  token secret("SLACK_BOT_TOKEN")
}

runbook restart-checkout "Restart checkout" {
  when service.name == "checkout"
  manual
  risk medium
  step restart {
    run ["kubectl", "rollout", "restart", "deployment/checkout"]
  }
}

runbook clear-search-cache "Clear the search cache" {
  when service.name == "search"
  manual
  step clear {
    run ["true"]
  }
}
"""


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    # The daemon serves with uvicorn on asyncio.
    return "asyncio"


@pytest.fixture(scope="module")
def ruleset(tmp_path_factory: pytest.TempPathFactory) -> ir.Ruleset:
    folder = tmp_path_factory.mktemp("rules")
    (folder / "rules.irules").write_text(RULES)
    return compile_rules(folder)


# ---------------------------------------------------------------- a server playing Slack


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


class FakeSlack:
    """An HTTP server on 127.0.0.1 that records what it receives and responds as Slack does."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.arrived = threading.Event()
        self.post_message_answer = (FIXTURES / "chat-postmessage-response.json").read_bytes()
        self.hook_status = 200
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                headers = {name.lower(): value for name, value in self.headers.items()}
                fake.received.append(Received(self.path, headers, json.loads(body)))
                if self.path == "/api/chat.postMessage":
                    status, answer, kind = 200, fake.post_message_answer, "application/json; charset=utf-8"
                else:
                    status, answer, kind = fake.hook_status, b"ok", "text/plain"
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)
                fake.arrived.set()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def paths(self) -> list[str]:
        return [item.path for item in self.received]


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    fake = FakeSlack()
    thread = threading.Thread(target=fake.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        fake.server.shutdown()
        fake.server.server_close()
        thread.join()


# ---------------------------------------------------------------- the bot and its routes


@dataclass
class Harness:
    bot: SlackBot
    client: httpx.AsyncClient
    slack: FakeSlack
    store: Store
    secrets: dict[str, str]
    clock: list[datetime.datetime]
    sent: list[httpx.Request] = field(default_factory=list)
    changes: int = 0

    def count_change(self) -> None:
        self.changes += 1

    async def post(self, path: str, body: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
        if headers is None:
            headers = signed(body, timestamp=int(self.clock[0].timestamp()))
        return await self.client.post(path, content=body, headers=headers)

    async def command(self, text: str, *, user: str = USER, name: str = "zoe", response_url: str | None = None) -> httpx.Response:
        return await self.post(
            "/slack/commands", command_body(text, self.hook(), user=user, name=name, response_url=response_url)
        )

    async def click(self, action_id: str, value: str, *, user: str = "U00000002", name: str = "max") -> httpx.Response:
        return await self.post("/slack/interactivity", click_body(action_id, value, self.hook(), user=user, name=name))

    def hook(self) -> str:
        return f"{self.slack.url}/hooks/commands/T00000000/{len(self.slack.received)}/abc"

    def replies(self) -> list[dict[str, Any]]:
        return [item.body for item in self.slack.received]

    def rows(self) -> list[dict[str, Any]]:
        with self.store.read() as connection:
            query = sa.select(slack_requests).order_by(slack_requests.c.received_at)
            return [dict(row) for row in connection.execute(query).mappings()]


def at(seconds: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC)


def signed(body: bytes, timestamp: int = NOW, secret: str = SIGNING_SECRET) -> dict[str, str]:
    return {"X-Slack-Request-Timestamp": str(timestamp), "X-Slack-Signature": sign(secret, str(timestamp), body)}


_trigger = iter(range(10**6))


def command_body(text: str, hook: str, *, user: str = USER, name: str = "zoe", response_url: str | None = None) -> bytes:
    fields = {
        "token": "verification-token",
        "team_id": "T00000000",
        "channel_id": "C00000000",
        "user_id": user,
        "user_name": name,
        "command": "/incident",
        "text": text,
        "response_url": response_url or hook,
        # Slack gives every invocation a trigger id of its own, so equal commands differ in their bodies.
        "trigger_id": f"trigger-{next(_trigger)}",
    }
    return urllib.parse.urlencode(fields).encode()


def click_body(action_id: str, value: str, hook: str, *, user: str, name: str) -> bytes:
    payload = {
        "type": "block_actions",
        "token": "verification-token",
        "user": {"id": user, "username": name, "name": name, "team_id": "T00000000"},
        "channel": {"id": "C00000000", "name": "payments-alerts"},
        "trigger_id": f"trigger-{next(_trigger)}",
        "response_url": hook,
        "actions": [{"action_id": action_id, "block_id": "incident_actions", "value": value, "type": "button"}],
    }
    return urllib.parse.urlencode({"payload": json.dumps(payload)}).encode()


def mention_body(event_id: str, text: str, *, thread_ts: str | None = "1715678100.000100") -> bytes:
    event = {"type": "app_mention", "user": USER, "text": text, "ts": "1715678400.000200", "channel": "C00000000"}
    if thread_ts is not None:
        event["thread_ts"] = thread_ts
    envelope = {"token": "verification-token", "type": "event_callback", "event_id": event_id, "event": event}
    return json.dumps(envelope).encode()


class LocalOnly(httpx.AsyncBaseTransport):
    """A transport that sends to 127.0.0.1 only, so a bot that posts elsewhere fails the test instead of reaching a real host."""

    def __init__(self) -> None:
        self._transport = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.host != "127.0.0.1":
            raise httpx.ConnectError(f"the test allows requests to 127.0.0.1 only, not {request.url.host}", request=request)
        return await self._transport.handle_async_request(request)

    async def aclose(self) -> None:
        await self._transport.aclose()


@asynccontextmanager
async def running(store: Store, ruleset: ir.Ruleset, slack: FakeSlack, **secrets: str) -> AsyncIterator[Harness]:
    values = {"SLACK_SIGNING_SECRET": SIGNING_SECRET, "SLACK_BOT_TOKEN": BOT_TOKEN} if not secrets else secrets
    clock = [at(NOW)]
    endpoints = Endpoints(slack_api=f"{slack.url}/api", slack_hooks=f"{slack.url}/hooks/", timeout_s=5.0)
    sent: list[httpx.Request] = []

    async def record(request: httpx.Request) -> None:
        sent.append(request)

    async with httpx.AsyncClient(transport=LocalOnly(), event_hooks={"request": [record]}) as outbound:
        bot = SlackBot(store, lambda: ruleset, values.get, outbound, endpoints, clock=lambda: clock[0])
        app = Starlette(routes=slack_routes(bot))
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            harness = Harness(bot, client, slack, store, values, clock, sent)
            bot.on_incident_change = harness.count_change
            yield harness


def open_incident_by_api(store: Store) -> None:
    """Open INC-1 a minute before the requests, as the incident API does."""
    incident_ops.create(
        store, "INC-{number}", at(NOW - 60), title="Checkout down", severity="high", services=[], team=None, actor="api"
    )


def actors(store: Store, key: str) -> list[tuple[str, str]]:
    with store.read() as connection:
        row = incident_ops.get_row(connection, key)
        query = sa.select(timeline.c.kind, timeline.c.actor).where(timeline.c.incident_id == row["id"]).order_by(timeline.c.id)
        return [(kind, actor) for kind, actor in connection.execute(query)]


# ---------------------------------------------------------------- verification


@pytest.mark.parametrize(
    ("vector", "path", "stored_kind"),
    [
        (VECTORS["vectors"][0], "/slack/commands", "command"),
        (VECTORS["vectors"][1], "/slack/events", "event"),
        # The fixture's button has the action id `incident_ack`, which is not one of the bot's.
        (VECTORS["vectors"][2], "/slack/interactivity", None),
    ],
    ids=["slash-command", "app-mention", "block-actions"],
)
async def test_fixture_request_verifies_at_its_timestamp(
    store: Store, ruleset: ir.Ruleset, slack: FakeSlack, vector: dict[str, Any], path: str, stored_kind: str | None
) -> None:
    body = (FIXTURES / vector["body_file"]).read_bytes()
    headers = {name: vector[name] for name in ("X-Slack-Request-Timestamp", "X-Slack-Signature")}
    async with running(store, ruleset, slack, SLACK_SIGNING_SECRET=VECTORS["signing_secret"]) as harness:
        harness.clock[0] = at(int(vector["X-Slack-Request-Timestamp"]))
        response = await harness.post(path, body, headers)
        rows = harness.rows()
    assert response.status_code == 200
    assert response.content == b""
    assert [row["kind"] for row in rows] == ([stored_kind] if stored_kind else [])


async def test_stored_body_omits_token(store: Store, ruleset: ir.Ruleset, slack: FakeSlack) -> None:
    vector = VECTORS["vectors"][1]
    body = (FIXTURES / vector["body_file"]).read_bytes()
    headers = {name: vector[name] for name in ("X-Slack-Request-Timestamp", "X-Slack-Signature")}
    async with running(store, ruleset, slack, SLACK_SIGNING_SECRET=VECTORS["signing_secret"]) as harness:
        harness.clock[0] = at(int(vector["X-Slack-Request-Timestamp"]))
        await harness.post("/slack/events", body, headers)
        [row] = harness.rows()
    assert row["delivery_id"] == "Ev00000000AA"
    assert "token" not in row["body"]
    assert row["body"]["event"]["text"] == "<@U0BOT0000> status please — was ist los? :fire:"
    assert row["processed_at"] is None


def forged(body: bytes) -> dict[str, str]:
    headers = signed(body)
    digest = headers["X-Slack-Signature"]
    headers["X-Slack-Signature"] = digest[:-1] + ("0" if digest[-1] != "0" else "1")
    return headers


def without(name: str):
    def headers(body: bytes) -> dict[str, str]:
        values = signed(body)
        del values[name]
        return values

    return headers


STALE = "more than the 300 s allowed; check the daemon's clock if this repeats"
NO_SECRET = "the daemon has no Slack signing secret configured, so it cannot verify Slack requests"
MISMATCH = "X-Slack-Signature does not match the request body"


@pytest.mark.parametrize(
    ("make_headers", "secrets", "error"),
    [
        (forged, None, MISMATCH),
        (lambda body: signed(body, secret="another-secret"), None, MISMATCH),
        (lambda body: signed(body, timestamp=NOW - 301), None, f"stale request: X-Slack-Request-Timestamp is 301 s old, {STALE}"),
        (
            lambda body: signed(body, timestamp=NOW + 301),
            None,
            f"stale request: X-Slack-Request-Timestamp is 301 s in the future, {STALE}",
        ),
        (without("X-Slack-Signature"), None, "missing X-Slack-Signature header"),
        (without("X-Slack-Request-Timestamp"), None, "missing X-Slack-Request-Timestamp header"),
        (lambda body: {}, None, "missing X-Slack-Request-Timestamp header"),
        (
            lambda body: {**signed(body), "X-Slack-Request-Timestamp": "yesterday"},
            None,
            "invalid X-Slack-Request-Timestamp header: expected Unix time in seconds",
        ),
        (
            lambda body: {**signed(body), "X-Slack-Signature": "sha256=abc"},
            None,
            "invalid X-Slack-Signature header: expected `v0=` and 64 hex digits",
        ),
        (signed, {"SLACK_BOT_TOKEN": BOT_TOKEN}, NO_SECRET),
    ],
    ids=[
        "forged",
        "wrong-secret",
        "stale-old",
        "stale-future",
        "unsigned",
        "no-timestamp",
        "no-headers",
        "garbled-timestamp",
        "garbled-signature",
        "secret-not-set",
    ],
)
async def test_unverified_command_rejected(
    store: Store,
    ruleset: ir.Ruleset,
    slack: FakeSlack,
    caplog: pytest.LogCaptureFixture,
    make_headers: Any,
    secrets: dict[str, str] | None,
    error: str,
) -> None:
    body = command_body("create Down", f"{slack.url}/hooks/x")
    headers = make_headers(body)
    with caplog.at_level(logging.WARNING, logger="irules.slack"):
        async with running(store, ruleset, slack, **(secrets or {})) as harness:
            response = await harness.post("/slack/commands", body, headers)
            processed = await harness.bot.process_pending()
            rows = harness.rows()
    assert response.status_code == 401
    assert response.json() == {"error": error}
    assert (rows, processed) == ([], 0)
    assert slack.received == []
    messages = [record.getMessage() for record in caplog.records]
    assert [message for message in messages if "rejected with" in message] == [
        f"slack request to /slack/commands rejected with 401: {error}"
    ]
    signature = headers.get("X-Slack-Signature", "")
    for message in messages:
        assert SIGNING_SECRET not in message
        assert not signature or signature not in message


@pytest.mark.parametrize("path", ["/slack/events", "/slack/interactivity"])
async def test_forged_event_or_click_rejected(store: Store, ruleset: ir.Ruleset, slack: FakeSlack, path: str) -> None:
    bodies = {
        "/slack/events": mention_body("Ev1", "<@U0BOT0000> create Down"),
        "/slack/interactivity": click_body(ACKNOWLEDGE, "INC-1", f"{slack.url}/hooks/x", user=USER, name="zoe"),
    }
    async with running(store, ruleset, slack) as harness:
        response = await harness.post(path, bodies[path], forged(bodies[path]))
        rows = harness.rows()
    assert response.status_code == 401
    assert response.json() == {"error": MISMATCH}
    assert rows == []


async def test_no_signing_secret_in_rules_rejects(store: Store, ruleset: ir.Ruleset, slack: FakeSlack) -> None:
    assert ruleset.slack is not None
    unsigned = ruleset.model_copy(update={"slack": ruleset.slack.model_copy(update={"signing_secret": None})})
    body = command_body("help", f"{slack.url}/hooks/x")
    async with running(store, unsigned, slack) as harness:
        response = await harness.post("/slack/commands", body)
        rows = harness.rows()
    assert response.status_code == 401
    assert response.json() == {"error": NO_SECRET}
    assert rows == []


async def test_url_verification_returns_challenge(store: Store, ruleset: ir.Ruleset, slack: FakeSlack) -> None:
    body = (FIXTURES / "url-verification.json").read_bytes()
    async with running(store, ruleset, slack) as harness:
        response = await harness.post("/slack/events", body)
        rows = harness.rows()
    assert response.status_code == 200
    assert response.json() == {"challenge": "TOKEN-PLACEHOLDER-challenge"}
    assert rows == []


@pytest.mark.parametrize(
    ("path", "body", "error"),
    [
        (
            "/slack/events",
            b"{not json",
            "the body is not valid JSON: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)",
        ),
        ("/slack/events", b"[]", "the body is not a JSON object"),
        (
            "/slack/events",
            b'{"type": "event_callback", "event": {"type": "app_mention"}}',
            "missing `event.user`: expected a non-empty string",
        ),
        (
            "/slack/events",
            b'{"type": "event_callback", "event": {"type": "app_mention", "user": "U1", "channel": "C1", "ts": "1.2", "text": "hi"}}',
            "missing `event_id`: expected a non-empty string",
        ),
        (
            "/slack/commands",
            b"command=%2Fincident&text=help&response_url=x",
            "missing form field `user_id`: expected a non-empty string",
        ),
        (
            "/slack/commands",
            b"\xff\xfe",
            "the body is not a valid form: 'utf-8' codec can't decode byte 0xff in position 0: invalid start byte",
        ),
        ("/slack/interactivity", b"text=x", "missing form field `payload`: expected a non-empty string"),
        ("/slack/interactivity", b"payload=%5B%5D", "`payload` is not a JSON object"),
    ],
    ids=["not-json", "not-object", "no-user", "no-event-id", "no-user-id", "not-utf8", "no-payload", "payload-list"],
)
async def test_malformed_signed_request_is_400(
    store: Store, ruleset: ir.Ruleset, slack: FakeSlack, path: str, body: bytes, error: str
) -> None:
    async with running(store, ruleset, slack) as harness:
        response = await harness.post(path, body)
        rows = harness.rows()
    assert response.status_code == 400
    assert response.json() == {"error": error}
    assert rows == []


async def test_requests_without_work_not_stored(store: Store, ruleset: ir.Ruleset, slack: FakeSlack) -> None:
    message_event = json.dumps(
        {"type": "event_callback", "event_id": "Ev2", "event": {"type": "message", "user": USER, "text": "hi"}}
    ).encode()
    link_click = click_body("open_runbook", "", f"{slack.url}/hooks/x", user=USER, name="zoe")
    view = urllib.parse.urlencode({"payload": json.dumps({"type": "view_submission"})}).encode()
    async with running(store, ruleset, slack) as harness:
        responses = [
            await harness.post("/slack/events", message_event),
            await harness.post("/slack/interactivity", link_click),
            await harness.post("/slack/interactivity", view),
        ]
        rows = harness.rows()
    assert [response.status_code for response in responses] == [200, 200, 200]
    assert rows == []


async def test_oversized_body_is_413(
    store: Store, ruleset: ir.Ruleset, slack: FakeSlack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(slack_routes_module, "MAX_BODY_BYTES", 100)
    body = command_body("create " + "x" * 200, f"{slack.url}/hooks/x")
    async with running(store, ruleset, slack) as harness:
        response = await harness.post("/slack/commands", body)
        rows = harness.rows()
    assert response.status_code == 413
    assert response.json() == {"error": "body is larger than the limit of 100 bytes"}
    assert rows == []


async def test_store_failure_is_503(
    store: Store, ruleset: ir.Ruleset, slack: FakeSlack, caplog: pytest.LogCaptureFixture
) -> None:
    def fail(delivery_id: str, kind: str, body: dict[str, Any]) -> bool:
        raise sa.exc.OperationalError("INSERT INTO slack_requests ...", {"body": "create Down"}, Exception("database is locked"))

    body = command_body("create Down", f"{slack.url}/hooks/x")
    with caplog.at_level(logging.ERROR, logger="irules.slack"):
        async with running(store, ruleset, slack) as harness:
            harness.bot.accept = fail  # type: ignore[method-assign]
            response = await harness.post("/slack/commands", body)
    assert response.status_code == 503
    assert response.json() == {"error": "the request could not be stored (OperationalError); retry later"}
    digest = hashlib.sha256(body).hexdigest()
    assert [record.getMessage() for record in caplog.records] == [
        f"slack command {digest} could not be stored: OperationalError: database is locked"
    ]


# ---------------------------------------------------------------- durability and redelivery


async def test_response_precedes_work(store: Store, ruleset: ir.Ruleset, slack: FakeSlack) -> None:
    async with running(store, ruleset, slack) as harness:
        response = await harness.command("create Checkout down")
        rows = harness.rows()
        before = incident_ops.list_incidents(store)
        replies_before = list(harness.slack.received)

        processed = await harness.bot.process_pending()
        after = incident_ops.list_incidents(store)
        rows_after = harness.rows()
    assert response.status_code == 200
    assert [(row["kind"], row["processed_at"]) for row in rows] == [("command", None)]
    assert before == []
    assert replies_before == []
    assert processed == 1
    assert [incident["title"] for incident in after] == ["Checkout down"]
    assert rows_after[0]["processed_at"] == at(NOW)
    assert rows_after[0]["outcome"] == "<@U00000001> opened *INC-1*: Checkout down (no severity)"


async def test_redelivered_event_acted_on_once(store: Store, ruleset: ir.Ruleset, slack: FakeSlack) -> None:
    body = mention_body("Ev0001", "<@U0BOT0000> create Payments API down severity=critical")
    async with running(store, ruleset, slack) as harness:
        first = await harness.post("/slack/events", body)
        retries = [
            await harness.client.post("/slack/events", content=body, headers={**signed(body), "X-Slack-Retry-Num": str(number)})
            for number in (1, 2)
        ]
        await harness.bot.process_pending()
        late_retry = await harness.client.post(
            "/slack/events",
            content=body,
            headers={**signed(body), "X-Slack-Retry-Num": "3", "X-Slack-Retry-Reason": "http_timeout"},
        )
        await harness.bot.process_pending()
        rows = harness.rows()
    assert [response.status_code for response in [first, *retries, late_retry]] == [200, 200, 200, 200]
    assert [row["delivery_id"] for row in rows] == ["Ev0001"]
    assert [incident["id"] for incident in incident_ops.list_incidents(store)] == ["INC-1"]
    assert slack.paths() == ["/api/chat.postMessage"]


async def test_retry_without_first_attempt_processed(store: Store, ruleset: ir.Ruleset, slack: FakeSlack) -> None:
    body = mention_body("Ev0002", "<@U0BOT0000> create Search slow")
    async with running(store, ruleset, slack) as harness:
        response = await harness.client.post("/slack/events", content=body, headers={**signed(body), "X-Slack-Retry-Num": "1"})
        await harness.bot.process_pending()
    assert response.status_code == 200
    assert [incident["title"] for incident in incident_ops.list_incidents(store)] == ["Search slow"]
    assert slack.paths() == ["/api/chat.postMessage"]


async def test_repeated_command_runs_twice(store: Store, ruleset: ir.Ruleset, slack: FakeSlack) -> None:
    async with running(store, ruleset, slack) as harness:
        await harness.command("create Disk full")
        await harness.command("create Disk full")
        await harness.bot.process_pending()
    assert [incident["id"] for incident in incident_ops.list_incidents(store)] == ["INC-2", "INC-1"]


async def test_crash_after_create_opens_one_incident(
    store: Store, ruleset: ir.Ruleset, slack: FakeSlack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The process dies after the incident is committed and before the request is marked done."""
    from runtime.slack import inbox

    class Crash(BaseException):
        pass

    def crash(*_arguments: object) -> None:
        raise Crash

    async with running(store, ruleset, slack) as harness:
        await harness.command("create Checkout down")
        with monkeypatch.context() as patched:
            patched.setattr(inbox, "finish", crash)
            with pytest.raises(Crash):
                await harness.bot.process_pending()
        # The restarted daemon finds no pending request: the create marked it in its own transaction.
        assert await harness.bot.process_pending() == 0
    assert [incident["id"] for incident in incident_ops.list_incidents(store)] == ["INC-1"]
    assert harness.rows()[0]["outcome"] == "incident created"


async def test_purge_keeps_pending_and_recent(store: Store, ruleset: ir.Ruleset, slack: FakeSlack) -> None:
    async with running(store, ruleset, slack) as harness:
        await harness.command("help")
        await harness.bot.process_pending()
        harness.clock[0] = at(NOW + 3600)
        await harness.command("status INC-1")
        harness.clock[0] = at(NOW + 24 * 3600 + 1800)
        purged = harness.bot.purge()
        kept = harness.rows()
        with pytest.raises(ValueError) as caught:
            harness.bot.purge(datetime.timedelta(hours=1))
    assert str(caught.value) == (
        "older_than is 1 h; slack requests are kept at least 24 h, so that a late redelivery is recognised"
    )
    assert purged == 1
    assert [(row["received_at"], row["processed_at"]) for row in kept] == [(at(NOW + 3600), None)]


# ---------------------------------------------------------------- commands


async def test_slash_commands_create_status_ack_resolve(store: Store, ruleset: ir.Ruleset, slack: FakeSlack) -> None:
    async with running(store, ruleset, slack) as harness:
        for text in (
            "create Checkout 5xx > 5% service=checkout severity=critical",
            "status INC-1",
            "ack INC-1",
            "ack INC-1",
            "resolve INC-1 rolled back the deploy",
            "resolve INC-1",
        ):
            await harness.command(text)
            await harness.bot.process_pending()
    incident = incident_ops.show(store, "INC-1")
    assert (incident["status"], incident["severity"], incident["services"], incident["team"]) == (
        "resolved",
        "critical",
        ["checkout"],
        "payments",
    )
    assert incident["acknowledged_by"] == ACTOR
    assert actors(store, "INC-1") == [
        ("incident.detected", ACTOR),
        ("incident.acknowledged", ACTOR),
        ("incident.status", ACTOR),
    ]
    assert incident["timeline"][-1]["message"] == "Status changed from investigating to resolved: rolled back the deploy"
    replies = [(reply["response_type"], reply["text"]) for reply in harness.replies()]
    assert replies == [
        ("in_channel", "<@U00000001> opened *INC-1*: Checkout 5xx &gt; 5% (severity critical; services checkout; team payments)"),
        (
            "ephemeral",
            "*INC-1* · Checkout 5xx &gt; 5%\n"
            "Status: detected · Severity: critical · Team: payments\n"
            "Services: checkout\n"
            "Alerts: 0 firing of 0\n"
            "Opened 2024-05-14T09:20:00Z\n"
            "<https://irules.example.com/incidents/INC-1|Open in irules>",
        ),
        ("in_channel", "<@U00000001> acknowledged *INC-1*; its status is investigating."),
        ("ephemeral", "*INC-1* was already acknowledged by slack:U00000001 (zoe)."),
        ("in_channel", "<@U00000001> resolved *INC-1*: rolled back the deploy"),
        ("ephemeral", "*INC-1* is already resolved."),
    ]
    assert all(item.path.startswith("/hooks/commands/") for item in slack.received)
    # Create, the first acknowledgement and the first resolution changed the incident.
    assert harness.changes == 3


async def test_command_errors_reply_ephemerally(store: Store, ruleset: ir.Ruleset, slack: FakeSlack) -> None:
    async with running(store, ruleset, slack) as harness:
        for text in ("ack INC-404", "create Down service=billing", "create Down severity=urgent"):
            await harness.command(text)
            await harness.bot.process_pending()
    assert [(reply["response_type"], reply["text"]) for reply in harness.replies()] == [
        ("ephemeral", "incident 'INC-404' not found"),
        ("ephemeral", "Unknown service `billing`; the rules declare checkout, search."),
        ("ephemeral", "Unknown severity `urgent`; use one of critical, high, medium, low.\n\n" + HELP),
    ]
    assert incident_ops.list_incidents(store) == []


HELP = (
    "Use `/incident <command>` or mention the bot with a command:\n"
    "• `create <title> [severity=<level>] [service=<name>]` opens an incident\n"
    "• `status <incident id>` shows an incident\n"
    "• `ack <incident id>` acknowledges an incident\n"
    "• `resolve <incident id> [note]` resolves an incident, with an optional note for the timeline\n"
    "• `remediate <incident id>` lists the runbooks for an incident\n"
    "• `help` shows this list\n"
    "Severity levels: critical, high, medium, low."
)


async def test_fixture_slash_command_gets_help(store: Store, ruleset: ir.Ruleset, slack: FakeSlack) -> None:
    vector = VECTORS["vectors"][0]
    body = (FIXTURES / vector["body_file"]).read_bytes()
    headers = {name: vector[name] for name in ("X-Slack-Request-Timestamp", "X-Slack-Signature")}
    # The fixture's response_url is on hooks.slack.com; the bot may post only under the fake's /hooks/.
    async with running(store, ruleset, slack, SLACK_SIGNING_SECRET=VECTORS["signing_secret"]) as harness:
        await harness.post("/slack/commands", body, headers)
        await harness.bot.process_pending()
        [row] = harness.rows()
    assert row["outcome"] == "Unknown command `declare`.\n\n" + HELP
    assert slack.received == []
    assert harness.sent == []


async def test_hostile_title_escaped(store: Store, ruleset: ir.Ruleset, slack: FakeSlack) -> None:
    async with running(store, ruleset, slack) as harness:
        await harness.command("create <!channel> & <https://evil.example|click>")
        await harness.bot.process_pending()
    [reply] = harness.replies()
    assert reply["text"] == "<@U00000001> opened *INC-1*: &lt;!channel&gt; &amp; &lt;https://evil.example|click&gt; (no severity)"
    assert incident_ops.show(store, "INC-1")["title"] == "<!channel> & <https://evil.example|click>"


async def test_mention_replies_in_thread(store: Store, ruleset: ir.Ruleset, slack: FakeSlack) -> None:
    async with running(store, ruleset, slack) as harness:
        await harness.post("/slack/events", mention_body("Ev0003", "<@U0BOT0000> create A &amp; B severity=high"))
        await harness.bot.process_pending()
        await harness.post("/slack/events", mention_body("Ev0004", "<@U0BOT0000> ack INC-1", thread_ts=None))
        await harness.bot.process_pending()
    assert [item.path for item in slack.received] == ["/api/chat.postMessage", "/api/chat.postMessage"]
    assert slack.received[0].headers["authorization"] == f"Bearer {BOT_TOKEN}"
    assert [item.body for item in slack.received] == [
        {
            "channel": "C00000000",
            "thread_ts": "1715678100.000100",
            "text": "<@U00000001> opened *INC-1*: A &amp; B (severity high)",
        },
        {
            "channel": "C00000000",
            "thread_ts": "1715678400.000200",
            "text": "<@U00000001> acknowledged *INC-1*; its status is investigating.",
        },
    ]
    assert actors(store, "INC-1") == [("incident.detected", "slack:U00000001"), ("incident.acknowledged", "slack:U00000001")]
    assert incident_ops.show(store, "INC-1")["title"] == "A & B"


async def test_fixture_mention_gets_usage(store: Store, ruleset: ir.Ruleset, slack: FakeSlack) -> None:
    vector = VECTORS["vectors"][1]
    body = (FIXTURES / vector["body_file"]).read_bytes()
    headers = {name: vector[name] for name in ("X-Slack-Request-Timestamp", "X-Slack-Signature")}
    async with running(
        store, ruleset, slack, SLACK_SIGNING_SECRET=VECTORS["signing_secret"], SLACK_BOT_TOKEN=BOT_TOKEN
    ) as harness:
        harness.clock[0] = at(int(vector["X-Slack-Request-Timestamp"]))
        await harness.post("/slack/events", body, headers)
        await harness.bot.process_pending()
    [reply] = harness.replies()
    assert reply == {
        "channel": "C00000000",
        "thread_ts": "1715678100.000100",
        "text": "`status` takes exactly one incident id. Usage: `status <incident id>`\n\n" + HELP,
    }


async def test_remediate_lists_matching_runbooks(store: Store, ruleset: ir.Ruleset, slack: FakeSlack) -> None:
    async with running(store, ruleset, slack) as harness:
        # Requests stored at the same moment have no order among them, so each is processed before the next.
        await harness.command("create Checkout down service=checkout")
        await harness.bot.process_pending()
        await harness.command("create Nothing known")
        await harness.bot.process_pending()
        await harness.command("remediate INC-1")
        await harness.bot.process_pending()
        await harness.command("remediate INC-2")
        await harness.bot.process_pending()
    assert [reply["text"] for reply in harness.replies()[2:]] == [
        "Runbooks for *INC-1*:\n"
        "• `restart-checkout` Restart checkout (manual, risk medium)\n"
        "Starting runbooks from Slack needs the runbook executor, which this daemon does not have yet; nothing was started.",
        "No runbook applies to *INC-2*.",
    ]


async def test_remediate_handler_takes_over(store: Store, ruleset: ir.Ruleset, slack: FakeSlack) -> None:
    requests: list[RemediationRequest] = []

    async def remediate(request: RemediationRequest) -> Reply:
        requests.append(request)
        return Reply("started restart-checkout", in_channel=True)

    async with running(store, ruleset, slack) as harness:
        harness.bot.remediate = remediate
        await harness.command("create Checkout down service=checkout")
        await harness.bot.process_pending()
        await harness.command("remediate INC-1")
        await harness.bot.process_pending()
    [request] = requests
    assert (request.incident["id"], [runbook.id for runbook in request.runbooks], request.actor.label) == (
        "INC-1",
        ["restart-checkout"],
        ACTOR,
    )
    assert harness.replies()[-1] == {"response_type": "in_channel", "text": "started restart-checkout"}


# ---------------------------------------------------------------- buttons


async def test_acknowledge_button_acknowledges(store: Store, ruleset: ir.Ruleset, slack: FakeSlack) -> None:
    open_incident_by_api(store)
    async with running(store, ruleset, slack) as harness:
        response = await harness.click(ACKNOWLEDGE, "INC-1")
        await harness.bot.process_pending()
    incident = incident_ops.show(store, "INC-1")
    assert response.status_code == 200
    assert (incident["status"], incident["acknowledged_by"], incident["assignee"]) == (
        "investigating",
        "slack:U00000002 (max)",
        None,
    )
    assert harness.replies() == [
        {
            "response_type": "in_channel",
            "text": "<@U00000002> acknowledged *INC-1*; its status is investigating.",
            "replace_original": False,
        }
    ]
    assert harness.changes == 1


async def test_start_response_button_assigns(store: Store, ruleset: ir.Ruleset, slack: FakeSlack) -> None:
    open_incident_by_api(store)
    async with running(store, ruleset, slack) as harness:
        await harness.click(START_RESPONSE, "INC-1")
        await harness.bot.process_pending()
    incident = incident_ops.show(store, "INC-1")
    assert (incident["status"], incident["acknowledged_by"], incident["assignee"]) == (
        "investigating",
        "slack:U00000002 (max)",
        "slack:U00000002 (max)",
    )
    assert actors(store, "INC-1") == [
        ("incident.detected", "api"),
        ("incident.acknowledged", "slack:U00000002 (max)"),
        ("incident.assigned", "slack:U00000002 (max)"),
    ]
    assert harness.replies()[0]["text"] == "<@U00000002> started the response to *INC-1*: assigned to them, status investigating."


async def test_start_response_resumes_triaged_incident(store: Store, ruleset: ir.Ruleset, slack: FakeSlack) -> None:
    open_incident_by_api(store)
    incident_ops.acknowledge(store, "INC-1", "api", at(NOW - 50))
    incident_ops.update(store, "INC-1", incident_ops.Change(status="triaged"), "api", at(NOW - 40))
    async with running(store, ruleset, slack) as harness:
        await harness.click(START_RESPONSE, "INC-1")
        await harness.bot.process_pending()
    incident = incident_ops.show(store, "INC-1")
    assert (incident["status"], incident["acknowledged_by"], incident["assignee"]) == (
        "investigating",
        "api",
        "slack:U00000002 (max)",
    )


async def test_click_on_resolved_incident(store: Store, ruleset: ir.Ruleset, slack: FakeSlack) -> None:
    open_incident_by_api(store)
    incident_ops.update(store, "INC-1", incident_ops.Change(status="resolved"), "api", at(NOW - 30))
    async with running(store, ruleset, slack) as harness:
        await harness.click(ACKNOWLEDGE, "INC-1")
        await harness.bot.process_pending()
    assert harness.replies()[0]["text"] == "incident INC-1 is resolved; there is nothing to acknowledge"
    assert harness.replies()[0]["response_type"] == "ephemeral"


async def test_approve_without_executor(store: Store, ruleset: ir.Ruleset, slack: FakeSlack) -> None:
    async with running(store, ruleset, slack) as harness:
        await harness.click(APPROVE, "approval-7")
        await harness.bot.process_pending()
    assert harness.replies() == [
        {
            "response_type": "ephemeral",
            "text": "No runbook step is waiting for approval `approval-7`: this daemon runs no runbooks yet.",
            "replace_original": False,
        }
    ]


async def test_approval_clicks_reach_handler(store: Store, ruleset: ir.Ruleset, slack: FakeSlack) -> None:
    decisions: list[ApprovalDecision] = []

    async def approvals(decision: ApprovalDecision) -> Reply:
        decisions.append(decision)
        return Reply(f"{'approved' if decision.approved else 'denied'} {decision.approval_id}", in_channel=True)

    async with running(store, ruleset, slack) as harness:
        harness.bot.approvals = approvals
        await harness.click(APPROVE, "approval-7")
        await harness.bot.process_pending()
        await harness.click(DENY, "approval-8")
        await harness.bot.process_pending()
    assert [(item.approval_id, item.approved, item.actor.label) for item in decisions] == [
        ("approval-7", True, "slack:U00000002 (max)"),
        ("approval-8", False, "slack:U00000002 (max)"),
    ]
    assert [reply["text"] for reply in harness.replies()] == ["approved approval-7", "denied approval-8"]


# ---------------------------------------------------------------- replies that cannot be sent


async def test_foreign_response_url_rejected(
    store: Store, ruleset: ir.Ruleset, slack: FakeSlack, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="irules.slack"):
        async with running(store, ruleset, slack) as harness:
            for elsewhere in (f"{slack.url}/elsewhere/hooks/", f"{slack.url}/hooksx/1", f"{slack.url}.example.net/hooks/"):
                await harness.command("help", response_url=elsewhere)
            await harness.bot.process_pending()
            rows = harness.rows()
    assert harness.sent == []
    assert slack.received == []
    assert [row["processed_at"] for row in rows] == [at(NOW)] * 3
    rejections = [record.getMessage() for record in caplog.records if "response_url is not under" in record.getMessage()]
    assert len(rejections) == 3
    assert rejections[0].endswith(f"not sent: its response_url is not under {slack.url}/hooks/")


async def test_reply_failures_logged(
    store: Store, ruleset: ir.Ruleset, slack: FakeSlack, caplog: pytest.LogCaptureFixture
) -> None:
    slack.hook_status = 404
    slack.post_message_answer = (FIXTURES / "chat-postmessage-error.json").read_bytes()
    with caplog.at_level(logging.WARNING, logger="irules.slack"):
        async with running(store, ruleset, slack) as harness:
            await harness.command("create Disk full")
            first = await harness.bot.process_pending()
            await harness.post("/slack/events", mention_body("Ev0005", "<@U0BOT0000> ack INC-1"))
            second = await harness.bot.process_pending()
            rows = harness.rows()
    assert (first, second) == (1, 1)
    assert [row["processed_at"] for row in rows] == [at(NOW), at(NOW)]
    assert incident_ops.show(store, "INC-1")["status"] == "investigating"
    messages = [record.getMessage() for record in caplog.records]
    assert any(message.endswith("response_url returned HTTP 404") for message in messages)
    assert any(message.endswith("chat.postMessage returned not_in_channel") for message in messages)


async def test_mention_without_bot_token_unanswered(
    store: Store, ruleset: ir.Ruleset, slack: FakeSlack, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="irules.slack"):
        async with running(store, ruleset, slack, SLACK_SIGNING_SECRET=SIGNING_SECRET) as harness:
            await harness.post("/slack/events", mention_body("Ev0006", "<@U0BOT0000> create Disk full"))
            await harness.bot.process_pending()
    assert [incident["title"] for incident in incident_ops.list_incidents(store)] == ["Disk full"]
    assert harness.sent == []
    assert [record.getMessage() for record in caplog.records] == [
        "slack reply to request Ev0006 not sent: no bot token, because `token` in `slack` names no secret or its secret is not set"
    ]


# ---------------------------------------------------------------- the work loop


async def test_run_processes_and_stops(store: Store, ruleset: ir.Ruleset, slack: FakeSlack) -> None:
    stop = anyio.Event()
    # Deadlines against a hung loop, not timing assertions: the reply usually arrives in milliseconds.
    with anyio.fail_after(20):
        async with running(store, ruleset, slack) as harness, anyio.create_task_group() as group:
            group.start_soon(harness.bot.run, stop)
            await harness.command("create Disk full")
            arrived = await anyio.to_thread.run_sync(slack.arrived.wait, 10.0)
            stop.set()
    assert arrived
    assert [incident["title"] for incident in incident_ops.list_incidents(store)] == ["Disk full"]
    assert [row["processed_at"] for row in harness.rows()] == [at(NOW)]


async def test_command_delivery_id_is_digest(store: Store, ruleset: ir.Ruleset, slack: FakeSlack) -> None:
    body = command_body("help", f"{slack.url}/hooks/x")
    async with running(store, ruleset, slack) as harness:
        await harness.post("/slack/commands", body)
        [row] = harness.rows()
    assert row["delivery_id"] == hashlib.sha256(body).hexdigest()


async def test_no_notify_performs_requests_but_sends_no_reply(store: Store, ruleset: ir.Ruleset, slack: FakeSlack) -> None:
    async with running(store, ruleset, slack) as harness:
        harness.bot.send_replies = False
        await harness.command("create Checkout down service=checkout")
        await harness.bot.process_pending()
        await harness.command("ack INC-1")
        await harness.bot.process_pending()
    # `--no-notify` promises that nothing leaves the daemon: no request went out at all.
    assert harness.sent == []
    assert harness.slack.paths() == []
    assert incident_ops.show(store, "INC-1")["status"] == "investigating"
    assert [row["processed_at"] is not None for row in harness.rows()] == [True, True]
