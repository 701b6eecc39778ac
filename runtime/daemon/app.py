"""The daemon's HTTP interface (Starlette): webhooks, the incident API, health and metrics.

Webhooks respond 202 only after the payload is committed (see `writer`). A
request that cannot become alerts gets a 4xx with the reason as JSON, a log
line, and a dead letter when it carried a body. A storage failure gets 503,
which Alertmanager and SNS retry. While the database is unreachable, payloads
go to the local spool and get 202 with `"spooled": true` (see `outage`).
"""

from __future__ import annotations

import datetime
import hmac
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import anyio
import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Match, Mount, Route
from starlette.types import Receive, Scope, Send

from compiler.ir import BUILTIN_SOURCES
from runtime import incidents as incident_ops
from runtime.daemon.openapi import openapi_document
from runtime.daemon.outage import describe, is_transient, is_unreachable
from runtime.daemon.service import Daemon
from runtime.daemon.writer import Overloaded, Receipt
from runtime.ingest import MAX_BODY_BYTES, receive
from runtime.pipeline import DEAD_LETTER_BODY_LIMIT, UNTRUSTED_BODY_LIMIT, UNTRUSTED_STATUSES, Accepted, record_dead_letter
from runtime.sources.base import ALERTS, SUBSCRIPTION_CONFIRMATION, Inbound, Rejected
from runtime.sources.names import declared_source
from runtime.spool import SpoolFull

log = logging.getLogger("irules.http")


def _error(status: int, reason: str) -> JSONResponse:
    return JSONResponse({"error": reason}, status_code=status)


def _daemon(request: Request) -> Daemon:
    return request.app.state.daemon


# ---------------------------------------------------------------- webhooks

# A webhook's outcome: the HTTP status and the JSON object of the response.
Answer = tuple[int, dict[str, Any]]


async def _read_body(chunks: AsyncIterator[bytes], declared: str | None) -> bytes:
    """Read the body, stopping at the size limit instead of buffering an unbounded upload."""
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise Rejected(413, f"body of {declared} bytes is larger than the limit of {MAX_BODY_BYTES} bytes")
    parts: list[bytes] = []
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise Rejected(413, f"body is larger than the limit of {MAX_BODY_BYTES} bytes")
        parts.append(chunk)
    return parts[0] if len(parts) == 1 else b"".join(parts)


def _source_at_path(daemon: Daemon, path: str) -> str | None:
    """Return the custom source that declared `path` as its own in the rules in force, else None."""
    policy = daemon.rules.policy
    if policy is None:
        return None
    return next((source.name for source in policy.ruleset.sources if source.path == path), None)


def _own_path(daemon: Daemon, source: str) -> str | None:
    """Return the path that the custom source `source` declared instead of `/hooks/<source>`, else None."""
    policy = daemon.rules.policy
    declaration = declared_source(policy.ruleset, source) if policy is not None else None
    if declaration is None or declaration.path == f"{HOOKS_PREFIX}{source}":
        return None
    return declaration.path


def receiving_paths(daemon: Daemon) -> dict[str, str]:
    """Return where each source of the rules in force receives: its own `path`, else `/hooks/<source>`."""
    policy = daemon.rules.policy
    declared = {source.name: source.path for source in policy.ruleset.sources} if policy is not None else {}
    names = sorted({*BUILTIN_SOURCES, *declared})
    return {name: declared.get(name) or f"{HOOKS_PREFIX}{name}" for name in names}


# The challenge of a 401 from a source that takes Basic credentials (RFC 7617). Clients that
# hold credentials send them only after it: Amazon SNS, for one, with a user and password in
# the subscription URL.
BASIC_CHALLENGE = ("www-authenticate", 'Basic realm="irules", charset="UTF-8"')


def challenge(daemon: Daemon, source: str, status: int) -> tuple[str, str] | None:
    """Return the WWW-Authenticate header for a response of `source` with `status`, or None when it needs none."""
    if status != 401:
        return None
    policy = daemon.rules.policy
    declaration = declared_source(policy.ruleset, source) if policy is not None else None
    if declaration is None or not any(method.kind == "basic" for method in declaration.auth):
        return None
    return BASIC_CHALLENGE


def _hook_response(daemon: Daemon, source: str, status: int, content: dict[str, Any]) -> JSONResponse:
    header = challenge(daemon, source, status)
    return JSONResponse(content, status_code=status, headers=dict([header]) if header else None)


async def hook(request: Request) -> Response:
    """Receive a webhook at `/hooks/<source>` through Starlette, which serves it only under a root path."""
    daemon = _daemon(request)
    headers = {name.lower(): value for name, value in request.headers.items()}
    source = request.path_params["source"]
    status, content = await _receive_hook(daemon, source, headers, request.stream())
    return _hook_response(daemon, source, status, content)


async def _receive_hook(daemon: Daemon, source: str, headers: dict[str, str], chunks: AsyncIterator[bytes]) -> Answer:
    """Receive a webhook sent to `/hooks/<source>`, or reject it with 404 when that source receives at a path of its own.

    Raises:
        ClientDisconnect: the sender went away before the whole body arrived.
    """
    own_path = _own_path(daemon, source)
    if own_path is None:
        return await _receive_webhook(daemon, source, headers, chunks)
    rejected = Rejected(404, f"source `{source}` receives at {own_path}, not at {HOOKS_PREFIX}{source}")
    return await _reject_unrouted(daemon, source, headers, chunks, rejected)


async def _receive_webhook(daemon: Daemon, source: str, headers: dict[str, str], chunks: AsyncIterator[bytes]) -> Answer:
    """Read, authenticate, normalise and store one webhook, and return the status and JSON object to respond with.

    Raises:
        ClientDisconnect: the sender went away before the whole body arrived.
    """
    if not daemon.ready:
        return NOT_READY
    received_at = datetime.datetime.now(datetime.UTC)
    try:
        body = await _read_body(chunks, headers.get("content-length"))
    except Rejected as rejected:
        return await _reject(daemon, source, Inbound(b"", headers, received_at), rejected)
    return await _receive_body(daemon, source, Inbound(body, headers, received_at))


NOT_READY: Answer = (503, {"error": "the daemon is starting; retry shortly"})
INTERNAL_ERROR: Answer = (500, {"error": "internal error while receiving the webhook; the daemon log has the details"})


def receive_webhook_now(daemon: Daemon, source: str, inbound: Inbound) -> Answer | None:
    """Receive a whole webhook without waiting, or return None when it has to wait and `_receive_body` must take it.

    Waiting is needed to check an SNS signature (a worker thread), to store a dead
    letter, to visit an SNS subscription URL, and when the SQLite writer is busy,
    payloads are queued, the store is PostgreSQL, or the spool is in use. Nothing is
    stored or counted before None is returned, so the caller may start over with
    `_receive_body`.
    """
    if not daemon.ready:
        return NOT_READY
    if source == "cloudwatch" or daemon.writer is None:
        return None
    try:
        accepted = _normalise(daemon, source, inbound)
    except Rejected:
        return None
    if accepted.outcome.kind == SUBSCRIPTION_CONFIRMATION:
        return None
    try:
        receipt = daemon.writer.store_now(accepted)
    except Exception as error:
        return _not_stored(daemon, source, error)
    if receipt is None:
        return None
    return _accepted(daemon, source, accepted, receipt)


async def _receive_body(daemon: Daemon, source: str, inbound: Inbound) -> Answer:
    try:
        # Checking an SNS signature may fetch the signing certificate over HTTPS, so that
        # source runs in a worker thread. The others are pure and stay on the event loop.
        if source == "cloudwatch":
            accepted = await anyio.to_thread.run_sync(_normalise, daemon, source, inbound)
        else:
            accepted = _normalise(daemon, source, inbound)
    except Rejected as rejected:
        return await _reject(daemon, source, inbound, rejected)
    assert daemon.writer is not None
    try:
        receipt = await daemon.writer.store_or_spool(accepted)
    except Exception as error:
        return _not_stored(daemon, source, error)
    outcome = accepted.outcome
    confirm = outcome.kind == SUBSCRIPTION_CONFIRMATION and outcome.confirm_url and daemon.config.confirm_subscriptions
    answer = _accepted(daemon, source, accepted, receipt, logged=not confirm)
    if confirm:
        payload_id = receipt.payload_id if receipt.spool_id is None else f"spool {receipt.spool_id}"
        await _confirm_subscription(outcome.confirm_url, payload_id)
    return answer


def _normalise(daemon: Daemon, source: str, inbound: Inbound) -> Accepted:
    policy = daemon.rules.current()
    return receive(source, inbound, policy.ruleset, daemon.secrets(), allow_unauthenticated=daemon.config.allow_unauthenticated)


def _not_stored(daemon: Daemon, source: str, error: Exception) -> Answer:
    daemon.metrics.payloads.labels(_metric_source(daemon, source), "failed").inc()
    if isinstance(error, Overloaded | SpoolFull):
        log.warning("source %s: payload rejected with 503: %s", source, error)
        return 503, {"error": f"{error}; retry later"}
    return 503, {"error": f"the payload could not be stored ({type(error).__name__}); retry later"}


def _accepted(daemon: Daemon, source: str, accepted: Accepted, receipt: Receipt, *, logged: bool = True) -> Answer:
    """Count a stored payload and return its 202; log it when it carried no alerts, unless `logged` is False."""
    outcome = accepted.outcome
    metric_source = _metric_source(daemon, source)
    daemon.metrics.payloads.labels(metric_source, "accepted").inc()
    daemon.metrics.alerts.labels(metric_source).inc(len(outcome.alerts))
    if outcome.kind != ALERTS and logged:
        payload_id = receipt.payload_id if receipt.spool_id is None else f"spool {receipt.spool_id}"
        log.info("source %s: payload %s accepted as %s: %s", source, payload_id, outcome.kind, outcome.note or "no alerts")
    content: dict[str, Any] = {"payload_id": receipt.payload_id, "kind": outcome.kind, "alerts": len(outcome.alerts)}
    truncated = outcome.details.get("truncated_alerts")
    if truncated:
        # The sender's `max_alerts` cut the group short: those alerts' state never arrives here.
        payload_id = receipt.payload_id if receipt.spool_id is None else f"spool {receipt.spool_id}"
        log.warning(
            "source %s: payload %s (group %s) left out %d alerts; raise the receiver's max_alerts to receive them",
            source,
            payload_id,
            outcome.details.get("group_key") or "?",
            truncated,
        )
        content["truncated_alerts"] = truncated
    if receipt.spool_id is not None:
        # Stored locally while the database is unreachable; the payload id comes when the spool drains.
        content.update(spooled=True, spool_id=receipt.spool_id)
    return 202, content


async def custom_path_hook(request: Request) -> Response:
    """Receive a webhook at the path a custom source declared, or reject a request to any other path with 404."""
    daemon = _daemon(request)
    headers = {name.lower(): value for name, value in request.headers.items()}
    # The route's parameter is the path below the root path, as the source declared it.
    path = f"/{request.path_params['path']}"
    source = _source_at_path(daemon, path)
    if source is not None:
        status, content = await _receive_webhook(daemon, source, headers, request.stream())
    else:
        rejected = Rejected(
            404,
            f"no source receives at {path}: built-in sources receive at {HOOKS_PREFIX}<source>, "
            "and so do custom sources unless they declare a `path` of their own",
        )
        status, content = await _reject_unrouted(daemon, f"path:{path}", headers, request.stream(), rejected)
        return JSONResponse(content, status_code=status)
    return _hook_response(daemon, source, status, content)


async def _reject_unrouted(
    daemon: Daemon, source: str, headers: dict[str, str], chunks: AsyncIterator[bytes], rejected: Rejected
) -> Answer:
    """Reject a request to a path where no source receives, keeping what fits of its body as a dead letter.

    Raises:
        ClientDisconnect: the sender went away before the whole body arrived.
    """
    received_at = datetime.datetime.now(datetime.UTC)
    try:
        body = await _read_body(chunks, headers.get("content-length"))
    except Rejected:
        # An oversized body is not kept, and the 404 reason helps the sender more than a 413 would.
        body = b""
    return await _reject(daemon, source, Inbound(body, headers, received_at), rejected)


def _metric_source(daemon: Daemon, source: str) -> str:
    """Return the source name for metric labels: a name from the URL only when a source has it, to bound the label's values."""
    policy = daemon.rules.policy
    known = source in BUILTIN_SOURCES or (policy is not None and any(item.name == source for item in policy.ruleset.sources))
    return source if known else "unknown"


async def _reject(daemon: Daemon, source: str, inbound: Inbound, rejected: Rejected) -> Answer:
    daemon.metrics.payloads.labels(_metric_source(daemon, source), "rejected").inc()
    dead_letter = None
    limit = UNTRUSTED_BODY_LIMIT if rejected.status in UNTRUSTED_STATUSES else DEAD_LETTER_BODY_LIMIT
    if inbound.body:
        try:
            dead_letter = await anyio.to_thread.run_sync(
                lambda: record_dead_letter(daemon.store, source, inbound, rejected.status, rejected.reason, body_limit=limit)
            )
        except Exception as error:
            if is_unreachable(error):
                # The sender gets its 4xx either way, and the outage itself is logged once elsewhere.
                log.warning("source %s: dead letter of a rejected request not stored, the database is unreachable", source)
            else:
                log.exception("source %s: could not store the dead letter of a rejected request", source)
    log.warning(
        "source %s: request rejected with %d: %s%s",
        source,
        rejected.status,
        rejected.reason,
        f" (dead letter {dead_letter})" if dead_letter else "",
    )
    content: dict[str, Any] = {"error": rejected.reason}
    if dead_letter is not None:
        content["dead_letter"] = dead_letter
    return rejected.status, content


async def _confirm_subscription(url: str, payload_id: int | str | None) -> None:
    """Visit an SNS SubscribeURL that the source already checked against the allowed topics and SNS hosts."""
    import httpx

    try:
        async with httpx.AsyncClient(timeout=10, follow_redirects=False) as client:
            response = await client.get(url)
        log.info("SNS subscription confirmed for payload %s: HTTP %d", payload_id, response.status_code)
    except httpx.HTTPError as error:
        log.error("SNS subscription confirmation for payload %s failed: %s", payload_id, error)


# ---------------------------------------------------------------- webhooks without Starlette

HOOKS_PREFIX = "/hooks/"
HOOK_METHODS = frozenset({"POST", "PUT"})
_JSON_HEADER = (b"content-type", b"application/json")


class DaemonApp(Starlette):
    """The daemon's Starlette app, which serves `POST` and `PUT /hooks/<source>` itself, before its middleware and router.

    Webhooks are the requests whose rate matters, and Starlette's layers (error and
    exception middleware, routing, `Request`, `JSONResponse`) cost about 95,000
    instructions per request, a sixth of a one-alert webhook (counted with callgrind on
    Python 3.11). The response is JSON with the status from `_receive_webhook`, or a JSON
    500 for an unexpected error. Everything else, and any request under a root path,
    goes through Starlette.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in HOOK_METHODS and not scope.get("root_path"):
            source = _hook_source(scope["path"])
            if source is not None:
                await _serve_webhook(self.state.daemon, source, scope, receive, send)
                return
        await super().__call__(scope, receive, send)


def _hook_source(path: str) -> str | None:
    """Return the source of a `/hooks/<source>` path, matched as Starlette matches `/hooks/{source}`, else None."""
    if not path.startswith(HOOKS_PREFIX):
        return None
    source = path[len(HOOKS_PREFIX) :]
    return source if source and "/" not in source else None


async def _serve_webhook(daemon: Daemon, source: str, scope: Scope, receive: Receive, send: Send) -> None:
    headers = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope["headers"]}
    try:
        status, content = await _receive_hook(daemon, source, headers, _body_chunks(receive))
    except ClientDisconnect:
        return
    except Exception:
        log.exception("source %s: receiving a webhook failed", source)
        status, content = INTERNAL_ERROR
    body = orjson.dumps(content)
    response_headers = [_JSON_HEADER, (b"content-length", b"%d" % len(body))]
    header = challenge(daemon, source, status)
    if header is not None:
        response_headers.append((header[0].encode("latin-1"), header[1].encode("latin-1")))
    await send({"type": "http.response.start", "status": status, "headers": response_headers})
    await send({"type": "http.response.body", "body": body})


async def _body_chunks(receive: Receive) -> AsyncIterator[bytes]:
    """Yield the request body's chunks as Starlette's `Request.stream` does, raising `ClientDisconnect` when the sender goes away."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunk = message.get("body", b"")
        if chunk:
            yield chunk
        if not message.get("more_body", False):
            return


# ---------------------------------------------------------------- health and status


async def healthz(request: Request) -> Response:
    return PlainTextResponse("ok\n")


async def _not_ready(daemon: Daemon) -> str | None:
    """Return why the daemon is not ready, or None once the ruleset and the store are loaded and the database responds."""
    if not daemon.ready or daemon.rules.policy is None:
        return "loading the ruleset and the store"
    problem = await daemon.database_problem()
    if problem is not None:
        return f"the database is unreachable: {problem}"
    return None


async def readyz(request: Request) -> Response:
    """Return 200 once the ruleset and the store are loaded, while the database responds to a probe (cached for about a second)."""
    reason = await _not_ready(_daemon(request))
    if reason is not None:
        return PlainTextResponse(f"not ready: {reason}\n", status_code=503)
    return PlainTextResponse("ready\n")


async def status(request: Request) -> Response:
    daemon = _daemon(request)
    # `/readyz`'s check, so that the two never disagree.
    ready = await _not_ready(daemon) is None
    pending = await anyio.to_thread.run_sync(daemon._pending_events)
    cluster = await anyio.to_thread.run_sync(daemon.cluster_status)
    from compiler.version import __version__

    return JSONResponse(
        {
            "version": __version__,
            "ready": ready,
            "started_at": daemon.started_at.isoformat(),
            "rules": daemon.rules.status(),
            "store": daemon.store.engine.url.render_as_string(hide_password=True) if daemon.store else None,
            "pending_events": pending,
            "cluster": cluster,
            "sources": receiving_paths(daemon),
        }
    )


async def metrics(request: Request) -> Response:
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    daemon = _daemon(request)
    body = await anyio.to_thread.run_sync(generate_latest, daemon.metrics.registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


async def openapi(request: Request) -> Response:
    return JSONResponse(openapi_document())


# ---------------------------------------------------------------- incident API


def _authorised(request: Request) -> bool:
    token = _daemon(request).config.api_token
    if not token:
        return True
    given = request.headers.get("authorization", "")
    return given.startswith("Bearer ") and hmac.compare_digest(given.removeprefix("Bearer ").encode(), token.encode())


async def _json_body(request: Request, *fields: str) -> dict[str, Any]:
    """Return the request's JSON object, which may hold `actor` and `fields`; another field gets a 400.

    A misspelt field would otherwise be ignored without a word, such as `by` for `actor`,
    which records the change as made by `api`.
    """
    raw = await request.body()
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise incident_ops.IncidentError(f"request body is not valid JSON: {error}", status=400) from error
    if not isinstance(data, dict):
        raise incident_ops.IncidentError("request body must be a JSON object", status=400)
    allowed = {"actor", *fields}
    unknown = sorted(name for name in data if name not in allowed)
    if unknown:
        names = ", ".join(f"`{name}`" for name in unknown)
        raise incident_ops.IncidentError(
            f"unknown field {names} in the request body; this request takes {', '.join(sorted(allowed))}", status=400
        )
    return data


def _actor(request: Request, body: dict[str, Any]) -> str:
    actor = body.get("actor") or request.headers.get("x-irules-actor") or "api"
    return str(actor)[:200]


def _text(body: dict[str, Any], name: str, *, required: bool = False) -> str | None:
    value = body.get(name)
    if value is None:
        if required:
            raise incident_ops.IncidentError(f"field `{name}` is required", status=400)
        return None
    if not isinstance(value, str):
        raise incident_ops.IncidentError(f"field `{name}` must be a string", status=400)
    return value


def _flag(body: dict[str, Any], name: str) -> bool:
    value = body.get(name, False)
    if not isinstance(value, bool):
        raise incident_ops.IncidentError(f"field `{name}` must be true or false", status=400)
    return value


# How often the API runs a request whose transaction the database aborted for a deadlock.
API_ATTEMPTS = 3


def one_transaction(handler):
    """Mark an API handler whose writes are one transaction, so `api` may run it again after a deadlock."""
    handler.one_transaction = True
    return handler


def api(handler):
    """Wrap an incident API handler: check the token, turn `IncidentError` into its status, run store work in a thread.

    A request whose transaction the database aborted for a deadlock or a serialization
    failure runs again when it only reads or is marked `one_transaction`, because then
    nothing of it was written. Other requests get 503, and the caller decides.
    """
    retry = getattr(handler, "one_transaction", False)

    async def endpoint(request: Request) -> Response:
        if not _authorised(request):
            return _error(401, "missing or wrong API token: send `Authorization: Bearer <token>`")
        daemon = _daemon(request)
        if not daemon.store_open:
            # A daemon that started without its database has no schema to query yet.
            return _error(503, "the database is unreachable, so the store is not open yet; retry later")
        for attempt in range(1, API_ATTEMPTS + 1):
            try:
                return await handler(request, daemon)
            except incident_ops.IncidentError as error:
                return _error(error.status, str(error))
            except Exception as error:
                if is_transient(error):
                    log.warning("%s: attempt %d was aborted by the database: %s", handler.__name__, attempt, describe(error))
                    if request.method == "GET" or retry:
                        continue
                    return _error(503, f"the database aborted the request's transaction ({describe(error)}); retry")
                if not is_unreachable(error) or daemon.health is None:
                    raise
                # Logged once per outage, by `DatabaseHealth`.
                daemon.health.report_failure(error)
                return _error(503, f"the database is unreachable: {describe(error)}; retry later")
        return _error(503, f"the database aborted the request's transaction {API_ATTEMPTS} times; retry later")

    endpoint.__name__ = handler.__name__
    return endpoint


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


@api
async def list_incidents(request: Request, daemon: Daemon) -> Response:
    """List incidents; an unknown `status` or `severity` gets 400 with the valid values, not an empty list."""
    query = request.query_params
    try:
        limit = min(int(query.get("limit", "100")), 1000)
    except ValueError as error:
        raise incident_ops.IncidentError("`limit` must be a whole number", status=400) from error
    statuses, severities = query.getlist("status"), query.getlist("severity")
    incident_ops.check_filter("status", statuses, open_hint="open=true")
    incident_ops.check_filter("severity", severities)
    rows = await anyio.to_thread.run_sync(
        lambda: incident_ops.list_incidents(
            daemon.store,
            status=statuses,
            severity=severities,
            team=query.get("team"),
            service=query.get("service"),
            open_only=query.get("open") in ("1", "true", "yes"),
            limit=limit,
        )
    )
    return JSONResponse({"incidents": rows})


@api
async def show_incident(request: Request, daemon: Daemon) -> Response:
    reference = request.path_params["incident"]
    return JSONResponse(await anyio.to_thread.run_sync(incident_ops.show, daemon.store, reference))


@api
async def incident_timeline(request: Request, daemon: Daemon) -> Response:
    reference = request.path_params["incident"]
    shown = await anyio.to_thread.run_sync(incident_ops.show, daemon.store, reference)
    return JSONResponse({"id": shown["id"], "timeline": shown["timeline"]})


@api
async def incident_post_mortem(request: Request, daemon: Daemon) -> Response:
    """Return what a post-mortem is written from, so `irules post-mortem --daemon` renders it with its own templates."""
    from runtime.reports.postmortem import collect
    from runtime.reports.wire import to_wire

    reference = request.path_params["incident"]
    post_mortem = await anyio.to_thread.run_sync(collect, daemon.store, reference)
    return JSONResponse(to_wire(post_mortem))


@api
async def metrics_report(request: Request, daemon: Daemon) -> Response:
    """Return the figures of `irules metrics` for the window from `start` (included) to `end` (excluded)."""
    from runtime.reports.metrics import Window, collect_metrics
    from runtime.reports.wire import to_wire

    try:
        window = Window.between(_moment_parameter(request, "start"), _moment_parameter(request, "end"))
    except ValueError as error:
        raise incident_ops.IncidentError(str(error), status=400) from error

    def collect() -> dict[str, Any]:
        with daemon.store.read() as connection:
            return to_wire(collect_metrics(connection, window))

    return JSONResponse(await anyio.to_thread.run_sync(collect))


def _moment_parameter(request: Request, name: str) -> datetime.datetime:
    """Return the query parameter `name` as an aware moment; raise ValueError when it is missing or not ISO 8601."""
    from compiler.evaluate import parse_moment

    text = request.query_params.get(name)
    if not text:
        raise ValueError(f"`{name}` is required: an ISO 8601 moment such as 2026-03-01T00:00:00Z")
    try:
        return parse_moment(text)
    except ValueError:
        raise ValueError(f"`{name}` is not an ISO 8601 moment: {text!r}") from None


@api
@one_transaction
async def create_incident(request: Request, daemon: Daemon) -> Response:
    body = await _json_body(request, "title", "services", "severity", "team")
    title = _text(body, "title", required=True)
    services = body.get("services") or []
    if not isinstance(services, list) or not all(isinstance(item, str) for item in services):
        raise incident_ops.IncidentError("field `services` must be a list of strings", status=400)
    id_format = daemon.rules.current().ruleset.settings.incident_id_format
    created = await anyio.to_thread.run_sync(
        lambda: incident_ops.create(
            daemon.store,
            id_format,
            _now(),
            title=title or "",
            severity=_text(body, "severity"),
            services=services,
            team=_text(body, "team"),
            actor=_actor(request, body),
            policy=daemon.rules.current(),
        )
    )
    daemon.incident_changed()
    return JSONResponse(incident_ops.to_json(created), status_code=201)


async def _change(request: Request, daemon: Daemon, change: incident_ops.Change, body: dict[str, Any]) -> Response:
    reference = request.path_params["incident"]
    actor = _actor(request, body)
    updated = await anyio.to_thread.run_sync(lambda: incident_ops.update(daemon.store, reference, change, actor, _now()))
    daemon.incident_changed()
    return JSONResponse(incident_ops.to_json(updated))


@api
@one_transaction
async def patch_incident(request: Request, daemon: Daemon) -> Response:
    body = await _json_body(request, "status", "assignee", "severity", "note")
    change = incident_ops.Change(
        status=_text(body, "status"), assignee=_text(body, "assignee"), severity=_text(body, "severity"), note=_text(body, "note")
    )
    return await _change(request, daemon, change, body)


@api
@one_transaction
async def acknowledge_incident(request: Request, daemon: Daemon) -> Response:
    body = await _json_body(request)
    reference = request.path_params["incident"]
    actor = _actor(request, body)
    updated = await anyio.to_thread.run_sync(lambda: incident_ops.acknowledge(daemon.store, reference, actor, _now()))
    daemon.incident_changed()
    return JSONResponse(incident_ops.to_json(updated))


@api
@one_transaction
async def assign_incident(request: Request, daemon: Daemon) -> Response:
    body = await _json_body(request, "assignee")
    return await _change(request, daemon, incident_ops.Change(assignee=_text(body, "assignee", required=True)), body)


@api
@one_transaction
async def set_status(request: Request, daemon: Daemon) -> Response:
    body = await _json_body(request, "status", "note")
    change = incident_ops.Change(status=_text(body, "status", required=True), note=_text(body, "note"))
    return await _change(request, daemon, change, body)


@api
@one_transaction
async def resolve_incident(request: Request, daemon: Daemon) -> Response:
    body = await _json_body(request, "note")
    return await _change(request, daemon, incident_ops.Change(status="resolved", note=_text(body, "note")), body)


@api
@one_transaction
async def close_incident(request: Request, daemon: Daemon) -> Response:
    body = await _json_body(request, "note")
    return await _change(request, daemon, incident_ops.Change(status="closed", note=_text(body, "note")), body)


@api
async def list_notifications(request: Request, daemon: Daemon) -> Response:
    from runtime.notify import queries

    query = request.query_params
    try:
        limit = min(int(query.get("limit", "100")), 1000)
    except ValueError as error:
        raise incident_ops.IncidentError("`limit` must be a whole number", status=400) from error
    rows = await anyio.to_thread.run_sync(
        lambda: queries.list_notifications(daemon.store, status=query.get("status"), incident=query.get("incident"), limit=limit)
    )
    return JSONResponse({"notifications": rows})


@api
async def retry_notification(request: Request, daemon: Daemon) -> Response:
    from runtime.notify import queries

    try:
        number = int(request.path_params["notification"])
    except ValueError as error:
        raise incident_ops.IncidentError("notification ids are whole numbers", status=400) from error
    result = await anyio.to_thread.run_sync(lambda: queries.retry(daemon.store, number, _now()))
    if daemon.outbox is not None:
        daemon.outbox.wake()
    return JSONResponse(result)


@api
async def list_runs(request: Request, daemon: Daemon) -> Response:
    from runtime.runbooks import runs

    query = request.query_params
    rows = await anyio.to_thread.run_sync(
        lambda: runs.list_runs(daemon.store, incident=query.get("incident"), status=query.get("status"))
    )
    return JSONResponse({"runs": rows})


def _run_number(request: Request) -> int:
    try:
        return int(request.path_params["run"])
    except ValueError as error:
        raise incident_ops.IncidentError("run ids are whole numbers", status=400) from error


@api
async def show_run(request: Request, daemon: Daemon) -> Response:
    from runtime.runbooks import runs

    number = _run_number(request)
    return JSONResponse(await anyio.to_thread.run_sync(runs.show_run, daemon.store, number))


@api
async def decide_step(request: Request, daemon: Daemon) -> Response:
    from runtime.runbooks import runs

    body = await _json_body(request, "answer", "note")
    number = _run_number(request)
    answer = _text(body, "answer", required=True) or ""
    actor = _actor(request, body)
    result = await anyio.to_thread.run_sync(
        lambda: runs.decide(daemon.store, number, request.path_params["step"], answer, actor, _now(), _text(body, "note"))
    )
    return JSONResponse(result)


@api
async def remediate_incident(request: Request, daemon: Daemon) -> Response:
    from runtime.runbooks import runs

    body = await _json_body(request, "runbook", "auto_approve_safe")
    reference = request.path_params["incident"]
    actor = _actor(request, body)
    policy = daemon.rules.current()
    runbook, auto_approve_safe = _text(body, "runbook"), _flag(body, "auto_approve_safe")
    results = await anyio.to_thread.run_sync(
        lambda: runs.remediate(daemon.store, policy, reference, actor, _now(), runbook, auto_approve_safe)
    )
    if daemon.run_manager is not None:
        daemon.run_manager.wake()
    return JSONResponse({"runs": results}, status_code=201 if any("run" in result for result in results) else 409)


@api
async def list_dead_letters(request: Request, daemon: Daemon) -> Response:
    """List dead letters newest first; filters `source`, `state` (repeatable), `before` (an id) and `limit`."""
    from runtime import dead_letters

    query = request.query_params
    try:
        limit = int(query.get("limit", "100"))
        before = int(query["before"]) if "before" in query else None
    except ValueError as error:
        raise incident_ops.IncidentError("`limit` and `before` must be whole numbers", status=400) from error
    if limit < 1:
        raise incident_ops.IncidentError(f"`limit` must be at least 1, not {limit}", status=400)
    states = query.getlist("state") or None
    rows = await anyio.to_thread.run_sync(
        lambda: dead_letters.list_dead_letters(
            daemon.store,
            source=query.get("source"),
            states=states,
            before=before,
            limit=min(limit, dead_letters.LIST_LIMIT_MAX),
        )
    )
    return JSONResponse({"dead_letters": rows})


def _dead_letter_number(request: Request) -> int:
    try:
        return int(request.path_params["dead_letter"])
    except ValueError as error:
        raise incident_ops.IncidentError("dead letter ids are whole numbers", status=400) from error


@api
async def replay_dead_letter(request: Request, daemon: Daemon) -> Response:
    from runtime import dead_letters

    number = _dead_letter_number(request)
    policy = daemon.rules.current()
    result = await anyio.to_thread.run_sync(lambda: dead_letters.replay(daemon.store, policy.ruleset, number, _now()))
    daemon.wake_pipeline()
    return JSONResponse(result)


@api
@one_transaction
async def dismiss_dead_letter(request: Request, daemon: Daemon) -> Response:
    from runtime import dead_letters

    number = _dead_letter_number(request)
    body = await _json_body(request, "reason")
    reason, actor = _text(body, "reason"), _actor(request, body)
    result = await anyio.to_thread.run_sync(lambda: dead_letters.dismiss(daemon.store, number, reason, actor, _now()))
    return JSONResponse(result)


async def _http_error(request: Request, error: Exception) -> Response:
    """Return Starlette's own errors (no such path, wrong method) in the API's JSON form; a 405 keeps its `Allow` header."""
    assert isinstance(error, HTTPException)
    reason = f"{error.detail}: {request.method} {request.url.path}"
    headers = error.headers
    if error.status_code == 404:
        root = request.scope.get("app_root_path", request.scope.get("root_path", ""))
        reason += f"; see {root}/openapi.json for the HTTP API and {root}/ui/ for the web view"
    elif error.status_code == 405:
        headers = {**(headers or {}), **_allow_header(request)}
    return JSONResponse({"error": reason}, status_code=error.status_code, headers=headers)


def _allow_header(request: Request) -> dict[str, str]:
    """Return an `Allow` header with the methods of every route at the path of a request that got 405.

    Starlette's own header names only the methods of the first route at the path, but
    some paths have one route per method, such as `GET` and `PATCH /api/v1/incidents/{incident}`.
    """
    matched = request.scope.get("route")
    siblings = _routes_holding(request.app.routes, matched) if isinstance(matched, Route) else None
    if siblings is None:
        return {}
    methods = {
        method for route in siblings if isinstance(route, Route) and route.path == matched.path for method in route.methods or ()
    }
    return {"Allow": ", ".join(sorted(methods))}


def _routes_holding(routes: list[BaseRoute], target: BaseRoute) -> list[BaseRoute] | None:
    """Return the list of routes, at the top or in a `Mount` such as the web view's, that contains `target`."""
    if any(route is target for route in routes):
        return routes
    for route in routes:
        if isinstance(route, Mount):
            found = _routes_holding(route.routes, target)
            if found is not None:
                return found
    return None


# Prefixes of the daemon's own endpoints. The compiler rejects a custom source's path
# under them (IR0716), so requests there never go to `custom_path_hook`.
OWN_PREFIXES = ("/api/", "/slack/", "/ui/")


class CustomSourceRoute(Route):
    """The route to `custom_path_hook`: `POST` and `PUT` on any path outside `OWN_PREFIXES`, tried after every other route.

    A plain catch-all `Route` matches other methods partially, so Starlette would respond
    to a `GET` of an unknown path with 405. This route matches another method only at a
    path that a custom source of the rules in force declared, so that such a request gets
    405 with `Allow: POST, PUT`, as `/hooks/<source>` does, and any other unknown path 404.
    """

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        match, child_scope = super().matches(scope)
        if match is Match.NONE:
            return match, child_scope
        path = f"/{child_scope['path_params']['path']}"
        if path.startswith(OWN_PREFIXES):
            return Match.NONE, {}
        if match is Match.PARTIAL and _source_at_path(scope["app"].state.daemon, path) is None:
            return Match.NONE, {}
        return match, child_scope


def build_app(daemon: Daemon) -> DaemonApp:
    routes = [
        Route("/hooks/{source}", hook, methods=["POST", "PUT"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/status", status, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
        Route("/api/v1/incidents", list_incidents, methods=["GET"]),
        Route("/api/v1/incidents", create_incident, methods=["POST"]),
        Route("/api/v1/incidents/{incident}", show_incident, methods=["GET"]),
        Route("/api/v1/incidents/{incident}", patch_incident, methods=["PATCH"]),
        Route("/api/v1/incidents/{incident}/timeline", incident_timeline, methods=["GET"]),
        Route("/api/v1/incidents/{incident}/post-mortem", incident_post_mortem, methods=["GET"]),
        Route("/api/v1/reports/metrics", metrics_report, methods=["GET"]),
        Route("/api/v1/incidents/{incident}/ack", acknowledge_incident, methods=["POST"]),
        Route("/api/v1/incidents/{incident}/assign", assign_incident, methods=["POST"]),
        Route("/api/v1/incidents/{incident}/status", set_status, methods=["POST"]),
        Route("/api/v1/incidents/{incident}/resolve", resolve_incident, methods=["POST"]),
        Route("/api/v1/incidents/{incident}/close", close_incident, methods=["POST"]),
        Route("/api/v1/dead-letters", list_dead_letters, methods=["GET"]),
        Route("/api/v1/dead-letters/{dead_letter}/replay", replay_dead_letter, methods=["POST"]),
        Route("/api/v1/dead-letters/{dead_letter}/dismiss", dismiss_dead_letter, methods=["POST"]),
        Route("/api/v1/notifications", list_notifications, methods=["GET"]),
        Route("/api/v1/runs", list_runs, methods=["GET"]),
        Route("/api/v1/runs/{run}", show_run, methods=["GET"]),
        Route("/api/v1/runs/{run}/steps/{step}/decision", decide_step, methods=["POST"]),
        Route("/api/v1/incidents/{incident}/remediate", remediate_incident, methods=["POST"]),
        Route("/api/v1/notifications/{notification}/retry", retry_notification, methods=["POST"]),
    ]
    if daemon is not None and daemon.slack_bot is not None:
        from runtime.slack.routes import slack_routes

        routes += slack_routes(daemon.slack_bot)
    from runtime.web import web_routes
    from runtime.web.routes import to_list

    # The web view is the daemon's front page, so a browser opening the bare address lands on it.
    routes.append(Route("/", to_list, methods=["GET"]))
    routes += web_routes()
    # Custom sources may declare a path of their own, such as `/webhooks/ci`; the path is
    # looked up in the ruleset in force at request time, so a reload can add one.
    routes.append(CustomSourceRoute("/{path:path}", custom_path_hook, methods=["POST", "PUT"]))
    app = DaemonApp(routes=routes, exception_handlers={HTTPException: _http_error})
    app.state.daemon = daemon
    return app
