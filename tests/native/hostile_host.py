"""A host that feeds the module hostile input through its raw C function list (ctypes), run as a child process
by test_hostile.py: `python -c "from tests.native.hostile_host import main; main()" SCENARIO MODULE [ARGS]`.

Each scenario prints one JSON line: the CK_RV values that were wrong (CKR_GENERAL_ERROR, or not the code the
call must answer) with the call that got them, and the resident set size where it measures growth. Pointers
handed to the module are NULL or point at buffers at least as long as the length given with them: anything
else would be the caller's own dangling pointer, which no module can survive.
"""

from __future__ import annotations

import ctypes
import itertools
import json
import random
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "pkcs11"))

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from p11_support import (
    CK_GCM_PARAMS,
    CK_MECHANISM,
    CK_ULONG,
    SIGNATURES,
    USER_PIN,
    RawModule,
    make_template,
    ulong,
)

from vsc_provider.ck import constants as C
from vsc_provider.token import mechanisms

GENERAL_ERROR = C.CKR_GENERAL_ERROR
P256_POINT = (
    ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
)
HUGE = (1 << 64) - 1
LENGTHS = (1, 1 << 31, HUGE)


def rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


class CK_RSA_PKCS_PSS_PARAMS(ctypes.Structure):
    _fields_ = [("hashAlg", CK_ULONG), ("mgf", CK_ULONG), ("sLen", CK_ULONG)]


class CK_RSA_PKCS_OAEP_PARAMS(ctypes.Structure):
    _fields_ = [
        ("hashAlg", CK_ULONG),
        ("mgf", CK_ULONG),
        ("source", CK_ULONG),
        ("pSourceData", ctypes.c_void_p),
        ("ulSourceDataLen", CK_ULONG),
    ]


class CK_ECDH1_DERIVE_PARAMS(ctypes.Structure):
    _fields_ = [
        ("kdf", CK_ULONG),
        ("ulSharedDataLen", CK_ULONG),
        ("pSharedData", ctypes.c_void_p),
        ("ulPublicDataLen", CK_ULONG),
        ("pPublicData", ctypes.c_void_p),
    ]


class CK_EDDSA_PARAMS(ctypes.Structure):
    _fields_ = [("phFlag", ctypes.c_ubyte), ("ulContextDataLen", CK_ULONG), ("pContextData", ctypes.c_void_p)]


class Host:
    def __init__(self, module: str) -> None:
        self.m = RawModule(module)
        rv = self.m.C_Initialize(None)
        assert rv == 0, hex(rv)
        count = CK_ULONG(8)
        slots = (CK_ULONG * 8)()
        assert self.m.C_GetSlotList(1, slots, ctypes.byref(count)) == 0
        self.slot = slots[0]
        self.wrong: list[str] = []
        self.keep: list[Any] = []  # buffers the module was pointed at, alive until the scenario ends

    def expect(self, rv: int, call: str, allowed: tuple[int, ...] | None = None) -> int:
        if rv == GENERAL_ERROR or (allowed is not None and rv not in allowed):
            if len(self.wrong) < 50:
                self.wrong.append(f"{call} -> 0x{rv:x}")
        return rv

    def buffer(self, data: bytes) -> Any:
        buf = ctypes.create_string_buffer(data, max(1, len(data)))
        self.keep.append(buf)
        return buf


def scenario_mechanisms(host: Host, count: int) -> dict[str, Any]:
    """COUNT distinct unknown mechanism types to C_DigestInit (NULL and real parameters): each refused,
    and the host does not grow."""
    h = host.m.open(host.slot)
    mech = CK_MECHANISM()
    param = host.buffer(b"\x00" * 32)

    def run(first: int, n: int) -> None:
        for i in range(first, first + n):
            mech.mechanism = i
            mech.pParameter, mech.ulParameterLen = (None, 0) if i % 2 else (ctypes.addressof(param), 32)
            host.expect(
                host.m.C_DigestInit(h, ctypes.byref(mech)), f"C_DigestInit(0x{i:x})", (C.CKR_MECHANISM_INVALID,)
            )

    base = 0x7F000000
    run(base, 5000)  # warm-up: the code paths' own first allocations
    before = rss_kb()
    run(base + 5000, count)
    return {"rss_before_kb": before, "rss_after_kb": rss_kb()}


def scenario_login_churn(host: Host, seconds: float) -> dict[str, Any]:
    """C_Login/C_Logout/C_CloseAllSessions from four threads, in one-second rounds; the RSS is sampled
    between rounds, while every thread waits at a barrier, so no login's buffers are in flight."""
    pin = USER_PIN.encode()
    calls = [0]
    rounds = max(1, int(seconds))
    barrier = threading.Barrier(5, timeout=60)
    round_end = [0.0]

    def work() -> None:
        for _ in range(rounds):
            barrier.wait()  # the round starts
            while time.monotonic() < round_end[0]:
                h = CK_ULONG()
                if host.m.C_OpenSession(host.slot, 0x6, None, None, ctypes.byref(h)) != 0:
                    continue
                host.expect(host.m.C_Login(h, 1, pin, len(pin)), "C_Login")
                host.expect(host.m.C_Logout(h), "C_Logout")
                host.expect(host.m.C_CloseAllSessions(host.slot), "C_CloseAllSessions")
                calls[0] += 1
            barrier.wait()  # the round is over: the main thread samples

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    samples = []
    for _ in range(rounds):
        round_end[0] = time.monotonic() + 1
        barrier.wait()
        barrier.wait()
        samples.append(rss_kb())
    for t in threads:
        t.join()
    return {"rss_kb": samples, "rounds": calls[0]}


# --- argument fuzzing with NULL pointers: nothing here may crash or answer CKR_GENERAL_ERROR -------------

_SKIP = {"C_Initialize", "C_Finalize", "C_GetFunctionList"}
_LAST = ("C_CloseSession", "C_CloseAllSessions")  # they end the session the others use


def scenario_null_pointers(host: Host, seed: int) -> dict[str, Any]:
    """Every function with NULL for every pointer and, for every CK_ULONG, a valid handle, 0, 1, 2^31 or
    (CK_ULONG)-1, plus random handles."""
    rng = random.Random(seed)
    calls = 0
    order = [n for n, _ in SIGNATURES if n not in _SKIP and n not in _LAST] + list(_LAST)
    signatures = dict(SIGNATURES)
    for name in order:
        sig = signatures[name]
        h = host.m.open(host.slot, rw=False)  # random handles must not destroy the keys of the other scenarios
        values = (h, host.slot, 0, 1, 1 << 31, HUGE, rng.getrandbits(64))
        for combo in itertools.product(values, repeat=sig.count("u")):
            ulongs = iter(combo)
            args = [next(ulongs) if c == "u" else None for c in sig]
            if name == "C_WaitForSlotEvent":
                args[0] = C.CKF_DONT_BLOCK
            host.expect(getattr(host.m, name)(*args), f"{name}{tuple(args)}")
            calls += 1
        host.m.C_CloseAllSessions(host.slot)
    return {"calls": calls}


# --- garbage mechanism parameters and out-of-order calls on real keys ---------------------------------


def _template(host: Host, pairs: list[tuple[int, bytes]]) -> Any:
    attrs, buffers = make_template(pairs)
    host.keep.append(buffers)
    return attrs


def _find(host: Host, h: int, klass: int, label: bytes) -> int:
    found = host.m.find(h, [(C.CKA_CLASS, ulong(klass)), (C.CKA_LABEL, label)])
    assert found, (klass, label)
    return found[0]


def _secret_key(host: Host, h: int, mech_type: int, length: int) -> int:
    true = b"\x01"
    template = [
        (C.CKA_VALUE_LEN, ulong(length)),
        (C.CKA_TOKEN, b"\x00"),
        *((a, true) for a in (C.CKA_ENCRYPT, C.CKA_DECRYPT, C.CKA_WRAP, C.CKA_UNWRAP, C.CKA_SIGN, C.CKA_VERIFY)),
        (C.CKA_EXTRACTABLE, true),
    ]
    attrs, keep = make_template(template)
    mech = CK_MECHANISM(mech_type, None, 0)
    out = CK_ULONG()
    rv = host.m.C_GenerateKey(h, ctypes.byref(mech), attrs, len(template), ctypes.byref(out))
    assert rv == 0, hex(rv)
    del keep
    return out.value


def _pointer_and_length(host: Host, rng: random.Random, sizes: tuple[int, ...] = (0, 1, 4, 12, 16, 65, 300)) -> tuple:
    """A (pointer, length) pair that is honest about the buffer, or NULL with a length."""
    if rng.random() < 0.3:
        return None, rng.choice(LENGTHS)
    n = rng.choice(sizes)
    return ctypes.addressof(host.buffer(rng.randbytes(n))), n


def _garbage_ulong(rng: random.Random, known: tuple[int, ...]) -> int:
    return rng.choice([*known, 0, 1, HUGE, 1 << 31, rng.getrandbits(64)])


MGF_OF = {
    C.CKM_SHA_1: C.CKG_MGF1_SHA1,
    C.CKM_SHA224: C.CKG_MGF1_SHA224,
    C.CKM_SHA256: C.CKG_MGF1_SHA256,
    C.CKM_SHA384: C.CKG_MGF1_SHA384,
    C.CKM_SHA512: C.CKG_MGF1_SHA512,
}


def _plausible_param(host: Host, rng: random.Random, mech_type: int) -> tuple[Any, int]:
    """A well-formed parameter, so that the operation itself meets the hostile data."""
    struct: ctypes.Structure
    if mech_type in mechanisms.RSA_PSS_HASHED or mech_type == C.CKM_RSA_PKCS_PSS:
        digest = mechanisms.RSA_PSS_HASHED.get(mech_type, C.CKM_SHA256)
        struct = CK_RSA_PKCS_PSS_PARAMS(digest, MGF_OF[digest], rng.choice((0, 32)))
    elif mech_type == C.CKM_RSA_PKCS_OAEP:
        label = host.buffer(rng.randbytes(rng.choice((0, 5, 300))))
        struct = CK_RSA_PKCS_OAEP_PARAMS(C.CKM_SHA_1, C.CKG_MGF1_SHA1, 1, ctypes.addressof(label), len(label.raw))
    elif mech_type == C.CKM_AES_GCM:
        iv, aad = host.buffer(rng.randbytes(12)), host.buffer(rng.randbytes(20))
        struct = CK_GCM_PARAMS(ctypes.addressof(iv), 12, 96, ctypes.addressof(aad), 20, rng.choice((96, 128)))
    elif mech_type == C.CKM_ECDH1_DERIVE:
        point = host.buffer(rng.choice((P256_POINT, P256_POINT[:-1] + b"\x00", b"\x04" + bytes(64))))
        struct = CK_ECDH1_DERIVE_PARAMS(1, 0, None, len(point.raw), ctypes.addressof(point))
    elif mech_type == C.CKM_EDDSA:
        struct = CK_EDDSA_PARAMS(0, 0, None)
    elif mech_type in (C.CKM_AES_CBC, C.CKM_AES_CBC_PAD):
        iv = host.buffer(rng.randbytes(16))
        return ctypes.addressof(iv), 16
    else:
        return None, 0
    host.keep.append(struct)
    return ctypes.addressof(struct), ctypes.sizeof(struct)


def _garbage_param(host: Host, rng: random.Random, mech_type: int) -> tuple[Any, int]:
    """A parameter for MECH_TYPE: its struct with garbage fields, or a buffer of the wrong size, or NULL."""
    digests = (*mechanisms.DIGEST_MECHS,)
    mgfs = (C.CKG_MGF1_SHA1, C.CKG_MGF1_SHA256, C.CKG_MGF1_SHA512)
    roll = rng.random()
    if roll < 0.5:
        return _plausible_param(host, rng, mech_type)
    roll = rng.random()
    if roll < 0.1:
        return None, rng.choice((0, *LENGTHS))
    if roll < 0.2:
        n = rng.choice((1, 8, 16, 23, 40, 64))
        return ctypes.addressof(host.buffer(rng.randbytes(n))), n
    struct: ctypes.Structure
    if mech_type == C.CKM_RSA_PKCS_OAEP:
        p, n = _pointer_and_length(host, rng)
        struct = CK_RSA_PKCS_OAEP_PARAMS(
            _garbage_ulong(rng, digests), _garbage_ulong(rng, mgfs), _garbage_ulong(rng, (1,)), p, n
        )
    elif mech_type == C.CKM_AES_GCM:
        iv, iv_len = _pointer_and_length(host, rng, (0, 1, 4, 7, 8, 12, 16, 128, 129, 256, 1 << 20))
        aad, aad_len = _pointer_and_length(host, rng)
        struct = CK_GCM_PARAMS(iv, iv_len, iv_len * 8, aad, aad_len, _garbage_ulong(rng, (0, 32, 96, 128, 129)))
    elif mech_type == C.CKM_ECDH1_DERIVE:
        shared, shared_len = _pointer_and_length(host, rng)
        public, public_len = _pointer_and_length(host, rng, (0, 1, 33, 65, 67))
        struct = CK_ECDH1_DERIVE_PARAMS(_garbage_ulong(rng, (1, 2)), shared_len, shared, public_len, public)
    elif mech_type == C.CKM_EDDSA:
        context, context_len = _pointer_and_length(host, rng, (0, 1, 255, 256, 300))
        struct = CK_EDDSA_PARAMS(rng.getrandbits(8), context_len, context)
    elif mech_type in mechanisms.RSA_PSS_HASHED or mech_type == C.CKM_RSA_PKCS_PSS:
        struct = CK_RSA_PKCS_PSS_PARAMS(
            _garbage_ulong(rng, digests), _garbage_ulong(rng, mgfs), _garbage_ulong(rng, (0, 20, 32, 64, 222, 223))
        )
    else:
        n = rng.choice((0, 16))
        return (ctypes.addressof(host.buffer(rng.randbytes(n))) if n else None), n
    host.keep.append(struct)
    return ctypes.addressof(struct), ctypes.sizeof(struct)


def _operate(host: Host, rng: random.Random, h: int, kind: str) -> None:
    """One operation after a successful *Init: length query, a short buffer, the real call, in some order."""
    data = host.buffer(rng.randbytes(rng.choice((0, 1, 16, 17, 32, 64, 256, 300))))
    size = len(data.raw) if rng.random() < 0.9 else 0
    out_len = CK_ULONG(0)
    out = host.buffer(bytes(1024))
    m = host.m
    for _ in range(rng.choice((1, 2, 3))):
        step = rng.choice(("one", "update", "final", "query"))
        out_len.value = rng.choice((0, 8, 1024))
        if kind == "verify":
            sig = host.buffer(rng.randbytes(rng.choice((0, 64, 256))))
            if step == "update":
                host.expect(m.C_VerifyUpdate(h, data, size), "C_VerifyUpdate")
            elif step == "final":
                host.expect(m.C_VerifyFinal(h, sig, len(sig.raw)), "C_VerifyFinal")
            else:
                host.expect(m.C_Verify(h, data, size, sig, len(sig.raw)), "C_Verify")
            continue
        name = {"sign": "Sign", "encrypt": "Encrypt", "decrypt": "Decrypt", "digest": "Digest"}[kind]
        target = None if step == "query" else out
        if step == "update" and kind in ("sign", "digest"):
            host.expect(getattr(m, f"C_{name}Update")(h, data, size), f"C_{name}Update")
        elif step == "update":
            host.expect(getattr(m, f"C_{name}Update")(h, data, size, target, ctypes.byref(out_len)), f"C_{name}Update")
        elif step == "final":
            host.expect(getattr(m, f"C_{name}Final")(h, target, ctypes.byref(out_len)), f"C_{name}Final")
        else:
            host.expect(getattr(m, f"C_{name}")(h, data, size, target, ctypes.byref(out_len)), f"C_{name}")


def scenario_garbage(host: Host, seed: int, rounds: int) -> dict[str, Any]:
    """Garbage mechanism parameters on real keys, random handles, and calls out of order."""
    rng = random.Random(seed)
    m = host.m
    h = m.open(host.slot)
    assert m.login(h, USER_PIN) == 0
    keys = {
        "rsa": (_find(host, h, C.CKO_PRIVATE_KEY, b"rsa"), _find(host, h, C.CKO_PUBLIC_KEY, b"rsa")),
        "ec": (_find(host, h, C.CKO_PRIVATE_KEY, b"ec"), _find(host, h, C.CKO_PUBLIC_KEY, b"ec")),
        "ed": (_find(host, h, C.CKO_PRIVATE_KEY, b"ed"), _find(host, h, C.CKO_PUBLIC_KEY, b"ed")),
    }
    aes = _secret_key(host, h, C.CKM_AES_KEY_GEN, 32)
    generic = _secret_key(host, h, C.CKM_GENERIC_SECRET_KEY_GEN, 32)
    h = m.open(host.slot)  # the first session stays open: it owns the two session keys
    handles = [aes, generic, *(k for pair in keys.values() for k in pair), 0, HUGE, rng.getrandbits(32)]
    family = {2048: keys["rsa"], 256: keys["ec"], 255: keys["ed"], 16: (aes,), 1: (generic,)}
    types = sorted(mechanisms.MECHANISMS)
    inits = {
        "sign": m.C_SignInit,
        "verify": m.C_VerifyInit,
        "encrypt": m.C_EncryptInit,
        "decrypt": m.C_DecryptInit,
    }
    mech = CK_MECHANISM()
    calls = started = 0
    flag = {
        "sign": C.CKF_SIGN,
        "verify": C.CKF_VERIFY,
        "encrypt": C.CKF_ENCRYPT,
        "decrypt": C.CKF_DECRYPT,
        "digest": C.CKF_DIGEST,
        "derive": C.CKF_DERIVE,
        "wrap": C.CKF_WRAP,
        "unwrap": C.CKF_UNWRAP,
        "generate": C.CKF_GENERATE,
    }
    for _ in range(rounds):
        kind = rng.choice((*inits, "digest", "derive", "wrap", "unwrap", "generate", "pair", "out-of-order"))
        meant = [t for t in types if kind in flag and mechanisms.MECHANISMS[t][2] & flag[kind]]
        mech.mechanism = rng.choice(meant if meant and rng.random() < 0.8 else types)
        mech.pParameter, mech.ulParameterLen = _garbage_param(host, rng, mech.mechanism)
        fitting = family.get(mechanisms.MECHANISMS[mech.mechanism][0])
        key = rng.choice(fitting if fitting and rng.random() < 0.7 else handles)
        if kind in inits:
            if host.expect(inits[kind](h, ctypes.byref(mech), key), f"{kind} init 0x{mech.mechanism:x}") == 0:
                started += 1
                _operate(host, rng, h, kind)
        elif kind == "digest":
            if host.expect(m.C_DigestInit(h, ctypes.byref(mech)), f"C_DigestInit 0x{mech.mechanism:x}") == 0:
                started += 1
                _operate(host, rng, h, kind)
        elif kind == "pair":
            _generate_pair(host, rng, h)
        elif kind == "derive":
            out = CK_ULONG()
            attrs = _template(host, [(C.CKA_TOKEN, b"\x00"), (C.CKA_VALUE_LEN, ulong(rng.choice((0, 16, 99))))])
            host.expect(m.C_DeriveKey(h, ctypes.byref(mech), key, attrs, 2, ctypes.byref(out)), "C_DeriveKey")
        elif kind == "wrap":
            out_len = CK_ULONG(4096)
            buf = host.buffer(bytes(4096))
            host.expect(
                m.C_WrapKey(h, ctypes.byref(mech), key, rng.choice(handles), buf, ctypes.byref(out_len)), "C_WrapKey"
            )
        elif kind == "unwrap":
            out = CK_ULONG()
            wrapped = host.buffer(rng.randbytes(rng.choice((0, 8, 24, 40, 256))))
            attrs = _template(host, [(C.CKA_TOKEN, b"\x00"), (C.CKA_CLASS, ulong(rng.choice((3, 4, 9))))])
            host.expect(
                m.C_UnwrapKey(h, ctypes.byref(mech), key, wrapped, len(wrapped.raw), attrs, 2, ctypes.byref(out)),
                "C_UnwrapKey",
            )
        elif kind == "generate":
            out = CK_ULONG()
            attrs = _template(host, [(C.CKA_TOKEN, b"\x00"), (C.CKA_VALUE_LEN, ulong(rng.choice((0, 16, 1 << 40))))])
            host.expect(m.C_GenerateKey(h, ctypes.byref(mech), attrs, 2, ctypes.byref(out)), "C_GenerateKey")
        else:
            _operate(host, rng, h, rng.choice(("sign", "verify", "encrypt", "decrypt", "digest")))
            host.expect(m.C_FindObjects(h, host.buffer(bytes(64)), 8, ctypes.byref(CK_ULONG())), "C_FindObjects")
            host.expect(m.C_FindObjectsFinal(h), "C_FindObjectsFinal")
        calls += 1
        if kind in inits or kind in ("digest", "out-of-order"):  # a fresh session: no operation left active
            fresh = m.open(host.slot)
            m.C_CloseSession(h)
            h = fresh
        if len(host.keep) > 2000:
            host.keep = host.keep[-200:]
    return {"calls": calls, "started": started}


# P-256 and Ed25519 named by OID, and garbage (a truncated OID, an unknown one, not DER at all)
EC_PARAMS = (
    bytes.fromhex("06082a8648ce3d030107"),
    bytes.fromhex("06032b6570"),
    bytes.fromhex("06082a8648ce3d0301"),
    bytes.fromhex("06092b0601040182370101"),
    b"\x30\x80garbage",
    b"",
)


def _generate_pair(host: Host, rng: random.Random, h: int) -> None:
    """C_GenerateKeyPair with hostile sizes, exponents and curve parameters (none asks for a slow RSA key)."""
    mech_type = rng.choice((C.CKM_RSA_PKCS_KEY_PAIR_GEN, C.CKM_EC_KEY_PAIR_GEN, C.CKM_EC_EDWARDS_KEY_PAIR_GEN))
    mech = CK_MECHANISM(mech_type, None, 0)
    public = [(C.CKA_TOKEN, b"\x00")]
    if mech_type == C.CKM_RSA_PKCS_KEY_PAIR_GEN:
        public.append((C.CKA_MODULUS_BITS, ulong(rng.choice((0, 8, 1023, 4097, 1 << 31, HUGE)))))
        public.append((C.CKA_PUBLIC_EXPONENT, rng.choice((b"", b"\x03", b"\x01\x00\x01", rng.randbytes(300)))))
    else:
        public.append((C.CKA_EC_PARAMS, rng.choice(EC_PARAMS)))
    if rng.random() < 0.3:
        public.append((C.CKA_MODULUS_BITS, rng.randbytes(rng.choice((1, 3, 8, 9)))))  # not a CK_ULONG
    private = [(C.CKA_TOKEN, b"\x00"), (C.CKA_SIGN, rng.choice((b"\x01", b"", b"\x01\x02")))]
    pub_attrs, _keep_pub = make_template(public)
    priv_attrs, _keep_priv = make_template(private)
    pub, priv = CK_ULONG(), CK_ULONG()
    rv = host.m.C_GenerateKeyPair(
        h, ctypes.byref(mech), pub_attrs, len(public), priv_attrs, len(private), ctypes.byref(pub), ctypes.byref(priv)
    )
    host.expect(rv, f"C_GenerateKeyPair 0x{mech_type:x} {public}")


# --- the store afterwards --------------------------------------------------------------------------


def scenario_check(host: Host) -> dict[str, Any]:
    """Log in and sign with the RSA key: returns the signature and public key info for the parent to verify."""
    m = host.m
    h = m.open(host.slot)
    host.expect(m.login(h, USER_PIN), "C_Login", (0,))
    key = _find(host, h, C.CKO_PRIVATE_KEY, b"rsa")
    mech = CK_MECHANISM(C.CKM_SHA256_RSA_PKCS, None, 0)
    host.expect(m.C_SignInit(h, ctypes.byref(mech), key), "C_SignInit", (0,))
    data = b"still signs"
    sig = ctypes.create_string_buffer(512)
    n = CK_ULONG(512)
    host.expect(m.C_Sign(h, data, len(data), sig, ctypes.byref(n)), "C_Sign", (0,))
    return {"signature": sig.raw[: n.value].hex(), "public_key_info": _public_key_info(host, h).hex()}


def _public_key_info(host: Host, h: int) -> bytes:
    attrs, _keep = make_template([(C.CKA_PUBLIC_KEY_INFO, bytes(1024))])
    rv = host.m.C_GetAttributeValue(h, _find(host, h, C.CKO_PUBLIC_KEY, b"rsa"), attrs, 1)
    host.expect(rv, "C_GetAttributeValue", (0,))
    return ctypes.string_at(attrs[0].pValue, attrs[0].ulValueLen)


def main() -> None:
    scenario, module, *args = sys.argv[1:]
    host = Host(module)
    if scenario == "mechanisms":
        result = scenario_mechanisms(host, int(args[0]))
    elif scenario == "login-churn":
        result = scenario_login_churn(host, float(args[0]))
    elif scenario == "null-pointers":
        result = scenario_null_pointers(host, int(args[0]))
    elif scenario == "garbage":
        result = scenario_garbage(host, int(args[0]), int(args[1]))
    elif scenario == "check":
        result = scenario_check(host)
    else:
        raise SystemExit(f"unknown scenario {scenario}")
    result["wrong"] = host.wrong
    result["rss_end_kb"] = rss_kb()
    host.m.C_Finalize(None)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
