"""The approval page: a local web application that lists pending requests, shows one with everything the
relying party sent, and approves it with the card's PIN (or, where the source can, a fingerprint that fprintd
verifies: requests/fingerprint.py) or rejects it.

It is meant for 127.0.0.1 only (page_server.py runs it). Every route sits under an unguessable per-session
token (`/{token}/...`, compared in constant time; anything else is 404); a POST needs the per-app CSRF token in
its form and an Origin (or Referer) of the page's own origin; the Host must be a loopback name, so a rebound
DNS name cannot reach it. Every answer carries a content security policy that allows no script and nothing
from elsewhere. The PIN is passed to the source and never logged or put back into a page.
"""

from __future__ import annotations

import hmac
import logging
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from urllib.parse import parse_qs, urlsplit

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vsc_provider.requests import page_html
from vsc_provider.requests.model import (
    FingerprintSource,
    FingerprintUnavailable,
    PendingRequest,
    RequestError,
    RequestSource,
)

log = logging.getLogger(__name__)

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; img-src 'self' data:; style-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
# same-origin, not no-referrer: under no-referrer a browser sends `Origin: null` and no Referer with a form
# POST (Fetch, "append a request Origin header"; Firefox ESR does so), and the origin check below could not tell
# the page from a sandboxed frame. same-origin sends the URL (and its token) to no other origin; none is linked.
SECURITY_HEADERS = (
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"cache-control", b"no-store"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
)
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")
MAX_FORM_BYTES = 8192
_HOST = re.compile(r"(?P<name>\[[0-9a-fA-F:]+\]|[^:\[\]]+)(?::\d{1,5})?")
_COLOUR_NAME = re.compile(r"[0-9a-f]{6}")
_DONE = {"approve": "approved", "reject": "rejected", "fingerprint": "approved"}


class _Headers:
    """Adds SECURITY_HEADERS to every response and refuses a Host that is not a loopback name (DNS rebinding)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {name for name, _ in SECURITY_HEADERS}
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() not in names]
                message = {**message, "headers": [*headers, *SECURITY_HEADERS]}
            await send(message)

        host = dict(scope.get("headers", [])).get(b"host", b"").decode("latin-1")
        found = _HOST.fullmatch(host)
        if found is None or found.group("name").lower() not in LOOPBACK_HOSTS:
            await PlainTextResponse("unknown host", status_code=400)(scope, receive, send_with_headers)
            return
        await self.app(scope, receive, send_with_headers)


Endpoint = Callable[[Request], Awaitable[Response]]


class _ApprovalPage:
    def __init__(self, source: RequestSource, token: str) -> None:
        self.source = source
        self.token = token.encode()
        self.base = f"/{token}/"
        self.csrf = secrets.token_urlsafe(32)

    def guarded(self, endpoint: Endpoint) -> Endpoint:
        """The endpoint, answering 404 unless the path's token is the session's (compared in constant time)."""

        async def checked(request: Request) -> Response:
            if not hmac.compare_digest(str(request.path_params.get("token", "")).encode(), self.token):
                return PlainTextResponse("Not Found", status_code=404)
            return await endpoint(request)

        return checked

    def _find(self, request_id: str) -> PendingRequest | None:
        return next((r for r in self.source.pending() if r.id == request_id), None)

    def _html(self, text: str, status: int = 200) -> HTMLResponse:
        return HTMLResponse(text, status_code=status)

    def _message(self, title: str, message: str, status: int) -> HTMLResponse:
        return self._html(page_html.message_page(self.base, title, message), status)

    async def index(self, request: Request) -> Response:
        pending = await run_in_threadpool(self.source.pending)
        return self._html(page_html.list_page(self.base, pending, time.time()))

    async def stylesheet(self, request: Request) -> Response:
        return Response(page_html.STYLESHEET, media_type="text/css")

    async def brand_stylesheet(self, request: Request) -> Response:
        colour = str(request.path_params["colour"])
        if not _COLOUR_NAME.fullmatch(colour):
            return PlainTextResponse("Not Found", status_code=404)
        return Response(page_html.brand_stylesheet(colour), media_type="text/css")

    async def show(self, request: Request) -> Response:
        pending = await run_in_threadpool(self._find, str(request.path_params["request_id"]))
        if pending is None:
            return self._message("No such request", "This request is not pending (any more).", 404)
        fingerprint = await run_in_threadpool(self._fingerprint_ready, pending)
        text = await run_in_threadpool(
            page_html.detail_page, self.base, pending, self.csrf, time.time(), None, "", fingerprint
        )
        return self._html(text)

    def _fingerprint_ready(self, pending: PendingRequest) -> bool:
        return isinstance(self.source, FingerprintSource) and self.source.fingerprint_ready(pending)

    def _same_origin(self, request: Request) -> bool:
        own = f"{request.url.scheme}://{request.headers.get('host', '')}".lower()
        origin = request.headers.get("origin")
        if origin is not None:
            return origin.lower() == own  # "null" (sandboxed frames, opaque origins) never matches
        referer = request.headers.get("referer")
        if referer:
            parts = urlsplit(referer)
            return f"{parts.scheme}://{parts.netloc}".lower() == own
        return False

    async def _form(self, request: Request) -> dict[str, str] | None:
        """The urlencoded form's fields that occur exactly once; None when it is not such a form or too big."""
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/x-www-form-urlencoded":
            return None
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_FORM_BYTES:
                return None
        try:
            fields = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=16)
        except (UnicodeDecodeError, ValueError):
            return None
        return {name: values[0] for name, values in fields.items() if len(values) == 1}

    async def answer(self, request: Request) -> Response:
        if not self._same_origin(request):
            return self._message("Refused", "This form was not sent from the approval page.", 403)
        form = await self._form(request)
        if form is None:
            return self._message("Refused", "The form could not be read.", 400)
        if not hmac.compare_digest(form.get("csrf", "").encode(), self.csrf.encode()):
            return self._message("Refused", "This form was not sent from the approval page.", 403)
        request_id = str(request.path_params["request_id"])
        pending = await run_in_threadpool(self._find, request_id)
        if pending is None:
            return self._message("No such request", "This request is not pending (any more).", 404)
        decision = form.get("decision")
        if decision not in ("approve", "reject", "fingerprint"):
            return await self._again(pending, "Choose Approve or Reject.", 400)
        if not hmac.compare_digest(form.get("shown", "").encode(), pending.display_hash.encode()):
            return await self._again(pending, "The request changed after this page showed it: read it again.", 409)
        try:
            if decision == "fingerprint":
                if pending.expires <= time.time():
                    return await self._again(pending, "This request has expired.", 409)
                if not isinstance(self.source, FingerprintSource):
                    return await self._again(pending, "Type the card's PIN to approve.", 400)
                await run_in_threadpool(self.source.approve_with_fingerprint, pending.id)
            elif decision == "approve":
                if pending.expires <= time.time():
                    return await self._again(pending, "This request has expired.", 409)
                pin = form.get("pin", "")
                if not pin:
                    return await self._again(pending, "Type the card's PIN to approve.", 400)
                await run_in_threadpool(self.source.approve, pending.id, pin)
            else:
                await run_in_threadpool(self.source.reject, pending.id)
        except FingerprintUnavailable as exc:
            log.info("request %s: no fingerprint approval: %s", pending.id, exc)
            return await self._again(pending, f"No fingerprint approval: {exc}. Type the card's PIN.", 409)
        except RequestError as exc:
            log.info("request %s: %s refused: %s", pending.id, decision, exc)
            return await self._again(pending, str(exc) or f"The request could not be {_DONE[decision]}.", 400)
        except Exception:
            log.exception("request %s: %s failed", pending.id, decision)
            return await self._again(pending, f"The request could not be {_DONE[decision]}: see the agent's log.", 500)
        log.info("request %s from %s %s on the approval page (%s)", pending.id, pending.rp, _DONE[decision], decision)
        return self._html(page_html.answered_page(self.base, pending, decision))

    async def _again(self, pending: PendingRequest, error: str, status: int) -> Response:
        """The request's page again with `error` on it (and an empty PIN field)."""
        fingerprint = await run_in_threadpool(self._fingerprint_ready, pending)
        text = await run_in_threadpool(
            page_html.detail_page, self.base, pending, self.csrf, time.time(), error, "", fingerprint
        )
        return self._html(text, status)


def make_app(source: RequestSource, token: str) -> Starlette:
    """The approval page for `source`, every route under `/{token}/`."""
    page = _ApprovalPage(source, token)
    routes = [
        Route("/{token}/", page.guarded(page.index), methods=["GET"]),
        Route("/{token}/style.css", page.guarded(page.stylesheet), methods=["GET"]),
        Route("/{token}/brand/{colour}.css", page.guarded(page.brand_stylesheet), methods=["GET"]),
        Route("/{token}/requests/{request_id}", page.guarded(page.show), methods=["GET"]),
        Route("/{token}/requests/{request_id}", page.guarded(page.answer), methods=["POST"]),
    ]
    app = Starlette(routes=routes)
    app.router.redirect_slashes = False  # `/{token}` (no slash) is 404 like everything else, not a redirect
    app.add_middleware(_Headers)
    return app
