"""The daemon's parts and their lifetime: store, rules, writer, pipeline, watcher and HTTP server.

`serve` runs everything in one anyio task group. uvicorn handles SIGTERM and
SIGINT: it stops accepting connections and finishes the requests in flight;
then the writer stores what is queued, the pipeline applies what is stored,
and the process exits with status 0.
"""

from __future__ import annotations

import datetime
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import sqlalchemy as sa

from compiler.ir import BUILTIN_SOURCES, SecretRef
from runtime.daemon.metrics import Metrics
from runtime.daemon.rules import RulesState
from runtime.daemon.writer import Writer
from runtime.notify.model import Endpoints
from runtime.pipeline import Accepted, Pipeline
from runtime.secrets import Secrets
from runtime.store import Store
from runtime.store.schema import alert_events, incidents, outbox

log = logging.getLogger("irules.daemon")

PIPELINE_IDLE_S = 1.0
SECRET_CACHE_S = 5.0
# Events per pipeline transaction in the daemon. The pipeline holds SQLite's write lock
# for its whole transaction, and webhooks wait for it; small batches keep that wait short.
PIPELINE_BATCH = 100
# The share of time the pipeline takes while payloads keep arriving, and how long
# without a payload counts as quiet.
PIPELINE_SHARE = 0.3
INGEST_QUIET_S = 0.25
PIPELINE_GATHER_S = 0.1
FLAP_CHECK_EVERY_S = 15.0


@dataclass(slots=True)
class DaemonConfig:
    rules: Path
    environment: str | None
    database_url: str
    host: str = "127.0.0.1"
    port: int = 8080
    secrets_dir: Path | None = None
    allow_unauthenticated: bool = False
    api_token: str | None = None
    watch: bool = True
    durability: str = "normal"
    confirm_subscriptions: bool = True
    endpoints: Endpoints = field(default_factory=Endpoints)
    notify: bool = True
    runbooks: bool = True
    prometheus_url: str | None = None
    runbook_environment: tuple[str, ...] = ()


class Daemon:
    """Everything one daemon process holds; the HTTP app reads it through `app.state.daemon`."""

    def __init__(self, config: DaemonConfig) -> None:
        self.config = config
        self.rules = RulesState(config.rules, config.environment)
        self.store: Store | None = None
        self.writer: Writer | None = None
        self.pipeline: Pipeline | None = None
        self.metrics = Metrics(self._incident_counts, self._pending_events, self._outbox_counts)
        self.started_at = datetime.datetime.now(datetime.UTC)
        self._wakeup = anyio.Event()
        self._watch_stop: anyio.Event | None = None
        self._stopping = False
        self._backlog = True
        self._secrets: Secrets | None = None
        self._last_commit = 0.0
        self.ready = False
        self.outbox = None
        self.notifier = None
        self.slack_bot = None
        self.run_manager = None
        self._stop_workers = anyio.Event()
        self._workers = 0

    # ------------------------------------------------------------ state

    def secrets(self) -> Secrets:
        """Return the secrets reader for the folder in force, kept across requests so its cache works."""
        folder = self.config.secrets_dir
        if folder is None and self.rules.policy is not None:
            folder = Path(self.rules.policy.ruleset.settings.secrets_dir)
        if self._secrets is None or self._secrets.folder != folder:
            self._secrets = Secrets(folder, cache_s=SECRET_CACHE_S)
        return self._secrets

    def _incident_counts(self) -> dict[str, int]:
        if self.store is None:
            return {}
        with self.store.read() as connection:
            rows = connection.execute(sa.select(incidents.c.status, sa.func.count()).group_by(incidents.c.status)).all()
        return {status: count for status, count in rows}

    def _outbox_counts(self) -> dict[str, int]:
        if self.store is None:
            return {}
        with self.store.read() as connection:
            rows = connection.execute(sa.select(outbox.c.status, sa.func.count()).group_by(outbox.c.status)).all()
        return {status: count for status, count in rows}

    def _pending_events(self) -> int:
        if self.store is None:
            return 0
        with self.store.read() as connection:
            return connection.execute(sa.select(sa.func.count()).where(alert_events.c.processed_at.is_(None))).scalar_one()

    def wake_pipeline(self, _items: list[Accepted] | None = None) -> None:
        self._last_commit = time.monotonic()
        self._wakeup.set()

    # ------------------------------------------------------------ startup

    async def start(self) -> None:
        """Open the store and load the rules; the daemon is ready when both are done."""
        self.store = await anyio.to_thread.run_sync(
            lambda: Store.open(self.config.database_url, durability=self.config.durability)
        )
        log.info("store open: %s", self.store.engine.url.render_as_string(hide_password=True))
        loaded = await anyio.to_thread.run_sync(self.rules.reload)
        self.metrics.reloads.labels("ok" if loaded else "failed").inc()
        if not loaded:
            raise SystemExit(f"irules daemon: the rules in {self.config.rules} have errors; fix them and start again")
        self.warn_about_configuration()
        self.writer = Writer(self.store, on_commit=self.wake_pipeline)
        self.pipeline = Pipeline(self.store, self.rules.current)
        self.ready = True

    # ------------------------------------------------------------ background work

    def warn_about_configuration(self) -> None:
        """Log what would make requests fail or leave the daemon open: missing secrets, sources without auth, no API token."""
        ruleset = self.rules.current().ruleset
        secrets = self.secrets()
        if secrets.folder is not None and not secrets.folder.is_dir():
            log.warning("secrets folder %s does not exist; secrets come from environment variables only", secrets.folder)
        for source in ruleset.sources:
            for method in source.auth:
                if method.secret is not None and secrets.get(method.secret.secret) is None:
                    log.error(
                        "source %s: secret %s is not set (no environment variable, no file in %s); its requests will get 503",
                        source.name,
                        method.secret.secret,
                        secrets.folder or "no secrets folder",
                    )
        for receiver in ruleset.receivers:
            for channel in receiver.channels:
                for reference in (channel.key, channel.url, channel.target):
                    if isinstance(reference, SecretRef) and secrets.get(reference.secret) is None:
                        log.error(
                            "receiver %s: the %s channel's secret %s is not set; its messages wait and are retried until it is",
                            receiver.name,
                            channel.kind,
                            reference.secret,
                        )
        if not self.config.notify:
            log.warning(
                "notifications are off (--no-notify): nothing is sent and no escalation step fires until a start without it"
            )
        declared = {source.name for source in ruleset.sources if source.auth}
        for name in BUILTIN_SOURCES:
            if name not in declared and not self.config.allow_unauthenticated:
                log.info("source %s declares no auth, so its requests are rejected with 401", name)
        if not self.config.api_token and self.config.host not in ("127.0.0.1", "::1", "localhost"):
            log.warning("the incident API on %s needs no token; set IRULES_API_TOKEN to require one", self.config.host)

    async def run_pipeline(self) -> None:
        """Apply stored events in batches, and settle flapping alerts now and then.

        While webhooks keep arriving, the pipeline takes at most `PIPELINE_SHARE` of
        the time: after each batch it pauses for the rest of its slice, so ingestion,
        which decides what senders see, keeps most of the interpreter. When no payload
        arrived for `INGEST_QUIET_S`, batches follow each other without pauses.
        """
        assert self.pipeline is not None
        last_flap_check = 0.0
        while True:
            if not self._backlog:
                with anyio.move_on_after(PIPELINE_IDLE_S):
                    await self._wakeup.wait()
                self._wakeup = anyio.Event()
                if not self._stopping and time.monotonic() - self._last_commit < INGEST_QUIET_S:
                    # Payloads are arriving: let a few more come, so the batch is worth its transaction.
                    await anyio.sleep(PIPELINE_GATHER_S)
            started = time.monotonic()
            applied = await anyio.to_thread.run_sync(self._process_and_measure)
            spent = time.monotonic() - started
            self._backlog = applied >= PIPELINE_BATCH
            if time.monotonic() - last_flap_check > FLAP_CHECK_EVERY_S:
                last_flap_check = time.monotonic()
                await anyio.to_thread.run_sync(self.pipeline.settle_flapping)
            if self._stopping and applied == 0:
                return
            if applied and not self._stopping and time.monotonic() - self._last_commit < INGEST_QUIET_S:
                await anyio.sleep(spent * (1 - PIPELINE_SHARE) / PIPELINE_SHARE)

    def _process_and_measure(self) -> int:
        assert self.pipeline is not None
        applied = self.pipeline.process_pending(limit=PIPELINE_BATCH)
        if applied and self.notifier is not None:
            anyio.from_thread.run_sync(self.notifier.wake)
        now = datetime.datetime.now(datetime.UTC)
        for received_at, outcome in self.pipeline.take_applied():
            self.metrics.latency.observe(max(0.0, (now - received_at).total_seconds()))
            self.metrics.events.labels(outcome).inc()
        return applied

    async def watch_rules(self) -> None:
        """Reload the rules when a file under the rules path changes."""
        from watchfiles import awatch

        path = self.config.rules
        target = path if path.is_dir() else path.parent

        def relevant(_change: object, changed: str) -> bool:
            changed_path = Path(changed)
            if path.is_file():
                return changed_path == path.resolve() or changed_path == path
            return changed_path.suffix == ".irules"

        # The watcher waits in a worker thread that cancellation cannot interrupt. Setting this
        # event at shutdown ends it within one `step`, not after its 5 s timeout (watchfiles 1.x).
        self._watch_stop = anyio.Event()
        changes = awatch(
            target, watch_filter=relevant, debounce=150, step=50, recursive=path.is_dir(), stop_event=self._watch_stop
        )
        async for _changes in changes:
            loaded = await anyio.to_thread.run_sync(self.rules.reload)
            self.metrics.reloads.labels("ok" if loaded else "failed").inc()
            if loaded:
                self.warn_about_configuration()

    async def _worker(self, run) -> None:  # type: ignore[no-untyped-def]
        """Run a loop that ends when `_stop_workers` is set, counting it while it runs."""
        self._workers += 1
        try:
            await run(self._stop_workers)
        finally:
            self._workers -= 1

    async def _workers_stopped(self) -> None:
        while self._workers:
            await anyio.sleep(0.02)

    def incident_changed(self) -> None:
        """Wake the notifier after a person changed an incident, so the news goes out at once."""
        if self.notifier is not None:
            self.notifier.wake()

    async def _slack_approval(self, decision):  # type: ignore[no-untyped-def]
        """Decide a runbook approval from a Slack button; the waiting run reads the decision from the store."""
        from runtime.incidents import IncidentError
        from runtime.runbooks import runs
        from runtime.slack.bot import Reply

        assert self.store is not None
        try:
            number = int(decision.approval_id)
            result = await anyio.to_thread.run_sync(
                runs.decide_by_id, self.store, number, decision.approved, decision.actor.label, _utc_now()
            )
        except (ValueError, IncidentError) as error:
            return Reply(f"Cannot decide that approval: {error}")
        verb = "approved" if decision.approved else "denied"
        return Reply(f"{decision.actor.mention} {verb} step {result['step']} of run {result['run']}", in_channel=True)

    def _notification_result(self, channel: str, outcome: str) -> None:
        self.metrics.notifications.labels(channel, outcome).inc()

    def _start_notifications(self, client: object) -> None:
        """Build the outbox, the notifier and the Slack bot on the shared HTTP client."""
        from runtime.notify.notifier import Notifier
        from runtime.notify.outbox import Outbox
        from runtime.slack.bot import SlackBot

        assert self.store is not None
        clock = _utc_now
        settings = lambda: self.rules.current().ruleset.settings  # noqa: E731
        self.outbox = Outbox(
            self.store,
            settings,
            lambda name: self.secrets().get(name),
            client,  # type: ignore[arg-type]
            self.config.endpoints,
            clock=clock,
            on_result=self._notification_result,
        )
        self.notifier = Notifier(self.store, self.rules.current, self.outbox, clock)
        self.slack_bot = SlackBot(
            self.store,
            lambda: self.rules.current().ruleset,
            lambda name: self.secrets().get(name),
            client,  # type: ignore[arg-type]
            self.config.endpoints,
            clock=clock,
            policy=self.rules.current,
        )
        self.slack_bot.on_incident_change = self.incident_changed
        self.slack_bot.approvals = self._slack_approval
        from runtime.runbooks.manager import RunManager
        from runtime.runbooks.steps import RunnerSettings

        self.run_manager = RunManager(
            self.store,
            self.rules.current,
            client,  # type: ignore[arg-type]
            RunnerSettings(prometheus_url=self.config.prometheus_url, environment=self.config.runbook_environment),
        )

    async def serve(self) -> None:
        import httpx
        import uvicorn

        from runtime.daemon.app import build_app

        await self.start()
        assert self.writer is not None
        client = httpx.AsyncClient(timeout=self.config.endpoints.timeout_s, follow_redirects=False, trust_env=False)
        self._start_notifications(client)
        config = uvicorn.Config(
            build_app(self),
            host=self.config.host,
            port=self.config.port,
            log_config=None,
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=20,
        )
        server = uvicorn.Server(config)
        _ignore_stop_signals_after_serve()
        async with anyio.create_task_group() as group:
            group.start_soon(self.writer.run)
            group.start_soon(self.run_pipeline)
            assert self.outbox is not None
            assert self.notifier is not None
            assert self.slack_bot is not None
            if self.config.notify:
                group.start_soon(self._worker, self.notifier.run)
                group.start_soon(self._worker, self.outbox.run)
            group.start_soon(self._worker, self.slack_bot.run)
            if self.config.runbooks:
                group.start_soon(self._worker, self.run_manager.run)
            if self.config.watch:
                group.start_soon(self.watch_rules)
            log.info("listening on http://%s:%d", self.config.host, self.config.port)
            await server.serve()
            log.info("stopping: storing queued payloads and applying stored events")
            self._stopping = True
            if self._watch_stop is not None:
                self._watch_stop.set()
            self.writer.close()
            self._wakeup.set()
            with anyio.move_on_after(30):
                while self._pending_events():
                    await anyio.sleep(0.05)
            self._stop_workers.set()
            if self.notifier is not None:
                self.notifier.wake()
            if self.outbox is not None:
                self.outbox.wake()
            with anyio.move_on_after(self.config.endpoints.timeout_s + 2):
                await self._workers_stopped()
            group.cancel_scope.cancel()
        await client.aclose()
        if self.store is not None:
            self.store.close()
        log.info("stopped")


def _utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _ignore_stop_signals_after_serve() -> None:
    """Make SIGTERM and SIGINT harmless once uvicorn has handled them.

    uvicorn catches both while it serves and raises the caught signal again after a
    graceful shutdown, with the handlers that were installed before. Handlers that
    do nothing let the daemon finish draining and exit with status 0.
    """
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        for number in (signal.SIGTERM, signal.SIGINT):
            signal.signal(number, lambda _number, _frame: None)
