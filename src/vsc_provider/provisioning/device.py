"""Device-side building blocks: the device (protocol) key, JWE to the server, attestation.

The device key is the card's identity towards its server: an RSA key sealed under the machine's device key
file, so that the card can talk to its server without the PIN (status, deletion). The keys on the card
itself are in card_keys.py.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from jwcrypto import jwe as jose_jwe
from jwcrypto import jwk as jose_jwk
from jwcrypto import jws as jose_jws

from vsc_provider import config
from vsc_provider.ck import constants as C
from vsc_provider.ck.errors import CKRError
from vsc_provider.provisioning import wire
from vsc_provider.token import keywrap, tpm_attest

_JWS_HASHES: dict[str, type[hashes.HashAlgorithm]] = {"RS256": hashes.SHA256, "RS512": hashes.SHA512}


def _aad(serial: str) -> bytes:
    return f"vsc-server-device-key:{serial}".encode()


@dataclass
class DeviceKey:
    key: rsa.RSAPrivateKey

    @classmethod
    def generate(cls) -> DeviceKey:
        return cls(rsa.generate_private_key(65537, 2048))

    @classmethod
    def unseal(cls, sealed_hex: str, device_file_key: bytes, serial: str) -> DeviceKey:
        der = keywrap.unseal(device_file_key, bytes.fromhex(sealed_hex), _aad(serial))
        if der is None:
            raise ValueError("the card's device key does not decrypt with this machine's device key")
        # made here and authenticated by AES-GCM under the machine's key: the RSA consistency checks (~100 ms
        # on every server call) would only re-check our own key
        key = serialization.load_der_private_key(der, None, unsafe_skip_rsa_key_validation=True)
        assert isinstance(key, rsa.RSAPrivateKey)
        return cls(key)

    def seal(self, device_file_key: bytes, serial: str) -> str:
        der = self.key.private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        return keywrap.seal(device_file_key, der, _aad(serial)).hex()

    @property
    def jwk(self) -> jose_jwk.JWK:
        return jose_jwk.JWK.from_pyca(self.key)

    def public_jwk(self) -> dict[str, Any]:
        return dict(self.jwk.export_public(as_dict=True))

    def thumbprint(self) -> str:
        return str(self.jwk.thumbprint())

    def sign(
        self, url: str, nonce: str, payload: dict[str, Any], kid: str | None = None, alg: str = "RS256"
    ) -> dict[str, Any]:
        """A flattened JWS: the new-key form carries 'jwk', a registered device signs with 'kid'."""
        header: dict[str, Any] = {"alg": alg, "nonce": nonce, "url": url}
        if kid is None:
            header["jwk"] = self.public_jwk()
        else:
            header["kid"] = kid
        if alg not in _JWS_HASHES:
            raise ValueError(f"device keys sign with {', '.join(_JWS_HASHES)}")
        # signed with the loaded key itself: jwcrypto would rebuild (and re-check) the RSA key every time
        protected = wire.b64u(json.dumps(header).encode())
        body = wire.b64u(wire.canonical(payload))
        signature = self.key.sign(f"{protected}.{body}".encode(), padding.PKCS1v15(), _JWS_HASHES[alg]())
        return {"protected": protected, "payload": body, "signature": wire.b64u(signature)}

    def open(self, compact: str) -> bytes:
        token = jose_jwe.JWE()
        token.allowed_algs = [wire.JWE_ALG, wire.JWE_ENC]
        token.deserialize(compact, key=self.jwk)
        return bytes(token.payload)


def jwe_to_server(jwks: dict[str, Any], plaintext: bytes) -> str:
    key = jose_jwk.JWK(**jwks["keys"][0])
    token = jose_jwe.JWE(
        plaintext, protected=json.dumps({"alg": wire.JWE_ALG, "enc": wire.JWE_ENC, "kid": key.get("kid")})
    )
    token.add_recipient(key)
    return str(token.serialize(compact=True))


def attestation_key_path() -> Path | None:
    """The implementer's attestation key, configured at install time (VSC_ATTESTATION_KEY or in VSC_HOME)."""
    explicit = os.environ.get("VSC_ATTESTATION_KEY")
    if explicit:
        return Path(explicit)
    default = config.home() / "attestation.pem"
    return default if default.exists() else None


def attest(device: DeviceKey, nonce: str) -> str | None:
    path = attestation_key_path()
    if path is None:
        return None
    pem = path.read_bytes()
    key = jose_jwk.JWK.from_pem(pem)
    private = serialization.load_pem_private_key(pem, None)
    alg = "ES256" if isinstance(private, ec.EllipticCurvePrivateKey) else "RS256"
    token = jose_jws.JWS(wire.canonical({"device": device.thumbprint(), "nonce": nonce}))
    token.add_signature(key, alg=alg, protected=json.dumps({"alg": alg}))
    return str(token.serialize(compact=True))


def new_tpm_key() -> dict[str, Any]:
    """A TPM attestation key for a card whose device-key layer is the TPM (kept in its server binding)."""
    try:
        return tpm_attest.create()
    except tpm_attest.TpmError as exc:
        raise CKRError(C.CKR_DEVICE_ERROR, f"TPM attestation key: {exc}") from None


def tpm_attestation(tpm_key: dict[str, Any], device_thumbprint: str, nonce: str) -> str:
    """A compact JWS (ES256) by the card's TPM key over the device key's thumbprint and this request's nonce:
    only the TPM that made the key produces it, so a copy of the store on another machine cannot."""
    claims = {"device": device_thumbprint, "nonce": nonce}
    try:
        return tpm_attest.sign_es256(tpm_key, wire.TPM_ATTESTATION_TYP, claims)
    except tpm_attest.TpmError as exc:
        raise CKRError(
            C.CKR_DEVICE_ERROR,
            f"this card's TPM attestation key cannot sign: {exc} (it signs only on the TPM that made it)",
        ) from None


def tpm_attested(
    binding: dict[str, Any], dev: DeviceKey, path: str, payload: dict[str, Any], nonce: str
) -> dict[str, Any]:
    """The payload with the TPM key's attestation for this nonce, when the card has a TPM key and the call is
    one the server checks it on (wire.TPM_ATTESTED_CALLS); else the payload as it is."""
    tpm_key = binding.get("tpm_key")
    if not tpm_key or path not in wire.TPM_ATTESTED_CALLS:
        return payload
    return {**payload, "tpm_attestation": tpm_attestation(tpm_key, dev.thumbprint(), nonce)}
