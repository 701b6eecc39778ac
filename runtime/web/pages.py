"""Rendering for the web view: the Jinja2 environment, its filters, and the headers every response carries.

Autoescape is on for every template, and no template marks a value as safe,
so alert data (labels, annotations, titles, step output) always reaches the
page as text. The Content-Security-Policy allows scripts and styles from
this daemon only, so even markup that slipped through could not run inline
script.
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import json
import zoneinfo
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

if TYPE_CHECKING:
    from runtime.web.routes import Visitor

TEMPLATES = Path(__file__).parent / "templates"
# Seconds between two polls of the live fragment. The page script doubles it after each failure, up to a minute.
REFRESH_S = 5

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
# An SVG opened on its own is a document too: no script, no outside resources, and its own inline styles only.
SVG_CONTENT_SECURITY_POLICY = "default-src 'none'; style-src 'unsafe-inline'; sandbox"


@functools.cache
def environment() -> jinja2.Environment:
    """Return the template environment: autoescape on, undefined names are errors, HTML-friendly filters."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = format_time
    env.filters["duration"] = format_duration
    env.filters["pretty_json"] = pretty_json
    env.globals["span"] = duration_between
    return env


def base_path(request: Request) -> str:
    """Return the path of the web view: `/ui` under the root path the daemon is served at (Mount extends `root_path`)."""
    scope = request.scope
    return scope.get("app_root_path", scope.get("root_path", "")) + "/ui"


def _context(request: Request, visitor: Visitor, values: dict[str, Any]) -> dict[str, Any]:
    from compiler.expr import SEVERITY_LEVELS
    from runtime.incidents import STATUSES

    daemon = request.app.state.daemon
    policy = daemon.rules.current()
    return {
        "base": base_path(request),
        "visitor": visitor,
        "csrf_token": visitor.session.csrf,
        "timezone": _zone(policy.ruleset.settings.timezone),
        "statuses": STATUSES,
        "severities": SEVERITY_LEVELS,
        "teams": sorted(policy.teams),
        "services": sorted(policy.services),
        "refresh_s": REFRESH_S,
        **values,
    }


def render(request: Request, visitor: Visitor, name: str, values: dict[str, Any], status: int = 200) -> HTMLResponse:
    """Render a whole page with `cache-control: no-store`, because pages carry the session's CSRF token."""
    html = environment().get_template(name).render(_context(request, visitor, values))
    return HTMLResponse(html, status_code=status, headers={"cache-control": "no-store"})


def render_fragment(request: Request, visitor: Visitor, name: str, values: dict[str, Any]) -> str:
    return environment().get_template(name).render(_context(request, visitor, values))


def etag(html: str) -> str:
    """Return the entity tag of a fragment: a digest of its HTML, so equal content gives an equal tag."""
    return '"' + hashlib.sha256(html.encode("utf-8")).hexdigest()[:32] + '"'


def fragment_response(request: Request, html: str) -> Response:
    """Return the fragment, or 304 without a body when the page already shows this version (`If-None-Match`)."""
    tag = etag(html)
    headers = {"etag": tag, "cache-control": "no-store"}
    if request.headers.get("if-none-match") == tag:
        return Response(status_code=304, headers=headers)
    return HTMLResponse(html, headers=headers)


def svg_response(svg: bytes) -> Response:
    headers = {"cache-control": "private, max-age=3600", "content-security-policy": SVG_CONTENT_SECURITY_POLICY}
    return Response(svg, media_type="image/svg+xml", headers=headers)


def error(request: Request, visitor: Visitor, status: int, reason: str) -> HTMLResponse:
    """Render the error page with the HTTP status and the reason, as text."""
    return render(request, visitor, "error.html", {"status": status, "reason": reason}, status=status)


def secure_headers(response: Response) -> None:
    """Set the headers that keep the pages from being framed, sniffed, leaked through referrers or run outside script."""
    response.headers.setdefault("content-security-policy", CONTENT_SECURITY_POLICY)
    response.headers["x-content-type-options"] = "nosniff"
    response.headers["x-frame-options"] = "DENY"
    response.headers["referrer-policy"] = "no-referrer"


# ---------------------------------------------------------------- filters


def _zone(name: str) -> datetime.tzinfo:
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return datetime.UTC


@jinja2.pass_context
def format_time(context: jinja2.runtime.Context, value: str | None) -> str:
    """Format an ISO time from the store in the rules' `timezone`, as `2026-03-08 11:01:00 CET`, or `-` for none."""
    if not value:
        return "-"
    moment = datetime.datetime.fromisoformat(value).astimezone(context["timezone"])
    return moment.strftime("%Y-%m-%d %H:%M:%S %Z")


def format_duration(seconds: float | None) -> str:
    """Format seconds as `2h 05m`, `4m 10s` or `12s`, or `-` for none."""
    if seconds is None:
        return "-"
    total = max(0, int(seconds))
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours:02d}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


def duration_between(start: str | None, end: str | None) -> float | None:
    """Return the seconds from `start` to `end` (ISO times), or None when either is missing.

    Nothing on a live fragment depends on the current time, so an unchanged incident keeps its entity tag.
    """
    if not start or not end:
        return None
    return (datetime.datetime.fromisoformat(end) - datetime.datetime.fromisoformat(start)).total_seconds()


def pretty_json(value: Any) -> str:
    """Return `value` as indented JSON text; the template escapes it like any other text."""
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True, default=str)
