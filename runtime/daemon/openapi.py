"""The OpenAPI 3.1 document of the daemon's HTTP interface, served at `/openapi.json`."""

from __future__ import annotations

from typing import Any

from compiler.expr import SEVERITY_LEVELS
from runtime.incidents import STATUSES

_ERROR = {
    "type": "object",
    "properties": {"error": {"type": "string"}, "dead_letter": {"type": "integer"}},
    "required": ["error"],
}

_INCIDENT = {
    "type": "object",
    "properties": {
        "id": {"type": "string", "examples": ["INC-2026-0042"]},
        "number": {"type": "integer"},
        "title": {"type": "string"},
        "status": {"enum": list(STATUSES)},
        "severity": {"type": ["string", "null"], "enum": [*SEVERITY_LEVELS, None]},
        "severity_source": {
            "type": ["string", "null"],
            "description": "What set the severity: rule, fallback (of the severity rules), classifier, source or person",
        },
        "team": {"type": ["string", "null"]},
        "services": {"type": "array", "items": {"type": "string"}},
        "receivers": {"type": "array", "items": {"type": "string"}},
        "correlation": {"type": ["string", "null"]},
        "alert_count": {"type": "integer"},
        "firing_count": {"type": "integer"},
        "assignee": {"type": ["string", "null"]},
        "acknowledged_by": {"type": ["string", "null"]},
        "created_at": {"type": "string", "format": "date-time"},
        "updated_at": {"type": "string", "format": "date-time"},
        "acknowledged_at": {"type": ["string", "null"], "format": "date-time"},
        "resolved_at": {"type": ["string", "null"], "format": "date-time"},
        "closed_at": {"type": ["string", "null"], "format": "date-time"},
    },
}

_DATE_TIME_OR_NULL = {"type": ["string", "null"], "format": "date-time"}

_DEAD_LETTER = {
    "type": "object",
    "properties": {
        "id": {"type": "integer"},
        "source": {"type": "string"},
        "received_at": {"type": "string", "format": "date-time"},
        "status": {"type": "integer", "description": "The HTTP status the request was rejected with"},
        "reason": {"type": "string"},
        "size": {"type": "integer", "description": "Bytes of the stored body"},
        "body_truncated": {"type": "boolean"},
        "state": {
            "enum": ["pending", "failed", "replayed", "dismissed", "untrusted"],
            "description": "`failed`: the latest replay failed. `untrusted`: rejected before the sender was authenticated, "
            "so never replayed",
        },
        "replayed_at": _DATE_TIME_OR_NULL,
        "replay_attempted_at": {**_DATE_TIME_OR_NULL, "description": "When the latest replay ran"},
        "replay_status": {"type": ["integer", "null"], "description": "The HTTP status the latest replay failed with"},
        "replay_outcome": {"type": ["string", "null"], "description": "The latest replay's outcome or failure reason"},
        "payload_id": {"type": ["integer", "null"], "description": "The payload a successful replay stored"},
        "dismissed_at": _DATE_TIME_OR_NULL,
        "dismissed_by": {"type": ["string", "null"]},
        "dismiss_reason": {"type": ["string", "null"]},
    },
}

_DEAD_LETTER_ACTION = {
    "type": "object",
    "properties": {
        "id": {"type": "integer"},
        "outcome": {"type": "string"},
        "detail": {"type": ["string", "null"]},
        "payload_id": {"type": ["integer", "null"]},
    },
    "required": ["id", "outcome"],
}

_NODE = {
    "type": "object",
    "properties": {
        "id": {"type": "string", "description": "host:port:pid:random"},
        "listen": {"type": "string", "examples": ["10.0.0.5:8080"]},
        "started_at": {"type": "string", "format": "date-time"},
        "heartbeat_at": {"type": "string", "format": "date-time"},
    },
    "required": ["id", "listen", "started_at", "heartbeat_at"],
}

_STATUS = {
    "type": "object",
    "properties": {
        "version": {"type": "string"},
        "ready": {"type": "boolean", "description": "Webhooks are accepted; `/readyz` also checks the database"},
        "started_at": {"type": "string", "format": "date-time"},
        "rules": {
            "type": "object",
            "properties": {
                "path": {"type": "string"},
                "environment": {"type": ["string", "null"]},
                "loaded": {"type": "boolean"},
                "digest": {"type": ["string", "null"]},
                "loaded_at": {"type": ["string", "null"], "format": "date-time"},
                "generation": {"type": "integer"},
                "last_error": {
                    "type": "array",
                    "items": {"type": "string"},
                    "description": "Diagnostics of the last failed reload",
                },
                "last_error_at": {"type": ["string", "null"], "format": "date-time"},
                "classifier": {
                    "type": ["object", "null"],
                    "properties": {"loaded": {"type": "boolean"}, "error": {"type": ["string", "null"]}},
                    "description": "null unless the rules classify severities",
                },
            },
        },
        "store": {"type": ["string", "null"], "description": "The store's URL without its password"},
        "pending_events": {
            "type": "integer",
            "description": "Stored alert events not applied yet; 0 while the store is not open",
        },
        "cluster": {
            "type": "object",
            "properties": {
                "node": {"type": ["string", "null"], "description": "This node's id"},
                "lease_s": {"type": "number", "description": "Seconds a silent node's runbook run leases stay its own"},
                "nodes": {
                    "type": "array",
                    "items": {"$ref": "#/components/schemas/Node"},
                    "description": "Nodes whose heartbeat is within the lease time; empty while the store is not open",
                },
            },
            "required": ["node", "lease_s", "nodes"],
        },
        "sources": {
            "type": "object",
            "additionalProperties": {"type": "string"},
            "description": "The path each source of the rules in force receives at, by source name",
        },
    },
    "required": ["version", "ready", "started_at", "rules", "store", "pending_events", "cluster", "sources"],
}

_TIMELINE_ENTRY = {
    "type": "object",
    "properties": {
        "at": {"type": "string", "format": "date-time"},
        "kind": {"type": "string", "examples": ["alert.added", "incident.acknowledged"]},
        "actor": {"type": "string"},
        "message": {"type": "string"},
        "data": {"type": "object"},
    },
}


def _slack_route(summary: str, media_type: str) -> dict[str, Any]:
    return {
        "post": {
            "summary": summary,
            "description": "Signed by Slack: `X-Slack-Signature` over the raw body with the signing secret, "
            "`X-Slack-Request-Timestamp` within five minutes. Stored before the answer; the work follows.",
            "security": [],
            "requestBody": {"required": True, "content": {media_type: {"schema": {}}}},
            "responses": {"200": {"description": "Received"}, **_errors(400, 401, 413, 503)},
        }
    }


def _json_response(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _text_response(description: str, example: str) -> dict[str, Any]:
    return {"description": description, "content": {"text/plain": {"schema": {"type": "string"}, "example": example}}}


def _errors(*statuses: int) -> dict[str, Any]:
    reasons = {
        400: "Invalid request",
        401: "Missing or wrong credentials",
        403: "Wrong signature or token",
        404: "Not found",
        409: "The change is not allowed in the incident's state",
        413: "Body too large",
        422: "Unknown payload format, or a field that a custom source's `map` needs is missing or has the wrong type",
        503: "Not ready, or the store is unavailable; retry",
    }
    return {str(status): _json_response(reasons[status], {"$ref": "#/components/schemas/Error"}) for status in statuses}


def _incident_action(summary: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "summary": summary,
        "parameters": [{"$ref": "#/components/parameters/Incident"}],
        "responses": {
            "200": _json_response("The incident after the change", {"$ref": "#/components/schemas/Incident"}),
            **_errors(400, 401, 404, 409),
        },
    }
    properties = {"actor": {"type": "string", "description": "Who acts; defaults to the X-Irules-Actor header, then `api`."}}
    properties.update(body or {})
    operation["requestBody"] = {
        "required": False,
        "content": {"application/json": {"schema": {"type": "object", "properties": properties}}},
    }
    return operation


def _report_schemas() -> dict[str, dict[str, Any]]:
    """Return the schemas of the post-mortem and metrics reports, made by pydantic from the dataclasses the API sends.

    A report's nested types are named `<report>.<type>`, such as `PostMortem.Incident`,
    apart from the API's own `Incident`.
    """
    from pydantic import TypeAdapter

    from runtime.reports.metrics import Metrics
    from runtime.reports.postmortem import PostMortem

    schemas: dict[str, dict[str, Any]] = {}
    for report in (PostMortem, Metrics):
        name = report.__name__
        schema = TypeAdapter(report).json_schema(mode="serialization", ref_template=f"#/components/schemas/{name}.{{model}}")
        schemas.update({f"{name}.{nested}": definition for nested, definition in schema.pop("$defs", {}).items()})
        schemas[name] = schema
    return schemas


def openapi_document() -> dict[str, Any]:
    from compiler.version import __version__

    incident_ref = {"$ref": "#/components/schemas/Incident"}
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": "irules daemon", "version": __version__},
        "paths": {
            "/": {
                "get": {
                    "summary": "Redirect to the web view at `/ui/`",
                    "security": [],
                    "responses": {"307": {"description": "Redirect to `/ui/`"}},
                }
            },
            "/hooks/{source}": {
                "post": {
                    "summary": "Receive a webhook from alertmanager, cloudwatch, azure, grafana or a custom source",
                    "parameters": [{"name": "source", "in": "path", "required": True, "schema": {"type": "string"}}],
                    "requestBody": {"required": True, "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}}},
                    "responses": {
                        "202": _json_response(
                            "Stored, or spooled while the database is unreachable; the alerts become incidents shortly",
                            {
                                "type": "object",
                                "properties": {
                                    "payload_id": {"type": ["integer", "null"], "description": "null when spooled"},
                                    "kind": {"type": "string"},
                                    "alerts": {"type": "integer"},
                                    "spooled": {
                                        "const": True,
                                        "description": "Present when the payload went to the local spool",
                                    },
                                    "spool_id": {"type": "string", "description": "The spool file's name, when spooled"},
                                    "truncated_alerts": {
                                        "type": "integer",
                                        "description": "Present when the sender left alerts out (Alertmanager's `max_alerts`)",
                                    },
                                },
                                "required": ["payload_id", "kind", "alerts"],
                            },
                        ),
                        **_errors(400, 401, 403, 404, 413, 422, 503),
                    },
                }
            },
            "/healthz": {"get": {"summary": "The process is alive", "responses": {"200": {"description": "ok"}}}},
            "/readyz": {
                "get": {
                    "summary": "Ruleset and store are loaded, and the database answers",
                    "responses": {
                        "200": _text_response("ready", "ready\n"),
                        "503": _text_response(
                            "Not ready, with the reason: the rules or the store are loading, or the database is "
                            "unreachable (also while a node that started without it waits to open the store)",
                            "not ready: the database is unreachable: connection failed: ...\n",
                        ),
                    },
                }
            },
            "/status": {
                "get": {
                    "summary": "Version, rules in force, last reload error, pending events, the nodes of the cluster, source paths",
                    "responses": {"200": _json_response("status", {"$ref": "#/components/schemas/Status"})},
                }
            },
            "/metrics": {
                "get": {"summary": "Prometheus metrics", "responses": {"200": {"description": "text exposition format"}}}
            },
            "/api/v1/incidents": {
                "get": {
                    "summary": "List incidents, newest first",
                    "parameters": [
                        {
                            "name": "status",
                            "in": "query",
                            "schema": {"type": "array", "items": {"enum": list(STATUSES)}},
                            "description": "Any of these statuses; another value gets 400. `open=true` selects "
                            "the statuses before `resolved`.",
                        },
                        {
                            "name": "severity",
                            "in": "query",
                            "schema": {"type": "array", "items": {"enum": list(SEVERITY_LEVELS)}},
                            "description": "Any of these severities; another value gets 400",
                        },
                        {"name": "team", "in": "query", "schema": {"type": "string"}},
                        {"name": "service", "in": "query", "schema": {"type": "string"}},
                        {"name": "open", "in": "query", "schema": {"type": "boolean"}},
                        {"name": "limit", "in": "query", "schema": {"type": "integer", "maximum": 1000, "default": 100}},
                    ],
                    "responses": {
                        "200": _json_response(
                            "Incidents", {"type": "object", "properties": {"incidents": {"type": "array", "items": incident_ref}}}
                        ),
                        **_errors(400, 401),
                    },
                },
                "post": {
                    "summary": "Open an incident by hand",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["title"],
                                    "properties": {
                                        "title": {"type": "string"},
                                        "severity": {"enum": list(SEVERITY_LEVELS)},
                                        "services": {"type": "array", "items": {"type": "string"}},
                                        "team": {"type": "string"},
                                        "actor": {"type": "string"},
                                    },
                                }
                            }
                        },
                    },
                    "responses": {"201": _json_response("The new incident", incident_ref), **_errors(400, 401)},
                },
            },
            "/api/v1/incidents/{incident}": {
                "get": {
                    "summary": "One incident with its alerts and timeline",
                    "parameters": [{"$ref": "#/components/parameters/Incident"}],
                    "responses": {"200": _json_response("The incident", incident_ref), **_errors(401, 404)},
                },
                "patch": _incident_action(
                    "Change status, assignee or severity, with an optional note",
                    {
                        "status": {"type": "string"},
                        "assignee": {"type": "string"},
                        "severity": {"type": "string"},
                        "note": {"type": "string"},
                    },
                ),
            },
            "/api/v1/incidents/{incident}/timeline": {
                "get": {
                    "summary": "The incident's timeline, oldest first",
                    "parameters": [{"$ref": "#/components/parameters/Incident"}],
                    "responses": {
                        "200": _json_response(
                            "Timeline",
                            {"type": "object", "properties": {"timeline": {"type": "array", "items": _TIMELINE_ENTRY}}},
                        ),
                        **_errors(401, 404),
                    },
                }
            },
            "/api/v1/incidents/{incident}/post-mortem": {
                "get": {
                    "summary": "What the incident's post-mortem is written from; `irules post-mortem --daemon` renders it",
                    "parameters": [{"$ref": "#/components/parameters/Incident"}],
                    "responses": {
                        "200": _json_response("The post-mortem's records", {"$ref": "#/components/schemas/PostMortem"}),
                        **_errors(401, 404),
                    },
                }
            },
            "/api/v1/reports/metrics": {
                "get": {
                    "summary": "The figures of `irules metrics` for incidents created from `start` (included) to `end`",
                    "parameters": [
                        {
                            "name": name,
                            "in": "query",
                            "required": True,
                            "schema": {"type": "string", "format": "date-time"},
                            "description": description,
                        }
                        for name, description in (
                            ("start", "The window's start, ISO 8601, included"),
                            ("end", "The window's end, ISO 8601, excluded; after `start`"),
                        )
                    ],
                    "responses": {
                        "200": _json_response("The report's figures", {"$ref": "#/components/schemas/Metrics"}),
                        **_errors(400, 401),
                    },
                }
            },
            "/api/v1/incidents/{incident}/ack": {"post": _incident_action("Acknowledge")},
            "/api/v1/incidents/{incident}/assign": {"post": _incident_action("Assign", {"assignee": {"type": "string"}})},
            "/api/v1/incidents/{incident}/status": {
                "post": _incident_action("Change the status", {"status": {"type": "string"}, "note": {"type": "string"}})
            },
            "/api/v1/incidents/{incident}/resolve": {"post": _incident_action("Resolve", {"note": {"type": "string"}})},
            "/api/v1/incidents/{incident}/close": {"post": _incident_action("Close", {"note": {"type": "string"}})},
            "/api/v1/dead-letters": {
                "get": {
                    "summary": "Requests and events that did not become alerts, newest first",
                    "parameters": [
                        {"name": "source", "in": "query", "schema": {"type": "string"}},
                        {
                            "name": "state",
                            "in": "query",
                            "description": "Only letters in these states; repeat for several. All states when left out",
                            "schema": {"type": "array", "items": _DEAD_LETTER["properties"]["state"]},
                            "style": "form",
                            "explode": True,
                        },
                        {
                            "name": "before",
                            "in": "query",
                            "description": "Only ids below this one, to page back from the last id of the previous page",
                            "schema": {"type": "integer"},
                        },
                        {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000}},
                    ],
                    "responses": {
                        "200": _json_response(
                            "Dead letters",
                            {
                                "type": "object",
                                "properties": {
                                    "dead_letters": {"type": "array", "items": {"$ref": "#/components/schemas/DeadLetter"}}
                                },
                            },
                        ),
                        **_errors(400, 401),
                    },
                }
            },
            "/api/v1/dead-letters/{dead_letter}/replay": {
                "post": {
                    "summary": "Feed a dead letter through the current rules again",
                    "description": "Tries every named letter, including failed and dismissed ones, except those rejected "
                    "before the sender was authenticated.",
                    "parameters": [{"$ref": "#/components/parameters/DeadLetter"}],
                    "responses": {
                        "200": _json_response(
                            "The replay's outcome: `replayed`, `already replayed`, `failed` or `skipped`",
                            {"$ref": "#/components/schemas/DeadLetterAction"},
                        ),
                        **_errors(400, 401, 404),
                    },
                }
            },
            "/api/v1/dead-letters/{dead_letter}/dismiss": {
                "post": {
                    "summary": "Dismiss a dead letter: bulk replays and the default listing leave it out, its row stays",
                    "parameters": [{"$ref": "#/components/parameters/DeadLetter"}],
                    "requestBody": {
                        "required": False,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "properties": {
                                        "reason": {"type": "string", "description": "Why it will not be replayed"},
                                        "actor": {
                                            "type": "string",
                                            "description": "Who acts; defaults to the X-Irules-Actor header, then `api`.",
                                        },
                                    },
                                }
                            }
                        },
                    },
                    "responses": {
                        "200": _json_response(
                            "The outcome: `dismissed`, `already dismissed` or `already replayed` (then not dismissed)",
                            {"$ref": "#/components/schemas/DeadLetterAction"},
                        ),
                        **_errors(400, 401, 404),
                    },
                }
            },
            "/slack/events": _slack_route("Slack Events API: `url_verification` and `app_mention` commands", "application/json"),
            "/slack/commands": _slack_route("The `/incident` slash command", "application/x-www-form-urlencoded"),
            "/slack/interactivity": _slack_route(
                "Button clicks on incident messages (form field `payload`)", "application/x-www-form-urlencoded"
            ),
            "/api/v1/runs": {
                "get": {
                    "summary": "Runbook runs, newest first",
                    "parameters": [
                        {"name": "incident", "in": "query", "schema": {"type": "string"}},
                        {
                            "name": "status",
                            "in": "query",
                            "schema": {"enum": ["running", "waiting", "succeeded", "failed", "cancelled"]},
                        },
                    ],
                    "responses": {"200": {"description": "Runs"}, **_errors(401)},
                }
            },
            "/api/v1/runs/{run}": {
                "get": {
                    "summary": "One run with its steps, their exact operations and outcomes, and its approvals",
                    "parameters": [{"name": "run", "in": "path", "required": True, "schema": {"type": "integer"}}],
                    "responses": {"200": {"description": "The run"}, **_errors(400, 401, 404)},
                }
            },
            "/api/v1/runs/{run}/steps/{step}/decision": {
                "post": {
                    "summary": "Approve or deny a step (granted, denied), or decide on an interrupted one (retry, skip, fail)",
                    "parameters": [
                        {"name": "run", "in": "path", "required": True, "schema": {"type": "integer"}},
                        {"name": "step", "in": "path", "required": True, "schema": {"type": "string"}},
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "properties": {
                                        "answer": {"enum": ["granted", "denied", "retry", "skip", "fail"]},
                                        "note": {"type": "string"},
                                        "actor": {"type": "string"},
                                    },
                                    "required": ["answer"],
                                }
                            }
                        },
                    },
                    "responses": {"200": {"description": "The decision, recorded"}, **_errors(400, 401, 404, 409)},
                }
            },
            "/api/v1/incidents/{incident}/remediate": {
                "post": {
                    **_incident_action(
                        "Start the runbooks that apply to the incident, or the one named",
                        {
                            "runbook": {"type": "string"},
                            "auto_approve_safe": {
                                "type": "boolean",
                                "description": "Grant the approvals of read-only and low-risk steps at once",
                            },
                        },
                    ),
                    "responses": {
                        "201": {"description": "`runs`: per runbook, the new run's id or why it was refused"},
                        "409": {"description": "Every runbook was refused (already running, or over its rate limit)"},
                        **_errors(400, 401, 404),
                    },
                }
            },
            "/api/v1/notifications": {
                "get": {
                    "summary": "Notifications in the outbox, newest first",
                    "parameters": [
                        {
                            "name": "status",
                            "in": "query",
                            "schema": {"enum": ["pending", "sending", "delivered", "failed", "cancelled", "folded"]},
                        },
                        {"name": "incident", "in": "query", "schema": {"type": "string"}},
                        {"name": "limit", "in": "query", "schema": {"type": "integer", "maximum": 1000}},
                    ],
                    "responses": {"200": {"description": "Notifications"}, **_errors(400, 401)},
                }
            },
            "/api/v1/notifications/{notification}/retry": {
                "post": {
                    "summary": "Send a failed notification again",
                    "parameters": [{"name": "notification", "in": "path", "required": True, "schema": {"type": "integer"}}],
                    "responses": {"200": {"description": "The notification, queued again"}, **_errors(400, 401, 404, 409)},
                }
            },
        },
        "components": {
            "schemas": {
                "Error": _ERROR,
                "Incident": _INCIDENT,
                "TimelineEntry": _TIMELINE_ENTRY,
                "Status": _STATUS,
                "Node": _NODE,
                "DeadLetter": _DEAD_LETTER,
                "DeadLetterAction": _DEAD_LETTER_ACTION,
                **_report_schemas(),
            },
            "parameters": {
                "Incident": {
                    "name": "incident",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string"},
                    "description": "Incident id or number",
                },
                "DeadLetter": {"name": "dead_letter", "in": "path", "required": True, "schema": {"type": "integer"}},
            },
            "securitySchemes": {"api_token": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"api_token": []}, {}],
    }
    # Every API operation reads or writes the store, so each returns 503 while the database is unreachable.
    for path, item in document["paths"].items():
        if path.startswith("/api/v1/"):
            for operation in item.values():
                operation["responses"].update(_errors(503))
    # The daemon accepts webhooks by PUT as well as POST, with the same meaning.
    hooks = document["paths"]["/hooks/{source}"]
    hooks["put"] = hooks["post"]
    return document
