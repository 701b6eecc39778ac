"""Deterministic YAML that Go's YAML decoder and PyYAML both read exactly as we meant it.

Alertmanager decodes with Go's yaml.v2, which resolves plain scalars by the
YAML 1.1 rules: unquoted `yes`, `NO` and `on` become booleans, `0123` a
number and `13:00` a base-60 number, while a string field would take the
text as written. To leave no room for either reading, every string value is
written double-quoted. Keys are written plain when they are identifiers
that YAML 1.1 does not resolve to another type, as the names of the target
schemas are. Other keys, such as label names used as keys, are quoted.

The artifacts are written by a small emitter of our own, because PyYAML's
representer is pure Python even with libyaml's emitter, and it took most of
the rendering time of a 10,000-route project. It writes the same bytes as PyYAML with libyaml
(`tests/targets/test_yaml.py` compares both on generated documents), and
hands every document with something it does not cover to PyYAML: values
other than strings, booleans, integers, lists and dicts, nested lists,
characters that libyaml escapes in other ways, long keys and long lines.
"""

from __future__ import annotations

import functools
import re
from typing import Any

_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Identifiers that YAML 1.1 resolves to booleans or null.
_RESERVED_KEYS = {"y", "yes", "n", "no", "true", "false", "on", "off", "null"}

_ASCII_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f]")
_ESCAPED_OR_CONTROL = re.compile('[\x00-\x1f\x7f"\\\\]')
# libyaml folds a line at a space past this column (PyYAML's `width`), and writes
# a key longer than this many bytes (its simple-key limit) in the `? key` form.
_WIDTH = 1000
_MAX_SIMPLE_KEY = 128


class _Unsupported(Exception):
    """The document has a value or text that the emitter leaves to PyYAML."""


@functools.cache
def _dumper() -> type:
    """Return PyYAML's dumper with our representers. PyYAML is imported only when a document needs it."""
    import yaml

    # libyaml's emitter writes the same text as PyYAML's pure-Python one (the
    # representers below decide every style) about four times faster.
    base = getattr(yaml, "CSafeDumper", yaml.SafeDumper)

    class Dumper(base):  # type: ignore[misc, valid-type]
        def ignore_aliases(self, data: Any) -> bool:
            return True

    Dumper.add_representer(str, _represent_str)
    Dumper.add_representer(dict, _represent_dict)
    return Dumper


def _represent_str(dumper: Any, text: str) -> Any:
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style='"')


def _represent_dict(dumper: Any, mapping: dict[str, Any]) -> Any:
    import yaml

    pairs = []
    for key, item in mapping.items():
        assert isinstance(key, str), f"YAML keys must be strings: {key!r}"
        key_node = yaml.ScalarNode("tag:yaml.org,2002:str", key, style=None if _is_plain_key(key) else '"')
        pairs.append((key_node, dumper.represent_data(item)))
    return yaml.MappingNode("tag:yaml.org,2002:map", pairs, flow_style=False)


def _is_plain_key(key: str) -> bool:
    return bool(_PLAIN_KEY.fullmatch(key)) and key.lower() not in _RESERVED_KEYS


def dump(document: Any) -> str:
    """Return `document` as block-style YAML with keys in insertion order and every string double-quoted."""
    if type(document) is dict and document:
        lines: list[str] = []
        try:
            _mapping(document, "", "", lines)
        except _Unsupported:
            return dump_with_pyyaml(document)
        text = "".join(lines)
        if max(map(len, text.splitlines())) <= _WIDTH:
            return text
    return dump_with_pyyaml(document)


def dump_with_pyyaml(document: Any) -> str:
    """Return `document` as `dump` does, through PyYAML. The tests compare the emitter above with this output."""
    import yaml

    return yaml.dump(document, Dumper=_dumper(), sort_keys=False, allow_unicode=True, default_flow_style=False, width=_WIDTH)


def _quoted(text: str) -> str:
    if text.isascii():
        if _ESCAPED_OR_CONTROL.search(text) is None:
            return '"' + text + '"'
        if _ASCII_CONTROL.search(text) is not None:
            raise _Unsupported
    elif not all(map(_written_as_is, text)):
        raise _Unsupported
    # Backslashes first, so that the ones the later escapes add stay single.
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
    return '"' + escaped + '"'


def _written_as_is(character: str) -> bool:
    """Return whether libyaml writes `character` into a double-quoted scalar as it is, or with an escape `_quoted` writes too.

    These are printable ASCII and the printable characters of the Basic
    Multilingual Plane, without the line separators U+2028 and U+2029 and the
    byte-order mark. Anything else sends the document to PyYAML.
    """
    code = ord(character)
    if code < 0x7F:
        return code >= 0x20 or code in (0x09, 0x0A)
    if code < 0xE000:
        return 0xA0 <= code <= 0xD7FF and code not in (0x2028, 0x2029)
    return code <= 0xFFFD and code != 0xFEFF


@functools.lru_cache(maxsize=4096)
def _key(key: Any) -> str:
    if type(key) is not str:
        raise _Unsupported
    if _is_plain_key(key):
        if len(key) > _MAX_SIMPLE_KEY:
            raise _Unsupported
        return key
    if "\n" in key or len(key.encode("utf-8")) > _MAX_SIMPLE_KEY:
        raise _Unsupported
    return _quoted(key)


def _scalar(value: Any) -> str | None:
    """Return the text of a scalar value, or None for a list or dict."""
    kind = type(value)
    if kind is str:
        return _quoted(value)
    if kind is bool:
        return "true" if value else "false"
    if kind is int:
        return str(value)
    if kind is list:
        return None if value else "[]"
    if kind is dict:
        return None if value else "{}"
    raise _Unsupported


def _mapping(mapping: dict[str, Any], first: str, indent: str, lines: list[str]) -> None:
    """Append a non-empty block mapping whose keys start at `indent`. Its first line starts with `first` instead."""
    prefix = first
    for key, value in mapping.items():
        text = _scalar(value)
        if text is not None:
            lines.append(f"{prefix}{_key(key)}: {text}\n")
        else:
            lines.append(f"{prefix}{_key(key)}:\n")
            if type(value) is dict:
                _mapping(value, indent + "  ", indent + "  ", lines)
            else:
                # libyaml writes a sequence inside a mapping without indenting its dashes.
                _sequence(value, indent, lines)
        prefix = indent


def _sequence(items: list[Any], indent: str, lines: list[str]) -> None:
    for item in items:
        if type(item) is list:
            raise _Unsupported
        text = _scalar(item)
        if text is not None:
            lines.append(f"{indent}- {text}\n")
        else:
            _mapping(item, indent + "- ", indent + "  ", lines)
