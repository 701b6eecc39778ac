"""Background jobs of the daemon while its database is unreachable."""

from __future__ import annotations

import anyio
import sqlalchemy as sa

from runtime.daemon.service import Daemon


class Unreachable:
    """A node whose job claims fail as PostgreSQL's do when the server has gone away."""

    def __init__(self) -> None:
        self.claims = 0

    def claim_job(self, name: str, every_s: float, now: object) -> bool:
        self.claims += 1
        raise sa.exc.OperationalError("UPDATE cluster_jobs ...", {}, Exception("server closed the connection unexpectedly"))


class Health:
    def __init__(self) -> None:
        self.failures: list[BaseException] = []

    def report_failure(self, error: BaseException) -> None:
        self.failures.append(error)


def test_flap_job_claim_survives_outage() -> None:
    # The claim of the flap-settling turn is a write; before, it ran outside the outage
    # handling, and its OperationalError ended the whole daemon.
    daemon = Daemon.__new__(Daemon)
    daemon.pipeline = object()  # type: ignore[assignment]
    daemon.node = Unreachable()  # type: ignore[assignment]
    daemon.health = Health()  # type: ignore[assignment]

    settled = anyio.run(daemon._unless_unreachable, daemon._settle_flapping_in_turn, 0)

    assert settled == 0
    assert daemon.node.claims == 1
    assert len(daemon.health.failures) == 1
    assert isinstance(daemon.health.failures[0], sa.exc.OperationalError)
