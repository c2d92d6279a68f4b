"""The minidriver card-edge library (`vsc module path --minidriver`) in a C caller: tests/minidriver/md_host.c,
built here with the system compiler, loads it with dlopen and replays what the Windows Base CSP / smart card
KSP do through CardAcquireContext's function table. What it signs is checked with `cryptography` against the
container's public-key blob and against the same key seen through the PKCS#11 module (python-pkcs11)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import uuid
from pathlib import Path

import pkcs11
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils
from p11_support import public_key_of, store_loaded
from pkcs11 import Attribute, Mechanism, ObjectClass

from tests.conftest import require_tool, run_vsc
from vsc_provider import module
from vsc_provider.minidriver import errors as E
from vsc_provider.minidriver import layouts as L

ROOT = Path(__file__).resolve().parents[2]
SOURCE = Path(__file__).with_name("md_host.c")
PIN, SO_PIN, WRONG_PIN = "4321", "87654321", "0000"


def _card(label: str) -> str:
    out = run_vsc(
        "card", "create", "--label", label, "--pin", PIN, "--so-pin", SO_PIN, "--policy", "compatible", "--json"
    )
    return str(json.loads(out.stdout)["serial"])


@pytest.fixture
def md_host(tmp_path: Path) -> Path:
    return _build(tmp_path)


def _build(tmp_path: Path, *flags: str) -> Path:
    cc = require_tool("cc", "build-essential")
    exe = tmp_path / ("md_host" + "".join(f.strip("-") for f in flags))
    command = [cc, "-O1", "-Wall", "-I", str(ROOT / "native"), "-o", str(exe), str(SOURCE), "-ldl", "-lpthread"]
    subprocess.run([*command, *flags], check=True)
    return exe


@pytest.fixture
def md_library() -> str:
    return str(module.minidriver_path())


def _lines(stdout: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in stdout.splitlines():
        name, *values = line.split()
        out[name] = values
    return out


def _run(exe: Path, library: str, *args: str, env: dict[str, str] | None = None) -> dict[str, list[str]]:
    result = subprocess.run(
        [str(exe), library, *args], capture_output=True, text=True, timeout=120, env={**os.environ, **(env or {})}
    )
    assert result.returncode == 0, f"md_host {args[0]} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    assert "Traceback" not in result.stderr, result.stderr
    return _lines(result.stdout)


def _rsa_key(blob_hex: str) -> rsa.RSAPublicKey:
    alg, bits, n, e = L.parse_rsa_public_blob(bytes.fromhex(blob_hex))
    assert (alg, bits) == (L.CALG_RSA_KEYX, 2048)
    return rsa.RSAPublicNumbers(e, n).public_key()


def _ec_key(blob_hex: str) -> ec.EllipticCurvePublicKey:
    magic, x, y, _ = L.parse_ecc_blob(bytes.fromhex(blob_hex))
    assert magic == L.ECDSA_PUBLIC_MAGIC[256]
    numbers = ec.EllipticCurvePublicNumbers(int.from_bytes(x, "big"), int.from_bytes(y, "big"), ec.SECP256R1())
    return numbers.public_key()


def _ecdsa_der(raw: bytes) -> bytes:
    return utils.encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))


def _code(values: list[str]) -> int:
    return int(values[0])


def test_the_base_csp_sequence_in_a_c_caller(md_host, md_library, module_path, vsc_home):
    serial = _card("Minidriver C")
    digest = hashlib.sha256(b"signed through CardSignData").digest()
    secret = os.urandom(32)
    proc = subprocess.Popen(
        [str(md_host), md_library, "csp", PIN, WRONG_PIN, digest.hex()],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdin is not None and proc.stdout is not None
    head = []
    for line in proc.stdout:
        head.append(line)
        if line.startswith("await-ciphertext"):
            break
    first = _lines("".join(head))
    rsa_public = _rsa_key(first["info-rsa"][2])
    proc.stdin.write(rsa_public.encrypt(secret, padding.PKCS1v15()).hex() + "\n")
    proc.stdin.flush()
    rest, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "Traceback" not in err, err
    out = {**first, **_lines(rest)}

    # acquire, the card files, capabilities, key sizes, properties
    assert out["acquire"] == ["0", "7"]
    cardid = bytes.fromhex(out["cardid"][1])
    assert len(cardid) == 16 and out["guid"] == ["0", cardid.hex()]
    cf = L.CacheFile.unpack(bytes.fromhex(out["cardcf"][1]))
    assert cf.version == 1
    assert bytes.fromhex(out["cardapps"][1]) == b"mscp\0\0\0\0"
    assert out["cmapfile"] == ["0", "-"]
    assert bytes.fromhex(out["enum-root"][1]).split(b"\0")[:4] == [b"cardid", b"cardapps", b"cardcf", b""]
    assert out["capabilities"] == ["0", "1", "0", "1"]
    assert out["keysizes-rsa"] == ["0", "2048", "2048", "4096", "1024"]
    assert out["keysizes-p256"] == ["0", "256", "256", "256", "0"]
    # CardGetProperty("Key Sizes") with the key spec in dwFlags: the CARD_KEY_SIZES of CardQueryKeySizes
    assert L.CARD_KEY_SIZES.unpack(bytes.fromhex(out["prop-keysizes-sig"][1])) == (1, 2048, 2048, 4096, 1024)
    assert L.CARD_KEY_SIZES.unpack(bytes.fromhex(out["prop-keysizes-ecdh384"][1])) == (1, 384, 384, 384, 0)
    assert _code(out["prop-keysizes-none"]) == E.SCARD_E_INVALID_PARAMETER
    assert bytes.fromhex(out["serial"][1]) == serial.encode()
    pin_info = L.PIN_INFO.unpack(bytes.fromhex(out["pin-info"][1]))
    assert pin_info[:5] == (6, L.ALPHANUMERIC_PIN_TYPE, L.AUTHENTICATION_PIN, 0b10, 0b100)
    assert out["list-pins"] == ["0", "06000000"]
    assert L.CARD_FREE_SPACE_INFO.unpack(bytes.fromhex(out["free-space"][1])) == (1, 0xFFFFFFFF, 255, 255)
    assert out["auth-state"] == ["0", "00000000"]
    assert out["guid-short"] == [str(E.ERROR_INSUFFICIENT_BUFFER), "16"]

    # a wrong PIN (tries left reported), the right one, the user role held
    wrong, tries_after_wrong = (int(v) for v in out["auth-wrong"])
    assert wrong == E.SCARD_W_WRONG_CHV
    assert out["auth-right"][0] == "0" and int(out["auth-right"][1]) == tries_after_wrong + 1
    assert out["auth-state-after"] == ["0", "02000000"]

    # containers made as the CSP makes them: cmapfile names them, CONTAINER_INFO carries their public keys
    assert out["create-rsa"][:2] == ["0", "0"] and out["create-ec"][:2] == ["0", "1"]
    rsa_name, ec_name = out["create-rsa"][2], out["create-ec"][2]
    assert out["info-rsa"][1] == "-"  # an AT_KEYEXCHANGE key: no signature-only blob
    ec_public = _ec_key(out["info-ec"][1])
    records = L.unpack_cmapfile(bytes.fromhex(out["cmapfile-after"][1]))
    assert [(r.guid, r.sig_key_bits, r.keyex_key_bits) for r in records] == [
        (rsa_name, 0, 2048),
        (ec_name, 256, 0),
    ]
    assert records[0].flags & L.CONTAINER_MAP_DEFAULT_CONTAINER
    assert L.CacheFile.unpack(bytes.fromhex(out["cardcf-after"][1])).containers != cf.containers

    # signatures, checked against the blobs
    prehashed = utils.Prehashed(hashes.SHA256())
    rsa_signature = bytes.fromhex(out["sign-rsa"][1])
    rsa_public.verify(rsa_signature, digest, padding.PKCS1v15(), prehashed)
    assert out["sign-rsa-pkcs1"] == out["sign-rsa"]  # deterministic: the KSP's padding info, same signature
    ec_signature = _ecdsa_der(bytes.fromhex(out["sign-ec"][1]))
    ec_public.verify(ec_signature, digest, ec.ECDSA(prehashed))
    assert out["sign-size-only"] == ["0", "256", "1"]
    assert out["decrypt"] == ["0", secret.hex()]

    # the audit log names the card edge as the front end of what the C caller did through it
    entries = json.loads(run_vsc("audit", "list", "--card", serial, "--json").stdout)["entries"]
    by_host = [e for e in entries if e["origin"].partition("/")[2].startswith("md_host[")]
    assert {e["origin"].partition("/")[0] for e in by_host} == {"minidriver"}
    assert {"login-user", "sign", "decrypt", "logout-user"} <= {e["kind"] for e in by_host}

    # the same keys through the PKCS#11 module: CKA_ID is the container GUID
    lib = pkcs11.lib(module_path)
    with store_loaded(lib, vsc_home):
        token = lib.get_token(token_serial=serial.encode())
        with token.open(user_pin=PIN) as session:
            rsa_id = uuid.UUID(rsa_name.strip("{}")).bytes
            ec_id = uuid.UUID(ec_name.strip("{}")).bytes
            p11_rsa = session.get_key(object_class=ObjectClass.PUBLIC_KEY, id=rsa_id)
            public_key_of(p11_rsa).verify(rsa_signature, digest, padding.PKCS1v15(), prehashed)
            p11_ec = session.get_key(object_class=ObjectClass.PUBLIC_KEY, id=ec_id)
            public_key_of(p11_ec).verify(ec_signature, digest, ec.ECDSA(prehashed))
            private = session.get_key(object_class=ObjectClass.PRIVATE_KEY, id=rsa_id)
            assert private[Attribute.LABEL] == rsa_name
            other_way = private.sign(b"through PKCS#11", mechanism=Mechanism.SHA256_RSA_PKCS)
            rsa_public.verify(other_way, b"through PKCS#11", padding.PKCS1v15(), hashes.SHA256())

    # errors come back as the specification's codes
    assert _code(out["err-no-file"]) == E.SCARD_E_FILE_NOT_FOUND
    assert _code(out["err-no-container"]) == E.SCARD_E_NO_KEY_CONTAINER
    for name in (
        "err-null-info",
        "err-null-card",
        "err-null-out",
        "err-pin-id",
        "err-property",
        "err-sign-spec",
        "err-acquire-null",
        "err-acquire-alloc",
        "err-acquire-flags",
    ):
        assert _code(out[name]) == E.SCARD_E_INVALID_PARAMETER, name
    assert _code(out["err-acquire-version"]) == E.ERROR_REVISION_MISMATCH
    assert out["acquire-v6"] == ["0", "6", "1", "1"]  # a version 6 CARD_DATA: its version 7 fields untouched

    # the end: deauthenticate, delete the context
    assert out["deauthenticate"] == ["0"]
    assert out["auth-state-end"] == ["0", "00000000"]
    assert _code(out["sign-after-deauth"]) == E.SCARD_W_SECURITY_VIOLATION
    assert out["delete"] == ["0"]
    assert out["after-delete"] == [str(E.SCARD_E_INVALID_HANDLE), "1"]
    allocated, freed, foreign = (int(v) for v in out["allocations"])
    assert allocated > 10 and freed == allocated and foreign == 0  # every card buffer came from pfnCspAlloc


def test_which_card_the_library_opens(md_host, md_library, vsc_home):
    first = _card("First card")
    out = _run(md_host, md_library, "acquire")
    assert out["acquire"] == ["0", "7"] and bytes.fromhex(out["serial"][1]) == first.encode()
    second = _card("Second card")
    out = _run(md_host, md_library, "acquire")
    assert out["acquire"][0] == str(E.SCARD_E_NO_SMARTCARD)  # two cards and nothing says which
    out = _run(md_host, md_library, "acquire", env={"VSC_MINIDRIVER_CARD": "Second card"})
    assert out["acquire"] == ["0", "7"] and bytes.fromhex(out["serial"][1]) == second.encode()
    out = _run(md_host, md_library, "acquire", env={"VSC_MINIDRIVER_CARD": first})
    assert bytes.fromhex(out["serial"][1]) == first.encode()
    out = _run(md_host, md_library, "acquire", env={"VSC_MINIDRIVER_CARD": "No such card"})
    assert out["acquire"][0] == str(E.SCARD_E_NO_SMARTCARD)


def test_fork_while_another_thread_is_inside_the_library(md_host, md_library, vsc_home):
    _card("Forked card")
    out = _run(md_host, md_library, "fork")
    assert out["forked-children-ok"] == ["10"], out


@pytest.mark.parametrize("order", ["md-first", "p11-first"])
def test_both_libraries_in_one_c_process(md_host, md_library, module_path, vsc_home, order):
    _card("Both")
    out = _run(md_host, md_library, "both", module_path, order)
    assert out["acquire"] == ["0", "7"]
    assert out["p11-initialize"] == ["0"] and out["p11-slots"] == ["0", "1"]
    assert out["md-cardid"] == ["0", "16"]
    assert out["p11-finalize"] == ["0"] and out["md-delete"] == ["0"]


def test_a_host_running_another_python_is_refused(tmp_path, md_library, vsc_home):
    exe = _build(tmp_path, "-DFAKE_PYTHON", "-rdynamic")
    result = subprocess.run([str(exe), md_library, "acquire"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert _lines(result.stdout)["acquire"][0] == str(E.SCARD_F_INTERNAL_ERROR)
    assert "built for Python" in result.stderr and "3.99.0" in result.stderr


def test_vsc_module_path_minidriver(md_library):
    printed = run_vsc("module", "path", "--minidriver").stdout.strip()
    assert printed == md_library and Path(printed).is_file()
    assert printed != run_vsc("module", "path").stdout.strip()
    symbols = subprocess.run(["nm", "-D", "--defined-only", printed], capture_output=True, text=True, check=True)
    assert " T CardAcquireContext" in symbols.stdout
