"""Custom sources: a `source NAME { map { ... } resolved when ... }` block turns any JSON body into alerts.

Each mapping is an IR expression evaluated on `{"body": item}` with the rules
of `compiler.expr`, where a missing path is `MISSING`. A body that is a JSON
array contains one item per alert, and any other body is one item. Per item:

- `labels` and `annotations` map a JSON object whole, and are applied first,
  so `label.NAME` and `annotation.NAME` (or `labels.NAME`, `annotations.NAME`)
  override single entries. A value that is missing, null or empty is left out.
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
from typing import Any

from compiler import ir
from compiler.evaluate import condition_holds, evaluate_expression
from compiler.expr import MISSING
from runtime.alerts import FIRING, RESOLVED, Alert, identity_fingerprint
from runtime.sources.base import ALERTS, Inbound, Outcome, Rejected
from runtime.sources.fields import AlertText, parse_time, stringify
from runtime.sources.payload import kind_of, read_json, require_object, shown

_FINGERPRINT = re.compile(r"[0-9a-fA-F]{16}")
_LABEL_ROOTS = ("label", "labels")
_ANNOTATION_ROOTS = ("annotation", "annotations")


def normalise_custom(declaration: ir.Source, inbound: Inbound) -> Outcome:
    """Turn the JSON body of a request to a custom source into one alert per item.

    Raises:
        Rejected: 400 when the body is not a JSON object or array of objects,
        or a mapped value cannot be a field of an alert; 415 for a form body.
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
