"""The raw RSA private operation (no padding) in OpenSSL: CKM_RSA_X_509 and PKCS#1 v1.5 on arbitrary payloads.

`cryptography` only signs and decrypts with a padding of its own, so this binds the system libcrypto (the one
CPython's _hashlib has loaded into this process: OpenSSL 3) with cffi in ABI mode and calls
EVP_PKEY_sign / EVP_PKEY_decrypt with RSA_NO_PADDING. OpenSSL blinds the operation and checks the CRT result
against the public exponent; the private key never becomes Python integers. The key is parsed once per
prepared key; each call takes a context of its own, so one prepared key serves several threads.
"""

from __future__ import annotations

import _hashlib  # noqa: F401  (loads and initialises the system libcrypto first)
import ctypes.util
from typing import Any

from cffi import FFI
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from vsc_provider.ck import constants as C
from vsc_provider.ck.errors import CKRError

_ffi = FFI()
_ffi.cdef(
    """
    typedef struct evp_pkey_st EVP_PKEY;
    typedef struct evp_pkey_ctx_st EVP_PKEY_CTX;
    typedef struct rsa_st RSA;
    unsigned long OpenSSL_version_num(void);
    EVP_PKEY *d2i_AutoPrivateKey(EVP_PKEY **a, const unsigned char **pp, long length);
    void EVP_PKEY_free(EVP_PKEY *pkey);
    EVP_PKEY_CTX *EVP_PKEY_CTX_new(EVP_PKEY *pkey, void *engine);
    void EVP_PKEY_CTX_free(EVP_PKEY_CTX *ctx);
    int EVP_PKEY_sign_init(EVP_PKEY_CTX *ctx);
    int EVP_PKEY_sign(EVP_PKEY_CTX *ctx, unsigned char *sig, size_t *siglen, const unsigned char *tbs, size_t tbslen);
    int EVP_PKEY_decrypt_init(EVP_PKEY_CTX *ctx);
    int EVP_PKEY_decrypt(EVP_PKEY_CTX *ctx, unsigned char *out, size_t *outlen, const unsigned char *in, size_t inlen);
    int EVP_PKEY_CTX_set_rsa_padding(EVP_PKEY_CTX *ctx, int pad);
    const RSA *EVP_PKEY_get0_RSA(const EVP_PKEY *pkey);
    int RSA_test_flags(const RSA *r, int flags);
    void ERR_clear_error(void);
    """
)
RSA_NO_PADDING = 3
RSA_FLAG_NO_BLINDING = 0x80
_NAMES = ("libcrypto.so.3", "libcrypto.3.dylib")


def _load() -> Any:
    """The libcrypto already in the process (RTLD_NOLOAD), else the system's; OpenSSL 3 is required."""
    lib = None
    for name in _NAMES:
        try:
            lib = _ffi.dlopen(name, _ffi.RTLD_NOLOAD | _ffi.RTLD_LAZY)
            break
        except OSError:
            continue
    if lib is None:
        found = ctypes.util.find_library("crypto")
        if found is None:
            raise ImportError("libcrypto (OpenSSL 3) not found")
        lib = _ffi.dlopen(found)
    if lib.OpenSSL_version_num() < 0x30000000:
        raise ImportError(f"libcrypto 0x{lib.OpenSSL_version_num():x} is older than OpenSSL 3")
    return lib


_lib = _load()


def _failed(what: str) -> CKRError:
    _lib.ERR_clear_error()  # leave nothing of ours in the (host's) OpenSSL error queue
    return CKRError(C.CKR_FUNCTION_FAILED, f"OpenSSL {what} failed")


class RsaRaw:
    """The raw RSA private operation on blocks of exactly the modulus' length, as OpenSSL does it."""

    def __init__(self, key: rsa.RSAPrivateKey) -> None:
        self.size = (key.key_size + 7) // 8
        self._modulus = key.public_key().public_numbers().n.to_bytes(self.size, "big")
        der = key.private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        source = _ffi.new("unsigned char[]", der)
        cursor = _ffi.new("const unsigned char **", source)
        pkey = _lib.d2i_AutoPrivateKey(_ffi.NULL, cursor, len(der))
        _ffi.memmove(source, b"\x00" * len(der), len(der))
        if pkey == _ffi.NULL:
            raise _failed("key import")
        self._pkey = _ffi.gc(pkey, _lib.EVP_PKEY_free)

    def blinding(self) -> bool:
        """Whether OpenSSL blinds this key's private operation (its default; nothing here turns it off)."""
        return not _lib.RSA_test_flags(_lib.EVP_PKEY_get0_RSA(self._pkey), RSA_FLAG_NO_BLINDING)

    def _run(self, block: bytes, decrypt: bool) -> bytes:
        if len(block) != self.size:
            raise CKRError(C.CKR_DATA_LEN_RANGE, "raw RSA input must be as long as the modulus")
        if block >= self._modulus:  # equal lengths: byte order is numeric order
            code = C.CKR_ENCRYPTED_DATA_INVALID if decrypt else C.CKR_DATA_INVALID
            raise CKRError(code, "input is not smaller than the modulus")
        ctx = _lib.EVP_PKEY_CTX_new(self._pkey, _ffi.NULL)
        if ctx == _ffi.NULL:
            raise _failed("context")
        try:
            out = _ffi.new("unsigned char[]", self.size)
            n = _ffi.new("size_t *", self.size)
            if decrypt:
                ok = _lib.EVP_PKEY_decrypt_init(ctx) > 0 and _lib.EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_NO_PADDING) > 0
                ok = ok and _lib.EVP_PKEY_decrypt(ctx, out, n, block, len(block)) > 0
            else:
                ok = _lib.EVP_PKEY_sign_init(ctx) > 0 and _lib.EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_NO_PADDING) > 0
                ok = ok and _lib.EVP_PKEY_sign(ctx, out, n, block, len(block)) > 0
        finally:
            _lib.EVP_PKEY_CTX_free(ctx)
        if not ok or n[0] != self.size:
            raise _failed("RSA private operation")
        return _ffi.buffer(out, self.size)[:]

    def sign(self, block: bytes) -> bytes:
        """CKM_RSA_X_509 signature (and the PKCS#1 v1.5 block of CKM_RSA_PKCS) of a modulus-length block."""
        return self._run(block, decrypt=False)

    def decrypt(self, block: bytes) -> bytes:
        """CKM_RSA_X_509 decryption of a modulus-length ciphertext."""
        return self._run(block, decrypt=True)

    def sign_pkcs1(self, payload: bytes) -> bytes:
        if len(payload) > self.size - 11:
            raise CKRError(C.CKR_DATA_LEN_RANGE, "payload too long for PKCS#1 v1.5")
        return self.sign(b"\x00\x01" + b"\xff" * (self.size - 3 - len(payload)) + b"\x00" + payload)


def rsa_public_raw(key: rsa.RSAPublicKey, block: bytes) -> bytes:
    """The raw public operation (verifying CKM_RSA_X_509 and CKM_RSA_PKCS, encrypting CKM_RSA_X_509)."""
    n = key.public_numbers()
    size = (key.key_size + 7) // 8
    value = int.from_bytes(block, "big")
    if len(block) > size or value >= n.n:
        raise CKRError(C.CKR_DATA_LEN_RANGE, "input is not smaller than the modulus")
    return pow(value, n.e, n.n).to_bytes(size, "big")
