"""The shapes every sign and verify operation has (one-shot, or parts then a final step), apart from the
mechanisms that build them (crypto.py, pqc.py), so that both can use them without importing each other."""

from __future__ import annotations

import copy
from collections.abc import Callable

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes

from vsc_provider.ck import constants as C
from vsc_provider.ck.errors import CKRError

HashFactory = Callable[[], hashes.HashAlgorithm]


class Signer:
    """A sign operation: one-shot `sign`, or `update`... then `final`."""

    length: int

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._hash: hashes.Hash | None = None

    def sign(self, data: bytes) -> bytes:
        raise NotImplementedError

    def update(self, part: bytes) -> None:
        self._parts.append(part)

    def final(self) -> bytes:
        return self.sign(b"".join(self._parts))

    def fresh(self) -> Signer:
        """A copy with its own multi-part state; the prepared keys, paddings and hashes are shared, so one
        prepared signer serves every operation on its key and mechanism."""
        other = copy.copy(self)
        other._parts = []
        other._hash = None
        return other


class Verifier:
    def __init__(
        self,
        check: Callable[[bytes, bytes], None],
        hash_alg: HashFactory | None,
        prehashed_check: Callable[[bytes, bytes], None] | None,
    ) -> None:
        self._check = check
        self._hash_alg = hash_alg
        self._prehashed = prehashed_check
        self._parts: list[bytes] = []
        self._hash: hashes.Hash | None = None

    def verify(self, data: bytes, signature: bytes) -> None:
        self._check(data, signature)

    def update(self, part: bytes) -> None:
        if self._hash_alg is not None and self._prehashed is not None:
            if self._hash is None:
                self._hash = hashes.Hash(self._hash_alg())
            self._hash.update(part)
        else:
            self._parts.append(part)

    def final(self, signature: bytes) -> None:
        if self._prehashed is not None and self._hash_alg is not None:
            digest = (self._hash or hashes.Hash(self._hash_alg())).finalize()
            self._prehashed(digest, signature)
        else:
            self._check(b"".join(self._parts), signature)


def signature_checked(fn: Callable[[], object]) -> None:
    try:
        fn()
    except InvalidSignature as exc:
        raise CKRError(C.CKR_SIGNATURE_INVALID, "signature does not verify") from exc
