"""Push events between server instances on one PostgreSQL database, by LISTEN/NOTIFY.

A request made (or decided) on one instance must reach the devices whose push streams are open on another.
The instance that publishes delivers to its own streams directly and sends a NOTIFY on `vsc_push` naming the
event, the request and the devices (never the document: a NOTIFY carries at most 8000 bytes). Every other
instance's listener thread reads the document for the devices it has streams for and hands the event to its
hub. After the listener loses its connection it ends the local streams: their devices reconnect and are sent
every pending request again, so nothing missed meanwhile is lost.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
from collections.abc import Callable, Iterable
from typing import Any

log = logging.getLogger("vsc.server.push")

CHANNEL = "vsc_push"
DEVICES_PER_NOTIFY = 100  # device ids (43 characters) per notification, well under the 8000-byte payload limit


class PgPushBus:
    """Sends this instance's push events to the others, and hands theirs to `deliver`."""

    def __init__(self, url: str, notify: Callable[[str, str], None], document: Callable[[str, str], str | None]):
        self.url = url
        self.origin = secrets.token_hex(8)
        self._notify = notify
        self._document = document  # (request id, device) -> the signed document that device is sent
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._deliver: Callable[[list[str], str, str, str], None] | None = None
        self._local: Callable[[], set[str]] = set
        self._reset: Callable[[], None] = lambda: None
        self.listening = threading.Event()  # set while LISTEN is in effect

    def send(self, devices: Iterable[str], event: str, request_id: str) -> None:
        ids = list(devices)
        for i in range(0, len(ids), DEVICES_PER_NOTIFY):
            payload = {"o": self.origin, "e": event, "r": request_id, "d": ids[i : i + DEVICES_PER_NOTIFY]}
            try:
                self._notify(CHANNEL, json.dumps(payload))
            except Exception:  # the event still reached this instance's streams; the others' devices poll
                log.exception("could not notify the other instances of %s %s", event, request_id)

    def start(
        self,
        deliver: Callable[[list[str], str, str, str], None],
        local: Callable[[], set[str]],
        reset: Callable[[], None],
    ) -> None:
        """Listen in a thread: `deliver(devices, event, request id, data)` for events of other instances to
        devices in `local()`, `reset()` after a lost connection."""
        self._deliver, self._local, self._reset = deliver, local, reset
        self._stop.clear()
        self._thread = threading.Thread(target=self._listen, name="vsc-push-listen", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def _listen(self) -> None:
        import psycopg

        first = True
        while not self._stop.is_set():
            try:
                with psycopg.connect(self.url, autocommit=True, connect_timeout=10) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self.listening.set()
                    if not first:
                        self._reset()
                    first = False
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=1.0):
                            self._handle(note.payload)
            except psycopg.Error as exc:
                self.listening.clear()
                log.warning("push listener lost its database connection (%s): reconnecting", type(exc).__name__)
                self._stop.wait(1.0)
        self.listening.clear()

    def _handle(self, payload: str) -> None:
        try:
            note: dict[str, Any] = json.loads(payload)
            if note.get("o") == self.origin:
                return
            event, request_id = str(note["e"]), str(note["r"])
            here = self._local()
            devices = [str(d) for d in note["d"] if d in here]
        except (ValueError, KeyError, TypeError):
            log.warning("ignored a malformed push notification")
            return
        if not devices or self._deliver is None:
            return
        try:
            if event == "request":
                for device in devices:
                    document = self._document(request_id, device)
                    if document is not None:
                        self._deliver([device], event, request_id, document)
            else:
                self._deliver(devices, event, request_id, request_id)
        except Exception:
            log.exception("could not pass on push event %s %s", event, request_id)
