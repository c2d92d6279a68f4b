"""CKA_EC_PARAMS and CKA_EC_POINT as PKCS#11 encodes them: a named curve's OID in DER (or, from some clients,
its name as a PrintableString) and the point as a DER OCTET STRING.

`cryptography` and asn1crypto are imported where used: these modules load at every C_Initialize and their
start-up time and memory count (a host that only lists slots never needs them).
"""

from __future__ import annotations

from vsc_provider.ck import constants as C
from vsc_provider.ck.errors import CKRError
from vsc_provider.token.curves import CURVE_NAMES, EC_CURVES, EDWARDS_OIDS


def oid_der(oid: str) -> bytes:
    from asn1crypto import core as asn1_core

    return bytes(asn1_core.ObjectIdentifier(oid).dump())


def curve_from_params(params: bytes) -> str:
    """CKA_EC_PARAMS (a named-curve OID, or a PrintableString name as some clients send) -> dotted OID."""
    from asn1crypto import core as asn1_core
    from asn1crypto import keys as asn1_keys

    try:
        parsed = asn1_keys.ECDomainParameters.load(params)
        if parsed.name == "named":
            oid = parsed.chosen.dotted
            if oid in EC_CURVES or oid in EDWARDS_OIDS:
                return oid
    except (ValueError, TypeError):
        pass
    try:
        name = asn1_core.PrintableString.load(params).native
        if name in CURVE_NAMES:
            return CURVE_NAMES[name]
    except (ValueError, TypeError):
        pass
    try:
        oid = asn1_core.ObjectIdentifier.load(params).dotted
        if oid in EC_CURVES or oid in EDWARDS_OIDS:
            return oid
    except (ValueError, TypeError):
        pass
    raise CKRError(C.CKR_CURVE_NOT_SUPPORTED, "unsupported or malformed CKA_EC_PARAMS")


def octet_string(raw: bytes) -> bytes:
    from asn1crypto import core as asn1_core

    return bytes(asn1_core.OctetString(raw).dump())


def unwrap_octet_string(raw: bytes) -> bytes:
    """CKA_EC_POINT as DER OCTET STRING, tolerating clients that send the bare point."""
    from asn1crypto import core as asn1_core

    try:
        parsed = asn1_core.OctetString.load(raw)
        inner = parsed.native
        if isinstance(inner, bytes) and len(parsed.dump()) == len(raw):
            return inner
    except ValueError:
        pass
    return raw
