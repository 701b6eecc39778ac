"""Deterministic YAML that Go's YAML decoder reads exactly as we meant it.

Alertmanager decodes with Go's yaml.v2, which reads unquoted `13:00`, `NO`,
`0123` as strings for string fields, while YAML 1.1 tools (PyYAML) turn
them into numbers and booleans. We quote every string that is not a plain
identifier, so both readings agree and a round trip through PyYAML is
lossless.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

_PLAIN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Words YAML 1.1 resolves to booleans or null even though they look like identifiers.
_RESERVED = {"y", "yes", "n", "no", "true", "false", "on", "off", "null", "nan", "inf"}


class _Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True


def _represent_str(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    if _PLAIN.match(text) and text.lower() not in _RESERVED:
        return dumper.represent_scalar("tag:yaml.org,2002:str", text)
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style='"')


_Dumper.add_representer(str, _represent_str)


def dump(document: Any) -> str:
    """Return `document` as block-style YAML with keys in insertion order."""
    return yaml.dump(document, Dumper=_Dumper, sort_keys=False, allow_unicode=True, default_flow_style=False, width=1000)
