"""The shared CMS helper: what it builds verifies with itself and with `openssl cms -verify`, for every
request algorithm; a wrong digest, a changed attribute or signature, another certificate are refused."""

from __future__ import annotations

import datetime
import subprocess
from pathlib import Path
from typing import Any

import pytest
from asn1crypto import cms as a_cms
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils
from cryptography.x509.oid import NameOID

from tests.conftest import require_tool
from vsc_provider.cert_builder import certificate_builder
from vsc_provider.provisioning import cms, request_wire

HASHES = {"sha256": hashes.SHA256(), "sha384": hashes.SHA384(), "sha512": hashes.SHA512()}
DATA = b"pay 100 EUR to account 42"


def new_key(alg: str) -> Any:
    if alg in request_wire.RSA_ALGS:
        return rsa.generate_private_key(65537, 2048)
    return ec.generate_private_key(ec.SECP256R1() if alg == "ES256" else ec.SECP384R1())


def self_signed(key: Any, serial: int = 7) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "signer")])
    cert = certificate_builder(name, name, key.public_key(), 1, serial).sign(key, hashes.SHA256())
    return cert.public_bytes(serialization.Encoding.DER)


def card_like_signature(key: Any, alg: str, message: bytes) -> bytes:
    """What a PKCS#11 hash-and-sign mechanism returns: PKCS#1 / PSS bytes, or ECDSA as r||s."""
    h = HASHES[request_wire.ALG_HASH[alg]]
    if alg.startswith("RS"):
        return bytes(key.sign(message, padding.PKCS1v15(), h))
    if alg == "PS256":
        return bytes(key.sign(message, padding.PSS(padding.MGF1(h), 32), h))
    r, s = utils.decode_dss_signature(key.sign(message, ec.ECDSA(h)))
    size = request_wire.ECDSA_SIZES[alg]
    return r.to_bytes(size, "big") + s.to_bytes(size, "big")


def make(alg: str, data: bytes = DATA) -> tuple[bytes, bytes, Any]:
    key = new_key(alg)
    cert = self_signed(key)
    hash_name = request_wire.ALG_HASH[alg]
    attrs = cms.signed_attributes(request_wire.digest(hash_name, data), hash_name, datetime.datetime.now(datetime.UTC))
    return cms.signed_data(cert, attrs, card_like_signature(key, alg, attrs), hash_name, alg), cert, key


@pytest.mark.parametrize("alg", request_wire.ALGS)
def test_signed_data_verifies_here_and_with_openssl(alg: str, tmp_path: Path) -> None:
    openssl = require_tool("openssl", "openssl")
    signed, cert, _ = make(alg)
    hash_name = request_wire.ALG_HASH[alg]
    assert cms.verify_signed_data(signed, request_wire.digest(hash_name, DATA), hash_name) == cert
    (tmp_path / "sig.der").write_bytes(signed)
    (tmp_path / "data").write_bytes(DATA)
    (tmp_path / "cert.pem").write_bytes(x509.load_der_x509_certificate(cert).public_bytes(serialization.Encoding.PEM))
    command = [openssl, "cms", "-verify", "-inform", "DER", "-in", str(tmp_path / "sig.der"), "-binary"]
    command += ["-content", str(tmp_path / "data"), "-CAfile", str(tmp_path / "cert.pem"), "-purpose", "any"]
    command += ["-out", "/dev/null"]
    out = subprocess.run(command, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    (tmp_path / "data").write_bytes(DATA + b"!")
    assert subprocess.run(command, capture_output=True, text=True).returncode != 0


def test_der_ecdsa_signatures_are_taken_as_they_are() -> None:
    key = new_key("ES256")
    cert = self_signed(key)
    attrs = cms.signed_attributes(request_wire.digest("sha256", DATA), "sha256", datetime.datetime.now(datetime.UTC))
    der_sig = key.sign(attrs, ec.ECDSA(hashes.SHA256()))
    signed = cms.signed_data(cert, attrs, der_sig, "sha256", "ES256")
    assert cms.verify_signed_data(signed, request_wire.digest("sha256", DATA), "sha256") == cert


def test_refusals() -> None:
    signed, cert, _ = make("ES256")
    good = request_wire.digest("sha256", DATA)
    with pytest.raises(ValueError, match="digest"):
        cms.verify_signed_data(signed, request_wire.digest("sha256", b"other"), "sha256")
    with pytest.raises(ValueError):
        cms.verify_signed_data(signed, request_wire.digest("sha384", DATA), "sha384")
    with pytest.raises(ValueError):
        cms.verify_signed_data(b"\x30\x03\x02\x01\x01", good, "sha256")
    with pytest.raises(ValueError):
        cms.verify_signed_data(b"not DER at all", good, "sha256")
    # the signature by another key under the same certificate
    info = a_cms.ContentInfo.load(signed)
    si = info["content"]["signer_infos"][0]
    attrs = b"\x31" + si["signed_attrs"].dump()[1:]
    other = new_key("ES256").sign(attrs, ec.ECDSA(hashes.SHA256()))
    forged = cms.signed_data(cert, attrs, other, "sha256", "ES256")
    with pytest.raises(ValueError, match="does not verify"):
        cms.verify_signed_data(forged, good, "sha256")
    # the right signature with another certificate for the same name and serial
    stranger = self_signed(new_key("ES256"))
    swapped = cms.signed_data(stranger, attrs, si["signature"].native, "sha256", "ES256")
    with pytest.raises(ValueError, match="does not verify"):
        cms.verify_signed_data(swapped, good, "sha256")
    with pytest.raises(ValueError):
        cms.signed_attributes(b"short", "sha256", datetime.datetime.now(datetime.UTC))
