"""Reports over the daemon's API: a report dataclass as JSON and back, through pydantic's TypeAdapter."""

from __future__ import annotations

import functools
from typing import Any, TypeVar

from pydantic import TypeAdapter

Report = TypeVar("Report")


@functools.cache
def _adapter(kind: type) -> TypeAdapter[Any]:
    return TypeAdapter(kind)


def to_wire(report: object) -> dict[str, Any]:
    """Return `report` as the daemon's API sends it: every field, with times as ISO 8601 text."""
    return _adapter(type(report)).dump_python(report, mode="json")


def from_wire(kind: type[Report], data: Any) -> Report:
    """Rebuild a `kind` that `to_wire` sent; raise pydantic's ValidationError when `data` does not have its shape."""
    return _adapter(kind).validate_python(data)
