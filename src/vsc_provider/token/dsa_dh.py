"""DSA signatures and PKCS #3 Diffie-Hellman key agreement, offered on compatible cards only, by `cryptography`.

Domain parameters (generated, or given in a template), key pairs from them, signing (CKM_DSA over a hash the
caller made, and the hash-and-sign CKM_DSA_SHA*), and the shared secret of CKM_DH_PKCS_DERIVE. Private keys
are stored as `cryptography` serialises them (PKCS#8), like every other private key on the card. Importing a
private key from its parts (p, q, g and x) goes through PKCS#8 too: OpenSSL computes the public value.

Importing this module silences `cryptography`'s deprecation warning for finite-field Diffie-Hellman: the card
offers it on purpose, for test rigs, and the warning would land on the host's stderr.
"""

from __future__ import annotations

import warnings
from typing import Any, ClassVar

from asn1crypto import core as asn1_core
from asn1crypto import keys as asn1_keys
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dh, dsa, utils

from vsc_provider.ck import attributes as A
from vsc_provider.ck import constants as C
from vsc_provider.ck.errors import CKRError
from vsc_provider.ck.params import Mechanism
from vsc_provider.token import dss
from vsc_provider.token import mechanisms as M
from vsc_provider.token.operation import (
    DIGESTS,
    HashFactory,
    Signer,
    Verifier,
    fitting,
    no_param,
)
from vsc_provider.token.operation import PREHASH_BY_SIZE as _PREHASH_BY_SIZE
from vsc_provider.token.operation import Buffered as _Buffered
from vsc_provider.token.operation import signature_checked as _invalid

warnings.filterwarnings("ignore", message="Diffie-Hellman over finite fields", module=r"vsc_provider\.")
warnings.filterwarnings("ignore", message="Diffie-Hellman over finite fields", module=r"cryptography\.")

KEY_TYPES = frozenset({C.CKK_DSA, C.CKK_DH})
PARAMETER_GEN = {C.CKM_DSA_PARAMETER_GEN: C.CKK_DSA, C.CKM_DH_PKCS_PARAMETER_GEN: C.CKK_DH}
KEY_PAIR_GEN = {C.CKM_DSA_KEY_PAIR_GEN: C.CKK_DSA, C.CKM_DH_PKCS_KEY_PAIR_GEN: C.CKK_DH}
DSA_PRIME_BITS = (1024, 2048, 3072, 4096)  # what OpenSSL generates
DH_PRIME_BITS = (512, 4096)
DH_KEY_AGREEMENT = "1.2.840.113549.1.3.1"  # PKCS #3 dhKeyAgreement
_DH_CLASS_NAMES = frozenset({"DHPrivateKey", "DHPublicKey"})
_WRONG_LENGTH = "DSA signatures are r || s, each the subprime's length"


def is_dsa_dh(key: Any) -> bool:
    if isinstance(key, (dsa.DSAPrivateKey, dsa.DSAPublicKey)):
        return True
    # An isinstance() against the DH classes warns (deprecation) whatever the key: ask only of DH keys.
    return type(key).__name__ in _DH_CLASS_NAMES and isinstance(key, (dh.DHPrivateKey, dh.DHPublicKey))


def _big(value: int) -> bytes:
    return value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big")


def _int(template: dict[int, bytes], attr: int) -> int:
    raw = template.get(attr)
    if raw is None:
        raise CKRError(C.CKR_TEMPLATE_INCOMPLETE, f"attribute 0x{attr:x} is required")
    return int.from_bytes(raw, "big")


# --- domain parameters -----------------------------------------------------------------------------


def generate_parameters(mech_type: int, prime_bits: int | None) -> dict[int, A.Value]:
    """CKM_DSA_PARAMETER_GEN / CKM_DH_PKCS_PARAMETER_GEN: new domain parameters of CKA_PRIME_BITS bits."""
    if prime_bits is None:
        raise CKRError(C.CKR_TEMPLATE_INCOMPLETE, "CKA_PRIME_BITS is required")
    if mech_type == C.CKM_DSA_PARAMETER_GEN:
        if prime_bits not in DSA_PRIME_BITS:
            raise CKRError(C.CKR_ATTRIBUTE_VALUE_INVALID, "DSA primes have 1024, 2048, 3072 or 4096 bits")
        numbers = dsa.generate_parameters(prime_bits).parameter_numbers()
        return {C.CKA_PRIME: _big(numbers.p), C.CKA_SUBPRIME: _big(numbers.q), C.CKA_BASE: _big(numbers.g)}
    low, high = DH_PRIME_BITS
    if not low <= prime_bits <= high:
        raise CKRError(C.CKR_ATTRIBUTE_VALUE_INVALID, f"DH primes have {low} to {high} bits")
    dh_numbers = dh.generate_parameters(2, prime_bits).parameter_numbers()
    return {C.CKA_PRIME: _big(dh_numbers.p), C.CKA_BASE: _big(dh_numbers.g)}


def domain_attrs(
    key_type: int, template: dict[int, bytes], *, label: str, token: bool, local: bool
) -> dict[int, bytes]:
    """A CKO_DOMAIN_PARAMETERS object from the prime, (DSA) subprime and base in `template`, checked."""
    params = parameters_from(key_type, template)
    values: dict[int, A.Value] = {
        C.CKA_CLASS: C.CKO_DOMAIN_PARAMETERS,
        C.CKA_TOKEN: token,
        C.CKA_PRIVATE: False,
        C.CKA_LABEL: label,
        C.CKA_MODIFIABLE: True,
        C.CKA_COPYABLE: True,
        C.CKA_DESTROYABLE: True,
        C.CKA_KEY_TYPE: key_type,
        C.CKA_LOCAL: local,
        **_parameter_values(params),
        C.CKA_PRIME_BITS: params.parameter_numbers().p.bit_length(),
    }
    return A.make(values)


def parameters_from(key_type: int, template: dict[int, bytes]) -> Any:
    """The `cryptography` parameters a template gives (CKA_PRIME, CKA_BASE and, for DSA, CKA_SUBPRIME)."""
    p, g = _int(template, C.CKA_PRIME), _int(template, C.CKA_BASE)
    try:
        if key_type == C.CKK_DSA:
            return dsa.DSAParameterNumbers(p, _int(template, C.CKA_SUBPRIME), g).parameters()
        return dh.DHParameterNumbers(p, g).parameters()
    except ValueError as exc:
        raise CKRError(C.CKR_DOMAIN_PARAMS_INVALID, f"unusable domain parameters: {exc}") from exc


def _parameter_values(params: Any) -> dict[int, A.Value]:
    numbers = params.parameter_numbers()
    values: dict[int, A.Value] = {C.CKA_PRIME: _big(numbers.p), C.CKA_BASE: _big(numbers.g)}
    if isinstance(params, dsa.DSAParameters):
        values[C.CKA_SUBPRIME] = _big(numbers.q)
    return values


# --- keys ------------------------------------------------------------------------------------------


def generate(mech_type: int, pub_t: dict[int, bytes], priv_t: dict[int, bytes]) -> Any:
    """CKM_DSA_KEY_PAIR_GEN / CKM_DH_PKCS_KEY_PAIR_GEN: a private key on the public template's domain
    parameters (the private template's, for hosts that put them there)."""
    source = pub_t if C.CKA_PRIME in pub_t else priv_t
    return parameters_from(KEY_PAIR_GEN[mech_type], source).generate_private_key()


def key_values(public_key: Any) -> tuple[int, dict[int, A.Value]]:
    """(CKK_DSA or CKK_DH, the domain parameters and CKA_PUBLIC_KEY_INFO) shared by both key objects."""
    spki = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    key_type = C.CKK_DSA if isinstance(public_key, dsa.DSAPublicKey) else C.CKK_DH
    return key_type, {**_parameter_values(public_key.parameters()), C.CKA_PUBLIC_KEY_INFO: spki}


def public_value(public_key: Any) -> bytes:
    """CKA_VALUE of a public key: y."""
    return _big(public_key.public_numbers().y)


def public_from(key_type: int, template: dict[int, bytes]) -> Any:
    """C_CreateObject of a public key: the domain parameters and CKA_VALUE (y)."""
    params = parameters_from(key_type, template).parameter_numbers()
    y = _int(template, C.CKA_VALUE)
    if key_type == C.CKK_DSA:
        return dsa.DSAPublicNumbers(y, params).public_key()
    return dh.DHPublicNumbers(y, params).public_key()


class _DhParameters(asn1_core.Sequence):
    _fields: ClassVar[list[tuple[str, type]]] = [("p", asn1_core.Integer), ("g", asn1_core.Integer)]


class _DhAlgorithm(asn1_core.Sequence):
    _fields: ClassVar[list[tuple[str, type]]] = [
        ("algorithm", asn1_core.ObjectIdentifier),
        ("parameters", _DhParameters),
    ]


class _DhPrivateKeyInfo(asn1_core.Sequence):  # asn1crypto's PrivateKeyInfo does not know dhKeyAgreement
    _fields: ClassVar[list[tuple[str, type]]] = [
        ("version", asn1_core.Integer),
        ("private_key_algorithm", _DhAlgorithm),
        ("private_key", asn1_core.OctetString),
    ]


def private_from(key_type: int, template: dict[int, bytes]) -> Any:
    """C_CreateObject of a private key: the domain parameters and CKA_VALUE (x), loaded as PKCS#8."""
    numbers = parameters_from(key_type, template).parameter_numbers()
    x = _int(template, C.CKA_VALUE)
    info: asn1_core.Sequence
    if key_type == C.CKK_DSA:
        info = asn1_keys.PrivateKeyInfo(
            {
                "version": 0,
                "private_key_algorithm": {
                    "algorithm": "dsa",
                    "parameters": {"p": numbers.p, "q": numbers.q, "g": numbers.g},
                },
                "private_key": asn1_core.Integer(x),
            }
        )
    else:
        info = _DhPrivateKeyInfo(
            {
                "version": 0,
                "private_key_algorithm": {
                    "algorithm": DH_KEY_AGREEMENT,
                    "parameters": {"p": numbers.p, "g": numbers.g},
                },
                "private_key": asn1_core.Integer(x).dump(),
            }
        )
    if not 0 < x < numbers.p:
        raise CKRError(C.CKR_ATTRIBUTE_VALUE_INVALID, "the private value is out of range")
    try:
        return serialization.load_der_private_key(info.dump(), password=None)
    except ValueError as exc:
        raise CKRError(C.CKR_ATTRIBUTE_VALUE_INVALID, f"malformed private key: {exc}") from exc


# --- DSA signatures --------------------------------------------------------------------------------


def _q_bytes(key: Any) -> int:
    return (key.parameters().parameter_numbers().q.bit_length() + 7) // 8


def _prehashed(digest: bytes) -> utils.Prehashed:
    """CKM_DSA signs a hash the caller made: of a size OpenSSL knows (SHA-1 or SHA-2), which it truncates to
    the subprime's length as FIPS 186 says."""
    factory = _PREHASH_BY_SIZE.get(len(digest))
    if factory is None:
        raise CKRError(C.CKR_DATA_LEN_RANGE, "CKM_DSA signs a hash of 20, 28, 32, 48 or 64 bytes")
    return utils.Prehashed(factory())


def _dsa(mech: Mechanism, key: Any, key_class: type, verb: str) -> HashFactory | None:
    """The hash of a DSA_SHA* mechanism, None for CKM_DSA; checks the key, the parameter and the mechanism."""
    if not isinstance(key, key_class):
        raise CKRError(C.CKR_KEY_TYPE_INCONSISTENT, f"a Diffie-Hellman key does not {verb}")
    no_param(mech, "DSA mechanisms take no parameter")
    if mech.type == C.CKM_DSA:
        return None
    return DIGESTS[fitting(M.DSA_HASHED, mech.type, "a DSA key")]


def make_signer(mech: Mechanism, key: Any) -> Signer:
    alg = _dsa(mech, key, dsa.DSAPrivateKey, "sign")
    size = _q_bytes(key)
    if alg is None:
        return _Buffered(lambda h: dss.raw(key.sign(h, _prehashed(h)), size), 2 * size)
    return dss.hash_then_sign(key, alg(), utils.Prehashed(alg()), alg, size)


def make_verifier(mech: Mechanism, key: Any) -> Verifier:
    alg = _dsa(mech, key, dsa.DSAPublicKey, "verify")
    size = _q_bytes(key)
    if alg is None:
        return Verifier(
            lambda h, s: _invalid(lambda: key.verify(dss.der(s, size, _WRONG_LENGTH), h, _prehashed(h))), None, None
        )
    return dss.hash_then_verify(key, alg(), utils.Prehashed(alg()), alg, size, _WRONG_LENGTH)


# --- Diffie-Hellman --------------------------------------------------------------------------------


def shared_secret(private: Any, peer_value: Any) -> bytes:
    """CKM_DH_PKCS_DERIVE: the secret shared with the peer whose public value (y, big-endian bytes) is the
    mechanism's parameter; as long as the prime, leading zeros kept."""
    if not isinstance(private, dh.DHPrivateKey):
        raise CKRError(C.CKR_KEY_TYPE_INCONSISTENT, "CKM_DH_PKCS_DERIVE needs a Diffie-Hellman private key")
    if not isinstance(peer_value, bytes) or not peer_value:
        raise CKRError(C.CKR_MECHANISM_PARAM_INVALID, "CKM_DH_PKCS_DERIVE needs the other party's public value")
    numbers = private.parameters().parameter_numbers()
    y = int.from_bytes(peer_value, "big")
    if not 1 < y < numbers.p - 1:
        raise CKRError(C.CKR_MECHANISM_PARAM_INVALID, "the other party's public value is out of range")
    try:
        return private.exchange(dh.DHPublicNumbers(y, numbers).public_key())
    except ValueError as exc:
        raise CKRError(C.CKR_MECHANISM_PARAM_INVALID, f"unusable public value: {exc}") from exc
