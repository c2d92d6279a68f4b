"""The identity server's HTTP API (Starlette): routes, body limits and error answers; the handlers live in
one module per resource (activation, pins, renewal, devices, migration, admin, discovery).

Every device message is a JWS, every secret a JWE (jose.py). Handlers verify everything first and change
state last, in one transaction whose first statement is the conditional "use this code / ticket once", so a
refused request stores nothing.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from functools import partial
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from vsc_provider.provisioning import wire
from vsc_provider.server import activation, admin, devices, discovery, migration, openapi, pins, renewal
from vsc_provider.server.errors import ProtocolError
from vsc_provider.server.state import IdentityServer

__all__ = ["IdentityServer", "ProtocolError", "create_app"]

log = logging.getLogger("vsc.server")

# device endpoints: a JSON body in, a JSON answer out, the handler run in the thread pool
DEVICE_CALLS: dict[str, Callable[[IdentityServer, Any], dict[str, Any]]] = {
    "/v1/offer": activation.offer,
    "/v1/activate": activation.activate,
    "/v1/status": devices.status,
    "/v1/pin": pins.pin,
    "/v1/pin/change": pins.pin_change,
    "/v1/renew": renewal.renew,
    "/v1/delete": devices.delete,
    "/v1/migration": migration.ticket,
    "/v1/migration/complete": migration.complete,
}

CODE_CALLS = ("/v1/offer", "/v1/activate")  # the calls that take an activation code


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


MAX_OCSP_REQUEST = 16 * 1024


async def _bounded_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise ProtocolError(413, "too_large", f"bodies are at most {limit} bytes")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise ProtocolError(413, "too_large", f"bodies are at most {limit} bytes")
    return body


async def _json_body(request: Request) -> Any:
    body = await _bounded_body(request, wire.MAX_BODY)
    try:
        return wire.sound_json(json.loads(body))
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise ProtocolError(400, "malformed", "the body is not JSON the protocol uses") from None


def _error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, ProtocolError)
    headers = {"Retry-After": str(int(exc.extra["retry_after"]) + 1)} if "retry_after" in exc.extra else None
    return JSONResponse({"error": exc.error, "detail": exc.detail, **exc.extra}, exc.status, headers=headers)


def _http_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return JSONResponse({"error": "http", "detail": str(exc.detail)}, exc.status_code)


def _crash(_: Request, exc: Exception) -> Response:
    log.exception("internal error", exc_info=exc)
    return JSONResponse({"error": "internal", "detail": "internal server error"}, 500)


def create_app(server: IdentityServer) -> Starlette:
    limits = server.limits

    def device_call(handler: Callable[[IdentityServer, Any], dict[str, Any]], takes_code: bool) -> Any:
        async def endpoint(request: Request) -> Response:
            client = _client(request)
            limits.requests.take(client)
            if takes_code:  # activation codes: wrong ones from one address are throttled on their own
                limits.codes.check(client)
            body = await _json_body(request)
            try:
                result = await run_in_threadpool(handler, server, body)
            except ProtocolError as exc:
                if takes_code and exc.error in ("unknown_code", "bad_code"):
                    limits.codes.take(client)
                raise
            return JSONResponse(result, headers={"Cache-Control": "no-store"})

        return endpoint

    async def info(request: Request) -> Response:
        limits.requests.take(_client(request))
        return JSONResponse(discovery.info(server))

    async def nonce(request: Request) -> Response:
        limits.requests.take(_client(request))
        value = discovery.new_nonce(server)
        return JSONResponse({"nonce": value}, headers={"Replay-Nonce": value, "Cache-Control": "no-store"})

    async def crl(request: Request) -> Response:
        limits.requests.take(_client(request))
        der = await run_in_threadpool(server.revocation.crl)
        return Response(der, media_type="application/pkix-crl", headers={"Cache-Control": "max-age=60"})

    async def ocsp(request: Request) -> Response:
        limits.requests.take(_client(request))
        body = await _bounded_body(request, MAX_OCSP_REQUEST)
        der = await run_in_threadpool(server.revocation.ocsp, body)
        return Response(der, media_type="application/ocsp-response", headers={"Cache-Control": "no-store"})

    async def spec(request: Request) -> Response:
        limits.requests.take(_client(request))
        return JSONResponse(openapi.SPEC)

    async def admin_activation(request: Request) -> Response:
        admin.check_admin(server, request)
        body = await _json_body(request)
        return JSONResponse(await run_in_threadpool(admin.create_activation, server, body), 201)

    async def admin_devices(request: Request) -> Response:
        admin.check_admin(server, request)
        return JSONResponse({"devices": await run_in_threadpool(admin.devices, server)})

    async def admin_device(request: Request) -> Response:
        admin.check_admin(server, request)
        action = partial(admin.device_action, server, request.path_params["device"], request.path_params["action"])
        return JSONResponse(await run_in_threadpool(action))

    routes = [
        Route("/openapi.json", spec, methods=["GET"]),
        Route("/v1/server", info, methods=["GET"]),
        Route("/v1/nonce", nonce, methods=["GET"]),
        Route("/v1/crl", crl, methods=["GET"]),
        Route("/v1/ocsp", ocsp, methods=["POST"]),
        *(
            Route(path, device_call(handler, path in CODE_CALLS), methods=["POST"])
            for path, handler in DEVICE_CALLS.items()
        ),
        Route("/admin/activations", admin_activation, methods=["POST"]),
        Route("/admin/devices", admin_devices, methods=["GET"]),
        Route("/admin/devices/{device}/{action}", admin_device, methods=["POST"]),
    ]
    return Starlette(
        routes=routes, exception_handlers={ProtocolError: _error, HTTPException: _http_error, Exception: _crash}
    )
