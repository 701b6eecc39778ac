"""`irules test`: run the rules' `test` blocks, like `promtool test rules`; scenario tests on a virtual clock."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated

import typer

from runtime.commands.common import EXIT_OK, EXIT_PROBLEMS, EXIT_USAGE, EnvOption, PathArgument, fail_internal, require_path

JunitOption = Annotated[Path | None, typer.Option("--junit", help="Also write a JUnit XML report to this file.")]
VerboseOption = Annotated[bool, typer.Option("--verbose", "-v", help="List the tests that pass too.")]


def register(app: typer.Typer) -> None:
    app.command("test")(test_rules)


def test_rules(path: PathArgument, env: EnvOption = None, junit: JunitOption = None, verbose: VerboseOption = False) -> None:
    """Run the test blocks, scenarios on a virtual clock. Exit 0 when all pass, 1 on a failed test or errors in the rules, 2 on usage errors."""
    require_path(path)
    try:
        status = _run(path, env, junit, verbose)
    except Exception as error:
        fail_internal(error)
    raise typer.Exit(status)


def _run(path: Path, env: str | None, junit: Path | None, verbose: bool) -> int:
    from compiler.api import check_path
    from compiler.diagnostics import Severity, render_text
    from compiler.rule_tests import run_tests
    from runtime.scenarios import run_scenario

    result = check_path(path, env)
    if result.has_errors:
        errors = [item for item in result.diagnostics if item.severity is Severity.ERROR]
        sys.stderr.write(render_text(errors, result.project.sources))
        print(f"irules: the rules have {len(errors)} error(s); no test ran", file=sys.stderr)
        return EXIT_PROBLEMS
    # Scenarios drive the daemon's pipeline, which logs each incident it opens and each label
    # that a dedup rule misses. The test report keeps only the errors of those logs.
    logger = logging.getLogger("irules")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        report = run_tests(result.ruleset(), run_scenario)
    finally:
        logger.setLevel(level)
    sys.stdout.write(report.render_text(verbose=verbose))
    if junit is not None:
        try:
            junit.write_text(report.junit_xml(), encoding="utf-8")
        except OSError as error:
            print(f"irules: cannot write the JUnit report `{junit}`: {error.strerror}", file=sys.stderr)
            return EXIT_USAGE
    return EXIT_OK if report.failed == 0 else EXIT_PROBLEMS
