"""The outbox against the fake SaaS server: retries, Retry-After, no retry on 400, breakers, dead letters, threads."""

from __future__ import annotations

import datetime
import random
from typing import Any

import anyio
import httpx
import pytest
import sqlalchemy as sa

from runtime.notify import queries
from runtime.notify.model import DELIVERED, RETRY, Delivery, Outbound
from runtime.notify.outbox import Claimed, Outbox, RetryPolicy, utc_now
from runtime.store import Store
from runtime.store.schema import outbox as outbox_table
from tests.runtime.fakes import FakeSaaS
from tests.runtime.notify_harness import T0, FakeClock, Harness, alert, load_policy

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


# ---------------------------------------------------------------- leases and limits shared by several workers

WEBHOOK_ENDPOINT = "webhook:WEBHOOK_URL"


def webhook_rows(count: int, now: datetime.datetime) -> list[dict[str, Any]]:
    """Return `count` pending resolution messages to one webhook endpoint, numbered from 0.

    Resolutions are never folded into a digest, so each row is one request to the receiver.
    """
    return [
        {
            "key": f"test:{number}",
            "incident_id": None,
            "receiver": "ops",
            "channel": "webhook",
            "endpoint": WEBHOOK_ENDPOINT,
            "event": "resolved",
            "priority": 0,
            "message": Outbound(kind="webhook", payload={"sequence": number}, secrets={"url": "WEBHOOK_URL"}).to_json(),
            "cancel_on": None,
            "status": "pending",
            "attempts": 0,
            "created_at": now,
            "next_attempt_at": now,
            "reference": {},
        }
        for number in range(count)
    ]


def queue_webhook_rows(store: Store, count: int, now: datetime.datetime) -> None:
    """Queue `count` resolution messages to one webhook endpoint, a kind of message that is never folded into a digest."""
    rows = webhook_rows(count, now)
    with store.write() as connection:
        connection.execute(outbox_table.insert(), rows)


def worker(store: Store, policy, clock, send, **options) -> Outbox:  # type: ignore[no-untyped-def]
    """Return an outbox worker on `store`, as one daemon of a cluster runs it."""
    return Outbox(store, lambda: policy.ruleset.settings, {}.get, None, clock=clock, sender=send, **options)  # type: ignore[arg-type]


def row_state(store: Store) -> tuple[str, int]:
    with store.read() as connection:
        row = connection.execute(sa.select(outbox_table.c.status, outbox_table.c.attempts)).one()
    return row.status, row.attempts


@pytest.mark.anyio
async def test_workers_share_rate_limit(store: Store, tmp_path) -> None:
    """Three workers on one store send 60 messages within one webhook bucket: burst 20, then 10 a second."""
    policy = load_policy(tmp_path / "rules", RULES)
    clock = FakeClock()
    sent: list[tuple[float, int, int]] = []
    workers: list[Outbox] = []
    for index in range(3):

        async def send(outbound: Outbound, index: int = index) -> Delivery:
            sent.append(((clock() - T0).total_seconds(), index, outbound.payload["sequence"]))
            return Delivery(DELIVERED)

        workers.append(worker(store, policy, clock, send))
    rate, burst = workers[0].rates["webhook"]
    assert (rate, burst) == (10.0, 20.0)
    queue_webhook_rows(store, 60, clock())

    for step in range(40):
        for index in range(3):
            await workers[(step + index) % 3].send_ready()
        clock.advance(0.25)

    assert sorted(sequence for _at, _index, sequence in sent) == list(range(60))
    # Every window from one send to a later one contains at most burst + rate * its length.
    times = sorted(at for at, _index, _sequence in sent)
    for first in range(len(times)):
        for last in range(first, len(times)):
            assert last - first + 1 <= burst + rate * (times[last] - times[first]), (times[first], times[last])
    # The first worker takes the burst at 0 s, then 2.5 tokens come every quarter second.
    assert times.count(0.0) == 20
    assert times[-1] == 4.0


@pytest.mark.anyio
async def test_workers_share_circuit_breaker(store: Store, tmp_path) -> None:
    """Five failures on any workers open the breaker for all three, until one trial after 30 s."""
    policy = load_policy(tmp_path / "rules", RULES)
    clock = FakeClock()
    attempts: list[tuple[float, int]] = []
    workers: list[Outbox] = []
    for index in range(3):

        async def fail(outbound: Outbound, index: int = index) -> Delivery:
            attempts.append(((clock() - T0).total_seconds(), index))
            return Delivery(RETRY, "HTTP 503", status=503)

        workers.append(worker(store, policy, clock, fail, retry=RetryPolicy(base_s=0.5, cap_s=0.5, max_attempts=100)))
    queue_webhook_rows(store, 3, clock())

    for step in range(100):
        # Each second another worker goes first, as the first to claim varies between daemons.
        for index in range(3):
            await workers[(step + index) % 3].send_ready()
        clock.advance(1.0)

    # The three rows fail at 0 s, two retries at 1 s open the breaker for 30 s, and the failed
    # trial at 31 s opens it for 60 s. With a breaker per worker, worker 2 would send at 2 s.
    assert attempts == [(0.0, 0), (0.0, 0), (0.0, 0), (1.0, 1), (1.0, 1), (31.0, 1), (91.0, 1)]


def queue_storm_rows(store: Store, count: int, now: datetime.datetime, first: int) -> None:
    """Queue `count` foldable messages ("opened") to the webhook endpoint, numbered from `first`."""
    rows = [
        {**row, "key": f"storm:{first + index}", "event": "opened", "message": _sequence_message(first + index)}
        for index, row in enumerate(webhook_rows(count, now))
    ]
    with store.write() as connection:
        connection.execute(outbox_table.insert(), rows)


def _sequence_message(number: int) -> dict[str, Any]:
    return Outbound(kind="webhook", payload={"sequence": number}, secrets={"url": "WEBHOOK_URL"}).to_json()


@pytest.mark.anyio
async def test_workers_share_digest_cadence(store: Store, tmp_path) -> None:
    """Three workers fold a storm into one digest a minute together, then send one by one once it is over."""
    policy = load_policy(tmp_path / "rules", RULES)
    clock = FakeClock()
    sent: list[tuple[float, int, str]] = []
    workers: list[Outbox] = []
    for index in range(3):

        async def send(outbound: Outbound, index: int = index) -> Delivery:
            event = outbound.payload.get("event", "single")
            sent.append(((clock() - T0).total_seconds(), index, event))
            return Delivery(DELIVERED)

        workers.append(worker(store, policy, clock, send))
    # 30 messages at once start a storm, which takes 25. While it lasts, 30 more come at 10 s and
    # at 30 s. One comes at 130 s, after the storm.
    arrivals = {0: 30, 10: 30, 30: 30, 130: 1}
    for second in range(140):
        if second in arrivals:
            queue_storm_rows(store, arrivals[second], clock(), first=second * 1000)
        # Each second another worker goes first, as the first to claim varies between daemons.
        for index in range(3):
            await workers[(second + index) % 3].send_ready()
        clock.advance(1.0)

    digests = [(at, index) for at, index, event in sent if event == "digest"]
    singles = [at for at, _index, event in sent if event == "single"]
    # One digest at 0 s by the first worker, the next one a minute later, whichever worker claims it.
    # With the digest time kept per worker, workers 1 and 2 folded their own digests at 10 s and 30 s.
    assert digests == [(0.0, 0), (60.0, 0)]
    assert singles == [130.0]
    with store.read() as connection:
        statuses = dict(
            connection.execute(
                sa.select(outbox_table.c.status, sa.func.count())
                .where(outbox_table.c.event != "digest")
                .group_by(outbox_table.c.status)
            ).all()
        )
    assert statuses == {"folded": 90, "delivered": 1}


@pytest.mark.anyio
async def test_long_send_renews_lease(store: Store, tmp_path) -> None:
    """A send lasting twice the lease time keeps its row: the other worker's reaper and claims never take it."""
    policy = load_policy(tmp_path / "rules", RULES)
    calls: list[int] = []

    async def slow(outbound: Outbound) -> Delivery:
        calls.append(outbound.payload["sequence"])
        await anyio.sleep(3.0)
        return Delivery(DELIVERED)

    sender = worker(store, policy, utc_now, slow, lease_s=1.5)
    other = worker(store, policy, utc_now, slow, lease_s=1.5)
    queue_webhook_rows(store, 1, utc_now())
    (item,) = await anyio.to_thread.run_sync(sender.claim)
    first_lease = item.lease_until
    claimed_by_other: list[object] = []

    async def compete() -> None:
        while True:
            await anyio.to_thread.run_sync(other.release_expired)
            claimed_by_other.extend(await anyio.to_thread.run_sync(other.claim))
            await anyio.sleep(0.05)

    async with anyio.create_task_group() as group:
        group.start_soon(compete)
        delivery = await sender.deliver(item)
        group.cancel_scope.cancel()

    assert delivery.outcome == DELIVERED
    assert calls == [0]
    assert claimed_by_other == []
    assert item.lease_until > first_lease
    assert row_state(store) == ("delivered", 1)


@pytest.mark.anyio
async def test_lost_lease_cancels_send_and_records_nothing(store: Store, tmp_path) -> None:
    """A worker whose lease another worker took over stops its send and leaves the new holder's row alone."""
    policy = load_policy(tmp_path / "rules", RULES)
    cancelled: list[bool] = []
    queue_webhook_rows(store, 1, utc_now())

    async def delivered(outbound: Outbound) -> Delivery:
        return Delivery(DELIVERED)

    successor = worker(store, policy, utc_now, delivered, lease_s=30.0)

    def take_over() -> Claimed:
        # The first worker stalled past its lease: the row's lease has expired and the reaper released it.
        with store.write() as connection:
            connection.execute(outbox_table.update().values(lease_until=utc_now() - datetime.timedelta(seconds=1)))
        assert successor.release_expired() == 1
        (claimed,) = successor.claim()
        return claimed

    taken_over: list[Claimed] = []

    async def stalled(outbound: Outbound) -> Delivery:
        taken_over.append(await anyio.to_thread.run_sync(take_over))
        try:
            await anyio.sleep(10.0)
        except anyio.get_cancelled_exc_class():
            cancelled.append(True)
            raise
        return Delivery(DELIVERED)

    first = worker(store, policy, utc_now, stalled, lease_s=0.6)
    (item,) = await anyio.to_thread.run_sync(first.claim)
    with anyio.fail_after(5):
        delivery = await first.deliver(item)

    assert (delivery.outcome, delivery.detail) == (RETRY, "lease lost to another worker before the send ended")
    assert cancelled == [True]
    assert row_state(store) == ("sending", 2)
    # A stale outcome from the first worker does not overwrite the successor's lease.
    first.record(item, Delivery(DELIVERED))
    assert row_state(store) == ("sending", 2)
    assert await successor.deliver(taken_over[0]) == Delivery(DELIVERED)
    assert row_state(store) == ("delivered", 2)
