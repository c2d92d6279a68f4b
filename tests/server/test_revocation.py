"""Revocation: certificates name the server's CRL and OCSP URLs; a deleted device's certificate is on the CRL
and answered REVOKED by OCSP as soon as the administrator deletes it, and a relying party checking the CRL
(openssl s_server -crl_check) refuses it, where it accepted it before."""

from __future__ import annotations

import os
import select
import subprocess
import time
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.x509 import ocsp
from cryptography.x509.oid import AuthorityInformationAccessOID, NameOID

from tests.server.idserver import IdServer, free_port, light_request, software_csr
from vsc_provider.cert_builder import certificate_builder
from vsc_provider.provisioning import wire


def _activate(server: IdServer, user: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    body, client = light_request(server, server.link(user, "light"), keys=[{"id": "auth", "csr": software_csr(key)}])
    with client:
        answer = client.call("POST", "/v1/activate", body)
    cert = x509.load_der_x509_certificate(wire.unb64u(answer["keys"][0]["certificate"]))
    return key, cert, str(answer["device"])


def _ca(server: IdServer) -> x509.Certificate:
    with server.client() as c:
        return x509.load_der_x509_certificate(wire.unb64u(c.call("GET", "/v1/server")["ca"]))


def _crl(server: IdServer) -> x509.CertificateRevocationList:
    with server.client() as c:
        response = c._http.get("/v1/crl")
    assert response.headers["content-type"] == "application/pkix-crl"
    return x509.load_der_x509_crl(response.content)


def _ocsp(
    server: IdServer, cert: x509.Certificate, ca: x509.Certificate, issuer: x509.Certificate | None = None
) -> ocsp.OCSPResponse:
    request = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer or ca, hashes.SHA256()).build()
    with server.client() as c:
        response = c._http.post(
            "/v1/ocsp",
            content=request.public_bytes(serialization.Encoding.DER),
            headers={"Content-Type": "application/ocsp-request"},
        )
    answer = ocsp.load_der_ocsp_response(response.content)
    assert answer.response_status == ocsp.OCSPResponseStatus.SUCCESSFUL
    _verify(ca, answer.signature, answer.tbs_response_bytes)  # signed by the CA
    return answer


def _verify(ca: x509.Certificate, signature: bytes, data: bytes) -> None:
    public = ca.public_key()
    if isinstance(public, ec.EllipticCurvePublicKey):
        public.verify(signature, data, ec.ECDSA(hashes.SHA256()))
    else:
        public.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())  # type: ignore[union-attr, call-arg]


def _pem(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _start_s_server(tmp: Path, ca: Path, crl: Path) -> tuple[subprocess.Popen[bytes], int]:
    """openssl s_server demanding a client certificate from the CA and checking it against the CRL."""
    server_key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "relying party")])
    server_cert = certificate_builder(name, name, server_key.public_key(), 1).sign(server_key, hashes.SHA256())
    _pem(tmp / "srv.pem", server_cert.public_bytes(serialization.Encoding.PEM))
    _pem(tmp / "srv.key", _key_pem(server_key))
    port = free_port()
    server = subprocess.Popen(
        ["openssl", "s_server", "-accept", f"127.0.0.1:{port}", "-naccept", "1",
         "-cert", str(tmp / "srv.pem"), "-key", str(tmp / "srv.key"), "-CAfile", str(ca),
         "-Verify", "1", "-verify_return_error", "-crl_check", "-CRL", str(crl), "-CRLform", "DER"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    assert server.stdout is not None
    deadline = time.monotonic() + 20
    seen = b""
    while b"ACCEPT" not in seen:
        ready, _, _ = select.select([server.stdout], [], [], max(0.0, deadline - time.monotonic()))
        chunk = os.read(server.stdout.fileno(), 4096) if ready else b""
        assert chunk, f"s_server did not start: {seen!r}"
        seen += chunk
    return server, port


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _handshake(tmp: Path, ca: Path, crl: Path, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> str:
    """The card's certificate offered to the relying party by openssl s_client; the relying party's verdict."""
    _pem(tmp / "card.pem", cert.public_bytes(serialization.Encoding.PEM))
    _pem(tmp / "card.key", _key_pem(key))
    server, port = _start_s_server(tmp, ca, crl)
    try:
        client = subprocess.run(
            ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-cert", str(tmp / "card.pem"),
             "-key", str(tmp / "card.key"), "-tls1_2"],
            input=b"hello\n", capture_output=True, timeout=20, check=False,
        )  # fmt: skip
        out, _ = server.communicate(timeout=10)
    finally:
        if server.poll() is None:
            server.kill()
            server.communicate(timeout=5)
    return out.decode(errors="replace") + client.stderr.decode(errors="replace")


def test_a_deleted_card_is_revoked_at_once(id_server: IdServer, tmp_path: Path) -> None:
    key, cert, device_id = _activate(id_server, "rita")
    ca = _ca(id_server)
    ca_pem = _pem(tmp_path / "ca.pem", ca.public_bytes(serialization.Encoding.PEM))
    # the certificate says where to look
    points = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    assert [n.value for p in points for n in (p.full_name or [])] == [f"{id_server.url}/v1/crl"]
    aia = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    assert [(d.access_method, d.access_location.value) for d in aia] == [
        (AuthorityInformationAccessOID.OCSP, f"{id_server.url}/v1/ocsp")
    ]
    before = _crl(id_server)
    assert before.is_signature_valid(ca.public_key())  # type: ignore[arg-type]
    assert before.get_revoked_certificate_by_serial_number(cert.serial_number) is None
    assert _ocsp(id_server, cert, ca).certificate_status == ocsp.OCSPCertStatus.GOOD
    crl_path = _pem(tmp_path / "crl.der", before.public_bytes(serialization.Encoding.DER))
    accepted = _handshake(tmp_path, ca_pem, crl_path, key, cert)
    assert "CN = rita" in accepted or "CN=rita" in accepted, accepted
    assert "revoked" not in accepted.lower()

    id_server.admin("POST", f"/admin/devices/{device_id}/delete")
    after = _crl(id_server)
    assert after.is_signature_valid(ca.public_key())  # type: ignore[arg-type]
    entry = after.get_revoked_certificate_by_serial_number(cert.serial_number)
    assert entry is not None
    assert (
        entry.extensions.get_extension_for_class(x509.CRLReason).value.reason == x509.ReasonFlags.cessation_of_operation
    )
    answer = _ocsp(id_server, cert, ca)
    assert answer.certificate_status == ocsp.OCSPCertStatus.REVOKED
    assert answer.revocation_reason == x509.ReasonFlags.cessation_of_operation
    crl_path.write_bytes(after.public_bytes(serialization.Encoding.DER))
    refused = _handshake(tmp_path, ca_pem, crl_path, key, cert)
    assert "certificate revoked" in refused.lower(), refused


def test_ocsp_knows_only_its_own_certificates(id_server: IdServer) -> None:
    _, cert, _ = _activate(id_server, "otto")
    ca = _ca(id_server)
    stranger_key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "stranger")])
    # the same serial, another issuer
    builder = certificate_builder(name, name, stranger_key.public_key(), 1, cert.serial_number)
    stranger = builder.sign(stranger_key, hashes.SHA256())
    assert _ocsp(id_server, cert, ca).certificate_status == ocsp.OCSPCertStatus.GOOD
    assert _ocsp(id_server, stranger, ca, issuer=stranger).certificate_status == ocsp.OCSPCertStatus.UNKNOWN
    with id_server.client() as c:
        response = c._http.post("/v1/ocsp", content=b"not der", headers={"Content-Type": "application/ocsp-request"})
    assert ocsp.load_der_ocsp_response(response.content).response_status == ocsp.OCSPResponseStatus.MALFORMED_REQUEST
