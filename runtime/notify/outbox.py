"""Outbox worker: sends queued notifications with leases, retries, rate limits, circuit breakers and digests.

Every notification is an `outbox` row before anything is sent. The worker
claims a row (status `sending`, with a lease of the daemon's `--lease-time`),
sends it, and records the outcome. A send that lasts longer than a third of the
lease renews the lease. If the worker crashes between claim and outcome, the
lease expires, a reaper puts the row back into the queue, and it is sent again.
Delivery is therefore at least once, and PagerDuty's `dedup_key` turns a
repeated page into one page. Renewals and the outcome are conditional updates
on the lease the worker holds, so a worker that lost its lease never overwrites
the row of the worker that took it over.

- One message at a time per endpoint (a Slack channel, a PagerDuty routing key,
  an SMTP server), so a thread's first message goes first and one slow endpoint
  never holds up another. Within an endpoint, more severe incidents go first.
- Each endpoint has a token bucket at the rate its service allows. The bucket
  and the circuit breaker are rows of the store (`runtime.notify.limits`), so
  every daemon on one database shares them.
- 429, 5xx and network errors are retried after the service's `Retry-After`,
  or else with capped exponential backoff and jitter. Any other 4xx is not
  retried. After `max_attempts` the row is `failed`, a dead letter that
  `irules notifications list --status failed` lists and
  `irules notifications retry` sends again.
- Repeated retryable failures open the endpoint's circuit breaker. Its rows
  then wait without spending attempts, and after a pause one message is tried
  again.
- In a storm, when `DIGEST_AT` or more foldable messages wait for one chat
  endpoint, they are folded into one digest message listing the incidents, so
  people get one message instead of hundreds. While the storm lasts, the
  endpoint gets at most one digest per `DIGEST_INTERVAL_S`, from all daemons on
  the database together (the time is in `endpoint_state`). Messages that
  cannot be folded (acknowledgements, resolutions, escalation steps) still go
  out in between. Pages (PagerDuty) are never folded.
"""

from __future__ import annotations

import datetime
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx
import sqlalchemy as sa

from compiler import ir
from runtime.cluster import DEFAULT_LEASE_S
from runtime.faults import crash_point
from runtime.incidents import ENDED
from runtime.notify import limits
from runtime.notify.limits import BreakerSettings
from runtime.notify.model import DELIVERED, FAILED, RETRY, Delivery, Endpoints, Outbound
from runtime.store import Store
from runtime.store.schema import incidents, outbox, threads, timeline

log = logging.getLogger("irules.outbox")

Clock = Callable[[], datetime.datetime]

# Messages per second and burst, by channel kind. Slack allows about one message per
# second per channel, PagerDuty 120 events a minute per routing key, and legacy Teams
# connectors four requests a second.
RATES: dict[str, tuple[float, float]] = {
    "slack": (1.0, 3.0),
    "teams": (2.0, 4.0),
    "pagerduty": (2.0, 10.0),
    "sms": (1.0, 5.0),
    "email": (5.0, 10.0),
    "webhook": (10.0, 20.0),
    "apprise": (1.0, 5.0),
}
DEFAULT_RATE = (1.0, 5.0)
# Channel kinds whose waiting messages may be folded into a digest.
DIGEST_KINDS = frozenset({"slack", "teams", "email", "sms", "webhook", "apprise"})
# Events that may be folded, for messages without a `cancel_on`.
DIGEST_EVENTS = ("opened", "updated", "reminder")
# Number of foldable messages waiting for one endpoint that starts a digest.
DIGEST_AT = 25
# Maximum number of messages folded into one digest.
DIGEST_MAX = 500
# Minimum seconds between two digests to one endpoint while its storm lasts.
DIGEST_INTERVAL_S = 60.0
# Maximum number of due rows read per claim.
CLAIM_WINDOW = 2000
# A send renews its lease, and the reaper of expired leases runs, this many times per lease
# time. With three, a lease outlives two renewals that failed in a row.
RENEWALS_PER_LEASE = 3


def utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


@dataclass(slots=True)
class RetryPolicy:
    """Backoff settings for retryable failures, in seconds and attempts."""

    base_s: float = 2.0
    cap_s: float = 600.0
    max_attempts: int = 10

    def delay(self, attempts: int, retry_after_s: float | None, rng: random.Random) -> float:
        """Return the seconds to wait before the next attempt.

        A `Retry-After` from the service wins, capped at `cap_s`, plus up to 1 s of jitter.
        Otherwise the backoff doubles from `base_s` up to `cap_s`, and the wait is a
        random value between half the backoff and all of it.
        """
        if retry_after_s is not None:
            return min(max(retry_after_s, 0.0), self.cap_s) + rng.uniform(0, 1)
        ceiling = min(self.cap_s, self.base_s * 2 ** max(attempts - 1, 0))
        return rng.uniform(ceiling / 2, ceiling)


@dataclass(slots=True)
class Claimed:
    """Outbox row leased for one send attempt, with its decoded message."""

    id: int
    key: str
    incident_id: int | None
    incident_key: str | None
    receiver: str | None
    channel: str
    endpoint: str
    event: str
    attempts: int
    outbound: Outbound
    # End of the lease this worker holds. It fences renewals and the outcome, and moves with each renewal.
    lease_until: datetime.datetime
    folded: list[int] = field(default_factory=list)


Sender = Callable[..., Any]


class Outbox:
    """Worker that sends outbox rows. `run` loops until stopped, and `send_ready` sends what is due once."""

    def __init__(
        self,
        store: Store,
        settings: Callable[[], ir.Settings],
        secrets: Callable[[str], str | None],
        client: httpx.AsyncClient,
        endpoints: Endpoints | None = None,
        *,
        clock: Clock = utc_now,
        retry: RetryPolicy | None = None,
        rates: dict[str, tuple[float, float]] | None = None,
        rng: random.Random | None = None,
        sender: Sender | None = None,
        on_result: Callable[[str, str], None] | None = None,
        lease_s: float = DEFAULT_LEASE_S,
        breaker: BreakerSettings | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.secrets = secrets
        self.client = client
        self.endpoints = endpoints or Endpoints()
        self.clock = clock
        self.retry = retry or RetryPolicy()
        self.rates = {**RATES, **(rates or {})}
        self.rng = rng or random.Random()
        self._sender = sender
        self.on_result = on_result
        # Seconds a claimed row stays this worker's without a renewal (the daemon's `--lease-time`).
        self.lease_s = lease_s
        self.renew_every_s = lease_s / RENEWALS_PER_LEASE
        self.release_every_s = lease_s / RENEWALS_PER_LEASE
        self.breaker = breaker or BreakerSettings()
        self._busy: set[str] = set()
        self._wakeup = anyio.Event()
        # Decides whether this process runs a periodic job now: `(name, every_s) -> bool`.
        # Several daemons on one database set it to a cluster-wide claim, so the
        # reaper of expired leases runs on one of them per period.
        self.periodic: Callable[[str, float], bool] = lambda _name, _every_s: True

    # ------------------------------------------------------------ loop

    def wake(self) -> None:
        self._wakeup.set()

    async def run(self, stop: anyio.Event | None = None, idle_s: float = 1.0) -> None:
        """Send rows as they become due, each endpoint on its own, until `stop` is set."""
        await anyio.to_thread.run_sync(self.release_expired)
        released_at = anyio.current_time()
        async with anyio.create_task_group() as group:
            while stop is None or not stop.is_set():
                if anyio.current_time() - released_at >= self.release_every_s:
                    # Rows whose sender died, in this process or another, go back into the queue.
                    released_at = anyio.current_time()
                    await anyio.to_thread.run_sync(self._release_when_due)
                claimed = await anyio.to_thread.run_sync(self.claim)
                for item in claimed:
                    self._busy.add(item.endpoint)
                    group.start_soon(self._deliver_and_wake, item)
                if claimed:
                    continue
                with anyio.move_on_after(min(idle_s, self.release_every_s)):
                    await self._wakeup.wait()
                self._wakeup = anyio.Event()
            # Wait up to the send timeout (plus 1 s) for messages in flight, so that their
            # outcome is recorded and they are not sent again after a restart.
            with anyio.move_on_after(self.endpoints.timeout_s + 1):
                while self._busy:
                    await anyio.sleep(0.02)
            group.cancel_scope.cancel()

    async def _deliver_and_wake(self, item: Claimed) -> None:
        try:
            await self.deliver(item)
        finally:
            self._busy.discard(item.endpoint)
            self.wake()

    async def send_ready(self) -> int:
        """Claim and send rows until none can go now, and return the number of send attempts.

        Tests with a fake clock use this instead of `run`.
        """
        done = 0
        while True:
            claimed = await anyio.to_thread.run_sync(self.claim)
            if not claimed:
                return done
            async with anyio.create_task_group() as group:
                for item in claimed:
                    self._busy.add(item.endpoint)
                    group.start_soon(self._deliver_and_wake, item)
            done += len(claimed)

    # ------------------------------------------------------------ claiming

    def release_expired(self) -> int:
        """Set `sending` rows whose lease has expired back to `pending`, so they are sent again, and return how many."""
        now = self.clock()
        with self.store.write() as connection:
            return connection.execute(
                outbox.update()
                .where(outbox.c.status == "sending", outbox.c.lease_until < now)
                .values(status="pending", lease_until=None, next_attempt_at=now)
            ).rowcount

    def _release_when_due(self) -> int:
        """Run `release_expired` when this process holds the reaper's turn, and return how many rows it released."""
        if not self.periodic("outbox.release_expired", self.release_every_s):
            return 0
        return self.release_expired()

    def claim(self) -> list[Claimed]:
        """Lease the next due row, or a digest, of every idle endpoint whose rate limit and breaker allow a message now."""
        now = self.clock()
        with self.store.write() as connection:
            rows = (
                connection.execute(
                    sa.select(*_WINDOW_COLUMNS)
                    .where(outbox.c.status == "pending", outbox.c.next_attempt_at <= now)
                    .order_by(outbox.c.priority.desc(), outbox.c.id)
                    .limit(CLAIM_WINDOW)
                )
                .mappings()
                .all()
            )
            waiting: dict[str, list[Any]] = {}
            for row in rows:
                waiting.setdefault(row["endpoint"], []).append(row)
            sending = _endpoints_sending(connection, now) if waiting else set()
            claimed: list[Claimed] = []
            # In name order, so that daemons claiming at once lock `endpoint_state` rows in one order and do not deadlock on them.
            for endpoint in sorted(waiting):
                if endpoint in self._busy or endpoint in sending:
                    continue
                item = self._claim_first(connection, endpoint, waiting[endpoint], now)
                if item is not None:
                    claimed.append(item)
            return claimed

    def _claim_first(self, connection: sa.Connection, endpoint: str, queue: list[Any], now: datetime.datetime) -> Claimed | None:
        """Lease the first row of `queue` that may go now, or fold the queue into a digest during a storm."""
        kind = queue[0]["channel"]
        rate, burst = self.rates.get(kind, DEFAULT_RATE)
        foldable = [row for row in queue if _foldable(row)] if kind in DIGEST_KINDS else []
        # The digest time is shared by every daemon on the database. This read takes no lock; the
        # time that `take_token` returns below was read under the endpoint's row lock, and decides.
        last = limits.last_digest(connection, endpoint) if foldable else None
        holding, storming = _digest_state(last, len(foldable), now)
        if last is not None and not holding and len(foldable) < 2:
            # The storm is over, so the endpoint gets one message per incident again.
            limits.end_storm(connection, endpoint, last)
            last = None
            holding, storming = _digest_state(last, len(foldable), now)
        grant: limits.Grant | None = None
        for row in queue:
            if holding and _foldable(row):
                continue
            if grant is None:
                # The token comes before `_still_wanted` locks the row's incident, because a record locks the
                # endpoint's state before the incident too. One lock order keeps the two from deadlocking.
                grant = limits.take_token(connection, endpoint, rate, burst, now, breaker=self.breaker, trial_hold_s=self.lease_s)
                if grant is None:
                    return None
                if foldable and grant.last_digest_at != last:
                    # Another daemon folded a digest, or ended the storm, since the read above.
                    last = grant.last_digest_at
                    holding, storming = _digest_state(last, len(foldable), now)
                    if holding and _foldable(row):
                        continue
            if not self._still_wanted(connection, row, now):
                continue
            if storming and _foldable(row):
                limits.note_digest(connection, endpoint, now)
                claimed = self._fold(connection, foldable[:DIGEST_MAX], now)
            else:
                claimed = self._lease(connection, row, now)
            if claimed is None:
                # Another worker leased or folded the rows first, so nothing was sent.
                limits.refund_token(connection, grant, burst, now)
            return claimed
        if grant is not None:
            # Every row was cancelled, so nothing was sent.
            limits.refund_token(connection, grant, burst, now)
        return None

    def _still_wanted(self, connection: sa.Connection, row: Any, now: datetime.datetime) -> bool:
        """Cancel the row if its `cancel_on` event has happened, and return whether it should still be sent.

        An ended incident cancels every row with a `cancel_on`. An acknowledged one
        cancels the rows whose `cancel_on` is `acknowledged`.
        """
        if row["cancel_on"] is None or row["incident_id"] is None:
            return True
        # Skip the row while another transaction holds its incident (an acknowledgement, say):
        # that one may be waiting for a row this claim has leased, so waiting here could deadlock.
        incident = connection.execute(
            sa.select(incidents.c.status, incidents.c.acknowledged_at)
            .where(incidents.c.id == row["incident_id"])
            .with_for_update(skip_locked=True)
        ).first()
        if incident is None:
            return False
        ended = incident.status in ENDED
        acknowledged = incident.acknowledged_at is not None
        if ended or (row["cancel_on"] == "acknowledged" and acknowledged):
            reason = f"incident {'resolved' if ended else 'acknowledged'} before sending"
            connection.execute(
                outbox.update()
                .where(outbox.c.id == row["id"], outbox.c.status == "pending")
                .values(status="cancelled", last_error=reason)
            )
            return False
        return True

    def _lease(self, connection: sa.Connection, row: Any, now: datetime.datetime) -> Claimed | None:
        """Lease one row and return it with its Slack thread, or None when another worker leased it first."""
        lease_until = self._lease_end(now)
        leased = connection.execute(
            outbox.update()
            .where(outbox.c.id == row["id"], outbox.c.status == "pending")
            .values(status="sending", attempts=row["attempts"] + 1, lease_until=lease_until)
        ).rowcount
        if not leased:
            return None
        outbound = Outbound.from_json(_message(connection, row["id"]))
        if row["incident_id"] is not None and outbound.kind == "slack":
            reference = connection.execute(
                sa.select(threads.c.reference).where(
                    threads.c.incident_id == row["incident_id"], threads.c.endpoint == row["endpoint"]
                )
            ).scalar()
            if reference:
                outbound = Outbound(
                    kind=outbound.kind, payload=outbound.payload, target=outbound.target, url=outbound.url,
                    secrets=outbound.secrets, thread=dict(reference),
                )  # fmt: skip
        return Claimed(
            id=row["id"],
            key=row["key"],
            incident_id=row["incident_id"],
            incident_key=self._incident_key(connection, row["incident_id"]),
            receiver=row["receiver"],
            channel=row["channel"],
            endpoint=row["endpoint"],
            event=row["event"],
            attempts=row["attempts"] + 1,
            outbound=outbound,
            lease_until=lease_until,
            folded=list((row["reference"] or {}).get("folded", [])),
        )

    @staticmethod
    def _incident_key(connection: sa.Connection, incident_id: int | None) -> str | None:
        if incident_id is None:
            return None
        return connection.execute(sa.select(incidents.c.key).where(incidents.c.id == incident_id)).scalar()

    def _fold(self, connection: sa.Connection, rows: list[Any], now: datetime.datetime) -> Claimed | None:
        """Replace waiting messages of one endpoint with one leased digest row and return it.

        Returns None when another worker has locked or folded all of them first.
        """
        # Lock the rows before folding them, so two daemons never fold the same rows.
        locked = set(
            connection.execute(
                sa.select(outbox.c.id)
                .where(outbox.c.id.in_([row["id"] for row in rows]), outbox.c.status == "pending")
                .with_for_update(skip_locked=True)
            ).scalars()
        )
        rows = [row for row in rows if row["id"] in locked]
        if not rows:
            return None
        ids = [row["id"] for row in rows]
        summary = connection.execute(
            sa.select(incidents.c.id, incidents.c.key, incidents.c.title, incidents.c.severity, incidents.c.status).where(
                incidents.c.id.in_([row["incident_id"] for row in rows if row["incident_id"] is not None])
            )
        ).all()
        listed = {item.id: item for item in summary}
        entries = []
        for row in rows:
            item = listed.get(row["incident_id"])
            if item is not None and all(entry["id"] != item.key for entry in entries):
                entries.append(
                    {"id": item.key, "title": item.title, "severity": item.severity, "status": item.status, "event": row["event"]}
                )

        first = Outbound.from_json(_message(connection, rows[0]["id"]))
        outbound = digest_message(first, entries, len(rows), self.settings().locale)
        lease_until = self._lease_end(now)
        digest_id = connection.execute(
            outbox.insert().values(
                key=f"digest:{rows[0]['endpoint']}:{ids[0]}"[:300],
                incident_id=None,
                receiver=rows[0]["receiver"],
                channel=rows[0]["channel"],
                endpoint=rows[0]["endpoint"],
                event="digest",
                priority=max(row["priority"] for row in rows),
                message=outbound.to_json(),
                cancel_on=None,
                status="sending",
                attempts=1,
                created_at=now,
                next_attempt_at=now,
                lease_until=lease_until,
                reference={"folded": ids},
            )
        ).inserted_primary_key[0]

        connection.execute(
            outbox.update()
            .where(outbox.c.id.in_(ids), outbox.c.status == "pending")
            .values(status="folded", reference={"digest": digest_id}, sent_at=None)
        )
        log.warning(
            "%s: %d messages waiting; sending one digest of %d incidents instead", rows[0]["endpoint"], len(rows), len(entries)
        )
        return Claimed(
            id=digest_id,
            key=f"digest:{ids[0]}",
            incident_id=None,
            incident_key=None,
            receiver=rows[0]["receiver"],
            channel=rows[0]["channel"],
            endpoint=rows[0]["endpoint"],
            event="digest",
            attempts=1,
            outbound=outbound,
            lease_until=lease_until,
            folded=ids,
        )

    def _lease_end(self, now: datetime.datetime) -> datetime.datetime:
        return now + datetime.timedelta(seconds=self.lease_s)

    # ------------------------------------------------------------ sending

    async def deliver(self, item: Claimed) -> Delivery:
        """Send one claimed row while renewing its lease, record the outcome and return it.

        When another worker took the lease over, the send is cancelled, nothing is
        recorded, and the returned delivery is a retry whose detail names the lost lease.
        """
        crash_point("outbox.after_lease")
        sent: list[Delivery] = []
        async with anyio.create_task_group() as group:
            group.start_soon(self._keep_lease, item, group.cancel_scope)
            try:
                sent.append(await self._send(item.outbound))
            except Exception as error:  # A bug in a sender must not stop the worker or lose the row.
                log.exception("outbox row %d (%s): the %s sender failed", item.id, item.endpoint, item.channel)
                sent.append(Delivery(RETRY, f"sender error: {type(error).__name__}"))
            group.cancel_scope.cancel()
        if not sent:
            return Delivery(RETRY, "lease lost to another worker before the send ended")
        crash_point("outbox.after_send")
        await anyio.to_thread.run_sync(self.record, item, sent[0])
        crash_point("outbox.after_record")
        return sent[0]

    async def _keep_lease(self, item: Claimed, send_scope: anyio.CancelScope) -> None:
        """Renew the lease of `item` every third of the lease time, and cancel `send_scope` once it is lost."""
        while True:
            await anyio.sleep(self.renew_every_s)
            try:
                renewed = await anyio.to_thread.run_sync(self.renew_lease, item)
            except sa.exc.DBAPIError:
                # The lease outlives two failed renewals, so the next one may still keep it.
                log.warning(
                    "outbox row %d: renewing its lease failed; trying again in %.1f s", item.id, self.renew_every_s, exc_info=True
                )
                continue
            if not renewed:
                log.warning("outbox row %d (%s): lease lost to another worker; cancelling this send", item.id, item.endpoint)
                send_scope.cancel()
                return

    def renew_lease(self, item: Claimed) -> bool:
        """Extend the lease that `item` holds to a full lease time from now, and return False when it was lost.

        The update matches only the lease this worker holds (its end time and attempt
        number), so a row that the reaper released or another worker leased stays theirs.
        """
        lease_until = self._lease_end(self.clock())
        with self.store.write() as connection:
            renewed = connection.execute(outbox.update().where(*_held_by(item)).values(lease_until=lease_until)).rowcount
        if renewed:
            # Set here rather than in the caller, so the value matches the store even when the caller is cancelled.
            item.lease_until = lease_until
        return bool(renewed)

    async def _send(self, outbound: Outbound) -> Delivery:
        if self._sender is not None:
            return await self._sender(outbound)
        from runtime.notify.channels import send

        return await send(outbound, secrets=self.secrets, client=self.client, endpoints=self.endpoints, settings=self.settings())

    def record(self, item: Claimed, delivery: Delivery) -> None:
        """Store the outcome of one attempt, unless this worker's lease on the row was lost.

        Depending on the outcome, this also sets the next attempt time, stores the
        incident's Slack thread, adds a timeline entry and counts the attempt in the
        endpoint's circuit breaker.
        """
        now = self.clock()
        outcome = delivery.outcome
        if outcome == RETRY and item.attempts >= self.retry.max_attempts:
            outcome = FAILED
        values = self._outcome_values(item, outcome, delivery, now)
        with self.store.write() as connection:
            # The breaker counts every attempt that reached the endpoint, also one whose lease was lost.
            # Its row is updated before the outbox row, the order in which claims lock the two.
            opened = limits.record_outcome(connection, item.endpoint, delivery.outcome == RETRY, now, self.breaker)
            updated = connection.execute(outbox.update().where(*_held_by(item)).values(**values)).rowcount
            if updated:
                self._store_thread_and_timeline(connection, item, outcome, delivery, now)

        if opened is not None:
            log.error(
                "%s: %d failures in a row; pausing it until %s (circuit breaker open)",
                item.endpoint,
                opened.failures,
                opened.open_until.isoformat(timespec="seconds"),
            )
        if not updated:
            log.warning("outbox row %d: lease lost before the outcome was recorded; it may be sent again", item.id)
            return
        level = logging.INFO if outcome == DELIVERED else logging.WARNING
        log.log(
            level,
            "incident %s: %s %s to %s (%s) %s after %d %s%s",
            item.incident_key or "-",
            item.event,
            item.channel,
            item.receiver or "-",
            item.endpoint,
            outcome if outcome != RETRY else "will be retried",
            item.attempts,
            "attempt" if item.attempts == 1 else "attempts",
            f": {delivery.detail}" if delivery.detail else "",
        )
        if self.on_result is not None:
            self.on_result(item.channel, outcome)

    def _outcome_values(self, item: Claimed, outcome: str, delivery: Delivery, now: datetime.datetime) -> dict[str, Any]:
        """Return the outbox row's new values for `outcome`: its status, and the next attempt time of a retry."""
        values: dict[str, Any] = {
            "last_status": delivery.status,
            "last_error": delivery.detail[:2000] or None,
            "lease_until": None,
        }
        if outcome == DELIVERED:
            reference = {"folded": item.folded, **delivery.reference} if item.folded else dict(delivery.reference)
            values.update(status="delivered", sent_at=now, reference=reference)
        elif outcome == RETRY:
            delay = self.retry.delay(item.attempts, delivery.retry_after_s, self.rng)
            values.update(status="pending", next_attempt_at=now + datetime.timedelta(seconds=delay))
        else:
            values.update(status="failed")
        return values

    def _store_thread_and_timeline(
        self, connection: sa.Connection, item: Claimed, outcome: str, delivery: Delivery, now: datetime.datetime
    ) -> None:
        """Store the incident's Slack thread after its first delivered message, and note a final outcome on its timeline."""
        if outcome == DELIVERED and item.incident_id is not None and item.channel == "slack" and delivery.reference.get("ts"):
            exists = connection.execute(
                sa.select(threads.c.incident_id).where(
                    threads.c.incident_id == item.incident_id, threads.c.endpoint == item.endpoint
                )
            ).first()
            if exists is None:
                connection.execute(
                    threads.insert().values(
                        incident_id=item.incident_id, endpoint=item.endpoint, reference=dict(delivery.reference)
                    )
                )
        if item.incident_id is not None and outcome in (DELIVERED, FAILED):
            connection.execute(timeline.insert().values(**self._timeline_entry(item, outcome, delivery, now)))

    @staticmethod
    def _timeline_entry(item: Claimed, outcome: str, delivery: Delivery, now: datetime.datetime) -> dict[str, Any]:
        verb = "Sent" if outcome == DELIVERED else "Could not send"
        message = f"{verb} {item.event} message to {item.receiver or '-'} via {item.channel}"
        if outcome != DELIVERED and delivery.detail:
            message += f": {delivery.detail[:300]}"
        return {
            "incident_id": item.incident_id,
            "at": now,
            "kind": "notification.sent" if outcome == DELIVERED else "notification.failed",
            "actor": "irules",
            "message": message,
            "data": {
                "outbox": item.id,
                "channel": item.channel,
                "endpoint": item.endpoint,
                "attempts": item.attempts,
                "status": delivery.status,
            },
        }


def _held_by(item: Claimed) -> tuple[sa.ColumnElement[bool], ...]:
    """Return the conditions that match the outbox row of `item` only while this worker's lease on it lasts."""
    return (
        outbox.c.id == item.id,
        outbox.c.status == "sending",
        outbox.c.attempts == item.attempts,
        outbox.c.lease_until == item.lease_until,
    )


# ---------------------------------------------------------------- digests


def _endpoints_sending(connection: sa.Connection, now: datetime.datetime) -> set[str]:
    """Return the endpoints with a message being sent under an unexpired lease, by any process.

    Each endpoint gets one message at a time across all daemons on the database, so a
    Slack thread's first message still goes first.
    """
    return set(
        connection.execute(
            sa.select(outbox.c.endpoint).where(outbox.c.status == "sending", outbox.c.lease_until > now).distinct()
        ).scalars()
    )


def _digest_state(last: datetime.datetime | None, foldable: int, now: datetime.datetime) -> tuple[bool, bool]:
    """Return whether foldable messages wait for the next digest (`holding`), and whether a digest goes now (`storming`).

    `last` is the endpoint's last digest time, or None outside a storm, and `foldable`
    the number of foldable messages waiting.
    """
    holding = last is not None and (now - last).total_seconds() < DIGEST_INTERVAL_S
    storming = foldable >= (2 if last is not None else DIGEST_AT)
    return holding, storming


# A claim reads up to `CLAIM_WINDOW` due rows but sends one per endpoint, so it leaves out
# their rendered messages. During a backlog of 5,000 due rows, reading and decoding the
# messages took about 130 of a claim's 248 ms (measured), under the write lock.
_WINDOW_COLUMNS = tuple(column for column in outbox.c if column.name != "message")


def _message(connection: sa.Connection, row_id: int) -> Any:
    """Return the rendered message of one outbox row."""
    return connection.execute(sa.select(outbox.c.message).where(outbox.c.id == row_id)).scalar_one()


def _foldable(row: Any) -> bool:
    # Reminders carry `cancel_on` only so that an acknowledgement stops them; a digest may still take them.
    return row["event"] in DIGEST_EVENTS and (row["cancel_on"] is None or row["event"] == "reminder")


_DIGEST_TEXTS = {
    "en": {
        "title": "{count} incident notifications were combined into this message",
        "line": "{id} [{severity}] {title}",
        "more": "and {count} more",
    },
    "de": {
        "title": "{count} Benachrichtigungen zu Vorfällen wurden in dieser Nachricht zusammengefasst",
        "line": "{id} [{severity}] {title}",
        "more": "und {count} weitere",
    },
}
_DIGEST_LINES = 30


def digest_message(first: Outbound, entries: list[dict[str, Any]], count: int, locale: str) -> Outbound:
    """Build one digest message listing `entries`, for the channel and target of `first`."""
    texts = _DIGEST_TEXTS.get(locale.split("-")[0], _DIGEST_TEXTS["en"])
    title = texts["title"].format(count=count)
    lines = [
        texts["line"].format(id=entry["id"], severity=(entry["severity"] or "-").upper(), title=entry["title"][:120])
        for entry in entries[:_DIGEST_LINES]
    ]
    if len(entries) > _DIGEST_LINES:
        lines.append(texts["more"].format(count=len(entries) - _DIGEST_LINES))
    text = "\n".join(lines)
    payload: dict[str, Any]
    match first.kind:
        case "slack":
            escaped = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            payload = {
                "text": title,
                "blocks": [
                    {"type": "header", "text": {"type": "plain_text", "text": title[:150]}},
                    {"type": "section", "text": {"type": "mrkdwn", "text": escaped[:3000]}},
                ],
            }
        case "teams":
            payload = {
                "type": "message",
                "attachments": [
                    {
                        "contentType": "application/vnd.microsoft.card.adaptive",
                        "contentUrl": None,
                        "content": {
                            "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                            "type": "AdaptiveCard",
                            "version": "1.4",
                            "body": [
                                {"type": "TextBlock", "text": title, "weight": "Bolder", "wrap": True},
                                {"type": "TextBlock", "text": text[:20000], "wrap": True},
                            ],
                        },
                    }
                ],
            }
        case "email":
            payload = {"subject": title, "text": text}
        case "sms":
            payload = {"Body": (title + "\n" + text)[:700]}
        case _:
            payload = {"version": "1", "event": "digest", "count": count, "incidents": entries}
    return Outbound(kind=first.kind, payload=payload, target=first.target, url=first.url, secrets=first.secrets)
