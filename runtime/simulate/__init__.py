"""Simulation: replay alerts and people's actions through a ruleset on a virtual clock, and compare two rule versions.

The engine runs the real pipeline, notification planner, escalation timers and
incident operations against a scratch SQLite store, with the virtual time as
their clock. It sends nothing and runs no program: a page is an outbox row the
daemon would send (or a channel Alertmanager would deliver), and a runbook run
is a row whose path the dry-run planner computes.

Engine API (`Simulation`):

    Simulation(policy, *, start, directory=None)      # scratch store in a temporary folder when None
    .fire(labels, *, at, annotations=None, source="alertmanager")
    .resolve(labels, *, at, source="alertmanager")
    .feed(alert, *, at)                                 # a recorded `runtime.alerts.Alert`
    .acknowledge(alert_labels, *, at, by)              # the incident that contains that alert
    .resolve_incident(alert_labels, *, at, by)
    .acknowledge_incidents_of(fingerprints, *, at, by)       # every incident that contains one of these alerts
    .resolve_incidents_of(fingerprints, *, at, by, status="resolved")
    .run_until(moment)
    .result() -> SimulationResult
    .close()                                            # or use it as a context manager

Inputs may come in any order, because the engine applies them by time. Inputs
of one moment are applied in the order given, after the work due at that moment.
Between inputs the clock visits every due moment in order: a notification
group's group wait, group interval or repeat interval, an escalation timer, or
the end of a flap window. So every page has the virtual time the daemon would
send it.

`SimulationResult` contains frozen, sorted records:

- `incidents`: `SimulatedIncident` (key, title, status, severity, team,
  receivers, alert fingerprints, the numbers of the firing events that joined
  it, created/acknowledged/resolved times, escalation level reached);
- `pages`: `Page` (at, incident, receiver, channel, event, sender);
- `escalations`: `EscalationStep` (at, incident, level, action, target);
- `runbooks`: `RunbookRun` (at, incident, runbook, status, planned path);
- `actions`: `ActionOutcome`, what became of each acknowledgement or resolution.

Backtesting (`runtime.simulate.backtest`) loads the alert events and people's
actions recorded in a store and replays them through two rule versions;
`runtime.simulate.compare` computes the differences.
"""

from runtime.simulate.engine import Simulation
from runtime.simulate.result import (
    ActionOutcome,
    EscalationStep,
    Page,
    RunbookRun,
    SimulatedIncident,
    SimulationResult,
)

__all__ = [
    "ActionOutcome",
    "EscalationStep",
    "Page",
    "RunbookRun",
    "SimulatedIncident",
    "Simulation",
    "SimulationResult",
]
