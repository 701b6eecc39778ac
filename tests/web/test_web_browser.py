"""The web view in headless Chromium (Debian's `chromium`, driven by Playwright) against a real daemon child process.

The daemon runs examples/production on a free 127.0.0.1 port with `--no-notify`,
so nothing leaves the machine. A stand-in `terraform` (tests/web/fake_terraform.py)
first on its PATH lets the stock runbook rb-002 run up to its approval step,
which the test approves with a click. One alert carries `<script>` and
`<img onerror>` markup, which must reach the page as text.

A screenshot of the incident page is kept in `test-artifacts/` at the repository
root. These tests are skipped only when /usr/bin/chromium is missing; `.ci/run`
installs it.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from compiler.api import check_path
from tests.runtime.daemon_process import REPO, DaemonProcess, WebhookSigner

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PRODUCTION = REPO / "examples" / "production"
ARTIFACTS = REPO / "test-artifacts"
FAKE_TERRAFORM = Path(__file__).parent / "fake_terraform.py"
TOKEN = "browser-test-token-8d2e"
HOSTILE_LABEL = "<script>alert(1)</script>"
HOSTILE_SUMMARY = "<img src=x onerror=alert(2)> drift in infra/prod"
# Deadlines that only catch a hung daemon or browser; a healthy run needs a fraction of them.
WAIT_S = 30.0
BROWSER_TIMEOUT_MS = 20_000

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is missing; install Debian's chromium package"),
]


@dataclass
class Production:
    """A daemon on examples/production with three alerts posted and rb-002 waiting for approval on the drift incident."""

    daemon: DaemonProcess
    api_incident: str
    drift_incident: str
    run_id: int
    terraform_log: Path
    keys: list[str] = field(default_factory=list)


def wait_for(check: Callable[[], Any], description: str) -> Any:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {description}")


def drift_alert() -> bytes:
    alert = {
        "status": "firing",
        "labels": {"alertname": "TerraformStateDrift", "service": "terraform", "workspace": "infra/prod", "note": HOSTILE_LABEL},
        "annotations": {"summary": HOSTILE_SUMMARY},
        "startsAt": "2026-03-08T10:05:00Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "",
        "fingerprint": "",
    }
    body = {
        "version": "4",
        "groupKey": "{}:{}",
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "infrastructure",
        "groupLabels": {},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "https://alertmanager.example.com",
        "alerts": [alert],
    }
    return json.dumps(body).encode()


def start_production(base: Path, extra_environment: dict[str, str] | None = None) -> tuple[DaemonProcess, WebhookSigner, Path]:
    rules = base / "rules"
    shutil.copytree(PRODUCTION, rules, ignore=shutil.ignore_patterns("build"))
    signer = WebhookSigner(check_path(rules, "production").ruleset().sources, base / "secrets")
    tools = base / "bin"
    tools.mkdir()
    (tools / "terraform").symlink_to(FAKE_TERRAFORM)
    terraform_log = base / "terraform.log"
    environment = {
        "PATH": f"{tools}{os.pathsep}{os.environ.get('PATH', '')}",
        "IRULES_RUNBOOK_ENV": "FAKE_TERRAFORM_LOG",
        "FAKE_TERRAFORM_LOG": str(terraform_log),
        **(extra_environment or {}),
    }
    daemon = DaemonProcess(
        rules,
        base / "state",
        environment="production",
        secrets_dir=signer.folder,
        extra_args=["--no-notify"],
        extra_environment=environment,
    )
    return daemon.start(), signer, terraform_log


@pytest.fixture(scope="module")
def production(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Production]:
    daemon, signer, terraform_log = start_production(tmp_path_factory.mktemp("web"))
    try:
        examples = daemon.rules / "alerts"
        bodies = [(examples / f"alertmanager-{name}.json").read_bytes() for name in ("api-latency", "database-down")]
        for body in [*bodies, drift_alert()]:
            response = daemon.post("/hooks/alertmanager", body, signer.headers("alertmanager", body))
            assert response.status_code == 202, response.text
        daemon.wait_until_applied()
        by_title = {row["title"]: row["id"] for row in daemon.incidents()}
        api = by_title["APIHighLatency: p99 latency of the public API above 800 ms"]
        drift = by_title[f"TerraformStateDrift: {HOSTILE_SUMMARY}"]

        started = daemon.client.post(f"/api/v1/incidents/{drift}/remediate", json={"runbook": "rb-002", "actor": "alice"})
        assert started.status_code == 201, started.text
        run_id = started.json()["runs"][0]["run"]
        wait_for(lambda: pending_approvals(daemon, run_id), "rb-002 to wait for approval")
        yield Production(daemon, api, drift, run_id, terraform_log, keys=[api, drift])
        daemon.stop()
    except BaseException:
        daemon.kill()
        raise


def pending_approvals(daemon: DaemonProcess, run_id: int) -> list[dict[str, Any]]:
    shown = daemon.client.get(f"/api/v1/runs/{run_id}").json()
    return [item for item in shown["approvals"] if item["status"] == "pending"]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@dataclass
class Tab:
    """A browser page with its own cookies, and every dialog (alert, confirm) that a script opened on it."""

    page: Any
    dialogs: list[str]


@pytest.fixture
def tab(browser: Any) -> Iterator[Tab]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(BROWSER_TIMEOUT_MS)
    page = context.new_page()
    dialogs: list[str] = []

    def record(dialog: Any) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", record)
    yield Tab(page, dialogs)
    context.close()


def rows(tab: Tab) -> list[str]:
    return tab.page.locator("table.incidents tbody tr td:first-child").all_inner_texts()


# ---------------------------------------------------------------- the list


def test_list_shows_incidents_newest_first(production: Production, tab: Tab) -> None:
    tab.page.goto(f"{production.daemon.url}/ui/")
    assert rows(tab) == [production.drift_incident, production.api_incident]
    assert tab.page.locator("table.incidents tbody tr").nth(1).locator("td").nth(4).inner_text() == "application"


def test_list_filters_narrow_rows(production: Production, tab: Tab) -> None:
    from playwright.sync_api import expect

    page = tab.page
    page.goto(f"{production.daemon.url}/ui/")
    page.select_option("select[name=severity]", "critical")
    page.click("button:text('Filter')")
    expect(page).to_have_url(f"{production.daemon.url}/ui/?status=&severity=critical&team=&service=&q=")
    assert rows(tab) == [production.api_incident]

    page.goto(f"{production.daemon.url}/ui/")
    page.fill("input[name=q]", "terraform")
    page.click("button:text('Filter')")
    assert rows(tab) == [production.drift_incident]

    page.goto(f"{production.daemon.url}/ui/")
    page.fill("input[name=service]", "database")
    page.click("button:text('Filter')")
    assert rows(tab) == [production.api_incident]

    page.goto(f"{production.daemon.url}/ui/?team=security")
    assert rows(tab) == []
    assert page.locator("p.empty").inner_text() == "No incidents match these filters."
    page.click("a.reset")
    assert rows(tab) == [production.drift_incident, production.api_incident]


# ---------------------------------------------------------------- the incident page


def test_incident_page_shows_timeline(production: Production, tab: Tab) -> None:
    expected = production.daemon.incident(production.api_incident)["timeline"]
    tab.page.goto(f"{production.daemon.url}/ui/incidents/{production.api_incident}")
    entries = tab.page.locator("ol.timeline li")
    shown_kinds = entries.locator(".kind").all_inner_texts()
    assert shown_kinds[: len(expected)] == [entry["kind"] for entry in expected]
    assert shown_kinds[0] == "incident.detected"
    first = entries.nth(0).locator(".message").inner_text()
    assert first == f"Incident {production.api_incident} opened: APIHighLatency: p99 latency of the public API above 800 ms"
    assert tab.page.locator("h2", has_text="Alerts (2)").count() == 1


def test_alert_markup_is_shown_as_text(production: Production, tab: Tab) -> None:
    page = tab.page
    page.goto(f"{production.daemon.url}/ui/incidents/{production.drift_incident}")
    page.wait_for_load_state("networkidle")

    assert page.locator("h1").inner_text() == f"{production.drift_incident} TerraformStateDrift: {HOSTILE_SUMMARY}"
    assert page.locator(".label-value", has_text=HOSTILE_LABEL).is_visible()
    assert page.locator(".annotations dd").inner_text() == HOSTILE_SUMMARY
    assert page.locator("img[src=x]").count() == 0
    assert page.locator("main script").count() == 0
    page.locator("details summary", has_text="Output").first.click()
    assert '~ ingress = [<drifted rule & "quotes">]' in page.locator("details pre").first.inner_text()
    assert tab.dialogs == []

    ARTIFACTS.mkdir(exist_ok=True)
    picture = ARTIFACTS / "incident-page.png"
    page.screenshot(path=str(picture), full_page=True)
    data = picture.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert width == 1280
    assert 1200 <= height <= 8000
    assert len(data) > 50_000


def test_step_graph_picture_loads(production: Production, tab: Tab) -> None:
    page = tab.page
    page.goto(f"{production.daemon.url}/ui/incidents/{production.drift_incident}")
    picture = page.locator(f"#run-{production.run_id} figure.graph img")
    picture.wait_for()
    page.wait_for_load_state("networkidle")
    assert picture.evaluate("image => image.complete && image.naturalWidth > 50 && image.naturalHeight > 200")


def test_post_without_csrf_token_gets_403(production: Production, tab: Tab) -> None:
    page = tab.page
    page.goto(f"{production.daemon.url}/ui/incidents/{production.drift_incident}")
    response = page.request.post(f"{production.daemon.url}/ui/incidents/{production.drift_incident}/ack", form={"note": "x"})
    assert response.status == 403
    assert "CSRF check failed: the form has no csrf_token field" in response.text()
    assert production.daemon.incident(production.drift_incident)["acknowledged_at"] is None


def test_approve_click_grants_approval(production: Production, tab: Tab) -> None:
    from playwright.sync_api import expect

    page = tab.page
    page.goto(f"{production.daemon.url}/ui/incidents/{production.drift_incident}")
    run = page.locator(f"#run-{production.run_id}")
    with page.expect_navigation(url=f"**/ui/incidents/{production.drift_incident}#run-{production.run_id}"):
        run.get_by_role("button", name="Approve").click()

    approval = production.daemon.client.get(f"/api/v1/runs/{production.run_id}").json()["approvals"][0]
    assert (approval["step"], approval["status"], approval["decided_by"]) == ("approval", "granted", "web")
    # The run goes on in the daemon; the page shows the end through its live updates, without a reload.
    page.evaluate("window.sameDocument = true")
    expect(run.locator("h3 .badge")).to_have_text("succeeded", timeout=WAIT_S * 1000)
    assert page.evaluate("window.sameDocument") is True
    assert run.get_by_role("button", name="Approve").count() == 0
    applied = [json.loads(line) for line in production.terraform_log.read_text().splitlines()]
    assert ["-chdir=infra/prod", "apply", "-input=false", "-no-color", "drift.tfplan"] in applied


def test_acknowledge_and_resolve_buttons(production: Production, tab: Tab) -> None:
    page = tab.page
    key = production.api_incident
    page.goto(f"{production.daemon.url}/ui/incidents/{key}")
    with page.expect_navigation():
        page.click("button#acknowledge")
    shown = production.daemon.incident(key)
    assert (shown["acknowledged_by"], shown["status"]) == ("web", "investigating")
    assert page.locator("button#acknowledge").count() == 0

    page.fill("input[name=note]", "rolled back <deploy 42>")
    with page.expect_navigation():
        page.click("button#resolve")
    shown = production.daemon.incident(key)
    assert shown["status"] == "resolved"
    changes = [entry for entry in shown["timeline"] if entry["kind"] == "incident.status"]
    assert changes[-1]["actor"] == "web"
    assert changes[-1]["message"].startswith("Status changed from investigating to resolved: rolled back <deploy 42>")
    assert page.locator("p.done").inner_text() == "This incident is resolved."
    assert page.locator("ol.timeline .message", has_text="rolled back <deploy 42>").count() == 1


def test_page_follows_changes_without_reload(production: Production, tab: Tab) -> None:
    from playwright.sync_api import expect

    page = tab.page
    key = production.drift_incident
    page.goto(f"{production.daemon.url}/ui/incidents/{key}")
    page.evaluate("window.sameDocument = true")
    assigned = production.daemon.client.post(f"/api/v1/incidents/{key}/assign", json={"assignee": "carol", "actor": "bob"})
    assert assigned.status_code == 200, assigned.text
    expect(page.locator("dl.facts dd").nth(2)).to_have_text("carol", timeout=WAIT_S * 1000)
    assert page.evaluate("window.sameDocument") is True
    expect(page.locator("#live-status")).to_contain_text("Updated at")


# ---------------------------------------------------------------- with an API token


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    daemon, _signer, _log = start_production(tmp_path_factory.mktemp("web-token"), {"IRULES_API_TOKEN": TOKEN})
    try:
        yield daemon
        daemon.stop()
    except BaseException:
        daemon.kill()
        raise


def test_token_daemon_asks_for_login(guarded: DaemonProcess, tab: Tab) -> None:
    page = tab.page
    page.goto(f"{guarded.url}/ui")
    assert page.url == f"{guarded.url}/ui/login?next=%2Fui%2F"
    page.fill("input[name=name]", "alice")
    page.fill("input[name=token]", "wrong")
    page.click("button:text('Log in')")
    assert page.locator("p.problem").inner_text() == "wrong token: give the daemon's API token (IRULES_API_TOKEN)"

    page.fill("input[name=token]", TOKEN)
    page.click("button:text('Log in')")
    page.wait_for_url(f"{guarded.url}/ui/")
    assert page.locator(".who").inner_text() == "Signed in as alice"
    cookie = next(item for item in page.context.cookies() if item["name"] == "irules_session")
    assert (cookie["httpOnly"], cookie["sameSite"], cookie["path"]) == (True, "Strict", "/ui")

    page.click("button:text('Log out')")
    page.wait_for_url(f"{guarded.url}/ui/login")
    page.goto(f"{guarded.url}/ui/")
    assert page.url.startswith(f"{guarded.url}/ui/login?")
