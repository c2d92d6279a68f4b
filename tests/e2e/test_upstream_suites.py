"""Other projects' PKCS#11 test suites, unmodified, against a compatible card: python-pkcs11's and PyKCS11's,
from the source releases of the versions installed (fetched by .ci/install.sh into .cache/upstream).

Each suite runs in a child process with a time limit (a hang fails the test) and reports to a JUnit file.
A test of theirs may fail only for a reason listed below; any other failure, or a listed one that starts to
pass, fails this test, so the lists stay true. python-pkcs11's DSA and Diffie-Hellman tests, which skip on
tokens without those mechanisms, must run here (the compatible card offers them).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.conftest import IN_CI

ROOT = Path(__file__).resolve().parents[2]
UPSTREAM = ROOT / ".cache" / "upstream"

VENDOR = "checks that the manufacturer is SoftHSM"
EDDSA_VARIANTS = (
    "Ed25519ctx/Ed25519ph and Ed448ctx/Ed448ph: `cryptography` (and the system OpenSSL 3.0) offers only pure "
    "EdDSA; the card answers CKR_MECHANISM_PARAM_INVALID"
)
# (module, class, test) -> why it fails here.
PYKCS11_EXPECTED = {
    ("test.test_LowLevel", "TestUtil", "test_LowLevel"): VENDOR,
    ("test.test_info", "TestUtil", "test_getInfo"): VENDOR,
    ("test.test_info", "TestUtil", "test_getSlotInfo"): VENDOR,
    ("test.test_info", "TestUtil", "test_getTokenInfo"): VENDOR,
    ("test.test_asymetric_ECC", "TestEDDSA", "test_sign_text"): EDDSA_VARIANTS,
    ("test.test_asymetric_ECC", "TestEDDSA", "test_sign_test_vectors"): EDDSA_VARIANTS,
    # Knock-on effect: pytest keeps the failed tests above (and their PyKCS11Lib) alive in its tracebacks,
    # so PyKCS11's class-wide list of loaded libraries is not empty here; it passes when run alone.
    ("test.test_load", "TestUtil", "test_invalid_load"): "a PyKCS11Lib kept alive by an earlier failed test",
}
ML_KEM_512 = (
    "ML-KEM-512: `cryptography` offers ML-KEM-768 and -1024 only; the card answers "
    "CKR_PARAMETER_SET_NOT_SUPPORTED (0x209), which python-pkcs11 does not name yet"
)
PYTHON_PKCS11_EXPECTED = {("tests.test_ml_kem", "MLKEMTests", "test_generate_ml_kem_512"): ML_KEM_512}
# Tests that skip for a missing mechanism on other tokens and must run (and pass) here: the compatible card
# offers DSA and Diffie-Hellman.
PYTHON_PKCS11_MUST_RUN = (
    ("tests.test_dsa", "DSATests", "test_generate_params"),
    ("tests.test_dsa", "DSATests", "test_generate_keypair_and_sign"),
    ("tests.test_dsa", "DSATests", "test_generate_keypair_directly"),
    ("tests.test_dh", "DHTests", "test_derive_key"),
    ("tests.test_dh", "DHTests", "test_load_params"),
    ("tests.test_dh", "DHTests", "test_generate_params"),
    ("tests.test_x509", "X509Tests", "test_verify_certificate_dsa"),
)


def _source(prefix: str) -> Path:
    found = sorted(UPSTREAM.glob(f"{prefix}-*.tar.gz"))
    if not found:
        message = f"no {prefix} source release in {UPSTREAM}: run bash .ci/install.sh"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return found[-1]


def _unpack(tarball: Path, into: Path, tests: str) -> Path:
    """Only their test folder: the library's own sources beside it would shadow the installed build."""
    with tarfile.open(tarball) as tar:
        members = [m for m in tar.getmembers() if m.name.split("/")[1:2] == [tests]]
        tar.extractall(into, members=members, filter="data")
    return next(p for p in into.iterdir() if p.is_dir())


def _card(home: Path, label: str, pin: str, so_pin: str) -> None:
    pins = ["--pin", pin, "--so-pin", so_pin]
    subprocess.run(
        [sys.executable, "-m", "vsc_provider.cli", "card", "create", "--label", label, "--policy", "compatible", *pins],
        env={**os.environ, "VSC_HOME": str(home)},
        check=True,
        capture_output=True,
        timeout=60,
    )


def _run(tree: Path, tests: str, env: dict[str, str], junit: Path) -> dict[tuple[str, str, str], list[str]]:
    """Run their suite; returns the failures and errors by test, each with its messages."""
    pytest_args = ["-q", "-p", "no:cacheprovider", "-o", "addopts=", "--rootdir", str(tree), f"--junitxml={junit}"]
    result = subprocess.run(
        [sys.executable, "-m", "pytest", *pytest_args, tests],
        cwd=tree,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode in (0, 1), result.stdout[-3000:] + result.stderr[-3000:]
    failed: dict[tuple[str, str, str], list[str]] = {}
    cases = 0
    for case in ET.parse(junit).iter("testcase"):
        cases += 1
        module, _, cls = (case.get("classname") or "").rpartition(".")
        for child in case:
            if child.tag in ("failure", "error"):
                failed.setdefault((module, cls, case.get("name") or ""), []).append(child.get("message") or "")
    assert cases > 50, result.stdout[-3000:]
    print(json.dumps({"suite": tests, "cases": cases, "failed": sorted(map(list, failed))}))
    return failed


def _skipped(junit: Path) -> set[tuple[str, str, str]]:
    """The tests a JUnit report lists as skipped."""
    skipped = set()
    for case in ET.parse(junit).iter("testcase"):
        if any(child.tag == "skipped" for child in case):
            module, _, cls = (case.get("classname") or "").rpartition(".")
            skipped.add((module, cls, case.get("name") or ""))
    return skipped


def _names(junit: Path) -> set[tuple[str, str, str]]:
    names = set()
    for case in ET.parse(junit).iter("testcase"):
        module, _, cls = (case.get("classname") or "").rpartition(".")
        names.add((module, cls, case.get("name") or ""))
    return names


def test_python_pkcs11_suite(tmp_path: Path, module_path: str) -> None:
    tree = _unpack(_source("python_pkcs11"), tmp_path / "src", "tests")
    home = tmp_path / "vsc-home"
    _card(home, "suite", "1234", "5678")
    env = {
        "VSC_HOME": str(home),
        "PKCS11_MODULE": module_path,
        "PKCS11_TOKEN_LABEL": "suite",
        "PKCS11_TOKEN_PIN": "1234",
        "PKCS11_TOKEN_SO_PIN": "5678",
    }
    junit = tmp_path / "junit.xml"
    failed = _run(tree, "tests", env, junit)
    assert set(failed) == set(PYTHON_PKCS11_EXPECTED), failed
    must_run = set(PYTHON_PKCS11_MUST_RUN)
    assert must_run <= _names(junit), must_run - _names(junit)
    assert not must_run & _skipped(junit), must_run & _skipped(junit)
    assert all("0x209" in m for m in failed[("tests.test_ml_kem", "MLKEMTests", "test_generate_ml_kem_512")])


def test_pykcs11_suite(tmp_path: Path, module_path: str) -> None:
    tree = _unpack(_source("pykcs11"), tmp_path / "src", "test")
    home = tmp_path / "vsc-home"
    _card(home, "pyk", "1234", "123456")  # the PINs PyKCS11's tests use
    failed = _run(tree, "test", {"VSC_HOME": str(home), "PYKCS11LIB": module_path}, tmp_path / "junit.xml")
    assert set(failed) == set(PYKCS11_EXPECTED), failed
    for case in (k for k, why in PYKCS11_EXPECTED.items() if why == EDDSA_VARIANTS):
        assert all("CKR_MECHANISM_PARAM_INVALID" in m for m in failed[case]), failed[case]
