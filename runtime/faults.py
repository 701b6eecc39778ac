"""Crash points: named places where a test can make the process die as if the host lost power.

The crash tests start the daemon with `IRULES_CRASH_AT=POINT` (or `POINT:N`
for the Nth time the point is reached). When the named point is reached, the
process sends itself SIGKILL at once: no `finally` block runs, no buffer is
flushed and no transaction is rolled back cleanly, which is what a kernel OOM
kill or a power cut does. Without the variable, `crash_point` costs one
comparison, because the variable is read once, at import.

`IRULES_CRASH_TRACE=FILE` appends each point's name to FILE the first time
this process reaches it, so a test can check that a normal run reaches every
registered point.

Each point sits at a boundary between two persisted steps, and `POINTS` lists
them all with what has been stored when the process dies there.
"""

from __future__ import annotations

import os
import signal
import threading

ENVIRONMENT_VARIABLE = "IRULES_CRASH_AT"
TRACE_VARIABLE = "IRULES_CRASH_TRACE"

POINTS: dict[str, str] = {
    "ingest.after_commit": "a payload and its alert events are committed, and the 2xx is not sent yet",
    "pipeline.before_commit": "a batch of alert events is applied, and its transaction is not committed yet",
    "pipeline.after_commit": "a batch of alert events is committed, and the metrics are not updated yet",
    "outbox.after_lease": "an outbox row is leased (committed as `sending`), and it is not sent yet",
    "outbox.after_send": "a notification is sent, and its outcome is not committed yet",
    "outbox.after_record": "the outcome of a send is committed",
    "timer.before_commit": "due escalation timers fired and queued their messages, and the transaction is not committed",
    "timer.after_commit": "fired escalation timers and their queued messages are committed",
    "step.before_start": "a step is stored as `running`, and its operation has not started",
    "step.after_exit": "a step's operation (such as a program) has ended, and its outcome is not stored",
    "step.after_outcome": "a step's outcome is committed",
}


def _parse(setting: str) -> tuple[str | None, int]:
    """Return the point and the 1-based visit that `IRULES_CRASH_AT` names, or (None, 0) when it is empty."""
    name, separator, count = setting.strip().partition(":")
    if not name:
        return None, 0
    if name not in POINTS:
        raise ValueError(f"{ENVIRONMENT_VARIABLE}: unknown crash point {name!r}; known points: {', '.join(POINTS)}")
    if not separator:
        return name, 1
    if not count.isdigit() or int(count) < 1:
        raise ValueError(f"{ENVIRONMENT_VARIABLE}: invalid visit {count!r} in {setting!r}; expected POINT or POINT:N with N >= 1")
    return name, int(count)


_TARGET, _VISIT = _parse(os.environ.get(ENVIRONMENT_VARIABLE, ""))
_TRACE = os.environ.get(TRACE_VARIABLE) or None
_ACTIVE = _TARGET is not None or _TRACE is not None
_visits = 0
_traced: set[str] = set()
# Points are reached from the event loop and from worker threads.
_lock = threading.Lock()


def crash_point(name: str) -> None:
    """Kill this process with SIGKILL when `IRULES_CRASH_AT` names `name` and this is the visit it names."""
    if not _ACTIVE:
        return
    assert name in POINTS, f"crash point {name!r} is not registered in runtime.faults.POINTS"
    with _lock:
        if _TRACE is not None and name not in _traced:
            _traced.add(name)
            with open(_TRACE, "a", encoding="utf-8") as trace:
                trace.write(name + "\n")
        if name != _TARGET:
            return
        global _visits
        _visits += 1
        if _visits == _VISIT:
            os.kill(os.getpid(), signal.SIGKILL)
