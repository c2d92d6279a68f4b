"""HMAC over a generic secret or AES key's value: CKM_SHA*_HMAC and CKM_SHA3_*_HMAC, signing and verifying."""

from __future__ import annotations

import hmac as std_hmac

from cryptography.hazmat.primitives import hmac

from vsc_provider.ck import constants as C
from vsc_provider.ck.errors import CKRError
from vsc_provider.ck.params import Mechanism
from vsc_provider.token import mechanisms as M
from vsc_provider.token.operation import DIGESTS, HashFactory, Signer, Verifier, no_param

HMACS: dict[int, HashFactory] = {m: DIGESTS[d] for m, d in M.HMACS.items()}


class HmacSigner(Signer):
    def __init__(self, key: bytes, alg: HashFactory) -> None:
        super().__init__()
        self._key = key
        self._alg = alg
        self._ctx = hmac.HMAC(key, alg())
        self.length = alg().digest_size

    def sign(self, data: bytes) -> bytes:
        ctx = hmac.HMAC(self._key, self._alg())
        ctx.update(data)
        return ctx.finalize()

    def update(self, part: bytes) -> None:
        self._ctx.update(part)

    def final(self) -> bytes:
        return self._ctx.finalize()

    def fresh(self) -> Signer:
        other = super().fresh()
        assert isinstance(other, HmacSigner)
        other._ctx = hmac.HMAC(self._key, self._alg())
        return other


def _hmac(mech: Mechanism, verb: str) -> HashFactory:
    if mech.type not in HMACS:
        raise CKRError(C.CKR_KEY_TYPE_INCONSISTENT, f"a secret key {verb} with an HMAC mechanism")
    no_param(mech, "HMAC mechanisms take no parameter")
    return HMACS[mech.type]


def make_signer(mech: Mechanism, key: bytes) -> Signer:
    return HmacSigner(key, _hmac(mech, "signs"))


def make_verifier(mech: Mechanism, key: bytes) -> Verifier:
    signer = HmacSigner(key, _hmac(mech, "verifies"))

    def check_mac(d: bytes, s: bytes) -> None:
        expected = signer.sign(d)
        if len(s) != len(expected):
            raise CKRError(C.CKR_SIGNATURE_LEN_RANGE, "HMAC of the wrong length")
        if not std_hmac.compare_digest(expected, s):
            raise CKRError(C.CKR_SIGNATURE_INVALID, "HMAC does not verify")

    return Verifier(check_mac, None, None)
