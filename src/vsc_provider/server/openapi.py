"""The OpenAPI 3.1 description of the server, published at /openapi.json (docs/protocol.md has the prose)."""

from __future__ import annotations

from typing import Any

_ERROR = {
    "type": "object",
    "required": ["error", "detail"],
    "properties": {"error": {"type": "string"}, "detail": {"type": "string"}},
}
_JWS = {
    "type": "object",
    "description": "A flattened JWS (RFC 7515 section 7.2.2) signed RS256 or RS512; see docs/protocol.md",
    "required": ["protected", "payload", "signature"],
    "additionalProperties": False,
    "properties": {"protected": {"type": "string"}, "payload": {"type": "string"}, "signature": {"type": "string"}},
}


def _errors(*codes: int) -> dict[str, Any]:
    return {
        str(c): {
            "description": "refused",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        }
        for c in codes
    }


def _ok(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema or {"type": "object"}}}}


def _json_body(required: list[str], properties: dict[str, Any]) -> dict[str, Any]:
    """A required JSON request body: an object with these properties."""
    schema = {"type": "object", "required": required, "properties": properties}
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def _jws_post(summary: str, errors: tuple[int, ...] = (400, 401, 410, 413)) -> dict[str, Any]:
    return {
        "post": {
            "summary": summary,
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/JWS"}}},
            },
            "responses": {"200": _ok(summary), **_errors(*errors)},
        }
    }


SPEC: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "vsc identity server", "version": "1"},
    "paths": {
        "/v1/server": {"get": {"summary": "server information and JOSE keys", "responses": {"200": _ok("info")}}},
        "/v1/nonce": {
            "get": {
                "summary": "a fresh one-time nonce for the next JWS",
                "responses": {
                    "200": _ok(
                        "nonce", {"type": "object", "required": ["nonce"], "properties": {"nonce": {"type": "string"}}}
                    )
                },
            }
        },
        "/v1/offer": {
            "post": {
                "summary": "what an activation code offers (does not use the code)",
                "requestBody": _json_body(["code"], {"code": {"type": "string"}}),
                "responses": {"200": _ok("the offer"), **_errors(400, 404, 413)},
            }
        },
        "/v1/activate": _jws_post(
            "activate: register the device key, issue certificates, use the code", (400, 401, 403, 404, 409, 413)
        ),
        "/v1/status": _jws_post("the device's state on the server (active, deleted, migrated) and renew flag"),
        "/v1/pin": _jws_post(
            "prove knowledge of the PIN; on success the server secret as JWE", (400, 401, 403, 410, 413, 423, 429)
        ),
        "/v1/pin/change": _jws_post(
            "a new PIN verifier with a proof of the current PIN (counted like /v1/pin)",
            (400, 401, 403, 410, 413, 423, 429),
        ),
        "/v1/renew": _jws_post("new certificates for new keys, proven by a JWS of the current card keys"),
        "/v1/delete": _jws_post("the device deletes itself"),
        "/v1/migration": _jws_post("a signed ticket to move the card to another server"),
        "/v1/migration/complete": _jws_post("the target's receipt: the device leaves this server"),
        "/admin/activations": {
            "post": {
                "summary": "create a one-time activation link (bearer token from admin.json)",
                "security": [{"admin": []}],
                "requestBody": _json_body(["user"], {"user": {"type": "string"}, "profile": {"type": "string"}}),
                "responses": {"201": _ok("the link"), **_errors(400, 401, 413)},
            }
        },
        "/admin/devices": {
            "get": {
                "summary": "list devices",
                "security": [{"admin": []}],
                "responses": {"200": _ok("devices"), **_errors(401)},
            }
        },
        "/admin/devices/{device}/{action}": {
            "post": {
                "summary": "delete, renew or unblock a device",
                "security": [{"admin": []}],
                "parameters": [
                    {"name": "device", "in": "path", "required": True, "schema": {"type": "string"}},
                    {
                        "name": "action",
                        "in": "path",
                        "required": True,
                        "schema": {"enum": ["delete", "renew", "unblock"]},
                    },
                ],
                "responses": {"200": _ok("done"), **_errors(401, 404)},
            }
        },
    },
    "components": {
        "schemas": {"Error": _ERROR, "JWS": _JWS},
        "securitySchemes": {"admin": {"type": "http", "scheme": "bearer"}},
    },
}
