"""The OpenAPI 3.1 description of the server, published at /openapi.json (docs/protocol.md has the prose)."""

from __future__ import annotations

from typing import Any

from vsc_provider.provisioning import request_wire as rw

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


_ID = [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}]
_METADATA_ITEM = {
    "type": "object",
    "required": ["type", "label", "data"],
    "additionalProperties": False,
    "properties": {
        "type": {"enum": list(rw.METADATA_TYPES)},
        "label": {"type": "string", "maxLength": rw.MAX_LABEL},
        "data": {"type": "string", "description": "text, or base64url of the file"},
    },
}
_NEW_REQUEST = {
    "type": "object",
    "required": ["kind"],
    "additionalProperties": False,
    "description": "exactly one of user and device; sign: exactly one of data and hash (see docs/protocol.md)",
    "properties": {
        "user": {"type": "string"},
        "device": {"type": "string"},
        "kind": {"enum": list(rw.KINDS)},
        "data": {"type": "string", "description": "base64url, at most 1 MiB"},
        "hash": {"type": "string", "description": "base64url SHA-256/384/512 digest"},
        "alg": {"enum": list(rw.ALGS)},
        "format": {"enum": list(rw.FORMATS)},
        "metadata": {"type": "array", "maxItems": rw.MAX_METADATA_ITEMS, "items": _METADATA_ITEM},
        "ttl": {"type": "integer", "minimum": rw.TTL_RANGE[0], "maximum": rw.TTL_RANGE[1]},
        "callback": {"type": "string", "description": "https:// (http:// only to 127.0.0.1)"},
    },
}
_REQUEST_DOC = {
    "type": "object",
    "required": ["id", "kind", "state", "created", "expires", "alg", "format"],
    "properties": {
        "id": {"type": "string"},
        "kind": {"enum": list(rw.KINDS)},
        "state": {"enum": list(rw.STATES)},
        "created": {"type": "number"},
        "expires": {"type": "number"},
        "device": {"type": ["string", "null"]},
        "alg": {"type": "string"},
        "format": {"enum": list(rw.FORMATS)},
        "result": {
            "type": "object",
            "properties": {
                "signature": {"type": "string"},
                "certificate": {"type": "string"},
                "verified": {"type": "boolean"},
            },
        },
    },
}

_OTP_VERIFY = {
    "type": "object",
    "required": ["code"],
    "additionalProperties": False,
    "description": "exactly one of user and device (see docs/protocol.md)",
    "properties": {
        "user": {"type": "string"},
        "device": {"type": "string"},
        "code": {"type": "string", "pattern": "^[0-9]{6,8}$"},
    },
}
_OTP_ANSWER = {
    "type": "object",
    "required": ["valid", "device", "user", "type"],
    "properties": {
        "valid": {"type": "boolean"},
        "device": {"type": "string"},
        "user": {"type": "string"},
        "type": {"enum": ["totp", "hotp"]},
        "step": {"type": "integer"},
        "counter": {"type": "integer"},
        "reason": {"enum": ["wrong", "replayed", "resync"]},
        "tries_left": {"type": "integer"},
        "retry_after": {"type": "number"},
    },
}
_OTP_SETTING = {
    "description": "an OATH seed for the card (otherwise the profile's, if any)",
    "oneOf": [
        {"enum": ["totp", "hotp"]},
        {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "type": {"enum": ["totp", "hotp"]},
                "algorithm": {"enum": ["SHA1", "SHA256", "SHA512"]},
                "digits": {"type": "integer", "minimum": 6, "maximum": 8},
                "period": {"type": "integer", "minimum": 1, "maximum": 3600},
                "issuer": {"type": "string", "maxLength": 64},
                "window": {"type": "integer", "minimum": 0},
                "resync": {"type": "integer", "minimum": 0, "maximum": 10000},
            },
        },
    ],
}


def _request_paths(prefix: str, security: str, create: str, read: str, cancel: str) -> dict[str, Any]:
    """Create, read and cancel requests under PREFIX, for the caller SECURITY names (summaries given)."""

    def one(method: str, summary: str, body: dict[str, Any], responses: dict[str, Any]) -> dict[str, Any]:
        return {method: {"summary": summary, "security": [{security: []}], **body, "responses": responses}}

    new = {"requestBody": {"required": True, "content": {"application/json": {"schema": _NEW_REQUEST}}}}
    created = {"201": _ok("the request: id, state PENDING, expires, challenge (auth)"), **_errors(400, 401, 409, 413)}
    state = {"200": _ok("the request", _REQUEST_DOC)}
    return {
        prefix: one("post", create, new, created),
        prefix + "/{id}": one("get", read, {"parameters": _ID}, {**state, **_errors(401, 404)}),
        prefix + "/{id}/cancel": one("post", cancel, {"parameters": _ID}, {**state, **_errors(401, 404, 409)}),
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
        "/v1/crl": {
            "get": {
                "summary": "the CA's current CRL (DER): deleted, renewed and migrated cards' certificates",
                "responses": {
                    "200": {
                        "description": "the CRL",
                        "content": {"application/pkix-crl": {"schema": {"type": "string", "format": "binary"}}},
                    },
                    **_errors(429),
                },
            }
        },
        "/v1/ocsp": {
            "post": {
                "summary": "an OCSP answer (RFC 6960) for certificates the server's CA issued",
                "requestBody": {
                    "required": True,
                    "description": "a DER OCSP request; the server reads the body whatever its Content-Type",
                    "content": {
                        media: {"schema": {"type": "string", "format": "binary"}}
                        for media in ("application/ocsp-request", "application/octet-stream")
                    },
                },
                "responses": {
                    "200": {
                        "description": "the OCSP response (malformedRequest for an unreadable request)",
                        "content": {"application/ocsp-response": {"schema": {"type": "string", "format": "binary"}}},
                    },
                    **_errors(413, 429),
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
        "/v1/requests": _jws_post("the device's pending requests (compact JWSs by the protocol key)"),
        "/v1/requests/answer": _jws_post(
            "approve (with the card's signature and certificate) or reject a request", (400, 401, 404, 409, 410, 413)
        ),
        "/v1/push": {
            "post": {
                "summary": "Server-Sent Events: pending and new requests (event: request), decided ones (event: gone)",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/JWS"}}},
                },
                "responses": {
                    "200": {
                        "description": "the event stream",
                        "content": {"text/event-stream": {"schema": {"type": "string"}}},
                    },
                    **_errors(400, 401, 410, 413, 429),
                },
            }
        },
        **_request_paths(
            "/rp/v1/requests",
            "rp",
            create="ask a user's card to authenticate or sign",
            read="a request's state and, once approved, its verified result",
            cancel="cancel a pending request",
        ),
        "/v1/otp/verify": {
            "post": {
                "summary": "whether a code of a card's OATH seed is right (each code is accepted once)",
                "security": [{"rp": []}],
                "requestBody": {"required": True, "content": {"application/json": {"schema": _OTP_VERIFY}}},
                "responses": {"200": _ok("valid or not", _OTP_ANSWER), **_errors(400, 401, 404, 409, 413, 423, 429)},
            }
        },
        "/admin/relying-parties": {
            "post": {
                "summary": "register a relying party; its API key is in the answer, once",
                "security": [{"admin": []}],
                "requestBody": _json_body(["name"], {"name": {"type": "string"}}),
                "responses": {"201": _ok("id, name, api_key"), **_errors(400, 401, 409, 413)},
            }
        },
        **_request_paths(
            "/admin/requests",
            "admin",
            create="a request made by the admin (the built-in relying party 'admin')",
            read="any request's state and result",
            cancel="cancel any pending request",
        ),
        "/admin/activations": {
            "post": {
                "summary": "create a one-time activation link (bearer token from admin.json)",
                "security": [{"admin": []}],
                "requestBody": _json_body(
                    ["user"], {"user": {"type": "string"}, "profile": {"type": "string"}, "otp": _OTP_SETTING}
                ),
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
        "/admin/devices/{device}": {
            "get": {
                "summary": "one device, with `attested` (tpm, implementer or null) and its registered TPM key",
                "security": [{"admin": []}],
                "parameters": [{"name": "device", "in": "path", "required": True, "schema": {"type": "string"}}],
                "responses": {"200": _ok("the device"), **_errors(401, 404)},
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
        "securitySchemes": {
            "admin": {"type": "http", "scheme": "bearer"},
            "rp": {"type": "http", "scheme": "bearer", "description": "a relying party's API key (vsc_rp_...)"},
        },
    },
}
