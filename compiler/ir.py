"""The intermediate representation: what irules will do, as plain versioned data.

The AST records what the user wrote, and the IR what will happen. Lowering
resolves names, inheritance and defaults, splits time ranges, orders
matchers and gives routes stable ids. Targets and the daemon read only the
IR, which serialises to `ruleset.json` so the daemon can load it without
the sources.
"""

from __future__ import annotations

import enum
import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

IR_VERSION = 1
# Fields that `ruleset.json` always starts with, default or not, so that a reader
# sees which IR version, irules version, sources and environment produced it.
HEADER_FIELDS = ("version", "irules_version", "source_digest", "environment")


class StrictModel(BaseModel):
    """Base of every IR model: unknown keys are rejected, instances are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class SecretRef(StrictModel):
    """A secret by name; its value is read at run time from the secrets folder or the environment."""

    secret: str = Field(title="Secret name", description="Upper-case name, e.g. PAGERDUTY_KEY.")


class MatchOp(enum.StrEnum):
    EQUAL = "="
    NOT_EQUAL = "!="
    REGEX = "=~"
    NOT_REGEX = "!~"


class Matcher(StrictModel):
    name: str
    op: MatchOp
    value: str


# Expressions are kept as a small JSON tree so they survive serialisation:
# {"path": [...]}, {"value": x, "type": t}, {"list": [...]},
# {"op": "==", "left": e, "right": e}, {"and": [...]}, {"or": [...]}, {"not": e}.
Expr = dict[str, Any]


class Smtp(StrictModel):
    smarthost: str
    sender: str | None = None
    username: str | None = None
    password: SecretRef | None = None
    require_tls: bool | None = None


class Settings(StrictModel):
    external_url: str | None = None
    incident_url: str | None = None
    daemon_url: str | None = None
    secrets_dir: str = Field("/etc/irules/secrets", description="Folder holding one file per secret.")
    smtp: Smtp | None = None
    slack_api_url: str | SecretRef | None = None
    locale: str = "en"
    timezone: str = "UTC"
    incident_id_format: str = "INC-{number}"
    resolve_timeout_s: float = 300.0
    alertmanager_version: str = "0.25"


class Channel(StrictModel):
    kind: str = Field(description="email, slack, pagerduty, teams, sms or webhook.")
    target: str | SecretRef | None = None
    key: SecretRef | None = None
    url: str | SecretRef | None = None
    escalation_policy: str | None = None
    template: str | None = None
    send_resolved: bool | None = None


class Receiver(StrictModel):
    name: str
    is_team: bool = False
    channels: list[Channel] = []


class Team(StrictModel):
    name: str
    owns: list[str] = []
    escalation: str | None = None
    members: list[str] = []


class Service(StrictModel):
    name: str
    team: str | None = None
    depends_on: list[str] = []
    tier: int | None = None
    runbook_url: str | None = None
    description: str | None = None
    matchers: list[Matcher] = []


class Route(StrictModel):
    """A resolved route: every option is filled in from the parent or the defaults."""

    id: str = Field(description="Stable position in the tree: `0` is the root, `0.2.1` its third child's second child.")
    matchers: list[Matcher] = []
    receiver: str
    continue_: bool = Field(False, alias="continue")
    group_by: list[str] = []
    group_wait_s: float
    group_interval_s: float
    repeat_interval_s: float
    mute_time_intervals: list[str] = []
    active_time_intervals: list[str] = []
    routes: list[Route] = []
    path: str = Field("", description="File of the route's declaration, shown in messages, or empty when unknown.")
    line: int = Field(0, description="Line of the route's declaration, shown in messages, or 0 when unknown.")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Inhibit(StrictModel):
    source_matchers: list[Matcher]
    target_matchers: list[Matcher]
    equal: list[str] = []


class TimeRange(StrictModel):
    """Minutes since midnight, end exclusive, as Alertmanager counts them."""

    start_minute: int
    end_minute: int


class Period(StrictModel):
    times: list[TimeRange] = []
    weekdays: list[str] = []
    days_of_month: list[str] = []
    months: list[str] = []
    years: list[str] = []
    location: str | None = None


class TimeInterval(StrictModel):
    name: str
    periods: list[Period]


class SeverityRule(StrictModel):
    level: str
    when: Expr
    path: str = Field("", description="File of the rule, shown in messages, or empty when unknown.")
    line: int = Field(0, description="Line of the rule, shown in messages, or 0 when unknown.")


class SeverityPolicy(StrictModel):
    rules: list[SeverityRule] = []
    fallback_level: str | None = None
    classify: bool = False
    classify_confidence: float | None = None
    classify_model: str | None = None
    classify_model_version: str | None = Field(None, description="The model version the rules expect; another is rejected.")


class PagerDutyRule(StrictModel):
    title: str
    when: Expr | None = None
    priority: str | None = None
    severity: str | None = None
    route_to: str | None = None
    suppress: bool = False
    annotate: str | None = None


class PagerDuty(StrictModel):
    priorities: dict[str, str] = {}
    rules: list[PagerDutyRule] = []


class Slack(StrictModel):
    app_name: str = "irules"
    description: str = "Incident response from irules"
    bot_name: str = "irules"
    command: str = "/incident"
    channel: str | None = None
    background_color: str | None = None
    signing_secret: SecretRef | None = None
    token: SecretRef | None = None
    socket_mode: bool = False


class EscalationStep(StrictModel):
    after_s: float
    state: str = Field(description="unacknowledged or unresolved")
    action: str = Field(description="notify, page or escalate")
    target: str | None = None
    level: int | None = None
    severities: list[str] = Field([], description="Empty means every severity.")


class Escalation(StrictModel):
    name: str
    steps: list[EscalationStep]
    repeat: int = 0
    repeat_every_s: float | None = None


class SourceAuth(StrictModel):
    kind: str = Field(description="bearer, hmac, basic or none")
    secret: SecretRef | None = Field(None, description="The token, HMAC key or, for basic, the password.")
    user: str | None = Field(None, description="The user name of basic credentials.")
    header: str | None = None
    algorithm: str | None = None
    prefix: str | None = None


# Sources whose payloads irules reads itself. A `source` block with one of these
# names only sets `auth`, and `confirm_subscriptions` for cloudwatch.
BUILTIN_SOURCES = ("alertmanager", "grafana", "cloudwatch", "azure")


class Source(StrictModel):
    name: str
    path: str
    auth: list[SourceAuth] = []
    mappings: dict[str, Expr] = {}
    resolved_when: Expr | None = None
    confirm_subscriptions: list[str] = Field([], description="SNS topic ARNs whose subscriptions the daemon confirms.")


class Grouping(StrictModel):
    kind: str = Field(description="dedup or correlate")
    name: str | None = None
    when: Expr | None = None
    by: list[str] = []
    window_s: float | None = None
    flap_window_s: float | None = None
    flap_threshold: int | None = None
    follow_dependencies: bool = False


class Param(StrictModel):
    name: str
    type: str
    default: Any = None
    pattern: str | None = None


class Step(StrictModel):
    name: str
    kind: str = Field(description="run, http, query, notify, approve, wait, set, report, assist or call")
    args: list[Any] = []
    options: dict[str, Any] = {}
    action: str | None = None
    depends_on: list[str] = []
    when: Expr | None = None
    timeout_s: float | None = None
    retry: int = 0
    backoff_s: float | None = None
    on_failure: str | None = None
    risk: str = "low"
    read_only: bool = False
    idempotent: bool = False
    approval_team: str | None = None
    approval_timeout_s: float | None = None
    compensation: bool = False


class Action(StrictModel):
    name: str
    params: list[Param] = []
    steps: list[Step] = []
    risk: str = "low"
    read_only: bool = False
    idempotent: bool = False


class Runbook(StrictModel):
    id: str
    title: str | None = None
    description: str | None = None
    when: Expr | None = None
    auto: bool = False
    timeout_s: float | None = None
    risk: str = "low"
    concurrency: list[str] = ["runbook", "incident"]
    rate_limit: tuple[int, float] | None = None
    steps: list[Step] = []


class Template(StrictModel):
    name: str
    locales: dict[str, dict[str, str]]


class ScenarioEventKind(enum.StrEnum):
    FIRE = "fire"
    RESOLVE = "resolve"
    ACKNOWLEDGE = "ack"
    RESOLVE_INCIDENT = "resolve_incident"


class ScenarioEvent(StrictModel):
    """An input of a scenario: an alert fires or resolves, or a person acknowledges or resolves its incident."""

    kind: ScenarioEventKind
    labels: dict[str, str] = Field(description="The alert's labels; for `ack` and `resolve_incident`, labels that pick it.")
    annotations: dict[str, str] = {}
    by: str | None = Field(None, description="The person, for `ack` and `resolve_incident`.")
    at_s: float = Field(ge=0, description="Seconds after the start of the scenario.")
    line: int = 0


class ScenarioExpectationKind(enum.StrEnum):
    INCIDENTS = "incidents"
    PAGE = "page"
    NO_PAGE = "no page"
    ESCALATION = "escalation"
    NO_ESCALATION = "no escalation"
    RUNBOOK = "runbook"
    NO_RUNBOOK = "no runbook"


class ScenarioExpectation(StrictModel):
    """One `expect` line of a scenario. The fields that its kind does not use stay `None`."""

    kind: ScenarioExpectationKind
    count: int | None = Field(None, ge=0, description="The number of incidents, for `incidents`.")
    receiver: str | None = None
    event: str | None = Field(None, description="The notification event of a page, such as `opened`; `None` means any.")
    level: int | None = Field(None, ge=0, description="The incident's escalation level after the step; 0 before any `escalate`.")
    runbook: str | None = None
    path: list[str] | None = Field(None, description="The planned steps of the runbook, in order.")
    at_s: float | None = Field(None, ge=0, description="Seconds after the start; `None` means at any time.")
    line: int = 0


class Scenario(StrictModel):
    """Alerts over time from `start`, run on a virtual clock until `until_s`, and what must follow."""

    start: str = Field(description="The moment of offset 0, in ISO 8601 with a time zone.")
    until_s: float = Field(ge=0, description="Seconds after the start when the scenario ends.")
    events: list[ScenarioEvent] = []
    expectations: list[ScenarioExpectation] = []


class TestCase(StrictModel):
    """One `test` block: an alert and what the rules do with it, or a `scenario` over time."""

    name: str
    labels: dict[str, str] = {}
    annotations: dict[str, str] = {}
    also_firing: list[dict[str, str]] = []
    at: str | None = None
    expect_receivers: list[str] | None = None
    expect_severity: str | None = None
    expect_inhibited: bool | None = None
    expect_runbooks: list[str] | None = None
    expect_group_by: list[str] | None = None
    # The line of each `expect`, by the name that its failure shows: receivers, severity,
    # inhibition, runbooks or group_by.
    expect_lines: dict[str, int] = {}
    scenario: Scenario | None = None
    line: int = 0
    path: str = ""


class Ruleset(StrictModel):
    """The whole checked policy of one environment."""

    version: int = IR_VERSION
    irules_version: str
    source_digest: str
    environment: str | None = None
    settings: Settings
    receivers: list[Receiver]
    teams: list[Team] = []
    services: list[Service] = []
    route: Route
    inhibit_rules: list[Inhibit] = []
    time_intervals: list[TimeInterval] = []
    severity: SeverityPolicy = SeverityPolicy()
    pagerduty: PagerDuty = PagerDuty()
    slack: Slack | None = None
    escalations: list[Escalation] = []
    sources: list[Source] = []
    groupings: list[Grouping] = []
    actions: list[Action] = []
    runbooks: list[Runbook] = []
    templates: list[Template] = []
    tests: list[TestCase] = []

    def to_json(self) -> str:
        """Return the text of `ruleset.json`: the header fields, then every other field whose value is not its default.

        `Ruleset.model_validate_json` fills the omitted fields in again. For a
        generated project of 10,000 routes, the file shrinks from 10.9 MB to 8.8 MB.
        """
        header = json.dumps({name: getattr(self, name) for name in HEADER_FIELDS}, indent=2, ensure_ascii=False)
        body = self.model_dump_json(indent=2, by_alias=True, exclude_defaults=True, exclude=set(HEADER_FIELDS))
        # Both are JSON objects with fields indented by two spaces, so they join into one.
        return header.removesuffix("\n}") + ",\n" + body.removeprefix("{\n") + "\n"
