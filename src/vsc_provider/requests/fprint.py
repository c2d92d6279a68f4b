"""fprintd over D-Bus (net.reactivated.Fprint on the system bus, or wherever DBUS_SYSTEM_BUS_ADDRESS points):
is a finger of this user enrolled, and does the finger on the reader now match it.

jeepney speaks D-Bus: pure Python, no native part and no event loop of its own, so the CLI and the approval
page's worker threads call it as plain blocking code. Every call has a timeout, the connection to the bus and
its Hello included; anything that keeps fprintd from answering (no bus, a bus that does not answer, no fprintd,
no reader, no enrolled finger) is `Unavailable`, and the caller asks for the PIN instead.
"""

from __future__ import annotations

import time
from typing import Any

from jeepney import DBusAddress, DBusErrorResponse, MatchRule, Message, message_bus, new_method_call
from jeepney.bus import get_bus
from jeepney.io.blocking import DBusConnection, prep_socket
from jeepney.wrappers import unwrap_msg

from vsc_provider import log as vlog
from vsc_provider.requests.model import FingerprintUnavailable

log = vlog.get("vsc.requests")

BUS_NAME = "net.reactivated.Fprint"
MANAGER = DBusAddress("/net/reactivated/Fprint/Manager", BUS_NAME, "net.reactivated.Fprint.Manager")
DEVICE_INTERFACE = "net.reactivated.Fprint.Device"
CALL_TIMEOUT_S = 10.0  # fprintd may be started by D-Bus activation on the first call
CONNECT_TIMEOUT_S = 3.0  # the bus's connection and authentication, then its answer to Hello: each at most this
SCAN_TIMEOUT_S = 30.0  # how long the user has to put a finger on the reader
# VerifyStatus results after which the reader waits for the finger again
RETRY_RESULTS = (
    "verify-retry-scan",
    "verify-swipe-too-short",
    "verify-finger-not-centered",
    "verify-remove-and-retry",
)


class Unavailable(FingerprintUnavailable):
    """fprintd cannot verify a finger here (the reason is one line for the user)."""


def _call(conn: DBusConnection, address: DBusAddress, method: str, signature: str | None = None, *body: Any) -> Any:
    reply = conn.send_and_get_reply(new_method_call(address, method, signature, body), timeout=CALL_TIMEOUT_S)
    return unwrap_msg(reply)


class _BoundedConnection(DBusConnection):
    """jeepney's blocking connection, every call with a time limit: its constructor says Hello to the bus with
    none, and a bus that authenticates and then never answers would hold the caller (the agent) for good."""

    def send_and_get_reply(self, message: Message, *, timeout: float | None = None) -> Message:
        return super().send_and_get_reply(message, timeout=CONNECT_TIMEOUT_S if timeout is None else timeout)


def _connect() -> DBusConnection:
    """The system bus, within CONNECT_TIMEOUT_S for the connection and authentication (a socket timeout, in
    jeepney's prep_socket) and as much again for the Hello."""
    try:
        address = get_bus("SYSTEM")
    except (OSError, ValueError, KeyError) as exc:
        raise Unavailable(f"no system D-Bus: {exc}") from None
    try:
        sock = prep_socket(address, timeout=CONNECT_TIMEOUT_S)
    except TimeoutError:
        raise _no_answer(address, "the connection") from None
    except (OSError, ValueError, KeyError) as exc:
        raise Unavailable(f"no system D-Bus: {exc}") from None
    try:
        return _BoundedConnection(sock)
    except TimeoutError:
        sock.close()
        raise _no_answer(address, "Hello") from None
    except (OSError, ValueError, KeyError, DBusErrorResponse) as exc:
        sock.close()
        raise Unavailable(f"the system D-Bus refused the connection: {exc}") from None


def _no_answer(address: str, step: str) -> Unavailable:
    # The agent logs this (its log shows vsc.requests at INFO); the CLI prints the Unavailable reason instead.
    log.info(
        "fingerprint not available: the system D-Bus at %s did not answer %s within %.0f s; the PIN is asked",
        address,
        step,
        CONNECT_TIMEOUT_S,
    )
    return Unavailable("the system D-Bus does not answer")


def _error_name(exc: DBusErrorResponse) -> str:
    return str(exc.name).rsplit(".", 1)[-1]


def _device(conn: DBusConnection) -> DBusAddress:
    try:
        (path,) = _call(conn, MANAGER, "GetDefaultDevice")
    except DBusErrorResponse as exc:
        raise Unavailable(f"fprintd: {_error_name(exc)}") from None
    return DBusAddress(path, BUS_NAME, DEVICE_INTERFACE)


def enrolled_fingers() -> list[str]:
    """The fingers fprintd has enrolled for this user on its default reader; Unavailable without fprintd or a
    reader, an empty list when none is enrolled."""
    with _connect() as conn:
        try:
            device = _device(conn)
            (fingers,) = _call(conn, device, "ListEnrolledFingers", "s", "")
        except DBusErrorResponse as exc:
            if _error_name(exc) == "NoEnrolledPrints":
                return []
            raise Unavailable(f"fprintd: {_error_name(exc)}") from None
        except TimeoutError:
            raise Unavailable("fprintd does not answer") from None
        except OSError as exc:
            raise Unavailable(f"the connection to fprintd broke: {exc}") from None
    return [str(f) for f in fingers]


def ready() -> bool:
    """Whether a finger of this user can be verified here."""
    try:
        return bool(enrolled_fingers())
    except Unavailable:
        return False


def _status(conn: DBusConnection, queue: Any, deadline: float) -> tuple[str, bool]:
    left = deadline - time.monotonic()
    if left <= 0:
        raise Unavailable("no finger was put on the reader in time")
    try:
        msg = conn.recv_until_filtered(queue, timeout=left)
    except TimeoutError:
        raise Unavailable("no finger was put on the reader in time") from None
    result, done = msg.body
    return str(result), bool(done)


def verify(timeout: float = SCAN_TIMEOUT_S) -> bool:
    """Ask fprintd to verify any enrolled finger of this user: True on verify-match, False on verify-no-match;
    Unavailable when it cannot tell (no reader, no finger in time, the reader failed)."""
    with _connect() as conn:
        try:
            return _verify(conn, timeout)
        except DBusErrorResponse as exc:
            raise Unavailable(f"fprintd: {_error_name(exc)}") from None
        except TimeoutError:
            raise Unavailable("fprintd does not answer") from None
        except OSError as exc:
            raise Unavailable(f"the connection to fprintd broke: {exc}") from None


def _verify(conn: DBusConnection, timeout: float) -> bool:
    device = _device(conn)
    rule = MatchRule(type="signal", interface=DEVICE_INTERFACE, member="VerifyStatus", path=device.object_path)
    _call(conn, message_bus, "AddMatch", "s", rule.serialise())
    _call(conn, device, "Claim", "s", "")
    try:
        with conn.filter(rule, bufsize=16) as queue:
            _call(conn, device, "VerifyStart", "s", "any")
            try:
                deadline = time.monotonic() + timeout
                while True:
                    result, done = _status(conn, queue, deadline)
                    if result == "verify-match":
                        return True
                    if result == "verify-no-match":
                        return False
                    if done or result not in RETRY_RESULTS:
                        raise Unavailable(f"the fingerprint reader failed: {result}")
            finally:
                _quietly(conn, device, "VerifyStop")
    finally:
        _quietly(conn, device, "Release")


def _quietly(conn: DBusConnection, device: DBusAddress, method: str) -> None:
    try:
        _call(conn, device, method)
    except (DBusErrorResponse, TimeoutError, OSError):
        pass
