#!/usr/bin/env python3
"""A stand-in for terraform in web view tests: `plan` reports one drifted resource, `apply` applies it.

Tests link this file into a temporary folder as `terraform` and put that folder
first on the daemon's PATH, so the stock runbook rb-002 runs without a cloud.
Each call appends its argv as one JSON line to the file named by
`FAKE_TERRAFORM_LOG`. `plan` exits 2 (changes present, as `-detailed-exitcode`
reports them), `apply` exits 0, and anything else exits 1.

Only the standard library is used, so any python3 on PATH can run it.
"""

from __future__ import annotations

import json
import os
import sys

PLAN_OUTPUT = """\
  # aws_security_group.web will be updated in-place
  ~ resource "aws_security_group" "web" {
      ~ ingress = [<drifted rule & "quotes">]
    }

Plan: 0 to add, 1 to change, 0 to destroy.
"""


def main(argv: list[str]) -> int:
    log = os.environ.get("FAKE_TERRAFORM_LOG")
    if log:
        with open(log, "a", encoding="utf-8") as file:
            file.write(json.dumps(argv[1:]) + "\n")
    words = [word for word in argv[1:] if not word.startswith("-")]
    if words[:1] == ["plan"]:
        sys.stdout.write(PLAN_OUTPUT)
        return 2
    if words[:1] == ["apply"]:
        sys.stdout.write("Apply complete! Resources: 0 added, 1 changed, 0 destroyed.\n")
        return 0
    sys.stderr.write(f"fake terraform: unknown command {words[:1]}\n")
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
