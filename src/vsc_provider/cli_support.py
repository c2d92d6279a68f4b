"""What the `vsc` command's modules share (cli.py and provisioning/cli.py): one-line errors instead of
tracebacks, and asking for PINs.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from typing import Any, TypeVar

import click

from vsc_provider.ck.errors import CKRError, rv_name
from vsc_provider.token.pin import PinPolicy

F = TypeVar("F", bound=Callable[..., Any])

_MESSAGES = {
    "CKR_PIN_INCORRECT": "wrong PIN",
    "CKR_PIN_LOCKED": "the PIN is blocked: the security officer must reset it (vsc pin reset)",
    "CKR_PIN_LEN_RANGE": "PIN length out of range",
    "CKR_PIN_INVALID": "PIN not allowed",
    "CKR_SLOT_ID_INVALID": "no such card",
}


def friendly(fn: F) -> F:
    """One-line messages and a non-zero exit code instead of tracebacks."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except CKRError as exc:
            name = rv_name(exc.rv)
            text = exc.reason or _MESSAGES.get(name, name)
            if exc.reason and name in _MESSAGES and _MESSAGES[name] not in text:
                text = f"{_MESSAGES[name]}: {exc.reason}"
            raise click.ClickException(f"{text} ({name})") from None
        except (OSError, ValueError) as exc:
            raise click.ClickException(str(exc)) from None

    return wrapper  # type: ignore[return-value]


def ask(value: str | None, prompt: str, confirm: bool = False) -> str:
    if value is not None:
        return value
    if not sys.stdin.isatty():
        raise click.ClickException(f"{prompt} needed: pass it as an option when not on a terminal")
    return str(click.prompt(prompt, hide_input=True, confirmation_prompt=confirm))


def new_pin(value: str | None, prompt: str, so: bool = False, strict: bool = True) -> str:
    """A new PIN that the card's policy accepts: strict's rules here, with a clear message; the engine checks
    every PIN again against the card's own policy."""
    pin = ask(value, prompt, confirm=True)
    if not strict:
        return pin
    try:
        PinPolicy().check(pin.encode(), so=so)
    except CKRError as exc:
        raise click.ClickException(exc.reason or rv_name(exc.rv)) from None
    return pin


@contextmanager
def server_errors() -> Iterator[None]:
    """Errors from the identity server or the network as one-line messages."""
    from vsc_provider.provisioning.http import ServerError

    try:
        yield
    except ServerError as exc:
        raise click.ClickException(str(exc)) from None
