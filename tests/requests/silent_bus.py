"""A D-Bus "bus" that never answers, for the fingerprint look-up's time limits: a real Unix socket listening in
a temporary folder that accepts every connection and then says nothing (`answer_auth=False`), or that goes
through the SASL authentication as a bus does and then never answers the Hello."""

from __future__ import annotations

import socket
import threading
from pathlib import Path
from types import TracebackType


class SilentBus:
    def __init__(self, folder: Path, answer_auth: bool) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / "bus"
        self.address = f"unix:path={self.path}"
        self.answer_auth = answer_auth
        self.connections: list[socket.socket] = []
        self.said_hello = threading.Event()  # a client sent bytes after BEGIN (its Hello)
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(str(self.path))
        self._listener.listen(16)
        self._listener.settimeout(0.2)
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:  # closed
                return
            conn.settimeout(None)
            self.connections.append(conn)
            if self.answer_auth:
                threading.Thread(target=self._authenticate, args=(conn,), daemon=True).start()

    def _authenticate(self, conn: socket.socket) -> None:
        """Answer AUTH with OK as a bus does, then read and never answer what follows BEGIN."""
        seen = b""
        try:
            while b"\r\n" not in seen.partition(b"AUTH")[2]:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                seen += chunk
            conn.sendall(b"OK 0123456789abcdef0123456789abcdef\r\n")
            while True:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                seen += chunk
                if seen.partition(b"BEGIN\r\n")[2]:
                    self.said_hello.set()
        except OSError:
            return

    def close(self) -> None:
        self._closed.set()
        self._thread.join(5)
        self._listener.close()
        for conn in self.connections:
            conn.close()

    def __enter__(self) -> SilentBus:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()
