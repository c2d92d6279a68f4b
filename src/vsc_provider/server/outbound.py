"""What the server sends on its own: relying-party callbacks (HTTP POSTs on the server's event loop, a few
tries) and push-relay notifications (the relay's own blocking client, run in a worker thread). Both run in
the background, so no answer waits for them, with a timeout; a failure is logged, never fatal. At most
MAX_IN_FLIGHT run at once; beyond that new ones are dropped (logged).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

import httpx

log = logging.getLogger("vsc.server")

MAX_IN_FLIGHT = 1000


class Outbox:
    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: httpx.AsyncClient | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """The loop the posts run on (the server's, at start-up)."""
        self._loop = loop

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def drain(self, timeout: float) -> None:
        """Wait (at most TIMEOUT seconds) for the posts in flight, then close (a command that posts and ends)."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout)
        await self.aclose()

    def post(self, url: str, body: dict[str, Any], what: str, tries: int, timeout: float) -> None:
        """POST `body` as JSON to `url` in the background; callable from any thread."""
        self._schedule(lambda: self._send(url, body, what, tries, timeout), what, url)

    def call(self, send: Callable[[], object], what: str, where: str) -> None:
        """Run a blocking `send` (a client's call that raises on failure) in a worker thread in the
        background; callable from any thread."""
        self._schedule(lambda: self._call(send, what, where), what, where)

    def _schedule(self, work: Callable[[], Coroutine[Any, Any, None]], what: str, where: str) -> None:
        try:
            if self._loop is None:
                raise RuntimeError("no event loop")
            self._loop.call_soon_threadsafe(self._start, work, what, where)
        except RuntimeError:
            log.warning("%s to %s not sent: the server is not running", what, where)

    def _start(self, work: Callable[[], Coroutine[Any, Any, None]], what: str, where: str) -> None:
        if len(self._tasks) >= MAX_IN_FLIGHT:
            log.warning("%s to %s dropped: %d posts already in flight", what, where, len(self._tasks))
            return
        assert self._loop is not None
        task = self._loop.create_task(work())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _call(self, send: Callable[[], object], what: str, where: str) -> None:
        assert self._loop is not None
        try:
            await self._loop.run_in_executor(None, send)
        except Exception as exc:
            log.warning("%s to %s failed: %s", what, where, exc)

    async def _send(self, url: str, body: dict[str, Any], what: str, tries: int, timeout: float) -> None:
        if self._client is None:
            self._client = httpx.AsyncClient(trust_env=False, follow_redirects=False)
        problem = ""
        for attempt in range(tries):
            if attempt:
                await asyncio.sleep(0.5 * 2 ** (attempt - 1))
            try:
                response = await self._client.post(url, json=body, timeout=timeout)
            except httpx.HTTPError as exc:
                problem = f"{type(exc).__name__}: {exc}"
                continue
            if response.status_code < 300:
                return
            problem = f"HTTP {response.status_code}"
        log.warning("%s to %s failed after %d tries: %s", what, url, tries, problem)
