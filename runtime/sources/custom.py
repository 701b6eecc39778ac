"""Custom sources: a `source NAME { map { ... } resolved when ... }` block turns any JSON body into alerts.

Each mapping is an IR expression evaluated on `{"body": item}` with the rules
of `compiler.expr`, where a missing path is `MISSING`. A body that is a JSON
array contains one item per alert, and any other body is one item.

A mapping whose expression is a plain body path, such as `body.check_name`,
must find a value its target can use, else the request is rejected with 422
and a reason that names the path and the target (see `_path_problem`):

- `label.NAME`, `alert.name` and whole `labels` are the alert's identity, so
  an absent, null or empty value is rejected rather than guessed.
- `annotation.NAME`, whole `annotations` and the other `alert.` fields are
  optional: an absent or null value leaves them unset.
- Labels, annotations, `alert.name`, `alert.fingerprint` and `alert.source`
  take strings, numbers and booleans (numbers and booleans become their
  JSON text), and reject objects and arrays. Entries
  of whole `labels` and `annotations` follow the same rule, except that a
  null or empty entry is left out. `alert.status` takes a string, and
  `alert.starts_at` a string or a number.

Other expressions (literals, comparisons, lists) are used as they evaluate.
Per item:

- `labels` and `annotations` map a JSON object whole, and are applied first,
  so `label.NAME` and `annotation.NAME` (or `labels.NAME`, `annotations.NAME`)
  override single entries. A value that is missing, null or empty is left
  out, where the checks above let it through.
- `alert.name` names the alert, else the `alertname` label, else the source.
- `alert.status` gives "firing" or "resolved" (in any case). Absent, the alert
  fires unless `resolved when` holds, which resolves it whatever the status says.
- `alert.fingerprint` is used as it is when it is 16 hex digits, and hashed
  with `identity_fingerprint` otherwise, so any stable id of the sender's
  works. Without it, the fingerprint is Alertmanager's hash of the labels.
- `alert.starts_at` is an ISO 8601 text or a Unix time (see `fields.parse_time`).
- `alert.source` replaces the source name of the alert. The declared name is
  kept in `details["received_by"]`.
"""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass
from typing import Any

from compiler import ir
from compiler.evaluate import condition_holds, evaluate_expression
from compiler.expr import MISSING, lookup
from runtime.alerts import FIRING, RESOLVED, Alert, identity_fingerprint
from runtime.sources.base import ALERTS, Inbound, Outcome, Rejected
from runtime.sources.fields import AlertText, parse_time, stringify
from runtime.sources.payload import kind_of, read_json, require_object, shown

_FINGERPRINT = re.compile(r"[0-9a-fA-F]{16}")
_LABEL_ROOTS = ("label", "labels")
_ANNOTATION_ROOTS = ("annotation", "annotations")
# A path part that the rules can write after a dot. `compiler.fmt` writes any other part as `["..."]`.
_PATH_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:-[A-Za-z0-9_]+)*")
_SCALAR = ("string", "number", "boolean")
# Longer array indexes cannot be in a body of at most `MAX_BODY_BYTES`.
_MAX_INDEX_DIGITS = 9


@dataclass(frozen=True, slots=True)
class _Need:
    """The JSON kinds a mapping target accepts from a plain body path, and whether it needs a value at all.

    `entries` is set for whole `labels` and `annotations`: the kinds each entry
    of the object may have, besides null and the empty string, which are left out.
    """

    kinds: tuple[str, ...]
    required: bool
    entries: tuple[str, ...] = ()


_LABEL = _Need(_SCALAR, required=True)
_ANNOTATION = _Need(_SCALAR, required=False)
_NEEDS = {
    "labels": _Need(("object",), required=True, entries=_SCALAR),
    "annotations": _Need(("object",), required=False, entries=_SCALAR),
    "alert.name": _LABEL,
    "alert.status": _Need(("string",), required=False),
    "alert.starts_at": _Need(("string", "number"), required=False),
    "alert.fingerprint": _Need(_SCALAR, required=False),
    "alert.source": _Need(_SCALAR, required=False),
}


def normalise_custom(declaration: ir.Source, inbound: Inbound) -> Outcome:
    """Turn the JSON body of a request to a custom source into one alert per item.

    Raises:
        Rejected: 400 when the body is not a JSON object or array of objects,
        or a mapped value cannot be a field of an alert; 415 for a form body;
        422 when a body path in `map` gives no value its target can use.
    """
    document, replaced = read_json(inbound)
    if isinstance(document, list):
        items = [(f"body[{index}]", item) for index, item in enumerate(document)]
    elif isinstance(document, dict):
        items = [("body", document)]
    else:
        raise Rejected(400, f"body must be a JSON object or an array of objects, not {kind_of(document)}")
    alerts = [_alert(declaration, require_object(item, where), where) for where, item in items]
    details: dict[str, Any] = {"replaced_characters": replaced} if replaced else {}
    return Outcome(source=declaration.name, kind=ALERTS, alerts=alerts, note=f"{len(alerts)} alert(s)", details=details)


def _alert(declaration: ir.Source, item: dict[str, Any], where: str) -> Alert:
    values = {"body": item}
    mapped = {target: _evaluate(expr, values, where, target) for target, expr in declaration.mappings.items()}
    _check_body_paths(declaration, mapped, values, where)

    text = AlertText()
    _add_whole(text.add_labels, mapped.get("labels"), where, "labels")
    _add_whole(text.add_annotations, mapped.get("annotations"), where, "annotations")
    for target, value in mapped.items():
        root, _, name = target.partition(".")
        if root in _LABEL_ROOTS and name:
            text.label(name, value)
        elif root in _ANNOTATION_ROOTS and name:
            text.annotation(name, value)

    name = stringify(mapped.get("alert.name")) or text.labels.get("alertname") or declaration.name
    sender = stringify(mapped.get("alert.source"))
    details = {"received_by": declaration.name} if sender else {}
    return text.alert(
        source=sender or declaration.name,
        name=name,
        status=_status(declaration, mapped.get("alert.status"), values, where),
        details=details,
        starts_at=_starts_at(mapped.get("alert.starts_at"), where),
        fingerprint=_fingerprint(mapped.get("alert.fingerprint")),
    )


def _evaluate(expr: ir.Expr, values: dict[str, Any], where: str, target: str) -> Any:
    try:
        value = evaluate_expression(expr, values)
    except RecursionError:
        raise Rejected(400, f"`{where}` is nested too deeply to evaluate the mapping `{target}`") from None
    return _plain(value)


def _check_body_paths(declaration: ir.Source, mapped: dict[str, Any], values: dict[str, Any], where: str) -> None:
    """Reject the item when a mapping that is a plain body path gives a value its target cannot use.

    Raises:
        Rejected: 422 naming each such path and its target, so that neither the
        sender nor the reader of the dead letter has to guess which field is wrong.
    """
    problems = []
    for target, expr in declaration.mappings.items():
        parts = _body_path(expr)
        need = _need_of(target)
        if parts is None or need is None:
            continue
        problem = _path_problem(target, need, parts, mapped[target], values, where)
        if problem is not None:
            problems.append(problem)
    if problems:
        raise Rejected(422, "; ".join(problems))


def _body_path(expr: ir.Expr) -> list[str] | None:
    """Return the parts of `expr` when it is a plain path into the body, such as `body.runner.region`."""
    parts = expr.get("path")
    if len(expr) != 1 or not parts or parts[0] != "body":
        return None
    return parts


def _need_of(target: str) -> _Need | None:
    root, _, name = target.partition(".")
    if root in _LABEL_ROOTS and name:
        return _LABEL
    if root in _ANNOTATION_ROOTS and name:
        return _ANNOTATION
    return _NEEDS.get(target)


def _path_problem(target: str, need: _Need, parts: list[str], value: Any, values: dict[str, Any], where: str) -> str | None:
    """Return why `value`, read from the body path `parts`, cannot feed `target`, or None when it can."""
    if value is None:
        if not need.required:
            return None
        return f"the mapping `{target}` needs `{_path_text(parts, where)}`, {_absence(parts, values, where)}"
    if _json_kind(value) not in need.kinds:
        return f"the mapping `{target}` needs `{_path_text(parts, where)}` to be {_kinds_text(need.kinds)}, not {kind_of(value)}"
    if need.required and value == "":
        return f"the mapping `{target}` needs `{_path_text(parts, where)}`, which is empty"
    if not need.entries:
        return None
    for key, entry in value.items():
        if entry is not None and _json_kind(entry) not in need.entries:
            entry_path = _path_text([*parts, key], where)
            return f"the mapping `{target}` needs `{entry_path}` to be {_kinds_text(need.entries)}, not {kind_of(entry)}"
    return None


def _absence(parts: list[str], values: dict[str, Any], where: str) -> str:
    """Describe where the body path `parts` ends: the first part that is missing or null, or a value without fields."""
    # `body` itself is the item, an object, so the first part without a value comes after it.
    length = next((length for length in range(2, len(parts)) if lookup(parts[:length], values) is MISSING), len(parts))
    # `lookup` reads a path of one part as a label name, so the item is taken as it is.
    parent = lookup(parts[: length - 1], values) if length > 2 else values["body"]
    if not isinstance(parent, (dict, list)):
        return f"but `{_path_text(parts[: length - 1], where)}` is {kind_of(parent)}"
    state = "null" if _has_null(parent, parts[length - 1]) else "missing"
    if length == len(parts):
        return f"which is {state}"
    return f"but `{_path_text(parts[:length], where)}` is {state}"


def _has_null(parent: dict[str, Any] | list[Any], part: str) -> bool:
    """Return whether `part` of `parent` is null, which `lookup` does not tell apart from a missing part."""
    if isinstance(parent, dict):
        return part in parent and parent[part] is None
    index = int(part) if part.isdecimal() and len(part) <= _MAX_INDEX_DIGITS else len(parent)
    return index < len(parent) and parent[index] is None


def _path_text(parts: list[str], where: str) -> str:
    """Write a body path as the rules write it, starting from the item `where` (`body`, or `body[2]` in an array)."""
    return where + "".join(f".{part}" if _PATH_NAME.fullmatch(part) else f"[{shown(part)}]" for part in parts[1:])


def _json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _kinds_text(kinds: tuple[str, ...]) -> str:
    """Return `("string", "number", "boolean")` as "a string, number or boolean"."""
    listed = kinds[0] if len(kinds) == 1 else f"{', '.join(kinds[:-1])} or {kinds[-1]}"
    return f"an {listed}" if listed[0] in "aeiou" else f"a {listed}"


def _plain(value: Any) -> Any:
    """Return `value` as JSON data: `MISSING` becomes None and a duration its seconds."""
    if value is MISSING:
        return None
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


def _add_whole(add: Any, value: Any, where: str, target: str) -> None:
    if value is None:
        return
    if not isinstance(value, dict):
        raise Rejected(400, f"the mapping `{target}` must give a JSON object for `{where}`, not {kind_of(value)}")
    add(value, f"{where}: {target}")


def _status(declaration: ir.Source, mapped: Any, values: dict[str, Any], where: str) -> str:
    if declaration.resolved_when is not None and condition_holds(declaration.resolved_when, values):
        return RESOLVED
    text = stringify(mapped)
    if not text:
        return FIRING
    status = text.strip().lower()
    if status not in (FIRING, RESOLVED):
        raise Rejected(
            400,
            f'the mapping `alert.status` gave {shown(text)} for `{where}`; it must be "firing" or "resolved" '
            "(map other values with `resolved when`)",
        )
    return status


def _starts_at(value: Any, where: str) -> datetime.datetime | None:
    if isinstance(value, (dict, list)):
        raise Rejected(400, f"the mapping `alert.starts_at` must give a timestamp for `{where}`, not {kind_of(value)}")
    return parse_time(value, f"{where}: alert.starts_at", numbers=True)


def _fingerprint(value: Any) -> str:
    text = stringify(value)
    if not text:
        return ""
    if _FINGERPRINT.fullmatch(text):
        return text.lower()
    return identity_fingerprint(text)
