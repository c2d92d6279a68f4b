"""The relay's only state, all in memory: who listens on which topic, and each listener's short queue.

One event loop owns the hub (uvicorn runs one), so nothing here takes a lock.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    max_listeners: int = 10_000  # over the whole relay: 503 beyond
    max_per_topic: int = 8  # a device may hold a few connections, not hundreds: 429 beyond
    queue: int = 16  # notifications waiting for a slow listener; the oldest go first


class TopicFull(Exception):
    """The topic has as many listeners as a topic may have."""


class RelayFull(Exception):
    """The relay has as many listeners as it takes."""


class Listener:
    """One open event stream: notifications not yet written to it, and the wake-up for its writer."""

    def __init__(self, topic: str, queue: int) -> None:
        self.topic = topic
        self.pending: deque[str] = deque(maxlen=queue)
        self.dropped = 0
        self.wake = asyncio.Event()

    def offer(self, notification: str) -> None:
        if len(self.pending) == self.pending.maxlen:
            self.dropped += 1
        self.pending.append(notification)
        self.wake.set()

    def take(self) -> list[str]:
        items = list(self.pending)
        self.pending.clear()
        self.wake.clear()
        return items


class Hub:
    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self._topics: dict[str, set[Listener]] = {}
        self._count = 0

    @property
    def listeners(self) -> int:
        return self._count

    @property
    def topics(self) -> int:
        return len(self._topics)

    def open(self, topic: str) -> Listener:
        if self._count >= self.limits.max_listeners:
            raise RelayFull
        group = self._topics.get(topic, set())
        if len(group) >= self.limits.max_per_topic:
            raise TopicFull
        listener = Listener(topic, self.limits.queue)
        group.add(listener)
        self._topics[topic] = group
        self._count += 1
        return listener

    def close(self, listener: Listener) -> None:
        group = self._topics.get(listener.topic)
        if group is None or listener not in group:
            return
        group.discard(listener)
        self._count -= 1
        if not group:
            del self._topics[listener.topic]

    def publish(self, topic: str, notification: str) -> int:
        """Hand NOTIFICATION to every listener of TOPIC; the number of them (0: dropped, nobody listens)."""
        group = self._topics.get(topic, ())
        for listener in group:
            listener.offer(notification)
        return len(group)
