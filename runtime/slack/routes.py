"""The daemon's Slack endpoints: Events API, the slash command and interactivity.

Each handler reads the raw body once, verifies its signature and parses it.
A request that needs work is stored before the handler responds 200, and the
bot performs the work after the response went out (see `runtime.slack.bot`).
The response is an empty 200, which Slack shows as nothing, so the requester
sees only the bot's reply.

| status | when |
| --- | --- |
| 200 | stored, a redelivery of a stored request, or nothing to do (other events, other buttons) |
| 400 | signed, but not a request of the expected form |
| 401 | not verified: see `runtime.slack.verify` |
| 413 | body larger than the daemon's limit |
| 503 | the store failed; Slack redelivers events, and a person can repeat a command |
"""

from __future__ import annotations

import hashlib
import json
import logging
import urllib.parse
from typing import Any

import anyio
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from runtime.ingest import MAX_BODY_BYTES
from runtime.slack import inbox
from runtime.slack.bot import ACTIONS, SlackBot
from runtime.slack.verify import VerificationFailed, verify_request

log = logging.getLogger("irules.slack")

# The `delivery_id` column is String(200); Slack's event ids are about a dozen characters.
MAX_DELIVERY_ID = 200
# Form bodies of Slack have about twenty fields.
MAX_FORM_FIELDS = 100


class BadRequest(Exception):
    """A verified request whose body is not what the endpoint takes; the message names the problem."""

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


def slack_routes(bot: SlackBot) -> list[Route]:
    """Return the Slack routes for the daemon's app; mount them before any catch-all route."""
    endpoints = SlackEndpoints(bot)
    return [
        Route("/slack/events", endpoints.events, methods=["POST"]),
        Route("/slack/commands", endpoints.commands, methods=["POST"]),
        Route("/slack/interactivity", endpoints.interactivity, methods=["POST"]),
    ]


class SlackEndpoints:
    """The request handlers of `slack_routes`, bound to one bot."""

    def __init__(self, bot: SlackBot) -> None:
        self.bot = bot

    async def events(self, request: Request) -> Response:
        """Return the challenge of `url_verification`, and store `app_mention` events."""
        try:
            body = await self._verified_body(request)
            document = _json_object(body, "the body")
            if document.get("type") == "url_verification":
                challenge = document.get("challenge")
                if not isinstance(challenge, str):
                    raise BadRequest("url_verification without a `challenge` string")
                return JSONResponse({"challenge": challenge})
            if document.get("type") != "event_callback":
                log.info("slack event envelope of type %r acknowledged and dropped", _shorten(document.get("type")))
                return Response(status_code=200)
            event = _object(document.get("event"), "`event`")
            if event.get("type") != "app_mention":
                log.info("slack event of type %r acknowledged and dropped", _shorten(event.get("type")))
                return Response(status_code=200)
            for field in ("user", "channel", "ts", "text"):
                _string(event.get(field), f"`event.{field}`")
            delivery_id = _string(document.get("event_id"), "`event_id`")
            if len(delivery_id) > MAX_DELIVERY_ID:
                raise BadRequest(f"`event_id` is longer than {MAX_DELIVERY_ID} characters")
            return await self._store(request, delivery_id, inbox.EVENT, document)
        except (VerificationFailed, BadRequest) as error:
            return _reject(request, error)

    async def commands(self, request: Request) -> Response:
        """Store a slash command; the bot replies to its `response_url`."""
        try:
            body = await self._verified_body(request)
            fields = _form(body)
            for field in ("command", "user_id", "response_url"):
                _string(fields.get(field), f"form field `{field}`")
            fields.setdefault("text", "")
            return await self._store(request, hashlib.sha256(body).hexdigest(), inbox.COMMAND, fields)
        except (VerificationFailed, BadRequest) as error:
            return _reject(request, error)

    async def interactivity(self, request: Request) -> Response:
        """Store a click on one of the bot's buttons; clicks on other buttons are acknowledged only."""
        try:
            body = await self._verified_body(request)
            payload = _json_object(_string(_form(body).get("payload"), "form field `payload`").encode(), "`payload`")
            if payload.get("type") != "block_actions":
                log.info("slack interaction of type %r acknowledged and dropped", _shorten(payload.get("type")))
                return Response(status_code=200)
            actions = payload.get("actions")
            if not isinstance(actions, list) or not any(
                isinstance(action, dict) and action.get("action_id") in ACTIONS for action in actions
            ):
                log.info("slack click on a button the bot does not handle acknowledged and dropped")
                return Response(status_code=200)
            _string(_object(payload.get("user"), "`user`").get("id"), "`user.id`")
            _string(payload.get("response_url"), "`response_url`")
            return await self._store(request, hashlib.sha256(body).hexdigest(), inbox.INTERACTION, payload)
        except (VerificationFailed, BadRequest) as error:
            return _reject(request, error)

    async def _verified_body(self, request: Request) -> bytes:
        body = await _read_body(request)
        verify_request(request.headers, body, self.bot.signing_secret(), self.bot.clock())
        return body

    async def _store(self, request: Request, delivery_id: str, kind: str, document: dict[str, Any]) -> Response:
        # The token is Slack's deprecated verification token, a credential the bot never reads.
        stored_body = {name: value for name, value in document.items() if name != "token"}
        try:
            inserted = await anyio.to_thread.run_sync(self.bot.accept, delivery_id, kind, stored_body)
        except Exception as error:
            # `orig` is the database driver's error, which leaves out the statement's parameters (the body).
            log.error(
                "slack %s %s could not be stored: %s: %s", kind, delivery_id, type(error).__name__, getattr(error, "orig", error)
            )
            return JSONResponse(
                {"error": f"the request could not be stored ({type(error).__name__}); retry later"}, status_code=503
            )
        if not inserted:
            retry = request.headers.get("x-slack-retry-num")
            log.info("slack %s %s is stored already (retry %s); not acted on again", kind, delivery_id, retry or "none")
            return Response(status_code=200)
        # Waking the bot after the response is sent keeps the work out of Slack's 3-second limit.
        return Response(status_code=200, background=BackgroundTask(self.bot.wake))


async def _read_body(request: Request) -> bytes:
    """Read the body, stopping at the daemon's size limit instead of buffering an unbounded upload."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise BadRequest(f"body is larger than the limit of {MAX_BODY_BYTES} bytes", status=413)
        chunks.append(chunk)
    return b"".join(chunks)


def _reject(request: Request, error: VerificationFailed | BadRequest) -> Response:
    log.warning("slack request to %s rejected with %d: %s", request.url.path, error.status, error.reason)
    return JSONResponse({"error": error.reason}, status_code=error.status)


def _json_object(raw: bytes, what: str) -> dict[str, Any]:
    try:
        document = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise BadRequest(f"{what} is not valid JSON: {error}") from error
    return _object(document, what)


def _form(body: bytes) -> dict[str, str]:
    """Parse a form-encoded body; a repeated field keeps its first value."""
    try:
        pairs = urllib.parse.parse_qsl(
            body.decode("utf-8"), keep_blank_values=True, strict_parsing=True, max_num_fields=MAX_FORM_FIELDS
        )
    except (UnicodeDecodeError, ValueError) as error:
        raise BadRequest(f"the body is not a valid form: {error}") from error
    fields: dict[str, str] = {}
    for name, value in pairs:
        fields.setdefault(name, value)
    return fields


def _object(value: object, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BadRequest(f"{what} is not a JSON object")
    return value


def _string(value: object, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise BadRequest(f"missing {what}: expected a non-empty string")
    return value


def _shorten(value: object) -> object:
    """Bound a value from a request before it goes into a log line."""
    return value[:40] if isinstance(value, str) else type(value).__name__
