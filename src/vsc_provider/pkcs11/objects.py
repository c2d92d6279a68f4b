"""C_CreateObject, C_CopyObject, C_DestroyObject, C_GetObjectSize, C_Get/SetAttributeValue and C_FindObjects*."""

from __future__ import annotations

from vsc_provider.ck import attributes as A
from vsc_provider.ck import constants as C
from vsc_provider.ck.errors import CKRError
from vsc_provider.pkcs11 import key_rules
from vsc_provider.pkcs11 import templates as T
from vsc_provider.pkcs11.state import LIB, Session, find_object, writable
from vsc_provider.token import key_attrs, object_attrs
from vsc_provider.token import objects as O
from vsc_provider.token.engine import Card
from vsc_provider.token.objects import TokenObject


def _has_private_key(card: Card, key_id: bytes) -> bool:
    return any(o.klass == C.CKO_PRIVATE_KEY and o.attrs.get(C.CKA_ID) == key_id for o in card.objects.values())


def build_object(s: Session, template: dict[int, bytes]) -> tuple[dict[int, bytes], bytes | None]:
    """A complete attribute set (and key material, if any) from a C_CreateObject template."""
    klass = T.ulong(template, C.CKA_CLASS)
    if klass is None:
        raise CKRError(C.CKR_TEMPLATE_INCOMPLETE, "CKA_CLASS is required")
    token = T.flag(template, C.CKA_TOKEN, False)
    label = T.text(template, C.CKA_LABEL)
    key_id = template.get(C.CKA_ID, b"")
    if klass == C.CKO_CERTIFICATE:
        cert_type = T.ulong(template, C.CKA_CERTIFICATE_TYPE)
        if cert_type not in (None, C.CKC_X_509):
            raise CKRError(C.CKR_ATTRIBUTE_VALUE_INVALID, "only X.509 certificates are supported")
        value = T.require(template, C.CKA_VALUE)
        built = object_attrs.certificate_attrs(
            value, key_id=key_id, label=label, token=token, user_cert=_has_private_key(s.card, key_id)
        )
        kept = {C.CKA_HASH_OF_SUBJECT_PUBLIC_KEY, C.CKA_HASH_OF_ISSUER_PUBLIC_KEY}
        kept |= {C.CKA_JAVA_MIDP_SECURITY_DOMAIN, C.CKA_NAME_HASH_ALGORITHM}
        attrs = T.overrides(template, built, T.VALUE_DEFINING - kept)
        attrs[C.CKA_CHECK_VALUE] = T.check_value(template, built[C.CKA_CHECK_VALUE])
        return attrs, None
    if klass == C.CKO_PUBLIC_KEY:
        public = T.public_key_from(template)
        built = key_attrs.public_key_attrs(public, key_id=key_id, label=label, token=token, local=False, gen_mech=None)
        return T.overrides(template, built), None
    if klass == C.CKO_PRIVATE_KEY:
        private = T.private_key_from(template)
        built = key_attrs.private_key_attrs(
            private.public_key(), key_id=key_id, label=label, token=token, local=False, gen_mech=None
        )
        return T.overrides(template, built), T.pkcs8(private)
    if klass == C.CKO_SECRET_KEY:
        key_type = T.secret_key_type(template)
        value = T.require(template, C.CKA_VALUE)
        return T.secret_object(template, key_type, value, local=False, gen_mech=None), value
    if klass == C.CKO_DOMAIN_PARAMETERS:
        from vsc_provider.token import dsa_dh

        params_type = T.ulong(template, C.CKA_KEY_TYPE)
        if params_type is None:
            raise CKRError(C.CKR_TEMPLATE_INCOMPLETE, "CKA_KEY_TYPE is required")
        if params_type not in O.DSA_DH_KEY_TYPES:
            raise CKRError(C.CKR_TEMPLATE_INCONSISTENT, "domain parameters are of CKK_DSA or CKK_DH")
        # the card's policy refuses them on strict cards (CardPolicy.settle)
        built = dsa_dh.domain_attrs(params_type, template, label=label, token=token, local=False)
        return T.overrides(template, built), None
    if klass == C.CKO_OTP_KEY:
        from vsc_provider.pkcs11 import otp

        return otp.object_from_template(template)
    if klass == C.CKO_DATA:
        built = object_attrs.data_attrs(
            template.get(C.CKA_VALUE, b""),
            label=label,
            application=T.text(template, C.CKA_APPLICATION),
            token=token,
            private=T.flag(template, C.CKA_PRIVATE, True),
        )
        return T.overrides(template, built, frozenset({C.CKA_VALUE})), None
    raise CKRError(C.CKR_ATTRIBUTE_VALUE_INVALID, f"objects of class 0x{klass:x} cannot be created")


def create_object(h: int, pairs: list[tuple[int, bytes]]) -> int:
    s = LIB.session(h)
    template = A.template(pairs)
    attrs, material = build_object(s, template)
    attrs = s.card.policy.settle(attrs)
    token = A.get_bool(attrs, C.CKA_TOKEN)
    writable(s, token, A.get_bool(attrs, C.CKA_PRIVATE))
    engine = LIB.require()
    obj = engine.add_object(s.card, attrs, material, token, 0 if token else s.handle)
    if obj.klass == C.CKO_PRIVATE_KEY:
        _mark_user_certificates(s.card, obj.attrs.get(C.CKA_ID, b""))
    return obj.handle


def _mark_user_certificates(card: Card, key_id: bytes) -> None:
    """A certificate whose key arrives later becomes a user certificate (NSS lists those as "yours")."""
    engine = LIB.require()
    user = A.encode(C.CKA_CERTIFICATE_CATEGORY, C.CK_CERTIFICATE_CATEGORY_TOKEN_USER)
    for obj in list(card.objects.values()):
        if (
            obj.klass == C.CKO_CERTIFICATE
            and obj.attrs.get(C.CKA_ID) == key_id
            and obj.attrs.get(C.CKA_CERTIFICATE_CATEGORY) != user
        ):
            engine.update_attrs(card, obj, {C.CKA_CERTIFICATE_CATEGORY: user})


# What an object is: a copy may repeat these but never change them.
_IDENTITY = frozenset({C.CKA_CLASS, C.CKA_KEY_TYPE, C.CKA_CERTIFICATE_TYPE})
# Attributes that may change in one direction only (in a copy as in C_SetAttributeValue).
_ONE_WAY = frozenset({C.CKA_SENSITIVE, C.CKA_EXTRACTABLE, C.CKA_ALWAYS_AUTHENTICATE, C.CKA_WRAP_WITH_TRUSTED})


def copy_object(h: int, handle: int, pairs: list[tuple[int, bytes]]) -> int:
    s = LIB.session(h)
    obj = find_object(s, handle)
    if not obj.bool(C.CKA_COPYABLE, True):
        raise CKRError(C.CKR_ACTION_PROHIBITED, "object has CKA_COPYABLE false")
    template = A.template(pairs)
    attrs = dict(obj.attrs)
    for attr, value in template.items():
        if attr not in (C.CKA_TOKEN, C.CKA_PRIVATE, C.CKA_LABEL, C.CKA_ID, C.CKA_MODIFIABLE, C.CKA_DESTROYABLE):
            if attr in _ONE_WAY:
                _check_one_way(obj, attr, value)
            elif attr not in T.SETTABLE or (attr in _IDENTITY and obj.attrs.get(attr) != value):
                raise CKRError(C.CKR_ATTRIBUTE_READ_ONLY, f"attribute 0x{attr:x} cannot change in a copy")
        attrs[attr] = value
    attrs = s.card.policy.settle(attrs)
    attrs.pop(C.CKA_UNIQUE_ID, None)
    key_rules.check_changes(obj, attrs)
    token = A.get_bool(attrs, C.CKA_TOKEN)
    writable(s, token, A.get_bool(attrs, C.CKA_PRIVATE))
    engine = LIB.require()
    material = engine.material(s.card, obj) if (obj.secret is not None or obj.material is not None) else None
    return engine.add_object(s.card, attrs, material, token, 0 if token else s.handle).handle


def destroy_object(h: int, handle: int) -> None:
    s = LIB.session(h)
    obj = find_object(s, handle)
    if obj is s.card.profile or not obj.bool(C.CKA_DESTROYABLE, True):
        raise CKRError(C.CKR_ACTION_PROHIBITED, "object cannot be destroyed")
    writable(s, obj.is_token, obj.private or obj.klass == C.CKO_OTP_KEY)  # an OTP key's names are public
    LIB.require().destroy(s.card, obj)


def get_object_size(h: int, handle: int) -> int:
    s = LIB.session(h)
    obj = find_object(s, handle)
    return sum(len(v) for v in obj.attrs.values()) + len(obj.secret or obj.material or b"")


def _readable(s: Session, obj: TokenObject, attr: int) -> bytes | int:
    if attr in O.NEVER_READABLE:
        return C.CKR_ATTRIBUTE_SENSITIVE if obj.klass == C.CKO_PRIVATE_KEY else C.CKR_ATTRIBUTE_TYPE_INVALID
    if attr == C.CKA_VALUE and obj.klass == C.CKO_OTP_KEY:
        return C.CKR_ATTRIBUTE_SENSITIVE  # never extractable
    if attr == C.CKA_VALUE and obj.klass in (C.CKO_PRIVATE_KEY, C.CKO_SECRET_KEY):
        if obj.bool(C.CKA_SENSITIVE, True) or not obj.bool(C.CKA_EXTRACTABLE):
            return C.CKR_ATTRIBUTE_SENSITIVE
        if obj.klass == C.CKO_SECRET_KEY:
            return LIB.require().material(s.card, obj)
        return C.CKR_ATTRIBUTE_SENSITIVE
    value = obj.attrs.get(attr)
    if value is None:
        return C.CKR_ATTRIBUTE_TYPE_INVALID
    return value


def get_attribute_value(h: int, handle: int, types: list[int]) -> list[bytes | int]:
    s = LIB.session(h)
    obj = find_object(s, handle)
    attrs = obj.attrs
    out: list[bytes | int] = []
    for attr in types:
        value = attrs.get(attr)
        if value is not None and attr != C.CKA_VALUE:
            out.append(value)
        else:
            out.append(_readable(s, obj, attr))
    return out


def _check_one_way(obj: TokenObject, attr: int, value: bytes) -> None:
    if attr == C.CKA_SENSITIVE and obj.bool(C.CKA_SENSITIVE) and value == A.FALSE:
        raise CKRError(C.CKR_ATTRIBUTE_READ_ONLY, "CKA_SENSITIVE cannot be cleared")
    if attr == C.CKA_EXTRACTABLE and not obj.bool(C.CKA_EXTRACTABLE) and value == A.TRUE:
        raise CKRError(C.CKR_ATTRIBUTE_READ_ONLY, "CKA_EXTRACTABLE cannot be set again")
    if attr == C.CKA_WRAP_WITH_TRUSTED and obj.bool(C.CKA_WRAP_WITH_TRUSTED) and value == A.FALSE:
        raise CKRError(C.CKR_ATTRIBUTE_READ_ONLY, "CKA_WRAP_WITH_TRUSTED cannot be cleared")
    # A PIN per use protects the key from a process that holds only the normal login: it may not lift it.
    if attr == C.CKA_ALWAYS_AUTHENTICATE and obj.bool(C.CKA_ALWAYS_AUTHENTICATE) and value == A.FALSE:
        raise CKRError(C.CKR_ATTRIBUTE_READ_ONLY, "CKA_ALWAYS_AUTHENTICATE cannot be cleared")


def set_attribute_value(h: int, handle: int, pairs: list[tuple[int, bytes]]) -> None:
    s = LIB.session(h)
    obj = find_object(s, handle)
    if obj is s.card.profile or not obj.bool(C.CKA_MODIFIABLE, True):
        raise CKRError(C.CKR_ACTION_PROHIBITED, "object has CKA_MODIFIABLE false")
    writable(s, obj.is_token, obj.private)
    template = A.template(pairs)
    for attr, value in template.items():
        if attr not in O.MODIFIABLE:
            raise CKRError(
                C.CKR_ATTRIBUTE_READ_ONLY if attr in obj.attrs else C.CKR_ATTRIBUTE_TYPE_INVALID,
                f"attribute 0x{attr:x} cannot change",
            )
        _check_one_way(obj, attr, value)
        if obj.klass == C.CKO_PRIVATE_KEY and attr in (C.CKA_SENSITIVE, C.CKA_EXTRACTABLE):
            if (attr == C.CKA_SENSITIVE) != (value == A.TRUE):
                raise CKRError(C.CKR_ATTRIBUTE_READ_ONLY, "private keys stay sensitive and unextractable")
    key_rules.check_changes(obj, {**obj.attrs, **template})
    LIB.require().update_attrs(s.card, obj, template)
    s.card.keys.pop(obj.handle, None)


def find_objects_init(h: int, pairs: list[tuple[int, bytes]]) -> None:
    s = LIB.session(h)
    if s.find is not None:
        raise CKRError(C.CKR_OPERATION_ACTIVE)
    template = A.template(pairs)
    engine = LIB.require()
    engine.refresh()
    card = s.card
    s.find = [o.handle for o in card.all_objects() if (card.user or not o.private) and o.matches(template)]
    s.find.reverse()  # popped from the end: oldest first


def find_objects(h: int, max_count: int) -> list[int]:
    s = LIB.session(h)
    if s.find is None:
        raise CKRError(C.CKR_OPERATION_NOT_INITIALIZED)
    pending = s.find
    out: list[int] = []
    while pending and len(out) < max_count:
        out.append(pending.pop())
    return out


def find_objects_final(h: int) -> None:
    s = LIB.session(h)
    if s.find is None:
        raise CKRError(C.CKR_OPERATION_NOT_INITIALIZED)
    s.find = None
