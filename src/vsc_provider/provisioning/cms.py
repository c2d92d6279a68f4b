"""Detached CMS SignedData (RFC 5652) for signing requests: the signed attributes the card signs, the
SignedData around the card's signature, and its verification. Built and parsed with asn1crypto, verified
with `cryptography`; the device makes it, the server checks it.

The signed attributes are content-type (data), message-digest and signing-time; the SignerInfo's digest
algorithm is the hash of `hash_name` (the one the message digest was made with, and the one `alg` signs with).
"""

from __future__ import annotations

import datetime
import hmac

from asn1crypto import algos as a_algos
from asn1crypto import cms as a_cms
from asn1crypto import core as a_core
from asn1crypto import x509 as a_x509
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from vsc_provider.provisioning.request_wire import ECDSA_SIZES

_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}
_SIGNATURE_OIDS = {"RS256": "sha256_rsa", "RS512": "sha512_rsa", "ES256": "sha256_ecdsa", "ES384": "sha384_ecdsa"}
_PSS_SALT = {"sha256": 32, "sha384": 48, "sha512": 64}


def _hash(hash_name: str) -> hashes.HashAlgorithm:
    if hash_name not in _HASHES:
        raise ValueError(f"unsupported hash {hash_name!r}")
    return _HASHES[hash_name]()


def signed_attributes(digest: bytes, hash_name: str, signing_time: datetime.datetime) -> bytes:
    """DER of the SET OF signed attributes (content-type data, message-digest, signing-time): what the card
    signs. `digest` is the hash_name digest of the data."""
    if len(digest) != _hash(hash_name).digest_size:
        raise ValueError(f"a {hash_name} digest has {_hash(hash_name).digest_size} bytes")
    when = signing_time.astimezone(datetime.UTC).replace(microsecond=0)
    # RFC 5652 11.3: UTCTime for 1950..2049, GeneralizedTime otherwise
    time = a_cms.Time({"utc_time" if 1950 <= when.year < 2050 else "generalized_time": when})
    attrs = a_cms.CMSAttributes(
        [
            {"type": "content_type", "values": ["data"]},
            {"type": "signing_time", "values": [time]},
            {"type": "message_digest", "values": [digest]},
        ]
    )
    return bytes(attrs.dump(force=True))


def _signature_algorithm(alg: str) -> a_algos.SignedDigestAlgorithm:
    if alg == "PS256":
        params = a_algos.RSASSAPSSParams(
            {
                "hash_algorithm": {"algorithm": "sha256"},
                "mask_gen_algorithm": {"algorithm": "mgf1", "parameters": {"algorithm": "sha256"}},
                "salt_length": _PSS_SALT["sha256"],
                "trailer_field": "trailer_field_bc",
            }
        )
        return a_algos.SignedDigestAlgorithm({"algorithm": "rsassa_pss", "parameters": params})
    if alg not in _SIGNATURE_OIDS:
        raise ValueError(f"unsupported signature algorithm {alg!r}")
    return a_algos.SignedDigestAlgorithm({"algorithm": _SIGNATURE_OIDS[alg]})


def _der_ecdsa(signature: bytes, alg: str) -> bytes:
    """An ECDSA signature as CMS carries it (DER Ecdsa-Sig-Value). The card gives r||s (PKCS#11, JOSE);
    a signature that is already strict DER (it re-encodes to the same bytes) is kept as it is."""
    try:
        parsed = a_algos.DSASignature.load(signature, strict=True)
        if parsed.dump(force=True) == signature and parsed["r"].native > 0 and parsed["s"].native > 0:
            return signature
    except (ValueError, TypeError):
        pass
    if len(signature) != 2 * ECDSA_SIZES[alg]:
        raise ValueError(f"an {alg} signature is r||s of {2 * ECDSA_SIZES[alg]} bytes or DER")
    return bytes(a_algos.DSASignature.from_p1363(signature).dump())


def signed_data(cert_der: bytes, signed_attrs: bytes, signature: bytes, hash_name: str, alg: str) -> bytes:
    """DER ContentInfo of a detached SignedData: the signer's certificate, the signed attributes
    (from signed_attributes) and the card's signature over them by `alg`."""
    _hash(hash_name)
    if alg in ECDSA_SIZES:
        signature = _der_ecdsa(signature, alg)
    cert = a_x509.Certificate.load(cert_der)
    signer = a_cms.SignerInfo(
        {
            "version": "v1",
            "sid": a_cms.SignerIdentifier(
                {
                    "issuer_and_serial_number": a_cms.IssuerAndSerialNumber(
                        {"issuer": cert.issuer, "serial_number": cert.serial_number}
                    )
                }
            ),
            "digest_algorithm": {"algorithm": hash_name},
            "signed_attrs": a_cms.CMSAttributes.load(signed_attrs),
            "signature_algorithm": _signature_algorithm(alg),
            "signature": signature,
        }
    )
    content = a_cms.SignedData(
        {
            "version": "v1",
            "digest_algorithms": [{"algorithm": hash_name}],
            "encap_content_info": {"content_type": "data"},
            "certificates": [a_cms.CertificateChoices({"certificate": cert})],
            "signer_infos": [signer],
        }
    )
    return bytes(a_cms.ContentInfo({"content_type": "signed_data", "content": content}).dump(force=True))


def _attribute(attrs: a_cms.CMSAttributes, name: str) -> a_core.Asn1Value:
    found = [a for a in attrs if a["type"].native == name]
    if len(found) != 1 or len(found[0]["values"]) != 1:
        raise ValueError(f"the signed attributes need exactly one {name}")
    return found[0]["values"][0]


def _verify_signature(
    public: object, algorithm: a_algos.SignedDigestAlgorithm, hash_name: str, signed: bytes, signature: bytes
) -> None:
    name = algorithm["algorithm"].native
    if name == "rsassa_pss":
        params = algorithm["parameters"]
        mgf = params["mask_gen_algorithm"]
        if (
            params["hash_algorithm"]["algorithm"].native != hash_name
            or mgf["algorithm"].native != "mgf1"
            or mgf["parameters"]["algorithm"].native != hash_name
        ):
            raise ValueError("RSASSA-PSS parameters must use the digest algorithm throughout")
        if not isinstance(public, rsa.RSAPublicKey):
            raise ValueError("an RSASSA-PSS signature needs an RSA certificate")
        pss = padding.PSS(padding.MGF1(_hash(hash_name)), int(params["salt_length"].native))
        public.verify(signature, signed, pss, _hash(hash_name))
        return
    expected = {f"{hash_name}_rsa": rsa.RSAPublicKey, f"{hash_name}_ecdsa": ec.EllipticCurvePublicKey}
    if name not in expected:
        raise ValueError(f"signature algorithm {name} does not fit digest algorithm {hash_name}")
    if not isinstance(public, expected[name]):
        raise ValueError("the signature algorithm does not fit the certificate's key")
    if isinstance(public, rsa.RSAPublicKey):
        public.verify(signature, signed, padding.PKCS1v15(), _hash(hash_name))
    else:
        assert isinstance(public, ec.EllipticCurvePublicKey)
        public.verify(signature, signed, ec.ECDSA(_hash(hash_name)))


def verify_signed_data(cms_der: bytes, digest: bytes, hash_name: str) -> bytes:
    """The signer certificate (DER) of a detached SignedData over the data whose `hash_name` digest is
    `digest`; ValueError when anything does not verify (structure, digest, attributes, signature)."""
    try:
        info = a_cms.ContentInfo.load(cms_der, strict=True)
        if info["content_type"].native != "signed_data":
            raise ValueError("not a SignedData")
        sd = info["content"]
        encap = sd["encap_content_info"]
        if encap["content_type"].native != "data" or encap["content"].native is not None:
            raise ValueError("a detached SignedData over data is expected")
        signers, certs = list(sd["signer_infos"]), list(sd["certificates"])
        if len(signers) != 1 or len(certs) != 1 or certs[0].name != "certificate":
            raise ValueError("exactly one signer and its certificate are expected")
        si, cert = signers[0], certs[0].chosen
        sid = si["sid"]
        if sid.name != "issuer_and_serial_number" or (
            sid.chosen["issuer"].dump() != cert.issuer.dump()
            or sid.chosen["serial_number"].native != cert.serial_number
        ):
            raise ValueError("the signer identifier does not name the certificate")
        if si["digest_algorithm"]["algorithm"].native != hash_name:
            raise ValueError(f"the digest algorithm must be {hash_name}")
        attrs = si["signed_attrs"]
        if not isinstance(attrs, a_cms.CMSAttributes) or not len(attrs):
            raise ValueError("signed attributes are required")
        if _attribute(attrs, "content_type").native != "data":
            raise ValueError("the content-type attribute must be data")
        if not hmac.compare_digest(_attribute(attrs, "message_digest").native, digest):
            raise ValueError("the message digest is not the data's")
        _attribute(attrs, "signing_time")
        # the signature is over the attributes as a SET OF (RFC 5652 5.4): same bytes, universal SET tag
        signed = b"\x31" + attrs.dump()[1:]
        signature = si["signature"].native
        cert_der = bytes(cert.dump())
        public = x509.load_der_x509_certificate(cert_der).public_key()
        _verify_signature(public, si["signature_algorithm"], hash_name, signed, signature)
    except InvalidSignature:
        raise ValueError("the CMS signature does not verify with its certificate") from None
    except ValueError:
        raise
    except Exception as exc:  # asn1crypto raises many kinds on malformed input
        raise ValueError(f"malformed CMS: {type(exc).__name__}") from None
    return cert_der
