"""Test harness that runs a daemon's notification parts (pipeline, notifier, outbox) on a fake clock over a real store.

The clock only moves when a test moves it, so group waits, intervals and
escalation steps are checked to the second without waiting for them. `restart`
drops every in-memory part and builds them again on the same store, as a daemon
restart does.
"""

from __future__ import annotations

import datetime
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx
import sqlalchemy as sa

from compiler.api import compile_rules
from runtime.alerts import Alert
from runtime.notify.model import Endpoints, Outbound
from runtime.notify.notifier import Notifier
from runtime.notify.outbox import Outbox, RetryPolicy
from runtime.pipeline import Accepted, Pipeline, accept
from runtime.policy import Policy
from runtime.sources.base import Inbound, Outcome
from runtime.store import Store
from runtime.store.schema import incidents, outbox, timeline, timers

T0 = datetime.datetime(2026, 3, 8, 10, 0, tzinfo=datetime.UTC)


class FakeClock:
    """Clock that moves only when `advance` is called."""

    def __init__(self, start: datetime.datetime = T0) -> None:
        self.now = start

    def __call__(self) -> datetime.datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += datetime.timedelta(seconds=seconds)


def load_policy(folder: Path, text: str) -> Policy:
    """Write `text` as the rules file in `folder` and return the compiled policy."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "rules.irules").write_text(text, encoding="utf-8")
    return Policy(compile_rules(folder))


def alert(name: str, status: str = "firing", source: str = "grafana", **labels: str) -> Alert:
    """Return an alert labelled with its `alertname` and `labels`."""
    labels = {"alertname": name, **labels}
    return Alert(source=source, name=name, status=status, labels=labels, annotations={"summary": f"{name} summary"})


@dataclass
class Harness:
    """Pipeline, notifier and outbox of one daemon on `store`, driven by `clock`."""

    store: Store
    policy: Policy
    clock: FakeClock
    send: Callable[[Outbound], Awaitable[Any]] | None = None
    endpoints: Endpoints = field(default_factory=Endpoints)
    client: httpx.AsyncClient | None = None
    secrets: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.restart()

    def restart(self) -> None:
        """Build every in-memory part again, as a restarted daemon does."""
        self.pipeline = Pipeline(self.store, lambda: self.policy, clock=self.clock)
        self.outbox = Outbox(
            self.store,
            lambda: self.policy.ruleset.settings,
            self.secrets.get,
            self.client,  # type: ignore[arg-type]
            self.endpoints,
            clock=self.clock,
            retry=RetryPolicy(base_s=2.0, cap_s=60.0, max_attempts=5),
            sender=self.send,
        )
        self.notifier = Notifier(self.store, lambda: self.policy, self.outbox, self.clock)
        self.outbox.release_expired()

    def post(self, *alerts: Alert) -> None:
        """Accept `alerts` as one payload received now and run the pipeline on it."""
        source = alerts[0].source
        accept(self.store, [Accepted(source, Inbound(b"{}", {}, self.clock()), Outcome(source, "alerts", list(alerts)))])
        self.pipeline.process_pending()

    def tick(self) -> None:
        """Fire due timers, queue due messages and send every row that may go now."""
        self.notifier.tick()
        anyio.run(self.outbox.send_ready)

    def run_for(self, seconds: float, step: float = 1.0) -> None:
        """Move the clock forward `seconds` in steps, ticking after each."""
        end = self.clock() + datetime.timedelta(seconds=seconds)
        while self.clock() < end:
            self.clock.advance(min(step, (end - self.clock()).total_seconds()))
            self.tick()

    # ------------------------------------------------------------ reading

    def incident(self, number: int = 1) -> dict[str, Any]:
        with self.store.read() as connection:
            return dict(connection.execute(sa.select(incidents).where(incidents.c.id == number)).mappings().one())

    def outbox_rows(self) -> list[dict[str, Any]]:
        with self.store.read() as connection:
            return [dict(row) for row in connection.execute(sa.select(outbox).order_by(outbox.c.id)).mappings()]

    def timers(self) -> list[dict[str, Any]]:
        with self.store.read() as connection:
            return [dict(row) for row in connection.execute(sa.select(timers).order_by(timers.c.id)).mappings()]

    def timeline(self, kind: str | None = None) -> list[dict[str, Any]]:
        query = sa.select(timeline).order_by(timeline.c.id)
        if kind is not None:
            query = query.where(timeline.c.kind == kind)
        with self.store.read() as connection:
            return [dict(row) for row in connection.execute(query).mappings()]
