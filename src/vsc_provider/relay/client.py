"""The relay's two clients: the identity server posts a notification, a device listens on its topic.

Plain httpx with the system's trust store (httpx honours SSL_CERT_FILE): a relay is a public service with a
public certificate; what it carries is end-to-end encrypted, so it need not be trusted beyond delivering.
"""

from __future__ import annotations

import contextlib
import functools
import os
import socket
import ssl
import threading
from collections.abc import Iterable, Iterator
from urllib.parse import quote

import httpx

from vsc_provider.relay import wire

STOP_POLL = 0.2  # seconds: how soon a set stop event ends a quiet stream


class RelayError(Exception):
    """The relay refused (status and error code from its JSON answer) or could not be reached (status None)."""

    def __init__(self, message: str, status: int | None = None, error: str | None = None) -> None:
        super().__init__(message)
        self.status, self.error = status, error


def _tls() -> ssl.SSLContext:
    """The trust store, loaded once per SSL_CERT_FILE / SSL_CERT_DIR setting: loading it takes tens of
    milliseconds, more than a whole post on loopback."""
    return _tls_for(os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))


@functools.lru_cache(maxsize=4)
def _tls_for(_cert_file: str | None, _cert_dir: str | None) -> ssl.SSLContext:
    return httpx.create_ssl_context()  # reads the two variables itself


def topic_url(url: str, topic: str) -> str:
    return f"{url.rstrip('/')}/v1/topics/{quote(topic, safe='')}"


def _refusal(response: httpx.Response) -> RelayError:
    try:
        answer = response.json()
        error, detail = str(answer["error"]), str(answer["detail"])
    except (ValueError, KeyError, TypeError):
        error, detail = "http", response.reason_phrase
    return RelayError(f"the push relay refused: {detail} ({response.status_code} {error})", response.status_code, error)


def post_notification(url: str, topic: str, jwe: str, token: str | None = None, timeout: float = 5.0) -> int:
    """POST JWE to TOPIC on the relay at URL; the number of listeners it reached (0: nobody listened, dropped)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with httpx.Client(timeout=timeout, verify=_tls()) as client:
            response = client.post(topic_url(url, topic), json={"notification": jwe}, headers=headers)
    except httpx.HTTPError as exc:
        raise RelayError(f"the push relay at {url} cannot be reached: {exc}") from None
    if response.status_code != 202:
        raise _refusal(response)
    try:
        return int(response.json()["delivered"])
    except (ValueError, KeyError, TypeError):
        raise RelayError(f"the push relay at {url} answered something else than a delivery count") from None


def listen(url: str, topic: str, stop: threading.Event | None = None) -> Iterator[str]:
    """The notifications (compact JWE strings) posted to TOPIC while connected, as they come.

    Returns when the relay ends the stream (after its lifetime, ten minutes) or soon after STOP is set, even on
    a quiet stream; the caller reconnects. Raises RelayError when the relay refuses (a full topic: 429, a full
    relay: 503) or cannot be reached, or the connection breaks.
    """
    stop = stop or threading.Event()
    if stop.is_set():
        return
    # a relay writes at least every KEEPALIVE_SECONDS: three missed keep-alives mean it is gone
    timeout = httpx.Timeout(5.0, read=3 * wire.KEEPALIVE_SECONDS)
    try:
        with (
            httpx.Client(timeout=timeout, verify=_tls()) as client,
            client.stream("GET", topic_url(url, topic), headers={"Accept": "text/event-stream"}) as response,
        ):
            if response.status_code != 200:
                response.read()
                raise _refusal(response)
            if not response.headers.get("content-type", "").startswith("text/event-stream"):
                raise RelayError(f"{url} answered something else than an event stream: is it a push relay?")
            guard = _StopGuard(stop, response)
            try:
                for name, data in sse_events(response.iter_lines()):
                    if stop.is_set():
                        return
                    if name == wire.EVENT:
                        yield data
            finally:
                guard.finish()
    except httpx.HTTPError as exc:
        if stop.is_set():
            return  # the guard cut the connection
        raise RelayError(f"the push relay at {url}: {exc.__class__.__name__}: {exc}") from None


def sse_events(lines: Iterable[str]) -> Iterator[tuple[str, str]]:
    """Server-sent events as (event name, data); comments and fields other than event and data are skipped."""
    name = "message"
    data: list[str] = []
    for line in lines:
        if not line:
            if data:
                yield name, "\n".join(data)
            name, data = "message", []
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "event":
            name = value
        elif field == "data":
            data.append(value)


class _StopGuard:
    """Ends a blocked read when STOP is set: shuts the stream's socket down from a small watcher thread (a
    keep-alive may be 15 s away, and httpx offers no other way to interrupt a read)."""

    def __init__(self, stop: threading.Event, response: httpx.Response) -> None:
        self._stop, self._done = stop, threading.Event()
        stream = response.extensions.get("network_stream")
        self._socket = stream.get_extra_info("socket") if stream is not None else None
        self._thread = threading.Thread(target=self._watch, name="vsc-relay-stop", daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._done.is_set():
            if self._stop.wait(STOP_POLL):
                if self._socket is not None and not self._done.is_set():
                    with contextlib.suppress(OSError):
                        # the plain socket's shutdown, also under TLS: it wakes the reader with an end of file
                        socket.socket.shutdown(self._socket, socket.SHUT_RDWR)
                return

    def finish(self) -> None:
        self._done.set()
