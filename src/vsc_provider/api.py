"""The Python API over the cards: what the `vsc` CLI does, in-process, through the card service
(token/service.py, token/access.py) that the PKCS#11 layer fronts too, so every rule (PIN policy, lockout,
object rules) applies the same way.

This process's engine is its own (one per card store): cards, objects and PIN counters are shared with other
processes and with a PKCS#11 module loaded here through the store and its change signal, login state is not.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from vsc_provider import config, tamper, uri
from vsc_provider.ck import attributes as A
from vsc_provider.ck import constants as C
from vsc_provider.ck.errors import CKRError
from vsc_provider.provisioning.online import ServerPinCheck
from vsc_provider.token import access, card_layer, ec_params, key_info, service
from vsc_provider.token.engine import Card, Engine
from vsc_provider.token.pin import PinPolicy
from vsc_provider.token.policy import STRICT, CardPolicy

KEY_KINDS = service.KEY_KINDS
PARAMETER_SET_NAMES: dict[tuple[int | None, int | None], str] = {
    (C.CKK_ML_DSA, C.CKP_ML_DSA_44): "ML-DSA-44",
    (C.CKK_ML_DSA, C.CKP_ML_DSA_65): "ML-DSA-65",
    (C.CKK_ML_DSA, C.CKP_ML_DSA_87): "ML-DSA-87",
    (C.CKK_ML_KEM, C.CKP_ML_KEM_768): "ML-KEM-768",
    (C.CKK_ML_KEM, C.CKP_ML_KEM_1024): "ML-KEM-1024",
}
CLASS_NAMES = {
    C.CKO_DATA: "data",
    C.CKO_CERTIFICATE: "cert",
    C.CKO_PUBLIC_KEY: "public",
    C.CKO_PRIVATE_KEY: "private",
    C.CKO_SECRET_KEY: "secret-key",
}
KEY_TYPE_NAMES = {
    C.CKK_RSA: "RSA",
    C.CKK_EC: "EC",
    C.CKK_EC_EDWARDS: "EdDSA",
    C.CKK_AES: "AES",
    C.CKK_GENERIC_SECRET: "generic",
    C.CKK_ML_DSA: "ML-DSA",
    C.CKK_ML_KEM: "ML-KEM",
}


@dataclass
class ObjectInfo:
    handle: int
    kind: str
    label: str
    id: str
    key_type: str | None
    uri: str
    details: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class CardInfo:
    slot: int
    serial: str
    label: str
    uri: str
    server: str | None
    user_pin_set: bool
    failed_tries: int
    locked: bool
    objects: list[ObjectInfo]
    renewal_requested: bool = False  # the card's server asked for new keys (done with the PIN: vsc card renew)
    policy: str = "strict"  # the card policy, fixed at creation: strict or compatible (for test rigs)
    device_key: str = "file"  # the back end of the card's device-key layer: tpm, keyring or file
    attestation: str | None = None  # "tpm": its server registered the card's TPM key (docs/attestation.md)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["objects"] = [o.to_json() for o in self.objects]
        return data


_engines: dict[str, Engine] = {}
# The front end this process's audit entries name (token/audit.py): `api` for a program that imports
# vsc_provider; the `vsc` command and the agent say which they are (serve_as).
_front_end = ["api"]


def serve_as(front_end: str) -> None:
    """Name the front end this process's engine records in the audit log (cli, agent), from now on."""
    _front_end[0] = front_end
    for eng in _engines.values():
        eng.audit.front_end = front_end


def engine() -> Engine:
    """This process's engine over the card store at VSC_HOME (a new one when VSC_HOME names another store)."""
    where = str(config.store_path())
    eng = _engines.get(where)
    if eng is None:
        eng = Engine()
        # Server-checked PINs (provisioned cards) reach their server through provisioning: its HTTP and JOSE
        # load at the first such PIN.
        eng.online = ServerPinCheck()
        eng.unlock_guard = tamper.check_unlock  # this engine serves the CLI or the agent, never a PKCS#11 host
        eng.audit.front_end = _front_end[0]
        _engines.clear()
        _engines[where] = eng
    return eng


def find_card(ref: str) -> Card:
    """A card by serial, slot number or label (a label must be unambiguous)."""
    eng = engine()
    eng.refresh()
    cards = list(eng.cards.values())
    for card in cards:
        if card.serial.lower() == ref.lower() or str(card.slot_id) == ref:
            return card
    named = [c for c in cards if c.label == ref]
    if len(named) == 1:
        return named[0]
    if len(named) > 1:
        raise CKRError(C.CKR_ARGUMENTS_BAD, f"several cards are labelled {ref!r}: use the serial")
    raise CKRError(C.CKR_SLOT_ID_INVALID, f"no card {ref!r}")


@contextmanager
def session(card: Card, pin: str | None = None, so_pin: str | None = None) -> Iterator[Card]:
    """The card with the user (or the SO) logged in for the block, logged out after it."""
    eng = engine()
    eng.poll()  # take in what other processes committed
    if so_pin is not None:
        access.login(eng, card, so_pin.encode(), so=True)
    elif pin is not None:
        access.login(eng, card, pin.encode())
    try:
        yield card
    finally:
        if so_pin is not None or pin is not None:
            access.logout(eng, card)


def describe(card: Card, token: str, obj: Any) -> ObjectInfo:
    attrs = obj.attrs
    key_type = A.get_ulong(attrs, C.CKA_KEY_TYPE)
    label = A.decode(C.CKA_LABEL, attrs.get(C.CKA_LABEL, b""))
    key_id = attrs.get(C.CKA_ID, b"")
    details: dict[str, Any] = {}
    if key_type == C.CKK_RSA and C.CKA_MODULUS_BITS in attrs:
        details["bits"] = A.get_ulong(attrs, C.CKA_MODULUS_BITS)
    if key_type in (C.CKK_EC, C.CKK_EC_EDWARDS) and C.CKA_EC_PARAMS in attrs:
        details["curve"] = ec_params.curve_from_params(attrs[C.CKA_EC_PARAMS])
    if C.CKA_PARAMETER_SET in attrs:
        details["parameter_set"] = PARAMETER_SET_NAMES.get((key_type, A.get_ulong(attrs, C.CKA_PARAMETER_SET)))
    if obj.klass == C.CKO_CERTIFICATE:
        cert = x509.load_der_x509_certificate(attrs[C.CKA_VALUE])
        details["subject"] = cert.subject.rfc4514_string()
        details["issuer"] = cert.issuer.rfc4514_string()
        details["not_after"] = cert.not_valid_after_utc.isoformat()
    if obj.klass == C.CKO_PRIVATE_KEY:
        details["always_authenticate"] = obj.bool(C.CKA_ALWAYS_AUTHENTICATE)
    return ObjectInfo(
        handle=obj.handle,
        kind=CLASS_NAMES.get(obj.klass, f"0x{obj.klass:x}"),
        label=str(label),
        id=key_id.hex(),
        key_type=KEY_TYPE_NAMES.get(key_type) if key_type is not None else None,
        uri=uri.object_uri(token, key_id, str(label), obj.klass),
        details=details,
    )


def card_info(card: Card, with_private: bool = False) -> CardInfo:
    token = uri.token_uri(card.label, card.serial)
    objs = [
        describe(card, token, o)
        for o in card.objects.values()
        if o.klass in CLASS_NAMES and (with_private or not o.private)
    ]
    rec = card.record
    binding = rec.server or {}
    return CardInfo(
        slot=card.slot_id,
        serial=card.serial,
        label=card.label,
        uri=token,
        server=(rec.server or {}).get("url") if rec.server else None,
        user_pin_set=rec.user_wrapped is not None,
        failed_tries=rec.user_failures,
        locked=rec.user_failures >= card.policy.pin.max_tries,
        objects=objs,
        renewal_requested=bool((rec.server or {}).get("renew_requested")),
        policy=card.policy.name,
        device_key=card_layer.kind(rec.device_key),
        attestation="tpm" if binding.get("tpm_key") and binding.get("state") == "active" else None,
    )


def create_card(
    label: str,
    pin: str,
    so_pin: str,
    policy: PinPolicy | None = None,
    card_policy: str = STRICT,
    device_key: str | None = None,
) -> CardInfo:
    """A new local card; `card_policy` is strict or compatible, for good (`policy` tunes strict PIN delays).
    Its label must be new too, since users name cards by label (C_InitToken, the SO's PKCS#11 call, still
    allows duplicates). `device_key` is tpm, keyring or file (default: the best this machine has)."""
    rules = CardPolicy.named(card_policy, policy if card_policy == STRICT else None)
    eng = engine()
    eng.refresh()
    same = [c.serial for c in eng.cards.values() if c.label == label]
    if same:
        raise CKRError(C.CKR_ARGUMENTS_BAD, f"a card labelled {label!r} exists already (serial {same[0]})")
    backend = device_key or card_layer.best_available()
    card = eng.create_card(label, so_pin.encode(), pin.encode(), policy=rules, device_key=backend)
    return card_info(card)


def list_cards() -> list[CardInfo]:
    eng = engine()
    eng.refresh()
    return [card_info(c) for c in sorted(eng.cards.values(), key=lambda c: c.slot_id)]


def list_objects(ref: str, pin: str | None = None) -> CardInfo:
    card = find_card(ref)
    if pin is None:
        return card_info(card)
    with session(card, pin=pin):
        return card_info(card, with_private=True)


def delete_card(ref: str) -> None:
    card = find_card(ref)
    if card.user or card.so:
        raise CKRError(C.CKR_SESSION_EXISTS, "log out of the card first")
    engine().delete_card(card.slot_id)


def generate_key(ref: str, kind: str, label: str, pin: str, always_authenticate: bool = False) -> list[ObjectInfo]:
    if kind not in KEY_KINDS:
        raise CKRError(C.CKR_MECHANISM_INVALID, f"key type is one of {', '.join(KEY_KINDS)}")
    card = find_card(ref)
    with session(card, pin=pin):
        pub, priv = service.generate(engine(), card, kind, None, label, always_authenticate)
        token = uri.token_uri(card.label, card.serial)
        return [describe(card, token, pub), describe(card, token, priv)]


def _matching_key(card: Card, cert: x509.Certificate) -> tuple[bytes, str] | None:
    """The CKA_ID and label of the key pair whose public key is the certificate's."""
    want = key_info.spki(cert.public_key())
    for obj in card.objects.values():
        if obj.klass == C.CKO_PUBLIC_KEY and obj.attrs.get(C.CKA_PUBLIC_KEY_INFO) == want:
            return obj.attrs.get(C.CKA_ID, b""), str(A.decode(C.CKA_LABEL, obj.attrs.get(C.CKA_LABEL, b"")))
    return None


def load_certificate(data: bytes) -> x509.Certificate:
    try:
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)
    except ValueError as exc:
        raise CKRError(C.CKR_ATTRIBUTE_VALUE_INVALID, "not a PEM or DER X.509 certificate") from exc


def store_certificate(card: Card, der: bytes, key_id: bytes, label: str) -> int:
    """A public token certificate on the card, with the CKA_ID of its key (through the card service)."""
    return service.store_certificate(engine(), card, der, key_id, label).handle


@dataclass
class Imported:
    info: ObjectInfo
    new: bool  # False: the same certificate was already on the card, nothing was stored


def import_certificate(
    ref: str,
    data: bytes,
    pin: str,
    label: str | None = None,
    key_id: bytes | None = None,
    no_key_ok: bool = False,
) -> Imported:
    """Store a certificate with the CKA_ID and label of its key (found by public key) unless given. A
    certificate already on the card is not stored twice; one without a key on the card only with no_key_ok."""
    card = find_card(ref)
    cert = load_certificate(data)
    der = cert.public_bytes(serialization.Encoding.DER)
    token = uri.token_uri(card.label, card.serial)
    with session(card, pin=pin):
        for obj in card.objects.values():
            if obj.klass == C.CKO_CERTIFICATE and obj.attrs.get(C.CKA_VALUE) == der:
                return Imported(describe(card, token, obj), new=False)
        matching = _matching_key(card, cert)
        if matching is None and not no_key_ok:
            raise CKRError(
                C.CKR_KEY_HANDLE_INVALID,
                f"no key on card {card.label!r} matches this certificate (--no-key-ok imports it anyway)",
            )
        key_label = None
        if matching is not None:
            key_id = matching[0] if key_id is None else key_id
            key_label = matching[1] or None
        if key_id is None:
            key_id = key_info.key_id_for(cert.public_key())
        if label is None:
            names = cert.subject.get_attributes_for_oid(x509.oid.NameOID.COMMON_NAME)
            label = key_label or (str(names[0].value) if names else "certificate")
        handle = store_certificate(card, der, key_id, label)
        return Imported(describe(card, token, card.get(handle)), new=True)


def export_certificate(ref: str, selector: str) -> bytes:
    card = find_card(ref)
    for obj in card.objects.values():
        if obj.klass != C.CKO_CERTIFICATE:
            continue
        label = A.decode(C.CKA_LABEL, obj.attrs.get(C.CKA_LABEL, b""))
        if selector in (label, obj.attrs.get(C.CKA_ID, b"").hex()):
            return obj.attrs[C.CKA_VALUE]
    raise CKRError(C.CKR_OBJECT_HANDLE_INVALID, f"no certificate {selector!r} on card {card.label!r}")


def _selected(card: Card, selector: str) -> list[int]:
    return [
        o.handle
        for o in list(card.objects.values())
        if selector in (A.decode(C.CKA_LABEL, o.attrs.get(C.CKA_LABEL, b"")), o.attrs.get(C.CKA_ID, b"").hex())
    ]


def check_objects(ref: str, selector: str) -> None:
    """Refuse at once (no PIN needed) when no object on the card has that label or hex id."""
    card = find_card(ref)
    if not _selected(card, selector):
        raise CKRError(
            C.CKR_OBJECT_HANDLE_INVALID, f"no such key: nothing labelled {selector!r} on card {card.label!r}"
        )


def delete_objects(ref: str, selector: str, pin: str) -> int:
    """Delete every object (key pair and certificate) whose label or hex id is `selector`."""
    card = find_card(ref)
    with session(card, pin=pin):
        doomed = service.destroy_named(engine(), card, selector)
    if not doomed:
        raise CKRError(
            C.CKR_OBJECT_HANDLE_INVALID, f"no such key: nothing labelled {selector!r} on card {card.label!r}"
        )
    return doomed


def change_pin(ref: str, old: str, new: str) -> None:
    card = find_card(ref)
    engine().poll()
    access.change_pin(engine(), card, old.encode(), new.encode())


def reset_pin(ref: str, so_pin: str, new: str) -> None:
    """The SO sets a new user PIN (also unblocks a card blocked by wrong PINs)."""
    card = find_card(ref)
    engine().poll()
    access.reset_pin(engine(), card, so_pin.encode(), new.encode())


def default_policy_from_env() -> PinPolicy | None:
    """Tests shorten waiting periods with VSC_PIN_DELAY_BASE (seconds); users keep the default."""
    base = os.environ.get("VSC_PIN_DELAY_BASE")
    return PinPolicy(delay_base=float(base)) if base else None
