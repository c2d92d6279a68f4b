"""The shapes every sign, verify, encrypt and decrypt operation has (one-shot, or parts then a final step),
the digest tables and the small checks they share, apart from the mechanisms that build them (rsa_sign.py,
ecc_sign.py, hmac_sign.py, rsa_cipher.py, aes_cipher.py, pqc.py, dsa_dh.py), so that those can use them
without importing each other."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any, TypeVar

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes

from vsc_provider.ck import constants as C
from vsc_provider.ck.errors import CKRError
from vsc_provider.ck.params import Mechanism

HashFactory = Callable[[], hashes.HashAlgorithm]
T = TypeVar("T")
U = TypeVar("U")
Build = Callable[[Mechanism, Any], T]  # what makes an operation object from a mechanism and a loaded key

DIGESTS: dict[int, HashFactory] = {
    C.CKM_SHA_1: hashes.SHA1,
    C.CKM_SHA224: hashes.SHA224,
    C.CKM_SHA256: hashes.SHA256,
    C.CKM_SHA384: hashes.SHA384,
    C.CKM_SHA512: hashes.SHA512,
    C.CKM_SHA3_224: hashes.SHA3_224,
    C.CKM_SHA3_256: hashes.SHA3_256,
    C.CKM_SHA3_384: hashes.SHA3_384,
    C.CKM_SHA3_512: hashes.SHA3_512,
}
# A pre-hashed payload's hash, by the payload's length (ECDSA and DSA over a bare digest).
PREHASH_BY_SIZE: dict[int, HashFactory] = {
    20: hashes.SHA1,
    28: hashes.SHA224,
    32: hashes.SHA256,
    48: hashes.SHA384,
    64: hashes.SHA512,
}


def param_invalid(what: str) -> CKRError:
    return CKRError(C.CKR_MECHANISM_PARAM_INVALID, what)


def no_param(mech: Mechanism, what: str = "this mechanism takes no parameter") -> None:
    if mech.param is not None:
        raise param_invalid(what)


def fitting(table: dict[int, T], mech_type: int, key_kind: str) -> T:
    """What a key family's table holds for a mechanism; a mechanism of another family does not fit the key."""
    found = table.get(mech_type)
    if found is None:
        raise CKRError(C.CKR_KEY_TYPE_INCONSISTENT, f"mechanism does not fit {key_kind}")
    return found


def by_mechanism(table: dict[int, Build[T]], key_kind: str) -> Build[T]:
    """A key family's builder: the one its table holds for the mechanism."""
    return lambda mech, key: fitting(table, mech.type, key_kind)(mech, key)


def by_direction(builders: dict[int, tuple[Build[T], Build[U]]]) -> tuple[dict[int, Build[T]], dict[int, Build[U]]]:
    """A family's table of mechanism -> (builder one way, builder the other way) as two tables."""
    return {m: one for m, (one, _) in builders.items()}, {m: other for m, (_, other) in builders.items()}


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


class HashThenSign(Signer):
    """Hash-and-sign mechanisms: one-shot hands the data to OpenSSL; multi-part hashes incrementally."""

    def __init__(
        self,
        one_shot: Callable[[bytes], bytes],
        prehashed: Callable[[bytes], bytes],
        algorithm: HashFactory,
        length: int,
    ) -> None:
        super().__init__()
        self.sign = one_shot  # type: ignore[method-assign,assignment]
        self._prehashed = prehashed
        self._algorithm = algorithm
        self.length = length

    def update(self, part: bytes) -> None:
        if self._hash is None:
            self._hash = hashes.Hash(self._algorithm())
        self._hash.update(part)

    def final(self) -> bytes:
        if self._hash is None:
            self._hash = hashes.Hash(self._algorithm())
        return self._prehashed(self._hash.finalize())


class Buffered(Signer):
    """One-shot signing by a function; multi-part input is collected, then signed once."""

    def __init__(self, fn: Callable[[bytes], bytes], length: int) -> None:
        super().__init__()
        self.sign = fn  # type: ignore[method-assign,assignment]
        self.length = length


class Cipherer:
    """An encrypt or decrypt operation: one-shot `run`, or `update`... then `final`."""

    def __init__(
        self,
        run: Callable[[bytes], bytes],
        update: Callable[[bytes], bytes] | None = None,
        final: Callable[[], bytes] | None = None,
    ) -> None:
        self.run = run
        self._parts: list[bytes] = []
        self._update = update
        self._final = final

    def update(self, part: bytes) -> bytes:
        if self._update is None:
            self._parts.append(part)
            return b""
        return self._update(part)

    def final(self) -> bytes:
        if self._final is None:
            return self.run(b"".join(self._parts))
        return self._final()
