"""Benchmark `irules compile` against `amtool check-config` on generated projects of 1,000 and 10,000 routes.

The projects come from the generator of `check_bench.py`, whose `settings`
hold an SMTP server and `slack_api_url`: the generated teams send email and
post to Slack, and without these settings the Alertmanager target rejects them.

For each size the script times, with the same timer:
  - the whole `irules compile FOLDER --out DIR` process, interpreter start
    included, writing into a new, empty folder on every run;
  - `amtool check-config` of the alertmanager.yml it wrote, which must pass,
    taking turns with the compile so that both see the same machine load;
  - in the same process, the stages of a compile: `check_path`, lowering to
    the IR (`ruleset()`) and rendering the artifacts (`render_all`).

Usage:
    python bench/compile_bench.py                  # print the table
    python bench/compile_bench.py --write          # also rewrite its section of docs/benchmarks.md
    python bench/compile_bench.py --sizes 1000 --repeat 10
"""

from __future__ import annotations

import argparse
import gc
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from check_bench import generate_project, irules_command, machine, process_environment  # noqa: E402
from docs_section import replace_section  # noqa: E402

from compiler.api import check_path  # noqa: E402
from targets.render import render_all  # noqa: E402

SIZES = (1_000, 10_000)
TARGETS_S = {1_000: 0.5, 10_000: 2.0}
# Used when `irules compile` is missing: the same steps as the command, in one process.
FALLBACK_COMPILE = """
import sys
from pathlib import Path
from compiler.api import check_path
from targets.render import render_all
out = Path(sys.argv[2])
out.mkdir(parents=True, exist_ok=True)
for name, text in render_all(check_path(Path(sys.argv[1])).ruleset()).items():
    (out / name).write_text(text, encoding="utf-8")
"""


# ---------------------------------------------------------------- projects and commands


def compile_command() -> tuple[list[str], str]:
    """Return the compile command before its FOLDER and OUT arguments, and how the record names it."""
    command = irules_command()
    probe = subprocess.run([*command, "compile", "--help"], cwd=REPO, env=process_environment(), capture_output=True, check=False)
    if probe.returncode == 0:
        return [*command, "compile"], "`irules compile FOLDER --out OUT`"
    return [
        sys.executable,
        "-c",
        FALLBACK_COMPILE,
    ], "`python -c` running check_path, ruleset and render_all (no `irules compile` yet)"


def compile_arguments(prefix: list[str], folder: Path, out: Path) -> list[str]:
    if "compile" in prefix:
        return [*prefix, str(folder), "--out", str(out)]
    return [*prefix, str(folder), str(out)]


def amtool_version(amtool: str) -> str:
    completed = subprocess.run([amtool, "--version"], capture_output=True, text=True, check=False)
    first = (completed.stdout or completed.stderr).splitlines()
    return first[0] if first else "unknown"


def check_with_amtool(amtool: str, config: Path) -> None:
    """Run `amtool check-config` once, and stop the benchmark when the file does not pass."""
    completed = subprocess.run([amtool, "check-config", str(config)], capture_output=True, text=True, check=False)
    assert completed.returncode == 0, f"amtool rejects the generated {config}:\n{completed.stdout}{completed.stderr}"


# ---------------------------------------------------------------- measurement


def run_timed(command: list[str]) -> float:
    """Run `command` from the repository root and return its wall time, stopping the benchmark when it fails."""
    start = time.perf_counter()
    completed = subprocess.run(command, cwd=REPO, env=process_environment(), capture_output=True, check=False)
    elapsed = time.perf_counter() - start
    assert completed.returncode == 0, f"{shlex.join(command)} failed:\n{completed.stderr.decode(errors='replace')}"
    return elapsed


def summary(timings: list[float]) -> dict[str, float]:
    return {"best": min(timings), "mean": statistics.fmean(timings), "runs": len(timings)}


def measure_stages(folder: Path, repeat: int) -> dict[str, float]:
    """Return the best in-process time of each stage of a compile over `repeat` runs."""
    check_path(folder)  # build the parser tables first, as `check_bench.py` does
    stages: dict[str, list[float]] = {"check_path": [], "ruleset": [], "render_all": []}
    for _ in range(repeat):
        gc.collect()
        start = time.perf_counter()
        result = check_path(folder)
        checked = time.perf_counter()
        ruleset = result.ruleset()
        lowered = time.perf_counter()
        render_all(ruleset)
        rendered = time.perf_counter()
        stages["check_path"].append(checked - start)
        stages["ruleset"].append(lowered - checked)
        stages["render_all"].append(rendered - lowered)
        del result, ruleset
    return {name: min(timings) for name, timings in stages.items()}


def measure_size(routes: int, repeat: int, amtool: str, prefix: list[str], scratch: Path) -> dict[str, object]:
    """Time the compile and amtool on a project of `routes` routes, taking turns so that both see the same load."""
    folder = scratch / f"routes-{routes}"
    folder.mkdir()
    counts = generate_project(folder, routes)
    out = scratch / f"out-{routes}"
    compile_run = compile_arguments(prefix, folder, out)

    # The unmeasured first compile writes the file that amtool checks in every round.
    run_timed(compile_run)
    config = scratch / f"alertmanager-{routes}.yml"
    shutil.copyfile(out / "alertmanager.yml", config)
    check_with_amtool(amtool, config)
    sizes = {path.name: path.stat().st_size for path in sorted(out.iterdir())}
    amtool_run = [amtool, "check-config", str(config)]
    run_timed(amtool_run)

    ours, theirs = [], []
    for _ in range(repeat):
        shutil.rmtree(out)
        ours.append(run_timed(compile_run))
        theirs.append(run_timed(amtool_run))
    stages = measure_stages(folder, repeat)
    print(f"{routes:>6} routes: compile {min(ours):.3f} s, amtool {min(theirs):.3f} s", file=sys.stderr)
    return {**counts, "ours": summary(ours), "amtool": summary(theirs), "stages": stages, "sizes": sizes}


# ---------------------------------------------------------------- report


def table(rows: list[dict[str, object]]) -> list[str]:
    lines = [
        "| routes | compile best (s) | mean (s) | `amtool check-config` best (s) | mean (s) | ratio of best times | target |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for row in rows:
        ours, theirs = row["ours"], row["amtool"]
        lines.append(
            f"| {row['routes']:,} | {ours['best']:.3f} | {ours['mean']:.3f} | {theirs['best']:.3f} | {theirs['mean']:.3f} "
            f"| {ours['best'] / theirs['best']:.1f} | {verdict(row['routes'], ours['best'])} |"
        )
    return lines


def verdict(routes: int, seconds: float) -> str:
    target = TARGETS_S.get(routes)
    if target is None:
        return "none"
    return f"under {target} s: {'met' if seconds < target else 'missed'}"


def stage_table(rows: list[dict[str, object]]) -> list[str]:
    lines = [
        "| routes | `check_path` (s) | `ruleset()` (s) | `render_all` (s) | alertmanager.yml (kB) | ruleset.json (kB) |",
        "| ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        stages, sizes = row["stages"], row["sizes"]
        lines.append(
            f"| {row['routes']:,} | {stages['check_path']:.3f} | {stages['ruleset']:.3f} | {stages['render_all']:.3f} "
            f"| {sizes.get('alertmanager.yml', 0) / 1000:,.0f} | {sizes.get('ruleset.json', 0) / 1000:,.0f} |"
        )
    return lines


def startup_notes(rows: list[dict[str, object]]) -> list[str]:
    """State how much of each whole compile the three stages take, and what the rest is."""
    lines = []
    for row in rows:
        stages = sum(row["stages"].values())
        whole = row["ours"]["best"]
        if stages >= whole:
            lines.append(
                f"- {row['routes']:,} routes: the stages took {stages:.2f} s, longer than the best whole compile of "
                f"{whole:.2f} s, because the load of the machine changed between the measurements."
            )
            continue
        lines.append(
            f"- {row['routes']:,} routes: the stages take {stages:.2f} s of the {whole:.2f} s compile. "
            f"The other {whole - stages:.2f} s go to interpreter start, imports, loading the parser tables, making the source "
            "paths in the IR relative, writing the files and freeing memory."
        )
    return lines


def report(rows: list[dict[str, object]], described: str, amtool: str, command: str, repeat: int) -> str:
    info = machine()
    return "\n".join(
        [
            "## `irules compile` against `amtool check-config`",
            "",
            "`bench/compile_bench.py` generates a project per size with the generator of `check_bench.py`,",
            "whose settings hold an SMTP server and `slack_api_url`, and times two whole processes",
            f"with `time.perf_counter` around `subprocess.run`. After one unmeasured run of each, they take {repeat} turns,",
            "so that both see the same load, and the table shows the best and the mean. The unmeasured compile",
            "writes Python's bytecode cache and irules' cache of parser tables, as the first run of an installed irules does:",
            "",
            f"- compile: {described}, writing into a new, empty folder on each run;",
            "- `amtool check-config` of the alertmanager.yml that the compile wrote. The benchmark stops",
            "  when amtool rejects the file, so every row below passed it.",
            "",
            *table(rows),
            "",
            "Stages of a compile in one process, best of as many runs, with the parser tables already built:",
            "",
            *stage_table(rows),
            "",
            *startup_notes(rows),
            "",
            f"- CPU: {info['cpu']}, {info['cores']} cores; Python {info['python']} on {info['system']}",
            f"- amtool: {amtool}",
            f"- Load average over 1 minute, taken after the run: {info['load']}",
            f"- Command: `{command}`",
            "",
        ]
    )


# ---------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description="Benchmark `irules compile` against `amtool check-config`.")
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES), help="route counts to generate")
    parser.add_argument("--repeat", type=int, default=5, help="measured runs per command (after one unmeasured run)")
    parser.add_argument("--write", action="store_true", help="rewrite the compile section of docs/benchmarks.md")
    options = parser.parse_args()

    amtool = shutil.which("amtool")
    if amtool is None:
        sys.exit("compile_bench: amtool not found; install Debian's prometheus-alertmanager")
    prefix, described = compile_command()
    with tempfile.TemporaryDirectory(prefix="irules-compile-bench-") as scratch:
        rows = [measure_size(routes, options.repeat, amtool, prefix, Path(scratch)) for routes in sorted(options.sizes)]

    command = "python bench/compile_bench.py " + shlex.join(sys.argv[1:])
    text = report(rows, described, amtool_version(amtool), command.strip(), options.repeat)
    print(text)
    if options.write:
        path = replace_section(REPO / "docs" / "benchmarks.md", "compile", text)
        print(f"wrote the compile section of {path.relative_to(REPO)}")


if __name__ == "__main__":
    main()
