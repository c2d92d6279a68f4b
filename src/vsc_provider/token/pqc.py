"""Post-quantum keys (PKCS#11 3.2): ML-DSA signatures (FIPS 204) and ML-KEM key encapsulation (FIPS 203).

Parameter sets as CKA_PARAMETER_SET names them, mapped to the `cryptography` key classes that implement
them. Private keys are stored as `cryptography` serialises them (PKCS#8 holding the seed), like every other
private key on the card; ML-KEM-512 is not offered by `cryptography` and so not by the card.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from cryptography.hazmat.primitives.asymmetric import mldsa, mlkem

from vsc_provider.ck import constants as C
from vsc_provider.ck.errors import CKRError
from vsc_provider.ck.params import Mechanism, SignContextParams
from vsc_provider.token.operation import Signer, Verifier
from vsc_provider.token.operation import signature_checked as _invalid


class ParameterSet(NamedTuple):
    key_type: int
    value: int  # the CKP_ value
    name: str
    private: Any  # the `cryptography` private key class
    public: Any
    output: int  # signature (ML-DSA) or ciphertext (ML-KEM) length in bytes
    seed: int  # the seed's length: what private_bytes_raw() gives and from_seed_bytes() takes


PARAMETER_SETS: tuple[ParameterSet, ...] = (
    ParameterSet(C.CKK_ML_DSA, C.CKP_ML_DSA_44, "ML-DSA-44", mldsa.MLDSA44PrivateKey, mldsa.MLDSA44PublicKey, 2420, 32),
    ParameterSet(C.CKK_ML_DSA, C.CKP_ML_DSA_65, "ML-DSA-65", mldsa.MLDSA65PrivateKey, mldsa.MLDSA65PublicKey, 3309, 32),
    ParameterSet(C.CKK_ML_DSA, C.CKP_ML_DSA_87, "ML-DSA-87", mldsa.MLDSA87PrivateKey, mldsa.MLDSA87PublicKey, 4627, 32),
    ParameterSet(
        C.CKK_ML_KEM, C.CKP_ML_KEM_768, "ML-KEM-768", mlkem.MLKEM768PrivateKey, mlkem.MLKEM768PublicKey, 1088, 64
    ),
    ParameterSet(
        C.CKK_ML_KEM, C.CKP_ML_KEM_1024, "ML-KEM-1024", mlkem.MLKEM1024PrivateKey, mlkem.MLKEM1024PublicKey, 1568, 64
    ),
)
_BY_VALUE = {(p.key_type, p.value): p for p in PARAMETER_SETS}
_DEFINED = {C.CKK_ML_DSA: {C.CKP_ML_DSA_44, C.CKP_ML_DSA_65, C.CKP_ML_DSA_87}, C.CKK_ML_KEM: {1, 2, 3}}
KEY_TYPE_OF_GEN = {C.CKM_ML_DSA_KEY_PAIR_GEN: C.CKK_ML_DSA, C.CKM_ML_KEM_KEY_PAIR_GEN: C.CKK_ML_KEM}
SHARED_SECRET_LEN = 32
MAX_CONTEXT = 255


def parameter_set(key_type: int, value: int | None) -> ParameterSet:
    """The parameter set a template names; defined but unimplemented sets (ML-KEM-512) are told apart."""
    if value is None:
        raise CKRError(C.CKR_TEMPLATE_INCOMPLETE, "CKA_PARAMETER_SET is required")
    found = _BY_VALUE.get((key_type, value))
    if found is not None:
        return found
    if value in _DEFINED.get(key_type, ()):
        raise CKRError(C.CKR_PARAMETER_SET_NOT_SUPPORTED, f"parameter set {value} is not offered (ML-KEM-512)")
    raise CKRError(C.CKR_ATTRIBUTE_VALUE_INVALID, f"unknown CKA_PARAMETER_SET {value}")


def of_key(key: Any) -> ParameterSet | None:
    """The parameter set of a `cryptography` private or public key, None for a key that is not post-quantum."""
    for p in PARAMETER_SETS:
        if isinstance(key, (p.private, p.public)):
            return p
    return None


def is_pq(key: Any) -> bool:
    return of_key(key) is not None


def _known(key: Any) -> ParameterSet:
    p = of_key(key)
    if p is None:
        raise CKRError(C.CKR_KEY_TYPE_INCONSISTENT, "not a post-quantum key")
    return p


def generate(p: ParameterSet) -> Any:
    return p.private.generate()


def key_values(public_key: Any) -> tuple[int, dict[int, Any]]:
    """(CKK_ type, type-specific attributes) shared by the public and private key objects of one key."""
    from cryptography.hazmat.primitives import serialization

    p = _known(public_key)
    spki = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    values: dict[int, Any] = {C.CKA_PARAMETER_SET: p.value, C.CKA_PUBLIC_KEY_INFO: spki}
    return p.key_type, values


def public_value(public_key: Any) -> bytes:
    """CKA_VALUE of a public key object: the encoded public key of FIPS 203/204."""
    return bytes(public_key.public_bytes_raw())


def public_from_value(key_type: int, value: int | None, raw: bytes) -> Any:
    p = parameter_set(key_type, value)
    try:
        return p.public.from_public_bytes(raw)
    except ValueError as exc:
        raise CKRError(C.CKR_ATTRIBUTE_VALUE_INVALID, f"CKA_VALUE is not an {p.name} public key") from exc


def private_from_seed(key_type: int, value: int | None, seed: bytes) -> Any:
    """A private key given as its seed (CKA_SEED): the form `cryptography` can import."""
    p = parameter_set(key_type, value)
    if len(seed) != p.seed:
        raise CKRError(C.CKR_ATTRIBUTE_VALUE_INVALID, f"an {p.name} seed has {p.seed} bytes")
    return p.private.from_seed_bytes(seed)


# --- ML-DSA ------------------------------------------------------------------------------------


def _context(mech: Mechanism, signing: bool) -> bytes | None:
    param = mech.param
    if param is None:
        return None
    if not isinstance(param, SignContextParams):
        raise CKRError(C.CKR_MECHANISM_PARAM_INVALID, "CKM_ML_DSA takes a CK_SIGN_ADDITIONAL_CONTEXT")
    if param.hedge not in (C.CKH_HEDGE_PREFERRED, C.CKH_HEDGE_REQUIRED, C.CKH_DETERMINISTIC_REQUIRED):
        raise CKRError(C.CKR_MECHANISM_PARAM_INVALID, f"unknown hedgeVariant {param.hedge}")
    if signing and param.hedge == C.CKH_DETERMINISTIC_REQUIRED:
        # `cryptography` signs hedged only (fresh randomness per signature): deterministic cannot be given.
        raise CKRError(C.CKR_MECHANISM_PARAM_INVALID, "deterministic ML-DSA signing is not available")
    if len(param.context) > MAX_CONTEXT:
        raise CKRError(C.CKR_MECHANISM_PARAM_INVALID, "an ML-DSA context has at most 255 bytes")
    return param.context or None


def _ml_dsa(mech: Mechanism, key: Any) -> ParameterSet:
    p = _known(key)
    if p.key_type != C.CKK_ML_DSA or mech.type != C.CKM_ML_DSA:
        raise CKRError(C.CKR_KEY_TYPE_INCONSISTENT, "an ML-DSA key signs with CKM_ML_DSA")
    return p


class MlDsaSigner(Signer):
    """Pure ML-DSA signs the whole message: multi-part input is collected, then signed once."""

    def __init__(self, key: Any, context: bytes | None, length: int) -> None:
        super().__init__()
        self._key = key
        self._context = context
        self.length = length

    def sign(self, data: bytes) -> bytes:
        return bytes(self._key.sign(data, self._context))


def make_signer(mech: Mechanism, key: Any) -> Signer:
    p = _ml_dsa(mech, key)
    return MlDsaSigner(key, _context(mech, signing=True), p.output)


def make_verifier(mech: Mechanism, key: Any) -> Verifier:
    p = _ml_dsa(mech, key)
    context = _context(mech, signing=False)

    def check(data: bytes, signature: bytes) -> None:
        if len(signature) != p.output:
            raise CKRError(C.CKR_SIGNATURE_LEN_RANGE, f"{p.name} signatures have {p.output} bytes")
        _invalid(lambda: key.verify(signature, data, context))

    return Verifier(check, None, None)


# --- ML-KEM ------------------------------------------------------------------------------------


def _ml_kem(mech: Mechanism, key: Any) -> ParameterSet:
    if mech.type != C.CKM_ML_KEM:
        raise CKRError(C.CKR_MECHANISM_INVALID, f"mechanism 0x{mech.type:x} does not encapsulate")
    if mech.param is not None:
        raise CKRError(C.CKR_MECHANISM_PARAM_INVALID, "CKM_ML_KEM takes no parameter")
    p = of_key(key)
    if p is None or p.key_type != C.CKK_ML_KEM:
        raise CKRError(C.CKR_KEY_TYPE_INCONSISTENT, "CKM_ML_KEM needs an ML-KEM key")
    return p


def ciphertext_length(mech: Mechanism, public_key: Any) -> int:
    return _ml_kem(mech, public_key).output


def encapsulate(mech: Mechanism, public_key: Any) -> tuple[bytes, bytes]:
    """(shared secret, ciphertext) for a fresh secret under the public key."""
    _ml_kem(mech, public_key)
    secret, ciphertext = public_key.encapsulate()
    return bytes(secret), bytes(ciphertext)


def decapsulate(mech: Mechanism, private_key: Any, ciphertext: bytes) -> bytes:
    """The shared secret in a ciphertext. ML-KEM rejects implicitly: a forged ciphertext of the right
    length gives an unrelated secret, not an error."""
    p = _ml_kem(mech, private_key)
    if len(ciphertext) != p.output:
        raise CKRError(C.CKR_WRAPPED_KEY_LEN_RANGE, f"{p.name} ciphertexts have {p.output} bytes")
    try:
        return bytes(private_key.decapsulate(ciphertext))
    except ValueError as exc:
        raise CKRError(C.CKR_WRAPPED_KEY_INVALID, "ciphertext does not decapsulate") from exc
