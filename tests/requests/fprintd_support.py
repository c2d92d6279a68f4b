"""A private fprintd for tests: Debian's fprintd and libfprint, with libfprint's virtual_device driver (a
reader driven through a Unix socket: `SCAN <id>` puts the finger `<id>` on it), on a private D-Bus bus that
the tests point DBUS_SYSTEM_BUS_ADDRESS at. fprintd asks polkit before every claim and enrolment; polkit
cannot serve a private bus for a user without a login session, so python-dbusmock's polkitd template (Debian's
python3-dbusmock, run by the system Python) answers it and allows every action. Nothing else is a stand-in.
"""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from jeepney import DBusAddress, MatchRule, message_bus, new_method_call
from jeepney.io.blocking import DBusConnection, open_dbus_connection
from jeepney.wrappers import unwrap_msg

from tests.conftest import require_file, require_tool
from tests.process_end import stop_process

FPRINTD = "/usr/libexec/fprintd"
SYSTEM_PYTHON = "/usr/bin/python3"
DBUSMOCK = "/usr/lib/python3/dist-packages/dbusmock/templates/polkitd.py"
BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"""
DEVICE_INTERFACE = "net.reactivated.Fprint.Device"
MANAGER = DBusAddress("/net/reactivated/Fprint/Manager", "net.reactivated.Fprint", "net.reactivated.Fprint.Manager")


def _wait(what: str, check: object, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _call(
    conn: DBusConnection, address: DBusAddress, method: str, signature: str | None = None, *body: object
) -> tuple:
    return tuple(unwrap_msg(conn.send_and_get_reply(new_method_call(address, method, signature, body), timeout=10)))


class Fprintd:
    """The private bus, polkit's stand-in and fprintd, started in `folder`; stop() ends them."""

    def __init__(self, folder: Path, with_fprintd: bool = True) -> None:
        """The bus and, unless with_fprintd is false, polkit's stand-in and fprintd on it."""
        require_tool("dbus-daemon", "dbus-daemon")
        require_file(FPRINTD, "fprintd libfprint-2-2")
        require_file(DBUSMOCK, "python3-dbusmock")
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.reader = str(folder / "reader")
        bus_socket = folder / "bus"
        (folder / "bus.conf").write_text(BUS_CONFIG.format(socket=bus_socket))
        self.address = f"unix:path={bus_socket}"
        self.env = {**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": self.address, "DBUS_SESSION_BUS_ADDRESS": ""}
        self.procs: list[subprocess.Popen[bytes]] = []
        self.log = folder / "fprintd.log"
        self._start(["dbus-daemon", "--nofork", f"--config-file={folder / 'bus.conf'}"], "bus.log")
        try:
            _wait("the private D-Bus bus", self._bus_answers)  # the socket file comes before listen()
            if with_fprintd:
                self._start_fprintd()
        except BaseException:
            self.stop()
            raise

    def _start_fprintd(self) -> None:
        folder = self.folder
        self._start([SYSTEM_PYTHON, "-m", "dbusmock", "--system", "--template", "polkitd"], "polkit.log")
        with self.connect() as conn:
            _wait("polkit's stand-in", lambda: self._has_name(conn, "org.freedesktop.PolicyKit1"))
            polkit = DBusAddress(
                "/org/freedesktop/PolicyKit1/Authority", "org.freedesktop.PolicyKit1", "org.freedesktop.DBus.Mock"
            )
            _call(conn, polkit, "AllowUnknown", "b", True)
        state, run = folder / "state", folder / "run"
        state.mkdir(exist_ok=True)
        run.mkdir(exist_ok=True)
        fprintd_env = {
            "FP_VIRTUAL_DEVICE": self.reader,
            "FP_DRIVERS_ALLOWLIST": "virtual_device",  # never a real reader of this machine
            "STATE_DIRECTORY": str(state),
            "RUNTIME_DIRECTORY": str(run),
            "G_MESSAGES_DEBUG": "all",
        }
        self._start([FPRINTD, "--no-timeout"], "fprintd.log", fprintd_env)
        with self.connect() as conn:
            _wait("fprintd on the private bus", lambda: self._has_name(conn, "net.reactivated.Fprint"))
            (self.device_path,) = _call(conn, MANAGER, "GetDefaultDevice")
        self.device = DBusAddress(self.device_path, "net.reactivated.Fprint", DEVICE_INTERFACE)

    def _start(self, argv: list[str], log: str, extra: dict[str, str] | None = None) -> None:
        with open(self.folder / log, "wb") as out:
            self.procs.append(
                subprocess.Popen(
                    argv,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    env={**self.env, **(extra or {})},
                )
            )

    @staticmethod
    def _has_name(conn: DBusConnection, name: str) -> bool:
        (has,) = _call(conn, message_bus, "NameHasOwner", "s", name)
        return bool(has)

    def connect(self) -> DBusConnection:
        return open_dbus_connection(bus=self.address)

    def _bus_answers(self) -> bool:
        try:
            self.connect().close()
        except OSError:
            return False
        return True

    def stop(self) -> None:
        for proc in reversed(self.procs):
            stop_process(proc)

    # --- the virtual reader ------------------------------------------------------------------------------

    def command(self, text: str) -> None:
        """One command to libfprint's virtual_device (it listens while fprintd has the reader open)."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(5)
            sock.connect(self.reader)
            sock.sendall(text.encode())

    def enroll(self, finger: str, print_id: str) -> None:
        """Enrol `finger` of this user as fprintd does for fprintd-enroll: Claim, EnrollStart, the reader's
        stages scanned with the same print, until enroll-completed."""
        with self.connect() as conn:
            rule = MatchRule(type="signal", interface=DEVICE_INTERFACE, member="EnrollStatus", path=self.device_path)
            _call(conn, message_bus, "AddMatch", "s", rule.serialise())
            _call(conn, self.device, "Claim", "s", "")
            try:
                with conn.filter(rule, bufsize=32) as queue:
                    _call(conn, self.device, "EnrollStart", "s", finger)
                    deadline = time.monotonic() + 20
                    while True:
                        self.command(f"SCAN {print_id}")
                        result, done = conn.recv_until_filtered(queue, timeout=deadline - time.monotonic()).body
                        if done:
                            assert result == "enroll-completed", result
                            break
                        assert result == "enroll-stage-passed", result
                    _call(conn, self.device, "EnrollStop")
            finally:
                _call(conn, self.device, "Release")

    @contextmanager
    def finger_on_reader(self, print_id: str, times: int = 1) -> Iterator[None]:
        """While inside: each time a program starts a verification (fprintd's VerifyFingerSelected signal),
        the finger `print_id` is put on the reader, as a user does when asked; `times` verifications at most."""
        conn = self.connect()
        rule = MatchRule(
            type="signal", interface=DEVICE_INTERFACE, member="VerifyFingerSelected", path=self.device_path
        )
        _call(conn, message_bus, "AddMatch", "s", rule.serialise())
        stop = threading.Event()
        seen = []

        def feed() -> None:
            with conn.filter(rule, bufsize=8) as queue:
                ready.set()
                while not stop.is_set() and len(seen) < times:
                    try:
                        conn.recv_until_filtered(queue, timeout=0.2)
                    except TimeoutError:
                        continue
                    seen.append(print_id)
                    self.command(f"SCAN {print_id}")

        ready = threading.Event()
        thread = threading.Thread(target=feed, daemon=True)
        thread.start()
        ready.wait(5)
        try:
            yield
        finally:
            stop.set()
            thread.join(5)
            conn.close()
