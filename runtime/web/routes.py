"""The web view's routes under `/ui/`: the incident list, the incident page, its live fragment, login and the actions.

Pages are server-rendered with Jinja2 (autoescape on, see `pages`). Every
request that changes state is a POST with a form whose `csrf_token` must
equal the session's token, checked before anything else. The actions call
the same functions as the JSON API (`runtime.incidents.acknowledge` and
`update`, `runtime.runbooks.runs.decide`). With `DaemonConfig.api_token` set,
pages need a login with that token. Without one the view is open, as the API
is, and actions are recorded as done by `web`.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import logging
import math
import secrets
import shutil
import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from runtime import incidents as incident_ops
from runtime.web import pages, reading
from runtime.web.graph import draw_svg, run_dot
from runtime.web.lockout import FailedLogins
from runtime.web.session import (
    COOKIE,
    MAX_AGE_S,
    Session,
    clean_actor,
    csrf_matches,
    dump_session,
    load_session,
    new_session,
    session_key,
)

log = logging.getLogger("irules.web")

STATIC = Path(__file__).parent / "static"
# Web forms are a few short fields, so a larger body is rejected before it is parsed.
MAX_FORM_BYTES = 16 * 1024
MAX_FORM_FIELDS = 20
MAX_NOTE = 2000
DEFAULT_ACTOR = "web"
# Query parameters of the incident list that pagination links keep.
FILTER_PARAMETERS = ("status", "severity", "team", "service", "q")


@dataclass(frozen=True, slots=True)
class Visitor:
    """The requester: their session, whether the daemon requires a login, and whether the cookie must be (re)sent."""

    session: Session
    token_required: bool
    send_cookie: bool

    @property
    def logged_in(self) -> bool:
        return not self.token_required or self.session.actor is not None

    @property
    def actor(self) -> str:
        return self.session.actor or DEFAULT_ACTOR


class Rejected(Exception):
    """A web request that fails before its handler runs, with the HTTP status and the reason shown to the person."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def web_routes() -> list[BaseRoute]:
    """Return the routes of the web view, for `runtime.daemon.app.build_app`."""
    ui = [
        Route("/", list_page, methods=["GET"]),
        Route("/list", list_fragment, methods=["GET"]),
        Route("/login", login_page, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/incidents/{incident}", incident_page, methods=["GET"]),
        Route("/incidents/{incident}/live", incident_fragment, methods=["GET"]),
        Route("/incidents/{incident}/ack", acknowledge, methods=["POST"]),
        Route("/incidents/{incident}/resolve", resolve, methods=["POST"]),
        Route("/runs/{run:int}/steps/{step}/decision", decide, methods=["POST"]),
        Route("/runs/{run:int}/graph.svg", run_graph, methods=["GET"]),
        Mount("/static", app=StaticFiles(directory=STATIC)),
    ]
    return [
        Route("/ui", to_list, methods=["GET"]),
        Mount("/ui", routes=ui),
        # Notifications link to `<daemon_url>/incidents/<key>` (runtime.notify.context.incident_url).
        Route("/incidents/{incident}", to_incident, methods=["GET"]),
    ]


# ---------------------------------------------------------------- sessions


def _daemon(request: Request) -> Any:
    return request.app.state.daemon


def _failed_logins(request: Request) -> FailedLogins:
    """Return the app's record of failed logins, made at the first login attempt."""
    state = request.app.state
    limiter = getattr(state, "failed_logins", None)
    if limiter is None:
        limiter = state.failed_logins = FailedLogins()
    return limiter


def _key(request: Request) -> bytes:
    """Return the session signing key: from the API token, or a random key kept for the life of the app."""
    state = request.app.state
    fallback = getattr(state, "web_session_key", None)
    if fallback is None:
        fallback = secrets.token_bytes(32)
        state.web_session_key = fallback
    return session_key(_daemon(request).config.api_token, fallback)


def _now_s() -> int:
    return int(datetime.datetime.now(datetime.UTC).timestamp())


def _visitor(request: Request) -> Visitor:
    """Return the visitor of a GET request, with a new anonymous session when the cookie is missing or no longer valid."""
    token_required = bool(_daemon(request).config.api_token)
    session = load_session(request.cookies.get(COOKIE), _key(request), _now_s())
    if session is None:
        return Visitor(new_session(_now_s()), token_required, send_cookie=True)
    return Visitor(session, token_required, send_cookie=False)


def _set_cookie(request: Request, response: Response, session: Session) -> None:
    response.set_cookie(
        COOKIE,
        dump_session(session, _key(request)),
        max_age=MAX_AGE_S,
        path=pages.base_path(request),
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def _finish(request: Request, response: Response, visitor: Visitor | None = None) -> Response:
    """Add the security headers, and the session cookie when it is new."""
    if visitor is not None and visitor.send_cookie:
        _set_cookie(request, response, visitor.session)
    pages.secure_headers(response)
    return response


def _login_redirect(request: Request) -> Response:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"{pages.base_path(request)}/login?{urllib.parse.urlencode({'next': target})}", status_code=303)


# ---------------------------------------------------------------- handler wrappers

Handler = Callable[[Request, Visitor], Awaitable[Response]]
FormHandler = Callable[[Request, Visitor, dict[str, str]], Awaitable[Response]]


def page(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """Wrap a GET page: send people who must log in to the login page, render `IncidentError` as an error page."""

    async def endpoint(request: Request) -> Response:
        visitor = _visitor(request)
        if not visitor.logged_in:
            return _finish(request, _login_redirect(request), visitor)
        try:
            response = await handler(request, visitor)
        except incident_ops.IncidentError as error:
            response = pages.error(request, visitor, error.status, str(error))
        return _finish(request, response, visitor)

    endpoint.__name__ = handler.__name__
    return endpoint


def fragment(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """Wrap a GET fragment for live updates: 401 instead of a redirect, so the page script can stop and show why."""

    async def endpoint(request: Request) -> Response:
        visitor = _visitor(request)
        if not visitor.logged_in:
            return _finish(request, PlainTextResponse("the session ended; reload the page\n", status_code=401))
        try:
            response = await handler(request, visitor)
        except incident_ops.IncidentError as error:
            response = PlainTextResponse(f"{error}\n", status_code=error.status)
        return _finish(request, response)

    endpoint.__name__ = handler.__name__
    return endpoint


def form_action(handler: FormHandler, *, needs_login: bool = True) -> Callable[[Request], Awaitable[Response]]:
    """Wrap a POST: check the CSRF token first (403 with the reason), then the login, then run `handler`."""

    async def endpoint(request: Request) -> Response:
        session = load_session(request.cookies.get(COOKIE), _key(request), _now_s())
        visitor = Visitor(session or new_session(_now_s()), bool(_daemon(request).config.api_token), send_cookie=session is None)
        try:
            form = await _read_form(request)
            _check_csrf(request, session, form)
        except Rejected as rejected:
            log.warning(
                "web request rejected with %d: %s %s: %s", rejected.status, request.method, request.url.path, rejected.reason
            )
            return _finish(request, pages.error(request, visitor, rejected.status, rejected.reason), visitor)
        if needs_login and not visitor.logged_in:
            return _finish(request, RedirectResponse(f"{pages.base_path(request)}/login", status_code=303), visitor)
        try:
            response = await handler(request, visitor, form)
        except incident_ops.IncidentError as error:
            log.info(
                "web action failed with %d: %s %s by %s: %s", error.status, request.method, request.url.path, visitor.actor, error
            )
            response = pages.error(request, visitor, error.status, str(error))
        return _finish(request, response, visitor)

    endpoint.__name__ = handler.__name__
    return endpoint


async def _read_form(request: Request) -> dict[str, str]:
    """Read an `application/x-www-form-urlencoded` body of at most `MAX_FORM_BYTES`, keeping the first value of each field."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    # A POST without a body has no content type. It reads as an empty form, which the CSRF check then rejects.
    if content_type not in ("application/x-www-form-urlencoded", ""):
        raise Rejected(415, f"forms must be sent as application/x-www-form-urlencoded, not {content_type or 'no content type'}")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise Rejected(413, f"form is larger than the limit of {MAX_FORM_BYTES} bytes")
    try:
        fields = urllib.parse.parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS)
    except (UnicodeDecodeError, ValueError) as error:
        raise Rejected(400, f"form cannot be read: {error}") from error
    form: dict[str, str] = {}
    for name, value in fields:
        form.setdefault(name, value)
    return form


def _check_csrf(request: Request, session: Session | None, form: dict[str, str]) -> None:
    if session is None:
        raise Rejected(403, "CSRF check failed: no valid session cookie came with the form; reload the page and send it again")
    if not form.get("csrf_token"):
        raise Rejected(403, "CSRF check failed: the form has no csrf_token field; send it from the page of this daemon")
    if not csrf_matches(session, form["csrf_token"]):
        raise Rejected(
            403, "CSRF check failed: the form's csrf_token does not match the session; reload the page and send it again"
        )


# ---------------------------------------------------------------- redirects


async def to_list(request: Request) -> Response:
    return RedirectResponse(f"{pages.base_path(request)}/", status_code=307)


async def to_incident(request: Request) -> Response:
    key = urllib.parse.quote(request.path_params["incident"], safe="")
    return RedirectResponse(f"{pages.base_path(request)}/incidents/{key}", status_code=307)


def _incident_url(request: Request, key: str, anchor: str = "") -> str:
    return f"{pages.base_path(request)}/incidents/{urllib.parse.quote(key, safe='')}{anchor}"


# ---------------------------------------------------------------- the list


def _filters(request: Request) -> reading.Filters:
    from compiler.expr import SEVERITY_LEVELS

    query = request.query_params
    statuses = query.getlist("status")
    return reading.Filters(
        status=reading.page_values(statuses, incident_ops.STATUSES),
        open_only="open" in statuses,
        severity=reading.page_values(query.getlist("severity"), SEVERITY_LEVELS),
        team=query.get("team") or None,
        service=query.get("service") or None,
        text=(query.get("q") or "").strip()[: reading.MAX_TEXT_FILTER] or None,
    )


def _cursor(request: Request, name: str) -> int | None:
    value = request.query_params.get(name, "")
    return int(value) if value.isdigit() else None


async def _list_values(request: Request) -> dict[str, Any]:
    daemon = _daemon(request)
    filters = _filters(request)
    before, after = _cursor(request, "before"), _cursor(request, "after")
    found = await anyio.to_thread.run_sync(lambda: reading.incident_page(daemon.store, filters, before=before, after=after))
    kept = [(name, value) for name, value in request.query_params.multi_items() if name in FILTER_PARAMETERS and value]
    return {
        "filters": filters,
        "page": found,
        "first_page": before is None and after is None,
        "page_query": urllib.parse.urlencode(kept),
    }


@page
async def list_page(request: Request, visitor: Visitor) -> Response:
    values = await _list_values(request)
    fragment_html = pages.render_fragment(request, visitor, "_list_live.html", values)
    return pages.render(request, visitor, "list.html", {**values, "etag": pages.etag(fragment_html)})


@fragment
async def list_fragment(request: Request, visitor: Visitor) -> Response:
    values = await _list_values(request)
    return pages.fragment_response(request, pages.render_fragment(request, visitor, "_list_live.html", values))


# ---------------------------------------------------------------- one incident


async def _incident_values(request: Request) -> dict[str, Any]:
    daemon = _daemon(request)
    reference = request.path_params["incident"]
    details = await anyio.to_thread.run_sync(reading.incident_details, daemon.store, reference)
    similar = await anyio.to_thread.run_sync(reading.similar_incidents, daemon.store, details["id"])
    runbooks = {runbook.id: runbook for runbook in daemon.rules.current().ruleset.runbooks}
    for run in details["runs"]:
        runbook = runbooks.get(run["runbook"])
        run["title"] = runbook.title if runbook is not None else None
        states = {step["name"]: step["state"] for step in run["steps"]}
        run["graph"] = None if runbook is None else _version(run_dot(runbook, states))
    return {"incident": details, "similar": similar, "graphviz": shutil.which("dot") is not None}


def _version(dot: str) -> str:
    return hashlib.sha256(dot.encode("utf-8")).hexdigest()[:16]


@page
async def incident_page(request: Request, visitor: Visitor) -> Response:
    values = await _incident_values(request)
    fragment_html = pages.render_fragment(request, visitor, "_incident_live.html", values)
    return pages.render(request, visitor, "incident.html", {**values, "etag": pages.etag(fragment_html)})


@fragment
async def incident_fragment(request: Request, visitor: Visitor) -> Response:
    values = await _incident_values(request)
    return pages.fragment_response(request, pages.render_fragment(request, visitor, "_incident_live.html", values))


@fragment
async def run_graph(request: Request, visitor: Visitor) -> Response:
    """Return the SVG picture of a run's step graph, drawn from the runbook in the rules in force and the run's step states."""
    from runtime.commands.graph import GraphFailed

    daemon = _daemon(request)
    number = request.path_params["run"]
    found = await anyio.to_thread.run_sync(reading.run_steps, daemon.store, number)
    if found is None:
        return PlainTextResponse(f"run {number} not found\n", status_code=404)
    runbook_id, states = found
    runbook = next((item for item in daemon.rules.current().ruleset.runbooks if item.id == runbook_id), None)
    if runbook is None:
        return PlainTextResponse(f"runbook {runbook_id} is not in the rules in force\n", status_code=404)
    try:
        svg = await anyio.to_thread.run_sync(draw_svg, run_dot(runbook, states))
    except GraphFailed as error:
        log.warning("run %d: the step graph could not be drawn: %s", number, error)
        return PlainTextResponse(f"{error}\n", status_code=503)
    return pages.svg_response(svg)


# ---------------------------------------------------------------- actions


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


async def _acknowledge(request: Request, visitor: Visitor, form: dict[str, str]) -> Response:
    daemon = _daemon(request)
    reference = request.path_params["incident"]
    updated = await anyio.to_thread.run_sync(lambda: incident_ops.acknowledge(daemon.store, reference, visitor.actor, _now()))
    daemon.incident_changed()
    log.info("incident %s acknowledged by %s in the web view", updated["key"], visitor.actor)
    return RedirectResponse(_incident_url(request, updated["key"]), status_code=303)


async def _resolve(request: Request, visitor: Visitor, form: dict[str, str]) -> Response:
    daemon = _daemon(request)
    reference = request.path_params["incident"]
    note = form.get("note", "").strip()[:MAX_NOTE] or None
    change = incident_ops.Change(status="resolved", note=note)
    updated = await anyio.to_thread.run_sync(lambda: incident_ops.update(daemon.store, reference, change, visitor.actor, _now()))
    daemon.incident_changed()
    log.info("incident %s resolved by %s in the web view", updated["key"], visitor.actor)
    return RedirectResponse(_incident_url(request, updated["key"]), status_code=303)


async def _decide(request: Request, visitor: Visitor, form: dict[str, str]) -> Response:
    from runtime.runbooks import runs

    daemon = _daemon(request)
    number, step = request.path_params["run"], request.path_params["step"]
    answer = form.get("answer", "")
    note = form.get("note", "").strip()[:MAX_NOTE] or None
    result = await anyio.to_thread.run_sync(lambda: runs.decide(daemon.store, number, step, answer, visitor.actor, _now(), note))
    log.info("run %d step %s: %s by %s in the web view", number, step, result["status"], visitor.actor)
    key = await anyio.to_thread.run_sync(reading.run_incident_key, daemon.store, number)
    target = _incident_url(request, key, f"#run-{number}") if key else f"{pages.base_path(request)}/"
    return RedirectResponse(target, status_code=303)


acknowledge = form_action(_acknowledge)
resolve = form_action(_resolve)
decide = form_action(_decide)


# ---------------------------------------------------------------- login and logout


def _safe_next(request: Request, target: str | None) -> str:
    """Return `target` when it is a path of this web view, else the list, so a login never redirects elsewhere."""
    base = pages.base_path(request)
    if not target or not target.startswith(base + "/") or "//" in target or "\\" in target:
        return f"{base}/"
    return target


async def login_page(request: Request) -> Response:
    visitor = _visitor(request)
    if not visitor.token_required or visitor.session.actor is not None:
        return _finish(request, RedirectResponse(_safe_next(request, request.query_params.get("next")), status_code=303), visitor)
    values = {"next": _safe_next(request, request.query_params.get("next")), "problem": None, "name": ""}
    return _finish(request, pages.render(request, visitor, "login.html", values), visitor)


async def _login(request: Request, visitor: Visitor, form: dict[str, str]) -> Response:
    token = _daemon(request).config.api_token
    target = _safe_next(request, form.get("next"))
    if not token:
        return RedirectResponse(target, status_code=303)
    name = clean_actor(form.get("name", ""))
    given = form.get("token", "")
    client = request.client.host if request.client else "unknown"
    limiter = _failed_logins(request)
    wait_s = limiter.retry_after(client)
    if wait_s is not None:
        seconds = math.ceil(wait_s)
        log.warning("web login rejected: too many wrong tokens from %s; retry allowed in %d s", client, seconds)
        problem = f"too many wrong tokens from your address: try again in {seconds} s"
        values = {"next": target, "problem": problem, "name": form.get("name", "")[:100]}
        response = pages.render(request, visitor, "login.html", values, status=429)
        response.headers["Retry-After"] = str(seconds)
        return response
    problem, status = None, 200
    if not hmac.compare_digest(given.encode(), token.encode()):
        limiter.failed(client)
        log.warning("web login failed: wrong API token from %s", client)
        problem, status = "wrong token: give the daemon's API token (IRULES_API_TOKEN)", 401
    elif name is None:
        problem, status = "missing name: give the name that the timeline should record for your actions", 400
    if problem is not None:
        values = {"next": target, "problem": problem, "name": form.get("name", "")[:100]}
        return pages.render(request, visitor, "login.html", values, status=status)
    limiter.succeeded(client)
    response = RedirectResponse(target, status_code=303)
    # A new session, with a new CSRF token, so a token seen before the login is worth nothing after it.
    _set_cookie(request, response, new_session(_now_s(), actor=name))
    log.info("web login by %s", name)
    return response


async def _logout(request: Request, visitor: Visitor, form: dict[str, str]) -> Response:
    target = f"{pages.base_path(request)}/login" if visitor.token_required else f"{pages.base_path(request)}/"
    response = RedirectResponse(target, status_code=303)
    _set_cookie(request, response, new_session(_now_s()))
    return response


login = form_action(_login, needs_login=False)
logout = form_action(_logout, needs_login=False)
