"""Fixtures for the in-process tests of the built library: the loaded library and a card per test module."""

from __future__ import annotations

from collections.abc import Iterator

import pkcs11
import pytest
from p11_support import USER_PIN, CardEnv, make_card, store_loaded


@pytest.fixture(scope="session")
def p11lib(module_path: str) -> pkcs11.lib:
    return pkcs11.lib(module_path)


@pytest.fixture(scope="module")
def card_env(p11lib: pkcs11.lib, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CardEnv]:
    """A fresh store with one card ('Test card', the standard PINs), loaded by the library."""
    home = tmp_path_factory.mktemp("vsc-home")
    serial = make_card(home)
    with store_loaded(p11lib, home):
        yield CardEnv(p11lib, home, serial)


@pytest.fixture(scope="module")
def session(card_env: CardEnv) -> Iterator[pkcs11.Session]:
    """A user session on the module's card, logged in and read/write, for the whole test module."""
    with card_env.token().open(rw=True, user_pin=USER_PIN) as s:
        yield s
