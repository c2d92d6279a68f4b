"""The identity server's HTTP API (Starlette): routes, body limits and error answers; the handlers live in
one module per resource (activation, pins, renewal, devices, migration, admin, discovery, relying parties,
requests, answers, push, OTP verification).

Every device message is a JWS, every secret a JWE (jose.py). Handlers verify everything first and change
state last, in one transaction whose first statement is the conditional "use this code / ticket once", so a
refused request stores nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from vsc_provider.provisioning import request_wire, wire
from vsc_provider.server import (
    activation,
    admin,
    answers,
    bodies,
    devices,
    discovery,
    migration,
    openapi,
    otp_verify,
    pins,
    push,
    relying_parties,
    renewal,
    requests,
)
from vsc_provider.server.admin_calls import ADMIN_CALLS, AdminCall
from vsc_provider.server.errors import ProtocolError
from vsc_provider.server.limits import Bucket
from vsc_provider.server.relying_parties import RelyingParty
from vsc_provider.server.state import IdentityServer
from vsc_provider.web_service import error_handlers

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
        raise bodies.too_large(limit)
    chunks, size = [], 0
    async for chunk in request.stream():
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            raise bodies.too_large(limit)
    return b"".join(chunks)


async def _json_body(request: Request, limit: int = wire.MAX_BODY) -> Any:
    return bodies.parse(await _bounded_body(request, limit), limit)


def _error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, ProtocolError)
    headers = {"Retry-After": str(int(exc.extra["retry_after"]) + 1)} if "retry_after" in exc.extra else None
    return JSONResponse({"error": exc.error, "detail": exc.detail, **exc.extra}, exc.status, headers=headers)


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

    def admin_route(call: AdminCall) -> Route:
        async def endpoint(request: Request) -> Response:
            admin.check_admin(server, request)
            body = await _json_body(request, call.body_limit) if call.body_limit else None
            answer = await run_in_threadpool(call.run, server, dict(request.path_params), body)
            return JSONResponse(answer, call.status)

        return Route(call.path, endpoint, methods=[call.method])

    async def push_stream(request: Request) -> Response:
        body = await _json_body(request)
        _, dev = await run_in_threadpool(server.verify_active, body, "/v1/push")
        server.push.admit(dev.id)
        events = push.stream(server.push, dev.id, server.db.pending_documents)
        headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
        return StreamingResponse(events, media_type="text/event-stream", headers=headers)

    async def rp_otp_verify(request: Request) -> Response:
        rp = await run_in_threadpool(relying_parties.authenticate, server, request)
        body = await _json_body(request, otp_verify.MAX_BODY)
        answer = await run_in_threadpool(otp_verify.verify, server, rp, body)
        return JSONResponse(answer, headers={"Cache-Control": "no-store"})

    async def as_relying_party(request: Request) -> RelyingParty:
        return await run_in_threadpool(relying_parties.authenticate, server, request)

    def request_routes(prefix: str, caller: Callable[[Request], Awaitable[RelyingParty]]) -> list[Route]:
        """Create, read and cancel authentication and signing requests, for whoever CALLER says is asking."""

        async def create(request: Request) -> Response:
            rp = await caller(request)
            body = await _json_body(request, request_wire.MAX_RP_BODY)
            return JSONResponse(await run_in_threadpool(requests.create, server, rp, body), 201)

        async def read(request: Request) -> Response:
            rp = await caller(request)
            return JSONResponse(await run_in_threadpool(requests.get, server, rp, request.path_params["id"]))

        async def cancel(request: Request) -> Response:
            rp = await caller(request)
            return JSONResponse(await run_in_threadpool(requests.cancel, server, rp, request.path_params["id"]))

        return [
            Route(prefix, create, methods=["POST"]),
            Route(prefix + "/{id}", read, methods=["GET"]),
            Route(prefix + "/{id}/cancel", cancel, methods=["POST"]),
        ]

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
        Route("/v1/push", push_stream, methods=["POST"]),
        *request_routes("/rp/v1/requests", as_relying_party),
        Route("/v1/otp/verify", rp_otp_verify, methods=["POST"]),
        *(admin_route(call) for call in ADMIN_CALLS),
    ]
    return Starlette(
        routes=routes,
        exception_handlers={ProtocolError: _error, **error_handlers(log)},
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
