"""`vsc push-relay run`: serve the push relay (plain HTTP, or HTTPS with a certificate of the operator's)."""

from __future__ import annotations

import logging
import ssl
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from vsc_provider.relay import wire
from vsc_provider.relay.hub import Limits

F = TypeVar("F", bound=Callable[..., Any])
_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)


def _number(name: str, default: float, help_text: str) -> Callable[[F], F]:
    kind = click.IntRange(1) if isinstance(default, int) else click.FloatRange(0.1)
    return click.option(name, default=default, show_default=True, type=kind, help=help_text)


def _check_tls(cert: Path, key: Path) -> None:
    """A one-line error for a certificate and key that do not load (uvicorn would print a traceback)."""
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert, key)
    except (ssl.SSLError, OSError) as exc:
        raise click.ClickException(f"--tls-cert/--tls-key do not load as a PEM certificate and key: {exc}") from None


@click.group("push-relay")
def push_relay() -> None:
    """A stateless relay of encrypted notifications, for identity servers kept off the internet."""


@push_relay.command("run")
@click.option("--host", default="127.0.0.1", show_default=True, help="address to listen on (0.0.0.0: all)")
@click.option("--port", default=8444, show_default=True, type=click.IntRange(0, 65535), help="port to listen on")
@click.option("--tls-cert", type=_FILE, default=None, help="PEM certificate (chain) to serve HTTPS with")
@click.option("--tls-key", type=_FILE, default=None, help="PEM private key of --tls-cert")
@click.option(
    "--post-token",
    envvar="VSC_RELAY_POST_TOKEN",
    default=None,
    help="only posters sending `Authorization: Bearer TOKEN` may post (env VSC_RELAY_POST_TOKEN, which ps cannot read)",
)
@_number("--max-listeners", Limits.max_listeners, "listeners in all (503 beyond)")
@_number("--max-per-topic", Limits.max_per_topic, "listeners of one topic (429 beyond)")
@_number("--queue", Limits.queue, "notifications a slow listener may lag behind (the oldest go first)")
@_number("--keepalive", wire.KEEPALIVE_SECONDS, "seconds between keep-alive comments on an idle stream")
@_number("--stream-seconds", wire.STREAM_SECONDS, "seconds after which the relay ends a stream")
def run(
    host: str,
    port: int,
    tls_cert: Path | None,
    tls_key: Path | None,
    post_token: str | None,
    max_listeners: int,
    max_per_topic: int,
    queue: int,
    keepalive: float,
    stream_seconds: float,
) -> None:
    """Serve until interrupted. It stores nothing: notifications for a topic nobody listens on are dropped."""
    from vsc_provider.relay.app import Settings, create_app
    from vsc_provider.web_service import serve

    if (tls_cert is None) != (tls_key is None):
        raise click.UsageError("--tls-cert and --tls-key go together")
    if post_token is not None and not post_token.strip():
        raise click.UsageError("--post-token must not be empty")
    if tls_cert is not None and tls_key is not None:
        _check_tls(tls_cert, tls_key)
    settings = Settings(
        limits=Limits(max_listeners=max_listeners, max_per_topic=max_per_topic, queue=queue),
        post_token=post_token,
        keepalive=keepalive,
        lifetime=stream_seconds,
    )
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    scheme = "https" if tls_cert else "http"
    where = f"[{host}]" if ":" in host else host
    posting = "post token required" if post_token else "anyone may post"
    click.echo(f"push relay on {scheme}://{where}:{port}  ({posting})")
    sys.stdout.flush()
    # no access log: topics are not secrets, but a relay that keeps nothing keeps no log of them either
    serve(create_app(settings), host, port, tls_cert, tls_key)
