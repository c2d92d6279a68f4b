"""C_Initialize and C_Finalize: the four locking cases, repeated cycles, fork after C_Initialize, and two
threads signing at once. The fork test runs in a subprocess with a timeout, so a hang fails it.
"""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import pkcs11
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from p11_support import CK_C_INITIALIZE_ARGS, CK_ULONG, USER_PIN, CardEnv, RawModule, public_key_of, reinitialize
from pkcs11 import KeyType, Mechanism

from vsc_provider.ck import constants as C

HERE = Path(__file__).resolve().parent

CREATE = ctypes.CFUNCTYPE(CK_ULONG, ctypes.POINTER(ctypes.c_void_p))
OTHER = ctypes.CFUNCTYPE(CK_ULONG, ctypes.c_void_p)


def _create(pp: ctypes._Pointer) -> int:  # type: ignore[type-arg]
    pp[0] = ctypes.c_void_p(1)
    return 0


def _other(_: int) -> int:
    return 0


MUTEX_FUNCTIONS = (CREATE(_create), OTHER(_other), OTHER(_other), OTHER(_other))


@pytest.fixture(scope="module")
def raw(card_env: CardEnv, module_path: str) -> Iterator[RawModule]:
    module = RawModule(module_path)
    yield module
    reinitialize(card_env.lib)  # leave the library initialised for python-pkcs11


@pytest.fixture
def finalized(raw: RawModule) -> Iterator[RawModule]:
    """The library finalised (as a host that has not initialised it yet); finalised again afterwards."""
    raw.C_Finalize(None)
    yield raw
    raw.C_Finalize(None)


def _slots(raw: RawModule) -> tuple[int, int]:
    n = CK_ULONG()
    return int(raw.C_GetSlotList(1, None, ctypes.byref(n))), n.value


def _args(flags: int, functions: bool, reserved: bool = False) -> CK_C_INITIALIZE_ARGS:
    args = CK_C_INITIALIZE_ARGS()
    if functions:
        for name, fn in zip(("CreateMutex", "DestroyMutex", "LockMutex", "UnlockMutex"), MUTEX_FUNCTIONS, strict=True):
            setattr(args, name, ctypes.cast(fn, ctypes.c_void_p))
    args.flags = flags
    args.pReserved = 1 if reserved else None
    return args


@pytest.mark.parametrize(
    "flags,functions",
    [
        (0, False),  # no multi-threaded access
        (C.CKF_OS_LOCKING_OK, False),  # OS primitives
        (0, True),  # the application's mutexes
        (C.CKF_OS_LOCKING_OK | C.CKF_LIBRARY_CANT_CREATE_OS_THREADS, True),  # either (what NSS passes)
    ],
    ids=["none", "os", "app", "either"],
)
def test_four_locking_cases(finalized: RawModule, flags: int, functions: bool) -> None:
    raw = finalized
    assert _slots(raw)[0] == C.CKR_CRYPTOKI_NOT_INITIALIZED
    args = _args(flags, functions)
    assert raw.C_Initialize(ctypes.byref(args)) == C.CKR_OK
    del args  # the module must have copied what it needs
    rv, count = _slots(raw)
    assert rv == C.CKR_OK and count >= 1
    assert raw.C_Initialize(None) == C.CKR_CRYPTOKI_ALREADY_INITIALIZED


def test_bad_initialize_arguments(finalized: RawModule) -> None:
    raw = finalized
    partial = _args(0, True)
    partial.LockMutex = None
    assert raw.C_Initialize(ctypes.byref(partial)) == C.CKR_ARGUMENTS_BAD
    assert raw.C_Initialize(ctypes.byref(_args(0, False, reserved=True))) == C.CKR_ARGUMENTS_BAD
    assert _slots(raw)[0] == C.CKR_CRYPTOKI_NOT_INITIALIZED
    assert raw.C_Initialize(None) == C.CKR_OK
    assert raw.C_Initialize(None) == C.CKR_CRYPTOKI_ALREADY_INITIALIZED


def test_finalize_initialize_cycles(finalized: RawModule, card_env: CardEnv) -> None:
    raw = finalized
    assert raw.C_Finalize(None) == C.CKR_CRYPTOKI_NOT_INITIALIZED
    for _ in range(5):
        assert raw.C_Initialize(None) == C.CKR_OK
        rv, count = _slots(raw)
        assert rv == C.CKR_OK and count >= 1
        slots = (CK_ULONG * count)()
        assert raw.C_GetSlotList(1, slots, ctypes.byref(CK_ULONG(count))) == C.CKR_OK
        h = raw.open(slots[0])
        assert raw.login(h, USER_PIN) == C.CKR_OK
        buf = ctypes.create_string_buffer(16)
        assert raw.C_GenerateRandom(h, buf, 16) == C.CKR_OK
        assert raw.C_Finalize(None) == C.CKR_OK
        # sessions and login do not survive C_Finalize
        assert raw.C_CloseSession(h) == C.CKR_CRYPTOKI_NOT_INITIALIZED
    assert raw.C_Initialize(None) == C.CKR_OK
    h = raw.open(slots[0])
    assert raw.session_info(h).state == C.CKS_RW_PUBLIC_SESSION


def test_concurrent_first_initialize(finalized: RawModule) -> None:
    raw = finalized
    start = threading.Barrier(4)
    results: list[int] = []

    def init() -> None:
        start.wait()
        results.append(int(raw.C_Initialize(ctypes.byref(_args(C.CKF_OS_LOCKING_OK, False)))))

    threads = [threading.Thread(target=init) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(results) == [C.CKR_OK] + [C.CKR_CRYPTOKI_ALREADY_INITIALIZED] * 3
    assert _slots(raw)[0] == C.CKR_OK


FORK_CHILD = textwrap.dedent(
    """
    import ctypes, os, sys, threading
    sys.path.insert(0, sys.argv[1])
    from p11_support import CK_ULONG, USER_PIN, RawModule

    m = RawModule(sys.argv[2])
    assert m.C_Initialize(None) == 0
    n = CK_ULONG()
    assert m.C_GetSlotList(1, None, ctypes.byref(n)) == 0 and n.value >= 1
    slots = (CK_ULONG * n.value)()
    m.C_GetSlotList(1, slots, ctypes.byref(n))
    h = m.open(slots[0])
    assert m.login(h, USER_PIN) == 0

    stop = threading.Event()

    def busy():  # another thread inside the module while the process forks
        count = CK_ULONG()
        while not stop.is_set():
            m.C_GetSlotList(1, None, ctypes.byref(count))

    t = threading.Thread(target=busy)
    t.start()
    pids = []
    for _ in range(5):
        pid = os.fork()
        if pid == 0:
            count = CK_ULONG()
            results = [m.C_GetSlotList(1, None, ctypes.byref(count)), m.C_CloseSession(h), m.C_Initialize(None)]
            results.append(m.C_GetSlotList(1, None, ctypes.byref(count)))
            h2 = m.open(slots[0])
            results.append(m.login(h2, USER_PIN))
            buf = ctypes.create_string_buffer(8)
            results.append(m.C_GenerateRandom(h2, buf, 8))
            os._exit(0 if results == [0x190, 0x190, 0, 0, 0, 0] else 10)
        pids.append(pid)
    stop.set()
    t.join()
    codes = [os.waitpid(pid, 0)[1] for pid in pids]
    # the parent is untouched by its children
    assert m.session_info(h).state == 3, m.session_info(h).state
    print("children", codes)
    sys.exit(0 if all(c == 0 for c in codes) else 1)
    """
)


def test_fork_after_initialize(card_env: CardEnv, module_path: str, tmp_path: Path) -> None:
    script = tmp_path / "fork_child.py"
    script.write_text(FORK_CHILD)
    env = {**os.environ, "VSC_HOME": str(card_env.home)}
    result = subprocess.run(
        [sys.executable, str(script), str(HERE), module_path],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_two_threads_sign_in_their_own_sessions(card_env: CardEnv) -> None:
    reinitialize(card_env.lib)
    token = card_env.token()
    with token.open(rw=True, user_pin=USER_PIN) as owner:
        pub, _ = owner.generate_keypair(KeyType.RSA, 2048, store=True, label="threads")
        public_key = public_key_of(pub)
        key_id = pub[pkcs11.Attribute.ID]
        failures: list[BaseException] = []
        signed = [0, 0]

        def worker(index: int) -> None:
            try:
                with token.open() as s:  # login is shared with the owner's session
                    priv = s.get_key(object_class=pkcs11.ObjectClass.PRIVATE_KEY, id=key_id)
                    for i in range(40):
                        message = f"thread {index} message {i}".encode()
                        sig = priv.sign(
                            message,
                            mechanism=Mechanism.SHA256_RSA_PKCS_PSS,
                            mechanism_param=(Mechanism.SHA256, pkcs11.MGF.SHA256, 32),
                        )
                        public_key.verify(sig, message, padding.PSS(padding.MGF1(hashes.SHA256()), 32), hashes.SHA256())
                        signed[index] += 1
            except BaseException as exc:  # reported to the main thread
                failures.append(exc)

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert not any(t.is_alive() for t in threads)
        assert failures == []
        assert signed == [40, 40]
