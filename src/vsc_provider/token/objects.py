"""Token objects as a process sees them, and the rules on their attributes by key type and class (which may
never be read back, which may change after creation).

Attributes are kept as raw PKCS#11 bytes (see vsc_provider.ck.attributes). Key material is never an
attribute: token objects keep it sealed under the card's data key, session objects in memory. The attribute
sets a new object gets are built in key_attrs.py (keys) and object_attrs.py (certificates, data, profiles).
"""

from __future__ import annotations

import builtins

from vsc_provider.ck import attributes as A
from vsc_provider.ck import constants as C


class TokenObject:
    """One object as this process sees it. `secret` is sealed key material (token objects); `material` is
    plaintext key material for session objects, which never leave the process."""

    __slots__ = ("attrs", "handle", "klass", "material", "owner", "private", "secret", "uid")

    def __init__(
        self,
        handle: int,
        uid: bytes,
        attrs: dict[int, bytes],
        secret: bytes | None = None,
        material: bytes | None = None,
        owner: int = 0,
    ) -> None:
        self.handle = handle
        self.uid = uid
        self.attrs = attrs
        self.secret = secret
        self.material = material
        self.owner = owner  # session handle for session objects, 0 for token objects
        self.klass = A.get_ulong(attrs, C.CKA_CLASS, C.CKO_DATA)
        self.private = A.get_bool(attrs, C.CKA_PRIVATE)

    def bool(self, attr: int, default: bool = False) -> bool:
        return A.get_bool(self.attrs, attr, default)

    def ulong(self, attr: int) -> int | None:
        return A.get_ulong(self.attrs, attr)

    @property
    def is_token(self) -> builtins.bool:
        return self.owner == 0

    @property
    def key_type(self) -> int | None:
        return self.ulong(C.CKA_KEY_TYPE)

    def matches(self, template: dict[int, bytes]) -> builtins.bool:
        attrs = self.attrs
        for attr, value in template.items():
            if attrs.get(attr) != value:
                return False
        return True


# Post-quantum key types (PKCS#11 3.2), whose algorithms live in vsc_provider.token.pqc.
PQ_KEY_TYPES = frozenset({C.CKK_ML_DSA, C.CKK_ML_KEM})
# DSA and Diffie-Hellman (compatible cards only), in vsc_provider.token.dsa_dh.
DSA_DH_KEY_TYPES = frozenset({C.CKK_DSA, C.CKK_DH})

# Attributes a caller may never read back, whatever the object says.
# The private parts of an RSA key.
RSA_PRIVATE_PARTS = frozenset(
    {C.CKA_PRIVATE_EXPONENT, C.CKA_PRIME_1, C.CKA_PRIME_2, C.CKA_EXPONENT_1, C.CKA_EXPONENT_2, C.CKA_COEFFICIENT}
)
NEVER_READABLE = frozenset({*RSA_PRIVATE_PARTS, C.CKA_SEED})  # CKA_SEED: of ML-DSA and ML-KEM private keys

# Attributes that may change after creation (C_SetAttributeValue), by class.
MODIFIABLE = frozenset(
    {
        C.CKA_LABEL,
        C.CKA_ID,
        C.CKA_SUBJECT,
        C.CKA_START_DATE,
        C.CKA_END_DATE,
        C.CKA_APPLICATION,
        C.CKA_OBJECT_ID,
        C.CKA_ALWAYS_AUTHENTICATE,
        C.CKA_ENCRYPT,
        C.CKA_DECRYPT,
        C.CKA_SIGN,
        C.CKA_VERIFY,
        C.CKA_SIGN_RECOVER,
        C.CKA_VERIFY_RECOVER,
        C.CKA_WRAP,
        C.CKA_UNWRAP,
        C.CKA_DERIVE,
        C.CKA_SENSITIVE,  # only false -> true (checked by the caller)
        C.CKA_EXTRACTABLE,  # only true -> false
        C.CKA_CERTIFICATE_CATEGORY,
        C.CKA_TRUSTED,  # only the SO may set it (checked by the engine)
        C.CKA_WRAP_WITH_TRUSTED,  # only false -> true
        C.CKA_ENCAPSULATE,
        C.CKA_DECAPSULATE,
    }
)
