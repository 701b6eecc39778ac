"""Backends of the incident commands: a local store (`--state`, `--database`) or a running daemon (`--daemon`).

Both backends offer the same operations and return the same JSON shapes, so a
command prints the same thing whichever it talks to.
"""

from __future__ import annotations

import datetime
from collections.abc import Collection
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from runtime import incidents as incident_ops

if TYPE_CHECKING:
    from runtime.reports.metrics import Metrics, Window
    from runtime.reports.postmortem import PostMortem

Report = TypeVar("Report")


class BackendError(Exception):
    """An operation failed; the message is ready to print."""


class Backend(Protocol):
    def list(self, **filters: Any) -> list[dict[str, Any]]: ...
    def show(self, reference: str) -> dict[str, Any]: ...
    def create(self, title: str, severity: str | None, services: list[str], team: str | None, actor: str) -> dict[str, Any]: ...
    def update(self, reference: str, change: incident_ops.Change, actor: str) -> dict[str, Any]: ...
    def acknowledge(self, reference: str, actor: str) -> dict[str, Any]: ...
    def dead_letters(
        self, source: str | None, states: Collection[str] | None = None, limit: int = 100, before: int | None = None
    ) -> list[dict[str, Any]]: ...
    def replay(self, number: int) -> dict[str, Any]: ...
    def dismiss_dead_letter(self, number: int, reason: str | None, actor: str) -> dict[str, Any]: ...
    def notifications(self, status: str | None, incident: str | None, limit: int) -> list[dict[str, Any]]: ...
    def retry_notification(self, number: int) -> dict[str, Any]: ...
    def post_mortem(self, reference: str) -> PostMortem: ...
    def metrics(self, window: Window) -> Metrics: ...
    def close(self) -> None: ...


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class LocalBackend:
    """Works on the store directly. Replays and new incidents need the rules, passed as `rules` and `environment`."""

    def __init__(self, url: str, rules: Path | None = None, environment: str | None = None) -> None:
        from runtime.store import Store

        self.store = Store.open(url)
        self._rules = rules
        self._environment = environment
        self._ruleset = None

    def ruleset(self):
        if self._ruleset is None:
            if self._rules is None:
                raise BackendError("this command needs the rules: pass --rules PATH (and --env ENV)")
            from runtime.daemon.rules import RulesError, load_ruleset

            try:
                self._ruleset = load_ruleset(self._rules, self._environment)
            except RulesError as error:
                raise BackendError("the rules have errors:\n" + "\n".join(error.diagnostics)) from error
        return self._ruleset

    def _run(self, operation, *args, **kwargs):
        try:
            return operation(*args, **kwargs)
        except incident_ops.IncidentError as error:
            raise BackendError(str(error)) from error

    def list(self, **filters: Any) -> list[dict[str, Any]]:
        return self._run(incident_ops.list_incidents, self.store, **filters)

    def show(self, reference: str) -> dict[str, Any]:
        return self._run(incident_ops.show, self.store, reference)

    def create(self, title: str, severity: str | None, services: list[str], team: str | None, actor: str) -> dict[str, Any]:
        id_format = self.ruleset().settings.incident_id_format if self._rules else "INC-{year}-{number:04d}"
        row = self._run(
            incident_ops.create,
            self.store,
            id_format,
            _now(),
            title=title,
            severity=severity,
            services=services,
            team=team,
            actor=actor,
            policy=self._policy() if self._rules else None,
        )
        return incident_ops.to_json(row)

    def _policy(self):
        from runtime.policy import Policy

        return Policy(self.ruleset())

    def update(self, reference: str, change: incident_ops.Change, actor: str) -> dict[str, Any]:
        return incident_ops.to_json(self._run(incident_ops.update, self.store, reference, change, actor, _now()))

    def acknowledge(self, reference: str, actor: str) -> dict[str, Any]:
        return incident_ops.to_json(self._run(incident_ops.acknowledge, self.store, reference, actor, _now()))

    def dead_letters(
        self, source: str | None, states: Collection[str] | None = None, limit: int = 100, before: int | None = None
    ) -> list[dict[str, Any]]:
        from runtime import dead_letters

        return self._run(dead_letters.list_dead_letters, self.store, source=source, states=states, limit=limit, before=before)

    def dismiss_dead_letter(self, number: int, reason: str | None, actor: str) -> dict[str, Any]:
        from runtime import dead_letters

        return self._run(dead_letters.dismiss, self.store, number, reason, actor, _now())

    def notifications(self, status: str | None, incident: str | None, limit: int) -> list[dict[str, Any]]:
        from runtime.notify import queries

        return self._run(queries.list_notifications, self.store, status=status, incident=incident, limit=limit)

    def retry_notification(self, number: int) -> dict[str, Any]:
        from runtime.notify import queries

        return self._run(queries.retry, self.store, number, _now())

    def replay(self, number: int) -> dict[str, Any]:
        from runtime import dead_letters
        from runtime.pipeline import Pipeline
        from runtime.policy import Policy

        ruleset = self.ruleset()
        result = self._run(dead_letters.replay, self.store, ruleset, number, _now())
        policy = Policy(ruleset)
        Pipeline(self.store, lambda: policy).process_pending()
        return result

    def post_mortem(self, reference: str) -> PostMortem:
        from runtime.reports.postmortem import collect

        return self._run(collect, self.store, reference)

    def metrics(self, window: Window) -> Metrics:
        from runtime.reports.metrics import collect_metrics

        with self.store.read() as connection:
            return collect_metrics(connection, window)

    def close(self) -> None:
        self.store.close()


API_TOKEN_HINT = "set IRULES_API_TOKEN to the token the daemon was started with"


class RemoteBackend:
    """Talks to a running daemon's HTTP API; sends IRULES_API_TOKEN as a bearer token when set."""

    def __init__(self, url: str, token: str | None = None) -> None:
        import httpx

        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.client = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=30)

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        return self._send(self.client.build_request(method, path, **kwargs), {401: API_TOKEN_HINT})

    def _send(self, request: Any, hints: dict[int, str]) -> Any:
        """Send `request` and return its JSON; raise BackendError with the daemon's reason, plus `hints[status]` if any."""
        import httpx

        try:
            response = self.client.send(request)
        except httpx.HTTPError as error:
            raise BackendError(f"cannot reach the daemon at {self.client.base_url}: {error}") from error
        try:
            data = response.json()
        except ValueError:
            data = {"error": response.text.strip()}
        hint = hints.get(response.status_code)
        if hint is not None:
            raise BackendError(f"the daemon responded with HTTP {response.status_code}: {data.get('error', data)}; {hint}")
        if response.status_code >= 400:
            raise BackendError(f"the daemon responded with HTTP {response.status_code}: {data.get('error', data)}")
        return data

    def list(self, **filters: Any) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"limit": filters.get("limit", 100)}
        for name in ("status", "severity"):
            if filters.get(name):
                params[name] = list(filters[name])
        for name in ("team", "service"):
            if filters.get(name):
                params[name] = filters[name]
        if filters.get("open_only"):
            params["open"] = "true"
        return self._call("GET", "/api/v1/incidents", params=params)["incidents"]

    def show(self, reference: str) -> dict[str, Any]:
        return self._call("GET", f"/api/v1/incidents/{reference}")

    def create(self, title: str, severity: str | None, services: list[str], team: str | None, actor: str) -> dict[str, Any]:
        body = {"title": title, "severity": severity, "services": services, "team": team, "actor": actor}
        return self._call("POST", "/api/v1/incidents", json=body)

    def update(self, reference: str, change: incident_ops.Change, actor: str) -> dict[str, Any]:
        body = {
            "status": change.status,
            "assignee": change.assignee,
            "severity": change.severity,
            "note": change.note,
            "actor": actor,
        }
        return self._call(
            "PATCH", f"/api/v1/incidents/{reference}", json={key: value for key, value in body.items() if value is not None}
        )

    def acknowledge(self, reference: str, actor: str) -> dict[str, Any]:
        return self._call("POST", f"/api/v1/incidents/{reference}/ack", json={"actor": actor})

    def dead_letters(
        self, source: str | None, states: Collection[str] | None = None, limit: int = 100, before: int | None = None
    ) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"limit": limit}
        if source:
            params["source"] = source
        if states is not None:
            params["state"] = list(states)
        if before is not None:
            params["before"] = before
        return self._call("GET", "/api/v1/dead-letters", params=params)["dead_letters"]

    def dismiss_dead_letter(self, number: int, reason: str | None, actor: str) -> dict[str, Any]:
        body = {"actor": actor, **({"reason": reason} if reason else {})}
        return self._call("POST", f"/api/v1/dead-letters/{number}/dismiss", json=body)

    def replay(self, number: int) -> dict[str, Any]:
        return self._call("POST", f"/api/v1/dead-letters/{number}/replay")

    def notifications(self, status: str | None, incident: str | None, limit: int) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"limit": limit}
        if status:
            params["status"] = status
        if incident:
            params["incident"] = incident
        return self._call("GET", "/api/v1/notifications", params=params)["notifications"]

    def retry_notification(self, number: int) -> dict[str, Any]:
        return self._call("POST", f"/api/v1/notifications/{number}/retry")

    def post_mortem(self, reference: str) -> PostMortem:
        from runtime.reports.postmortem import PostMortem

        return _decoded(PostMortem, self._call("GET", f"/api/v1/incidents/{reference}/post-mortem"), "post-mortem")

    def metrics(self, window: Window) -> Metrics:
        from runtime.reports.metrics import Metrics

        params = {"start": window.start.isoformat(), "end": window.end.isoformat()}
        return _decoded(Metrics, self._call("GET", "/api/v1/reports/metrics", params=params), "metrics report")

    def decide_step(self, run: int, step: str, answer: str, actor: str, note: str | None) -> dict[str, Any]:
        body = {"answer": answer, "actor": actor, **({"note": note} if note else {})}
        return self._call("POST", f"/api/v1/runs/{run}/steps/{step}/decision", json=body)

    def remediate(self, reference: str, runbook: str | None, actor: str, auto_approve_safe: bool = False) -> list[dict[str, Any]]:
        import httpx

        body = {"actor": actor, "auto_approve_safe": auto_approve_safe, **({"runbook": runbook} if runbook else {})}
        try:
            response = self.client.post(f"/api/v1/incidents/{reference}/remediate", json=body)
        except httpx.HTTPError as error:
            raise BackendError(f"cannot reach the daemon at {self.client.base_url}: {error}") from error
        data = response.json() if response.headers.get("content-type", "").startswith("application/json") else {}
        if response.status_code not in (201, 409):
            raise BackendError(
                f"the daemon responded with HTTP {response.status_code}: {data.get('error', response.text.strip())}"
            )
        return data["runs"]

    def runs(self, incident: str | None, status: str | None) -> list[dict[str, Any]]:
        params = {name: value for name, value in (("incident", incident), ("status", status)) if value}
        return self._call("GET", "/api/v1/runs", params=params)["runs"]

    def run(self, number: int) -> dict[str, Any]:
        return self._call("GET", f"/api/v1/runs/{number}")

    def _hook_path(self, source: str) -> str:
        """Return where `source` receives, as the daemon's `/status` lists it: a custom source may have a path of its own."""
        fallback = f"/hooks/{source}"
        try:
            paths = self._call("GET", "/status").get("sources") or {}
        except BackendError:
            # The POST that follows reports an unreachable daemon with its own reason.
            return fallback
        path = paths.get(source) if isinstance(paths, dict) else None
        return path if isinstance(path, str) and path.startswith("/") else fallback

    def post_hook(self, source: str, body: bytes, headers: dict[str, str]) -> dict[str, Any]:
        """Post a webhook as its sender would; the source's own auth applies, not the API token.

        The API token is left out unless `headers` carries an Authorization header itself,
        because a source checks its own bearer token or signature.
        """
        request = self.client.build_request("POST", self._hook_path(source), content=body, headers=headers)
        if "authorization" not in {name.lower() for name in headers}:
            request.headers.pop("authorization", None)
        hint = (
            f"source {source} checks its own credentials, not IRULES_API_TOKEN: pass the header it expects with "
            "--header 'NAME: VALUE' (for an HMAC source, the signature of the file with its prefix), "
            "or set IRULES_HOOK_TOKEN to its bearer token"
        )
        return self._send(request, {401: hint, 403: hint})

    def close(self) -> None:
        self.client.close()


def _decoded(kind: type[Report], data: Any, report_name: str) -> Report:
    """Rebuild a report that the daemon sent, or raise BackendError when it does not have the shape this irules reads."""
    from pydantic import ValidationError

    from runtime.reports.wire import from_wire

    try:
        return from_wire(kind, data)
    except ValidationError as error:
        raise BackendError(
            f"the daemon sent a {report_name} that this irules cannot read ({error.error_count()} fields differ); "
            "is the daemon another irules version?"
        ) from error
