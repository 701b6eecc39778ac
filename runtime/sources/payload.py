"""Reading a request body as JSON and checking its shape, with errors that name the field.

Every check here raises `Rejected` with a 4xx status, never another exception,
because the input comes from the network.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

from runtime.sources.base import Inbound, Rejected

_BOM = b"\xef\xbb\xbf"
# Content types that show the sender posts a form, not JSON: a misconfigured sender, so 415.
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
_MAX_SHOWN = 60
# Characters that a database or a log line cannot carry: NUL and the halves of a surrogate
# pair, which JSON's `\u` escapes can produce without a partner.
_REPLACEMENT = "\ufffd"


def header(inbound: Inbound, name: str) -> str | None:
    """Return the value of the header `name`, matched without regard to case."""
    wanted = name.lower()
    value = inbound.headers.get(wanted)
    if value is not None:
        return value
    return next((value for key, value in inbound.headers.items() if key.lower() == wanted), None)


def check_content(inbound: Inbound, *, any_content_type: bool = False) -> None:
    """Raise `Rejected(415)` for a compressed body or, unless `any_content_type`, a form-encoded one."""
    encoding = (header(inbound, "content-encoding") or "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise Rejected(415, f"unsupported Content-Encoding {shown(encoding)}: send the JSON body uncompressed")
    if any_content_type:
        return
    content_type = media_type(header(inbound, "content-type"))
    if content_type in FORM_TYPES:
        raise Rejected(415, f"unsupported Content-Type {shown(content_type)}: send the body as application/json")


def media_type(content_type: str | None) -> str:
    """Return the media type of a Content-Type value in lower case, without its parameters (`application/json`)."""
    return (content_type or "").split(";")[0].strip().lower()


def parse_json(body: bytes) -> Any:
    """Parse `body` as UTF-8 JSON, with NaN, Infinity and numbers beyond float range rejected.

    Raises:
        Rejected: 400 when the body is empty, not UTF-8 or not JSON.
    """
    if body.startswith(_BOM):
        body = body[len(_BOM) :]
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise Rejected(400, f"body is not valid UTF-8: invalid byte at offset {error.start}") from None
    # `isspace` stops at the first other character, where `strip` would copy a large body.
    if not text or text.isspace():
        raise Rejected(400, "body is empty: expected a JSON document")
    try:
        # `json.loads` builds a decoder on every call, so one is kept. A second BOM still goes
        # to `json.loads`, because it words that error itself.
        if text.startswith("\ufeff"):
            return json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
        return _DECODER.decode(text)
    except json.JSONDecodeError as error:
        raise Rejected(400, f"body is not valid JSON: {error.msg} at line {error.lineno} column {error.colno}") from None
    except RecursionError:
        raise Rejected(400, "body is not valid JSON: arrays or objects are nested too deeply") from None
    except ValueError as error:
        raise Rejected(400, f"body is not valid JSON: {error}") from None


_RISKY_ESCAPE = re.compile(rb"\\u(?:0000|[dD][89a-fA-F])")


def read_json(inbound: Inbound, *, any_content_type: bool = False) -> tuple[Any, int]:
    """Check the content headers, parse the body and clean its strings (see `clean_strings`).

    Returns the document and the number of characters replaced.
    """
    check_content(inbound, any_content_type=any_content_type)
    document = parse_json(inbound.body)
    # A valid UTF-8 body can carry NUL or a surrogate only as a `\u` escape, so a body
    # without such an escape needs no walk over its strings.
    if _RISKY_ESCAPE.search(inbound.body) is None:
        return document, 0
    return clean_strings(document)


def clean_strings(document: Any) -> tuple[Any, int]:
    """Replace NUL and unpaired surrogates in every key and string of `document` with U+FFFD.

    Such characters are valid JSON (`\\u0000`, `\\ud800`) but cannot be stored in
    PostgreSQL text or encoded as UTF-8, so they are cleaned once, here. The walk
    is iterative, so a deeply nested document cannot exhaust the stack. Returns
    the cleaned document and the number of characters replaced.
    """
    replaced = 0

    def clean(text: str) -> str:
        nonlocal replaced
        if text.isascii() and "\x00" not in text:
            return text
        fixed = "".join(_REPLACEMENT if char == "\x00" or "\ud800" <= char <= "\udfff" else char for char in text)
        replaced += sum(1 for before, after in zip(text, fixed, strict=True) if before != after)
        return fixed

    if isinstance(document, str):
        return clean(document), replaced
    root: list[Any] = [document]
    pending: list[tuple[Any, Any]] = [(root, 0)]
    while pending:
        container, key = pending.pop()
        value = container[key]
        if isinstance(value, str):
            container[key] = clean(value)
        elif isinstance(value, list):
            pending.extend((value, index) for index in range(len(value)))
        elif isinstance(value, dict):
            cleaned = {clean(name): item for name, item in value.items()}
            container[key] = cleaned
            pending.extend((cleaned, name) for name in cleaned)
    return root[0], replaced


def require_object(value: Any, where: str) -> dict[str, Any]:
    """Return `value` when it is a JSON object, else raise `Rejected(400)` naming `where`."""
    if not isinstance(value, dict):
        raise Rejected(400, f"`{where}` must be a JSON object, not {kind_of(value)}")
    return value


def optional_object(value: Any, where: str) -> dict[str, Any]:
    """Return `value` as an object, `{}` for null or absent, and raise `Rejected(400)` for anything else."""
    return {} if value is None else require_object(value, where)


def optional_list(value: Any, where: str) -> list[Any]:
    """Return `value` as a list, `[]` for null or absent, and raise `Rejected(400)` for anything else."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise Rejected(400, f"`{where}` must be an array, not {kind_of(value)}")
    return value


def optional_text(mapping: Mapping[str, Any], key: str, where: str) -> str | None:
    """Return the string at `key`, `None` when it is null or absent, and raise `Rejected(400)` for other values."""
    value = mapping.get(key)
    if value is None or isinstance(value, str):
        return value
    raise Rejected(400, f"`{where}` must be a string, not {kind_of(value)}")


def require_text(mapping: Mapping[str, Any], key: str, where: str) -> str:
    """Return the string at `key`, and raise `Rejected(400)` when it is absent, null or not a string."""
    value = optional_text(mapping, key, where)
    if value is None:
        raise Rejected(400, f"`{where}` is missing")
    return value


def get_folded(mapping: Mapping[str, Any], key: str) -> Any:
    """Return `mapping[key]`, or the value of a key that differs only in case (Azure spells ids both ways)."""
    if key in mapping:
        return mapping[key]
    wanted = key.lower()
    return next((value for name, value in mapping.items() if name.lower() == wanted), None)


def kind_of(value: Any) -> str:
    """Name the JSON type of `value` for an error message."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        number = str(value)
        return f"the number {number if len(number) <= _MAX_SHOWN else number[:_MAX_SHOWN] + '…'}"
    if isinstance(value, str):
        return f"the string {shown(value)}"
    if isinstance(value, list):
        return "an array"
    return "an object"


def shown(value: str) -> str:
    """Quote `value` for a message, shortened so a hostile payload cannot flood the log."""
    if len(value) > _MAX_SHOWN:
        value = value[:_MAX_SHOWN] + "…"
    # An unpaired surrogate would make the message itself unencodable.
    value = "".join(_REPLACEMENT if "\ud800" <= char <= "\udfff" else char for char in value)
    return json.dumps(value, ensure_ascii=False)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"number {text[:_MAX_SHOWN]} is out of range")
    return number


_DECODER = json.JSONDecoder(parse_constant=_reject_constant, parse_float=_finite_float)
