"""Deterministic YAML that Go's YAML decoder and PyYAML both read exactly as we meant it.

Alertmanager decodes with Go's yaml.v2, which resolves plain scalars by the
YAML 1.1 rules: unquoted `yes`, `NO` and `on` become booleans, `0123` a
number and `13:00` a base-60 number, while a string field would take the
text as written. To leave no room for either reading, every string value is
written double-quoted. Keys are written plain when they are identifiers
that YAML 1.1 does not resolve to another type, as the names of the target
schemas are. Other keys, such as label names used as keys, are quoted.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Identifiers that YAML 1.1 resolves to booleans or null.
_RESERVED_KEYS = {"y", "yes", "n", "no", "true", "false", "on", "off", "null"}


# libyaml's emitter writes the same text as PyYAML's pure-Python one (the
# representers below decide every style) about four times faster.
_BaseDumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


class _Dumper(_BaseDumper):  # type: ignore[misc, valid-type]
    def ignore_aliases(self, data: Any) -> bool:
        return True


def _represent_str(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style='"')


def _represent_dict(dumper: yaml.SafeDumper, mapping: dict[str, Any]) -> yaml.MappingNode:
    pairs = []
    for key, item in mapping.items():
        assert isinstance(key, str), f"YAML keys must be strings: {key!r}"
        plain = bool(_PLAIN_KEY.match(key)) and key.lower() not in _RESERVED_KEYS
        key_node = yaml.ScalarNode("tag:yaml.org,2002:str", key, style=None if plain else '"')
        pairs.append((key_node, dumper.represent_data(item)))
    return yaml.MappingNode("tag:yaml.org,2002:map", pairs, flow_style=False)


_Dumper.add_representer(str, _represent_str)
_Dumper.add_representer(dict, _represent_dict)


def dump(document: Any) -> str:
    """Return `document` as block-style YAML with keys in insertion order and every string double-quoted."""
    return yaml.dump(document, Dumper=_Dumper, sort_keys=False, allow_unicode=True, default_flow_style=False, width=1000)
