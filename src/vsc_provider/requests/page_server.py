"""Runs the approval page on 127.0.0.1 at a random port, in a daemon thread of the calling process (the agent).

The URL it hands back carries a fresh token (secrets.token_urlsafe(32)): whoever has the URL can use the page,
so it is shown only to the user. uvicorn's access log is off so that the URL (and its token) is not logged.
"""

from __future__ import annotations

import secrets
import socket
import threading
import time
from collections.abc import Callable

import uvicorn

from vsc_provider.requests.model import RequestSource
from vsc_provider.requests.page import make_app

START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0


class PageServerError(Exception):
    """The approval page could not be started."""


def listening_socket() -> socket.socket:
    """A TCP socket bound to 127.0.0.1 at a free port. IPPROTO_TCP is named because asyncio sets TCP_NODELAY only
    on connections whose proto says TCP; with proto 0 every answer on a kept-alive connection waited ~40 ms for
    a delayed ACK (Nagle)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


def serve(source: RequestSource) -> tuple[str, Callable[[], None]]:
    """Start the page for `source`; returns its URL (`http://127.0.0.1:PORT/TOKEN/`) and a function that stops
    the server and waits for its thread."""
    token = secrets.token_urlsafe(32)
    sock = listening_socket()
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        make_app(source, token),
        log_level="warning",
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=2,
    )
    server = uvicorn.Server(config)
    failure: list[BaseException] = []

    def run() -> None:
        try:
            server.run(sockets=[sock])
        except BaseException as exc:  # reported by serve() when start-up fails; logged by uvicorn otherwise
            failure.append(exc)

    thread = threading.Thread(target=run, name="vsc-approval-page", daemon=True)
    thread.start()
    deadline = time.monotonic() + START_TIMEOUT_S
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            thread.join(STOP_TIMEOUT_S)
            sock.close()
            reason = f": {failure[0]}" if failure else ""
            raise PageServerError(f"the approval page did not start{reason}")
        time.sleep(0.01)

    def stop() -> None:
        server.should_exit = True
        thread.join(STOP_TIMEOUT_S)
        sock.close()

    return f"http://127.0.0.1:{port}/{token}/", stop
