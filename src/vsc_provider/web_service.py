"""What the package's two web services, the identity server and the push relay, share: JSON answers for
Starlette's own HTTP errors and for crashes, and one way to run an app under uvicorn.

A leaf module: it imports nothing else of the package, so the relay still deploys and runs on its own.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp

Handler = Callable[[Request, Exception], Response]


def error_handlers(log: logging.Logger) -> dict[type[Exception], Handler]:
    """Handlers for Starlette's HTTP errors (404, 405, ...) and for anything unexpected: a JSON body either
    way, and one log line with the traceback for the unexpected."""

    def http_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return JSONResponse({"error": "http", "detail": str(exc.detail)}, exc.status_code)

    def crash(_: Request, exc: Exception) -> Response:
        log.exception("internal error", exc_info=exc)
        return JSONResponse({"error": "internal", "detail": "internal server error"}, 500)

    return {HTTPException: http_error, Exception: crash}


def serve(app: ASGIApp, host: str, port: int, tls_cert: Path | None, tls_key: Path | None) -> None:
    """Run APP until SIGINT/SIGTERM: no access log or Server header, and no waiting at shutdown for
    long-lived streams (push streams last minutes)."""
    import uvicorn  # the CLI imports this module lazily; uvicorn is only needed to serve

    uvicorn.run(
        app,
        host=host,
        port=port,
        ssl_certfile=str(tls_cert) if tls_cert else None,
        ssl_keyfile=str(tls_key) if tls_key else None,
        log_level="warning",
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=2,
    )
