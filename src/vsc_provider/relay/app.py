"""The relay's HTTP face: posters (the identity server) POST a notification to a topic, listeners (devices)
GET the topic as an event stream. Nothing is stored: a notification goes to whoever listens at that moment.
"""

from __future__ import annotations

import hmac
import json
import logging
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from vsc_provider.relay import wire
from vsc_provider.relay.hub import Hub, Limits, Listener, RelayFull, TopicFull
from vsc_provider.relay.stream import EventStream
from vsc_provider.web_service import error_handlers

log = logging.getLogger("vsc.relay")


@dataclass(frozen=True)
class Settings:
    limits: Limits = field(default_factory=Limits)
    post_token: str | None = None  # when set, posters must send `Authorization: Bearer <it>`
    keepalive: float = wire.KEEPALIVE_SECONDS
    lifetime: float = wire.STREAM_SECONDS


class Refusal(Exception):
    def __init__(self, status: int, error: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.error, self.detail = status, error, detail


def _refused(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, Refusal)
    headers = {"Retry-After": "5"} if exc.status in (429, 503) else None
    return JSONResponse({"error": exc.error, "detail": exc.detail}, exc.status, headers=headers)


def _topic(request: Request) -> str:
    topic = str(request.path_params["topic"])
    problem = wire.topic_problem(topic)
    if problem:
        raise Refusal(400, "bad_topic", problem)
    return topic


async def _body(request: Request) -> Any:
    too_large = Refusal(413, "too_large", f"bodies are at most {wire.MAX_BODY} bytes")
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > wire.MAX_BODY):
        raise too_large
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > wire.MAX_BODY:
            raise too_large
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise Refusal(400, "malformed", "the body is not JSON") from None


def _notification(body: Any) -> str:
    if not isinstance(body, dict) or set(body) != {"notification"}:
        raise Refusal(400, "malformed", 'the body is {"notification": "<compact JWE>"} and nothing else')
    problem = wire.notification_problem(body["notification"])
    if problem:
        raise Refusal(400, "bad_notification", problem)
    return str(body["notification"])


class _Stream:
    """GET /v1/topics/{topic}: refusals as JSON, else the event stream (an ASGI app of its own)."""

    def __init__(self, hub: Hub, settings: Settings) -> None:
        self.hub, self.settings = hub, settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        try:
            listener = self._open(request)
        except Refusal as exc:
            await _refused(request, exc)(scope, receive, send)
            return
        if listener is None:  # HEAD, which Starlette routes with GET: the headers, and no place taken
            await Response(media_type="text/event-stream", headers={"Cache-Control": "no-store"})(scope, receive, send)
            return
        stream = EventStream(self.hub, listener, self.settings.keepalive, self.settings.lifetime)
        await stream(scope, receive, send)

    def _open(self, request: Request) -> Listener | None:
        topic = _topic(request)
        if request.method == "HEAD":
            return None
        try:
            return self.hub.open(topic)
        except TopicFull:
            raise Refusal(429, "too_many_listeners", "this topic has as many listeners as it may") from None
        except RelayFull:
            raise Refusal(503, "relay_full", "the relay has as many listeners as it takes") from None


def create_app(settings: Settings | None = None) -> Starlette:
    settings = settings or Settings()
    hub = Hub(settings.limits)
    token = settings.post_token.encode() if settings.post_token else None

    async def post(request: Request) -> Response:
        if token is not None:
            given = request.headers.get("authorization", "").encode()
            if not hmac.compare_digest(given, b"Bearer " + token):
                raise Refusal(401, "bad_post_token", "posting needs the relay's post token")
        topic = _topic(request)
        delivered = hub.publish(topic, _notification(await _body(request)))
        return JSONResponse({"delivered": delivered}, 202)

    async def health(_: Request) -> Response:
        return JSONResponse({"status": "ok", "listeners": hub.listeners, "topics": hub.topics})

    stream = _Stream(hub, settings)

    routes = [
        Route("/v1/topics/{topic}", post, methods=["POST"]),
        Route("/v1/topics/{topic}", stream, methods=["GET"]),
        Route("/v1/health", health, methods=["GET"]),
    ]
    return Starlette(routes=routes, exception_handlers={Refusal: _refused, **error_handlers(log)})
