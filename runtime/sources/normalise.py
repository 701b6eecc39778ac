"""Dispatching a request to the reader of its source."""

from __future__ import annotations

from compiler import ir
from runtime.sources.alertmanager import normalise_alertmanager
from runtime.sources.azure import normalise_azure
from runtime.sources.base import Inbound, Outcome, Rejected
from runtime.sources.cloudwatch import normalise_cloudwatch
from runtime.sources.custom import normalise_custom
from runtime.sources.grafana import normalise_grafana
from runtime.sources.names import ALERTMANAGER, AZURE, CLOUDWATCH, GRAFANA, declared_source
from runtime.sources.payload import read_json

_JSON_READERS = {ALERTMANAGER: normalise_alertmanager, GRAFANA: normalise_grafana, AZURE: normalise_azure}


def normalise(source: str, inbound: Inbound, ruleset: ir.Ruleset | None) -> Outcome:
    """Turn the request to `/hooks/<source>` into alerts, or into a recorded non-alert outcome.

    Built-in sources read their vendor's format. Any other name must be
    declared by the rules as `source NAME { map { ... } }`. Authentication is
    separate (see `authenticate`).

    Example:
        outcome = normalise("alertmanager", Inbound(body=request_bytes, headers=headers), ruleset)
        outcome.alerts[0].fingerprint

    Raises:
        Rejected: 400 for a malformed body (the reason names the field), 404
        for an unknown source, 415 for a form-encoded or compressed body, 422
        for a payload of another format or schema version.
    """
    declaration = declared_source(ruleset, source)
    if source == CLOUDWATCH:
        return normalise_cloudwatch(inbound, declaration, source)
    reader = _JSON_READERS.get(source)
    if reader is not None:
        document, replaced = read_json(inbound)
        outcome = reader(document, source)
        if replaced:
            outcome.details["replaced_characters"] = replaced
        return outcome
    if declaration is None:
        raise Rejected(404, f"unknown source `{source}`: declare it with `source {source} {{ ... }}` in the rules")
    return normalise_custom(declaration, inbound)
