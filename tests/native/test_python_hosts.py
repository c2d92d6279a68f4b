"""Hosts that are themselves Python: the module reuses their interpreter (PyKCS11 here; python-pkcs11
drives most of tests/pkcs11). Run in a subprocess: in the test process the module may already be
initialised on another test's store."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import PyKCS11
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.serialization import load_der_public_key

from tests.conftest import USER_PIN, run_vsc


def test_pykcs11_lists_logs_in_and_signs(vsc_home, module_path, card):
    run_vsc("key", "generate", "--card", card, "--type", "p256", "--label", "py", "--pin", USER_PIN)
    script = f"import sys; sys.path.insert(0, {str(Path(__file__).parents[2])!r}); "
    script += "from tests.native.test_python_hosts import pykcs11_session; "
    script += f"pykcs11_session({module_path!r}, {card!r})"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "verified" in result.stdout


def pykcs11_session(module_path: str, card: str) -> None:
    lib = PyKCS11.PyKCS11Lib()
    lib.load(module_path)
    try:
        slots = lib.getSlotList(tokenPresent=True)
        assert len(slots) == 1
        assert lib.getTokenInfo(slots[0]).serialNumber.strip() == card
        session = lib.openSession(slots[0])
        session.login(USER_PIN)
        key = session.findObjects([(PyKCS11.CKA_CLASS, PyKCS11.CKO_PRIVATE_KEY), (PyKCS11.CKA_LABEL, "py")])[0]
        pub = session.findObjects([(PyKCS11.CKA_CLASS, PyKCS11.CKO_PUBLIC_KEY), (PyKCS11.CKA_LABEL, "py")])[0]
        info = bytes(session.getAttributeValue(pub, [PyKCS11.CKA_PUBLIC_KEY_INFO])[0])
        signature = bytes(session.sign(key, b"PyKCS11 says hello", PyKCS11.Mechanism(PyKCS11.CKM_ECDSA_SHA256)))
        der = encode_dss_signature(int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big"))
        load_der_public_key(info).verify(der, b"PyKCS11 says hello", ec.ECDSA(hashes.SHA256()))
        session.logout()
        session.closeSession()
        print("verified")
    finally:
        lib.unload()
