"""/v1/push: each device's Server-Sent Events stream. At connect it carries every pending request, then
each new one within milliseconds (an in-process asyncio notification from the handler that made it; from
other instances on the same PostgreSQL database through LISTEN/NOTIFY, push_bus.py), `gone`
when one is decided, cancelled or expired, a keep-alive comment every PUSH_KEEPALIVE seconds; it ends after
PUSH_MAX_STREAM seconds.

Streams live on the event loop only (no thread of the pool waits on them) and are bounded: at most
MAX_STREAMS in all and MAX_PER_DEVICE per device (429 beyond), and each queues at most QUEUE_SIZE events;
a stream that falls that far behind is ended, and the device's reconnect gets every pending request again.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from starlette.concurrency import run_in_threadpool

from vsc_provider.provisioning import request_wire
from vsc_provider.server.errors import ProtocolError

if TYPE_CHECKING:
    from vsc_provider.server.push_bus import PgPushBus

MAX_STREAMS = 2000
MAX_PER_DEVICE = 8
QUEUE_SIZE = 256


def _seconds(name: str, default: float) -> float:
    """PUSH timings; VSC_SERVER_PUSH_KEEPALIVE / VSC_SERVER_PUSH_MAX_STREAM shorten them for tests."""
    return float(os.environ.get(name, str(default)))


@dataclass(eq=False)
class Subscription:
    device: str
    queue: asyncio.Queue[tuple[str, str, str] | None] = field(default_factory=lambda: asyncio.Queue(QUEUE_SIZE))


class PushHub:
    """Which streams are open for which device; events reach them through the loop (thread-safe publish)."""

    def __init__(self, bus: PgPushBus | None = None) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._subs: dict[str, set[Subscription]] = {}
        self._count = 0
        self._lock = threading.Lock()  # guards _subs' keys for local_devices() from the bus's thread
        self.bus = bus

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        if self.bus is not None:
            self.bus.start(self._publish_here, self.local_devices, self._reset_soon)

    def unbind(self) -> None:
        if self.bus is not None:
            self.bus.stop()

    def local_devices(self) -> set[str]:
        with self._lock:
            return set(self._subs)

    def _reset_soon(self) -> None:
        """Events may have been missed: end every stream (devices reconnect and get what is pending)."""
        if self._loop is not None:
            try:
                self._loop.call_soon_threadsafe(self.close_all)
            except RuntimeError:
                pass

    # the methods below run on the loop
    def admit(self, device: str) -> None:
        if self._count >= MAX_STREAMS or len(self._subs.get(device, ())) >= MAX_PER_DEVICE:
            raise ProtocolError(429, "too_many_streams", "too many push streams open: retry later", retry_after=5)

    def subscribe(self, device: str) -> Subscription:
        sub = Subscription(device)
        with self._lock:
            self._subs.setdefault(device, set()).add(sub)
        self._count += 1
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        subs = self._subs.get(sub.device)
        if subs is not None and sub in subs:
            subs.discard(sub)
            self._count -= 1
            if not subs:
                with self._lock:
                    del self._subs[sub.device]

    def close_all(self) -> None:
        for subs in self._subs.values():
            for sub in subs:
                self._end(sub)

    @staticmethod
    def _end(sub: Subscription) -> None:
        while not sub.queue.empty():
            sub.queue.get_nowait()
        sub.queue.put_nowait(None)

    def _deliver(self, devices: Iterable[str], event: str, request_id: str, data: str) -> None:
        for device in devices:
            for sub in list(self._subs.get(device, ())):
                try:
                    sub.queue.put_nowait((event, request_id, data))
                except asyncio.QueueFull:
                    self._end(sub)

    # callable from any thread (the handlers run in the thread pool)
    def publish(self, devices: Iterable[str], event: str, request_id: str, data: str) -> None:
        """To the devices' streams here and, on PostgreSQL, on the other instances."""
        devices = list(devices)
        self._publish_here(devices, event, request_id, data)
        if self.bus is not None:
            self.bus.send(devices, event, request_id)

    def _publish_here(self, devices: Iterable[str], event: str, request_id: str, data: str) -> None:
        if self._loop is None:
            return
        try:
            self._loop.call_soon_threadsafe(self._deliver, list(devices), event, request_id, data)
        except RuntimeError:  # the loop closed (the server is stopping): no stream is left to tell
            pass


def _event(name: str, data: str) -> bytes:
    return f"event: {name}\ndata: {data}\n\n".encode()


async def stream(
    hub: PushHub, device: str, pending: Callable[[str, float], list[tuple[str, str]]]
) -> AsyncIterator[bytes]:
    """The event stream of one device (admitted by the caller); `pending(device, now)` gives the (id,
    document) of its pending requests (read in the thread pool)."""
    sub = hub.subscribe(device)  # before reading what is pending, so nothing made meanwhile is missed
    keepalive = _seconds("VSC_SERVER_PUSH_KEEPALIVE", request_wire.PUSH_KEEPALIVE)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + _seconds("VSC_SERVER_PUSH_MAX_STREAM", request_wire.PUSH_MAX_STREAM)
    try:
        sent: set[str] = set()
        for request_id, document in await run_in_threadpool(pending, device, time.time()):
            sent.add(request_id)
            yield _event("request", document)
        while (remaining := deadline - loop.time()) > 0:
            try:
                item = await asyncio.wait_for(sub.queue.get(), min(keepalive, remaining))
            except TimeoutError:
                if deadline - loop.time() > 0:
                    yield b": keep-alive\n\n"
                continue
            if item is None:
                break
            event, request_id, data = item
            if event == "request":
                if request_id in sent:
                    continue
                sent.add(request_id)
            yield _event(event, data)
    finally:
        hub.unsubscribe(sub)
