"""HTTP POSTs the server makes on its own (relying-party callbacks, push-relay notifications): run on the
server's event loop in the background, so no answer waits for them, with a timeout and a few tries; a
failure is logged, never fatal. At most MAX_IN_FLIGHT run at once; beyond that new ones are dropped (logged).
"""

from __future__ import annotations

import asyncio
import logging
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

    def post(self, url: str, body: dict[str, Any], what: str, tries: int, timeout: float) -> None:
        """POST `body` as JSON to `url` in the background; callable from any thread."""
        try:
            if self._loop is None:
                raise RuntimeError("no event loop")
            self._loop.call_soon_threadsafe(self._start, url, body, what, tries, timeout)
        except RuntimeError:
            log.warning("%s to %s not sent: the server is not running", what, url)

    def _start(self, url: str, body: dict[str, Any], what: str, tries: int, timeout: float) -> None:
        if len(self._tasks) >= MAX_IN_FLIGHT:
            log.warning("%s to %s dropped: %d posts already in flight", what, url, len(self._tasks))
            return
        assert self._loop is not None
        task = self._loop.create_task(self._send(url, body, what, tries, timeout))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

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
