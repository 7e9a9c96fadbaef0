"""The OpenAPI document of ingest, served at /openapi.json; tests keep it true to the routes."""

from __future__ import annotations

from typing import Any

_STRINGS = {"type": "object", "additionalProperties": {"type": "string"}}
_ERROR = {
    "description": "What is wrong",
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["error", "status"],
                "properties": {"error": {"type": "string"}, "status": {"type": "integer"}},
            }
        }
    },
}
_OK = {"description": "OK", "content": {"application/json": {"schema": {"type": "object"}}}}

_ALERT = {
    "type": "object",
    "required": ["labels"],
    "description": "Field names match in any case, as in Alertmanager and the Go original.",
    "properties": {
        "status": {"type": "string", "enum": ["firing", "resolved"]},
        "labels": _STRINGS,
        "annotations": _STRINGS,
        "startsAt": {"type": "string"},
        "endsAt": {"type": "string"},
        "generatorURL": {"type": "string"},
        "fingerprint": {"type": "string"},
    },
}

_WEBHOOK = {
    "type": "object",
    "description": "Alertmanager's webhook, version 4.",
    "properties": {
        "version": {"type": "string"},
        "groupKey": {"type": "string"},
        "truncatedAlerts": {"type": "integer"},
        "status": {"type": "string", "enum": ["firing", "resolved"]},
        "receiver": {"type": "string"},
        "groupLabels": _STRINGS,
        "commonLabels": _STRINGS,
        "commonAnnotations": _STRINGS,
        "externalURL": {"type": "string"},
        "alerts": {"type": "array", "items": _ALERT},
    },
}


def _get(summary: str, responses: dict[str, Any]) -> dict[str, Any]:
    return {"get": {"summary": summary, "security": [], "responses": responses}}


OPENAPI: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {"title": "openfero ingest", "version": "1", "description": "Receives Alertmanager webhooks and stores one message per alert."},
    "components": {
        "securitySchemes": {
            "basic": {"type": "http", "scheme": "basic"},
            "bearer": {"type": "http", "scheme": "bearer"},
        }
    },
    "paths": {
        "/alerts": {
            "post": {
                "summary": "Store every alert of a webhook; 200 only once the broker confirmed them all.",
                "security": [{}, {"basic": []}, {"bearer": []}],
                "requestBody": {"required": True, "content": {"application/json": {"schema": _WEBHOOK}}},
                "responses": {
                    "200": {
                        "description": "Stored",
                        "content": {
                            "application/json": {
                                "schema": {"type": "object", "required": ["accepted"], "properties": {"accepted": {"type": "integer"}}}
                            }
                        },
                    },
                    "400": _ERROR,
                    "401": _ERROR,
                    "408": {**_ERROR, "description": "The body did not arrive in time"},
                    "413": _ERROR,
                    "415": {**_ERROR, "description": "Content-Type is not application/json"},
                    "422": _ERROR,
                    "503": {**_ERROR, "description": "Not stored: retry"},
                },
            },
            **_get("Answers 200, as Alertmanager and the Go original expect", {"200": _OK}),
        },
        "/healthz": _get("200 while the process runs", {"200": _OK}),
        "/readiness": _get("200 while connected to the broker", {"200": _OK, "503": _ERROR}),
        "/metrics": _get("Prometheus metrics", {"200": {"description": "Metrics in Prometheus' text format", "content": {"text/plain": {"schema": {"type": "string"}}}}}),
        "/openapi.json": _get("This document", {"200": _OK}),
    },
}
