"""The steps every received payload goes through before it is stored, shared by the daemon, `handle` and `replay`."""

from __future__ import annotations

import logging
from collections.abc import Callable

from compiler import ir
from runtime.pipeline import Accepted
from runtime.sources import authenticate, detect, normalise
from runtime.sources.base import Inbound, Rejected

log = logging.getLogger("irules.ingest")

# Bodies above this size are rejected with 413 before any parsing. Azure caps
# common-schema alerts at 256 KB; an Alertmanager group of many alerts is larger.
MAX_BODY_BYTES = 10 * 1024 * 1024


def receive(
    source: str | None,
    inbound: Inbound,
    ruleset: ir.Ruleset,
    secrets: Callable[[str], str | None],
    *,
    check_auth: bool = True,
    allow_unauthenticated: bool = False,
    replay_of: int | None = None,
) -> Accepted:
    """Authenticate and normalise one payload; raise `Rejected` with the HTTP status and reason.

    `source=None` detects the format from the payload (for `irules handle`).
    """
    if len(inbound.body) > MAX_BODY_BYTES:
        raise Rejected(413, f"body of {len(inbound.body)} bytes is larger than the limit of {MAX_BODY_BYTES} bytes")
    if source is None:
        source = detect(inbound)
    if check_auth:
        authenticate(source, inbound, ruleset, secrets, now=inbound.received_at, allow_unauthenticated=allow_unauthenticated)
    outcome = normalise(source, inbound, ruleset)
    return Accepted(source=source, inbound=inbound, outcome=outcome, replay_of=replay_of)
