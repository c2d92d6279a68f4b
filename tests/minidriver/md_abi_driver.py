"""A CSP written in Python over the minidriver library's C ABI (cffi ABI mode): the calls md_host.c does not
make (files and directories, key import, ECDH agreement and KDF, PSS, raw RSA decryption, PIN change and
unblock, container properties, property writes, container deletion). Run in a child process by
test_md_library_calls.py; each check raises AssertionError with what it saw, and the last line printed is
"all-ok"."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils

from vsc_provider.minidriver import errors as E
from vsc_provider.minidriver import layouts as L

ROOT = Path(__file__).resolve().parents[2]
ROLE_USER, ROLE_ADMIN = 1, 2
AT_KEYEXCHANGE, AT_SIGNATURE, AT_ECDHE_P256 = 1, 2, 6
KEY_GEN, KEY_IMPORT = 1, 2
CARD_PADDING_INFO_PRESENT, CARD_PADDING_PSS = 0x40000000, 4


class Csp:
    def __init__(self, library: str) -> None:
        import cffi

        self.ffi = ffi = cffi.FFI()
        ffi.cdef((ROOT / "native" / "cardmod_types.h").read_text())
        ffi.cdef("DWORD CardAcquireContext(PCARD_DATA, DWORD); void *malloc(size_t); void *realloc(void *, size_t);")
        ffi.cdef("void free(void *);")
        self.lib = ffi.dlopen(library)
        self.libc = ffi.dlopen(None)
        self.keep: list[Any] = []
        cd = self.cd = ffi.new("CARD_DATA *")
        cd.dwVersion = 7
        cd.pbAtr = self.mem("BYTE[]", b"\x3b\x80\x80\x01\x01")
        cd.cbAtr = 5
        cd.pwszCardName = self.mem("WCHAR[]", "vsc-provider card")
        cd.pfnCspAlloc = ffi.addressof(self.libc, "malloc")
        cd.pfnCspReAlloc = ffi.addressof(self.libc, "realloc")
        cd.pfnCspFree = ffi.addressof(self.libc, "free")
        expect("acquire", self.lib.CardAcquireContext(cd, 0), 0)

    def mem(self, ctype: str, init: Any) -> Any:
        p = self.ffi.new(ctype, init)
        self.keep.append(p)
        return p

    def wide(self, text: str) -> Any:
        return self.mem("WCHAR[]", text)

    def text(self, text: str) -> Any:
        return self.mem("char[]", text.encode())

    def taken(self, pp: Any, size: int) -> bytes:
        """A card-allocated buffer's bytes; the buffer goes back to the allocator."""
        data = self.ffi.buffer(pp[0], size)[:] if pp[0] != self.ffi.NULL else b""
        self.libc.free(pp[0])
        return data

    def read(self, directory: str | None, name: str) -> tuple[int, bytes]:
        pp, size = self.ffi.new("PBYTE *"), self.ffi.new("DWORD *")
        d = self.ffi.NULL if directory is None else self.text(directory)
        rv = self.cd.pfnCardReadFile(self.cd, d, self.text(name), 0, pp, size)
        return rv, self.taken(pp, size[0]) if rv == 0 else b""

    def container_info(self, index: int) -> tuple[bytes, bytes]:
        info = self.ffi.new("CONTAINER_INFO *")
        info.dwVersion = 1
        expect("container info", self.cd.pfnCardGetContainerInfo(self.cd, index, 0, info), 0)
        sig = self.taken([info.pbSigPublicKey], info.cbSigPublicKey)
        keyex = self.taken([info.pbKeyExPublicKey], info.cbKeyExPublicKey)
        return sig, keyex

    def containers(self) -> int:
        rv, data = self.read("mscp", "cmapfile")
        expect("cmapfile", rv, 0)
        return len(data) // L.CONTAINER_MAP_RECORD.size


def expect(what: str, got: Any, wanted: Any) -> None:
    if got != wanted:
        raise AssertionError(f"{what}: got {got!r}, wanted {wanted!r}")


def files_and_directories(csp: Csp) -> None:
    cd, ffi = csp.cd, csp.ffi
    expect("create directory", cd.pfnCardCreateDirectory(cd, csp.text("app"), 1), 0)
    expect("create it again", cd.pfnCardCreateDirectory(cd, csp.text("app"), 1), E.ERROR_FILE_EXISTS)
    expect("create file", cd.pfnCardCreateFile(cd, csp.text("app"), csp.text("notes"), 0, 1), 0)
    body = b"written through CardWriteFile"
    expect("write", cd.pfnCardWriteFile(cd, csp.text("app"), csp.text("notes"), 0, csp.mem("BYTE[]", body), 29), 0)
    expect("read", csp.read("app", "notes"), (0, body))
    info = ffi.new("CARD_FILE_INFO *")
    expect("file info", cd.pfnCardGetFileInfo(cd, csp.text("app"), csp.text("notes"), info), 0)
    expect("file info fields", (info.dwVersion, info.cbFileSize, info.AccessCondition), (1, len(body), 1))
    pp, size = ffi.new("LPSTR *"), ffi.new("DWORD *")
    expect("enum app", cd.pfnCardEnumFiles(cd, csp.text("app"), pp, size, 0), 0)
    expect("enum app names", csp.taken(pp, size[0]), b"notes\0\0")
    expect("delete full dir", cd.pfnCardDeleteDirectory(cd, csp.text("app")), E.ERROR_DIR_NOT_EMPTY)
    expect("delete file", cd.pfnCardDeleteFile(cd, csp.text("app"), csp.text("notes"), 0), 0)
    expect("read deleted", csp.read("app", "notes")[0], E.SCARD_E_FILE_NOT_FOUND)
    expect("delete dir", cd.pfnCardDeleteDirectory(cd, csp.text("app")), 0)
    expect("delete mscp", cd.pfnCardDeleteDirectory(cd, csp.text("mscp")), E.SCARD_W_SECURITY_VIOLATION)
    expect("bad dir name", cd.pfnCardCreateDirectory(cd, csp.text("much-too-long"), 1), E.SCARD_E_INVALID_PARAMETER)
    free = ffi.new("CARD_FREE_SPACE_INFO *")
    free.dwVersion = 1
    expect("free space", cd.pfnCardQueryFreeSpace(cd, 0, free), 0)
    expect("free space fields", (free.dwBytesAvailable, free.dwMaxKeyContainers), (0xFFFFFFFF, 255))


def import_sign_pss_and_decrypt(csp: Csp) -> None:
    cd, ffi = csp.cd, csp.ffi
    key = rsa.generate_private_key(65537, 2048)
    n = key.private_numbers()
    fields = L.RsaPrivateFields(2048, n.public_numbers.e, n.public_numbers.n, n.p, n.q, n.dmp1, n.dmq1, n.iqmp, n.d)
    blob = csp.mem("BYTE[]", L.rsa_private_blob(fields, L.CALG_RSA_KEYX))
    index = csp.containers()
    expect("import", cd.pfnCardCreateContainer(cd, index, KEY_IMPORT, AT_KEYEXCHANGE, 2048, blob), 0)
    _, keyex = csp.container_info(index)
    expect("imported public key", L.parse_rsa_public_blob(keyex)[2], n.public_numbers.n)
    digest = hashlib.sha256(b"PSS through the C ABI").digest()
    pss = csp.mem("BCRYPT_PSS_PADDING_INFO *", [csp.wide("SHA256"), 32])
    info = ffi.new("CARD_SIGNING_INFO *")
    info.dwVersion, info.bContainerIndex, info.dwKeySpec = 2, index, AT_KEYEXCHANGE
    info.dwSigningFlags, info.pPaddingInfo, info.dwPaddingType = CARD_PADDING_INFO_PRESENT, pss, CARD_PADDING_PSS
    info.pbData, info.cbData = csp.mem("BYTE[]", digest), 32
    expect("sign PSS", cd.pfnCardSignData(cd, info), 0)
    signature = csp.taken([info.pbSignedData], info.cbSignedData)[::-1]
    pss_padding = padding.PSS(padding.MGF1(hashes.SHA256()), 32)
    key.public_key().verify(signature, digest, pss_padding, utils.Prehashed(hashes.SHA256()))
    # version 1: the raw RSA result, for the CSP to unpad
    secret = b"a session key of thirty-two byte"
    block = bytearray(key.public_key().encrypt(secret, padding.PKCS1v15())[::-1])
    buffer = csp.mem("BYTE[]", bytes(block))
    decrypt = ffi.new("CARD_RSA_DECRYPT_INFO *")
    decrypt.dwVersion, decrypt.bContainerIndex, decrypt.dwKeySpec = 1, index, AT_KEYEXCHANGE
    decrypt.pbData, decrypt.cbData = buffer, 256
    expect("raw decrypt", cd.pfnCardRSADecrypt(cd, decrypt), 0)
    raw = ffi.buffer(buffer, decrypt.cbData)[:][::-1]
    expect("raw block", (len(raw), raw[:2], raw[-33:]), (256, b"\x00\x02", b"\x00" + secret))
    decrypt.cbData = 100
    expect("short block", cd.pfnCardRSADecrypt(cd, decrypt), E.SCARD_E_INSUFFICIENT_BUFFER)
    # a container property, then the container goes
    out, size = ffi.new("CONTAINER_INFO *"), ffi.new("DWORD *")
    name = csp.wide("Container Info")
    rv = cd.pfnCardGetContainerProperty(cd, index, name, ffi.cast("PBYTE", out), ffi.sizeof(out[0]), size, 0)
    expect("container info property", (rv, size[0], out.cbKeyExPublicKey), (0, ffi.sizeof(out[0]), len(keyex)))
    expect("property blob", csp.taken([out.pbKeyExPublicKey], out.cbKeyExPublicKey), keyex)
    pin = ffi.new("BYTE[4]")
    rv = cd.pfnCardGetContainerProperty(cd, index, csp.wide("PIN Identifier"), pin, 4, size, 0)
    expect("pin identifier", (rv, bytes(pin)), (0, b"\x01\0\0\0"))
    expect("delete container", cd.pfnCardDeleteContainer(cd, index, 0), 0)
    expect("containers after delete", csp.containers(), index)


def ecdh(csp: Csp) -> None:
    cd, ffi = csp.cd, csp.ffi
    index = csp.containers()
    expect("ECDH container", cd.pfnCardCreateContainerEx(cd, index, KEY_GEN, AT_ECDHE_P256, 256, ffi.NULL, 1), 0)
    _, keyex = csp.container_info(index)
    magic, x, y, _ = L.parse_ecc_blob(keyex)
    expect("ECDH blob", magic, L.ECDH_PUBLIC_MAGIC[256])
    card_key = ec.EllipticCurvePublicNumbers(int.from_bytes(x, "big"), int.from_bytes(y, "big"), ec.SECP256R1())
    peer = ec.generate_private_key(ec.SECP256R1())
    numbers = peer.public_key().public_numbers()
    peer_blob = L.ecc_public_blob(L.ECDH_PUBLIC_MAGIC[256], numbers.x, numbers.y, 32)
    agreement = ffi.new("CARD_DH_AGREEMENT_INFO *")
    agreement.dwVersion, agreement.bContainerIndex = 2, index
    agreement.dwPublicKey, agreement.pbPublicKey = len(peer_blob), csp.mem("BYTE[]", peer_blob)
    expect("agreement", cd.pfnCardConstructDHAgreement(cd, agreement), 0)
    shared = peer.exchange(ec.ECDH(), card_key.public_key())
    buffers = csp.mem("BCryptBuffer[2]", [[14, 0, csp.wide("SHA256")], [4, 2, csp.mem("char[]", b"tail")]])
    desc = csp.mem("BCryptBufferDesc *", [0, 2, buffers])
    derive = ffi.new("CARD_DERIVE_KEY *")
    derive.dwVersion, derive.pwszKDF = 1, csp.wide("HASH")
    derive.bSecretAgreementIndex, derive.pParameterList = agreement.bSecretAgreementIndex, desc
    expect("derive", cd.pfnCardDeriveKey(cd, derive), 0)
    derived = csp.taken([derive.pbDerivedKey], derive.cbDerivedKey)
    expect("derived key", derived, hashlib.sha256(shared + b"tail").digest())
    expect("destroy", cd.pfnCardDestroyDHAgreement(cd, agreement.bSecretAgreementIndex, 0), 0)
    expect(
        "destroy again",
        cd.pfnCardDestroyDHAgreement(cd, agreement.bSecretAgreementIndex, 0),
        E.SCARD_E_INVALID_PARAMETER,
    )
    expect("delete ECDH container", cd.pfnCardDeleteContainer(cd, index, 0), 0)


def pins_and_properties(csp: Csp, pin: bytes, so_pin: bytes, new_pin: bytes) -> None:
    cd, ffi = csp.cd, csp.ffi
    tries = ffi.new("DWORD *")
    rv = cd.pfnCardChangeAuthenticatorEx(
        cd,
        2,
        ROLE_USER,
        csp.mem("BYTE[]", pin),
        len(pin),
        ROLE_USER,
        csp.mem("BYTE[]", new_pin),
        len(new_pin),
        0,
        tries,
    )
    expect("change PIN", rv, 0)
    expect(
        "old PIN refused",
        cd.pfnCardAuthenticatePin(cd, csp.wide("user"), csp.mem("BYTE[]", pin), len(pin), tries),
        E.SCARD_W_WRONG_CHV,
    )
    rv = cd.pfnCardUnblockPin(
        cd, csp.wide("user"), csp.mem("BYTE[]", so_pin), len(so_pin), csp.mem("BYTE[]", pin), len(pin), 0, 2
    )
    expect("unblock with the admin PIN", rv, 0)
    expect(
        "PIN set by unblock",
        cd.pfnCardAuthenticatePin(cd, csp.wide("user"), csp.mem("BYTE[]", pin), len(pin), tries),
        0,
    )
    pp, size = ffi.new("PBYTE *"), ffi.new("DWORD *")
    expect("no admin key", cd.pfnCardGetChallenge(cd, pp, size), E.SCARD_E_UNSUPPORTED_FEATURE)
    expect("parent window", cd.pfnCardSetProperty(cd, csp.wide("Parent Window"), csp.mem("BYTE[8]", b""), 8, 0), 0)
    expect(
        "read-only is fixed",
        cd.pfnCardSetProperty(cd, csp.wide("Read Only Mode"), csp.mem("BYTE[4]", b""), 4, 0),
        E.SCARD_W_SECURITY_VIOLATION,
    )
    expect("deauthenticate ex", cd.pfnCardDeauthenticateEx(cd, 0b110, 0), 0)
    expect("delete context", cd.pfnCardDeleteContext(cd), 0)


def run(library: str, pin: str, so_pin: str, new_pin: str) -> None:
    csp = Csp(library)
    cd = csp.cd
    expect(
        "authenticate",
        cd.pfnCardAuthenticateEx(
            cd, ROLE_USER, 0, csp.mem("BYTE[]", pin.encode()), len(pin), csp.ffi.NULL, csp.ffi.NULL, csp.ffi.NULL
        ),
        0,
    )
    files_and_directories(csp)
    import_sign_pss_and_decrypt(csp)
    ecdh(csp)
    pins_and_properties(csp, pin.encode(), so_pin.encode(), new_pin.encode())
    print("all-ok")
    sys.stdout.flush()
