"""The attribute sets of new objects that hold no key: certificates, data objects and the PKCS#11 profile,
and the storage attributes every object has (key_attrs.py builds keys' on the same).

`cryptography` and asn1crypto are imported where used: these modules load at every C_Initialize and their
start-up time and memory count (a host that only lists slots never needs them).
"""

from __future__ import annotations

from vsc_provider.ck import attributes as A
from vsc_provider.ck import constants as C
from vsc_provider.ck.errors import CKRError
from vsc_provider.token.key_info import spki


def storage(klass: int, token: bool, private: bool, label: str) -> dict[int, A.Value]:
    return {
        C.CKA_CLASS: klass,
        C.CKA_TOKEN: token,
        C.CKA_PRIVATE: private,
        C.CKA_LABEL: label,
        C.CKA_MODIFIABLE: True,
        C.CKA_COPYABLE: True,
        C.CKA_DESTROYABLE: True,
    }


def certificate_attrs(der: bytes, *, key_id: bytes, label: str, token: bool, user_cert: bool) -> dict[int, bytes]:
    import hashlib

    from asn1crypto import core as asn1_core
    from cryptography import x509

    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError as exc:
        raise CKRError(C.CKR_ATTRIBUTE_VALUE_INVALID, "CKA_VALUE is not a DER X.509 certificate") from exc
    serial = asn1_core.Integer(cert.serial_number).dump()
    public_key = cert.public_key()
    try:
        public_info = spki(public_key)
    except (ValueError, TypeError):
        public_info = b""
    values = storage(C.CKO_CERTIFICATE, token, False, label)
    values.update(
        {
            C.CKA_CERTIFICATE_TYPE: C.CKC_X_509,
            C.CKA_TRUSTED: False,
            C.CKA_CERTIFICATE_CATEGORY: (
                C.CK_CERTIFICATE_CATEGORY_TOKEN_USER if user_cert else C.CK_CERTIFICATE_CATEGORY_UNSPECIFIED
            ),
            C.CKA_CHECK_VALUE: hashlib.sha1(der).digest()[:3],  # noqa: S324 - defined by the standard
            C.CKA_START_DATE: cert.not_valid_before_utc.strftime("%Y%m%d").encode(),
            C.CKA_END_DATE: cert.not_valid_after_utc.strftime("%Y%m%d").encode(),
            C.CKA_SUBJECT: cert.subject.public_bytes(),
            C.CKA_ISSUER: cert.issuer.public_bytes(),
            C.CKA_SERIAL_NUMBER: bytes(serial),
            C.CKA_ID: key_id,
            C.CKA_VALUE: der,
            C.CKA_URL: "",
            C.CKA_HASH_OF_SUBJECT_PUBLIC_KEY: b"",
            C.CKA_HASH_OF_ISSUER_PUBLIC_KEY: b"",
            C.CKA_JAVA_MIDP_SECURITY_DOMAIN: 0,
            C.CKA_NAME_HASH_ALGORITHM: C.CKM_SHA_1,
            C.CKA_PUBLIC_KEY_INFO: public_info,
        }
    )
    return A.make(values)


def data_attrs(value: bytes, *, label: str, application: str, token: bool, private: bool) -> dict[int, bytes]:
    values = storage(C.CKO_DATA, token, private, label)
    values.update({C.CKA_APPLICATION: application, C.CKA_OBJECT_ID: b"", C.CKA_VALUE: value})
    return A.make(values)


PROFILE_LABEL = "PKCS#11 profile"


def profile_attrs(profile_id: int) -> dict[int, bytes]:
    values = storage(C.CKO_PROFILE, True, False, PROFILE_LABEL)  # a label keeps listings (p11tool) readable
    values[C.CKA_MODIFIABLE] = False
    values[C.CKA_DESTROYABLE] = False
    values[C.CKA_COPYABLE] = False
    values[C.CKA_PROFILE_ID] = profile_id
    return A.make(values)
