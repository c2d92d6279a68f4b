"""Fixtures for tests of the in-process PKCS#11 layer (its rules, with no native code) on a fresh store.

The layer's state (LIB) is process-wide and may have been initialised by the python-pkcs11 tests that ran
before in this process; each test finalises it, points VSC_HOME at its own store and initialises again.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from vsc_provider.ck import attributes as A
from vsc_provider.ck import constants as C
from vsc_provider.ck.errors import CKRError
from vsc_provider.ck.params import Mechanism
from vsc_provider.pkcs11 import general, keys, sessions
from vsc_provider.pkcs11.state import LIB
from vsc_provider.token import keywrap
from vsc_provider.token.ec_params import oid_der
from vsc_provider.token.engine import Engine
from vsc_provider.token.pin import PinPolicy

PIN = b"482915"
SO_PIN = b"19283746"
RW = C.CKF_SERIAL_SESSION | C.CKF_RW_SESSION


@dataclass
class Env:
    home: Path
    slot: int

    def session(self, login: bool = True) -> int:
        h = sessions.open_session(self.slot, RW)
        if login:
            sessions.login(h, C.CKU_USER, PIN)
        return h


def rv(fn, *args) -> int:  # type: ignore[no-untyped-def]
    with pytest.raises(CKRError) as err:
        fn(*args)
    return err.value.rv


def rsa_pair(h: int, priv: dict[int, bytes] | None = None) -> tuple[int, int]:
    pub_t = [(C.CKA_MODULUS_BITS, A.encode(C.CKA_MODULUS_BITS, 2048))]
    return keys.generate_key_pair(h, Mechanism(C.CKM_RSA_PKCS_KEY_PAIR_GEN), pub_t, list((priv or {}).items()))


def ec_pair(h: int, curve_oid: str, priv: dict[int, bytes] | None = None) -> tuple[int, int]:
    pub_t = [(C.CKA_EC_PARAMS, oid_der(curve_oid))]
    return keys.generate_key_pair(h, Mechanism(C.CKM_EC_KEY_PAIR_GEN), pub_t, list((priv or {}).items()))


def _finalize() -> None:
    if LIB.engine is not None:
        general.finalize()


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Env]:
    home = tmp_path / "vsc-home"
    monkeypatch.setenv("VSC_HOME", str(home))
    monkeypatch.delenv("VSC_DEVICE_KEY", raising=False)
    card = Engine().create_card(
        "review", SO_PIN, PIN, policy=PinPolicy(delay_base=0.01, delay_max=0.01), kdf=keywrap.KdfParams(n=2**4)
    )
    _finalize()
    general.initialize(None)
    yield Env(home, card.slot_id)
    _finalize()
