"""The shared vocabulary: constants agree with an independent client library; the attribute codec."""

from __future__ import annotations

import pkcs11.constants as pc
import pkcs11.mechanisms as pm
import pytest

from vsc_provider.ck import attributes as A
from vsc_provider.ck import constants as C
from vsc_provider.ck.errors import CKRError


@pytest.mark.parametrize(
    ("enum", "prefix"),
    [
        (pc.Attribute, "CKA_"),
        (pc.ObjectClass, "CKO_"),
        (pm.KeyType, "CKK_"),
        (pm.Mechanism, "CKM_"),
        (pc.MechanismFlag, "CKF_"),
        (pc.TokenFlag, "CKF_"),
        (pc.SlotFlag, "CKF_"),
        (pc.UserType, "CKU_"),
    ],
)
def test_constants_match_python_pkcs11(enum, prefix):
    compared = 0
    for member in enum:
        name = prefix + member.name
        if hasattr(C, name):
            assert getattr(C, name) == int(member.value), name
            compared += 1
    assert compared


def test_codec_round_trip_and_normalisation():
    assert A.decode(C.CKA_TOKEN, A.encode(C.CKA_TOKEN, True)) is True
    assert A.decode(C.CKA_CLASS, A.encode(C.CKA_CLASS, C.CKO_PRIVATE_KEY)) == C.CKO_PRIVATE_KEY
    assert A.decode(C.CKA_LABEL, A.encode(C.CKA_LABEL, "Work card")) == "Work card"
    assert A.normalize(C.CKA_SIGN, b"\x07") == A.TRUE
    assert len(A.encode(C.CKA_MODULUS_BITS, 2048)) == A.ULONG_SIZE


def test_codec_refuses_malformed_values():
    with pytest.raises(CKRError) as err:
        A.decode(C.CKA_CLASS, b"\x01\x02")
    assert err.value.rv == C.CKR_ATTRIBUTE_VALUE_INVALID
    with pytest.raises(CKRError) as err:
        A.template([(C.CKA_TOKEN, A.TRUE), (C.CKA_TOKEN, A.FALSE)])
    assert err.value.rv == C.CKR_TEMPLATE_INCONSISTENT
