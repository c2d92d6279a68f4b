"""The mechanisms the token offers and what each one is made of, in PKCS#11 terms only.

This is what C_GetMechanismList/C_GetMechanismInfo and the *Init checks need. It imports nothing from
`cryptography`, so a host that only loads the module and lists slots (p11-kit's proxy does that in every
program that uses it) never pays for loading `cryptography`; `vsc_provider.token.crypto` is imported at the
first operation.
"""

from __future__ import annotations

from vsc_provider.ck import constants as C

DIGEST_MECHS = (
    C.CKM_SHA_1,
    C.CKM_SHA224,
    C.CKM_SHA256,
    C.CKM_SHA384,
    C.CKM_SHA512,
    C.CKM_SHA3_224,
    C.CKM_SHA3_256,
    C.CKM_SHA3_384,
    C.CKM_SHA3_512,
)

# Combined mechanisms -> the digest mechanism they hash with.
RSA_PKCS_HASHED = {
    C.CKM_SHA1_RSA_PKCS: C.CKM_SHA_1,
    C.CKM_SHA224_RSA_PKCS: C.CKM_SHA224,
    C.CKM_SHA256_RSA_PKCS: C.CKM_SHA256,
    C.CKM_SHA384_RSA_PKCS: C.CKM_SHA384,
    C.CKM_SHA512_RSA_PKCS: C.CKM_SHA512,
}
RSA_PSS_HASHED = {
    C.CKM_SHA1_RSA_PKCS_PSS: C.CKM_SHA_1,
    C.CKM_SHA224_RSA_PKCS_PSS: C.CKM_SHA224,
    C.CKM_SHA256_RSA_PKCS_PSS: C.CKM_SHA256,
    C.CKM_SHA384_RSA_PKCS_PSS: C.CKM_SHA384,
    C.CKM_SHA512_RSA_PKCS_PSS: C.CKM_SHA512,
}
ECDSA_HASHED = {
    C.CKM_ECDSA_SHA1: C.CKM_SHA_1,
    C.CKM_ECDSA_SHA224: C.CKM_SHA224,
    C.CKM_ECDSA_SHA256: C.CKM_SHA256,
    C.CKM_ECDSA_SHA384: C.CKM_SHA384,
    C.CKM_ECDSA_SHA512: C.CKM_SHA512,
}
HMACS = {
    C.CKM_SHA_1_HMAC: C.CKM_SHA_1,
    C.CKM_SHA224_HMAC: C.CKM_SHA224,
    C.CKM_SHA256_HMAC: C.CKM_SHA256,
    C.CKM_SHA384_HMAC: C.CKM_SHA384,
    C.CKM_SHA512_HMAC: C.CKM_SHA512,
    C.CKM_SHA3_224_HMAC: C.CKM_SHA3_224,
    C.CKM_SHA3_256_HMAC: C.CKM_SHA3_256,
    C.CKM_SHA3_384_HMAC: C.CKM_SHA3_384,
    C.CKM_SHA3_512_HMAC: C.CKM_SHA3_512,
}
# AES MACs -> (default MAC length in bytes, takes a CK_MAC_GENERAL_PARAMS length)
AES_MACS = {
    C.CKM_AES_MAC: (8, False),
    C.CKM_AES_MAC_GENERAL: (8, True),
    C.CKM_AES_CMAC: (16, False),
    C.CKM_AES_CMAC_GENERAL: (16, True),
}
# Secret-key derivations (besides ECDH), see vsc_provider.token.derive
SECRET_DERIVATIONS = (
    C.CKM_AES_ECB_ENCRYPT_DATA,
    C.CKM_AES_CBC_ENCRYPT_DATA,
    C.CKM_CONCATENATE_BASE_AND_KEY,
    C.CKM_CONCATENATE_BASE_AND_DATA,
    C.CKM_CONCATENATE_DATA_AND_BASE,
    C.CKM_XOR_BASE_AND_DATA,
    C.CKM_EXTRACT_KEY_FROM_KEY,
    C.CKM_HKDF_DERIVE,
)

_F_RSA = C.CKF_SIGN | C.CKF_VERIFY
_F_RECOVER = C.CKF_SIGN_RECOVER | C.CKF_VERIFY_RECOVER
_F_EC = C.CKF_EC_F_P | C.CKF_EC_NAMED_CURVE | C.CKF_EC_UNCOMPRESS
_F_AES = C.CKF_ENCRYPT | C.CKF_DECRYPT
# mechanism -> (min key size, max key size, CKF_ flags), as C_GetMechanismInfo reports them
MECHANISMS: dict[int, tuple[int, int, int]] = {
    C.CKM_RSA_PKCS_KEY_PAIR_GEN: (2048, 4096, C.CKF_GENERATE_KEY_PAIR),
    C.CKM_RSA_PKCS: (2048, 4096, _F_RSA | _F_RECOVER | C.CKF_ENCRYPT | C.CKF_DECRYPT | C.CKF_WRAP | C.CKF_UNWRAP),
    C.CKM_RSA_X_509: (2048, 4096, _F_RSA | _F_RECOVER | C.CKF_ENCRYPT | C.CKF_DECRYPT),
    C.CKM_RSA_PKCS_OAEP: (2048, 4096, C.CKF_ENCRYPT | C.CKF_DECRYPT | C.CKF_WRAP | C.CKF_UNWRAP),
    C.CKM_RSA_PKCS_PSS: (2048, 4096, _F_RSA),
    **{m: (2048, 4096, _F_RSA) for m in RSA_PKCS_HASHED},
    **{m: (2048, 4096, _F_RSA) for m in RSA_PSS_HASHED},
    C.CKM_EC_KEY_PAIR_GEN: (256, 521, C.CKF_GENERATE_KEY_PAIR | _F_EC),
    C.CKM_ECDSA: (256, 521, C.CKF_SIGN | C.CKF_VERIFY | _F_EC),
    **{m: (256, 521, C.CKF_SIGN | C.CKF_VERIFY | _F_EC) for m in ECDSA_HASHED},
    C.CKM_ECDH1_DERIVE: (256, 521, C.CKF_DERIVE | _F_EC),
    C.CKM_EC_EDWARDS_KEY_PAIR_GEN: (255, 448, C.CKF_GENERATE_KEY_PAIR),
    C.CKM_EDDSA: (255, 448, C.CKF_SIGN | C.CKF_VERIFY),
    C.CKM_AES_KEY_GEN: (16, 32, C.CKF_GENERATE),
    C.CKM_AES_ECB: (16, 32, _F_AES | C.CKF_WRAP | C.CKF_UNWRAP),
    C.CKM_AES_CBC: (16, 32, _F_AES | C.CKF_WRAP | C.CKF_UNWRAP),
    C.CKM_AES_CBC_PAD: (16, 32, _F_AES | C.CKF_WRAP | C.CKF_UNWRAP),
    C.CKM_AES_GCM: (16, 32, _F_AES),
    C.CKM_AES_CTR: (16, 32, _F_AES),
    **{m: (16, 32, C.CKF_SIGN | C.CKF_VERIFY) for m in AES_MACS},
    **{m: (1, 512, C.CKF_DERIVE) for m in SECRET_DERIVATIONS},
    C.CKM_AES_KEY_WRAP: (16, 32, _F_AES | C.CKF_WRAP | C.CKF_UNWRAP),
    C.CKM_AES_KEY_WRAP_PAD: (16, 32, _F_AES | C.CKF_WRAP | C.CKF_UNWRAP),
    C.CKM_AES_KEY_WRAP_KWP: (16, 32, _F_AES | C.CKF_WRAP | C.CKF_UNWRAP),
    C.CKM_GENERIC_SECRET_KEY_GEN: (1, 512, C.CKF_GENERATE),
    **{m: (0, 0, C.CKF_DIGEST) for m in DIGEST_MECHS},
    **{m: (1, 512, C.CKF_SIGN | C.CKF_VERIFY) for m in HMACS},
    # Post-quantum (3.2): key sizes are the public keys' lengths in bytes (ML-DSA-44..87, ML-KEM-768..1024).
    C.CKM_ML_DSA_KEY_PAIR_GEN: (1312, 2592, C.CKF_GENERATE_KEY_PAIR),
    C.CKM_ML_DSA: (1312, 2592, C.CKF_SIGN | C.CKF_VERIFY),
    C.CKM_ML_KEM_KEY_PAIR_GEN: (1184, 1568, C.CKF_GENERATE_KEY_PAIR),
    C.CKM_ML_KEM: (1184, 1568, C.CKF_ENCAPSULATE | C.CKF_DECAPSULATE),
    # One-time passwords (token/otp.py): secrets of 1 to 128 bytes.
    C.CKM_HOTP: (1, 128, C.CKF_SIGN),
    C.CKM_VSC_TOTP: (1, 128, C.CKF_SIGN),
}

# DSA and PKCS #3 Diffie-Hellman: offered on compatible cards only (CardPolicy.legacy), for test rigs that
# exercise them; strict cards neither list them nor accept them. Key sizes are the prime's bits.
DSA_HASHED = {
    C.CKM_DSA_SHA1: C.CKM_SHA_1,
    C.CKM_DSA_SHA224: C.CKM_SHA224,
    C.CKM_DSA_SHA256: C.CKM_SHA256,
    C.CKM_DSA_SHA384: C.CKM_SHA384,
    C.CKM_DSA_SHA512: C.CKM_SHA512,
}
LEGACY_MECHANISMS: dict[int, tuple[int, int, int]] = {
    C.CKM_DSA_PARAMETER_GEN: (1024, 4096, C.CKF_GENERATE),
    C.CKM_DSA_KEY_PAIR_GEN: (1024, 4096, C.CKF_GENERATE_KEY_PAIR),
    C.CKM_DSA: (1024, 4096, C.CKF_SIGN | C.CKF_VERIFY),
    **{m: (1024, 4096, C.CKF_SIGN | C.CKF_VERIFY) for m in DSA_HASHED},
    C.CKM_DH_PKCS_PARAMETER_GEN: (512, 4096, C.CKF_GENERATE),
    C.CKM_DH_PKCS_KEY_PAIR_GEN: (512, 4096, C.CKF_GENERATE_KEY_PAIR),
    C.CKM_DH_PKCS_DERIVE: (512, 4096, C.CKF_DERIVE),
}
