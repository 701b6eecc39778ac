"""What the daemon does while its database is unreachable.

The policy, in the order a payload meets it:

- `DatabaseHealth` probes the database with `SELECT 1` (at most once per
  `CHECK_EVERY_S`, bounded by `PROBE_TIMEOUT_S`) for `/readyz`, and takes note
  of failures that the writer and the pipeline see. It logs the start and the
  end of each outage once.
- The writer appends payloads to the local spool (`runtime.spool`) while the
  database is unreachable or the spool still has payloads, so that replay keeps
  arrival order. The sender gets 202 with `"spooled": true`, or 503 when the
  spool is full.
- `DegradedPager` routes each firing alert of a spooled payload with the
  policy in memory and sends a short "degraded" message to the channels of its
  receivers, at most once per alert fingerprint and receiver per outage in
  this process. There is no outbox row, so nothing retries a failed send, and
  the normal notification follows once the spool drains: that duplicate is
  accepted.
- `SpoolDrainer` stores the spooled payloads, oldest first, once the database
  responds again, and wakes the pipeline.

A daemon on PostgreSQL that cannot reach its database at start follows the same
policy from its first request. Its outage ends when the store is open (schema
migrated, node registered), not when `SELECT 1` first succeeds.

Runbook steps need no rule here: the executor writes a step's state and waits
for the write before it acts, so no step runs while the write fails.

A server that responds with an error about one transaction is reachable. A
deadlock or a serialization failure (`is_transient`) is retried where it
happened; a statement timeout or a constraint violation fails that one
operation. Neither starts an outage, so neither spools webhooks nor sends
degraded pages.
"""

from __future__ import annotations

import datetime
import html
import logging
import sqlite3
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import anyio
import sqlalchemy as sa

from compiler import ir
from runtime.alerts import FIRING, Alert
from runtime.pipeline import Accepted
from runtime.policy import Policy
from runtime.spool import Spool, store_entry
from runtime.store import Store

log = logging.getLogger("irules.outage")

CHECK_EVERY_S = 1.0
PROBE_TIMEOUT_S = 2.0
DRAIN_IDLE_S = 1.0
# Firing alerts waiting for a degraded page; beyond this, alerts get no degraded page and are counted.
PAGE_QUEUE_LIMIT = 10_000
_MAX_LABEL_TEXT = 500
_MAX_REASON = 300


# SQLSTATEs of a PostgreSQL server that is there but takes no work: shutting down, starting, too many clients.
_UNAVAILABLE_STATES = frozenset({"57P01", "57P02", "57P03", "53300"})
# SQLSTATEs of a transaction that the server aborted to resolve a conflict with another one.
_TRANSIENT_STATES = frozenset({"40001", "40P01"})


def is_unreachable(error: BaseException) -> bool:
    """Return whether `error` means that the database cannot be reached, as opposed to a rejected statement."""
    if isinstance(error, sa.exc.DBAPIError) and error.connection_invalidated:
        return True
    # The SQLite ingest path uses the driver directly, so its errors arrive unwrapped.
    unreachable = (
        sa.exc.OperationalError,
        sa.exc.InterfaceError,
        sa.exc.DisconnectionError,
        sa.exc.TimeoutError,
        sqlite3.OperationalError,
    )
    if not isinstance(error, unreachable):
        return False
    # A PostgreSQL error with a SQLSTATE came from the server, which responded: a deadlock or a statement
    # timeout is an OperationalError too. Connection failures carry no SQLSTATE, or one of class 08.
    state = _sqlstate(error)
    return state is None or state.startswith("08") or state in _UNAVAILABLE_STATES


def is_transient(error: BaseException) -> bool:
    """Return whether the server aborted the transaction for a deadlock or a serialization failure, so that a retry may pass."""
    return _sqlstate(error) in _TRANSIENT_STATES


def _sqlstate(error: BaseException) -> str | None:
    driver_error = getattr(error, "orig", None) or error
    state = getattr(driver_error, "sqlstate", None)
    return state if isinstance(state, str) else None


def describe(error: BaseException) -> str:
    """Return the first line of a driver error, which names the server but no password."""
    cause = getattr(error, "orig", None) or error
    lines = str(cause).strip().splitlines() or [type(cause).__name__]
    return lines[0][:_MAX_REASON]


class DatabaseHealth:
    """Health of the store's database, probed at most once per `check_every_s`, with each outage logged once."""

    def __init__(
        self,
        store: Store,
        *,
        check_every_s: float = CHECK_EVERY_S,
        timeout_s: float = PROBE_TIMEOUT_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.check_every_s = check_every_s
        self.timeout_s = timeout_s
        self._clock = clock
        # Why the database is unreachable, or None while it responds.
        self.problem: str | None = None
        self._started_at = 0.0
        self._checked_at = -float("inf")
        self._probing = False
        self._lock = anyio.Lock()
        self.on_recovery: list[Callable[[], None]] = []
        # False while a daemon that started without its database has not opened the store yet.
        # Until then `check` does not probe: a server that returns a row for `SELECT 1` may still lack
        # the schema, so only `store_opened` ends that outage.
        self.store_open = True

    async def check(self) -> str | None:
        """Return why the database is unreachable, or None; a probe younger than `check_every_s` is reused."""
        if not self.store_open:
            return self.problem
        async with self._lock:
            if self._clock() - self._checked_at >= self.check_every_s:
                self._set(await self._probe())
                self._checked_at = self._clock()
            return self.problem

    async def _probe(self) -> str | None:
        if self._probing:
            # The last probe's thread still waits on the network; starting another would pile up threads.
            return f"the database did not answer within {self.timeout_s:g} s"
        self._probing = True
        with anyio.move_on_after(self.timeout_s):
            try:
                await anyio.to_thread.run_sync(self._select_one, abandon_on_cancel=True)
            except Exception as error:
                return describe(error)
            return None
        return f"the database did not answer within {self.timeout_s:g} s"

    def _select_one(self) -> None:
        try:
            with self.store.engine.connect() as connection:
                connection.execute(sa.text("SELECT 1"))
        finally:
            self._probing = False

    def report_failure(self, error: BaseException) -> None:
        """Take note that a statement failed because the database is unreachable."""
        self._set(describe(error))
        self._checked_at = self._clock()

    def wait_for_store(self, error: BaseException) -> None:
        """Start an outage that only `store_opened` ends, because the store could not be opened at start."""
        self.store_open = False
        self.report_failure(error)

    def store_opened(self) -> None:
        """End the outage that began at start, now that the store is open and migrated, and probe from now on."""
        self.store_open = True
        self._set(None)
        self._checked_at = self._clock()

    def _set(self, problem: str | None) -> None:
        if problem is not None and self.problem is None:
            self._started_at = self._clock()
            log.error("database unreachable; payloads go to the spool and pages go out degraded: %s", problem)
        elif problem is None and self.problem is not None:
            log.warning("database reachable again after %.1f s of outage", self._clock() - self._started_at)
            for callback in self.on_recovery:
                callback()
        self.problem = problem


class SpoolDrainer:
    """Stores spooled payloads, oldest first, whenever the database responds."""

    def __init__(self, spool: Spool, store: Store, health: DatabaseHealth, on_stored: Callable[[], None]) -> None:
        self.spool = spool
        self.store = store
        self.health = health
        self._on_stored = on_stored
        self._wakeup = anyio.Event()
        self.drained = 0

    def wake(self) -> None:
        self._wakeup.set()

    async def run(self, stop: anyio.Event | None = None) -> None:
        """Drain, then wait for `DRAIN_IDLE_S` or a wakeup; the spool left by a killed process drains first."""
        while stop is None or not stop.is_set():
            if self.spool.pending or self.health.problem is not None:
                if await self.health.check() is None:
                    await self.drain()
            with anyio.move_on_after(DRAIN_IDLE_S):
                await self._wakeup.wait()
            self._wakeup = anyio.Event()

    async def drain(self) -> int:
        """Store every spooled payload that is complete on disk and return how many were stored."""
        stored = 0
        while True:
            entry = await anyio.to_thread.run_sync(self.spool.next_entry)
            if entry is None:
                break
            try:
                payload_id, new = await anyio.to_thread.run_sync(store_entry, self.store, entry)
            except Exception as error:
                if not is_unreachable(error):
                    raise
                self.health.report_failure(error)
                break
            await anyio.to_thread.run_sync(self.spool.remove, entry)
            if new:
                log.info("spooled payload %s stored as payload %d", entry.spool_id, payload_id)
            else:
                log.info("spooled payload %s was already stored as payload %d; its file is removed", entry.spool_id, payload_id)
            stored += 1
            self._on_stored()
        self.drained += stored
        if stored:
            log.warning("spool drained: %d payload(s) stored, %d left", stored, self.spool.pending)
        return stored


class DegradedPager:
    """Sends one short page per firing alert and receiver while the database is unreachable."""

    def __init__(
        self,
        policy: Callable[[], Policy],
        send: Callable[..., Any],
        *,
        clock: Callable[[], datetime.datetime] = lambda: datetime.datetime.now(datetime.UTC),
    ) -> None:
        self._policy = policy
        self._send = send
        self._clock = clock
        self._queue: deque[Alert] = deque()
        self._wakeup = anyio.Event()
        # (fingerprint, receiver) pairs paged in this outage; cleared when it ends.
        self._paged: set[tuple[str, str]] = set()
        self.dropped = 0

    def enqueue(self, item: Accepted) -> None:
        """Queue the firing alerts of a spooled payload for a degraded page."""
        for alert in item.outcome.alerts:
            if alert.status != FIRING:
                continue
            if len(self._queue) >= PAGE_QUEUE_LIMIT:
                self.dropped += 1
                if self.dropped == 1 or self.dropped % 1000 == 0:
                    log.error("degraded page queue is full; %d alerts got no degraded page", self.dropped)
                continue
            self._queue.append(alert)
        self._wakeup.set()

    def reset(self) -> None:
        """Forget what was paged, because the outage ended."""
        self._paged.clear()

    async def run(self, stop: anyio.Event | None = None) -> None:
        while stop is None or not stop.is_set():
            while self._queue:
                await self.page(self._queue.popleft())
            with anyio.move_on_after(DRAIN_IDLE_S):
                await self._wakeup.wait()
            self._wakeup = anyio.Event()

    async def page(self, alert: Alert) -> int:
        """Send the degraded page of `alert` to each receiver its route names and return how many messages went out."""
        policy = self._policy()
        ruleset = policy.ruleset
        assessment = policy.assess(alert)
        receivers = {receiver.name: receiver for receiver in ruleset.receivers}
        now = self._clock()
        sent = 0
        for name in assessment.receivers:
            key = (alert.fingerprint, name)
            receiver = receivers.get(name)
            if key in self._paged or receiver is None:
                continue
            route_id = assessment.timings.get(name, policy.timings_of(name))[3]
            if policy.silence(route_id, now) is not None:
                continue
            # Marked before sending: a page that failed is not sent again in this outage.
            self._paged.add(key)
            for channel in receiver.channels:
                sent += await self._send_one(channel, name, alert, assessment.severity, ruleset)
        return sent

    async def _send_one(self, channel: ir.Channel, receiver: str, alert: Alert, severity: str | None, ruleset: ir.Ruleset) -> int:
        outbound = degraded_message(channel, receiver, alert, severity, ruleset)
        delivery = await self._send(outbound, ruleset.settings)
        if delivery.outcome == "delivered":
            log.info("degraded page sent: receiver %s channel %s fingerprint %s", receiver, channel.kind, alert.fingerprint)
            return 1
        log.error(
            "degraded page to receiver %s channel %s failed and is not retried: %s", receiver, channel.kind, delivery.detail
        )
        return 0


# ---------------------------------------------------------------- the message

_TEXTS = {
    "en": {
        "title": "[degraded] {name} is firing ({severity})",
        "text": (
            "irules cannot reach its database, so this page was sent without an incident. "
            "Alert {name} from {source} is firing with labels: {labels}. "
            "The incident follows once the database is back, and this alert may be paged again then."
        ),
        "unclassified": "unclassified",
    },
    "de": {
        "title": "[eingeschränkt] {name} feuert ({severity})",
        "text": (
            "irules erreicht seine Datenbank nicht, deshalb kommt diese Meldung ohne Incident. "
            "Alert {name} von {source} feuert mit den Labels: {labels}. "
            "Der Incident folgt, sobald die Datenbank wieder erreichbar ist, und dieser Alert kann dann erneut gemeldet werden."
        ),
        "unclassified": "nicht eingestuft",
    },
}
_PAGERDUTY_SEVERITIES = {"critical": "critical", "high": "error", "medium": "warning", "low": "info"}


def degraded_texts(alert: Alert, severity: str | None, locale: str | None) -> tuple[str, str]:
    """Return the title and text of a degraded page in `locale`'s language, else English."""
    texts = _TEXTS.get((locale or "en").split("-")[0].lower(), _TEXTS["en"])
    labels = ", ".join(f"{key}={value}" for key, value in sorted(alert.labels.items()))
    if len(labels) > _MAX_LABEL_TEXT:
        labels = labels[:_MAX_LABEL_TEXT] + "…"
    values = {"name": alert.name, "source": alert.source, "severity": severity or texts["unclassified"], "labels": labels}
    return texts["title"].format(**values), texts["text"].format(**values)


def degraded_message(channel: ir.Channel, receiver: str, alert: Alert, severity: str | None, ruleset: ir.Ruleset) -> Any:
    """Return the `Outbound` of a degraded page for one channel; alert data is escaped for the channel's markup."""
    from runtime.notify.messages import SMS_SECRETS, cut_utf16
    from runtime.notify.model import Outbound
    from runtime.notify.render import mrkdwn_escape

    title, text = degraded_texts(alert, severity, ruleset.settings.locale)
    url, url_secrets = _endpoint(channel.url or channel.target, "url")
    target, target_secrets = _endpoint(channel.target, "target")
    kind = channel.kind
    if kind == "slack":
        if ruleset.slack is not None and ruleset.slack.token is not None:
            slack_url, slack_secrets = None, {"token": ruleset.slack.token.secret}
        else:
            slack_url, slack_secrets = _endpoint(channel.url or ruleset.settings.slack_api_url, "url")
        payload = {"text": mrkdwn_escape(f"{title}\n{text}")}
        return Outbound("slack", payload=payload, target=target, url=slack_url, secrets={**slack_secrets, **target_secrets})
    if kind == "pagerduty":
        event = {
            "event_action": "trigger",
            "dedup_key": f"irules-degraded-{alert.fingerprint}",
            "payload": {
                "summary": title[:1024],
                "source": "irules",
                "severity": _PAGERDUTY_SEVERITIES.get(severity or "", "info"),
            },
            "client": "irules",
        }
        return Outbound("pagerduty", payload=event, secrets={"key": channel.key.secret} if channel.key else {})
    if kind == "sms":
        return Outbound(
            "sms", payload={"Body": cut_utf16(f"{title}\n{text}", 1600)}, target=target, secrets={**SMS_SECRETS, **target_secrets}
        )
    if kind == "email":
        body = f"<!DOCTYPE html>\n<html><body><p>{html.escape(text)}</p></body></html>\n"
        payload = {"subject": title[:250], "text": text + "\n", "html": body}
        secrets = dict(target_secrets)
        smtp = ruleset.settings.smtp
        if smtp is not None and smtp.password is not None:
            secrets["password"] = smtp.password.secret
        return Outbound("email", payload=payload, target=target, secrets=secrets)
    if kind == "teams":
        card = {
            "type": "AdaptiveCard",
            "version": "1.4",
            "body": [
                {"type": "TextBlock", "text": title, "weight": "bolder", "wrap": True},
                {"type": "TextBlock", "text": text, "wrap": True},
            ],
        }
        envelope = {
            "type": "message",
            "attachments": [{"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None, "content": card}],
        }
        return Outbound("teams", payload=envelope, url=url, secrets=url_secrets)
    if kind == "apprise":
        return Outbound("apprise", payload={"title": title, "text": text}, url=url, secrets=url_secrets)
    document = {
        "version": "1",
        "event": "degraded",
        "receiver": receiver,
        "title": title,
        "text": text,
        "alert": alert.to_json(),
        "severity": severity,
    }
    return Outbound(kind, payload=document, url=url, secrets=url_secrets)


def _endpoint(value: str | ir.SecretRef | None, role: str) -> tuple[str | None, dict[str, str]]:
    if isinstance(value, ir.SecretRef):
        return None, {role: value.secret}
    return value, {}
