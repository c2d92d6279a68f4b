"""A card's device-key secret sealed to the machine's TPM 2.0, through the TSS (tpm2-pytss, ESAPI).

The secret is a keyed-hash object under the owner hierarchy's storage key (the usual ECC P-256 template,
recreated from the TPM's seed at each use: nothing is left in the TPM), fixed to that TPM: its public and
private parts live in the card record, and only the TPM that made them loads them. Unsealing runs in a
session salted by the storage key with response encryption, so the secret does not cross the TCTI in the clear.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from vsc_provider import config


class TpmError(OSError):
    """No TPM, no TSS, or the TPM refused (another TPM's object, an owner password)."""


def available() -> bool:
    if config.tpm_tcti() is None:
        return False
    try:
        import tpm2_pytss  # noqa: F401
    except ImportError:
        return False
    return True


@contextmanager
def connect() -> Iterator[tuple[Any, Any]]:
    """An ESAPI context and the storage key's handle, flushed and closed at the end."""
    tcti = config.tpm_tcti()
    if tcti is None:
        raise TpmError("no TPM: set VSC_TPM_TCTI or give the machine a /dev/tpmrm0")
    # The TSS logs its failures to stderr; they are reported here in one line (TSS2_LOG still wins if set).
    os.environ.setdefault("TSS2_LOG", "all+NONE")
    from tpm2_pytss import ESAPI, TCTILdr, TSS2_Exception
    from tpm2_pytss.constants import ESYS_TR, TPMA_OBJECT
    from tpm2_pytss.types import TPM2B_PUBLIC, TPM2B_SENSITIVE_CREATE

    try:
        ectx = ESAPI(TCTILdr.parse(tcti))
    except TSS2_Exception as exc:
        raise TpmError(f"cannot reach the TPM at {tcti}: {exc}") from None
    try:
        template = TPM2B_PUBLIC.parse(
            "ecc256:aes128cfb", objectAttributes=TPMA_OBJECT.DEFAULT_TPM2_TOOLS_CREATEPRIMARY_ATTRS
        )
        primary = ectx.create_primary(TPM2B_SENSITIVE_CREATE(), template, ESYS_TR.OWNER)[0]
        try:
            yield ectx, primary
        finally:
            ectx.flush_context(primary)
    except TSS2_Exception as exc:
        raise TpmError(f"the TPM refused: {exc}") from None
    finally:
        ectx.close()


def require_tss() -> None:
    try:
        import tpm2_pytss  # noqa: F401
    except ImportError as exc:
        raise TpmError("the TPM back end needs tpm2-pytss (pip install tpm2-pytss; Debian: libtss2-dev)") from exc


def seal(secret: bytes) -> dict[str, str]:
    """The sealed object's public and private parts (hex), loadable only by this TPM."""
    require_tss()
    from tpm2_pytss.constants import TPMA_OBJECT
    from tpm2_pytss.types import TPM2B_PUBLIC, TPM2B_SENSITIVE_CREATE, TPM2B_SENSITIVE_DATA, TPMS_SENSITIVE_CREATE

    attrs = TPMA_OBJECT.USERWITHAUTH | TPMA_OBJECT.FIXEDTPM | TPMA_OBJECT.FIXEDPARENT
    template = TPM2B_PUBLIC.parse("keyedhash", objectAttributes=attrs)
    sensitive = TPM2B_SENSITIVE_CREATE(TPMS_SENSITIVE_CREATE(data=TPM2B_SENSITIVE_DATA(secret)))
    with connect() as (ectx, primary):
        private, public = ectx.create(primary, sensitive, template)[:2]
    return {"public": bytes(public.marshal()).hex(), "private": bytes(private.marshal()).hex()}


def unseal(sealed: dict[str, Any]) -> bytes:
    require_tss()
    from tpm2_pytss.constants import ESYS_TR, TPM2_ALG, TPM2_SE, TPMA_SESSION
    from tpm2_pytss.types import TPM2B_PRIVATE, TPM2B_PUBLIC, TPMT_SYM_DEF, TPMU_SYM_KEY_BITS, TPMU_SYM_MODE

    try:
        public = TPM2B_PUBLIC.unmarshal(bytes.fromhex(sealed["public"]))[0]
        private = TPM2B_PRIVATE.unmarshal(bytes.fromhex(sealed["private"]))[0]
    except (KeyError, TypeError, ValueError) as exc:
        raise TpmError(f"the card's TPM object is damaged: {exc}") from None
    aes = TPMT_SYM_DEF(algorithm=TPM2_ALG.AES, keyBits=TPMU_SYM_KEY_BITS(aes=128), mode=TPMU_SYM_MODE(aes=TPM2_ALG.CFB))
    with connect() as (ectx, primary):
        session = ectx.start_auth_session(primary, ESYS_TR.NONE, TPM2_SE.HMAC, aes, TPM2_ALG.SHA256)
        try:
            ectx.trsess_set_attributes(session, TPMA_SESSION.ENCRYPT | TPMA_SESSION.CONTINUESESSION)
            obj = ectx.load(primary, private, public)
            try:
                return bytes(ectx.unseal(obj, session1=session))
            finally:
                ectx.flush_context(obj)
        finally:
            ectx.flush_context(session)
