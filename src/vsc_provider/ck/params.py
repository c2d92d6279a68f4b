"""Mechanisms as the engine sees them: the type and its parameter, already decoded from the C structs."""

from __future__ import annotations

from typing import NamedTuple


class PssParams(NamedTuple):
    hash_alg: int
    mgf: int
    salt_len: int


class OaepParams(NamedTuple):
    hash_alg: int
    mgf: int
    source: int
    label: bytes


class GcmParams(NamedTuple):
    iv: bytes
    aad: bytes
    tag_bits: int


class Ecdh1Params(NamedTuple):
    kdf: int
    shared_data: bytes
    public_data: bytes


class EddsaParams(NamedTuple):
    prehash: bool
    context: bytes


class SignContextParams(NamedTuple):
    """CK_SIGN_ADDITIONAL_CONTEXT (3.2): the hedging the caller wants and the context string."""

    hedge: int
    context: bytes


class AesCtrParams(NamedTuple):
    counter_bits: int
    counter_block: bytes


class AesCbcEncryptDataParams(NamedTuple):
    iv: bytes
    data: bytes


class HkdfParams(NamedTuple):
    extract: bool
    expand: bool
    prf: int
    salt_type: int
    salt: bytes
    salt_key: int
    info: bytes


class OtpParams(NamedTuple):
    """CK_OTP_PARAMS: its (CK_OTP_PARAM_TYPE, value) pairs in the caller's order."""

    params: tuple[tuple[int, bytes], ...]


Param = (
    None
    | bytes
    | int
    | PssParams
    | OaepParams
    | GcmParams
    | Ecdh1Params
    | EddsaParams
    | AesCtrParams
    | AesCbcEncryptDataParams
    | HkdfParams
    | SignContextParams
    | OtpParams
)


class Mechanism(NamedTuple):
    type: int
    param: Param = None
