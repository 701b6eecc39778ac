"""Benchmark `irules check` on generated projects of 100, 1,000 and 10,000 routes.

The generator writes a realistic project of several files per size. It has one
team per 20 routes, one receiver per 40, one service per 10 and one runbook of
four to six steps per 50. Route children have one to three matchers, some of
them regexes, and some routes are nested. Inhibit rules, time intervals,
severity rules and tests complete the project.

Three figures per size:
  - `check_path` in-process, best of `--repeat` runs (parser tables already built);
  - the whole `irules check FOLDER` process, wall time (hyperfine when installed);
  - `irules --help`, wall time, once for the whole run.

Usage:
    python bench/check_bench.py                  # print the table
    python bench/check_bench.py --write          # also rewrite docs/benchmarks.md
    python bench/check_bench.py --profile 10000  # cProfile one in-process check
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import itertools
import json
import os
import platform
import pstats
import random
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from compiler.api import check_path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from docs_section import replace_section  # noqa: E402

SIZES = (100, 1_000, 10_000)
TARGET_CHECK_10K_S = 2.0
TARGET_HELP_S = 0.3
ROUTES_PER_TEAM = 20
ROUTES_PER_RECEIVER = 40
ROUTES_PER_SERVICE = 10
ROUTES_PER_RUNBOOK = 50
ROUTES_PER_INHIBIT = 25
ROUTES_PER_INTERVAL = 100
ROUTES_PER_TEST = 20
ROUTES_PER_SEVERITY_RULE = 50
RUNBOOKS_PER_FILE = 20

LABELS = ("alertname", "cluster", "namespace", "env", "region", "severity")
ALERTNAMES = ("HighLatency", "ErrorRate", "DiskFull", "PodCrashLooping", "HighMemoryUsage", "CertificateExpiry")
REGEXES = {
    "alertname": ("High.*", "Disk.*|.*Full", "(Pod|Container)CrashLooping"),
    "cluster": ("eu-.*", "us-(east|west)-[0-9]+"),
    "namespace": ("[a-z]+-canary", ".*-batch", "kube-.*"),
    "env": ("prod|staging", "dev-[0-9]+"),
    "region": ("eu-(west|central)-[0-9]", "us-.*"),
    "severity": ("critical|warning", "warning|info"),
}


@dataclass(frozen=True, slots=True)
class Sizes:
    """How many declarations of each kind a project of `routes` routes gets."""

    routes: int

    def count(self, per: int) -> int:
        return max(1, self.routes // per)

    @property
    def teams(self) -> int:
        return self.count(ROUTES_PER_TEAM)


# ---------------------------------------------------------------- generator


def generate_project(folder: Path, routes: int, seed: int = 7) -> dict[str, int]:
    """Write a project of exactly `routes` routes into `folder`, and return the count of each declaration."""
    rng = random.Random(seed)
    sizes = Sizes(routes)
    teams = [f"team-{index:04d}" for index in range(sizes.teams)]
    receivers = [f"pager-{index:04d}" for index in range(sizes.count(ROUTES_PER_RECEIVER))]
    services = [f"svc-{index:05d}" for index in range(sizes.count(ROUTES_PER_SERVICE))]
    intervals = [f"window-{index:03d}" for index in range(sizes.count(ROUTES_PER_INTERVAL))]
    runbooks = [f"rb-{index:04d}" for index in range(sizes.count(ROUTES_PER_RUNBOOK))]

    files = {
        "main.irules": _settings_and_defaults(),
        "people.irules": _teams(teams, services) + _receivers(receivers),
        "services.irules": _services(services, teams, rng),
        "time.irules": _time_intervals(intervals, rng),
        "routes.irules": _route_tree(routes, teams, receivers, intervals, rng),
        "inhibit.irules": _inhibits(sizes.count(ROUTES_PER_INHIBIT), rng),
        "severity.irules": _severity(sizes.count(ROUTES_PER_SEVERITY_RULE), rng),
        "tests.irules": _tests(sizes.count(ROUTES_PER_TEST), teams, rng),
    }
    for start in range(0, len(runbooks), RUNBOOKS_PER_FILE):
        chunk = runbooks[start : start + RUNBOOKS_PER_FILE]
        files[f"runbooks-{start // RUNBOOKS_PER_FILE:03d}.irules"] = _runbooks(chunk, teams, rng)

    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
    return {
        "routes": routes,
        "files": len(files),
        "teams": len(teams),
        "receivers": len(receivers),
        "services": len(services),
        "runbooks": len(runbooks),
        "lines": sum(text.count("\n") for text in files.values()),
    }


def _settings_and_defaults() -> str:
    return (
        "settings {\n"
        '  external_url "https://alertmanager.example.com"\n'
        '  incident_url "https://incidents.example.com"\n'
        '  secrets_dir  "/etc/alertmanager/secrets"\n'
        # The Alertmanager target needs these for the teams' email and Slack channels, and
        # `irules check` reports what the target would reject.
        '  smtp "smtp.example.com:587" from "alerts@example.com"\n'
        '  slack_api_url secret("SLACK_API_URL")\n'
        "}\n\n"
        "defaults {\n"
        "  group_by        [alertname, cluster, service]\n"
        "  group_wait      30s\n"
        "  group_interval  5m\n"
        "  repeat_interval 4h\n"
        "}\n"
    )


def _teams(teams: list[str], services: list[str]) -> str:
    owned = _split(services, len(teams))
    blocks = []
    for team, own in zip(teams, owned, strict=True):
        owns = f"  owns [{', '.join(own)}]\n" if own else ""
        blocks.append(f'team {team} {{\n  slack "#{team}"\n  email "{team}@example.com"\n{owns}}}\n')
    return "\n".join(blocks) + "\n"


def _receivers(receivers: list[str]) -> str:
    blocks = []
    for receiver in receivers:
        key = receiver.upper().replace("-", "_") + "_KEY"
        blocks.append(f'receiver {receiver} {{\n  pagerduty key secret("{key}")\n  slack "#{receiver}"\n}}\n')
    return "\n".join(blocks)


def _services(services: list[str], teams: list[str], rng: random.Random) -> str:
    owners = _split(services, len(teams))
    blocks = []
    for team, own in zip(teams, owners, strict=True):
        for service in own:
            index = services.index(service)
            depends = sorted({services[rng.randrange(index)] for _ in range(rng.randint(0, 2))} if index else set())
            depends_line = f"  depends_on [{', '.join(depends)}]\n" if depends else ""
            blocks.append(
                f"service {service} {{\n  team {team}\n{depends_line}  tier {rng.randint(1, 3)}\n"
                f'  match service = "{service}"\n}}\n'
            )
    return "\n".join(blocks)


def _time_intervals(intervals: list[str], rng: random.Random) -> str:
    blocks = []
    for interval in intervals:
        start = rng.randint(0, 11)
        blocks.append(
            f"time_interval {interval} {{\n"
            '  weekdays ["monday:friday"]\n'
            f'  times ["{start:02d}:00-{start + 8:02d}:00"]\n'
            '  location "Europe/Berlin"\n'
            "}\n"
        )
    return "\n".join(blocks)


def _split(items: list[str], parts: int) -> list[list[str]]:
    """Split `items` into `parts` consecutive chunks of nearly equal size."""
    return [items[index * len(items) // parts : (index + 1) * len(items) // parts] for index in range(parts)]


# ---------------------------------------------------------------- routes


def _route_tree(routes: int, teams: list[str], receivers: list[str], intervals: list[str], rng: random.Random) -> str:
    """Write one route tree with exactly `routes` routes below the root, grouped per team."""
    lines = ["route {", f"  receiver {teams[0]}", "  group_by [alertname, cluster]"]
    budgets = [len(chunk) for chunk in _split(list(range(routes)), len(teams))]
    for team, budget in zip(teams, budgets, strict=True):
        lines += _team_subtree(team, budget, teams, receivers, intervals, rng)
    lines.append("}")
    return "\n".join(lines) + "\n"


def _team_subtree(
    team: str, budget: int, teams: list[str], receivers: list[str], intervals: list[str], rng: random.Random
) -> list[str]:
    """Return one team's route and `budget - 1` routes below it, some of them nested one level deeper."""
    lines = [f'  match team = "{team}" -> {team} {{']
    components = (f"{team}-c{index}" for index in itertools.count())
    remaining = budget - 1
    while remaining > 0:
        nested = min(remaining - 1, rng.choice((0, 0, 0, 2, 3)))
        receiver = rng.choice(receivers) if rng.random() < 0.3 else rng.choice(teams)
        matchers, used = _matchers(f'component = "{next(components)}"', {"component"}, rng)
        if nested:
            # A parent with children and `continue` only gets the alerts no child matches (IR0407), so it has none.
            lines.append(f"    match {matchers} -> {receiver} {{")
            lines += [f"      {option}" for option in _route_options(intervals, rng, allow_continue=False)]
            for alertname in rng.sample(ALERTNAMES, nested):
                # A child only narrows its parent, so it leaves the parent's labels alone.
                child, _ = _matchers(f'alertname = "{alertname}"', used | {"alertname"}, rng)
                lines.append(f"      match {child} -> {rng.choice(receivers)}")
            lines.append("    }")
        elif options := _route_options(intervals, rng, allow_continue=True):
            lines.append(f"    match {matchers} -> {receiver} {{ {' '.join(options)} }}")
        else:
            lines.append(f"    match {matchers} -> {receiver}")
        remaining -= 1 + nested
    lines.append("  }")
    return lines


def _route_options(intervals: list[str], rng: random.Random, *, allow_continue: bool) -> list[str]:
    options = []
    if allow_continue and rng.random() < 0.15:
        options.append("continue")
    if rng.random() < 0.1:
        options.append(f"mute_during [{rng.choice(intervals)}]")
    if rng.random() < 0.1:
        options.append(f"group_wait {rng.choice(('0s', '10s', '1m'))}")
    return options


def _matchers(lead: str, excluded: set[str], rng: random.Random) -> tuple[str, set[str]]:
    """Return one to three matchers and their labels.

    The matchers start with `lead`, which differs between siblings so that none shadows another,
    and the others use labels outside `excluded`.
    """
    labels = rng.sample([label for label in LABELS if label not in excluded], rng.randint(0, 2))
    text = ", ".join([lead] + [_matcher(label, rng) for label in labels])
    return text, excluded | set(labels)


def _matcher(label: str, rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.2:
        return f'{label} =~ "{rng.choice(REGEXES[label])}"'
    if roll < 0.25:
        return f'{label} !~ "{rng.choice(REGEXES[label])}"'
    if roll < 0.3:
        return f'{label} != "{_label_value(label, rng)}"'
    return f'{label} = "{_label_value(label, rng)}"'


def _label_value(label: str, rng: random.Random) -> str:
    if label == "alertname":
        return rng.choice(ALERTNAMES)
    if label == "severity":
        return rng.choice(("critical", "warning", "info"))
    return f"{label}-{rng.randint(0, 99)}"


# ---------------------------------------------------------------- inhibit, severity, tests


def _inhibits(count: int, rng: random.Random) -> str:
    lines = []
    for _ in range(count):
        alertname = rng.choice(ALERTNAMES)
        lines.append(
            f'inhibit severity = "critical", alertname = "{alertname}" silences severity = "warning" on [cluster, namespace]'
        )
    return "\n".join(lines) + "\n"


def _severity(count: int, rng: random.Random) -> str:
    levels = ("critical", "high", "medium", "low")
    lines = ["severity {"]
    for index in range(count):
        level = levels[index % len(levels)]
        alertname = rng.choice(ALERTNAMES)
        cluster = rng.choice(REGEXES["cluster"])
        lines.append(f'  {level} when alertname == "{alertname}" and label.cluster =~ "{cluster}"')
    lines.append("  else classify confidence 80% fallback medium")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _tests(count: int, teams: list[str], rng: random.Random) -> str:
    blocks = []
    for index in range(count):
        team = teams[index % len(teams)]
        blocks.append(
            f'test "alerts of {team} reach the team, case {index}" {{\n'
            f'  alert {{ alertname = "{rng.choice(ALERTNAMES)}", team = "{team}", severity = "info" }}\n'
            "  expect not inhibited\n"
            "}\n"
        )
    return "\n".join(blocks)


# ---------------------------------------------------------------- runbooks


def _runbooks(runbooks: list[str], teams: list[str], rng: random.Random) -> str:
    return "\n".join(_runbook(runbook, teams, rng) for runbook in runbooks)


def _runbook(runbook: str, teams: list[str], rng: random.Random) -> str:
    team = rng.choice(teams)
    alertname = rng.choice(ALERTNAMES)
    lines = [
        f'runbook {runbook} "Remediate {alertname} for {team}" {{',
        f'  when alertname == "{alertname}" and label.team == "{team}"',
        "  manual",
        "  timeout 30m",
        '  step inspect { query prometheus "sum(rate(http_requests_total[5m]))"  timeout 30s }',
        '  step pods after inspect { run ["kubectl", "get", "pods", "-n", "{{ label.namespace }}"]  timeout 30s }',
    ]
    previous = "pods"
    for index in range(rng.randint(2, 4)):
        step = f"act{index}"
        lines.append(_runbook_step(step, previous, team, index, rng))
        previous = step
    lines.append("}")
    return "\n".join(lines) + "\n"


def _runbook_step(step: str, previous: str, team: str, index: int, rng: random.Random) -> str:
    kind = rng.choice(("http", "wait", "notify", "restart"))
    if kind == "http":
        body = f'http POST "https://deploy.example.com/api/v1/{team}/scale" expect 200  idempotent  retry 2 backoff 10s'
    elif kind == "wait":
        body = "wait 2m"
    elif kind == "notify":
        body = f"notify {team}"
    else:
        body = f'run ["kubectl", "rollout", "restart", "deployment/{team}-{index}"]  risk high  approval from {team} timeout 15m'
    return f"  step {step} after {previous} {{ {body} }}"


# ---------------------------------------------------------------- measurement


def measure_in_process(folder: Path, repeat: int) -> tuple[float, int]:
    """Return the best `check_path` time over `repeat` runs and the number of errors reported."""
    check_path(folder)  # build the parser tables, which a long-running process keeps between checks
    timings = []
    result = None
    for _ in range(repeat):
        # Drop the previous run's AST first, so that every run starts from the heap of a fresh check.
        result = None
        gc.collect()
        start = time.perf_counter()
        result = check_path(folder)
        timings.append(time.perf_counter() - start)

    # A generated project is meant to be clean, so errors mean the generator lags behind the checks.
    errors = [item for item in result.diagnostics if item.severity == "error"]
    for item in errors[:3]:
        where = f"{item.span.path}:{item.span.line}" if item.span else "(no file)"
        print(f"warning: generated project has an error: {where}: {item.code} {item.message}", file=sys.stderr)
    return min(timings), len(errors)


def measure_without_gc(folder: Path, repeat: int) -> float:
    """Return the best `check_path` time with Python's cyclic garbage collector switched off."""
    gc.collect()
    gc.disable()
    try:
        timings = []
        for _ in range(repeat):
            start = time.perf_counter()
            check_path(folder)
            timings.append(time.perf_counter() - start)
            gc.collect()  # free the run's cycles outside the measured time
    finally:
        gc.enable()
    return min(timings)


def irules_command() -> list[str]:
    """Return the command that starts this checkout's CLI.

    The console script beside the interpreter is preferred over the one on PATH,
    which may be a version manager's shim that adds its own start-up time.
    """
    script = Path(sys.executable).with_name("irules")
    return [str(script)] if script.exists() else [sys.executable, "-m", "runtime.cli"]


def process_environment() -> dict[str, str]:
    """Return the environment of the timed processes: this checkout on the path, and Python's bytecode cache on.

    An installed irules runs from compiled bytecode. With PYTHONDONTWRITEBYTECODE set, as
    some shells and containers do, every timed process would compile the checkout's
    modules from source again. Without it, the unmeasured first run writes the cache.
    """
    environment = dict(os.environ, PYTHONPATH=str(REPO))
    environment.pop("PYTHONDONTWRITEBYTECODE", None)
    return environment


def measure_process(args: list[str], repeat: int) -> dict[str, float]:
    """Time a whole CLI process with hyperfine when it is installed, or else with a perf_counter loop."""
    command = irules_command() + args
    if shutil.which("hyperfine"):
        return _hyperfine(command, repeat)
    env = process_environment()
    subprocess.run(command, cwd=REPO, env=env, capture_output=True, check=False)  # warm-up run, not measured
    timings = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(command, cwd=REPO, env=env, capture_output=True, check=False)
        timings.append(time.perf_counter() - start)
    return {"best": min(timings), "mean": statistics.fmean(timings), "runs": repeat}


def _hyperfine(command: list[str], repeat: int) -> dict[str, float]:
    with tempfile.NamedTemporaryFile(suffix=".json") as export:
        subprocess.run(
            [
                "hyperfine",
                "--warmup",
                "1",
                "--runs",
                str(repeat),
                "--ignore-failure",
                "--export-json",
                export.name,
                "--",
                shlex.join(command),
            ],
            cwd=REPO,
            env=process_environment(),
            capture_output=True,
            check=True,
        )
        result = json.loads(Path(export.name).read_text(encoding="utf-8"))["results"][0]
    return {"best": result["min"], "mean": result["mean"], "runs": repeat}


def profile_check(folder: Path, top: int = 20) -> str:
    """Return the `top` functions by cumulative time of one in-process check of `folder`."""
    check_path(folder)
    profiler = cProfile.Profile()
    profiler.runcall(check_path, folder)
    output = io.StringIO()
    pstats.Stats(profiler, stream=output).sort_stats("cumulative").print_stats(top)
    return output.getvalue()


# ---------------------------------------------------------------- report


def machine() -> dict[str, str]:
    """Return the CPU model, core count, Python version, process timer and load average of this machine."""
    model = "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cpu": model,
        "cores": str(os.cpu_count()),
        "python": platform.python_version(),
        "system": f"{platform.system()} {platform.release()}",
        "timer": "hyperfine" if shutil.which("hyperfine") else "time.perf_counter around subprocess.run",
        "load": f"{os.getloadavg()[0]:.2f}",
    }


def table(rows: list[dict[str, float]], help_timing: dict[str, float]) -> str:
    lines = [
        "| routes | files | lines | check_path best (s) | µs per route | check_path, GC off (s) "
        "| `irules check` best (s) | mean (s) | errors |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        lines.append(
            f"| {row['routes']:,} | {row['files']} | {row['lines']:,} | {row['in_process']:.3f} "
            f"| {row['in_process'] / row['routes'] * 1e6:.0f} | {row['without_gc']:.3f} | {row['process']['best']:.3f} "
            f"| {row['process']['mean']:.3f} | {row['errors']} |"
        )
    lines.append("")
    lines.append(
        f"`irules --help`: best {help_timing['best']:.3f} s, mean {help_timing['mean']:.3f} s over {help_timing['runs']} runs."
    )
    return "\n".join(lines)


def verdicts(rows: list[dict[str, float]], help_timing: dict[str, float]) -> list[str]:
    """Compare the figures with the targets and state whether growth is linear."""
    lines = []
    largest = rows[-1]
    if largest["routes"] == 10_000:
        for what, seconds in (
            ("in-process `check_path`", largest["in_process"]),
            ("whole `irules check` process", largest["process"]["best"]),
        ):
            passed = seconds < TARGET_CHECK_10K_S
            lines.append(
                f"- 10,000 routes, {what}: {seconds:.2f} s (target under {TARGET_CHECK_10K_S:.0f} s): {'met' if passed else 'missed'}."
            )
    passed = help_timing["best"] < TARGET_HELP_S
    lines.append(
        f"- `irules --help`: {help_timing['best']:.2f} s (target under {TARGET_HELP_S} s): {'met' if passed else 'missed'}."
    )
    for smaller, larger in itertools.pairwise(rows):
        ratio = (larger["in_process"] / larger["routes"]) / (smaller["in_process"] / smaller["routes"])
        ratio_without_gc = (larger["without_gc"] / larger["routes"]) / (smaller["without_gc"] / smaller["routes"])
        lines.append(
            f"- `check_path` time per route at {larger['routes']:,} routes is {ratio:.2f}× the time per route at "
            f"{smaller['routes']:,} routes, and {ratio_without_gc:.2f}× with the garbage collector off "
            "(1.00 is linear growth, and below 1.00 fixed costs are spread thinner)."
        )
    return lines


def write_docs(rows: list[dict[str, float]], help_timing: dict[str, float], command: str) -> Path:
    info = machine()
    path = REPO / "docs" / "benchmarks.md"
    text = "\n".join(
        [
            "## `irules check` on generated projects",
            "",
            "`bench/check_bench.py` generates a project per size and times the checker on it. A project",
            "has one team per 20 routes, one runbook of four to six steps per 50 routes, inhibit rules,",
            "time intervals, severity rules and tests, and `bench/README.md` lists all proportions.",
            "",
            "- `check_path` is the in-process time of `compiler.api.check_path`, with the parser tables already built.",
            "- `check_path, GC off` is the same with Python's cyclic garbage collector disabled, which shows",
            "  how much of the time the collector takes.",
            "- `irules check` is the wall time of the whole process, interpreter start included. An unmeasured",
            "  first run writes Python's bytecode cache and irules' cache of parser tables, as an installed irules has them.",
            "",
            "Each figure is the best of several runs, and `mean` is the mean of the process runs.",
            "",
            table(rows, help_timing),
            "",
            "Targets and growth:",
            "",
            *verdicts(rows, help_timing),
            "",
            "Machine and command:",
            "",
            f"- CPU: {info['cpu']}, {info['cores']} cores",
            f"- Python {info['python']} on {info['system']}",
            f"- Process timer: {info['timer']}",
            f"- Load average over 1 minute, taken after the run: {info['load']}",
            f"- Command: `{command}`",
            "",
        ]
    )
    path.parent.mkdir(exist_ok=True)
    if not path.exists():
        path.write_text("# Benchmarks\n\n", encoding="utf-8")
    return replace_section(path, "check", text)


# ---------------------------------------------------------------- main


def run(sizes: list[int], repeat: int) -> tuple[list[dict[str, float]], dict[str, float]]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="irules-bench-") as scratch:
        for routes in sizes:
            folder = Path(scratch) / f"routes-{routes}"
            folder.mkdir()
            counts = generate_project(folder, routes)
            in_process, errors = measure_in_process(folder, repeat)
            without_gc = measure_without_gc(folder, repeat)
            process = measure_process(["check", str(folder)], repeat)
            rows.append({**counts, "in_process": in_process, "without_gc": without_gc, "process": process, "errors": errors})
            print(f"{routes:>6} routes: check_path {in_process:.3f} s, irules check {process['best']:.3f} s", file=sys.stderr)
    help_timing = measure_process(["--help"], max(repeat, 10))
    return rows, help_timing


def warn_if_busy() -> None:
    """Print a warning when other processes keep the CPUs busy, because the timings would be inflated."""
    load = os.getloadavg()[0]
    cores = os.cpu_count() or 1
    if load > cores / 2:
        print(f"warning: load average {load:.1f} on {cores} cores, so the figures will be noisy", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description="Benchmark `irules check` on generated projects.")
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES), help="route counts to generate")
    parser.add_argument("--repeat", type=int, default=5, help="number of runs per measurement (the report uses the fastest)")
    parser.add_argument("--write", action="store_true", help="rewrite docs/benchmarks.md with the results")
    parser.add_argument("--profile", type=int, metavar="ROUTES", help="print a cProfile of one check of ROUTES routes, and stop")
    parser.add_argument(
        "--keep", type=Path, metavar="FOLDER", help="write the generated project of --sizes[0] routes here, and stop"
    )
    options = parser.parse_args()

    if options.keep:
        options.keep.mkdir(parents=True, exist_ok=True)
        print(generate_project(options.keep, options.sizes[0]))
        return
    if options.profile:
        with tempfile.TemporaryDirectory(prefix="irules-bench-") as scratch:
            generate_project(Path(scratch), options.profile)
            print(profile_check(Path(scratch)))
        return

    warn_if_busy()
    rows, help_timing = run(sorted(options.sizes), options.repeat)
    print(table(rows, help_timing))
    print()
    print("\n".join(verdicts(rows, help_timing)))
    if options.write:
        command = "python bench/check_bench.py " + shlex.join(sys.argv[1:])
        print(f"wrote {write_docs(rows, help_timing, command.strip()).relative_to(REPO)}")


if __name__ == "__main__":
    main()
