"""Storing accepted payloads: SQLite's driver-level path against SQLAlchemy's, and the daemon's group-commit writer."""

from __future__ import annotations

import datetime
import json
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
import sqlalchemy as sa

from runtime.alerts import Alert
from runtime.daemon.writer import INLINE_ALERTS, Overloaded, Writer
from runtime.pipeline import (
    _SQLITE_INSERT_EVENT,
    _SQLITE_INSERT_PAYLOAD,
    Accepted,
    _alert_text,
    accept,
    accept_if_free,
    insert_payload,
)
from runtime.sources.base import Inbound, Outcome
from runtime.store import Store, database_url
from runtime.store.schema import alert_events, payloads
from runtime.store.store import json_text, sqlite_time

UTC = datetime.UTC
RECEIVED = datetime.datetime(2026, 3, 8, 10, 0, 0, 250_000, tzinfo=UTC)
# Columns whose stored text both paths must write alike; JSON columns are compared as values.
PAYLOAD_TEXT_COLUMNS = ("source", "kind", "received_at", "body", "alert_count", "replay_of")
EVENT_TEXT_COLUMNS = ("payload_id", "source", "fingerprint", "status", "received_at", "processed_at", "outcome")


def alert(number: int, **changes: object) -> Alert:
    fields: dict[str, object] = {
        "source": "alertmanager",
        "name": "DiskFull",
        "status": "firing",
        "labels": {"alertname": "DiskFull", "instance": f"db-{number}", "team": "Müller & Søn"},
        "annotations": {"summary": "disk ≥ 95 %"},
        "starts_at": datetime.datetime(2026, 3, 8, 9, 59, 0, tzinfo=UTC),
        "generator_url": "http://prometheus:9090/graph?g0.expr=up",
        "source_severity": "critical",
        "details": {"receiver": "ops", "group_key": "{}:{}", "truncated": {"label.x": 70000}},
    }
    fields.update(changes)
    return Alert(**fields)  # type: ignore[arg-type]


def accepted(alerts: list[Alert], *, received_at: datetime.datetime = RECEIVED, replay_of: int | None = None) -> Accepted:
    headers = {"content-type": "application/json", "authorization": "Bearer secret-token", "user-agent": "Alertmanager/0.27"}
    body = json.dumps({"alerts": [item.to_json() for item in alerts]}).encode()
    outcome = Outcome("alertmanager", "alerts", alerts, details={"receiver": "ops", "truncated_alerts": 0})
    return Accepted("alertmanager", Inbound(body, headers, received_at), outcome, replay_of=replay_of)


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[Store]:
    opened = Store.open(database_url(tmp_path / "fast"))
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def reference_store(tmp_path: Path) -> Iterator[Store]:
    """An SQLite store written through SQLAlchemy's statements, as PostgreSQL is."""
    opened = Store.open(database_url(tmp_path / "reference"))
    try:
        yield opened
    finally:
        opened.close()


def raw_rows(store: Store, table: str) -> list[sqlite3.Row]:
    path = store.engine.url.database
    assert path is not None
    with sqlite3.connect(path) as connection:
        connection.row_factory = sqlite3.Row
        return connection.execute(f"SELECT * FROM {table} ORDER BY id").fetchall()


# ---------------------------------------------------------------- the driver-level SQLite path


def test_sqlite_path_stores_what_sqlalchemy_stores(sqlite_store: Store, reference_store: Store) -> None:
    batch = [
        accepted([alert(1), alert(2, status="resolved", ends_at=datetime.datetime(2026, 3, 8, 10, 0, 0, 7, tzinfo=UTC))]),
        accepted([], received_at=datetime.datetime(2026, 3, 8, 12, 0, 0, tzinfo=datetime.timezone(datetime.timedelta(hours=2)))),
        accepted([alert(3)], replay_of=1),
    ]

    ids = accept(sqlite_store, batch)
    with reference_store.write() as connection:
        reference_ids = [insert_payload(connection, item) for item in batch]

    assert ids == reference_ids == [1, 2, 3]
    fast, reference = raw_rows(sqlite_store, "payloads"), raw_rows(reference_store, "payloads")
    assert len(fast) == len(reference) == 3
    for ours, theirs in zip(fast, reference, strict=True):
        for column in PAYLOAD_TEXT_COLUMNS:
            assert ours[column] == theirs[column], column
        assert json.loads(ours["headers"]) == json.loads(theirs["headers"])
        assert json.loads(ours["details"]) == json.loads(theirs["details"])
    fast_events, reference_events = raw_rows(sqlite_store, "alert_events"), raw_rows(reference_store, "alert_events")
    assert len(fast_events) == len(reference_events) == 3
    for ours, theirs in zip(fast_events, reference_events, strict=True):
        for column in EVENT_TEXT_COLUMNS:
            assert ours[column] == theirs[column], column
        assert json.loads(ours["alert"]) == json.loads(theirs["alert"])


def test_sqlite_statements_cover_schema_columns() -> None:
    def named(statement: str) -> set[str]:
        return {name.strip() for name in statement.split("(", 1)[1].split(")", 1)[0].split(",")}

    # Columns the pipeline fills later, the keys SQLite assigns, and the spool id that only a drained spool sets.
    later = {"id", "processed_at", "outcome", "spool_id"}
    assert named(_SQLITE_INSERT_PAYLOAD) == set(payloads.c.keys()) - later
    assert named(_SQLITE_INSERT_EVENT) == set(alert_events.c.keys()) - later


def test_sqlite_path_reads_back_through_sqlalchemy(sqlite_store: Store) -> None:
    stored = alert(1, ends_at=datetime.datetime(2026, 3, 8, 10, 30, tzinfo=UTC))
    (payload_id,) = accept(sqlite_store, [accepted([stored])])

    with sqlite_store.read() as connection:
        payload = connection.execute(sa.select(payloads).where(payloads.c.id == payload_id)).mappings().one()
        event = connection.execute(sa.select(alert_events)).mappings().one()
    assert payload["received_at"] == RECEIVED
    assert payload["headers"] == {"content-type": "application/json", "user-agent": "Alertmanager/0.27"}
    assert payload["alert_count"] == 1
    assert event["received_at"] == RECEIVED
    assert event["processed_at"] is None
    assert Alert.from_json(event["alert"]) == stored


def test_stored_payload_keeps_no_credentials(sqlite_store: Store) -> None:
    accept(sqlite_store, [accepted([alert(1)])])

    (row,) = raw_rows(sqlite_store, "payloads")
    assert "secret-token" not in row["headers"]
    assert "authorization" not in json.loads(row["headers"])


@pytest.mark.parametrize(
    "moment",
    [
        datetime.datetime(2026, 1, 1, tzinfo=UTC),
        datetime.datetime(2026, 3, 8, 10, 0, 0, 123, tzinfo=UTC),
        datetime.datetime(5, 1, 2, 3, 4, 5, tzinfo=UTC),
        datetime.datetime(2026, 3, 8, 23, 30, tzinfo=datetime.timezone(datetime.timedelta(hours=-7))),
    ],
    ids=["midnight", "microseconds", "year-5", "minus-7h"],
)
def test_sqlite_time_matches_utc_datetime_type(moment: datetime.datetime) -> None:
    processor = payloads.c.received_at.type.dialect_impl(sa.create_engine("sqlite://").dialect)
    expected = processor.bind_processor(sa.create_engine("sqlite://").dialect)

    assert expected is not None
    assert sqlite_time(moment) == expected(moment)


def test_sqlite_time_rejects_naive_datetime() -> None:
    with pytest.raises(ValueError, match="naive datetime"):
        sqlite_time(datetime.datetime(2026, 3, 8, 10, 0))


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"starts_at": datetime.datetime(2026, 3, 8, 9, 59, 0, 999_999, tzinfo=UTC)},
        {"starts_at": datetime.datetime(2026, 3, 8, 11, 0, tzinfo=datetime.timezone(datetime.timedelta(hours=1)))},
        {"starts_at": None, "ends_at": datetime.datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)},
        {"details": {"count": 2**70, "nested": [{"a": None}, 1.5]}},
        {"details": {1: "a key that is not a string"}},
        {"labels": {"alertname": "DiskFull", "text": "\ud800 unpaired"}, "fingerprint": "0123456789abcdef"},
    ],
    ids=["plain", "microseconds", "offset", "end-only", "big-integer", "integer-key", "surrogate"],
)
def test_alert_text_matches_to_json(changes: dict[str, object]) -> None:
    value = alert(1, **changes)

    assert json.loads(_alert_text(value)) == json.loads(json.dumps(value.to_json()))


def test_json_text_falls_back_to_json_module() -> None:
    assert json_text({"n": 2**70}) == json.dumps({"n": 2**70})
    assert json_text({1: "x"}) == json.dumps({1: "x"})
    assert json.loads(json_text({"text": "é ✓", "n": [1, 2.5, None]})) == {"text": "é ✓", "n": [1, 2.5, None]}


def test_failed_sqlite_write_rolls_back(sqlite_store: Store) -> None:
    with pytest.raises(RuntimeError, match="on purpose"), sqlite_store.sqlite_write() as connection:
        assert connection is not None
        connection.execute("INSERT INTO sequences (name, value) VALUES ('test', 1)")
        raise RuntimeError("failed on purpose")

    (payload_id,) = accept(sqlite_store, [accepted([alert(1)])])
    with sqlite_store.read() as connection:
        sequences = connection.execute(sa.text("SELECT count(*) FROM sequences WHERE name = 'test'")).scalar_one()
    assert sequences == 0
    assert payload_id == 1


def test_failed_statement_keeps_store_usable(sqlite_store: Store) -> None:
    with pytest.raises(sqlite3.IntegrityError), sqlite_store.sqlite_write() as connection:
        assert connection is not None
        connection.execute("INSERT INTO payloads (source) VALUES ('missing columns')")

    assert accept(sqlite_store, [accepted([alert(1)])]) == [1]
    assert len(raw_rows(sqlite_store, "alert_events")) == 1


def test_write_if_free_yields_none_while_store_writes(sqlite_store: Store) -> None:
    with sqlite_store.write():
        assert accept_if_free(sqlite_store, [accepted([alert(1)])]) is None

    assert accept_if_free(sqlite_store, [accepted([alert(1)])]) == [1]


def test_accept_waits_for_other_writer(sqlite_store: Store) -> None:
    holding, release = threading.Event(), threading.Event()

    def hold_the_writer() -> None:
        with sqlite_store.write():
            holding.set()
            release.wait(10)

    holder = threading.Thread(target=hold_the_writer)
    holder.start()
    try:
        assert holding.wait(10)
        assert accept_if_free(sqlite_store, [accepted([alert(1)])]) is None
        release.set()
        assert accept(sqlite_store, [accepted([alert(2)])]) == [1]
    finally:
        release.set()
        holder.join(10)


def test_ingest_connection_leaves_checkpoints_to_others(sqlite_store: Store) -> None:
    with sqlite_store.sqlite_write() as connection:
        assert connection is not None
        ingest_limit = connection.execute("PRAGMA wal_autocheckpoint").fetchone()[0]
    with sqlite_store.engine.connect() as other:
        other_limit = other.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar_one()

    assert ingest_limit == 0
    assert other_limit > 0


def test_sqlite_write_is_for_sqlite_only(postgres_schema_url: str) -> None:
    store = Store.open(postgres_schema_url)
    try:
        assert accept_if_free(store, [accepted([alert(1)])]) is None
        assert accept(store, [accepted([alert(1)])]) == [1]
        with pytest.raises(AssertionError, match="needs an SQLite store"), store.sqlite_write():
            pass
    finally:
        store.close()


# ---------------------------------------------------------------- the writer


async def submit_all(writer: Writer, items: list[Accepted]) -> list[int]:
    results: list[int] = [0] * len(items)

    async def one(index: int) -> None:
        results[index] = await writer.submit(items[index])

    async with anyio.create_task_group() as group:
        group.start_soon(writer.run)
        async with anyio.create_task_group() as senders:
            for index in range(len(items)):
                senders.start_soon(one, index)
        writer.close()
    return results


def test_writer_stores_concurrent_payloads(sqlite_store: Store) -> None:
    writer = Writer(sqlite_store)
    items = [accepted([alert(number)]) for number in range(20)]

    ids = anyio.run(submit_all, writer, items)

    assert sorted(ids) == list(range(1, 21))
    assert len(raw_rows(sqlite_store, "alert_events")) == 20


def test_idle_writer_commits_at_once(sqlite_store: Store) -> None:
    committed: list[int] = []
    writer = Writer(sqlite_store, on_commit=lambda items: committed.append(len(items)))

    async def main() -> list[int]:
        # No writer task runs: a payload that nothing waits before is stored by its own request.
        return [await writer.submit(accepted([alert(number)])) for number in range(3)]

    assert anyio.run(main) == [1, 2, 3]
    assert committed == [1, 1, 1]


def test_writer_groups_payloads_while_store_busy(sqlite_store: Store) -> None:
    committed: list[int] = []
    writer = Writer(sqlite_store, on_commit=lambda items: committed.append(len(items)))
    results: list[int] = []
    holding, release = threading.Event(), threading.Event()

    def hold_the_writer() -> None:
        with sqlite_store.write():
            holding.set()
            release.wait(10)

    async def send(number: int) -> None:
        results.append(await writer.submit(accepted([alert(number)])))

    async def main() -> None:
        async with anyio.create_task_group() as group:
            group.start_soon(writer.run)
            async with anyio.create_task_group() as senders:
                for number in range(20):
                    senders.start_soon(send, number)
                await anyio.wait_all_tasks_blocked()
                release.set()
            writer.close()

    holder = threading.Thread(target=hold_the_writer)
    holder.start()
    try:
        assert holding.wait(10)
        anyio.run(main)
    finally:
        release.set()
        holder.join(10)
    assert sorted(results) == list(range(1, 21))
    assert committed == [20]


def test_writer_stores_large_batch_in_thread(sqlite_store: Store) -> None:
    writer = Writer(sqlite_store)
    many = [alert(number) for number in range(INLINE_ALERTS + 1)]

    ids = anyio.run(submit_all, writer, [accepted(many), accepted([alert(0)])])

    assert sorted(ids) == [1, 2]
    assert len(raw_rows(sqlite_store, "alert_events")) == INLINE_ALERTS + 2


def test_writer_reports_store_failure(sqlite_store: Store) -> None:
    writer = Writer(sqlite_store)
    broken = accepted([alert(1)], received_at=datetime.datetime(2026, 3, 8, 10, 0))

    async def main() -> None:
        async with anyio.create_task_group() as group:
            group.start_soon(writer.run)
            with pytest.raises(ValueError, match="naive datetime"):
                await writer.submit(broken)
            assert await writer.submit(accepted([alert(2)])) == 1
            writer.close()

    anyio.run(main)


def test_closed_writer_rejects_payloads(sqlite_store: Store) -> None:
    writer = Writer(sqlite_store)
    writer.close()

    async def main() -> None:
        with pytest.raises(Overloaded, match="stopping"):
            await writer.submit(accepted([alert(1)]))
        await writer.run()

    anyio.run(main)
    assert raw_rows(sqlite_store, "payloads") == []


def test_writer_drains_queue_after_close(sqlite_store: Store) -> None:
    writer = Writer(sqlite_store)
    results: list[int] = []

    async def send(number: int) -> None:
        results.append(await writer.submit(accepted([alert(number)])))

    async def main() -> None:
        async with anyio.create_task_group() as group:
            for number in range(3):
                group.start_soon(send, number)
            await anyio.wait_all_tasks_blocked()
            writer.close()
            group.start_soon(writer.run)

    anyio.run(main)
    assert sorted(results) == [1, 2, 3]
