"""A limit on failed web logins per client address, so the API token cannot be guessed at network speed.

After `limit` wrong tokens from one address within `window_s`, that address gets
429 until the oldest of those failures leaves the window. The token is not even
compared meanwhile, so a locked-out guesser learns nothing. A right token clears
the address's record. Memory stays bounded: at most `clients` addresses are
remembered, the least recently seen forgotten first.

Only the web login is limited. The JSON API is used by scripts and by the CLI,
often through one load balancer address, where one misconfigured script would
lock every other client out.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable

DEFAULT_LIMIT = 10
DEFAULT_WINDOW_S = 300.0
DEFAULT_CLIENTS = 10_000


class FailedLogins:
    def __init__(
        self,
        limit: int = DEFAULT_LIMIT,
        window_s: float = DEFAULT_WINDOW_S,
        clients: int = DEFAULT_CLIENTS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.window_s = window_s
        self.clients = clients
        self._clock = clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def retry_after(self, client: str) -> float | None:
        """Return the seconds until `client` may try again, or None when it may try now."""
        failures = self._failures.get(client)
        if failures is None or len(failures) < self.limit:
            return None
        waited = self._clock() - failures[0]
        if waited >= self.window_s:
            return None
        return self.window_s - waited

    def failed(self, client: str) -> None:
        """Record a wrong token from `client`."""
        now = self._clock()
        failures = self._failures.pop(client, None)
        if failures is None:
            failures = deque(maxlen=self.limit)
        failures.append(now)
        self._failures[client] = failures
        while len(self._failures) > self.clients:
            self._failures.popitem(last=False)

    def succeeded(self, client: str) -> None:
        """Forget the failures of `client`, which has just given the right token."""
        self._failures.pop(client, None)
