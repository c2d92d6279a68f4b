"""The implementer's policy hook: code the machine's owner installs that sees each verified request before the
user does and answers accept (with the PIN), reject, or ask the user.

Policies come from installed entry points in the group `vsc_provider.policies` and from `module:callable`
names in `VSC_POLICY` (comma-separated) or in the `policy` key of `$VSC_HOME/config.json` (a string or a
list). Several combine: any reject wins, else any accept, else ask. A policy that cannot be loaded, raises,
or answers something other than a Decision counts as `ask` and is logged: the agent never stops for it.
docs/policies.md has the details and an example.
"""

from __future__ import annotations

import importlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from vsc_provider import config
from vsc_provider import log as vlog
from vsc_provider.requests.model import DECISIONS, Decision, PendingRequest, Policy

GROUP = "vsc_provider.policies"
ENV = "VSC_POLICY"
CONFIG_FILE = "config.json"
ASK = Decision("ask")

log = vlog.get("vsc.requests.policy")


class PolicyConfigError(ValueError):
    """The configuration names policies in a shape this module does not read; one line for the user."""


@dataclass(frozen=True)
class Named:
    """One loaded policy and where it came from (for the log and for reasons shown to the user)."""

    name: str
    call: Callable[[PendingRequest], Any]


def _import_target(target: str) -> Callable[[PendingRequest], Any]:
    module_name, sep, attr = target.strip().partition(":")
    if not sep or not module_name or not attr:
        raise PolicyConfigError(f"a policy is named module:callable, not {target!r}")
    obj: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    if not callable(obj):
        raise PolicyConfigError(f"policy {target!r} is not callable")
    return obj  # type: ignore[no-any-return]


def configured_names() -> list[str]:
    """The `module:callable` names from VSC_POLICY and $VSC_HOME/config.json, in that order."""
    names = [n.strip() for n in os.environ.get(ENV, "").split(",") if n.strip()]
    path = config.home() / CONFIG_FILE
    if path.exists():
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise PolicyConfigError(f"{path}: not readable JSON ({exc})") from None
        value = data.get("policy") if isinstance(data, dict) else None
        if isinstance(value, str):
            value = [value]
        if value is not None and not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            raise PolicyConfigError(f"{path}: 'policy' is a module:callable string or a list of them")
        names.extend(v for v in value or [] if v not in names)
    return names


def _failed(name: str, why: str) -> Named:
    def ask(_request: PendingRequest) -> Decision:
        return ASK

    log.warning("policy %s not loaded, it will answer ask: %s", name, why)
    return Named(name, ask)


def discover() -> list[Named]:
    """Every policy: installed entry points first (by name), then the configured ones. One that does not
    load is kept as a policy that always asks, so that the log says so at each request too."""
    found: list[Named] = []
    for ep in sorted(metadata.entry_points(group=GROUP), key=lambda e: e.name):
        name = f"{ep.name} ({ep.value})"
        try:
            obj = ep.load()
        except Exception as exc:
            found.append(_failed(name, f"{type(exc).__name__}: {exc}"))
            continue
        found.append(Named(name, obj) if callable(obj) else _failed(name, "not callable"))
    try:
        targets = configured_names()
    except PolicyConfigError as exc:
        return [*found, _failed(f"{CONFIG_FILE}", str(exc))]
    for target in targets:
        try:
            found.append(Named(target, _import_target(target)))
        except PolicyConfigError as exc:
            found.append(_failed(target, str(exc)))
        except Exception as exc:
            found.append(_failed(target, f"{type(exc).__name__}: {exc}"))
    return found


def _answer(policy: Named, request: PendingRequest) -> Decision:
    """One policy's answer, with every failure turned into `ask`. The decision itself is never logged: an
    accept carries a PIN."""
    try:
        decision = policy.call(request)
    except Exception as exc:
        log.warning(
            "policy %s raised on request %s, taken as ask: %s: %s", policy.name, request.id, type(exc).__name__, exc
        )
        return ASK
    if not isinstance(decision, Decision) or decision.action not in DECISIONS:
        log.warning(
            "policy %s answered request %s with a %s, taken as ask", policy.name, request.id, type(decision).__name__
        )
        return ASK
    if decision.pin is not None and not isinstance(decision.pin, str):
        log.warning("policy %s gave a PIN that is not a string for request %s, taken as ask", policy.name, request.id)
        return ASK
    return decision


@dataclass(frozen=True)
class Combined:
    """Several policies as one: any reject rejects, else any accept accepts (with the first PIN given), else
    the user is asked."""

    policies: tuple[Named, ...]

    def __call__(self, request: PendingRequest) -> Decision:
        answers = [(p, _answer(p, request)) for p in self.policies]
        rejects = [(p, d) for p, d in answers if d.action == "reject"]
        if rejects:
            reason = "; ".join(d.reason or f"refused by policy {p.name}" for p, d in rejects)
            log.info("request %s rejected by policy: %s", request.id, ", ".join(p.name for p, _ in rejects))
            return Decision("reject", reason=reason)
        accepts = [(p, d) for p, d in answers if d.action == "accept"]
        if accepts:
            pin = next((d.pin for _, d in accepts if d.pin), None)
            reason = "; ".join(d.reason or f"accepted by policy {p.name}" for p, d in accepts)
            log.info("request %s accepted by policy: %s", request.id, ", ".join(p.name for p, _ in accepts))
            return Decision("accept", pin=pin, reason=reason)
        return ASK


def load() -> Policy:
    """The policy the agent applies to each request (one that always asks when none is installed)."""
    return Combined(tuple(discover()))
