"""Fixtures for the card-edge tests: a store with real cards made by the `vsc` command, the built PKCS#11
module loaded on the same store (python-pkcs11, in this process), and card-edge contexts over their own
engine, as a Windows CSP and a PKCS#11 host would share one card."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pkcs11
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "pkcs11"))

from p11_support import make_card, store_loaded, vsc

from vsc_provider.minidriver import context
from vsc_provider.token.engine import Engine

COMPAT_PIN = "4321"
COMPAT_SO_PIN = "87654321"


@dataclass
class EdgeEnv:
    lib: pkcs11.lib
    home: Path
    serial: str  # a strict card: the standard PINs
    compatible: str  # a compatible card (no waiting periods: blocking it is quick)

    def context(self, serial: str | None = None) -> context.CardContext:
        """CardAcquireContext over an engine of its own (a CSP in another process would have one too)."""
        return context.acquire_context(serial or self.serial, engine=Engine())

    def token(self, serial: str | None = None) -> pkcs11.Token:
        return self.lib.get_token(token_serial=(serial or self.serial).encode())


@pytest.fixture(scope="module")
def edge(module_path: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EdgeEnv]:
    home = tmp_path_factory.mktemp("vsc-home")
    serial = make_card(home, "Edge card")
    out = vsc(
        home,
        "card",
        "create",
        "--label",
        "Edge compat",
        "--pin",
        COMPAT_PIN,
        "--so-pin",
        COMPAT_SO_PIN,
        "--policy",
        "compatible",
        "--json",
    )
    compatible = str(json.loads(out.stdout)["serial"])
    lib = pkcs11.lib(module_path)
    with store_loaded(lib, home):
        yield EdgeEnv(lib, home, serial, compatible)
