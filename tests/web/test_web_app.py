"""The web view in-process against a real SQLite store: escaping, CSRF, login, sessions, actions and live fragments."""

from __future__ import annotations

import datetime
import re
import urllib.parse

import anyio
import httpx
import pytest
import sqlalchemy as sa

from runtime.daemon.service import DaemonConfig
from runtime.runbooks import runs
from runtime.runbooks.runs import StoreJournal
from runtime.store.schema import approvals
from runtime.web.lockout import DEFAULT_LIMIT, DEFAULT_WINDOW_S
from runtime.web.pages import CONTENT_SECURITY_POLICY
from runtime.web.session import COOKIE
from tests.web.conftest import HOSTILE_LABEL, HOSTILE_SUMMARY, Served, csrf_of, serving

pytestmark = pytest.mark.slow

TOKEN = "web-test-token-5f1c"


def run(config: DaemonConfig, check, base_url: str = "http://127.0.0.1") -> None:
    async def main() -> None:
        async with serving(config, base_url) as served:
            await check(served)

    anyio.run(main)


async def hostile_incident(served: Served) -> str:
    await served.post_alert("ApiLatency", {"service": "api", "note": HOSTILE_LABEL}, {"summary": HOSTILE_SUMMARY})
    return "INC-1"


# ---------------------------------------------------------------- escaping


def test_alert_markup_shown_as_text_on_every_page(open_config: DaemonConfig) -> None:
    async def check(served: Served) -> None:
        key = await hostile_incident(served)
        pages = {
            "incident": (await served.page(f"/ui/incidents/{key}")).text,
            "fragment": (await served.page(f"/ui/incidents/{key}/live")).text,
            "list": (await served.page("/ui/")).text,
        }
        for name, html in pages.items():
            assert "<script>alert" not in html, name
            assert "<img src=x" not in html, name
            assert "&lt;img src=x onerror=alert(2)&gt; latency &amp; more" in html, name
        for name in ("incident", "fragment"):
            assert "&lt;script&gt;alert(1)&lt;/script&gt;" in pages[name], name
        # The page's own script is the only script element.
        assert re.findall(r"<script[^>]*>", pages["incident"]) == ['<script src="/ui/static/web.js" defer>']

    run(open_config, check)


def test_pages_carry_security_headers(open_config: DaemonConfig) -> None:
    async def check(served: Served) -> None:
        await hostile_incident(served)
        response = await served.page("/ui/incidents/INC-1")
        assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
        assert "script-src 'self';" in CONTENT_SECURITY_POLICY
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["cache-control"] == "no-store"

    run(open_config, check)


def test_notification_link_redirects_to_page(open_config: DaemonConfig) -> None:
    async def check(served: Served) -> None:
        response = await served.client.get("/incidents/INC-1")
        assert response.status_code == 307
        assert response.headers["location"] == "/ui/incidents/INC-1"
        bare = await served.client.get("/ui")
        assert bare.status_code == 307
        assert bare.headers["location"] == "/ui/"

    run(open_config, check)


def test_unknown_incident_page_is_404(open_config: DaemonConfig) -> None:
    async def check(served: Served) -> None:
        response = await served.client.get("/ui/incidents/INC-404")
        assert response.status_code == 404
        assert "incident &#39;INC-404&#39; not found" in response.text

    run(open_config, check)


# ---------------------------------------------------------------- CSRF


def test_post_without_csrf_token_is_rejected(open_config: DaemonConfig) -> None:
    async def check(served: Served) -> None:
        key = await hostile_incident(served)
        await served.page(f"/ui/incidents/{key}")
        response = await served.client.post(f"/ui/incidents/{key}/ack", data={})
        assert response.status_code == 403
        assert "CSRF check failed: the form has no csrf_token field" in response.text
        assert served.incident(key)["acknowledged_at"] is None

    run(open_config, check)


def test_post_with_wrong_csrf_token_is_rejected(open_config: DaemonConfig) -> None:
    async def check(served: Served) -> None:
        key = await hostile_incident(served)
        await served.page(f"/ui/incidents/{key}")
        response = await served.client.post(f"/ui/incidents/{key}/resolve", data={"csrf_token": "guessed"})
        assert response.status_code == 403
        assert "the form&#39;s csrf_token does not match the session" in response.text
        assert served.incident(key)["status"] == "detected"

    run(open_config, check)


def test_post_without_session_cookie_is_rejected(open_config: DaemonConfig) -> None:
    async def check(served: Served) -> None:
        key = await hostile_incident(served)
        token = csrf_of((await served.page(f"/ui/incidents/{key}")).text)
        served.client.cookies.clear()
        response = await served.client.post(f"/ui/incidents/{key}/ack", data={"csrf_token": token})
        assert response.status_code == 403
        assert "no valid session cookie came with the form" in response.text
        assert served.incident(key)["acknowledged_at"] is None

    run(open_config, check)


def test_forged_session_cookie_is_rejected(open_config: DaemonConfig) -> None:
    async def check(served: Served) -> None:
        key = await hostile_incident(served)
        token = csrf_of((await served.page(f"/ui/incidents/{key}")).text)
        payload, signature = served.client.cookies[COOKIE].split(".")
        served.client.cookies.clear()
        served.client.cookies.set(COOKIE, f"{payload}.{signature[::-1]}", path="/ui")
        response = await served.client.post(f"/ui/incidents/{key}/ack", data={"csrf_token": token})
        assert response.status_code == 403
        assert "no valid session cookie" in response.text

    run(open_config, check)


def test_multipart_form_is_rejected(open_config: DaemonConfig) -> None:
    async def check(served: Served) -> None:
        key = await hostile_incident(served)
        token = csrf_of((await served.page(f"/ui/incidents/{key}")).text)
        response = await served.client.post(f"/ui/incidents/{key}/ack", files={"csrf_token": (None, token)})
        assert response.status_code == 415
        assert "application/x-www-form-urlencoded" in response.text
        assert served.incident(key)["acknowledged_at"] is None

    run(open_config, check)


def test_oversized_form_is_rejected(open_config: DaemonConfig) -> None:
    async def check(served: Served) -> None:
        key = await hostile_incident(served)
        token = csrf_of((await served.page(f"/ui/incidents/{key}")).text)
        response = await served.client.post(f"/ui/incidents/{key}/resolve", data={"csrf_token": token, "note": "x" * 20000})
        assert response.status_code == 413
        assert served.incident(key)["status"] == "detected"

    run(open_config, check)


# ---------------------------------------------------------------- actions


def test_acknowledge_and_resolve_record_web_actor(open_config: DaemonConfig) -> None:
    async def check(served: Served) -> None:
        key = await hostile_incident(served)
        token = csrf_of((await served.page(f"/ui/incidents/{key}")).text)

        acked = await served.client.post(f"/ui/incidents/{key}/ack", data={"csrf_token": token})
        assert acked.status_code == 303
        assert acked.headers["location"] == f"/ui/incidents/{key}"
        shown = served.incident(key)
        assert shown["acknowledged_by"] == "web"
        assert shown["status"] == "investigating"

        resolved = await served.client.post(
            f"/ui/incidents/{key}/resolve", data={"csrf_token": token, "note": "<b>restarted</b>"}
        )
        assert resolved.status_code == 303
        shown = served.incident(key)
        assert shown["status"] == "resolved"
        last = shown["timeline"][-1]
        assert (last["kind"], last["actor"]) == ("incident.status", "web")
        assert last["message"] == "Status changed from investigating to resolved: <b>restarted</b> (1 of its alerts still firing)"

        page = (await served.page(f"/ui/incidents/{key}")).text
        assert "&lt;b&gt;restarted&lt;/b&gt;" in page
        assert 'id="acknowledge"' not in page
        assert 'id="resolve"' not in page
        assert "This incident is resolved." in page

    run(open_config, check)


def test_acknowledging_resolved_incident_shows_conflict(open_config: DaemonConfig) -> None:
    async def check(served: Served) -> None:
        key = await hostile_incident(served)
        token = csrf_of((await served.page(f"/ui/incidents/{key}")).text)
        await served.client.post(f"/ui/incidents/{key}/resolve", data={"csrf_token": token})
        response = await served.client.post(f"/ui/incidents/{key}/ack", data={"csrf_token": token})
        assert response.status_code == 409
        assert "incident INC-1 is resolved; there is nothing to acknowledge" in response.text

    run(open_config, check)


async def waiting_run(served: Served, key: str) -> int:
    """Start the rules' runbook on the incident and record it as the executor would: `look` done, `approval` waiting."""
    store, policy = served.daemon.store, served.daemon.rules.current()
    assert store is not None
    now = datetime.datetime.now(datetime.UTC)
    incident = served.incident(key)
    run_id = runs.start_run(
        store,
        policy.ruleset.runbooks[0],
        incident_id=incident["number"],
        values={"labels": {"service": "api"}},
        trigger="manual",
        requested_by="alice",
        now=now,
    )
    journal = StoreJournal(store, run_id)
    await journal.record("look", "succeeded", attempt=1, at=now, detail="exited with code 0")
    runs.request(store, run_id, "approval", runs.APPROVAL, "infrastructure", {"kind": "approve"}, now, 3600)
    await journal.record("approval", "waiting", attempt=1, at=now, detail="waiting for approval from infrastructure")
    return run_id


def approval_row(served: Served, run_id: int) -> dict:
    assert served.daemon.store is not None
    with served.daemon.store.read() as connection:
        return dict(connection.execute(sa.select(approvals).where(approvals.c.run_id == run_id)).mappings().one())


def test_approve_button_grants_pending_approval(open_config: DaemonConfig) -> None:
    async def check(served: Served) -> None:
        key = await hostile_incident(served)
        run_id = await waiting_run(served, key)
        page = (await served.page(f"/ui/incidents/{key}")).text
        assert f'action="/ui/runs/{run_id}/steps/approval/decision"' in page
        assert 'value="granted" class="approve">Approve</button>' in page
        assert f'src="/ui/runs/{run_id}/graph.svg?v=' in page

        response = await served.client.post(
            f"/ui/runs/{run_id}/steps/approval/decision", data={"csrf_token": csrf_of(page), "answer": "granted"}
        )
        assert response.status_code == 303
        assert response.headers["location"] == f"/ui/incidents/{key}#run-{run_id}"
        row = approval_row(served, run_id)
        assert (row["status"], row["decided_by"]) == ("granted", "web")
        assert "Approve</button>" not in (await served.page(f"/ui/incidents/{key}")).text

    run(open_config, check)


def test_deny_button_denies_pending_approval(open_config: DaemonConfig) -> None:
    async def check(served: Served) -> None:
        key = await hostile_incident(served)
        run_id = await waiting_run(served, key)
        token = csrf_of((await served.page(f"/ui/incidents/{key}")).text)
        response = await served.client.post(
            f"/ui/runs/{run_id}/steps/approval/decision", data={"csrf_token": token, "answer": "denied"}
        )
        assert response.status_code == 303
        assert approval_row(served, run_id)["status"] == "denied"
        again = await served.client.post(
            f"/ui/runs/{run_id}/steps/approval/decision", data={"csrf_token": token, "answer": "granted"}
        )
        assert again.status_code == 404
        assert "step &#39;approval&#39; of run 1 waits for no approval or decision" in again.text

    run(open_config, check)


def test_invalid_answer_is_rejected(open_config: DaemonConfig) -> None:
    async def check(served: Served) -> None:
        key = await hostile_incident(served)
        run_id = await waiting_run(served, key)
        token = csrf_of((await served.page(f"/ui/incidents/{key}")).text)
        response = await served.client.post(
            f"/ui/runs/{run_id}/steps/approval/decision", data={"csrf_token": token, "answer": "maybe"}
        )
        assert response.status_code == 400
        assert "invalid answer &#39;maybe&#39;" in response.text
        assert approval_row(served, run_id)["status"] == "pending"

    run(open_config, check)


def test_run_graph_is_svg_of_step_states(open_config: DaemonConfig) -> None:
    async def check(served: Served) -> None:
        key = await hostile_incident(served)
        run_id = await waiting_run(served, key)
        await served.page(f"/ui/incidents/{key}")
        response = await served.client.get(f"/ui/runs/{run_id}/graph.svg")
        assert response.status_code == 200
        assert response.headers["content-type"] == "image/svg+xml"
        assert "sandbox" in response.headers["content-security-policy"]
        svg = response.text
        assert svg.lstrip().startswith("<?xml")
        for text in ("look", "[succeeded]", "approval", "[waiting]", "change", "undo", "[not started]", "on_failure"):
            assert f">{text}<" in svg, text
        missing = await served.client.get("/ui/runs/99/graph.svg")
        assert missing.status_code == 404

    run(open_config, check)


# ---------------------------------------------------------------- live fragments


def test_live_fragment_answers_304_until_incident_changes(open_config: DaemonConfig) -> None:
    async def check(served: Served) -> None:
        key = await hostile_incident(served)
        page = (await served.page(f"/ui/incidents/{key}")).text
        etag = re.search(r'data-etag="([^"]+)"', page).group(1).replace("&#34;", '"')

        unchanged = await served.client.get(f"/ui/incidents/{key}/live", headers={"if-none-match": etag})
        assert unchanged.status_code == 304
        assert unchanged.content == b""

        await served.client.post(f"/ui/incidents/{key}/ack", data={"csrf_token": csrf_of(page)})
        changed = await served.client.get(f"/ui/incidents/{key}/live", headers={"if-none-match": etag})
        assert changed.status_code == 200
        assert changed.headers["etag"] != etag
        assert "Acknowledged by web" in changed.text
        assert "<html" not in changed.text

    run(open_config, check)


# ---------------------------------------------------------------- login with an API token


def test_token_daemon_redirects_to_login(token_config: DaemonConfig) -> None:
    async def check(served: Served) -> None:
        for path in ("/ui/", "/ui/incidents/INC-1?x=1"):
            response = await served.client.get(path)
            assert response.status_code == 303, path
            assert response.headers["location"] == "/ui/login?" + urllib.parse.urlencode({"next": path})
        assert (await served.client.get("/ui/incidents/INC-1/live")).status_code == 401
        assert (await served.client.get("/ui/runs/1/graph.svg")).status_code == 401
        assert (await served.client.get("/api/v1/incidents")).status_code == 401

    run(token_config, check)


async def log_in(served: Served, name: str, token: str, next_path: str = "/ui/") -> httpx.Response:
    page = await served.page("/ui/login?" + urllib.parse.urlencode({"next": next_path}))
    form = {"csrf_token": csrf_of(page.text), "name": name, "token": token, "next": next_path}
    return await served.client.post("/ui/login", data=form)


def test_login_with_token_records_name_as_actor(token_config: DaemonConfig) -> None:
    async def check(served: Served) -> None:
        key = await hostile_incident(served)
        before_login = csrf_of((await served.page("/ui/login")).text)
        response = await log_in(served, "  alice\x07 ", TOKEN, f"/ui/incidents/{key}")
        assert response.status_code == 303
        assert response.headers["location"] == f"/ui/incidents/{key}"
        cookie = response.headers["set-cookie"]
        assert "HttpOnly" in cookie
        assert "SameSite=strict" in cookie
        assert "Path=/ui" in cookie
        assert "Secure" not in cookie

        page = (await served.page(f"/ui/incidents/{key}")).text
        assert "Signed in as <strong>alice</strong>" in page
        token = csrf_of(page)
        assert token != before_login
        stale = await served.client.post(f"/ui/incidents/{key}/ack", data={"csrf_token": before_login})
        assert stale.status_code == 403
        acked = await served.client.post(f"/ui/incidents/{key}/ack", data={"csrf_token": token})
        assert acked.status_code == 303
        assert served.incident(key)["acknowledged_by"] == "alice"

    run(token_config, check)


def test_login_with_wrong_token_is_rejected(token_config: DaemonConfig) -> None:
    async def check(served: Served) -> None:
        response = await log_in(served, "mallory", "not-the-token")
        assert response.status_code == 401
        assert "wrong token" in response.text
        assert (await served.client.get("/ui/")).status_code == 303

    run(token_config, check)


def test_wrong_tokens_lock_address_out(token_config: DaemonConfig) -> None:
    async def check(served: Served) -> None:
        for _ in range(DEFAULT_LIMIT):
            assert (await log_in(served, "mallory", "not-the-token")).status_code == 401
        # Locked out: even the right token is not compared until the window has passed.
        rejected = await log_in(served, "alice", TOKEN)
        assert rejected.status_code == 429
        assert 0 < int(rejected.headers["retry-after"]) <= DEFAULT_WINDOW_S
        assert "too many wrong tokens" in rejected.text
        assert (await served.client.get("/ui/")).status_code == 303

    run(token_config, check)


def test_login_without_name_is_rejected(token_config: DaemonConfig) -> None:
    async def check(served: Served) -> None:
        response = await log_in(served, " \t ", TOKEN)
        assert response.status_code == 400
        assert "missing name" in response.text
        assert (await served.client.get("/ui/")).status_code == 303

    run(token_config, check)


def test_login_never_redirects_off_site(token_config: DaemonConfig) -> None:
    async def check(served: Served) -> None:
        for target in ("https://evil.example/", "//evil.example/ui/", "/ui/..//evil", "/api/v1/incidents"):
            served.client.cookies.clear()
            response = await log_in(served, "alice", TOKEN, target)
            assert response.status_code == 303, target
            assert response.headers["location"] == "/ui/", target

    run(token_config, check)


def test_login_without_csrf_token_is_rejected(token_config: DaemonConfig) -> None:
    async def check(served: Served) -> None:
        await served.page("/ui/login")
        response = await served.client.post("/ui/login", data={"name": "alice", "token": TOKEN})
        assert response.status_code == 403
        assert (await served.client.get("/ui/")).status_code == 303

    run(token_config, check)


def test_logout_ends_session(token_config: DaemonConfig) -> None:
    async def check(served: Served) -> None:
        await log_in(served, "alice", TOKEN)
        token = csrf_of((await served.page("/ui/")).text)
        response = await served.client.post("/ui/logout", data={"csrf_token": token})
        assert response.status_code == 303
        assert response.headers["location"] == "/ui/login"
        after = await served.client.get("/ui/")
        assert after.status_code == 303
        assert after.headers["location"].startswith("/ui/login?")

    run(token_config, check)


def test_session_cookie_is_secure_over_https(token_config: DaemonConfig) -> None:
    async def check(served: Served) -> None:
        response = await log_in(served, "alice", TOKEN)
        assert response.status_code == 303
        assert "Secure" in response.headers["set-cookie"]

    run(token_config, check, base_url="https://127.0.0.1")
