"""vsmartcard's virtual reader protocol, card side: vpcd (the reader driver inside pcscd) listens on TCP and the
card connects. Every message is a 2-byte big-endian length and its bytes; a 1-byte message is a control
message from the reader (00 power off, 01 power on, 02 reset, 04 asks for the ATR, answered with it), any
longer one a command APDU, answered with the response APDU."""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable

from vsc_provider.piv.processor import PivCard

log = logging.getLogger(__name__)

POWER_OFF = 0x00
POWER_ON = 0x01
RESET = 0x02
GET_ATR = 0x04


def make_atr(historical: bytes = b"vsc-PIV") -> bytes:
    """An ATR offering T=1: TS, T0 (TD1 follows, with the historical bytes' count), TD1 (TD2 follows),
    TD2 (T=1), the historical bytes, and TCK (the XOR of T0 to the last byte, due when T=1 is offered)."""
    body = bytes([0x80 | len(historical), 0x80, 0x01]) + historical
    tck = 0
    for b in body:
        tck ^= b
    return b"\x3b" + body + bytes([tck])


ATR = make_atr()


POLL = 0.5  # seconds between looks at the stop flag while the reader is quiet


class ReaderGone(Exception):
    """The reader closed the connection (pcscd stopped or restarted)."""


class Stopped(Exception):
    """Asked to stop (the stop event was set)."""


def _read_exact(sock: socket.socket, n: int, stop: threading.Event) -> bytes:
    chunks = b""
    while len(chunks) < n:
        if stop.is_set():
            raise Stopped
        _quick_ack(sock)
        try:
            got = sock.recv(n - len(chunks))
        except TimeoutError:
            continue
        if not got:
            raise ReaderGone("the reader closed the connection")
        chunks += got
    return chunks


def _quick_ack(sock: socket.socket) -> None:
    """vpcd writes a message's length and its bytes in two writes: with Nagle's algorithm on its side, the
    second waits for our ACK of the first, which Linux delays by up to 40 ms. Acknowledge at once (Linux
    turns quick ACKs off again by itself, so this is set before every read)."""
    quickack = getattr(socket, "TCP_QUICKACK", None)
    if quickack is not None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, quickack, 1)
        except OSError:
            pass


def _send(sock: socket.socket, payload: bytes) -> None:
    sock.sendall(len(payload).to_bytes(2, "big") + payload)


def answer(card: PivCard, message: bytes, atr: bytes = ATR) -> bytes | None:
    """What the card says to one message (None: nothing, as for power and reset)."""
    if len(message) == 1:
        if message[0] in (POWER_OFF, POWER_ON, RESET):
            card.reset()
            return None
        if message[0] == GET_ATR:
            return atr
        log.info("unknown vpcd control message %02x", message[0])
        return None
    return card.process(message)


def run_connection(card: PivCard, sock: socket.socket, stop: threading.Event, atr: bytes = ATR) -> None:
    """Answer the reader until it goes or `stop` is set."""
    while True:
        size = int.from_bytes(_read_exact(sock, 2, stop), "big")
        reply = answer(card, _read_exact(sock, size, stop), atr)
        if reply is not None:
            _send(sock, reply)


def serve(
    card: PivCard,
    host: str,
    port: int,
    stop: threading.Event,
    on_connect: Callable[[], None] | None = None,
    retry: float = 0.5,
) -> None:
    """Connect to vpcd and answer it; when the reader goes (pcscd restarts) or is not there yet, connect
    again every `retry` seconds. Returns when `stop` is set (a signal handler sets it), the card reset."""
    waiting_logged = False
    while not stop.is_set():
        try:
            sock = socket.create_connection((host, port), timeout=5)
        except OSError as exc:
            if not waiting_logged:
                log.warning("no virtual reader at %s:%d yet (%s): retrying", host, port, exc.strerror or exc)
                waiting_logged = True
            stop.wait(retry)
            continue
        waiting_logged = False
        sock.settimeout(POLL)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if on_connect is not None:
            on_connect()
        try:
            run_connection(card, sock, stop)
        except Stopped:
            break
        except (ReaderGone, OSError) as exc:
            log.warning("the virtual reader went (%s): reconnecting", exc)
            card.reset()
        finally:
            sock.close()
        stop.wait(retry)
    card.reset()
