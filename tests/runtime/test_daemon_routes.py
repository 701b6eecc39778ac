"""The daemon's responses outside its endpoints, in-process on a real SQLite store: unknown paths, wrong methods, the root, list filters."""

from __future__ import annotations

import httpx
import pytest

from runtime.daemon.service import Daemon, DaemonConfig
from tests.runtime.test_daemon_hooks import daemon_config, run

pytestmark = pytest.mark.slow

NOT_FOUND_HINT = "see /openapi.json for the HTTP API and /ui/ for the web view"


@pytest.fixture
def config(tmp_path) -> DaemonConfig:
    return daemon_config(tmp_path)


@pytest.mark.parametrize("path", ["/nope", "/api/v1/", "/api/v1/incidents/INC-1/unknown", "/hooks", "/ui/nope"])
def test_unknown_path_gets_404(config: DaemonConfig, path: str) -> None:
    async def check(client: httpx.AsyncClient, daemon: Daemon) -> None:
        response = await client.get(path)

        assert response.status_code == 404
        assert response.headers["content-type"] == "application/json"
        assert response.json() == {"error": f"Not Found: GET {path}; {NOT_FOUND_HINT}"}

    run(config, check)


def test_unknown_path_under_root_path(config: DaemonConfig) -> None:
    async def check(client: httpx.AsyncClient, daemon: Daemon) -> None:
        response = await client.get("/irules/nope")

        assert response.status_code == 404
        assert response.json() == {
            "error": "Not Found: GET /irules/nope; see /irules/openapi.json for the HTTP API and /irules/ui/ for the web view"
        }

    run(config, check, root_path="/irules")


@pytest.mark.parametrize(("root_path", "location"), [("", "/ui/"), ("/irules", "/irules/ui/")])
def test_root_redirects_to_web_view(config: DaemonConfig, root_path: str, location: str) -> None:
    async def check(client: httpx.AsyncClient, daemon: Daemon) -> None:
        response = await client.get(f"{root_path}/")

        assert response.status_code == 307
        assert response.headers["location"] == location

    run(config, check, root_path)


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("GET", "/hooks/alertmanager", "POST, PUT"),
        ("DELETE", "/api/v1/incidents", "GET, HEAD, POST"),
        ("PUT", "/api/v1/incidents", "GET, HEAD, POST"),
        ("POST", "/api/v1/incidents/INC-1", "GET, HEAD, PATCH"),
        ("DELETE", "/ui/login", "GET, HEAD, POST"),
    ],
)
def test_wrong_method_gets_405_with_allow(config: DaemonConfig, method: str, path: str, allow: str) -> None:
    async def check(client: httpx.AsyncClient, daemon: Daemon) -> None:
        response = await client.request(method, path, content=b"{}")

        assert response.status_code == 405
        assert response.headers["allow"] == allow
        assert response.json() == {"error": f"Method Not Allowed: {method} {path}"}
        letters = await client.get("/api/v1/dead-letters")
        assert letters.json()["dead_letters"] == []

    run(config, check)


def test_post_to_root_still_reaches_custom_sources(config: DaemonConfig) -> None:
    async def check(client: httpx.AsyncClient, daemon: Daemon) -> None:
        response = await client.post("/", content=b'{"hello": "world"}')

        assert response.status_code == 404
        assert response.json()["error"].startswith("no source receives at /")
        assert isinstance(response.json()["dead_letter"], int)

    run(config, check)


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ("severity=urgent", "unknown severity 'urgent'; use one of critical, high, medium, low"),
        ("severity=high&severity=High", "unknown severity 'High'; use one of critical, high, medium, low"),
        (
            "status=open",
            "unknown status 'open'; use one of detected, triaged, investigating, mitigating, resolved, closed, "
            "or open=true for incidents not yet resolved or closed",
        ),
        (
            "status=done",
            "unknown status 'done'; use one of detected, triaged, investigating, mitigating, resolved, closed",
        ),
    ],
)
def test_list_unknown_filter_gets_400(config: DaemonConfig, query: str, reason: str) -> None:
    async def check(client: httpx.AsyncClient, daemon: Daemon) -> None:
        response = await client.get(f"/api/v1/incidents?{query}")

        assert response.status_code == 400
        assert response.json() == {"error": reason}

    run(config, check)


def test_list_valid_filters_get_200(config: DaemonConfig) -> None:
    async def check(client: httpx.AsyncClient, daemon: Daemon) -> None:
        created = await client.post("/api/v1/incidents", json={"title": "Checkout slow", "severity": "high"})
        assert created.status_code == 201, created.text

        matching = await client.get("/api/v1/incidents?status=detected&severity=high&severity=low&open=true")
        other = await client.get("/api/v1/incidents?status=resolved")

        assert matching.status_code == 200
        assert [row["id"] for row in matching.json()["incidents"]] == [created.json()["id"]]
        assert other.json() == {"incidents": []}

    run(config, check)


@pytest.mark.parametrize("reference", ["²", "١٢", "INC-1"])
def test_unknown_incident_reference_gets_404(config: DaemonConfig, reference: str) -> None:
    # "²" and "١٢" are digits to str.isdigit, but no incident number: int() rejects the first.
    async def check(client: httpx.AsyncClient, daemon: Daemon) -> None:
        response = await client.get(f"/api/v1/incidents/{reference}")

        assert response.status_code == 404
        assert response.json() == {"error": f"incident {reference!r} not found"}

    run(config, check)


def test_unknown_body_field_gets_400(config: DaemonConfig) -> None:
    async def check(client: httpx.AsyncClient, daemon: Daemon) -> None:
        created = await client.post("/api/v1/incidents", json={"title": "Checkout slow", "actor": "alice"})
        assert created.status_code == 201
        reference = created.json()["id"]

        # `by` is not the API's name for who acts; ignoring it would record the change as made by `api`.
        response = await client.post(f"/api/v1/incidents/{reference}/resolve", json={"by": "carol", "note": "fixed"})

        assert response.status_code == 400
        assert response.json() == {
            "error": "unknown field `by` in the request body; this request takes actor, note",
        }
        shown = await client.get(f"/api/v1/incidents/{reference}")
        assert shown.json()["status"] == "detected"

    run(config, check)
