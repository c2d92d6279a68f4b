"""Card policies in the engine, below every front end: how a policy is stored and read back (old stores read
as strict and keep their PIN derivation), PIN shapes, and how keys usable without login are sealed.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from vsc_provider.ck import attributes as A
from vsc_provider.ck import constants as C
from vsc_provider.ck.errors import CKRError
from vsc_provider.token import key_attrs, keywrap
from vsc_provider.token.engine import Engine
from vsc_provider.token.pin import PinPolicy
from vsc_provider.token.policy import COMPATIBLE, STRICT, CardPolicy

PIN = b"482915"
SO = b"19283746"
FAST = keywrap.KdfParams(n=2**4)


def make_engine(root: Path) -> Engine:
    return Engine(root / "store.sqlite", root / "device.key")


def rv(fn, *args) -> int:
    with pytest.raises(CKRError) as err:
        fn(*args)
    return err.value.rv


def _private_key_attrs(key, private: bool) -> dict[int, bytes]:
    attrs = key_attrs.private_key_attrs(
        key.public_key(), key_id=b"k", label="k", token=True, local=False, gen_mech=None
    )
    attrs[C.CKA_PRIVATE] = A.TRUE if private else A.FALSE
    return attrs


def _pkcs8(key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def test_a_record_without_a_policy_name_is_strict_and_opens_with_the_old_derivation(tmp_path):
    engine = make_engine(tmp_path)
    card = engine.create_card("old", SO, PIN, kdf=FAST)
    # Make the record look like one written before policies: PIN parameters only.
    old = {k: v for k, v in card.record.policy.items() if k not in ("name", "digits_only", "delays")}
    with engine.store.transaction() as db:
        engine.store.update_card(db, card.slot_id, policy=old)
    fresh = make_engine(tmp_path)
    card = fresh.cards[card.slot_id]
    assert card.policy.name == STRICT and card.policy == CardPolicy.named(STRICT)
    # The user PIN's wrapping opens with scrypt over the PIN's own bytes, as before this change.
    rec = card.record
    inner = keywrap.unseal(fresh.device_key, rec.user_wrapped, f"vsc-card:{rec.serial}:user".encode())
    assert inner is not None and rec.user_salt is not None
    data_key = keywrap.unseal(keywrap.derive(PIN, rec.user_salt, FAST), inner, f"vsc-card:{rec.serial}:user".encode())
    assert data_key is not None
    fresh.login(card, False, PIN)
    assert card.data_key == data_key


def test_unknown_policy_names_read_as_strict_and_are_refused_at_creation(tmp_path):
    assert CardPolicy.from_json({"name": "lenient"}).name == STRICT
    assert rv(CardPolicy.named, "lenient") == C.CKR_ARGUMENTS_BAD
    stored = CardPolicy.named(COMPATIBLE).to_json()
    assert stored["name"] == COMPATIBLE and CardPolicy.from_json(json.loads(json.dumps(stored))).public_keys


def test_pin_shapes_and_kdf_input():
    strict, compatible = CardPolicy.named(STRICT).pin, CardPolicy.named(COMPATIBLE).pin
    assert strict.may_be(PIN) and strict.may_be(SO, so=True)
    for bad in (PIN + b"\0", PIN.ljust(64, b"\0"), b"48291a", b"4829", b"1" * 33):
        assert not strict.may_be(bad)
    assert not strict.may_be(PIN, so=True)  # shorter than an SO PIN can be
    assert compatible.may_be(b"1234") and compatible.may_be(b"\0\xff ab") and not compatible.may_be(b"123")
    assert not compatible.may_be(b"x" * 256)
    assert strict.kdf_input(PIN) == PIN
    assert compatible.kdf_input(b"1234") != compatible.kdf_input(b"1234\0")
    assert compatible.kdf_input(b"1234") == b"\x00\x041234"
    assert CardPolicy.named(COMPATIBLE).pin.delay_after(9) == 0.0
    assert PinPolicy(delay_base=2.0).delay_after(3) == 2.0


def test_malformed_pins_are_incorrect_without_counting_a_try(tmp_path):
    engine = make_engine(tmp_path)
    card = engine.create_card("c", SO, PIN, kdf=FAST)
    for bad in (PIN + b"\0", PIN.ljust(64, b"\0"), b"abcdef"):
        assert rv(engine.login, card, False, bad) == C.CKR_PIN_INCORRECT
        assert rv(engine.login, card, True, SO + b"\0") == C.CKR_PIN_INCORRECT
    rec = engine.cards[card.slot_id].record
    assert rec.user_failures == 0 and rec.so_failures == 0
    assert rv(engine.login, card, False, b"000000") == C.CKR_PIN_INCORRECT  # a well-formed wrong PIN counts
    assert engine.cards[card.slot_id].record.user_failures == 1


def test_compatible_nul_padded_pin_is_a_wrong_pin(tmp_path):
    engine = make_engine(tmp_path)
    card = engine.create_card("c", b"5678", b"1234", policy=CardPolicy.named(COMPATIBLE), kdf=FAST)
    assert rv(engine.login, card, False, b"1234\0") == C.CKR_PIN_INCORRECT
    assert engine.cards[card.slot_id].record.user_failures == 1  # any byte may be in a compatible PIN: counted
    engine.login(card, False, b"1234")


def test_strict_engine_overrules_cka_private_false_and_small_keys(tmp_path):
    """The rules hold for callers that bypass the PKCS#11 layer (the Python API, provisioning)."""
    engine = make_engine(tmp_path)
    card = engine.create_card("c", SO, PIN, kdf=FAST)
    engine.login(card, False, PIN)
    key = ec.generate_private_key(ec.SECP256R1())
    obj = engine.add_object(card, _private_key_attrs(key, private=False), _pkcs8(key), True, 0)
    assert obj.private
    small = rsa.generate_private_key(65537, 1024)
    assert rv(engine.add_object, card, _private_key_attrs(small, True), _pkcs8(small), True, 0) == (
        C.CKR_ATTRIBUTE_VALUE_INVALID
    )
    p192 = ec.generate_private_key(ec.SECP192R1())
    assert rv(engine.add_object, card, _private_key_attrs(p192, True), _pkcs8(p192), False, 7) == (
        C.CKR_CURVE_NOT_SUPPORTED
    )
    assert rv(engine.public_object_key, card) == C.CKR_USER_NOT_LOGGED_IN


def test_compatible_public_key_is_sealed_and_usable_without_login(tmp_path):
    engine = make_engine(tmp_path)
    card = engine.create_card("c", b"5678", b"1234", policy=CardPolicy.named(COMPATIBLE), kdf=FAST)
    key = ec.generate_private_key(ec.SECP192R1())
    material = _pkcs8(key)
    obj = engine.add_object(card, _private_key_attrs(key, private=False), material, True, 0)  # no login
    stored = {o.id: o for o in engine.store.objects(card.slot_id)}[obj.handle]
    assert stored.secret is not None and material not in stored.secret
    assert keywrap.unseal(engine.public_object_key(card), stored.secret, stored.uid) == material
    # Another process (a fresh engine) uses it without any PIN.
    other = make_engine(tmp_path)
    other_card = other.cards[card.slot_id]
    loaded = other.crypto_key(other_card, other_card.objects[obj.handle])
    assert loaded.private_numbers() == key.private_numbers()
    # Without the device key it does not open: another machine's engine derives another public-object key.
    (tmp_path / "elsewhere").mkdir()
    foreign = Engine(tmp_path / "store.sqlite", tmp_path / "elsewhere" / "device.key")
    foreign_card = foreign.cards[card.slot_id]
    assert rv(foreign.material, foreign_card, foreign_card.objects[obj.handle]) == C.CKR_DEVICE_ERROR
    # A private key on the same card still needs the login.
    private = engine.add_object
    assert rv(private, card, _private_key_attrs(key, private=True), material, True, 0) == C.CKR_USER_NOT_LOGGED_IN
