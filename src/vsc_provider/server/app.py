"""The identity server's HTTP API (Starlette): routes, body limits and error answers; the handlers live in
one module per resource (activation, pins, renewal, devices, migration, admin, discovery, relying parties,
requests, answers, push).

Every device message is a JWS, every secret a JWE (jose.py). Handlers verify everything first and change
state last, in one transaction whose first statement is the conditional "use this code / ticket once", so a
refused request stores nothing.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from vsc_provider.provisioning import request_wire, wire
from vsc_provider.server import (
    activation,
    admin,
    answers,
    devices,
    discovery,
    migration,
    openapi,
    pins,
    push,
    relying_parties,
    renewal,
    requests,
)
from vsc_provider.server.errors import ProtocolError
from vsc_provider.server.limits import Bucket
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
    "/v1/requests": answers.pending,
    "/v1/requests/answer": answers.answer,
}
SWEEP_EVERY = 1.0  # seconds between expiry sweeps of pending requests

CODE_CALLS = ("/v1/offer", "/v1/activate")  # the calls that take an activation code


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


MAX_OCSP_REQUEST = 16 * 1024


async def _bounded_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise ProtocolError(413, "too_large", f"bodies are at most {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            raise ProtocolError(413, "too_large", f"bodies are at most {limit} bytes")
    return b"".join(chunks)


async def _json_body(request: Request, limit: int = wire.MAX_BODY) -> Any:
    body = await _bounded_body(request, limit)
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


async def _take(bucket: Bucket, client: str) -> None:
    """One token of a bucket; one in the shared database is taken in a thread, off the event loop."""
    if bucket.local:
        bucket.take(client)
    else:
        await run_in_threadpool(bucket.take, client)


async def _check(bucket: Bucket, client: str) -> None:
    if bucket.local:
        bucket.check(client)
    else:
        await run_in_threadpool(bucket.check, client)


def _crash(_: Request, exc: Exception) -> Response:
    log.exception("internal error", exc_info=exc)
    return JSONResponse({"error": "internal", "detail": "internal server error"}, 500)


def create_app(server: IdentityServer) -> Starlette:
    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        server.push.bind(loop)
        server.outbox.bind(loop)
        sweeper = loop.create_task(_sweep(server))
        try:
            yield
        finally:
            sweeper.cancel()
            server.push.unbind()
            server.push.close_all()
            await server.outbox.aclose()

    limits = server.limits

    def device_call(handler: Callable[[IdentityServer, Any], dict[str, Any]], takes_code: bool) -> Any:
        async def endpoint(request: Request) -> Response:
            client = _client(request)
            await _take(limits.requests, client)
            if takes_code:  # activation codes: wrong ones from one address are throttled on their own
                await _check(limits.codes, client)
            body = await _json_body(request)
            try:
                result = await run_in_threadpool(handler, server, body)
            except ProtocolError as exc:
                if takes_code and exc.error in ("unknown_code", "bad_code"):
                    await _take(limits.codes, client)
                raise
            return JSONResponse(result, headers={"Cache-Control": "no-store"})

        return endpoint

    async def info(request: Request) -> Response:
        await _take(limits.requests, _client(request))
        return JSONResponse(discovery.info(server))

    async def nonce(request: Request) -> Response:
        await _take(limits.requests, _client(request))
        value = discovery.new_nonce(server)
        return JSONResponse({"nonce": value}, headers={"Replay-Nonce": value, "Cache-Control": "no-store"})

    async def crl(request: Request) -> Response:
        await _take(limits.requests, _client(request))
        der = await run_in_threadpool(server.revocation.crl)
        return Response(der, media_type="application/pkix-crl", headers={"Cache-Control": "max-age=60"})

    async def ocsp(request: Request) -> Response:
        await _take(limits.requests, _client(request))
        body = await _bounded_body(request, MAX_OCSP_REQUEST)
        der = await run_in_threadpool(server.revocation.ocsp, body)
        return Response(der, media_type="application/ocsp-response", headers={"Cache-Control": "no-store"})

    async def spec(request: Request) -> Response:
        await _take(limits.requests, _client(request))
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

    async def push_stream(request: Request) -> Response:
        body = await _json_body(request)
        _, dev = await run_in_threadpool(server.verify_active, body, "/v1/push")
        server.push.admit(dev.id)
        events = push.stream(server.push, dev.id, server.db.pending_documents)
        headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
        return StreamingResponse(events, media_type="text/event-stream", headers=headers)

    async def rp_create(request: Request) -> Response:
        rp = await run_in_threadpool(relying_parties.authenticate, server, request)
        body = await _json_body(request, request_wire.MAX_RP_BODY)
        return JSONResponse(await run_in_threadpool(requests.create, server, rp, body), 201)

    async def rp_request(request: Request) -> Response:
        rp = await run_in_threadpool(relying_parties.authenticate, server, request)
        return JSONResponse(await run_in_threadpool(requests.get, server, rp, request.path_params["id"]))

    async def rp_cancel(request: Request) -> Response:
        rp = await run_in_threadpool(relying_parties.authenticate, server, request)
        return JSONResponse(await run_in_threadpool(requests.cancel, server, rp, request.path_params["id"]))

    async def admin_relying_party(request: Request) -> Response:
        admin.check_admin(server, request)
        body = await _json_body(request)
        return JSONResponse(await run_in_threadpool(relying_parties.create, server, body), 201)

    async def admin_request_create(request: Request) -> Response:
        admin.check_admin(server, request)
        body = await _json_body(request, request_wire.MAX_RP_BODY)
        rp = await run_in_threadpool(relying_parties.admin, server)
        return JSONResponse(await run_in_threadpool(requests.create, server, rp, body), 201)

    async def admin_request(request: Request) -> Response:
        admin.check_admin(server, request)
        rp = await run_in_threadpool(relying_parties.admin, server)
        return JSONResponse(await run_in_threadpool(requests.get, server, rp, request.path_params["id"]))

    async def admin_request_cancel(request: Request) -> Response:
        admin.check_admin(server, request)
        rp = await run_in_threadpool(relying_parties.admin, server)
        return JSONResponse(await run_in_threadpool(requests.cancel, server, rp, request.path_params["id"]))

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
        Route("/v1/push", push_stream, methods=["POST"]),
        Route("/rp/v1/requests", rp_create, methods=["POST"]),
        Route("/rp/v1/requests/{id}", rp_request, methods=["GET"]),
        Route("/rp/v1/requests/{id}/cancel", rp_cancel, methods=["POST"]),
        Route("/admin/relying-parties", admin_relying_party, methods=["POST"]),
        Route("/admin/requests", admin_request_create, methods=["POST"]),
        Route("/admin/requests/{id}", admin_request, methods=["GET"]),
        Route("/admin/requests/{id}/cancel", admin_request_cancel, methods=["POST"]),
    ]
    return Starlette(
        routes=routes,
        exception_handlers={ProtocolError: _error, HTTPException: _http_error, Exception: _crash},
        lifespan=lifespan,
    )


async def _sweep(server: IdentityServer) -> None:
    """Pending requests past their time are stored EXPIRED (callbacks and `gone` events follow)."""
    while True:
        await asyncio.sleep(SWEEP_EVERY)
        try:
            await run_in_threadpool(requests.expire_due, server)
        except Exception:
            log.exception("expiry sweep failed")
