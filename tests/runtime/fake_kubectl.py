#!/usr/bin/env python3
"""A stand-in for kubectl in runbook tests: it logs its argv and prints what kubectl prints.

Tests link this file into a temporary folder as `kubectl` and put that folder
first on PATH. Each call appends one JSON line to the file named by
`FAKE_KUBECTL_LOG`: `{"argv": [...], "env": [...]}`, the argv as received
(with `kubectl` as its first element) and the sorted names of the environment
variables the process saw.

Exit codes are scriptable. `FAKE_KUBECTL_EXIT` sets the exit code of every
call. `FAKE_KUBECTL_STATE` names a JSON file `{"exit_codes": [1, 0]}` from
which each call takes the first code, so a test can make one call fail and
the next succeed. Without either, `exec ... promtool check config` and every
other known command exit 0, and an unknown command exits 1 as kubectl does.

Only the standard library is used, so any python3 on PATH can run it.
"""

from __future__ import annotations

import json
import os
import sys

_KINDS = {
    "deployment": "deployment.apps",
    "deployments": "deployment.apps",
    "statefulset": "statefulset.apps",
    "statefulsets": "statefulset.apps",
    "daemonset": "daemonset.apps",
    "daemonsets": "daemonset.apps",
    "pod": "pod",
    "pods": "pod",
}


def main(argv: list[str]) -> int:
    # kubectl writes without buffering, so stdout and stderr interleave in order on a shared pipe.
    sys.stdout.reconfigure(line_buffering=True)
    _log(argv)
    words, operands, namespace = _parse(argv[1:])
    scripted = _scripted_exit_code()
    code = _respond(words, operands, namespace, argv, scripted)
    return code if scripted is None else scripted


def _log(argv: list[str]) -> None:
    path = os.environ.get("FAKE_KUBECTL_LOG")
    if not path:
        return
    entry = {"argv": ["kubectl", *argv[1:]], "env": sorted(os.environ)}
    with open(path, "a", encoding="utf-8") as log:
        log.write(json.dumps(entry) + "\n")


def _parse(args: list[str]) -> tuple[list[str], list[str], str]:
    """Split the arguments into the words before `--` that are not options, the operands after `--`, and the namespace."""
    words: list[str] = []
    namespace = "default"
    index = 0
    while index < len(args):
        arg = args[index]
        if arg == "--":
            return words, args[index + 1 :], namespace
        if arg.startswith("--namespace="):
            namespace = arg.removeprefix("--namespace=")
        elif arg in ("-n", "--namespace") and index + 1 < len(args):
            namespace = args[index + 1]
            index += 1
        elif not arg.startswith("-"):
            words.append(arg)
        index += 1
    return words, [], namespace


def _scripted_exit_code() -> int | None:
    state = os.environ.get("FAKE_KUBECTL_STATE")
    if state and os.path.exists(state):
        with open(state, encoding="utf-8") as file:
            data = json.load(file)
        codes = data.get("exit_codes") or []
        if codes:
            code = codes.pop(0)
            with open(state, "w", encoding="utf-8") as file:
                json.dump({**data, "exit_codes": codes}, file)
            return int(code)
    if "FAKE_KUBECTL_EXIT" in os.environ:
        return int(os.environ["FAKE_KUBECTL_EXIT"])
    return None


def _respond(words: list[str], operands: list[str], namespace: str, argv: list[str], scripted: int | None) -> int:
    match words[:3]:
        case ["top", "pods" | "pod", *_]:
            _top_pods("--no-headers" not in argv)
        case ["rollout", "restart", kind]:
            for name in operands or words[3:]:
                print(f"{_KINDS.get(kind, kind)}/{name} restarted")
        case ["rollout", "undo", kind]:
            for name in operands or words[3:]:
                print(f"{_KINDS.get(kind, kind)}/{name} rolled back")
        case ["delete", kind, *_]:
            for name in operands or words[2:]:
                print(f'{_KINDS.get(kind, kind)} "{name}" deleted')
        case ["scale", kind, *_]:
            for name in operands or words[2:]:
                print(f"{_KINDS.get(kind, kind)}/{name} scaled")
        case ["logs", *_]:
            _logs(namespace)
        case ["exec", *_]:
            return _exec(operands, scripted)
        case ["get", *_]:
            _get(words[1:], namespace)
        case _:
            print(f'error: unknown command "{" ".join(words)}" for "kubectl"', file=sys.stderr)
            return 1
    return 0


def _top_pods(headers: bool) -> None:
    if headers:
        print(f"{'NAME':<30} {'CPU(cores)':<11} MEMORY(bytes)")
    for name, cpu, memory in (
        ("web-7d4b9c6f5-x2x7q", "250m", "1840Mi"),
        ("web-7d4b9c6f5-k9p2d", "120m", "912Mi"),
        ("worker-0", "15m", "310Mi"),
    ):
        print(f"{name:<30} {cpu:<11} {memory}")


def _logs(namespace: str) -> None:
    print(f'2024-05-02T10:14:03.118Z level=info msg="server started" namespace={namespace} port=9100')
    print('2024-05-02T10:15:47.902Z level=error msg="scrape failed" target=node-exporter:9100 err="context deadline exceeded"')


def _exec(operands: list[str], scripted: int | None) -> int:
    if operands[:3] == ["promtool", "check", "config"] and len(operands) > 3:
        print(f"Checking {operands[3]}")
        if scripted:
            print(f"  FAILED: parsing YAML file {operands[3]}: yaml: line 12: did not find expected key", file=sys.stderr)
            return scripted
        print(" SUCCESS: 0 rule files found")
        print(f" SUCCESS: {operands[3]} is valid prometheus config file syntax")
        return 0
    print(
        f"OCI runtime exec failed: exec: {operands[0] if operands else ''!r}: executable file not found in $PATH", file=sys.stderr
    )
    return 126


def _get(words: list[str], namespace: str) -> None:
    kind = words[0] if words else ""
    if kind.startswith("deployment"):
        print(f"{'NAME':<12} {'READY':<7} {'UP-TO-DATE':<11} {'AVAILABLE':<10} AGE")
        print(f"{'web':<12} {'3/3':<7} {'3':<11} {'3':<10} 12d")
        return
    print(f"{'NAME':<30} {'READY':<7} {'STATUS':<9} {'RESTARTS':<9} AGE")
    print(f"{'web-7d4b9c6f5-x2x7q':<30} {'1/1':<7} {'Running':<9} {'0':<9} 2d")
    print(f"{'worker-0':<30} {'1/1':<7} {'Running':<9} {'3':<9} 5d")


if __name__ == "__main__":
    sys.exit(main(sys.argv))
