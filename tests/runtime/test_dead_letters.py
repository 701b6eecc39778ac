"""Dead letters on SQLite and PostgreSQL: replay outcomes on the letter, bulk replays, dismissal, retention, migration."""

from __future__ import annotations

import datetime
import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import sqlalchemy as sa
from click.testing import Result
from typer.testing import CliRunner

from compiler import ir
from runtime import dead_letters
from runtime.cli import app
from runtime.daemon.app import build_app
from runtime.daemon.openapi import openapi_document
from runtime.daemon.rules import load_ruleset
from runtime.daemon.service import Daemon, DaemonConfig
from runtime.incidents import IncidentError
from runtime.pipeline import insert_dead_letter
from runtime.retention import RetentionSettings, purge
from runtime.store import Store
from runtime.store.schema import dead_letters as dead_letters_table
from tests.runtime.daemon_process import DaemonProcess, fixture_bytes

NOW = datetime.datetime(2026, 12, 5, 17, 50, 30, tzinfo=datetime.UTC)
HOUR = datetime.timedelta(hours=1)
DAY = datetime.timedelta(days=1)
RULES = """
source alertmanager {
  auth bearer secret("ALERTMANAGER_WEBHOOK_TOKEN")
}

receiver ops {
  webhook "http://127.0.0.1:9/ops"
}

route {
  receiver ops
}
"""
HEADERS = {"content-type": "application/json"}
MALFORMED = b'{"version": "4", '
CLI_ENVIRONMENT: dict[str, str | None] = {
    name: None for name in ("IRULES_STATE", "IRULES_DATABASE", "IRULES_DAEMON", "IRULES_API_TOKEN", "IRULES_ACTOR")
}


@pytest.fixture
def rules(tmp_path: Path) -> Path:
    folder = tmp_path / "rules"
    folder.mkdir()
    (folder / "rules.irules").write_text(RULES, encoding="utf-8")
    return folder


@pytest.fixture
def ruleset(rules: Path) -> ir.Ruleset:
    return load_ruleset(rules, None)


def add_letter(
    store: Store,
    body: bytes,
    *,
    status: int = 400,
    reason: str = "body is not valid JSON",
    received_at: datetime.datetime = NOW - HOUR,
) -> int:
    with store.write() as connection:
        return insert_dead_letter(connection, "alertmanager", received_at, status, reason, body, HEADERS)


def listed(store: Store, **filters: Any) -> dict[int, dict[str, Any]]:
    return {row["id"]: row for row in dead_letters.list_dead_letters(store, **filters)}


def two_alerts() -> bytes:
    return fixture_bytes("alertmanager/firing-two-alerts.json")


# ---------------------------------------------------------------- replay outcomes on the letter


def test_failed_replay_recorded_on_letter(store: Store, ruleset: ir.Ruleset) -> None:
    number = add_letter(store, MALFORMED)

    result = dead_letters.replay(store, ruleset, number, NOW)

    assert (result["outcome"], result["payload_id"]) == ("failed", None)
    assert result["detail"].startswith("400: ")
    letter = listed(store)[number]
    assert letter["state"] == "failed"
    assert letter["replay_attempted_at"] == NOW.isoformat()
    assert letter["replay_status"] == 400
    assert letter["replay_outcome"] == result["detail"]
    assert (letter["replayed_at"], letter["payload_id"]) == (None, None)


def test_later_failure_replaces_earlier(store: Store, ruleset: ir.Ruleset) -> None:
    number = add_letter(store, MALFORMED)
    dead_letters.replay(store, ruleset, number, NOW)

    dead_letters.replay(store, ruleset, number, NOW + HOUR)

    assert listed(store)[number]["replay_attempted_at"] == (NOW + HOUR).isoformat()


def test_cut_body_fails_without_status(store: Store, ruleset: ir.Ruleset) -> None:
    with store.write() as connection:
        number = insert_dead_letter(connection, "alertmanager", NOW - HOUR, 400, "r", two_alerts(), HEADERS, body_limit=10)

    result = dead_letters.replay(store, ruleset, number, NOW)

    assert result["outcome"] == "failed"
    letter = listed(store)[number]
    assert (letter["state"], letter["replay_status"]) == ("failed", None)
    assert letter["replay_outcome"] == "the stored body was cut at the size limit; it cannot be replayed"


def test_form_posted_json_replays_as_json(store: Store, ruleset: ir.Ruleset) -> None:
    # curl without -H "Content-Type: ..." posts JSON as a form, which got 415 to show the sender its mistake.
    form = {"content-type": "application/x-www-form-urlencoded", "user-agent": "curl/8.5.0"}
    with store.write() as connection:
        number = insert_dead_letter(connection, "alertmanager", NOW - HOUR, 415, "unsupported Content-Type", two_alerts(), form)

    result = dead_letters.replay(store, ruleset, number, NOW)

    assert result["outcome"] == "replayed"
    assert listed(store)[number]["replay_outcome"] == "replayed: 2 alerts"


def test_successful_replay_clears_failure_status(store: Store, ruleset: ir.Ruleset) -> None:
    number = add_letter(store, two_alerts())
    with store.write() as connection:
        # As if an earlier replay under broken rules had failed.
        connection.execute(
            dead_letters_table.update().values(replay_attempted_at=NOW - HOUR, replay_status=422, replay_outcome="422: no")
        )

    result = dead_letters.replay(store, ruleset, number, NOW)

    assert result["outcome"] == "replayed"
    letter = listed(store)[number]
    assert letter["state"] == "replayed"
    assert (letter["replayed_at"], letter["replay_attempted_at"]) == (NOW.isoformat(), NOW.isoformat())
    assert (letter["replay_status"], letter["replay_outcome"]) == (None, "replayed: 2 alerts")
    assert letter["payload_id"] == result["payload_id"]


def test_named_dismissed_letter_is_replayed(store: Store, ruleset: ir.Ruleset) -> None:
    number = add_letter(store, two_alerts())
    dead_letters.dismiss(store, number, "noise", "alice", NOW - HOUR)

    result = dead_letters.replay(store, ruleset, number, NOW)

    assert result["outcome"] == "replayed"
    letter = listed(store, states=["replayed"])[number]
    # The dismissal stays on record beside the replay.
    assert (letter["dismissed_by"], letter["dismiss_reason"]) == ("alice", "noise")


# ---------------------------------------------------------------- states and listing


def test_each_letter_has_one_state(store: Store, ruleset: ir.Ruleset) -> None:
    pending = add_letter(store, MALFORMED)
    failed = add_letter(store, MALFORMED)
    dead_letters.replay(store, ruleset, failed, NOW)
    replayed = add_letter(store, two_alerts())
    dead_letters.replay(store, ruleset, replayed, NOW)
    dismissed = add_letter(store, MALFORMED)
    dead_letters.dismiss(store, dismissed, None, "alice", NOW)
    untrusted = add_letter(store, two_alerts(), status=403, reason="wrong token")
    dismissed_untrusted = add_letter(store, two_alerts(), status=401, reason="no token")
    dead_letters.dismiss(store, dismissed_untrusted, None, "alice", NOW)

    states = {number: row["state"] for number, row in listed(store).items()}

    assert states == {
        pending: "pending",
        failed: "failed",
        replayed: "replayed",
        dismissed: "dismissed",
        untrusted: "untrusted",
        dismissed_untrusted: "dismissed",
    }
    assert list(listed(store, states=["pending", "failed"])) == [failed, pending]
    assert list(listed(store, states=["dismissed"])) == [dismissed_untrusted, dismissed]
    assert listed(store, states=[]) == {}


def test_list_pages_back_with_before(store: Store) -> None:
    numbers = [add_letter(store, MALFORMED) for _ in range(5)]

    first = dead_letters.list_dead_letters(store, limit=2)
    second = dead_letters.list_dead_letters(store, limit=2, before=first[-1]["id"])
    third = dead_letters.list_dead_letters(store, limit=2, before=second[-1]["id"])

    assert [row["id"] for row in first + second + third] == numbers[::-1]


def test_list_reports_body_size(store: Store) -> None:
    number = add_letter(store, MALFORMED)

    assert listed(store)[number]["size"] == len(MALFORMED)


def test_list_rejects_unknown_state(store: Store) -> None:
    with pytest.raises(IncidentError) as raised:
        dead_letters.list_dead_letters(store, states=["pending", "stuck"])

    assert raised.value.status == 400
    assert str(raised.value) == (
        "unknown dead letter state stuck: expected one of pending, failed, replayed, dismissed, untrusted"
    )


# ---------------------------------------------------------------- dismissal


def test_dismiss_keeps_letter_for_audit(store: Store) -> None:
    number = add_letter(store, MALFORMED)

    result = dead_letters.dismiss(store, number, "  sender fixed, resent  ", "alice", NOW)

    assert result == {"id": number, "outcome": "dismissed", "detail": "sender fixed, resent"}
    letter = listed(store)[number]
    assert letter["state"] == "dismissed"
    assert (letter["dismissed_at"], letter["dismissed_by"]) == (NOW.isoformat(), "alice")
    assert letter["dismiss_reason"] == "sender fixed, resent"
    assert letter["reason"] == "body is not valid JSON"


def test_blank_dismiss_reason_is_none(store: Store) -> None:
    number = add_letter(store, MALFORMED)

    result = dead_letters.dismiss(store, number, "  \n ", "alice", NOW)

    assert result["detail"] is None
    assert listed(store)[number]["dismiss_reason"] is None


def test_second_dismissal_keeps_first(store: Store) -> None:
    number = add_letter(store, MALFORMED)
    dead_letters.dismiss(store, number, "first", "alice", NOW)

    result = dead_letters.dismiss(store, number, "second", "bob", NOW + HOUR)

    assert result["outcome"] == "already dismissed"
    assert result["detail"] == "dismissed at 2026-12-05 17:50 UTC by alice"
    letter = listed(store)[number]
    assert (letter["dismissed_at"], letter["dismissed_by"], letter["dismiss_reason"]) == (NOW.isoformat(), "alice", "first")


def test_replayed_letter_is_not_dismissed(store: Store, ruleset: ir.Ruleset) -> None:
    number = add_letter(store, two_alerts())
    payload = dead_letters.replay(store, ruleset, number, NOW)["payload_id"]

    result = dead_letters.dismiss(store, number, None, "alice", NOW + HOUR)

    assert result["outcome"] == "already replayed"
    assert result["detail"] == f"replayed as payload {payload} at 2026-12-05 17:50 UTC; it was not dismissed"
    letter = listed(store)[number]
    assert (letter["state"], letter["dismissed_at"]) == ("replayed", None)


def test_dismiss_unknown_letter(store: Store) -> None:
    with pytest.raises(IncidentError) as raised:
        dead_letters.dismiss(store, 404, None, "alice", NOW)

    assert (raised.value.status, str(raised.value)) == (404, "dead letter 404 not found")


# ---------------------------------------------------------------- retention


def test_retention_purges_every_state(store: Store, ruleset: ir.Ruleset) -> None:
    old = NOW - 3 * DAY
    old_letters = [add_letter(store, MALFORMED, received_at=old) for _ in range(4)]
    old_letters.append(add_letter(store, two_alerts(), status=403, reason="wrong token", received_at=old))
    dead_letters.replay(store, ruleset, old_letters[1], NOW)  # failed
    dead_letters.dismiss(store, old_letters[2], None, "alice", NOW)
    with store.write() as connection:
        connection.execute(
            dead_letters_table.update()
            .where(dead_letters_table.c.id == old_letters[3])
            .values(replayed_at=NOW, payload_id=1, replay_outcome="replayed: 1 alerts")
        )
    recent_failed = add_letter(store, MALFORMED, received_at=NOW - HOUR)
    dead_letters.replay(store, ruleset, recent_failed, NOW)
    recent_dismissed = add_letter(store, MALFORMED, received_at=NOW - HOUR)
    dead_letters.dismiss(store, recent_dismissed, None, "alice", NOW)
    assert {listed(store)[number]["state"] for number in old_letters} == {
        "pending",
        "failed",
        "dismissed",
        "replayed",
        "untrusted",
    }

    deleted = purge(store, RetentionSettings(dead_letters_s=2 * DAY.total_seconds(), batch=2), NOW)

    assert deleted["dead_letters"] == len(old_letters)
    assert sorted(listed(store)) == [recent_failed, recent_dismissed]


# ---------------------------------------------------------------- migration


def test_upgrade_from_0009_keeps_letters(store_url: str) -> None:
    from alembic import command
    from alembic.config import Config

    import runtime.store

    config = Config()
    config.set_main_option("script_location", str(Path(runtime.store.__file__).with_name("migrations")))
    old_store = Store.create(store_url)
    try:
        with old_store.write() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "0009")
            values = {"source": "alertmanager", "received_at": NOW, "status": 400, "reason": "r", "headers": {}}
            for body, outcome in ((MALFORMED, None), (MALFORMED, "400: body is not valid JSON")):
                connection.execute(
                    sa.insert(dead_letters_table).values(**values, body=body, body_truncated=False, replay_outcome=outcome)
                )
            old_columns = {column["name"] for column in sa.inspect(connection).get_columns("dead_letters")}
    finally:
        old_store.close()
    assert "dismissed_at" not in old_columns

    store = Store.open(store_url)
    try:
        new_columns = {column["name"] for column in sa.inspect(store.engine).get_columns("dead_letters")}
        letters = dead_letters.list_dead_letters(store)
        revision = store.schema_revision()
    finally:
        store.close()

    assert revision == "0010"
    assert new_columns - old_columns == {"replay_attempted_at", "replay_status", "dismissed_at", "dismissed_by", "dismiss_reason"}
    # A replay that failed before the upgrade counts as failed, with no time or status on record.
    assert [(row["state"], row["replay_attempted_at"], row["replay_status"]) for row in letters] == [
        ("failed", None, None),
        ("pending", None, None),
    ]
    assert [row["size"] for row in letters] == [len(MALFORMED), len(MALFORMED)]


# ---------------------------------------------------------------- CLI on a local store


def irules(*args: str) -> Result:
    result = CliRunner().invoke(app, list(args), env=CLI_ENVIRONMENT)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return result


@pytest.fixture
def local(store: Store, store_url: str) -> list[str]:
    """Return the CLI options that reach `store` directly: `--database URL`."""
    return ["--database", store_url]


def listed_by_cli(local: list[str], *options: str) -> dict[int, dict[str, Any]]:
    result = irules("dead-letters", "list", *local, *options, "--format", "json")
    assert result.exit_code == 0, result.output
    return {row["id"]: row for row in json.loads(result.stdout)}


def table_line(local: list[str], number: int, *options: str) -> str:
    lines = irules("dead-letters", "list", *local, *options).stdout.splitlines()
    (line,) = [line for line in lines if line.split()[0] == str(number)]
    return line


def test_bulk_replay_skips_failed_letters(store: Store, local: list[str], rules: Path) -> None:
    malformed = add_letter(store, MALFORMED)
    readable = add_letter(store, two_alerts())
    replay = ["replay", *local, "--rules", str(rules)]

    first = irules(*replay)
    assert first.exit_code == 1, first.output
    lines = first.stdout.splitlines()
    assert lines[0].startswith(f"dead letter {malformed}: failed (400: ")
    assert lines[1] == f"dead letter {readable}: replayed (replayed: 2 alerts)"
    assert len(lines) == 2

    # Nothing is left that has not failed before: the run succeeds, tries nothing and prints how to retry.
    attempted = listed_by_cli(local)[malformed]["replay_attempted_at"]
    second = irules(*replay)
    assert second.exit_code == 0, second.output
    assert second.stdout == (
        f"skipped 1 dead letter whose last replay failed ({malformed}); "
        "to replay it again, name the ids or run `irules replay --retry-failed`\n"
    )
    assert listed_by_cli(local)[malformed]["replay_attempted_at"] == attempted

    retried = irules(*replay, "--retry-failed")
    assert retried.exit_code == 1, retried.output
    assert retried.stdout.startswith(f"dead letter {malformed}: failed (400: ")

    named = irules(*replay, str(malformed))
    assert named.exit_code == 1, named.output
    assert named.stdout.startswith(f"dead letter {malformed}: failed (400: ")


def test_bulk_replay_json_lists_skipped(store: Store, local: list[str], rules: Path, ruleset: ir.Ruleset) -> None:
    malformed = add_letter(store, MALFORMED)
    dead_letters.replay(store, ruleset, malformed, NOW)
    readable = add_letter(store, two_alerts())

    result = irules("replay", *local, "--rules", str(rules), "--format", "json")

    assert result.exit_code == 0, result.output
    outcomes = json.loads(result.stdout)
    assert [(outcome["id"], outcome["outcome"]) for outcome in outcomes] == [(readable, "replayed"), (malformed, "skipped")]
    assert outcomes[1]["detail"] == "its last replay failed; name its id or pass --retry-failed to replay it again"


def test_bulk_replay_leaves_out_dismissed(store: Store, local: list[str], rules: Path) -> None:
    dismissed = add_letter(store, two_alerts())
    dead_letters.dismiss(store, dismissed, None, "alice", NOW)

    result = irules("replay", *local, "--rules", str(rules), "--retry-failed")

    assert (result.exit_code, result.stdout) == (0, "no dead letters to replay\n")
    assert listed(store, states=["dismissed"])[dismissed]["replayed_at"] is None


def test_list_shows_failed_replay(store: Store, local: list[str], rules: Path) -> None:
    number = add_letter(store, MALFORMED)
    pending = add_letter(store, MALFORMED)
    irules("replay", str(number), *local, "--rules", str(rules))

    letter = listed_by_cli(local)[number]
    line = table_line(local, number)

    assert (letter["state"], letter["replay_status"]) == ("failed", 400)
    attempted = letter["replay_attempted_at"][:16].replace("T", " ")
    assert f"failed {attempted} (400: " in line
    assert "pending" not in line
    assert "  pending  " in table_line(local, pending)


def test_list_cuts_long_replay_reason(store: Store, local: list[str]) -> None:
    number = add_letter(store, MALFORMED)
    with store.write() as connection:
        connection.execute(
            dead_letters_table.update().values(
                replay_attempted_at=NOW, replay_status=422, replay_outcome="422: unknown format\n" + "x" * 100
            )
        )

    line = table_line(local, number)

    # 40 characters: the newline becomes a space, and the last one is the ellipsis.
    assert f"failed 2026-12-05 17:50 (422: unknown format {'x' * 19}…)" in line


def test_dismiss_hides_letter_from_list(store: Store, local: list[str]) -> None:
    visible = add_letter(store, MALFORMED)
    first, second = add_letter(store, MALFORMED), add_letter(store, MALFORMED)

    result = irules("dead-letters", "dismiss", str(first), str(second), *local, "--reason", "test traffic", "--as", "alice")

    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        f"dead letter {first}: dismissed (test traffic)",
        f"dead letter {second}: dismissed (test traffic)",
    ]
    assert list(listed_by_cli(local)) == [visible]
    everything = listed_by_cli(local, "--all")
    assert sorted(everything) == [visible, first, second]
    assert (everything[first]["state"], everything[first]["dismissed_by"]) == ("dismissed", "alice")
    assert everything[first]["dismiss_reason"] == "test traffic"
    dismissed_at = everything[first]["dismissed_at"][:16].replace("T", " ")
    assert f"dismissed {dismissed_at} by alice (test traffic)" in table_line(local, first, "--all")


def test_dismiss_unknown_id_stops(store: Store, local: list[str]) -> None:
    number = add_letter(store, MALFORMED)

    result = irules("dead-letters", "dismiss", str(number), "999", *local, "--as", "alice")

    assert result.exit_code == 1
    assert result.stdout == f"dead letter {number}: dismissed\n"
    assert result.stderr == "irules: dead letter 999 not found\n"


def test_dismiss_on_state_folder(tmp_path: Path) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'state' / 'irules.db'}")
    try:
        number = add_letter(store, MALFORMED)
    finally:
        store.close()

    result = irules("dead-letters", "dismiss", str(number), "--state", str(tmp_path / "state"), "--format", "json")

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == [{"id": number, "outcome": "dismissed", "detail": None}]


# ---------------------------------------------------------------- HTTP API, in process


@asynccontextmanager
async def serving(store_url: str, rules: Path) -> AsyncIterator[httpx.AsyncClient]:
    daemon = Daemon(
        DaemonConfig(rules=rules, environment=None, database_url=store_url, watch=False, notify=False, runbooks=False)
    )
    await daemon.start()
    assert daemon.writer is not None and daemon.store is not None
    try:
        async with anyio.create_task_group() as group:
            group.start_soon(daemon.writer.run)
            transport = httpx.ASGITransport(app=build_app(daemon))
            async with httpx.AsyncClient(transport=transport, base_url="http://daemon") as client:
                yield client
            daemon.writer.close()
    finally:
        daemon.store.close()


def test_api_dismisses_and_filters(store: Store, store_url: str, rules: Path) -> None:
    first, second = add_letter(store, MALFORMED), add_letter(store, MALFORMED)

    async def main() -> None:
        async with serving(store_url, rules) as client:
            response = await client.post(f"/api/v1/dead-letters/{first}/dismiss", json={"reason": "noise", "actor": "bob"})
            assert response.status_code == 200, response.text
            assert response.json() == {"id": first, "outcome": "dismissed", "detail": "noise"}

            response = await client.get("/api/v1/dead-letters", params={"state": ["pending", "failed"]})
            assert [row["id"] for row in response.json()["dead_letters"]] == [second]
            response = await client.get("/api/v1/dead-letters", params={"state": "dismissed"})
            (letter,) = response.json()["dead_letters"]
            assert (letter["id"], letter["dismissed_by"], letter["dismiss_reason"]) == (first, "bob", "noise")
            response = await client.get("/api/v1/dead-letters", params={"limit": 1, "before": second})
            assert [row["id"] for row in response.json()["dead_letters"]] == [first]

    anyio.run(main)


@pytest.mark.parametrize(
    ("method", "path", "request_options", "status", "error"),
    [
        ("GET", "/api/v1/dead-letters", {"params": {"state": "stuck"}}, 400, "unknown dead letter state stuck"),
        ("GET", "/api/v1/dead-letters", {"params": {"limit": "0"}}, 400, "`limit` must be at least 1, not 0"),
        ("GET", "/api/v1/dead-letters", {"params": {"before": "x"}}, 400, "`limit` and `before` must be whole numbers"),
        ("POST", "/api/v1/dead-letters/x/dismiss", {}, 400, "dead letter ids are whole numbers"),
        ("POST", "/api/v1/dead-letters/999/dismiss", {}, 404, "dead letter 999 not found"),
        ("POST", "/api/v1/dead-letters/1/dismiss", {"json": {"reason": 5}}, 400, "field `reason` must be a string"),
    ],
    ids=["unknown state", "zero limit", "text before", "text id", "unknown id", "reason not text"],
)
def test_api_rejects_bad_requests(
    store: Store, store_url: str, rules: Path, method: str, path: str, request_options: dict[str, Any], status: int, error: str
) -> None:
    add_letter(store, MALFORMED)

    async def main() -> None:
        async with serving(store_url, rules) as client:
            response = await client.request(method, path, **request_options)
            assert response.status_code == status, response.text
            assert response.json()["error"].startswith(error)

    anyio.run(main)


def test_openapi_lists_every_state() -> None:
    document = openapi_document()

    assert document["components"]["schemas"]["DeadLetter"]["properties"]["state"]["enum"] == list(dead_letters.STATES)


# ---------------------------------------------------------------- CLI through a daemon


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    base = tmp_path_factory.mktemp("dead-letters")
    (base / "rules").mkdir()
    (base / "rules" / "rules.irules").write_text(RULES, encoding="utf-8")
    (base / "secrets").mkdir()
    (base / "secrets" / "ALERTMANAGER_WEBHOOK_TOKEN").write_text("token-for-tests", encoding="utf-8")
    with DaemonProcess(base / "rules", base / "state", secrets_dir=base / "secrets") as process:
        yield process


@pytest.mark.slow
def test_daemon_replay_and_dismiss(daemon: DaemonProcess) -> None:
    bearer = {"authorization": "Bearer token-for-tests"}
    malformed = daemon.post("/hooks/alertmanager", MALFORMED, bearer).json()["dead_letter"]
    noise = daemon.post("/hooks/alertmanager", MALFORMED, bearer).json()["dead_letter"]
    remote = ["--daemon", daemon.url]

    dismissed = irules("dead-letters", "dismiss", str(noise), *remote, "--reason", "test traffic", "--as", "alice")
    assert (dismissed.exit_code, dismissed.stdout) == (0, f"dead letter {noise}: dismissed (test traffic)\n")

    first = irules("replay", *remote)
    assert first.exit_code == 1, first.output
    assert first.stdout.startswith(f"dead letter {malformed}: failed (400: ")
    second = irules("replay", *remote)
    assert second.exit_code == 0, second.output
    assert second.stdout.startswith(f"skipped 1 dead letter whose last replay failed ({malformed});")

    letters = listed_by_cli(remote)
    assert noise not in letters
    assert (letters[malformed]["state"], letters[malformed]["replay_status"]) == ("failed", 400)
    assert listed_by_cli(remote, "--all")[noise]["dismissed_by"] == "alice"
