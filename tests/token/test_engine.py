"""The token engine without native code: PIN counting and blocking, keys at rest, PIN changes."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from vsc_provider.ck import attributes as A
from vsc_provider.ck import constants as C
from vsc_provider.ck.errors import CKRError
from vsc_provider.token import key_attrs
from vsc_provider.token.engine import Engine
from vsc_provider.token.pin import PinPolicy

PIN = b"482915"
SO = b"19283746"


def make_engine(root: Path) -> Engine:
    return Engine(root / "store.sqlite", root / "device.key")


def rv(fn, *args) -> int:
    with pytest.raises(CKRError) as err:
        fn(*args)
    return err.value.rv


def test_wrong_pins_delay_then_block_and_so_reset(tmp_path):
    engine = make_engine(tmp_path)
    # 0.3 s waiting periods: long enough that the try right after the third cannot miss one on a slow machine.
    card = engine.create_card("c", SO, PIN, policy=PinPolicy(delay_base=0.3, delay_max=0.3))
    assert rv(engine.login, card, False, b"000001") == C.CKR_PIN_INCORRECT
    assert rv(engine.login, card, False, b"000002") == C.CKR_PIN_INCORRECT
    assert rv(engine.login, card, False, b"000003") == C.CKR_PIN_INCORRECT
    # Inside the waiting period a try is refused without being checked or counted, even the right PIN.
    assert rv(engine.login, card, False, PIN) == C.CKR_FUNCTION_FAILED
    assert engine.cards[card.slot_id].record.user_failures == 3
    for _ in range(7):
        time.sleep(0.31)
        result = rv(engine.login, card, False, b"000009")
    assert result == C.CKR_PIN_LOCKED
    time.sleep(0.31)
    assert rv(engine.login, card, False, PIN) == C.CKR_PIN_LOCKED
    # A new process (engine) sees the same block: it lives in the store.
    other = make_engine(tmp_path)
    assert rv(other.login, other.cards[card.slot_id], False, PIN) == C.CKR_PIN_LOCKED
    # The SO resets the PIN without losing keys.
    engine.login(card, True, SO)
    engine.set_user_pin(card, b"583920")
    engine.logout(card)
    engine.login(card, False, b"583920")
    assert card.user


def test_success_resets_the_counter(tmp_path):
    engine = make_engine(tmp_path)
    card = engine.create_card("c", SO, PIN)
    rv(engine.login, card, False, b"000001")
    engine.login(card, False, PIN)
    assert engine.cards[card.slot_id].record.user_failures == 0


def _import_key(engine: Engine, card) -> rsa.RSAPrivateKey:
    key = rsa.generate_private_key(65537, 2048)
    attrs = key_attrs.private_key_attrs(
        key.public_key(), key_id=b"k", label="k", token=True, local=False, gen_mech=None
    )
    der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    engine.add_object(card, attrs, der, True, 0)
    return key


def test_store_holds_no_key_bytes_and_no_pin(tmp_path):
    engine = make_engine(tmp_path)
    card = engine.create_card("c", SO, PIN)
    engine.login(card, False, PIN)
    key = _import_key(engine, card)
    engine.store._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    d = key.private_numbers().d.to_bytes(256, "big")
    p = key.private_numbers().p.to_bytes(128, "big")
    blob = b"".join(f.read_bytes() for f in tmp_path.iterdir() if f.name.startswith("store.sqlite"))
    assert len(blob) > 4096
    for secret in (der[-64:], d[:32], p[:32], PIN, SO, engine.device_key):
        assert secret not in blob
        assert secret.hex().encode() not in blob


def test_a_copied_store_does_not_open_with_the_pin(tmp_path):
    engine = make_engine(tmp_path)
    card = engine.create_card("c", SO, PIN)
    engine.login(card, False, PIN)
    _import_key(engine, card)
    engine.store._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "store.sqlite").write_bytes((tmp_path / "store.sqlite").read_bytes())
    stolen = make_engine(elsewhere)  # a new device key is made there
    stolen_card = stolen.cards[card.slot_id]
    assert rv(stolen.login, stolen_card, False, PIN) == C.CKR_DEVICE_ERROR
    assert stolen.cards[card.slot_id].record.user_failures == 0


def test_pin_change_rewraps_only_the_data_key(tmp_path):
    engine = make_engine(tmp_path)
    card = engine.create_card("c", SO, PIN)
    engine.login(card, False, PIN)
    key = _import_key(engine, card)
    sealed_before = {o.handle: o.secret for o in card.objects.values()}
    engine.set_user_pin(card, b"583920")
    engine.logout(card)
    assert rv(engine.login, card, False, PIN) == C.CKR_PIN_INCORRECT
    engine.login(card, False, b"583920")
    obj = next(o for o in card.objects.values() if o.klass == C.CKO_PRIVATE_KEY)
    assert obj.secret == sealed_before[obj.handle]
    loaded = engine.crypto_key(card, obj)
    assert loaded.private_numbers() == key.private_numbers()


def test_other_processes_changes_are_seen(tmp_path):
    first = make_engine(tmp_path)
    second = make_engine(tmp_path)
    card = first.create_card("c", SO, PIN)
    assert second.refresh() is True
    assert card.slot_id in second.cards
    assert second.refresh() is False
    first.login(card, False, PIN)
    _import_key(first, card)
    second.refresh()
    assert any(o.klass == C.CKO_PRIVATE_KEY for o in second.cards[card.slot_id].objects.values())
    first.delete_card(card.slot_id)
    second.refresh()
    assert card.slot_id not in second.cards


def test_key_material_needs_login(tmp_path):
    engine = make_engine(tmp_path)
    card = engine.create_card("c", SO, PIN)
    engine.login(card, False, PIN)
    _import_key(engine, card)
    engine.logout(card)
    obj = next(o for o in card.objects.values() if o.klass == C.CKO_PRIVATE_KEY)
    assert rv(engine.crypto_key, card, obj) == C.CKR_USER_NOT_LOGGED_IN
    assert A.get_bool(obj.attrs, C.CKA_SENSITIVE)


def test_a_store_from_before_device_key_back_ends_keeps_working(tmp_path):
    """Its cards table gains the device_key column at the first open; its cards are `file` cards and open."""
    import sqlite3

    engine = make_engine(tmp_path)
    card = engine.create_card("old", SO, PIN)
    engine.store._db.close()
    with sqlite3.connect(tmp_path / "store.sqlite") as db:
        db.execute("ALTER TABLE cards DROP COLUMN device_key")
    reopened = make_engine(tmp_path)
    old = reopened.cards[card.slot_id]
    assert old.record.device_key is None
    reopened.login(old, False, PIN)
    assert old.user
    reopened.set_user_pin(old, b"583920")  # re-wrapped under the same (file) layer
    reopened.logout(old)
    reopened.login(old, False, b"583920")
    assert old.user


def test_an_unknown_device_key_back_end_is_refused(tmp_path):
    engine = make_engine(tmp_path)
    assert rv(engine.create_card, "c", SO, PIN, None, None, None, "smartwatch") == C.CKR_ARGUMENTS_BAD
    assert engine.cards == {}
