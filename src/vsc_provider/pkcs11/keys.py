"""C_GenerateKey, C_GenerateKeyPair, C_WrapKey, C_UnwrapKey and C_DeriveKey."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, TypeVar

from vsc_provider.ck import attributes as A
from vsc_provider.ck import constants as C
from vsc_provider.ck.errors import CKRError
from vsc_provider.ck.params import Ecdh1Params, Mechanism
from vsc_provider.pkcs11 import key_rules
from vsc_provider.pkcs11 import templates as T
from vsc_provider.pkcs11.state import LIB, Session, add_new_key, check_allowed, find_object, require_room, writable
from vsc_provider.token import audit, curves, ec_params, key_attrs, key_info, mechanisms
from vsc_provider.token.policy import CardPolicy


def new_private_key(mech: Mechanism, pub_t: dict[int, bytes], priv_t: dict[int, bytes], policy: CardPolicy) -> Any:
    """Generate the private key a C_GenerateKeyPair call asks for, of a size and curve the card's policy
    allows (strict: RSA 2048-4096, P-256/384/521, Ed25519, Ed448; compatible: RSA from 1024, every curve)."""
    # `cryptography` loads at the first use, not at C_Initialize
    from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

    if mech.type == C.CKM_RSA_PKCS_KEY_PAIR_GEN:
        bits = T.ulong(pub_t, C.CKA_MODULUS_BITS)
        if bits is None:
            raise CKRError(C.CKR_TEMPLATE_INCOMPLETE, "CKA_MODULUS_BITS is required")
        if not policy.rsa_min_bits <= bits <= 4096 or bits % 8:
            raise CKRError(C.CKR_KEY_SIZE_RANGE, f"RSA keys have {policy.rsa_min_bits} to 4096 bits on this card")
        exponent = int.from_bytes(pub_t.get(C.CKA_PUBLIC_EXPONENT, b"\x01\x00\x01"), "big")
        if exponent != 65537:
            raise CKRError(C.CKR_ATTRIBUTE_VALUE_INVALID, "the public exponent is 65537")
        return rsa.generate_private_key(exponent, bits)
    if mech.type in (C.CKM_EC_KEY_PAIR_GEN, C.CKM_EC_EDWARDS_KEY_PAIR_GEN):
        params = pub_t.get(C.CKA_EC_PARAMS) or priv_t.get(C.CKA_EC_PARAMS)
        if params is None:
            if mech.type != C.CKM_EC_EDWARDS_KEY_PAIR_GEN:
                raise CKRError(C.CKR_TEMPLATE_INCOMPLETE, "CKA_EC_PARAMS is required")
            return ed25519.Ed25519PrivateKey.generate()
        oid = ec_params.curve_from_params(params)
        policy.check_curve(oid)
        if oid == curves.ED25519_OID:
            return ed25519.Ed25519PrivateKey.generate()
        if oid == curves.ED448_OID:
            return ed448.Ed448PrivateKey.generate()
        if mech.type == C.CKM_EC_EDWARDS_KEY_PAIR_GEN:
            raise CKRError(C.CKR_CURVE_NOT_SUPPORTED, "Edwards key generation needs an Edwards curve")
        return ec.generate_private_key(curves.ec_curve(oid))
    if mech.type in (C.CKM_ML_DSA_KEY_PAIR_GEN, C.CKM_ML_KEM_KEY_PAIR_GEN):
        from vsc_provider.token import pqc

        key_type = pqc.KEY_TYPE_OF_GEN[mech.type]
        chosen = T.ulong(pub_t, C.CKA_PARAMETER_SET)
        if chosen is None:
            chosen = T.ulong(priv_t, C.CKA_PARAMETER_SET)
        return pqc.generate(pqc.parameter_set(key_type, chosen))
    if mech.type in (C.CKM_DSA_KEY_PAIR_GEN, C.CKM_DH_PKCS_KEY_PAIR_GEN):
        from vsc_provider.token import dsa_dh

        policy.check_mechanism(mech.type)  # compatible cards only
        return dsa_dh.generate(mech.type, pub_t, priv_t)
    raise CKRError(C.CKR_MECHANISM_INVALID, f"mechanism 0x{mech.type:x} does not generate key pairs")


def _key_class_check(template: dict[int, bytes], klass: int) -> None:
    given = T.ulong(template, C.CKA_CLASS)
    if given is not None and given != klass:
        raise CKRError(C.CKR_TEMPLATE_INCONSISTENT, "CKA_CLASS disagrees with the key")


def generate_key_pair(
    h: int, mech: Mechanism, pub_pairs: list[tuple[int, bytes]], priv_pairs: list[tuple[int, bytes]]
) -> tuple[int, int]:
    s = LIB.session(h)
    pub_t = A.template(pub_pairs)
    priv_t = A.template(priv_pairs)
    _key_class_check(pub_t, C.CKO_PUBLIC_KEY)
    _key_class_check(priv_t, C.CKO_PRIVATE_KEY)
    pub_token = T.flag(pub_t, C.CKA_TOKEN, False)
    priv_token = T.flag(priv_t, C.CKA_TOKEN, False)
    writable(s, pub_token, False)
    writable(s, priv_token, s.card.policy.private_flag(T.flag(priv_t, C.CKA_PRIVATE, True)))
    if mech.param is not None:
        raise CKRError(C.CKR_MECHANISM_PARAM_INVALID, "key pair generation takes no parameter")
    from cryptography.hazmat.primitives.asymmetric import ec

    private = new_private_key(mech, pub_t, priv_t, s.card.policy)
    public = private.public_key()
    key_id = priv_t.get(C.CKA_ID) or pub_t.get(C.CKA_ID) or key_info.key_id_for(public)
    gen = (
        C.CKM_EC_KEY_PAIR_GEN
        if mech.type == C.CKM_EC_EDWARDS_KEY_PAIR_GEN and isinstance(private, ec.EllipticCurvePrivateKey)
        else mech.type
    )
    pub_attrs = key_attrs.public_key_attrs(
        public, key_id=key_id, label=T.text(pub_t, C.CKA_LABEL), token=pub_token, local=True, gen_mech=gen
    )
    priv_attrs = key_attrs.private_key_attrs(
        public, key_id=key_id, label=T.text(priv_t, C.CKA_LABEL), token=priv_token, local=True, gen_mech=gen
    )
    pub_attrs = T.overrides({**pub_t, C.CKA_ID: key_id}, pub_attrs)
    priv_attrs = s.card.policy.settle(T.overrides({**priv_t, C.CKA_ID: key_id}, priv_attrs))
    engine = LIB.require()
    material = T.pkcs8(private)
    owner = s.handle
    if pub_token == priv_token:
        pub_obj, priv_obj = engine.add_objects(s.card, [(pub_attrs, None), (priv_attrs, material)], pub_token, owner)
    else:
        priv_obj = engine.add_object(s.card, priv_attrs, material, priv_token, 0 if priv_token else owner)
        pub_obj = engine.add_object(s.card, pub_attrs, None, pub_token, 0 if pub_token else owner)
    s.card.keys[priv_obj.handle] = private
    return pub_obj.handle, priv_obj.handle


def generate_key(h: int, mech: Mechanism, pairs: list[tuple[int, bytes]]) -> int:
    s = LIB.session(h)
    template = A.template(pairs)
    if mech.type in (C.CKM_DSA_PARAMETER_GEN, C.CKM_DH_PKCS_PARAMETER_GEN):
        return _generate_domain_parameters(s, mech, template)
    _key_class_check(template, C.CKO_SECRET_KEY)
    if mech.type == C.CKM_AES_KEY_GEN:
        key_type = T.secret_key_type(template, C.CKK_AES)
        if key_type != C.CKK_AES:
            raise CKRError(C.CKR_TEMPLATE_INCONSISTENT, "CKM_AES_KEY_GEN makes AES keys")
    elif mech.type == C.CKM_GENERIC_SECRET_KEY_GEN:
        key_type = T.secret_key_type(template, C.CKK_GENERIC_SECRET)
    else:
        raise CKRError(C.CKR_MECHANISM_INVALID, f"mechanism 0x{mech.type:x} does not generate secret keys")
    length = T.ulong(template, C.CKA_VALUE_LEN)
    if length is None:
        raise CKRError(C.CKR_TEMPLATE_INCOMPLETE, "CKA_VALUE_LEN is required")
    if key_type == C.CKK_AES and length not in (16, 24, 32):
        raise CKRError(C.CKR_KEY_SIZE_RANGE, "AES keys have 16, 24 or 32 bytes")
    if not 1 <= length <= 512:
        raise CKRError(C.CKR_KEY_SIZE_RANGE, "secret keys have 1 to 512 bytes")
    value = os.urandom(length)
    attrs = s.card.policy.settle(T.secret_object(template, key_type, value, local=True, gen_mech=mech.type))
    token = A.get_bool(attrs, C.CKA_TOKEN)
    writable(s, token, A.get_bool(attrs, C.CKA_PRIVATE))
    obj = LIB.require().add_object(s.card, attrs, value, token, 0 if token else s.handle)
    return obj.handle


def _generate_domain_parameters(s: Session, mech: Mechanism, template: dict[int, bytes]) -> int:
    """CKM_DSA_PARAMETER_GEN / CKM_DH_PKCS_PARAMETER_GEN (compatible cards only): a CKO_DOMAIN_PARAMETERS
    object with a new prime of CKA_PRIME_BITS bits."""
    from vsc_provider.token import dsa_dh

    s.card.policy.check_mechanism(mech.type)
    _key_class_check(template, C.CKO_DOMAIN_PARAMETERS)
    key_type = dsa_dh.PARAMETER_GEN[mech.type]
    if T.ulong(template, C.CKA_KEY_TYPE) not in (None, key_type):
        raise CKRError(C.CKR_TEMPLATE_INCONSISTENT, "CKA_KEY_TYPE disagrees with the mechanism")
    if mech.param is not None:
        raise CKRError(C.CKR_MECHANISM_PARAM_INVALID, "domain parameter generation takes no parameter")
    token = T.flag(template, C.CKA_TOKEN, False)
    writable(s, token, False)
    made = A.make(dsa_dh.generate_parameters(mech.type, T.ulong(template, C.CKA_PRIME_BITS)))
    built = dsa_dh.domain_attrs(key_type, made, label=T.text(template, C.CKA_LABEL), token=token, local=True)
    attrs = s.card.policy.settle(T.overrides(template, built))
    return LIB.require().add_object(s.card, attrs, None, token, 0 if token else s.handle).handle


def _wrapping_crypto(s: Session, handle: int, attr: int, invalid: int, mech_type: int) -> tuple[Any, Any]:
    obj = find_object(s, handle, invalid)
    if not obj.bool(attr):
        raise CKRError(C.CKR_KEY_FUNCTION_NOT_PERMITTED, f"key has attribute 0x{attr:x} false")
    check_allowed(obj, mech_type)
    if attr in (C.CKA_UNWRAP, C.CKA_DERIVE) and obj.bool(C.CKA_ALWAYS_AUTHENTICATE):
        # These calls have no *Init after which a C_Login(CKU_CONTEXT_SPECIFIC) could give the PIN, and
        # their result can be read back (a non-sensitive unwrapped or derived key): refuse them.
        raise CKRError(C.CKR_KEY_FUNCTION_NOT_PERMITTED, "key needs a PIN for each use (CKA_ALWAYS_AUTHENTICATE)")
    return obj, LIB.require().crypto_key(s.card, obj)


def wrap_key(h: int, mech: Mechanism, wrapping: int, key: int, query: bool, capacity: int) -> bytes:
    s = LIB.session(h)
    if query:  # the length query wraps to learn the length: not a use to record
        return _wrap_key(s, mech, wrapping, key, query, capacity)
    return _audited(s, wrapping, audit.WRAP, mech, lambda: _wrap_key(s, mech, wrapping, key, query, capacity))


def _wrap_key(s: Session, mech: Mechanism, wrapping: int, key: int, query: bool, capacity: int) -> bytes:
    if mech.type not in mechanisms.MECHANISMS or not mechanisms.MECHANISMS[mech.type][2] & C.CKF_WRAP:
        raise CKRError(C.CKR_MECHANISM_INVALID, f"mechanism 0x{mech.type:x} does not wrap")
    wrapper, wrapping_key = _wrapping_crypto(s, wrapping, C.CKA_WRAP, C.CKR_WRAPPING_KEY_HANDLE_INVALID, mech.type)
    target = find_object(s, key, C.CKR_KEY_HANDLE_INVALID)
    if target.klass not in (C.CKO_SECRET_KEY, C.CKO_PRIVATE_KEY):
        raise CKRError(C.CKR_KEY_NOT_WRAPPABLE, "only keys can be wrapped")
    if not target.bool(C.CKA_EXTRACTABLE):
        raise CKRError(C.CKR_KEY_UNEXTRACTABLE, "key has CKA_EXTRACTABLE false")
    if target.bool(C.CKA_WRAP_WITH_TRUSTED) and not wrapper.bool(C.CKA_TRUSTED):
        raise CKRError(C.CKR_KEY_NOT_WRAPPABLE, "key has CKA_WRAP_WITH_TRUSTED: the wrapping key must be trusted")
    key_rules.check_wrap(s.card, wrapper, target)
    material = LIB.require().material(s.card, target)
    try:
        from vsc_provider.token import crypto

        out = crypto.make_encryptor(mech, wrapping_key).run(material)
    except CKRError as exc:
        if exc.rv == C.CKR_KEY_TYPE_INCONSISTENT:
            raise CKRError(C.CKR_WRAPPING_KEY_TYPE_INCONSISTENT, exc.reason) from exc
        raise
    if not query:
        require_room(len(out), capacity)
    return out


R = TypeVar("R")


def _audited(s: Session, key: int, kind: str, mech: Mechanism, run: Callable[[], R]) -> R:
    """Run a wrap, unwrap or derivation, recorded in the card's audit log as a use of its key (when it exists)."""
    try:
        result = run()
    except CKRError as exc:
        obj = s.card.get(key)
        if obj is not None:
            LIB.require().key_used(s.card, obj, kind, mech.type, exc.rv)
        raise
    obj = s.card.get(key)
    if obj is not None:
        LIB.require().key_used(s.card, obj, kind, mech.type)
    return result


def unwrap_key(h: int, mech: Mechanism, unwrapping: int, wrapped: bytes, pairs: list[tuple[int, bytes]]) -> int:
    s = LIB.session(h)
    return _audited(s, unwrapping, audit.UNWRAP, mech, lambda: _unwrap_key(s, mech, unwrapping, wrapped, pairs))


def _unwrap_key(s: Session, mech: Mechanism, unwrapping: int, wrapped: bytes, pairs: list[tuple[int, bytes]]) -> int:
    if mech.type not in mechanisms.MECHANISMS or not mechanisms.MECHANISMS[mech.type][2] & C.CKF_UNWRAP:
        raise CKRError(C.CKR_MECHANISM_INVALID, f"mechanism 0x{mech.type:x} does not unwrap")
    if not s.card.user and not s.card.policy.public_keys:
        raise CKRError(C.CKR_USER_NOT_LOGGED_IN)
    template = A.template(pairs)
    unwrapper, unwrapping_key = _wrapping_crypto(
        s, unwrapping, C.CKA_UNWRAP, C.CKR_UNWRAPPING_KEY_HANDLE_INVALID, mech.type
    )
    try:
        from vsc_provider.token import crypto

        value = crypto.make_decryptor(mech, unwrapping_key).run(wrapped)
    except CKRError as exc:
        if exc.rv in (C.CKR_ENCRYPTED_DATA_INVALID, C.CKR_ENCRYPTED_DATA_LEN_RANGE):
            raise CKRError(C.CKR_WRAPPED_KEY_INVALID, exc.reason) from exc
        if exc.rv == C.CKR_KEY_TYPE_INCONSISTENT:
            raise CKRError(C.CKR_UNWRAPPING_KEY_TYPE_INCONSISTENT, exc.reason) from exc
        raise
    klass = T.ulong(template, C.CKA_CLASS)
    if klass == C.CKO_PRIVATE_KEY:
        try:
            from cryptography.hazmat.primitives import serialization

            private = serialization.load_der_private_key(value, password=None)
        except ValueError as exc:
            raise CKRError(C.CKR_WRAPPED_KEY_INVALID, "unwrapped data is not a PKCS#8 private key") from exc
        built = key_attrs.private_key_attrs(
            private.public_key(),
            key_id=template.get(C.CKA_ID, b""),
            label=T.text(template, C.CKA_LABEL),
            token=T.flag(template, C.CKA_TOKEN, False),
            local=False,
            gen_mech=None,
        )
        attrs = T.overrides(template, built)
        material = T.pkcs8(private)  # type: ignore[arg-type]
    elif klass == C.CKO_SECRET_KEY or klass is None:
        key_type = T.secret_key_type(template)
        attrs = T.secret_object(template, key_type, value, local=False, gen_mech=None)
        material = value
    else:
        raise CKRError(C.CKR_TEMPLATE_INCONSISTENT, "only keys can be unwrapped")
    key_rules.check_unwrap(unwrapper, attrs)
    return add_new_key(s, attrs, material)


def derive_key(h: int, mech: Mechanism, base: int, pairs: list[tuple[int, bytes]]) -> int:
    s = LIB.session(h)
    return _audited(s, base, audit.DERIVE, mech, lambda: _derive_key(s, mech, base, pairs))


def _derive_key(s: Session, mech: Mechanism, base: int, pairs: list[tuple[int, bytes]]) -> int:
    if mech.type in mechanisms.SECRET_DERIVATIONS:
        from vsc_provider.pkcs11.derive import derive_secret

        base_obj, _ = _wrapping_crypto(s, base, C.CKA_DERIVE, C.CKR_KEY_HANDLE_INVALID, mech.type)
        return derive_secret(s, mech, base_obj, pairs)
    if mech.type == C.CKM_DH_PKCS_DERIVE:
        from vsc_provider.token import dsa_dh

        s.card.policy.check_mechanism(mech.type)  # compatible cards only
        _, private = _wrapping_crypto(s, base, C.CKA_DERIVE, C.CKR_KEY_HANDLE_INVALID, mech.type)
        return _shared_secret_key(s, A.template(pairs), dsa_dh.shared_secret(private, mech.param))
    if mech.type != C.CKM_ECDH1_DERIVE:
        raise CKRError(C.CKR_MECHANISM_INVALID, f"mechanism 0x{mech.type:x} does not derive")
    params = mech.param
    if not isinstance(params, Ecdh1Params):
        raise CKRError(C.CKR_MECHANISM_PARAM_INVALID, "CKM_ECDH1_DERIVE needs CK_ECDH1_DERIVE_PARAMS")
    if params.kdf != C.CKD_NULL or params.shared_data:
        raise CKRError(C.CKR_MECHANISM_PARAM_INVALID, "only the NULL KDF without shared data is supported")
    from cryptography.hazmat.primitives.asymmetric import ec

    template = A.template(pairs)
    _, private = _wrapping_crypto(s, base, C.CKA_DERIVE, C.CKR_KEY_HANDLE_INVALID, mech.type)
    if not isinstance(private, ec.EllipticCurvePrivateKey):
        raise CKRError(C.CKR_KEY_TYPE_INCONSISTENT, "ECDH needs an EC private key")
    point = params.public_data
    # A bare uncompressed point (04 || X || Y) can also parse as a DER OCTET STRING when X's first byte
    # happens to equal the rest's length: a point of exactly the curve's size is taken as it is.
    if len(point) != 1 + 2 * ((private.curve.key_size + 7) // 8):
        point = ec_params.unwrap_octet_string(point)
    try:
        peer = ec.EllipticCurvePublicKey.from_encoded_point(private.curve, point)
    except ValueError as exc:
        raise CKRError(C.CKR_MECHANISM_PARAM_INVALID, "peer public point is not on the curve") from exc
    return _shared_secret_key(s, template, private.exchange(ec.ECDH(), peer))


def _shared_secret_key(s: Session, template: dict[int, bytes], secret: bytes) -> int:
    """The secret key an ECDH or DH derivation makes: CKA_VALUE_LEN leading bytes of the shared secret."""
    key_type = T.secret_key_type(template, C.CKK_GENERIC_SECRET)
    length = T.ulong(template, C.CKA_VALUE_LEN) or (32 if key_type == C.CKK_AES else len(secret))
    if length > len(secret):
        raise CKRError(C.CKR_TEMPLATE_INCONSISTENT, "CKA_VALUE_LEN is longer than the shared secret")
    value = secret[:length]
    return add_new_key(s, T.secret_object(template, key_type, value, local=False, gen_mech=None), value)
