"""The outbox against the fake SaaS server: retries, Retry-After, no retry on 400, breakers, dead letters, threads."""

from __future__ import annotations

import datetime
import random

import anyio
import httpx
import pytest

from runtime.notify import queries
from runtime.notify.model import DELIVERED, RETRY, Delivery, Outbound
from runtime.notify.outbox import Breaker, RetryPolicy
from runtime.store import Store
from tests.runtime.fakes import FakeSaaS
from tests.runtime.notify_harness import FakeClock, Harness, alert, load_policy

RULES = """
settings {
  incident_id_format "INC-{number}"
  daemon_url "https://irules.example.com"
}

slack {
  token secret("SLACK_TOKEN")
}

receiver oncall {
  pagerduty key secret("PAGERDUTY_KEY")
  slack "#incidents"
}

route {
  receiver oncall
  group_by [alertname]
  group_wait 0s
  group_interval 1m
  repeat_interval 4h
}
"""


@pytest.fixture
def harness(store: Store, fake_saas: FakeSaaS, tmp_path):
    policy = load_policy(tmp_path / "rules", RULES)

    async def build_and_run(body):  # type: ignore[no-untyped-def]
        async with httpx.AsyncClient(timeout=fake_saas.timeout_s) as client:
            h = Harness(store, policy, FakeClock(), endpoints=fake_saas.endpoints, client=client, secrets=fake_saas.secrets)
            return await body(h)

    return build_and_run


def pagerduty(fake: FakeSaaS) -> list:
    """Return the PagerDuty requests that the fake server accepted."""
    return [request for request in fake.requests(fake.pagerduty_path) if request.status == 202]


async def tick(h: Harness) -> None:
    """Fire due timers, queue due messages and send what may go now."""
    await anyio.to_thread.run_sync(h.notifier.tick)
    await h.outbox.send_ready()


async def advance(h: Harness, seconds: float, step: float = 1.0) -> None:
    """Move the clock forward `seconds` in steps, ticking after each."""
    end = h.clock() + datetime.timedelta(seconds=seconds)
    while h.clock() < end:
        h.clock.advance(step)
        await tick(h)


@pytest.mark.anyio
async def test_page_retried_after_429_and_5xx(harness, fake_saas: FakeSaaS) -> None:
    """The page is delivered once, after a 429 with Retry-After and two 503s."""
    fake_saas.fail_next(fake_saas.pagerduty_path, 429, headers={"Retry-After": "7"})
    fake_saas.fail_next(fake_saas.pagerduty_path, 503, times=2)

    async def body(h: Harness) -> list:
        await anyio.to_thread.run_sync(h.post, alert("CheckoutDown", severity="critical"))
        await tick(h)
        rows = [row for row in h.outbox_rows() if row["channel"] == "pagerduty"]
        assert rows[0]["status"] == "pending"
        assert rows[0]["last_status"] == 429
        # Retry-After is 7 s plus up to 1 s of jitter, so nothing is sent before that.
        await advance(h, 6)
        assert len(fake_saas.requests(fake_saas.pagerduty_path)) == 1
        await advance(h, 120)
        return h.outbox_rows()

    rows = await harness(body)
    attempts = fake_saas.requests(fake_saas.pagerduty_path)
    assert [request.status for request in attempts] == [429, 503, 503, 202]
    assert [(row["channel"], row["status"], row["attempts"]) for row in rows if row["channel"] == "pagerduty"] == [
        ("pagerduty", "delivered", 4)
    ]


@pytest.mark.anyio
async def test_400_becomes_dead_letter_without_retry(harness, fake_saas: FakeSaaS, store: Store) -> None:
    fake_saas.fail_next(fake_saas.pagerduty_path, 400, body={"status": "invalid event", "message": "Event object is invalid"})

    async def body(h: Harness) -> None:
        await anyio.to_thread.run_sync(h.post, alert("CheckoutDown", severity="critical"))
        await advance(h, 300, step=10)

    await harness(body)
    assert [request.status for request in fake_saas.requests(fake_saas.pagerduty_path)] == [400]
    failed = queries.list_notifications(store, status="failed")
    assert [(row["channel"], row["attempts"], row["last_status"]) for row in failed] == [("pagerduty", 1, 400)]
    # After a fix, `irules notifications retry` queues it again and it goes out.
    queued = queries.retry(store, failed[0]["id"], FakeClock()() + datetime.timedelta(minutes=5))
    assert queued["status"] == "pending"
    assert queued["attempts"] == 0
    with pytest.raises(Exception, match="only failed ones can be sent again"):
        queries.retry(store, failed[0]["id"], FakeClock()())


@pytest.mark.anyio
async def test_slack_updates_go_into_incident_thread(harness, fake_saas: FakeSaaS) -> None:
    async def body(h: Harness) -> None:
        await anyio.to_thread.run_sync(h.post, alert("CheckoutDown", severity="critical"))
        await tick(h)
        await anyio.to_thread.run_sync(h.post, alert("CheckoutDown", severity="critical", instance="b"))
        await advance(h, 61)
        await anyio.to_thread.run_sync(h.post, alert("CheckoutDown", status="resolved", severity="critical"))
        await anyio.to_thread.run_sync(h.post, alert("CheckoutDown", status="resolved", severity="critical", instance="b"))
        await advance(h, 61)

    await harness(body)
    posts = [request.data for request in fake_saas.requests("/api/chat.postMessage")]
    assert len(posts) == 3
    assert "thread_ts" not in posts[0]
    root = fake_saas.requests("/api/chat.postMessage")[0]
    root_ts = next(iter(fake_saas.slack_messages.values()))["ts"] if fake_saas.slack_messages else None
    assert root_ts is not None
    assert root.status == 200
    assert [post.get("thread_ts") for post in posts[1:]] == [root_ts, root_ts]
    updates = [request.data for request in fake_saas.requests("/api/chat.update")]
    assert [update["ts"] for update in updates] == [root_ts, root_ts]
    events = [request.data["event_action"] for request in pagerduty(fake_saas)]
    assert events == ["trigger", "trigger", "resolve"]
    assert len({request.data["dedup_key"] for request in pagerduty(fake_saas)}) == 1


@pytest.mark.anyio
async def test_failing_endpoint_does_not_block_others(harness, fake_saas: FakeSaaS) -> None:
    fake_saas.fail_next(fake_saas.pagerduty_path, 500, times=50)

    async def body(h: Harness) -> None:
        await anyio.to_thread.run_sync(h.post, alert("CheckoutDown", severity="critical"))
        await tick(h)

    await harness(body)
    assert [request.status for request in fake_saas.requests("/api/chat.postMessage")] == [200]
    assert [request.status for request in fake_saas.requests(fake_saas.pagerduty_path)] == [500]


def test_retry_delay_backoff_and_retry_after() -> None:
    """The delay honours Retry-After, and otherwise grows exponentially with jitter."""
    policy = RetryPolicy(base_s=2.0, cap_s=600.0)
    rng = random.Random(1)
    assert 30.0 <= policy.delay(1, 30.0, rng) <= 31.0
    for attempts, ceiling in ((1, 2.0), (2, 4.0), (5, 32.0), (20, 600.0)):
        delays = [policy.delay(attempts, None, rng) for _ in range(200)]
        assert all(ceiling / 2 <= delay <= ceiling for delay in delays)
        assert max(delays) - min(delays) > ceiling / 4  # jittered, not fixed


def test_breaker_opens_and_closes() -> None:
    """The breaker opens after repeated failures, doubles its pause and closes on success."""
    breaker = Breaker(threshold=3, open_s=30.0, max_open_s=120.0)
    now = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    assert [breaker.record(RETRY, now) for _ in range(3)] == [False, False, True]
    assert not breaker.allows(now + datetime.timedelta(seconds=29))
    assert breaker.allows(now + datetime.timedelta(seconds=30))
    # The trial attempt fails, so the pause doubles.
    later = now + datetime.timedelta(seconds=30)
    assert breaker.record(RETRY, later)
    assert not breaker.allows(later + datetime.timedelta(seconds=59))
    assert breaker.allows(later + datetime.timedelta(seconds=60))
    breaker.record(DELIVERED, later + datetime.timedelta(seconds=60))
    assert breaker.allows(later + datetime.timedelta(seconds=60))
    assert breaker.failures == 0


@pytest.mark.anyio
async def test_open_breaker_spends_no_attempts(store: Store, tmp_path) -> None:
    policy = load_policy(tmp_path / "rules", RULES)
    calls: list[str] = []

    async def failing(outbound: Outbound) -> Delivery:
        calls.append(outbound.kind)
        return Delivery(RETRY, "HTTP 503", status=503) if outbound.kind == "pagerduty" else Delivery(DELIVERED)

    h = Harness(store, policy, FakeClock(), send=failing)
    for number in range(8):
        await anyio.to_thread.run_sync(h.post, alert(f"Down{number}", severity="critical"))
    h.outbox.retry = RetryPolicy(base_s=0.001, cap_s=0.001, max_attempts=100)
    for _ in range(10):
        h.clock.advance(0.01)
        await tick(h)
    # Five failures in a row open the breaker. The other rows wait with their attempts untouched.
    assert calls.count("pagerduty") == 5
    waiting = [row for row in h.outbox_rows() if row["channel"] == "pagerduty"]
    assert sum(row["attempts"] for row in waiting) == 5
