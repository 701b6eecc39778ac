"""Building an alert's text fields: labels and annotations as str→str, size caps, timestamps.

Rules every source shares:

- A value that is null or the empty string is left out, as Prometheus drops
  empty labels. Strings stay as they are, booleans become `true`/`false`,
  numbers are written as JSON writes them (`3`, `2.5`, `1e+20`), and arrays or
  objects become compact JSON text.
- A label or annotation value longer than `MAX_VALUE_BYTES` of UTF-8, or a name
  longer than `MAX_NAME_BYTES`, is cut at a character boundary and ends with
  `…`. The alert's `details["truncated"]` maps `label.NAME` or
  `annotation.NAME` (or `label_name.NAME` for a cut name) to the original
  size in bytes.
- NUL and unpaired surrogates were already replaced by `payload.clean_strings`.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterable
from typing import Any

from runtime.alerts import Alert
from runtime.sources.base import Rejected
from runtime.sources.payload import kind_of, shown

MAX_VALUE_BYTES = 64 * 1024
MAX_NAME_BYTES = 1024
# No character takes more than 4 bytes in UTF-8, so strings of at most this many
# characters are within the limits without being encoded.
_SHORT_VALUE_CHARS = MAX_VALUE_BYTES // 4
_SHORT_NAME_CHARS = MAX_NAME_BYTES // 4
_ELLIPSIS = "…"
_GO_ZERO_TIME = datetime.datetime(1, 1, 1, tzinfo=datetime.UTC)
# Go's zero time, as nearly every firing Alertmanager alert sends it in `endsAt`.
_GO_ZERO_TEXT = "0001-01-01T00:00:00Z"
_MAX_TIMESTAMP_CHARS = 64
# Unix times above this many seconds (the year 5138) are taken as milliseconds.
_MILLISECONDS_FROM = 10**11


def stringify(value: Any) -> str | None:
    """Return `value` as label text, or `None` when it is null."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


def cap(text: str, max_bytes: int) -> tuple[str, int | None]:
    """Return `text` cut to `max_bytes` of UTF-8 (ending in `…`), and its original size when it was cut."""
    if len(text) * 4 <= max_bytes:
        # No character takes more than 4 bytes in UTF-8, so short text needs no encoding.
        return text, None
    encoded = text.encode()
    if len(encoded) <= max_bytes:
        return text, None
    kept = encoded[: max_bytes - len(_ELLIPSIS.encode())].decode("utf-8", "ignore")
    return kept + _ELLIPSIS, len(encoded)


class AlertText:
    """The labels, annotations and truncation record of one alert under construction."""

    def __init__(self) -> None:
        self.labels: dict[str, str] = {}
        self.annotations: dict[str, str] = {}
        self.truncated: dict[str, int] = {}

    def label(self, name: str, value: Any, *, replace: bool = True) -> None:
        """Set a label; with `replace=False` an existing label keeps its value."""
        self._put(self.labels, "label", name, value, replace)

    def annotation(self, name: str, value: Any, *, replace: bool = True) -> None:
        """Set an annotation; with `replace=False` an existing annotation keeps its value."""
        self._put(self.annotations, "annotation", name, value, replace)

    def add_labels(self, mapping: Any, where: str, *, replace: bool = True) -> None:
        """Add every entry of the JSON object `mapping` as a label (null adds nothing)."""
        self._put_all(self.labels, "label", mapping, where, replace)

    def add_annotations(self, mapping: Any, where: str, *, replace: bool = True) -> None:
        """Add every entry of the JSON object `mapping` as an annotation (null adds nothing)."""
        self._put_all(self.annotations, "annotation", mapping, where, replace)

    def alert(self, *, source: str, name: str, status: str, details: dict[str, Any] | None = None, **fields: Any) -> Alert:
        """Build the `Alert`, with the name capped like a label value and the truncation record in its details."""
        name, cut = cap(name, MAX_VALUE_BYTES)
        if cut is not None:
            self.truncated["alert.name"] = cut
        details = dict(details or {})
        if self.truncated:
            details["truncated"] = dict(self.truncated)
        return Alert(
            source=source,
            name=name,
            status=status,
            labels=self.labels,
            annotations=self.annotations,
            details=details,
            **fields,
        )

    def _put_all(self, target: dict[str, str], kind: str, mapping: Any, where: str, replace: bool) -> None:
        entries = _entries(mapping, where)
        if not replace:
            for name, value in entries:
                self._put(target, kind, name, value, replace)
            return
        for name, value in entries:
            # Most entries are short, non-empty strings, which `_put` would keep as they are.
            if type(value) is str and 0 < len(value) <= _SHORT_VALUE_CHARS and 0 < len(name) <= _SHORT_NAME_CHARS:
                target[name] = value
            else:
                self._put(target, kind, name, value, replace)

    def _put(self, target: dict[str, str], kind: str, name: str, value: Any, replace: bool) -> None:
        text = stringify(value)
        if not name or not text:
            return
        name, name_cut = cap(name, MAX_NAME_BYTES)
        if not replace and name in target:
            return
        text, value_cut = cap(text, MAX_VALUE_BYTES)
        target[name] = text
        if value_cut is not None:
            self.truncated[f"{kind}.{name}"] = value_cut
        if name_cut is not None:
            self.truncated[f"{kind}_name.{name}"] = name_cut


def _entries(mapping: Any, where: str) -> Iterable[tuple[str, Any]]:
    if mapping is None:
        return ()
    if not isinstance(mapping, dict):
        raise Rejected(400, f"`{where}` must be a JSON object of strings, not {kind_of(mapping)}")
    return mapping.items()


def parse_time(value: Any, where: str, *, numbers: bool = False) -> datetime.datetime | None:
    """Parse an RFC 3339 or ISO 8601 timestamp into an aware UTC datetime.

    Returns `None` for null, the empty string and Go's zero time
    (`0001-01-01T00:00:00Z`, which Alertmanager sends for "no end"). Fractions
    beyond microseconds (Go's nanoseconds, Azure's seven digits) are cut, not
    rounded, and an offset may be written without a colon (`+0000`). A time
    without an offset is UTC. With `numbers`, a JSON number is a Unix time in
    seconds, or in milliseconds when it is above 10^11.

    Raises:
        Rejected: 400 naming `where` when the value is not a timestamp.
    """
    if value is None or value == "" or value == _GO_ZERO_TEXT:
        return None
    if numbers and isinstance(value, (int, float)) and not isinstance(value, bool):
        return _from_unix(value, where)
    if not isinstance(value, str):
        raise Rejected(400, f"`{where}` must be a timestamp string, not {kind_of(value)}")
    try:
        if len(value) > _MAX_TIMESTAMP_CHARS:
            raise ValueError(value)
        moment = datetime.datetime.fromisoformat(value.strip())
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=datetime.UTC)
        moment = moment.astimezone(datetime.UTC)
    except (ValueError, OverflowError):
        raise Rejected(400, f"`{where}` is not an RFC 3339 timestamp: {shown(value)}") from None
    return None if moment == _GO_ZERO_TIME else moment


def _from_unix(value: float, where: str) -> datetime.datetime:
    seconds = value / 1000 if abs(value) > _MILLISECONDS_FROM else value
    try:
        return datetime.datetime.fromtimestamp(seconds, datetime.UTC)
    except (ValueError, OverflowError, OSError):
        raise Rejected(400, f"`{where}` is not a Unix time in range: {value}") from None
