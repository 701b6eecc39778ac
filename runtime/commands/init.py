"""`irules init`: create a new rules repository with a starting policy, CI and pre-commit hooks.

The starting policy has one team per integration. Paging integrations
(PagerDuty, SMS) get critical alerts; chat integrations (Slack, Teams, email,
webhook) get every alert. It checks without errors for the environment given,
its rule tests pass, and its compiled artifacts are written to
`build/ENV`, so that the generated CI workflow (`irules diff`) passes from
the first commit.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer

from runtime.commands.common import EXIT_OK, EXIT_PROBLEMS, EXIT_USAGE, fail_internal


@dataclass(frozen=True, slots=True)
class Integration:
    """The starting policy's use of one channel kind: its team, its channel line and whether it pages."""

    team: str
    channel: str
    pages: bool
    secret: str | None = None


INTEGRATIONS = {
    "email": Integration("ops-email", 'email "ops@example.com"', pages=False),
    "pagerduty": Integration(
        "oncall-pager", 'pagerduty key secret("ONCALL_PAGERDUTY_KEY")', pages=True, secret="ONCALL_PAGERDUTY_KEY"
    ),
    "slack": Integration("ops-chat", 'slack "#ops-alerts"', pages=False, secret="SLACK_API_URL"),
    "sms": Integration("oncall-sms", 'sms "+15555550100"', pages=True),
    "teams": Integration("ops-teams", 'teams url secret("OPS_TEAMS_WEBHOOK_URL")', pages=False, secret="OPS_TEAMS_WEBHOOK_URL"),
    "webhook": Integration("ops-webhook", 'webhook "https://hooks.example.com/alerts"', pages=False),
}
_ENVIRONMENT_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:-[A-Za-z0-9_]+)*")

EnvironmentArgument = Annotated[str, typer.Argument(help="Name of the first environment, such as production.")]
DirectoryArgument = Annotated[Path, typer.Argument(help="Folder of the new repository; created when missing.")]
IntegrationsOption = Annotated[
    str,
    typer.Option("--integrations", help="Comma-separated channel kinds: " + ", ".join(sorted(INTEGRATIONS)) + "."),
]
ForceOption = Annotated[bool, typer.Option("--force", help="Overwrite files that already exist.")]


def register(app: typer.Typer) -> None:
    app.command("init")(init)


def init(
    environment: EnvironmentArgument,
    directory: DirectoryArgument = Path("."),
    integrations: IntegrationsOption = "slack",
    force: ForceOption = False,
) -> None:
    """Create a rules repository: policy, rule tests, CI workflow, pre-commit hooks and README. Exit 0 when created, 1 when the new policy fails to compile, 2 on usage errors or existing files."""
    kinds = _parse_integrations(integrations)
    if not _ENVIRONMENT_NAME.fullmatch(environment):
        print(f"irules: invalid environment name `{environment}`; use letters, digits, `_` and single `-`", file=sys.stderr)
        raise typer.Exit(EXIT_USAGE)
    try:
        status = _init(directory, environment, kinds, force)
    except Exception as error:
        fail_internal(error)
    raise typer.Exit(status)


def _parse_integrations(text: str) -> list[str]:
    kinds = list(dict.fromkeys(part.strip().lower() for part in text.split(",") if part.strip()))
    known = ", ".join(sorted(INTEGRATIONS))
    unknown = [kind for kind in kinds if kind not in INTEGRATIONS]
    if unknown or not kinds:
        problem = f"unknown integration `{unknown[0]}`" if unknown else "no integration given"
        print(f"irules: {problem}; the known integrations are {known}", file=sys.stderr)
        raise typer.Exit(EXIT_USAGE)
    return kinds


def _init(directory: Path, environment: str, kinds: list[str], force: bool) -> int:
    files = repository_files(environment, kinds)
    build = directory / "build" / environment
    if directory.exists() and not directory.is_dir():
        print(f"irules: `{directory}` exists and is not a folder", file=sys.stderr)
        return EXIT_USAGE
    existing = [directory / name for name in files if (directory / name).exists()]
    if build.exists():
        existing.append(build)
    if existing and not force:
        listed = ", ".join(f"`{path}`" for path in existing)
        print(f"irules: {listed} already exist; pass --force to overwrite them", file=sys.stderr)
        return EXIT_USAGE

    try:
        for name, text in files.items():
            target = directory / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8", newline="")
            print(f"created {target}")
    except OSError as error:
        print(f"irules: cannot write to `{directory}`: {error.strerror}", file=sys.stderr)
        return EXIT_USAGE
    status = _compile(directory, environment, build)
    if status == EXIT_OK:
        _print_next_steps(directory, environment, kinds)
    return status


def _compile(directory: Path, environment: str, build: Path) -> int:
    """Write the artifacts the CI workflow compares with, exactly as `irules compile` writes them."""
    from runtime.commands.compile import BuildFailed, build_artifacts, write_artifacts

    try:
        write_artifacts(build_artifacts(directory, environment), build)
    except BuildFailed:
        print("irules: the new policy does not compile; this is a bug in `irules init`, please report it", file=sys.stderr)
        return EXIT_PROBLEMS
    except OSError as error:
        print(f"irules: cannot write to `{build}`: {error.strerror}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK


def _print_next_steps(directory: Path, environment: str, kinds: list[str]) -> None:
    secrets = [INTEGRATIONS[kind].secret for kind in kinds if INTEGRATIONS[kind].secret]
    print(f"\nthe new rules in `{directory}` check without errors for `{environment}`; next steps:")
    print("  - replace the example channels, addresses and URLs in teams.irules and settings.irules")
    if secrets:
        print("  - put one file per secret in the secrets folder (/etc/irules/secrets): " + ", ".join(secrets))
    print(f"  - after each change run `irules compile . --env {environment} --out build/{environment}` and commit build/")


# ---------------------------------------------------------------- the files


def repository_files(environment: str, kinds: list[str]) -> dict[str, str]:
    """Return every file of the new repository by its path relative to the repository folder."""
    from compiler.fmt import format_source

    policy = {
        "settings.irules": _settings(environment, kinds),
        "teams.irules": _teams(kinds),
        "routes.irules": _routes(kinds),
        "severity.irules": SEVERITY,
        "tests.irules": _tests(kinds),
    }
    files = {name: format_source(text, name) for name, text in policy.items()}
    files[".github/workflows/irules.yml"] = _workflow(environment)
    files[".pre-commit-config.yaml"] = PRE_COMMIT.replace("ENVIRONMENT", environment)
    files["README.md"] = _readme(environment, kinds)
    return files


def _settings(environment: str, kinds: list[str]) -> str:
    lines = [
        "# Global settings and the grouping of the root route.",
        "",
        "settings {",
        '  external_url "https://alertmanager.example.com"',
        '  secrets_dir "/etc/irules/secrets"',
        "  resolve_timeout 5m",
    ]
    if "slack" in kinds:
        lines.append('  slack_api_url secret("SLACK_API_URL")')
    if "email" in kinds:
        lines.append('  smtp "smtp.example.com:587" from "alerts@example.com"')
    if "teams" in kinds or "sms" in kinds:
        lines.append("  # Alertmanager 0.25 cannot send Teams messages or SMS; the irules daemon at this URL does.")
        lines.append('  daemon_url "https://irules.example.com"')
    lines += [
        "}",
        "",
        "defaults {",
        "  group_by [alertname, cluster, service]",
        "  group_wait 30s",
        "  group_interval 5m",
        "  repeat_interval 4h",
        "}",
        "",
        f"# Overrides that apply with `--env {environment}`.",
        f"environment {environment} {{",
        "  settings {",
        f'    external_url "https://alertmanager.{environment}.example.com"',
        "  }",
        "}",
    ]
    return "\n".join(lines) + "\n"


def _teams(kinds: list[str]) -> str:
    blocks = ["# One team per integration. Replace the example targets with your own."]
    for kind in kinds:
        integration = INTEGRATIONS[kind]
        blocks.append(f"team {integration.team} {{\n  {integration.channel}\n}}")
    return "\n\n".join(blocks) + "\n"


def _root_and_children(kinds: list[str]) -> tuple[str, list[tuple[str, bool]]]:
    """Return the root receiver and the child routes as (team, pages) pairs, in tree order."""
    paging = [INTEGRATIONS[kind].team for kind in kinds if INTEGRATIONS[kind].pages]
    chat = [INTEGRATIONS[kind].team for kind in kinds if not INTEGRATIONS[kind].pages]
    if len(kinds) == 1:
        return (chat or paging)[0], []
    # Each chat team gets every alert through a child route without matchers.
    # Without chat teams, the first paging team is the fallback of the root.
    return (chat or paging)[0], [(team, True) for team in paging] + [(team, False) for team in chat]


def _routes(kinds: list[str]) -> str:
    root, children = _root_and_children(kinds)
    lines = [
        "# Children are tried in order. `continue` lets the next sibling match too,",
        "# so an alert can reach several teams.",
        "",
        "route {",
        f"  receiver {root}",
    ]
    for position, (team, pages) in enumerate(children):
        last = position == len(children) - 1
        head = f'match severity = "critical" -> {team}' if pages else f"route -> {team}"
        lines.append(f"  {head}" + (" {\n    continue\n  }" if not last else ""))
    lines += [
        "}",
        "",
        "# While a critical alert fires, the warning of the same alert, cluster and service is silenced.",
        'inhibit severity = "critical" silences severity = "warning" on [alertname, cluster, service]',
    ]
    return "\n".join(lines) + "\n"


SEVERITY = """\
# The first rule whose condition is true sets the incident's severity.

severity {
  critical when label.severity == "critical"
  high when label.severity == "error"
  medium when label.severity == "warning"
  else low
}
"""


def _expected_receivers(kinds: list[str], critical: bool) -> list[str]:
    root, children = _root_and_children(kinds)
    found = [team for team, pages in children if critical or not pages]
    return found or [root]


def _tests(kinds: list[str]) -> str:
    critical = ", ".join(_expected_receivers(kinds, critical=True))
    warning = ", ".join(_expected_receivers(kinds, critical=False))
    alert = 'alertname = "NodeDown", cluster = "eu-1", service = "api"'
    return f"""\
# Rule tests: run them with `irules test`.

test "critical alerts reach every team" {{
  alert {{ {alert}, severity = "critical" }}
  expect receivers [{critical}]
  expect severity critical
}}

test "warnings skip paging" {{
  alert {{ {alert}, severity = "warning" }}
  expect receivers [{warning}]
  expect severity medium
}}

test "a critical alert silences its warning" {{
  alert {{ {alert}, severity = "warning" }}
  also_firing {{ {alert}, severity = "critical" }}
  expect inhibited
}}
"""


def _workflow(environment: str) -> str:
    from compiler.version import __version__

    return f"""\
# Checks the incident rules on every push and pull request.
name: irules

on:
  push:
    branches: [main]
  pull_request:

permissions:
  contents: read

jobs:
  rules:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - uses: actions/setup-python@v5
        with:
          python-version: "3.11"
      # Use the irules version that compiled build/: the artifacts name it in their header.
      - name: Install irules
        run: python -m pip install "irules=={__version__}"
      - name: Check the rules
        run: irules check . --env {environment}
      - name: Run the rule tests
        run: irules test . --env {environment}
      - name: Compare with the committed build
        run: irules diff . --env {environment} --against build/{environment}
"""


PRE_COMMIT = """\
# Runs before each commit; install once with `pre-commit install`.
repos:
  - repo: local
    hooks:
      - id: irules-fmt
        name: irules fmt --check
        entry: irules fmt --check .
        language: system
        files: \\.irules$
        pass_filenames: false
      - id: irules-check
        name: irules check
        entry: irules check . --env ENVIRONMENT
        language: system
        files: \\.irules$
        pass_filenames: false
"""


def _readme(environment: str, kinds: list[str]) -> str:
    teams = "\n".join(f"- `{INTEGRATIONS[kind].team}`: {kind}" for kind in kinds)
    secrets = [INTEGRATIONS[kind].secret for kind in kinds if INTEGRATIONS[kind].secret]
    secret_lines = (
        "The rules reference these secrets by name. Put one file per name in the\n"
        "secrets folder (`secrets_dir` in `settings.irules`):\n\n" + "\n".join(f"- `{name}`" for name in secrets)
        if secrets
        else "The rules reference no secrets yet."
    )
    return f"""\
# Incident rules

The incident policy of this repository, written in `.irules` files and
compiled by [irules](https://pypi.org/project/irules/) into the configuration
of Alertmanager, PagerDuty and Slack.

## Layout

- `settings.irules`: global settings, default grouping, and the overrides of
  the `{environment}` environment
- `teams.irules`: one team per integration
- `routes.irules`: where alerts go, and which alerts silence others
- `severity.irules`: how the severity of an incident is set
- `tests.irules`: rule tests
- `build/{environment}/`: the compiled artifacts, committed so that reviews
  show what changes

Teams:

{teams}

## Secrets

{secret_lines}

## Working on the rules

```sh
irules fmt .                                                  # format the files
irules check . --env {environment}                            # report every problem
irules test . --env {environment}                             # run the rule tests
irules compile . --env {environment} --out build/{environment}  # write the artifacts
```

Commit the `build/{environment}` folder with the change of the rules. The CI
workflow (`.github/workflows/irules.yml`) runs `irules check` and
`irules test`, then `irules diff`, which fails when the committed build does
not match the rules. The pre-commit hooks (`.pre-commit-config.yaml`, enabled
with `pre-commit install`) run `irules fmt --check` and `irules check` before
each commit.
"""
