"""A minimal Marionette client (Firefox's remote protocol): length-prefixed JSON over TCP on 127.0.0.1.

Only what the Firefox test needs: a session, chrome/content context, privileged script, navigation, page
source and a screenshot.
"""

from __future__ import annotations

import json
import socket
import time
from typing import Any


class MarionetteError(Exception):
    pass


class Marionette:
    def __init__(self, port: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        self.sock.settimeout(timeout)
        self._buffer = b""
        self._id = 0
        self.hello = self._receive()

    def _receive(self) -> Any:
        while b":" not in self._buffer:
            self._read_more()
        length, _, rest = self._buffer.partition(b":")
        size = int(length)
        self._buffer = rest
        while len(self._buffer) < size:
            self._read_more()
        body, self._buffer = self._buffer[:size], self._buffer[size:]
        return json.loads(body)

    def _read_more(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise MarionetteError("Firefox closed the Marionette connection")
        self._buffer += chunk

    def command(self, name: str, params: dict[str, Any] | None = None) -> Any:
        self._id += 1
        body = json.dumps([0, self._id, name, params or {}]).encode()
        self.sock.sendall(str(len(body)).encode() + b":" + body)
        while True:
            message = self._receive()
            if message[0] == 1 and message[1] == self._id:
                if message[2]:
                    raise MarionetteError(f"{name}: {message[2]}")
                result = message[3]
                return result.get("value", result) if isinstance(result, dict) else result

    def new_session(self, page_load_ms: int = 60000) -> Any:
        return self.command(
            "WebDriver:NewSession",
            {"capabilities": {"alwaysMatch": {"acceptInsecureCerts": False, "timeouts": {"pageLoad": page_load_ms}}}},
        )

    def context(self, which: str) -> None:
        self.command("Marionette:SetContext", {"value": which})

    def script(self, source: str, args: list[Any] | None = None) -> Any:
        return self.command("WebDriver:ExecuteScript", {"script": source, "args": args or []})

    def navigate(self, url: str) -> None:
        self.command("WebDriver:Navigate", {"url": url})

    def page_source(self) -> str:
        return str(self.command("WebDriver:GetPageSource"))

    def screenshot_png(self) -> bytes:
        import base64

        return base64.b64decode(self.command("WebDriver:TakeScreenshot", {"full": True}))

    def close(self) -> None:
        try:
            self.command("Marionette:Quit", {"flags": ["eForceQuit"]})
        except (MarionetteError, OSError):
            pass
        self.sock.close()
