"""Mechanisms: which builder makes the sign, verify, encrypt, decrypt or digest operation for a key and a
mechanism. Three tables, in order: the mechanisms that take any key and check it themselves (the AES MACs and
CTR), then the key's class (whose family then goes by the mechanism, or says that it does not fit), then the
mechanisms that go by their own name whatever the key (the AES modes and key wraps).

Each operation object is built once at *Init time with everything it needs (padding objects, hash
algorithms, the loaded key), so the per-call work is the `cryptography` call itself. The builders live by
key family: rsa_sign.py and rsa_cipher.py (with rsa_padding.py and rsa_raw.py), ecc_sign.py (with dss.py),
hmac_sign.py, aes_cipher.py, aes_modes.py, and pqc.py and dsa_dh.py (loaded only when a key of theirs turns
up).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, Generic, TypeVar

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

from vsc_provider.ck import constants as C
from vsc_provider.ck.errors import CKRError
from vsc_provider.ck.params import Mechanism
from vsc_provider.token import aes_cipher, aes_modes, ecc_sign, hmac_sign, rsa_cipher, rsa_sign
from vsc_provider.token import mechanisms as M
from vsc_provider.token.operation import DIGESTS, Build, Cipherer, Signer, Verifier, by_mechanism, param_invalid

F = TypeVar("F")


class _ByKeyClass(Generic[F]):
    """Key class -> builder, resolved once per concrete class (`cryptography`'s key classes are abstract
    ones its concrete classes are registered under). `late` gives the families whose modules load only when
    a key of theirs turns up, by a test of the key (post-quantum, DSA and Diffie-Hellman)."""

    def __init__(
        self, table: dict[type, F], late: Callable[[], Sequence[tuple[Callable[[Any], bool], F]]] = tuple
    ) -> None:
        self._table = table
        self._late = late
        self._resolved: dict[type, F | None] = {}

    def get(self, key: Any) -> F | None:
        kind = type(key)
        if kind in self._resolved:
            return self._resolved[kind]
        found = next((build for cls, build in self._table.items() if issubclass(kind, cls)), None)
        if found is None:
            found = next((build for test, build in self._late() if test(key)), None)
        self._resolved[kind] = found
        return found


def _late_signers() -> Sequence[tuple[Callable[[Any], bool], Build[Signer]]]:
    from vsc_provider.token import dsa_dh, pqc

    return ((pqc.is_pq, pqc.make_signer), (dsa_dh.is_dsa_dh, dsa_dh.make_signer))


def _late_verifiers() -> Sequence[tuple[Callable[[Any], bool], Build[Verifier]]]:
    from vsc_provider.token import dsa_dh, pqc

    return ((pqc.is_pq, pqc.make_verifier), (dsa_dh.is_dsa_dh, dsa_dh.make_verifier))


# The AES MACs and CTR take any key and check it themselves: they go by the mechanism before the key's class.
_SIGNERS_BY_MECHANISM: dict[int, Build[Signer]] = dict.fromkeys(M.AES_MACS, aes_modes.AesMac)  # type: ignore[arg-type]
_VERIFIERS_BY_MECHANISM: dict[int, Build[Verifier]] = dict.fromkeys(M.AES_MACS, aes_modes.AesMacVerifier)  # type: ignore[arg-type]
_CTR: dict[int, Build[Cipherer]] = {C.CKM_AES_CTR: aes_modes.CtrCipher}  # type: ignore[dict-item]
_SIGNERS = _ByKeyClass[Build[Signer]](
    {
        rsa.RSAPrivateKey: by_mechanism(rsa_sign.SIGNERS, "an RSA key"),
        ec.EllipticCurvePrivateKey: by_mechanism(ecc_sign.ECDSA_SIGNERS, "an EC key"),
        ed25519.Ed25519PrivateKey: partial(ecc_sign.make_eddsa_signer, ecc_sign.ED25519_SIGNATURE),
        ed448.Ed448PrivateKey: partial(ecc_sign.make_eddsa_signer, ecc_sign.ED448_SIGNATURE),
        bytes: hmac_sign.make_signer,
    },
    _late_signers,
)
_VERIFIERS = _ByKeyClass[Build[Verifier]](
    {
        rsa.RSAPublicKey: by_mechanism(rsa_sign.VERIFIERS, "an RSA key"),
        ec.EllipticCurvePublicKey: by_mechanism(ecc_sign.ECDSA_VERIFIERS, "an EC key"),
        ed25519.Ed25519PublicKey: partial(ecc_sign.make_eddsa_verifier, ecc_sign.ED25519_SIGNATURE),
        ed448.Ed448PublicKey: partial(ecc_sign.make_eddsa_verifier, ecc_sign.ED448_SIGNATURE),
        bytes: hmac_sign.make_verifier,
    },
    _late_verifiers,
)
# Encryption and decryption: RSA goes by the key, AES (after it) by the mechanism.
_ENCRYPTORS = _ByKeyClass[Build[Cipherer]]({rsa.RSAPublicKey: by_mechanism(rsa_cipher.ENCRYPTORS, "an RSA key")})
_DECRYPTORS = _ByKeyClass[Build[Cipherer]]({rsa.RSAPrivateKey: by_mechanism(rsa_cipher.DECRYPTORS, "an RSA key")})


def _build(
    mech: Mechanism,
    key: Any,
    first: dict[int, Build[F]],
    by_key: _ByKeyClass[Build[F]],
    then: dict[int, Build[F]],
    refused: tuple[int, str],
) -> F:
    build = first.get(mech.type) or by_key.get(key) or then.get(mech.type)
    if build is None:
        raise CKRError(*refused)
    return build(mech, key)


def make_signer(mech: Mechanism, key: Any) -> Signer:
    refused = (C.CKR_KEY_TYPE_INCONSISTENT, "this key cannot sign")
    return _build(mech, key, _SIGNERS_BY_MECHANISM, _SIGNERS, {}, refused)


def make_verifier(mech: Mechanism, key: Any) -> Verifier:
    """Verify with a public key (or HMAC secret); the same mechanisms as make_signer."""
    refused = (C.CKR_KEY_TYPE_INCONSISTENT, "this key cannot verify")
    return _build(mech, key, _VERIFIERS_BY_MECHANISM, _VERIFIERS, {}, refused)


def make_encryptor(mech: Mechanism, key: Any) -> Cipherer:
    refused = (C.CKR_MECHANISM_INVALID, f"mechanism 0x{mech.type:x} cannot encrypt with this key")
    return _build(mech, key, _CTR, _ENCRYPTORS, aes_cipher.ENCRYPTORS, refused)


def make_decryptor(mech: Mechanism, key: Any) -> Cipherer:
    refused = (C.CKR_MECHANISM_INVALID, f"mechanism 0x{mech.type:x} cannot decrypt with this key")
    return _build(mech, key, _CTR, _DECRYPTORS, aes_cipher.DECRYPTORS, refused)


# --- digests -----------------------------------------------------------------------------------------


def make_digest(mech: Mechanism) -> hashes.Hash:
    if mech.type not in DIGESTS:
        raise CKRError(C.CKR_MECHANISM_INVALID, f"mechanism 0x{mech.type:x} is not a digest")
    if mech.param is not None:
        raise param_invalid("digests take no parameter")
    return hashes.Hash(DIGESTS[mech.type]())


def digest_size(mech_type: int) -> int:
    return DIGESTS[mech_type]().digest_size
