"""A stand-in for the `claude` CLI in print mode, put on PATH by tests under the name `claude`.

It appends one JSON line to the file named by FAKE_CLAUDE_LOG with its argv,
working folder and environment, then does what FAKE_CLAUDE_MODE selects:

| mode | does |
| --- | --- |
| `success` (default) | prints a result object whose `result` is FAKE_CLAUDE_ANSWER, or an empty answer |
| `stream` | prints two event lines before the result object, as stream output would |
| `max_turns` | prints an `error_max_turns` result with a session id |
| `is_error` | prints a `success` result with `is_error` true, as a failed API call does |
| `bad_answer` | prints a successful result whose text is not JSON |
| `garbage` | prints text that is not JSON |
| `empty` | prints nothing and exits with 0 |
| `crash` | writes to stderr and exits with 3 |
| `hang` | starts a `sleep` child, logs its pid, and sleeps until killed |
| `obey` | answers with the JSON after `DIRECTIVE:` in the prompt, as a model taken over by an injection would |

Modes and outputs follow the documented shape of `--output-format json`:
`type`, `subtype`, `is_error`, `result`, `session_id`, `num_turns`,
`total_cost_usd` and `usage`.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time

SESSION = "5f0c2a8e-1b7d-4c1e-9f3a-0d6b2e4a8c10"
DIRECTIVE = "DIRECTIVE:"
BLOCK = re.compile(r'<untrusted-data id="([0-9a-f]+)">\n(.*?)\n</untrusted-data id="\1">', re.DOTALL)


def result(text: str, *, subtype: str = "success", is_error: bool = False) -> dict:
    return {
        "type": "result",
        "subtype": subtype,
        "is_error": is_error,
        "duration_ms": 1234,
        "num_turns": 2,
        "result": text,
        "session_id": SESSION,
        "total_cost_usd": 0.0123,
        "usage": {"input_tokens": 900, "output_tokens": 120},
    }


def directive(prompt: str) -> str:
    """Return the JSON after the first `DIRECTIVE:` string in the prompt's untrusted data, as an obedient model would."""
    for match in BLOCK.finditer(prompt):
        for text in strings(json.loads(match.group(2))):
            if text.startswith(DIRECTIVE):
                return text.removeprefix(DIRECTIVE)
    return json.dumps({"summary": "no directive found"})


def strings(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [text for item in value for text in strings(item)]
    if isinstance(value, dict):
        return [text for item in value.values() for text in strings(item)]
    return []


def main() -> int:
    log = os.environ.get("FAKE_CLAUDE_LOG")
    mode = os.environ.get("FAKE_CLAUDE_MODE", "success")
    answer = os.environ.get("FAKE_CLAUDE_ANSWER", json.dumps({"summary": "nothing found"}))
    record = {"argv": sys.argv[1:], "cwd": os.getcwd(), "env": dict(os.environ)}
    if mode == "hang":
        child = subprocess.Popen(["sleep", "300"])
        record["child_pid"] = child.pid
    if log:
        with open(log, "a", encoding="utf-8") as stream:
            stream.write(json.dumps(record) + "\n")

    if mode == "success":
        print(json.dumps(result(answer)))
    elif mode == "stream":
        print(json.dumps({"type": "system", "subtype": "init", "session_id": SESSION}))
        print(json.dumps({"type": "assistant", "message": {"content": "looking"}, "session_id": SESSION}))
        print(json.dumps(result(answer)))
    elif mode == "max_turns":
        print(json.dumps(result("", subtype="error_max_turns", is_error=True)))
    elif mode == "is_error":
        print(json.dumps(result("API Error: 529 Overloaded", is_error=True)))
    elif mode == "bad_answer":
        print(json.dumps(result("I looked around and everything seems fine.")))
    elif mode == "garbage":
        print("Welcome to Claude Code! <<not json>>")
    elif mode == "empty":
        pass
    elif mode == "crash":
        print("claude: something broke", file=sys.stderr)
        return 3
    elif mode == "hang":
        time.sleep(300)
    elif mode == "obey":
        print(json.dumps(result(directive(sys.argv[sys.argv.index("-p") + 1]))))
    else:
        print(f"fake claude: unknown mode {mode!r}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
