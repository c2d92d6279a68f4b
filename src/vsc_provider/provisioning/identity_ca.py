"""The identity CA that issued a card's certificates, as recorded from its server's activation answer (and
its later announcements: `tls_ca` in the card's binding), for services that should trust cards from that CA
(`vsc identity ca`, `vsc setup trust-ca`)."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from vsc_provider import api
from vsc_provider.ck import constants as C
from vsc_provider.ck.errors import CKRError
from vsc_provider.provisioning.client import active_binding

if TYPE_CHECKING:
    from cryptography import x509


def card_ca(ref: str) -> x509.Certificate:
    """The CA of the card `ref`, checked to be the issuer of every certificate on the card."""
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature

    card = api.find_card(ref)
    binding = active_binding(card)
    recorded = binding.get("tls_ca")
    if not recorded:
        raise CKRError(
            C.CKR_FUNCTION_FAILED,
            f"card {card.label!r} has no identity CA recorded yet: `vsc identity status {card.serial}` fetches it",
        )
    ca = x509.load_der_x509_certificate(bytes.fromhex(str(recorded)))
    for obj in card.objects.values():
        if obj.klass != C.CKO_CERTIFICATE or C.CKA_VALUE not in obj.attrs:
            continue
        cert = x509.load_der_x509_certificate(obj.attrs[C.CKA_VALUE])
        try:
            cert.verify_directly_issued_by(ca)
        except (InvalidSignature, ValueError, TypeError) as exc:
            raise CKRError(
                C.CKR_FUNCTION_FAILED,
                f"certificate {cert.subject.rfc4514_string()} on card {card.label!r} was not issued by the recorded "
                f"identity CA ({exc.__class__.__name__})",
            ) from None
    return ca


def pem(ca: x509.Certificate) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return ca.public_bytes(serialization.Encoding.PEM)


def nickname(ref: str) -> str:
    """The name the CA gets in an NSS db: one per server, so cards of the same server share it. No colon: NSS
    reads `a:b` as token `a`, nickname `b`."""
    url = urlsplit(str(active_binding(api.find_card(ref)).get("url", "")))
    where = f"{url.hostname or 'unknown server'}" + (f" port {url.port}" if url.port else "")
    return f"vsc identity CA {where}"
