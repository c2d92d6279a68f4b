"""Every failed C_Sign/C_Encrypt/C_Decrypt/C_Digest call (other than CKR_BUFFER_TOO_SMALL or a length query)
ends the operation, as the standard says: an unexpected error used to leave it active, so the session
answered CKR_OPERATION_ACTIVE to every later *Init."""

from __future__ import annotations

import pytest

from vsc_provider.ck import attributes as A
from vsc_provider.ck import constants as C
from vsc_provider.ck.params import Mechanism, PssParams
from vsc_provider.pkcs11 import digest, encryption, keys, signing

from .conftest import Env, ec_pair, rsa_pair, rv

P521 = "1.3.132.0.35"


class Boom:
    """A worker whose every step fails with an error that is not a CKRError."""

    length = 8

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        def fail(*args: object) -> bytes:
            raise ValueError("unexpected")

        return fail


def test_unexpected_error_in_c_sign_ends_the_operation(env: Env) -> None:
    h = env.session()
    _, priv = rsa_pair(h)
    signing.sign_init(h, Mechanism(C.CKM_SHA256_RSA_PKCS), priv)
    signing._SESSIONS[h].sign.worker = Boom()  # type: ignore[union-attr]
    with pytest.raises(ValueError):
        signing.sign(h, b"data", False, 512)
    signing.sign_init(h, Mechanism(C.CKM_SHA256_RSA_PKCS), priv)  # not CKR_OPERATION_ACTIVE


@pytest.mark.parametrize("step", ["update", "final"])
def test_unexpected_error_in_multipart_sign_ends_the_operation(env: Env, step: str) -> None:
    h = env.session()
    _, priv = rsa_pair(h)
    signing.sign_init(h, Mechanism(C.CKM_SHA256_RSA_PKCS), priv)
    signing.sign_update(h, b"part")
    signing._SESSIONS[h].sign.worker = Boom()  # type: ignore[union-attr]
    with pytest.raises(ValueError):
        if step == "update":
            signing.sign_update(h, b"part")
        else:
            signing.sign_final(h, False, 512)
    signing.sign_init(h, Mechanism(C.CKM_SHA256_RSA_PKCS), priv)


def test_unexpected_error_in_decrypt_and_encrypt_ends_the_operation(env: Env) -> None:
    h = env.session()
    template = [(C.CKA_VALUE_LEN, A.encode(C.CKA_VALUE_LEN, 32))]
    key = keys.generate_key(h, Mechanism(C.CKM_AES_KEY_GEN), template)
    mech = Mechanism(C.CKM_AES_CBC_PAD, b"\x00" * 16)
    for init, one_shot, update, attr in (
        (encryption.encrypt_init, encryption.encrypt, encryption.encrypt_update, "encrypt"),
        (encryption.decrypt_init, encryption.decrypt, encryption.decrypt_update, "decrypt"),
    ):
        for call in (one_shot, update):
            init(h, mech, key)
            getattr(signing._SESSIONS[h], attr).worker = Boom()
            with pytest.raises(ValueError):
                call(h, b"x" * 16, False, 64)
            init(h, mech, key)  # not CKR_OPERATION_ACTIVE
            setattr(signing._SESSIONS[h], attr, None)


def test_failed_digest_update_and_verify_update_end_the_operation(env: Env) -> None:
    h = env.session()
    pub, _ = rsa_pair(h)
    digest.digest_init(h, Mechanism(C.CKM_SHA256))
    signing._SESSIONS[h].digest.worker = Boom()  # type: ignore[union-attr]
    with pytest.raises(ValueError):
        digest.digest_update(h, b"part")
    digest.digest_init(h, Mechanism(C.CKM_SHA256))

    signing.verify_init(h, Mechanism(C.CKM_SHA256_RSA_PKCS), pub)
    signing._SESSIONS[h].verify.worker = Boom()  # type: ignore[union-attr]
    with pytest.raises(ValueError):
        signing.verify_update(h, b"part")
    signing.verify_init(h, Mechanism(C.CKM_SHA256_RSA_PKCS), pub)


def test_ecdsa_p521_long_input_is_data_len_range_and_ends_the_operation(env: Env) -> None:
    """CKM_ECDSA on P-521 with more than 64 bytes of input died with StopIteration (CKR_GENERAL_ERROR)
    and left the operation active."""
    h = env.session()
    _, priv = ec_pair(h, P521)
    signing.sign_init(h, Mechanism(C.CKM_ECDSA), priv)
    assert rv(signing.sign, h, b"\x5a" * 66, False, 132) == C.CKR_DATA_LEN_RANGE
    signing.sign_init(h, Mechanism(C.CKM_ECDSA), priv)
    assert len(signing.sign(h, b"\x5a" * 64, False, 132)) == 132


def test_pss_salt_longer_than_the_key_allows_is_refused_at_sign_init(env: Env) -> None:
    """A PSS salt too long for the key was accepted by C_SignInit; C_Sign then failed with
    CKR_GENERAL_ERROR (a ValueError from cryptography) and the session stayed wedged."""
    h = env.session()
    _, priv = rsa_pair(h)
    for mech_type in (C.CKM_SHA256_RSA_PKCS_PSS, C.CKM_RSA_PKCS_PSS):
        mech = Mechanism(mech_type, PssParams(C.CKM_SHA256, C.CKG_MGF1_SHA256, 4000))
        assert rv(signing.sign_init, h, mech, priv) == C.CKR_MECHANISM_PARAM_INVALID
    # The largest salt the key allows still works: emLen - hLen - 2 = 256 - 32 - 2.
    ok = Mechanism(C.CKM_SHA256_RSA_PKCS_PSS, PssParams(C.CKM_SHA256, C.CKG_MGF1_SHA256, 222))
    signing.sign_init(h, ok, priv)
    assert len(signing.sign(h, b"data", False, 256)) == 256
