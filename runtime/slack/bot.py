"""The Slack bot: performs stored Slack requests on incidents and replies to them.

The routes in `runtime.slack.routes` verify each request, store it with
`SlackBot.accept` and respond to Slack within its 3-second limit. `SlackBot.run` then
works the stored requests off with `process_pending`:

- a slash command or a mention of the bot runs one command of
  `runtime.slack.commands` through `runtime.incidents`, as the actor
  `slack:<user id>`, and the reply goes to the command's `response_url` or
  into the mention's thread with `chat.postMessage`;
- a click on an incident message's buttons acknowledges the incident or starts
  the response; a click on a runbook approval goes to `approvals`.

A request is marked processed before its reply is sent, so a failed reply is
logged and never repeats the work.
"""

from __future__ import annotations

import datetime
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import anyio
import httpx

from compiler import ir
from compiler.evaluate import alert_values, condition_holds, service_for
from runtime import incidents as incident_ops
from runtime.notify.messages import APPROVE_ACTION, DENY_ACTION
from runtime.notify.model import Endpoints
from runtime.pipeline import utc_now
from runtime.slack import inbox
from runtime.slack.commands import Command, CommandError, escape, help_text, mention_text, parse_command
from runtime.store import Store
from targets.slack_blocks import ACKNOWLEDGE, START_RESPONSE

log = logging.getLogger("irules.slack")

APPROVE = APPROVE_ACTION
DENY = DENY_ACTION
# Action ids of clicks the bot acts on; clicks on other buttons are acknowledged and dropped.
ACTIONS = (ACKNOWLEDGE, START_RESPONSE, APPROVE, DENY)

# Stored requests handled per call of `process_pending`.
BATCH_SIZE = 50
# How often `run` looks for stored requests when nothing wakes it, and the longest wait after failures.
IDLE_S = 1.0
MAX_RETRY_DELAY_S = 30.0
# Slack redelivers an unanswered event for about 5 minutes; rows are kept much longer than that.
RETENTION = datetime.timedelta(hours=24)
PURGE_EVERY_S = 3600.0
MAX_LISTED_RUNBOOKS = 20
# The `actor` and `assignee` columns of the store are String(200).
MAX_ACTOR = 200
DEFAULT_SLASH_COMMAND = "/incident"
FAILED_TEXT = "The daemon failed to carry out this request; its log has the details."

SecretLookup = Callable[[str], str | None]
_USER_ID = re.compile(r"[UW][A-Z0-9]{1,30}")


@dataclass(frozen=True, slots=True)
class Actor:
    """The Slack user behind a request, with the display name when Slack sent one."""

    user_id: str
    name: str | None = None

    @property
    def label(self) -> str:
        """The actor of timeline entries, such as `slack:U00000001 (zoe)`."""
        label = f"slack:{self.user_id}" + (f" ({self.name})" if self.name else "")
        return label[:MAX_ACTOR]

    @property
    def mention(self) -> str:
        """Mrkdwn that shows the user: a Slack mention when the user id has Slack's form."""
        return f"<@{self.user_id}>" if _USER_ID.fullmatch(self.user_id) else escape(self.label)


@dataclass(frozen=True, slots=True)
class Reply:
    """The mrkdwn reply to a request; `in_channel` shows it to the whole channel, not only to the requester."""

    text: str
    in_channel: bool = False


@dataclass(frozen=True, slots=True)
class ApprovalDecision:
    """A click on `runbook_approve` or `runbook_deny`: the approval id from the button's value, and who clicked."""

    approval_id: str
    approved: bool
    actor: Actor


@dataclass(frozen=True, slots=True)
class RemediationRequest:
    """A `remediate` command: the incident as `runtime.incidents.show` returns it, and the runbooks that apply to it."""

    incident: dict[str, Any]
    runbooks: list[ir.Runbook]
    actor: Actor


ApprovalHandler = Callable[[ApprovalDecision], Awaitable[Reply]]
RemediationHandler = Callable[[RemediationRequest], Awaitable[Reply]]


@dataclass(frozen=True, slots=True)
class _ResponseUrl:
    url: str
    # Set for clicks, so that the reply does not replace the incident message with its buttons.
    replace_original: bool | None = None


@dataclass(frozen=True, slots=True)
class _Thread:
    channel: str
    thread_ts: str


class SlackBot:
    """Stores verified Slack requests and performs them on incidents.

    `ruleset()` returns the rules in force, `secrets(name)` a secret's value or
    `None`. Replies go through `client`, to `endpoints.slack_api` for
    `chat.postMessage` and to `response_url`s under `endpoints.slack_hooks`.

    Three hooks may be replaced after construction: `approvals` and `remediate`,
    which a runbook executor provides, and `on_incident_change()`, called on
    the event loop after the bot changed an incident, to wake the notifier.

    With `send_replies` False (the daemon's `--no-notify`), requests are still
    performed and recorded, but no reply leaves the daemon.
    """

    def __init__(
        self,
        store: Store,
        ruleset: Callable[[], ir.Ruleset],
        secrets: SecretLookup,
        client: httpx.AsyncClient,
        endpoints: Endpoints,
        clock: Callable[[], datetime.datetime] = utc_now,
        *,
        policy: Callable[[], Any] | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.approvals: ApprovalHandler | None = None
        self.remediate: RemediationHandler | None = None
        self.on_incident_change: Callable[[], object] = lambda: None
        self._ruleset = ruleset
        self._policy = policy
        self._secrets = secrets
        self._client = client
        self._endpoints = endpoints
        self._wakeup: anyio.Event | None = None
        self._reported_missing: set[str] = set()
        self.send_replies = True

    # ------------------------------------------------------------ receiving

    def signing_secret(self) -> str | None:
        """Return the signing secret the rules name in `slack`, or `None` (and log why) when there is none."""
        slack = self._ruleset().slack
        if slack is None or slack.signing_secret is None:
            self._log_missing("the rules declare no `signing_secret` in `slack`, so every Slack request is rejected")
            return None
        name = slack.signing_secret.secret
        value = self._secrets(name)
        if not value:
            self._log_missing(f"secret {name} (the Slack signing secret) is not set, so every Slack request is rejected")
        return value or None

    def accept(self, delivery_id: str, kind: str, body: dict[str, Any]) -> bool:
        """Store a verified request unless its delivery id is stored already; return whether it is new.

        This blocks on the store, so the routes call it in a worker thread.
        """
        return inbox.insert_if_absent(self.store, delivery_id, kind, body, self.clock())

    def wake(self) -> None:
        """Make `run` look for stored requests now instead of at its next poll."""
        if self._wakeup is not None:
            self._wakeup.set()

    def _log_missing(self, message: str) -> None:
        # The first time at ERROR, repeats at DEBUG: every request would log it again.
        level = logging.DEBUG if message in self._reported_missing else logging.ERROR
        self._reported_missing.add(message)
        log.log(level, message)

    # ------------------------------------------------------------ the work loop

    async def run(self, stop_event: anyio.Event) -> None:
        """Process stored requests until `stop_event` is set: at once when woken, else every `IDLE_S` seconds.

        Failures of the store are logged and retried with a growing delay, up to
        `MAX_RETRY_DELAY_S`. Processed requests older than `RETENTION` are
        purged once every `PURGE_EVERY_S` seconds.
        """
        self._wakeup = anyio.Event()
        failures = 0
        last_purge = float("-inf")
        async with anyio.create_task_group() as group:
            group.start_soon(self._wake_when_set, stop_event)
            while not stop_event.is_set():
                wait_s = IDLE_S
                try:
                    await self.process_pending()
                    if time.monotonic() - last_purge > PURGE_EVERY_S:
                        last_purge = time.monotonic()
                        purged = await anyio.to_thread.run_sync(self.purge)
                        if purged:
                            log.info("purged %d processed slack requests older than %s", purged, _hours(RETENTION))
                    failures = 0
                except Exception:
                    failures += 1
                    wait_s = min(IDLE_S * 2**failures, MAX_RETRY_DELAY_S)
                    log.exception("slack request processing failed; retrying in %.0f s", wait_s)
                with anyio.move_on_after(wait_s):
                    await self._wakeup.wait()
                # A wake after this line is not lost: it follows a commit that the next pass reads.
                self._wakeup = anyio.Event()
            group.cancel_scope.cancel()

    async def _wake_when_set(self, stop_event: anyio.Event) -> None:
        await stop_event.wait()
        self.wake()

    async def process_pending(self, limit: int = BATCH_SIZE) -> int:
        """Perform up to `limit` stored requests, oldest first, and send their replies; return how many were handled."""
        requests = await anyio.to_thread.run_sync(inbox.pending, self.store, limit)
        for request in requests:
            await self._process(request)
        return len(requests)

    def purge(self, older_than: datetime.timedelta = RETENTION) -> int:
        """Delete processed requests received more than `older_than` ago; return how many were deleted.

        This blocks on the store. Unprocessed requests are kept.

        Raises:
            ValueError: `older_than` is shorter than `RETENTION`, which would let a
                late redelivery of a deleted request be acted on again.
        """
        if older_than < RETENTION:
            raise ValueError(
                f"older_than is {_hours(older_than)}; slack requests are kept at least {_hours(RETENTION)}, "
                "so that a late redelivery is recognised"
            )
        return inbox.purge(self.store, self.clock() - older_than)

    async def _process(self, request: inbox.StoredRequest) -> None:
        target: _ResponseUrl | _Thread | None = None
        try:
            target = _reply_target(request)
            reply = await self._answer(request, _actor(request))
        except Exception:
            log.exception("slack request %s (%s) failed", request.delivery_id, request.kind)
            reply = Reply(FAILED_TEXT)
        # A crash between the incident operation's commit and this one repeats the operation
        # after a restart. Acknowledging and resolving are idempotent, and `create` marks the
        # request processed in its own transaction, so no request opens two incidents.
        await anyio.to_thread.run_sync(inbox.finish, self.store, request.delivery_id, reply.text, self.clock())
        log.info("slack request %s (%s) processed", request.delivery_id, request.kind)
        if target is not None:
            await self._send(request.delivery_id, target, reply)

    async def _answer(self, request: inbox.StoredRequest, actor: Actor) -> Reply:
        try:
            if request.kind == inbox.INTERACTION:
                return await self._click(request.body, actor)
            try:
                command = parse_command(_command_text(request))
            except CommandError as error:
                return Reply(f"{error}\n\n{help_text(self._slash_command())}")
            return await self._run_command(command, actor, request.delivery_id)
        except CommandError as error:
            return Reply(str(error))
        except incident_ops.IncidentError as error:
            return Reply(escape(str(error)))

    # ------------------------------------------------------------ commands

    async def _run_command(self, command: Command, actor: Actor, delivery_id: str) -> Reply:
        if command.name == "help":
            return Reply(help_text(self._slash_command()))
        assert command.incident is not None or command.name == "create", "the parser sets the incident of every other command"
        if command.name == "remediate":
            return await self._remediate(command.incident or "", actor)
        if command.name == "status":
            incident = await anyio.to_thread.run_sync(incident_ops.show, self.store, command.incident)
            return Reply(_status_text(incident, self._incident_url(incident["id"])))
        if command.name == "create":
            operation = partial(self._create, command, actor, delivery_id)
        elif command.name == "ack":
            operation = partial(self._acknowledge, command.incident, actor)
        else:
            operation = partial(self._resolve, command.incident, command.note, actor)
        reply, changed = await anyio.to_thread.run_sync(operation)
        if changed:
            self.on_incident_change()
        return reply

    def _create(self, command: Command, actor: Actor, delivery_id: str) -> tuple[Reply, bool]:
        ruleset = self._ruleset()
        team = _team_of(ruleset, command.services)
        options: dict[str, Any] = {} if self._policy is None else {"policy": self._policy()}
        now = self.clock()
        options["within"] = lambda connection: inbox.mark_processed(connection, delivery_id, "incident created", now)
        row = incident_ops.create(
            self.store,
            ruleset.settings.incident_id_format,
            self.clock(),
            title=command.title or "",
            severity=command.severity,
            services=list(command.services),
            team=team,
            actor=actor.label,
            **options,
        )
        facts = [f"severity {row['severity']}" if row["severity"] else "no severity"]
        if row["services"]:
            facts.append("services " + ", ".join(escape(name) for name in row["services"]))
        if row["team"]:
            facts.append(f"team {escape(row['team'])}")
        text = f"{actor.mention} opened *{escape(row['key'])}*: {escape(row['title'])} ({'; '.join(facts)})"
        return Reply(text, in_channel=True), True

    def _acknowledge(self, reference: str, actor: Actor) -> tuple[Reply, bool]:
        before = self._incident(reference)
        if before["acknowledged_at"] is not None and before["status"] not in incident_ops.ENDED:
            by = escape(before["acknowledged_by"] or "someone")
            return Reply(f"*{escape(before['key'])}* was already acknowledged by {by}."), False
        row = incident_ops.acknowledge(self.store, reference, actor.label, self.clock())
        text = f"{actor.mention} acknowledged *{escape(row['key'])}*; its status is {row['status']}."
        return Reply(text, in_channel=True), True

    def _resolve(self, reference: str, note: str | None, actor: Actor) -> tuple[Reply, bool]:
        before = self._incident(reference)
        if before["status"] == "resolved":
            return Reply(f"*{escape(before['key'])}* is already resolved."), False
        change = incident_ops.Change(status="resolved", note=note)
        row = incident_ops.update(self.store, reference, change, actor.label, self.clock())
        text = f"{actor.mention} resolved *{escape(row['key'])}*" + (f": {escape(note)}" if note else ".")
        return Reply(text, in_channel=True), True

    def _incident(self, reference: str) -> Any:
        """Read the incident before a change, to tell the requester when there is nothing to change."""
        with self.store.read() as connection:
            return incident_ops.get_row(connection, reference)

    def _start_response(self, reference: str, actor: Actor) -> tuple[Reply, bool]:
        """Acknowledge the incident, assign it to the user and move it to `investigating`, each with its timeline entry."""
        row = incident_ops.acknowledge(self.store, reference, actor.label, self.clock())
        status = "investigating" if row["status"] in ("detected", "triaged") else None
        change = incident_ops.Change(status=status, assignee=actor.label)
        row = incident_ops.update(self.store, row["key"], change, actor.label, self.clock())
        text = f"{actor.mention} started the response to *{escape(row['key'])}*: assigned to them, status {row['status']}."
        return Reply(text, in_channel=True), True

    async def _remediate(self, reference: str, actor: Actor) -> Reply:
        incident = await anyio.to_thread.run_sync(incident_ops.show, self.store, reference)
        runbooks = applicable_runbooks(self._ruleset(), incident, self.clock())
        if self.remediate is not None:
            return await self.remediate(RemediationRequest(incident, runbooks, actor))
        return Reply(_runbook_list(incident["id"], runbooks))

    # ------------------------------------------------------------ clicks

    async def _click(self, payload: dict[str, Any], actor: Actor) -> Reply:
        action = next(item for item in payload["actions"] if item.get("action_id") in ACTIONS)
        action_id = action["action_id"]
        value = str(action.get("value") or "")
        if action_id in (APPROVE, DENY):
            if self.approvals is None:
                return Reply(f"No runbook step is waiting for approval `{escape(value)}`: this daemon runs no runbooks yet.")
            return await self.approvals(ApprovalDecision(value, action_id == APPROVE, actor))
        if action_id == ACKNOWLEDGE:
            operation = partial(self._acknowledge, value, actor)
        else:
            operation = partial(self._start_response, value, actor)
        reply, changed = await anyio.to_thread.run_sync(operation)
        if changed:
            self.on_incident_change()
        return reply

    # ------------------------------------------------------------ replies

    async def _send(self, delivery_id: str, target: _ResponseUrl | _Thread, reply: Reply) -> None:
        """Send a reply; a failure is logged, because the request's work is done and recorded already."""
        if not self.send_replies:
            log.info("slack reply to request %s not sent: the daemon runs with --no-notify", delivery_id)
            return
        try:
            if isinstance(target, _ResponseUrl):
                await self._respond(delivery_id, target, reply)
            else:
                await self._post_in_thread(delivery_id, target, reply)
        except httpx.HTTPError as error:
            log.warning("slack reply to request %s failed: %s: %s", delivery_id, type(error).__name__, error)

    async def _respond(self, delivery_id: str, target: _ResponseUrl, reply: Reply) -> None:
        hooks = self._endpoints.slack_hooks
        if not target.url.startswith(hooks if hooks.endswith("/") else hooks + "/"):
            # A signed request names another host only when the signing secret leaked, so nothing is posted there.
            log.warning("slack reply to request %s not sent: its response_url is not under %s", delivery_id, hooks)
            return
        message: dict[str, Any] = {"response_type": "in_channel" if reply.in_channel else "ephemeral", "text": reply.text}
        if target.replace_original is not None:
            message["replace_original"] = target.replace_original
        response = await self._client.post(target.url, json=message, timeout=self._endpoints.timeout_s)
        if response.is_success:
            return
        log.warning("slack reply to request %s failed: response_url returned HTTP %d", delivery_id, response.status_code)

    async def _post_in_thread(self, delivery_id: str, target: _Thread, reply: Reply) -> None:
        slack = self._ruleset().slack
        token = self._secrets(slack.token.secret) if slack is not None and slack.token is not None else None
        if not token:
            log.error(
                "slack reply to request %s not sent: no bot token, because `token` in `slack` names no secret or its secret is not set",
                delivery_id,
            )
            return
        response = await self._client.post(
            self._endpoints.slack_api.rstrip("/") + "/chat.postMessage",
            json={"channel": target.channel, "thread_ts": target.thread_ts, "text": reply.text},
            headers={"Authorization": f"Bearer {token}"},
            timeout=self._endpoints.timeout_s,
        )
        if response.status_code == 429:
            retry_after = response.headers.get("retry-after", "?")
            log.warning(
                "slack reply to request %s not sent: chat.postMessage is rate limited (Retry-After %s s)",
                delivery_id,
                retry_after,
            )
            return
        try:
            answer = response.json() if response.is_success else {}
        except ValueError:
            answer = {}
        if not answer.get("ok"):
            error = answer.get("error") or f"HTTP {response.status_code}"
            log.warning("slack reply to request %s failed: chat.postMessage returned %s", delivery_id, error)

    # ------------------------------------------------------------ rules

    def _slash_command(self) -> str:
        slack = self._ruleset().slack
        return slack.command if slack is not None else DEFAULT_SLASH_COMMAND

    def _incident_url(self, key: str) -> str | None:
        settings = self._ruleset().settings
        base = settings.incident_url or settings.daemon_url
        return None if not base else f"{base.rstrip('/')}/incidents/{key}"


# ---------------------------------------------------------------- reading stored requests


def _actor(request: inbox.StoredRequest) -> Actor:
    body = request.body
    if request.kind == inbox.COMMAND:
        return Actor(str(body["user_id"]), body.get("user_name") or None)
    if request.kind == inbox.INTERACTION:
        user = body["user"]
        return Actor(str(user["id"]), user.get("username") or user.get("name") or None)
    return Actor(str(body["event"]["user"]))


def _command_text(request: inbox.StoredRequest) -> str:
    if request.kind == inbox.COMMAND:
        return str(request.body.get("text") or "")
    return mention_text(str(request.body["event"].get("text") or ""))


def _reply_target(request: inbox.StoredRequest) -> _ResponseUrl | _Thread:
    body = request.body
    if request.kind == inbox.COMMAND:
        return _ResponseUrl(str(body["response_url"]))
    if request.kind == inbox.INTERACTION:
        return _ResponseUrl(str(body["response_url"]), replace_original=False)
    event = body["event"]
    return _Thread(str(event["channel"]), str(event.get("thread_ts") or event["ts"]))


# ---------------------------------------------------------------- incidents and runbooks


def _team_of(ruleset: ir.Ruleset, services: tuple[str, ...]) -> str | None:
    """Return the team of the first named service that has one; reject names the rules do not declare."""
    declared = {service.name: service for service in ruleset.services}
    unknown = [name for name in services if declared and name not in declared]
    if unknown:
        known = ", ".join(sorted(declared)[:10]) + (", …" if len(declared) > 10 else "")
        raise CommandError(f"Unknown service `{escape(unknown[0])}`; the rules declare {escape(known)}.")
    return next((declared[name].team for name in services if name in declared and declared[name].team), None)


def applicable_runbooks(ruleset: ir.Ruleset, incident: dict[str, Any], now: datetime.datetime) -> list[ir.Runbook]:
    """Return the runbooks for an incident as `runtime.incidents.show` returns it, in the order of the rules.

    A runbook applies when its `when` is true for one of the incident's alerts
    (or, without alerts, for the incident alone) together with one of its
    services. A runbook without `when` is started by hand only, so it applies to
    every incident.
    """
    named = [service for service in ruleset.services if service.name in incident["services"]]
    samples = [(alert["labels"], alert["annotations"]) for alert in incident["alerts"]] or [({}, {})]
    created = datetime.datetime.fromisoformat(incident["created_at"])
    candidates = []
    for labels, alert_annotations in samples:
        for service in named or [service_for(ruleset, labels)]:
            facts = {
                "severity": incident["severity"],
                "status": incident["status"],
                "age": now - created,
                "alert_count": incident["alert_count"],
                "title": incident["title"],
                "service": service.name if service else None,
                "team": incident["team"] or (service.team if service else None),
            }
            candidates.append(alert_values(labels, alert_annotations, service, facts))
    return [
        runbook
        for runbook in ruleset.runbooks
        if runbook.when is None or any(condition_holds(runbook.when, values) for values in candidates)
    ]


def _runbook_list(key: str, runbooks: list[ir.Runbook]) -> str:
    if not runbooks:
        return f"No runbook applies to *{escape(key)}*."
    lines = [f"Runbooks for *{escape(key)}*:"]
    for runbook in runbooks[:MAX_LISTED_RUNBOOKS]:
        title = f" {escape(runbook.title)}" if runbook.title else ""
        lines.append(f"• `{escape(runbook.id)}`{title} ({'auto' if runbook.auto else 'manual'}, risk {runbook.risk})")
    if len(runbooks) > MAX_LISTED_RUNBOOKS:
        lines.append(f"…and {len(runbooks) - MAX_LISTED_RUNBOOKS} more.")
    lines.append(
        "Starting runbooks from Slack needs the runbook executor, which this daemon does not have yet; nothing was started."
    )
    return "\n".join(lines)


def _hours(duration: datetime.timedelta) -> str:
    return f"{duration.total_seconds() / 3600:g} h"


def _status_text(incident: dict[str, Any], url: str | None) -> str:
    lines = [f"*{escape(incident['id'])}* · {escape(incident['title'])}"]
    facts = [f"Status: {incident['status']}", f"Severity: {incident['severity'] or 'none'}"]
    if incident["team"]:
        facts.append(f"Team: {escape(incident['team'])}")
    lines.append(" · ".join(facts))
    if incident["services"]:
        lines.append("Services: " + ", ".join(escape(name) for name in incident["services"]))
    if incident["assignee"]:
        lines.append(f"Assignee: {escape(incident['assignee'])}")
    if incident["acknowledged_by"]:
        lines.append(f"Acknowledged by {escape(incident['acknowledged_by'])} at {incident['acknowledged_at']}")
    lines.append(f"Alerts: {incident['firing_count']} firing of {incident['alert_count']}")
    opened = f"Opened {incident['created_at']}"
    lines.append(opened + (f", resolved {incident['resolved_at']}" if incident["resolved_at"] else ""))
    if url:
        lines.append(f"<{url}|Open in irules>")
    return "\n".join(lines)
