"""`vsc agent`: a user process (never the PKCS#11 module) that keeps one push connection per bound card,
holds the pending requests in memory, runs the implementer's policy hook on each new one, tells the user
(desktop notification or a log line) and serves the approval page.

A connection is the server's event stream (POST /v1/push), or a push relay's topic when the card's server
names one in its /v1/requests answer; after a failure it is tried again after 0.5 s, doubling to 30 s.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from vsc_provider import api, config
from vsc_provider import log as vlog
from vsc_provider.provisioning import client as provisioning
from vsc_provider.provisioning.http import ServerError
from vsc_provider.relay import client as relay_client
from vsc_provider.relay.client import sse_events
from vsc_provider.requests import client
from vsc_provider.requests.model import Decision, PendingRequest, Policy, RequestError
from vsc_provider.requests.verify import RefusedRequest
from vsc_provider.token.engine import Card, Engine

log = vlog.get("vsc.requests")

BACKOFF_START = 0.5
BACKOFF_MAX = 30.0
READ_TIMEOUT = 45.0  # the server sends a keep-alive every 15 s: three missed ones mean a dead connection
RESCAN = 5.0  # seconds between looks for newly bound cards
SHORT_STREAM = 1.0  # a stream the server ends sooner than this counts as a failure (no busy reconnecting)


class Backoff:
    """The wait before the next connection: 0.5 s after a failure, doubling up to 30 s; back to the start
    once a connection is up."""

    def __init__(self, start: float = BACKOFF_START, limit: float = BACKOFF_MAX) -> None:
        self.start, self.limit, self.delay = start, limit, start

    def failed(self) -> float:
        wait, self.delay = self.delay, min(self.delay * 2, self.limit)
        return wait

    def connected(self) -> None:
        self.delay = self.start


def load_policy() -> Policy:
    """The implementer's policy hook; without the hook module every request is left to the user."""
    try:
        module = importlib.import_module("vsc_provider.requests.policy")
    except ModuleNotFoundError as exc:
        if exc.name != "vsc_provider.requests.policy":
            raise
        return lambda request: Decision("ask")
    policy: Policy = module.load()
    return policy


def notify(request: PendingRequest) -> None:
    """A desktop notification where the session has a bus and notify-send, else a log line."""
    what = "sign in" if request.kind == "auth" else "sign"
    text = f"{request.rp or 'a relying party'} asks card {request.card_label!r} to {what}: request {request.id}"
    program = shutil.which("notify-send")
    if program and os.environ.get("DBUS_SESSION_BUS_ADDRESS"):
        try:
            subprocess.run(
                [program, "--app-name=vsc", "Request waiting", text],
                timeout=5,
                check=False,
                stdin=subprocess.DEVNULL,
                capture_output=True,
            )
            return
        except (OSError, subprocess.TimeoutExpired):
            pass
    log.warning("request waiting: %s (vsc requests show %s)", text, request.id)


class Agent:
    """The pending requests of every bound card, kept current by one connection per card; a RequestSource
    for the approval page."""

    def __init__(
        self,
        eng: Engine | None = None,
        policy: Policy | None = None,
        tell: Callable[[PendingRequest], None] = notify,
    ) -> None:
        self.eng = eng or api.engine()
        self.policy = policy or load_policy()
        self.tell = tell
        self.stop = threading.Event()
        self._lock = threading.Lock()
        self._requests: dict[str, PendingRequest] = {}
        self._streams: set[Any] = set()
        self._watched: dict[str, threading.Thread] = {}  # card serial -> its connection's thread

    # --- the RequestSource -------------------------------------------------------------------------

    def pending(self) -> list[PendingRequest]:
        now = time.time()
        with self._lock:
            for gone in [i for i, r in self._requests.items() if r.expires <= now]:
                del self._requests[gone]
            return sorted(self._requests.values(), key=lambda r: r.expires)

    def _take(self, request_id: str) -> tuple[Card, PendingRequest]:
        with self._lock:
            request = self._requests.get(request_id)
        if request is None:
            raise RequestError(f"no pending request {request_id}")
        try:
            return api.find_card(request.card), request
        except Exception:
            raise RequestError(f"card {request.card} is gone") from None

    def approve(self, request_id: str, pin: str) -> None:
        card, request = self._take(request_id)
        try:
            client.approve(self.eng, card, request, pin)
        except client.Gone:
            self.forget(request_id)
            raise
        self.forget(request_id)

    def fingerprint_ready(self, request: PendingRequest) -> bool:
        try:
            return client.fingerprint_ready(self.eng, api.find_card(request.card))
        except Exception:  # the card is gone: no fingerprint, and approving says so
            return False

    def approve_with_fingerprint(self, request_id: str) -> None:
        card, request = self._take(request_id)
        try:
            client.approve_with_fingerprint(self.eng, card, request)
        except client.Gone:
            self.forget(request_id)
            raise
        self.forget(request_id)

    def reject(self, request_id: str) -> None:
        card, request = self._take(request_id)
        try:
            client.reject(self.eng, card, request)
        finally:
            self.forget(request_id)

    # --- what the connections report ---------------------------------------------------------------

    def forget(self, request_id: str) -> None:
        with self._lock:
            self._requests.pop(request_id, None)

    def add(self, request: PendingRequest) -> None:
        """A verified request: kept, then the policy decides (reject and accept at once, ask tells the user)."""
        with self._lock:
            if request.id in self._requests:
                return
            self._requests[request.id] = request
        log.info("card %s: request %s from %s", request.card, request.id, request.rp)
        try:
            decision = self.policy(request)
        except Exception as exc:  # the implementer's code: its failure leaves the request to the user
            log.error("the policy hook failed on request %s: %s", request.id, exc)
            decision = Decision("ask")
        try:
            if decision.action == "reject":
                log.info("policy rejects request %s: %s", request.id, decision.reason)
                self.reject(request.id)
            elif decision.action == "accept" and decision.pin is not None:
                log.info("policy accepts request %s: %s", request.id, decision.reason)
                self.approve(request.id, decision.pin)
            else:
                self.tell(request)
        except RequestError as exc:
            log.error("request %s: %s", request.id, exc)

    def replace(self, card: Card, requests: list[PendingRequest]) -> None:
        """The card's pending requests as its server listed them: others of that card are gone."""
        listed = {r.id for r in requests}
        with self._lock:
            for gone in [i for i, r in self._requests.items() if r.card == card.serial and i not in listed]:
                del self._requests[gone]
        for request in requests:
            self.add(request)

    # --- connections ------------------------------------------------------------------------------

    def _current(self, serial: str) -> Card | None:
        """The card as the store has it now (its binding may have changed), None once it is unbound or gone."""
        return next((c for c in client.bound_cards(self.eng) if c.serial == serial), None)

    def watch(self, serial: str) -> None:
        """One card's connection, until the agent stops or the card goes: catch up with /v1/requests, listen."""
        backoff = Backoff()
        while not self.stop.is_set():
            started = time.monotonic()
            card = self._current(serial)
            if card is None:
                log.info("card %s is no longer bound: not watched any more", serial)
                with self._lock:
                    self._watched.pop(serial, None)
                return
            try:
                fetched = client.fetch(self.eng, card)
                self.replace(card, fetched.requests)
                if fetched.relay is not None:
                    self._listen_relay(card, fetched.relay, backoff)
                else:
                    self._listen_push(card, backoff)
                if time.monotonic() - started >= SHORT_STREAM:
                    backoff.connected()
                    continue
                problem = "the stream ended at once"
            except provisioning.CardWiped as exc:
                log.warning("%s", exc)
                with self._lock:
                    self._watched.pop(serial, None)
                return
            except Exception as exc:  # a malformed answer as much as a lost connection: the card's thread goes on
                problem = str(exc) or type(exc).__name__
            if self.stop.is_set():
                return
            wait = backoff.failed()
            log.warning("card %s: push connection failed (%s); again in %.1f s", card.serial, problem, wait)
            self.stop.wait(wait)

    @contextlib.contextmanager
    def _tracked(self, closable: Any) -> Iterator[None]:
        with self._lock:
            self._streams.add(closable)
        try:
            yield
        finally:
            with self._lock:
                self._streams.discard(closable)

    def _listen_push(self, card: Card, backoff: Backoff) -> None:
        binding = provisioning.active_binding(card)
        with provisioning.pinned_client(binding) as server, self._tracked(server):
            body = provisioning.signed_body(binding, card.serial, server, "/v1/push", {}, self.eng)
            with server.stream("POST", "/v1/push", body, READ_TIMEOUT) as response:
                backoff.connected()
                for event, data in sse_events(response.iter_lines()):
                    if self.stop.is_set():
                        return
                    self._on_push(card, event, data)

    def _on_push(self, card: Card, event: str, data: str) -> None:
        if event == "request":
            try:
                self.add(client.verify(self.eng, card, data))
            except RefusedRequest as exc:
                log.warning("card %s: a pushed request was refused: %s", card.serial, exc)
        elif event == "gone":
            gone = data.strip()
            self.forget(gone)
            log.info("card %s: request %s is gone (answered elsewhere, cancelled or expired)", card.serial, gone)

    def _listen_relay(self, card: Card, relay: dict[str, Any], backoff: Backoff) -> None:
        for _ in relay_client.listen(str(relay["url"]), str(relay["topic"]), self.stop):
            backoff.connected()  # opaque: a notification only says that the server has something
            self.replace(card, client.fetch(self.eng, card).requests)

    def start(self) -> None:
        """A connection for every bound card not watched yet (cards activated since are picked up)."""
        if "vsc_provider._pkcs11" in sys.modules:  # hosts forbid module threads (NSS: CANT_CREATE_OS_THREADS)
            raise RuntimeError("the agent runs as a process of its own, never inside the PKCS#11 module")
        for card in client.bound_cards(self.eng):
            with self._lock:
                if card.serial in self._watched:
                    continue
                thread = threading.Thread(target=self.watch, args=(card.serial,), name=f"push-{card.serial}")
                thread.daemon = True
                self._watched[card.serial] = thread
            thread.start()

    @property
    def watched(self) -> int:
        with self._lock:
            return len(self._watched)

    def close(self, wait: float = 5.0) -> None:
        self.stop.set()
        with self._lock:
            streams = list(self._streams)
        for stream in streams:
            with contextlib.suppress(Exception):
                stream.close()
        deadline = time.monotonic() + wait
        with self._lock:
            threads = list(self._watched.values())
        for thread in threads:
            thread.join(max(deadline - time.monotonic(), 0))


def agent_file() -> Path:
    return config.home() / "agent.json"


def write_agent_file(url: str | None) -> Path:
    """$VSC_HOME/agent.json (0600): this agent's pid and its approval page's URL (which holds its token)."""
    path = agent_file()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump({"pid": os.getpid(), "url": url}, out)
    os.replace(tmp, path)
    return path


def _nothing() -> None:
    return None


def _start_page(source: Agent) -> tuple[str | None, Callable[[], None]]:
    from vsc_provider.requests import page_server  # uvicorn and the page's templates: only when served

    return page_server.serve(source)


def run_once(agent: Agent) -> list[PendingRequest]:
    """Fetch every bound card's requests once and act on them (policy, notification), then return."""
    for card in client.bound_cards(agent.eng):
        try:
            agent.replace(card, client.fetch(agent.eng, card).requests)
        except (ServerError, provisioning.CardWiped) as exc:
            log.warning("card %s: cannot fetch its requests: %s", card.serial, exc)
    return agent.pending()


def run(page: bool = True, once: bool = False) -> None:
    """The agent until SIGTERM or SIGINT (with once: one round of fetches)."""
    import logging

    logging.getLogger("vsc.requests").setLevel(logging.INFO)
    api.serve_as("agent")  # its approvals' logins and signatures are the agent's in the audit log
    agent = Agent()
    if once:
        run_once(agent)
        return
    url, stop_page = _start_page(agent) if page else (None, _nothing)
    path = write_agent_file(url)
    stopped = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stopped.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        agent.start()
        log.info("agent %d watching %d card(s)%s", os.getpid(), agent.watched, f"; page {url}" if url else "")
        while not stopped.wait(RESCAN):
            agent.start()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        agent.close()
        stop_page()
        path.unlink(missing_ok=True)
        log.info("agent %d stopped", os.getpid())
