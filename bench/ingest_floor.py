"""Servers that show what a one-alert webhook costs below the daemon: irules' own work on a raw HTTP protocol.

Each server parses HTTP/1.1 with httptools on uvloop, as uvicorn does, but
calls no ASGI app: for every request it runs irules' own `receive` (bearer
token check, Alertmanager normalisation, fingerprints) on examples/production,
and then, by mode:

- `normalise`: nothing more, and responds;
- `journal`: appends the payload, encoded as the spool encodes it, to an
  append-only file with one `os.write` (no fsync, as SQLite's
  `synchronous=NORMAL` does not sync each commit either), and responds;
- `sqlite`: stores the payload with `runtime.pipeline.accept`, the daemon's
  own SQLite transaction, and responds.

They measure what a faster acknowledgement point or a leaner HTTP layer could
give at batch 1. They are measurement fixtures, not servers to run: they read
only requests with a Content-Length body, as the load generator sends them,
and respond with 202 or 500.

Usage (from `ingest_breakdown.py`):
    python bench/ingest_floor.py PORT MODE FOLDER     # the token comes from IRULES_FLOOR_TOKEN
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

MODES = ("normalise", "journal", "sqlite")
TOKEN_VARIABLE = "IRULES_FLOOR_TOKEN"
SOURCE = "alertmanager"


def serve(port: int, mode: str, folder: Path) -> None:
    import httptools
    import orjson
    import uvloop

    from runtime.daemon.rules import load_ruleset
    from runtime.ingest import receive
    from runtime.sources.base import Inbound
    from runtime.spool import Spool
    from runtime.store import Store

    assert mode in MODES, mode
    logging.disable(logging.CRITICAL)
    ruleset = load_ruleset(REPO / "examples" / "production", "production")
    token = os.environ[TOKEN_VARIABLE]
    folder.mkdir(parents=True, exist_ok=True)
    spool = Spool(folder / "unused-spool")
    journal = os.open(folder / "journal", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    store = Store.open(f"sqlite:///{folder / 'irules.db'}") if mode == "sqlite" else None
    if store is not None:
        from runtime.pipeline import accept

    def acknowledge(headers: dict[str, str], body: bytes) -> bytes:
        accepted = receive(SOURCE, Inbound(body, headers, datetime.datetime.now(datetime.UTC)), ruleset, lambda _name: token)
        payload_id = 0
        if mode == "journal":
            record = spool.encode(accepted)
            os.write(journal, len(record).to_bytes(4, "little") + record)
        elif store is not None:
            (payload_id,) = accept(store, [accepted])
        return orjson.dumps({"payload_id": payload_id, "kind": accepted.outcome.kind, "alerts": len(accepted.outcome.alerts)})

    class Connection(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport: asyncio.Transport = transport  # type: ignore[assignment]
            self.parser = httptools.HttpRequestParser(self)
            self.headers: dict[str, str] = {}
            self.body: list[bytes] = []

        def data_received(self, data: bytes) -> None:
            self.parser.feed_data(data)

        def on_message_begin(self) -> None:
            self.headers = {}
            self.body = []

        def on_header(self, name: bytes, value: bytes) -> None:
            self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

        def on_body(self, body: bytes) -> None:
            self.body.append(body)

        def on_message_complete(self) -> None:
            try:
                status, content = b"202 Accepted", acknowledge(self.headers, b"".join(self.body))
            except Exception as error:  # a fixture: the load generator counts the status
                status, content = b"500 Internal Server Error", orjson.dumps({"error": repr(error)})
            head = b"HTTP/1.1 %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n" % (status, len(content))
            self.transport.write(head + content)

    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(Connection, "127.0.0.1", port)
        print("listening", flush=True)
        await server.serve_forever()

    uvloop.run(main())


if __name__ == "__main__":
    serve(int(sys.argv[1]), sys.argv[2], Path(sys.argv[3]))
