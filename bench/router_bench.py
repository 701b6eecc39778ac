"""Benchmark the router: label sets routed per second on one core, on a 1,000-route tree.

The tree comes from the project generator of `check_bench.py`: one route per
team, routes below each team with one to three matchers (`=`, `!=`, `=~`,
`!~`), some of them with `continue`, and some with two or three children.
The script measures three trees that route every label set alike:

- `generated`: the tree as the generator writes it. Every route has an `=`
  matcher, and a parent looks its children up by the value of that label.
- `literal-regex`: each route's first `=` matcher is written as a regex of
  the same literal, the regex `team\\-0001` in place of `team-0001`. The
  router reads a regex of literals joined by `|` as a set of values, as in
  `severity =~ "critical|warning"`, and indexes children by it too.
- `opaque-regex`: the literal is wrapped in a group, `(team\\-0001)`, which
  the router does not read as literals. Only routes with a second `=`
  matcher can be looked up, so most siblings run their regex. This is the
  slowest shape of tree.

The label sets are drawn once from a fixed seed. 60% are built to reach a
route below a team route, 25% reach only a team route, and 15% carry no team
and fall back to the root. The script prints the share that ends at each depth.

Usage:
    python bench/router_bench.py                  # print the table
    python bench/router_bench.py --write          # also rewrite its section of docs/benchmarks.md
    python bench/router_bench.py --profile        # cProfile of the router on the opaque-regex tree
"""

from __future__ import annotations

import argparse
import collections
import cProfile
import io
import pstats
import random
import re
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from check_bench import generate_project, machine  # noqa: E402
from docs_section import replace_section  # noqa: E402

from compiler import ir  # noqa: E402
from compiler.api import check_path  # noqa: E402
from compiler.router import Router, matcher_matches  # noqa: E402

ROUTES = 1_000
LABEL_SETS = 20_000
TARGET_PER_SECOND = 50_000
SHARE_BELOW_TEAM = 0.60
SHARE_TEAM_ONLY = 0.25

# Values each label can take. They include values matching each regex the generator writes,
# so that the label sets can reach routes with `=~` matchers.
VALUES = {
    "alertname": ["HighLatency", "ErrorRate", "DiskFull", "PodCrashLooping", "HighMemoryUsage", "CertificateExpiry"],
    "cluster": ["eu-west-1", "eu-central-2", "us-east-1", "us-west-2", "ap-south-1"],
    "namespace": ["web-canary", "etl-batch", "kube-system", "payments", "default"],
    "env": ["prod", "staging", "dev-1", "dev-7", "qa"],
    "region": ["eu-west-1", "eu-central-1", "us-east-1", "ap-south-1"],
    "severity": ["critical", "warning", "info"],
}


# ---------------------------------------------------------------- trees


def generated_tree(routes: int) -> ir.Route:
    """Return the lowered route tree of a generated project of `routes` routes."""
    with tempfile.TemporaryDirectory(prefix="irules-router-bench-") as scratch:
        generate_project(Path(scratch), routes)
        result = check_path(Path(scratch))
        return result.ruleset().route


def with_regex_first(route: ir.Route, wrap: str) -> ir.Route:
    """Return `route` with the first `=` matcher of every route written as the anchored regex `wrap` of its value.

    `wrap` contains `{}` where the escaped value goes, such as `({})`.
    """
    matchers = list(route.matchers)
    for position, matcher in enumerate(matchers):
        if matcher.op is ir.MatchOp.EQUAL:
            pattern = wrap.format(re.escape(matcher.value))
            matchers[position] = matcher.model_copy(update={"op": ir.MatchOp.REGEX, "value": pattern})
            break
    children = [with_regex_first(child, wrap) for child in route.routes]
    return route.model_copy(update={"matchers": matchers, "routes": children})


def paths(route: ir.Route, above: tuple[ir.Route, ...] = ()) -> list[tuple[ir.Route, ...]]:
    """Return the path from the root to every route, the root's own path first."""
    here = (*above, route)
    found = [here]
    for child in route.routes:
        found += paths(child, here)
    return found


# ---------------------------------------------------------------- label sets


def label_sets(root: ir.Route, count: int, seed: int = 11) -> list[dict[str, str]]:
    """Draw `count` label sets: most reach a route below a team route, some a team route, the rest the root."""
    rng = random.Random(seed)
    every_path = paths(root)
    teams = [path for path in every_path if len(path) == 2]
    deeper = [path for path in every_path if len(path) > 2]
    drawn = []
    for _ in range(count):
        labels = {name: rng.choice(values) for name, values in VALUES.items() if rng.random() < 0.8}
        labels["instance"] = f"10.0.{rng.randrange(256)}.{rng.randrange(256)}:9100"
        roll = rng.random()
        if roll < SHARE_BELOW_TEAM:
            _satisfy(rng.choice(deeper), labels, rng)
        elif roll < SHARE_BELOW_TEAM + SHARE_TEAM_ONLY:
            _satisfy(rng.choice(teams), labels, rng)
            labels["component"] = "unknown-component"
        drawn.append(labels)
    return drawn


def _satisfy(path: tuple[ir.Route, ...], labels: dict[str, str], rng: random.Random) -> None:
    """Change `labels` so that they meet the matchers along `path`, where the value pools allow it."""
    for route in path:
        for matcher in route.matchers:
            if not _meets(matcher, labels.get(matcher.name, "")):
                pool = VALUES.get(matcher.name, [])
                choices = [value for value in [matcher.value, *pool] if _meets(matcher, value)]
                labels[matcher.name] = rng.choice(choices) if choices else f"not-{matcher.value}"


def _meets(matcher: ir.Matcher, value: str) -> bool:
    return matcher_matches(matcher, {matcher.name: value})


def depth_shares(router: Router, sets: list[dict[str, str]]) -> dict[str, float]:
    """Return the share of label sets whose deepest matched route is at the root, a team route, or below."""
    counts: collections.Counter[str] = collections.Counter()
    for labels in sets:
        depth = max(route.id.count(".") for route in router.match(labels))
        counts[("root", "team route", "below a team route")[min(depth, 2)]] += 1
    return {name: counts[name] / len(sets) for name in ("root", "team route", "below a team route")}


# ---------------------------------------------------------------- measurement


def measure(router: Router, sets: list[dict[str, str]], repeat: int) -> dict[str, float]:
    """Route every label set `repeat` times, and return label sets per second for the best and the mean run."""
    match = router.match
    match(sets[0])  # compile the regexes before timing
    timings = []
    for _ in range(repeat):
        start = time.perf_counter()
        for labels in sets:
            match(labels)
        timings.append(time.perf_counter() - start)
    return {"best": len(sets) / min(timings), "mean": len(sets) / statistics.fmean(timings), "runs": repeat}


def profile(router: Router, sets: list[dict[str, str]], top: int = 20) -> str:
    profiler = cProfile.Profile()
    profiler.runcall(lambda: [router.match(labels) for labels in sets])
    output = io.StringIO()
    pstats.Stats(profiler, stream=output).sort_stats("tottime").print_stats(top)
    return output.getvalue()


def count_routes(route: ir.Route) -> int:
    return sum(1 + count_routes(child) for child in route.routes)


# ---------------------------------------------------------------- report


def report(results: dict[str, dict[str, float]], shares: dict[str, float], routes: int, count: int, command: str) -> str:
    info = machine()
    lines = [
        "## Router throughput",
        "",
        f"`bench/router_bench.py` routes {count:,} label sets with `compiler.router.Router.match` on one core,",
        f"through three trees of {routes:,} routes below the root that route every label set alike. The trees come",
        "from the project generator of `check_bench.py`, whose routes have one to three matchers each:",
        "",
        "- `generated`: the tree as the generator writes it. Every route has an `=` matcher.",
        "- `literal-regex`: each route's first `=` matcher written as a regex of the same literal,",
        "  such as the regex `team\\-0001` in place of `team-0001`. The router reads such regexes as sets of values.",
        "- `opaque-regex`: the same regex inside a group, such as `(team\\-0001)`, which the router",
        "  does not read as values, so every sibling runs its regex (or finds its result in the regex cache).",
        "",
        "Where the label sets end: "
        + ", ".join(f"{name} {share:.0%}" for name, share in shares.items())
        + ". For a label set that reaches several routes through `continue`, the deepest route counts.",
        "The label values come from small pools, as team and severity labels do, so the",
        "cache of regex results answers nearly every test of the `opaque-regex` tree after the first run.",
        "",
        "| tree | label sets per second, best | mean | µs per label set | target |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
    for name, figures in results.items():
        met = "met" if figures["best"] >= TARGET_PER_SECOND else "missed"
        lines.append(
            f"| {name} | {figures['best']:,.0f} | {figures['mean']:,.0f} | {1e6 / figures['best']:.1f} "
            f"| at least {TARGET_PER_SECOND:,} per second: {met} |"
        )
    lines += [
        "",
        f"Each figure is the best or the mean of {next(iter(results.values()))['runs']} runs over all label sets.",
        "",
        f"- CPU: {info['cpu']}, {info['cores']} cores; Python {info['python']} on {info['system']}",
        f"- Load average over 1 minute, taken after the run: {info['load']}",
        f"- Command: `{command}`",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description="Benchmark the router on a generated route tree.")
    parser.add_argument("--routes", type=int, default=ROUTES, help="routes below the root (default 1,000)")
    parser.add_argument("--count", type=int, default=LABEL_SETS, help="label sets per run (default 20,000)")
    parser.add_argument("--repeat", type=int, default=7, help="runs per tree; the report shows the best and the mean")
    parser.add_argument("--write", action="store_true", help="rewrite the router section of docs/benchmarks.md")
    parser.add_argument("--profile", action="store_true", help="print a cProfile of the opaque-regex tree, and stop")
    options = parser.parse_args()

    generated = generated_tree(options.routes)
    trees = {
        "generated": Router(generated),
        "literal-regex": Router(with_regex_first(generated, "{}")),
        "opaque-regex": Router(with_regex_first(generated, "({})")),
    }
    sets = label_sets(generated, options.count)
    if options.profile:
        print(profile(trees["opaque-regex"], sets))
        return

    # The trees must route alike, or the comparison would measure different work.
    expected = [trees["generated"].receivers(labels) for labels in sets]
    for name, router in trees.items():
        assert [router.receivers(labels) for labels in sets] == expected, f"the {name} tree routes differently"

    results = {name: measure(router, sets, options.repeat) for name, router in trees.items()}
    shares = depth_shares(trees["generated"], sets)
    command = "python bench/router_bench.py " + shlex.join(sys.argv[1:])
    text = report(results, shares, count_routes(generated), len(sets), command.strip())
    print(text)
    if options.write:
        path = replace_section(REPO / "docs" / "benchmarks.md", "router", text)
        print(f"wrote the router section of {path.relative_to(REPO)}")


if __name__ == "__main__":
    main()
