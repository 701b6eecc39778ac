"""The daemon's parts and their lifetime: store, rules, writer, pipeline, watcher and HTTP server.

`serve` runs everything in one anyio task group. uvicorn handles SIGTERM and
SIGINT: it stops accepting connections and finishes the requests in flight;
then the writer stores what is queued, the pipeline applies what is stored,
and the process exits with status 0.
"""

from __future__ import annotations

import datetime
import errno
import gc
import logging
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import sqlalchemy as sa
from anyio.abc import TaskGroup
from prometheus_client import Counter

from compiler.ir import BUILTIN_SOURCES, SecretRef
from runtime.cluster import Node, PeerWatch, new_node_id
from runtime.daemon.metrics import Metrics
from runtime.daemon.outage import DatabaseHealth, DegradedPager, SpoolDrainer, describe, is_transient, is_unreachable
from runtime.daemon.rules import RulesState
from runtime.daemon.writer import Writer
from runtime.notify.model import Endpoints
from runtime.pipeline import Accepted, Pipeline
from runtime.retention import RetentionSettings
from runtime.secrets import Secrets
from runtime.spool import DEFAULT_LIMIT_BYTES as DEFAULT_SPOOL_LIMIT
from runtime.spool import Spool
from runtime.store import Store, StoreError
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
# How long a background loop that failed because the database is unreachable waits before it starts again.
WORKER_RESTART_S = 1.0
# How often a daemon that started without its database tries again to open the store.
STORE_RETRY_S = 1.0


class ListenError(Exception):
    """The daemon cannot listen on its address. The message gives the reason and what to change."""


def bind_listener(host: str, port: int) -> socket.socket:
    """Return a listening TCP socket on `host`:`port`, bound before anything else starts.

    Binding first makes a taken port fail the start at once, with one line, instead
    of after the store and the rules are loaded and "listening" has been logged.

    Raises:
        ListenError: the host does not resolve, or the address is taken or not allowed.
    """
    try:
        family, kind, proto, _name, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as error:
        raise ListenError(f"cannot listen on {host}:{port}: the host does not resolve ({error.strerror})") from None
    listener = socket.socket(family, kind, proto)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(address)
        listener.listen(2048)
    except OSError as error:
        listener.close()
        if error.errno == errno.EADDRINUSE:
            reason = "the address is in use by another process; stop it or choose another port with --listen"
        elif error.errno == errno.EACCES:
            reason = "permission denied; ports below 1024 need privileges, so choose a higher port with --listen"
        elif error.errno == errno.EADDRNOTAVAIL:
            reason = "no network interface of this host has that address"
        else:
            reason = error.strerror or str(error)
        raise ListenError(f"cannot listen on {host}:{port}: {reason}") from None
    listener.set_inheritable(True)
    return listener


def freeze_heap() -> None:
    """Collect garbage once, then exempt every object alive now from the garbage collector's later passes.

    The daemon keeps about 230,000 objects from its start (compiled rules, SQLAlchemy's
    tables and compiled statements, imported modules), and each full collection walked
    all of them. Exempted, they cost nothing: applying 3,000 stored one-alert webhooks
    in a loop took 205 instead of 241 µs of CPU time per alert on the benchmark machine.
    Called again after a reload, it releases the exemption first, so a replaced
    ruleset is still collected.
    """
    gc.unfreeze()
    gc.collect()
    gc.freeze()


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
    # Seconds a silent node's leases on runbook runs and on messages being sent stay its own (`--lease-time`).
    lease_s: float = 30.0
    retention: RetentionSettings = field(default_factory=RetentionSettings)
    # Where payloads go while the database is unreachable (`--spool`), and its size limit in bytes.
    spool_dir: Path | None = None
    spool_limit: int = DEFAULT_SPOOL_LIMIT


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
        self.node: Node | None = None
        self.spool: Spool | None = None
        self.health: DatabaseHealth | None = None
        self.drainer: SpoolDrainer | None = None
        self.pager: DegradedPager | None = None
        # True once the store is migrated and this node registered; until then nothing reads or writes the database.
        self.store_open = False
        # Why the daemon stopped by itself (a store that opened late and cannot be migrated), raised when `serve` ends.
        self.fatal: StoreError | None = None
        self._server = None
        self.retention_deleted = Counter(
            "irules_retention_deleted",
            "Rows deleted by retention, by table.",
            ["table"],
            registry=self.metrics.registry,
        )

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
        if self.store is None or not self.store_open:
            return {}
        with self.store.read() as connection:
            rows = connection.execute(sa.select(incidents.c.status, sa.func.count()).group_by(incidents.c.status)).all()
        return {status: count for status, count in rows}

    def _outbox_counts(self) -> dict[str, int]:
        if self.store is None or not self.store_open:
            return {}
        with self.store.read() as connection:
            rows = connection.execute(sa.select(outbox.c.status, sa.func.count()).group_by(outbox.c.status)).all()
        return {status: count for status, count in rows}

    def _pending_events(self) -> int:
        if self.store is None or not self.store_open:
            return 0
        with self.store.read() as connection:
            return connection.execute(sa.select(sa.func.count()).where(alert_events.c.processed_at.is_(None))).scalar_one()

    def wake_pipeline(self, _items: list[Accepted] | None = None) -> None:
        self._last_commit = time.monotonic()
        self._wakeup.set()

    # ------------------------------------------------------------ startup

    async def start(self) -> None:
        """Load the rules, then open the store and build what receives webhooks.

        A PostgreSQL server that does not respond does not stop the start: the daemon
        serves with the database marked unreachable, so webhooks go to the spool, and
        `serve` opens the store once the server responds. Rules with errors, an SQLite
        store that cannot be opened and an unusable spool folder are configuration
        errors, and the start fails.
        """
        loaded = await anyio.to_thread.run_sync(self.rules.reload)
        self.metrics.reloads.labels("ok" if loaded else "failed").inc()
        if not loaded:
            raise SystemExit(f"irules daemon: the rules in {self.config.rules} have errors; fix them and start again")
        self.warn_about_configuration()
        self.store = await anyio.to_thread.run_sync(
            lambda: Store.create(self.config.database_url, durability=self.config.durability)
        )
        self.health = DatabaseHealth(self.store)
        listen = f"{self.config.host}:{self.config.port}"
        self.node = Node(self.store, new_node_id(self.config.host, self.config.port), listen, self.config.lease_s)
        if self.store.is_sqlite:
            await anyio.to_thread.run_sync(self._open_sqlite_store)
        else:
            await self._try_open_store()
        await self._open_spool()
        self.writer = Writer(
            self.store, on_commit=self.wake_pipeline, spool=self.spool, health=self.health, on_spool=self._page_degraded
        )
        self.pipeline = Pipeline(self.store, self.rules.current)
        # Without a spool, a webhook that arrives before the store is open has nowhere to go.
        self.ready = self.store_open or self.spool is not None

    def _open_sqlite_store(self) -> None:
        """Open the SQLite store, turning a failure into `StoreError`, which the command reports as a usage error."""
        assert self.store is not None
        try:
            self._open_store()
        except sa.exc.OperationalError as error:
            self.store.engine.dispose()
            raise StoreError(f"cannot open the database {self._store_url()}: {error.orig}") from error

    def _open_store(self) -> None:
        """Migrate the schema and register this node: the database work that must come before any other."""
        assert self.store is not None and self.node is not None
        self.store.migrate()
        self.node.register(_utc_now())
        self.store_open = True
        log.info("store open: %s", self._store_url())

    def _store_url(self) -> str:
        assert self.store is not None
        return self.store.engine.url.render_as_string(hide_password=True)

    async def _try_open_store(self) -> None:
        """Open the store, or mark the database unreachable when it does not respond."""
        assert self.health is not None
        try:
            # Abandoned on cancellation, because a connection attempt to an unresponsive host
            # waits for the TCP timeout and would hold up a stop.
            await anyio.to_thread.run_sync(self._open_store, abandon_on_cancel=True)
        except Exception as error:
            if not is_unreachable(error):
                raise
            if self.health.problem is None:
                log.warning("cannot open the store %s; serving without it until the database responds", self._store_url())
            self.health.wait_for_store(error)
            return
        if not self.health.store_open:
            self.health.store_opened()

    async def _open_store_when_reachable(self, stop: anyio.Event) -> bool:
        """Try to open the store every `STORE_RETRY_S` until it opens, and return False when `stop` is set first."""
        while not self.store_open:
            with anyio.move_on_after(STORE_RETRY_S):
                await stop.wait()
            if stop.is_set():
                return False
            await self._try_open_store()
        return True

    async def _open_spool(self) -> None:
        """Open the spool folder; a folder that cannot be written stops the start, because no fallback would survive a restart."""
        assert self.store is not None and self.health is not None
        folder = self.config.spool_dir
        if folder is None and self.store.is_sqlite:
            folder = Path(self.store.engine.url.database or ".").parent / "spool"
        if folder is None:
            log.warning("no spool folder (--spool); webhooks get 503 while the database is unreachable")
            return
        try:
            self.spool = await anyio.to_thread.run_sync(Spool.open, folder, self.config.spool_limit)
        except OSError as error:
            raise SystemExit(
                f"irules daemon: cannot use the spool folder {folder}: {error.strerror or error}; "
                "pass --spool DIR with a writable folder"
            ) from error
        if self.spool.pending:
            log.warning("spool %s has %d payload(s) from an earlier run; they drain now", folder, self.spool.pending)
        self.drainer = SpoolDrainer(self.spool, self.store, self.health, self.wake_pipeline)
        self.health.on_recovery.append(self.drainer.wake)

    async def database_problem(self) -> str | None:
        """Return why the database is unreachable, or None while it answers."""
        return None if self.health is None else await self.health.check()

    def _page_degraded(self, item: Accepted) -> None:
        if self.pager is not None:
            self.pager.enqueue(item)

    def _start_degraded_pages(self, client: object) -> None:
        """Build the pager that sends degraded pages while the database is unreachable."""
        from runtime.notify.channels import send

        async def send_one(outbound, settings):  # type: ignore[no-untyped-def]
            return await send(
                outbound,
                secrets=lambda name: self.secrets().get(name),
                client=client,  # type: ignore[arg-type]
                endpoints=self.config.endpoints,
                settings=settings,
            )

        self.pager = DegradedPager(self.rules.current, send_one)
        assert self.health is not None
        self.health.on_recovery.append(self.pager.reset)

    async def _unless_unreachable(self, function, default: int) -> int:  # type: ignore[no-untyped-def]
        """Run `function` in a worker thread; while the database is unreachable, note it and return `default`.

        A transaction that the database aborted for a deadlock or a serialization failure
        also returns `default`, so the caller's loop runs it again, without an outage.
        """
        try:
            return await anyio.to_thread.run_sync(function)
        except Exception as error:
            if is_transient(error):
                log.warning("the pipeline's transaction was aborted by the database (%s); it runs again", describe(error))
                return default
            if self.health is None or not is_unreachable(error):
                raise
            self.health.report_failure(error)
            return default

    def _pending_events_if_reachable(self) -> int:
        try:
            return self._pending_events()
        except Exception as error:
            if not is_unreachable(error):
                raise
            log.warning("stopping without applying stored events, because the database is unreachable")
            return 0

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
        # Without notifications nothing is sent, so a receiver's missing secret stops nothing.
        for receiver in ruleset.receivers if self.config.notify else ():
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
            applied = await self._unless_unreachable(self._process_and_measure, 0)
            spent = time.monotonic() - started
            self._backlog = applied >= PIPELINE_BATCH
            if time.monotonic() - last_flap_check > FLAP_CHECK_EVERY_S:
                last_flap_check = time.monotonic()
                await self._unless_unreachable(self._settle_flapping_in_turn, 0)
            if self._stopping and applied == 0:
                return
            if applied and not self._stopping and time.monotonic() - self._last_commit < INGEST_QUIET_S:
                await anyio.sleep(spent * (1 - PIPELINE_SHARE) / PIPELINE_SHARE)

    def _settle_flapping_in_turn(self) -> int:
        """Settle flapping alerts when this node claims the job's turn, and return how many stopped flapping.

        The claim is a database write too, so it runs where an outage is caught, not beside it.
        """
        assert self.pipeline is not None
        if not self._claim_job("pipeline.settle_flapping", FLAP_CHECK_EVERY_S):
            return 0
        return self.pipeline.settle_flapping()

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
                freeze_heap()
                self.warn_about_configuration()

    async def _worker(self, run) -> None:  # type: ignore[no-untyped-def]
        """Run a loop that ends when `_stop_workers` is set, counting it while it runs."""
        self._workers += 1
        try:
            while True:
                try:
                    await run(self._stop_workers)
                    return
                except Exception as error:
                    # A loop that failed because the database went away starts again, so that the
                    # daemon keeps serving and catches up by itself when the database is back. So does
                    # a loop whose transaction the database aborted for a deadlock, without an outage.
                    if self.health is None or self._stop_workers.is_set() or not _only_retryable(error):
                        raise
                    unreachable = [leaf for leaf in _leaves(error) if is_unreachable(leaf)]
                    if unreachable:
                        self.health.report_failure(unreachable[0])
                        reason = "the database is unreachable"
                    else:
                        reason = f"the database aborted its transaction ({describe(_leaves(error)[0])})"
                    log.warning("%s stopped because %s; restarting it in %g s", _loop_name(run), reason, WORKER_RESTART_S)
                    await anyio.sleep(WORKER_RESTART_S)
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
            lease_s=self.config.lease_s,
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
        self.slack_bot.send_replies = self.config.notify
        self.outbox.periodic = self._claim_job
        self.slack_bot.approvals = self._slack_approval
        from runtime.runbooks.manager import RunManager
        from runtime.runbooks.steps import RunnerSettings

        self.run_manager = RunManager(
            self.store,
            self.rules.current,
            client,  # type: ignore[arg-type]
            RunnerSettings(prometheus_url=self.config.prometheus_url, environment=self.config.runbook_environment),
            node_id=self.node.id if self.node is not None else "local",
            lease_s=self.config.lease_s,
        )

    # ------------------------------------------------------------ cluster

    def _claim_job(self, name: str, every_s: float) -> bool:
        """Return whether this node runs the periodic job `name` now; see `runtime.cluster.claim_job`."""
        if self.node is None:
            return True
        return self.node.claim_job(name, every_s, _utc_now())

    async def run_cluster(self, stop: anyio.Event) -> None:
        """Heartbeat this node, and run retention when this node holds its turn, until `stop` is set."""
        assert self.node is not None
        peers = PeerWatch(self.node.id)
        while not stop.is_set():
            try:
                await anyio.to_thread.run_sync(self.node.heartbeat, _utc_now())
                alive, silent = await anyio.to_thread.run_sync(self.node.members, _utc_now())
                peers.update(alive, silent)
                if await anyio.to_thread.run_sync(self._claim_job, "retention", self.config.retention.every_s):
                    await anyio.to_thread.run_sync(self.run_retention, _utc_now())
            except sa.exc.OperationalError as error:
                log.warning("node heartbeat failed; retrying in %.1f s: %s", self.node.heartbeat_every_s, error.orig)
            with anyio.move_on_after(self.node.heartbeat_every_s):
                await stop.wait()

    def run_retention(self, now: datetime.datetime) -> dict[str, int]:
        """Delete what is past its retention period, count it on /metrics, and return the rows deleted per table."""
        from runtime.retention import purge

        assert self.store is not None
        deleted = purge(self.store, self.config.retention, now, self.rules.policy)
        for table, count in deleted.items():
            if count:
                self.retention_deleted.labels(table).inc(count)
        return deleted

    def cluster_status(self) -> dict[str, object]:
        """Return this node's id and the nodes whose heartbeat is within the lease time, for `/status`."""
        if self.node is None or not self.store_open:
            # The node registry is in the database, which this node has not opened yet.
            return {"node": None if self.node is None else self.node.id, "lease_s": self.config.lease_s, "nodes": []}
        alive = self.node.alive(_utc_now())
        return {"node": self.node.id, "lease_s": self.node.lease_s, "nodes": [node.to_json() for node in alive]}

    def _unregister(self) -> None:
        assert self.node is not None
        try:
            self.node.unregister()
        except sa.exc.OperationalError as error:
            log.warning("removing this node from the node registry failed; it expires by its heartbeat: %s", error.orig)

    async def _run_database_work(self, group: TaskGroup) -> None:
        """Start the loops that read and write the database once the store is open, unless the daemon stops first.

        A store that opens late and then cannot be migrated stops the daemon, as it
        would have at the start. The payloads spooled meanwhile stay in the spool.
        """
        try:
            opened = await self._open_store_when_reachable(self._stop_workers)
        except StoreError as error:
            log.error("%s; stopping", error)
            self.fatal = error
            if self._server is not None:
                self._server.should_exit = True
            return
        if not opened:
            return
        self.ready = True
        assert self.outbox is not None
        assert self.notifier is not None
        assert self.slack_bot is not None
        assert self.run_manager is not None
        group.start_soon(self.run_pipeline)
        group.start_soon(self._worker, self.run_cluster)
        if self.config.notify:
            group.start_soon(self._worker, self.notifier.run)
            group.start_soon(self._worker, self.outbox.run)
        group.start_soon(self._worker, self.slack_bot.run)
        if self.config.runbooks:
            group.start_soon(self._worker, self.run_manager.run)

    async def serve(self) -> None:
        """Bind the listening address, start, serve until SIGTERM or SIGINT, then drain and stop.

        Raises:
            ListenError: the address cannot be bound; nothing has started.
        """
        listener = bind_listener(self.config.host, self.config.port)
        try:
            await self._serve_on(listener)
        finally:
            listener.close()

    async def _serve_on(self, listener: socket.socket) -> None:
        import httpx
        import uvicorn

        from runtime.daemon.app import build_app
        from runtime.daemon.http import protocol_for

        await self.start()
        assert self.writer is not None
        client = httpx.AsyncClient(timeout=self.config.endpoints.timeout_s, follow_redirects=False, trust_env=False)
        self._start_notifications(client)
        self._start_degraded_pages(client)
        config = uvicorn.Config(
            build_app(self),
            host=self.config.host,
            port=self.config.port,
            log_config=None,
            access_log=False,
            lifespan="off",
            http=protocol_for(self),
            timeout_graceful_shutdown=20,
        )
        server = uvicorn.Server(config)
        self._server = server
        freeze_heap()
        _ignore_stop_signals_after_serve()
        async with anyio.create_task_group() as group:
            # These need no database: webhooks reach the spool, degraded pages go out, rules reload.
            group.start_soon(self.writer.run)
            if self.drainer is not None:
                group.start_soon(self._worker, self.drainer.run)
            if self.config.notify and self.pager is not None and self.spool is not None:
                group.start_soon(self._worker, self.pager.run)
            if self.config.watch:
                group.start_soon(self.watch_rules)
            group.start_soon(self._run_database_work, group)
            log.info("listening on http://%s:%d", self.config.host, self.config.port)
            await server.serve(sockets=[listener])
            log.info("stopping: storing queued payloads and applying stored events")
            self._stopping = True
            if self._watch_stop is not None:
                self._watch_stop.set()
            self.writer.close()
            self._wakeup.set()
            with anyio.move_on_after(30):
                while self._pending_events_if_reachable():
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
        if self.node is not None and self.store_open:
            await anyio.to_thread.run_sync(self._unregister)
        if self.store is not None:
            self.store.close()
        log.info("stopped")
        if self.fatal is not None:
            raise self.fatal


def _only_retryable(error: BaseException) -> bool:
    """Return whether `error`, or every error of an exception group, is an unreachable database or an aborted transaction."""
    return all(is_unreachable(leaf) or is_transient(leaf) for leaf in _leaves(error))


def _leaves(error: BaseException) -> list[BaseException]:
    """Return the errors of an exception group and its nested groups, or `error` alone."""
    if isinstance(error, BaseExceptionGroup):
        return [leaf for inner in error.exceptions for leaf in _leaves(inner)]
    return [error]


def _loop_name(run) -> str:  # type: ignore[no-untyped-def]
    owner = getattr(run, "__self__", None)
    return type(owner).__name__ if owner is not None else getattr(run, "__name__", "a background loop")


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
