"""The card service for front ends other than PKCS#11 (provisioning, the Python API): a card's keys named by
their CKA_ID, used under the card's login state and the keys' own attributes, with no sessions, handles or
output buffers.
"""

from __future__ import annotations

from typing import Any

from vsc_provider.ck import attributes as A
from vsc_provider.ck import constants as C
from vsc_provider.ck.errors import CKRError
from vsc_provider.ck.params import Mechanism
from vsc_provider.token import audit, curves, ec_params, key_attrs, key_info, mechanisms, object_attrs
from vsc_provider.token.engine import Card, Engine
from vsc_provider.token.objects import TokenObject
from vsc_provider.token.policy import CardPolicy

# The key kinds users and identity servers name: the generation mechanism and what fixes the key's size,
# curve or parameter set (as C_GenerateKeyPair's public template would give it).
KEY_KINDS: dict[str, tuple[int, dict[int, A.Value]]] = {
    "rsa2048": (C.CKM_RSA_PKCS_KEY_PAIR_GEN, {C.CKA_MODULUS_BITS: 2048}),
    "rsa3072": (C.CKM_RSA_PKCS_KEY_PAIR_GEN, {C.CKA_MODULUS_BITS: 3072}),
    "rsa4096": (C.CKM_RSA_PKCS_KEY_PAIR_GEN, {C.CKA_MODULUS_BITS: 4096}),
    "p256": (C.CKM_EC_KEY_PAIR_GEN, {C.CKA_EC_PARAMS: ec_params.oid_der(curves.P256)}),
    "p384": (C.CKM_EC_KEY_PAIR_GEN, {C.CKA_EC_PARAMS: ec_params.oid_der(curves.P384)}),
    "ed25519": (C.CKM_EC_EDWARDS_KEY_PAIR_GEN, {C.CKA_EC_PARAMS: ec_params.oid_der(curves.ED25519_OID)}),
    "ml-dsa-44": (C.CKM_ML_DSA_KEY_PAIR_GEN, {C.CKA_PARAMETER_SET: C.CKP_ML_DSA_44}),
    "ml-dsa-65": (C.CKM_ML_DSA_KEY_PAIR_GEN, {C.CKA_PARAMETER_SET: C.CKP_ML_DSA_65}),
    "ml-dsa-87": (C.CKM_ML_DSA_KEY_PAIR_GEN, {C.CKA_PARAMETER_SET: C.CKP_ML_DSA_87}),
    "ml-kem-768": (C.CKM_ML_KEM_KEY_PAIR_GEN, {C.CKA_PARAMETER_SET: C.CKP_ML_KEM_768}),
    "ml-kem-1024": (C.CKM_ML_KEM_KEY_PAIR_GEN, {C.CKA_PARAMETER_SET: C.CKP_ML_KEM_1024}),
}


def with_key_id(card: Card, key_id: bytes, klass: int | None = None) -> list[TokenObject]:
    """The card's token objects with this CKA_ID (of one class if given), as this login state sees them."""
    return [
        o
        for o in list(card.objects.values())
        if o.attrs.get(C.CKA_ID) == key_id and card.visible(o) and (klass is None or o.klass == klass)
    ]


def sign(
    engine: Engine, card: Card, key_id: bytes, mechanism: Mechanism, data: bytes, confirm_pin: bytes | None = None
) -> bytes:
    """One signature by the card's private key with this CKA_ID, under the rules C_SignInit applies: the
    user logged in, CKA_SIGN, CKA_ALLOWED_MECHANISMS. A key that wants its PIN again for every signature
    (CKA_ALWAYS_AUTHENTICATE) signs only when `confirm_pin` is given for this one signature: it is checked
    the card's way (counted, server-checked cards ask their server), as PKCS#11's context-specific login."""
    engine.poll()
    if mechanism.type not in mechanisms.MECHANISMS:
        raise CKRError(C.CKR_MECHANISM_INVALID, f"mechanism 0x{mechanism.type:x} is not supported")
    found = with_key_id(card, key_id, C.CKO_PRIVATE_KEY)
    if not found:
        raise CKRError(C.CKR_KEY_HANDLE_INVALID, f"no private key {key_id.hex()} on card {card.serial}")
    key = found[0]
    if not key.bool(C.CKA_SIGN):
        raise CKRError(C.CKR_KEY_FUNCTION_NOT_PERMITTED, "the key has CKA_SIGN false")
    allowed = key.attrs.get(C.CKA_ALLOWED_MECHANISMS)
    if allowed and mechanism.type not in A.decode(C.CKA_ALLOWED_MECHANISMS, allowed):  # type: ignore[operator]
        raise CKRError(C.CKR_MECHANISM_INVALID, "the mechanism is not in the key's CKA_ALLOWED_MECHANISMS")
    if key.private and not card.user:
        raise CKRError(C.CKR_USER_NOT_LOGGED_IN, "log in to use this key")
    if key.bool(C.CKA_ALWAYS_AUTHENTICATE):
        if confirm_pin is None:
            raise CKRError(C.CKR_USER_NOT_LOGGED_IN, "this key needs its PIN again for each signature")
        engine.verify_pin(card, False, confirm_pin)
    # The card's prepared signers, shared with PKCS#11's C_SignInit (same key: handle and mechanism, same
    # check: the object and its attribute dict unchanged): loading the key is most of a signature's cost.
    prepared = card.signers.get((key.handle, mechanism))
    if prepared is not None and prepared[1] is key and prepared[2] is key.attrs:
        return prepared[0].sign(data)  # type: ignore[no-any-return]
    signer = engine.signer(card, key, mechanism)  # each signature it makes is recorded in the audit log
    card.keep_signer(key.handle, mechanism, signer, key)
    return signer.sign(data)


def _usable_private_key(card: Card, key_id: bytes, mechanism: Mechanism, use: int, use_name: str) -> TokenObject:
    """The private key with this CKA_ID, checked as C_DecryptInit / C_DeriveKey check it."""
    found = with_key_id(card, key_id, C.CKO_PRIVATE_KEY)
    if not found:
        raise CKRError(C.CKR_KEY_HANDLE_INVALID, f"no private key {key_id.hex()} on card {card.serial}")
    key = found[0]
    if not key.bool(use):
        raise CKRError(C.CKR_KEY_FUNCTION_NOT_PERMITTED, f"the key has {use_name} false")
    allowed = key.attrs.get(C.CKA_ALLOWED_MECHANISMS)
    if allowed and mechanism.type not in A.decode(C.CKA_ALLOWED_MECHANISMS, allowed):  # type: ignore[operator]
        raise CKRError(C.CKR_MECHANISM_INVALID, "the mechanism is not in the key's CKA_ALLOWED_MECHANISMS")
    if key.bool(C.CKA_ALWAYS_AUTHENTICATE):
        raise CKRError(C.CKR_USER_NOT_LOGGED_IN, "this key needs its PIN for each use (PKCS#11 only)")
    if key.private and not card.user:
        raise CKRError(C.CKR_USER_NOT_LOGGED_IN, "log in to use this key")
    return key


def decrypt(engine: Engine, card: Card, key_id: bytes, mechanism: Mechanism, data: bytes) -> bytes:
    """One decryption by the card's private key with this CKA_ID (CKM_RSA_PKCS, CKM_RSA_PKCS_OAEP,
    CKM_RSA_X_509), under the rules C_DecryptInit applies: the user logged in, CKA_DECRYPT."""
    engine.poll()
    if mechanism.type not in (C.CKM_RSA_PKCS, C.CKM_RSA_PKCS_OAEP, C.CKM_RSA_X_509):
        raise CKRError(C.CKR_MECHANISM_INVALID, f"mechanism 0x{mechanism.type:x} does not decrypt here")
    key = _usable_private_key(card, key_id, mechanism, C.CKA_DECRYPT, "CKA_DECRYPT")
    return engine.decryptor(card, key, mechanism).run(data)


def ecdh_secret(engine: Engine, card: Card, key_id: bytes, peer_point: bytes) -> bytes:
    """The ECDH shared secret (X coordinate, big-endian) of the card's EC private key with this CKA_ID and a
    peer's uncompressed point, under the rules CKM_ECDH1_DERIVE applies (the user logged in, CKA_DERIVE)."""
    engine.poll()
    key = _usable_private_key(card, key_id, Mechanism(C.CKM_ECDH1_DERIVE), C.CKA_DERIVE, "CKA_DERIVE")
    from cryptography.hazmat.primitives.asymmetric import ec

    private = engine.crypto_key(card, key)
    if not isinstance(private, ec.EllipticCurvePrivateKey):
        raise CKRError(C.CKR_KEY_TYPE_INCONSISTENT, "ECDH needs an EC private key")
    try:
        peer = ec.EllipticCurvePublicKey.from_encoded_point(private.curve, peer_point)
    except ValueError as exc:
        engine.key_used(card, key, audit.DERIVE, C.CKM_ECDH1_DERIVE, C.CKR_MECHANISM_PARAM_INVALID)
        raise CKRError(C.CKR_MECHANISM_PARAM_INVALID, "peer public point is not on the curve") from exc
    secret = private.exchange(ec.ECDH(), peer)
    engine.key_used(card, key, audit.DERIVE, C.CKM_ECDH1_DERIVE)
    return secret


def destroy(engine: Engine, card: Card, obj: TokenObject) -> None:
    """Destroy a token object under the rules C_DestroyObject applies (the user logged in for a private one)."""
    if obj is card.profile or not obj.bool(C.CKA_DESTROYABLE, True):
        raise CKRError(C.CKR_ACTION_PROHIBITED, "object cannot be destroyed")
    if (obj.private or obj.klass == C.CKO_OTP_KEY) and not card.user:  # an OTP key's names are public
        raise CKRError(C.CKR_USER_NOT_LOGGED_IN, "private objects need the user to log in")
    engine.destroy(card, obj)


def destroy_key_id(engine: Engine, card: Card, key_id: bytes, klass: int | None = None) -> None:
    """Every object with this CKA_ID (a key pair and its certificate), or those of one class."""
    engine.poll()
    for obj in with_key_id(card, key_id, klass):
        destroy(engine, card, obj)


def named(card: Card, selector: str) -> list[TokenObject]:
    """The card's token objects whose label or hex CKA_ID is `selector`, as this login state sees them."""
    return [
        o
        for o in list(card.objects.values())
        if card.visible(o)
        and selector in (A.decode(C.CKA_LABEL, o.attrs.get(C.CKA_LABEL, b"")), o.attrs.get(C.CKA_ID, b"").hex())
    ]


def destroy_named(engine: Engine, card: Card, selector: str) -> int:
    """Destroy every object (key pair and certificate) whose label or hex CKA_ID is `selector`; how many.
    The user logs in first, so that a key pair goes as a whole, never its public half alone."""
    _must_write(card)
    engine.poll()
    doomed = named(card, selector)
    for obj in doomed:
        destroy(engine, card, obj)
    return len(doomed)


def keep_only(engine: Engine, card: Card, key_ids: list[bytes]) -> None:
    """Destroy every object of the card but the key pairs with these ids (a half-done install's leftovers)."""
    engine.poll()
    for obj in list(card.objects.values()):
        if obj.klass not in (C.CKO_PRIVATE_KEY, C.CKO_PUBLIC_KEY) or obj.attrs.get(C.CKA_ID) not in key_ids:
            if card.visible(obj):
                destroy(engine, card, obj)


def _must_write(card: Card) -> None:
    if not card.user:
        raise CKRError(C.CKR_USER_NOT_LOGGED_IN, "storing keys on the card needs the user to log in")


def _pkcs8(private: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return private.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def new_private_key(kind: str, policy: CardPolicy) -> Any:
    """A fresh private key of a named kind (`cryptography`'s), of a size and curve the card's policy allows."""
    if kind not in KEY_KINDS:
        raise CKRError(C.CKR_MECHANISM_INVALID, f"key type is one of {', '.join(KEY_KINDS)}")
    mech, shape = KEY_KINDS[kind]
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    if mech == C.CKM_RSA_PKCS_KEY_PAIR_GEN:
        bits = int(shape[C.CKA_MODULUS_BITS])  # type: ignore[arg-type]
        if bits < policy.rsa_min_bits:
            raise CKRError(C.CKR_KEY_SIZE_RANGE, f"RSA keys have {policy.rsa_min_bits} to 4096 bits on this card")
        return rsa.generate_private_key(65537, bits)
    if mech in (C.CKM_EC_KEY_PAIR_GEN, C.CKM_EC_EDWARDS_KEY_PAIR_GEN):
        oid = ec_params.curve_from_params(bytes(shape[C.CKA_EC_PARAMS]))  # type: ignore[arg-type]
        policy.check_curve(oid)
        if oid == curves.ED25519_OID:
            return ed25519.Ed25519PrivateKey.generate()
        return ec.generate_private_key(curves.ec_curve(oid))
    from vsc_provider.token import pqc

    return pqc.generate(pqc.parameter_set(pqc.KEY_TYPE_OF_GEN[mech], int(shape[C.CKA_PARAMETER_SET])))  # type: ignore[arg-type]


def generate(
    engine: Engine,
    card: Card,
    kind: str,
    key_id: bytes | None,
    label: str,
    always_authenticate: bool = False,
) -> tuple[TokenObject, TokenObject]:
    """A key pair of a named kind made on the card as token objects (public, private), as C_GenerateKeyPair
    makes it: CKA_LOCAL, sensitive, never extractable, the private key settled by the card's policy. With no
    key id, the id is the one clients match by (key_info.key_id_for); `always_authenticate` makes the private key
    want its PIN again for every signature (CKA_ALWAYS_AUTHENTICATE)."""
    _must_write(card)
    engine.poll()
    private = new_private_key(kind, card.policy)
    mech = KEY_KINDS[kind][0]
    public = private.public_key()
    if key_id is None:
        key_id = key_info.key_id_for(public)
    pub = key_attrs.public_key_attrs(public, key_id=key_id, label=label, token=True, local=True, gen_mech=mech)
    priv = key_attrs.private_key_attrs(public, key_id=key_id, label=label, token=True, local=True, gen_mech=mech)
    if always_authenticate:
        priv = {**priv, **A.make({C.CKA_ALWAYS_AUTHENTICATE: True})}
    pub_obj, priv_obj = engine.add_objects(card, [(pub, None), (card.policy.settle(priv), _pkcs8(private))], True, 0)
    card.keys[priv_obj.handle] = private
    return pub_obj, priv_obj


def import_private_key(engine: Engine, card: Card, private: Any, key_id: bytes, label: str) -> None:
    """A key made elsewhere (an identity server's escrowed key) stored as a private and a public token object,
    as C_CreateObject stores one: sensitive and never extractable from now on, not CKA_LOCAL."""
    _must_write(card)
    public = private.public_key()
    priv = key_attrs.private_key_attrs(public, key_id=key_id, label=label, token=True, local=False, gen_mech=None)
    pub = key_attrs.public_key_attrs(public, key_id=key_id, label=label, token=True, local=False, gen_mech=None)
    engine.add_objects(card, [(card.policy.settle(priv), _pkcs8(private)), (card.policy.settle(pub), None)], True, 0)


def store_certificate(engine: Engine, card: Card, der: bytes, key_id: bytes, label: str) -> TokenObject:
    """A public X.509 token certificate with the CKA_ID of its key (a user certificate when that key is here)."""
    engine.poll()
    user_cert = bool(with_key_id(card, key_id, C.CKO_PRIVATE_KEY))
    attrs = object_attrs.certificate_attrs(der, key_id=key_id, label=label, token=True, user_cert=user_cert)
    return engine.add_object(card, card.policy.settle(attrs), None, True, 0)
