"""The listener's side of a topic: an ASGI text/event-stream that writes each notification as it arrives, a
keep-alive comment when idle, and ends after a fixed lifetime.

A plain ASGI callable rather than Starlette's StreamingResponse: the listener must leave the hub the moment
its client goes away (or it would hold a place under the caps until the next write failed), and must leave
it whatever happens, even when the client is gone before the first byte.
"""

from __future__ import annotations

import anyio
from starlette.types import Receive, Scope, Send

from vsc_provider.relay.hub import Hub, Listener
from vsc_provider.relay.wire import EVENT

HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-store"),
    (b"x-accel-buffering", b"no"),  # reverse proxies (nginx) must pass each event on at once
]


def event(notification: str) -> bytes:
    return f"event: {EVENT}\ndata: {notification}\n\n".encode()


class EventStream:
    def __init__(self, hub: Hub, listener: Listener, keepalive: float, lifetime: float) -> None:
        self.hub, self.listener = hub, listener
        self.keepalive, self.lifetime = keepalive, lifetime
        self.gone = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
            # a first comment: the headers leave every buffer now, and the client knows it is listening
            await send({"type": "http.response.body", "body": b": listening\n\n", "more_body": True})
            async with anyio.create_task_group() as group:
                group.start_soon(self._watch, receive, group.cancel_scope)
                await self._pump(send)
                group.cancel_scope.cancel()
            if not self.gone:  # the lifetime is over: end the response properly
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        except OSError:
            pass  # the client went away mid-write
        finally:
            self.hub.close(self.listener)

    async def _watch(self, receive: Receive, scope: anyio.CancelScope) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        self.gone = True
        scope.cancel()

    async def _pump(self, send: Send) -> None:
        deadline = anyio.current_time() + self.lifetime
        while True:
            batch = self.listener.take()
            if batch:
                body = b"".join(event(n) for n in batch)
                await send({"type": "http.response.body", "body": body, "more_body": True})
                continue
            left = deadline - anyio.current_time()
            if left <= 0:
                return
            with anyio.move_on_after(min(self.keepalive, left)):
                await self.listener.wake.wait()
            if not self.listener.pending and anyio.current_time() < deadline:
                await send({"type": "http.response.body", "body": b": keep-alive\n\n", "more_body": True})
