"""The card service's login state, PINs, key generation and deletion by name (token/access.py and
token/service.py), on real engines over a real store; a second engine stands for another process."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from vsc_provider.ck import attributes as A
from vsc_provider.ck import constants as C
from vsc_provider.ck.errors import CKRError
from vsc_provider.ck.params import Mechanism
from vsc_provider.token import access, key_info, service
from vsc_provider.token.engine import Engine
from vsc_provider.token.pin import PinPolicy

PIN = b"482915"
SO = b"19283746"


def make_engine(root: Path) -> Engine:
    return Engine(root / "store.sqlite", root / "device.key")


def rv(fn: Callable[..., Any], *args: Any) -> int:
    try:
        fn(*args)
    except CKRError as exc:
        return exc.rv
    return C.CKR_OK


def test_login_counts_wrong_pins_refuses_a_second_login_and_logout_forgets(tmp_path: Path) -> None:
    engine = make_engine(tmp_path)
    card = engine.create_card("c", SO, PIN, policy=PinPolicy(delay_base=0.01, delay_max=0.01))
    assert rv(access.login, engine, card, b"000001") == C.CKR_PIN_INCORRECT
    assert card.record.user_failures == 1 and not card.user
    access.login(engine, card, PIN)
    assert card.user and card.data_key is not None and card.record.user_failures == 0
    assert rv(access.login, engine, card, PIN) == C.CKR_USER_ALREADY_LOGGED_IN
    assert rv(access.login, engine, card, SO, True) == C.CKR_USER_ANOTHER_ALREADY_LOGGED_IN
    access.logout(engine, card)
    assert not card.user and card.data_key is None


def test_generated_always_authenticate_ml_dsa_key_is_seen_by_another_engine(tmp_path: Path) -> None:
    engine = make_engine(tmp_path)
    card = engine.create_card("c", SO, PIN)
    assert rv(service.generate, engine, card, "ml-dsa-44", None, "pq") == C.CKR_USER_NOT_LOGGED_IN
    access.login(engine, card, PIN)
    pub, priv = service.generate(engine, card, "ml-dsa-44", None, "pq", True)
    assert priv.bool(C.CKA_ALWAYS_AUTHENTICATE) and not pub.bool(C.CKA_ALWAYS_AUTHENTICATE)
    assert A.get_ulong(priv.attrs, C.CKA_PARAMETER_SET) == C.CKP_ML_DSA_44
    key_id = priv.attrs[C.CKA_ID]
    assert key_id == pub.attrs[C.CKA_ID] == key_info.key_id_for(engine.crypto_key(card, pub))
    # such a key signs only with its PIN given again for the one signature (a context-specific login)
    mech = Mechanism(C.CKM_ML_DSA)
    assert rv(service.sign, engine, card, key_id, mech, b"x") == C.CKR_USER_NOT_LOGGED_IN
    other = make_engine(tmp_path)
    seen = other.card(card.slot_id)
    assert [o.klass for o in service.with_key_id(seen, key_id)] == [C.CKO_PUBLIC_KEY]
    access.login(other, seen, PIN)
    assert {o.klass for o in service.with_key_id(seen, key_id)} == {C.CKO_PUBLIC_KEY, C.CKO_PRIVATE_KEY}
    assert service.with_key_id(seen, key_id, C.CKO_PRIVATE_KEY)[0].bool(C.CKA_ALWAYS_AUTHENTICATE)


def test_destroy_by_label_or_id_needs_the_user_and_takes_the_whole_pair(tmp_path: Path) -> None:
    engine = make_engine(tmp_path)
    card = engine.create_card("c", SO, PIN)
    access.login(engine, card, PIN)
    _, priv = service.generate(engine, card, "p256", None, "one")
    service.generate(engine, card, "ed25519", b"\x02", "two")
    access.logout(engine, card)
    assert rv(service.destroy_named, engine, card, "one") == C.CKR_USER_NOT_LOGGED_IN
    assert len(card.objects) == 4
    access.login(engine, card, PIN)
    assert service.destroy_named(engine, card, "nothing") == 0
    assert service.destroy_named(engine, card, "one") == 2
    assert service.destroy_named(engine, card, "02") == 2
    assert card.objects == {}
    assert make_engine(tmp_path).card(card.slot_id).objects == {}
    assert priv.handle not in card.keys


def test_change_pin_needs_the_old_one_and_the_so_resets_a_blocked_pin(tmp_path: Path) -> None:
    engine = make_engine(tmp_path)
    card = engine.create_card("c", SO, PIN, policy=PinPolicy(delay_base=0.0, delay_max=0.0))
    assert rv(access.change_pin, engine, card, b"000001", b"583920") == C.CKR_PIN_INCORRECT
    assert rv(access.change_pin, engine, card, PIN, b"123456") == C.CKR_PIN_INVALID  # a run: never allowed
    access.change_pin(engine, card, PIN, b"583920")
    assert not card.user and card.data_key is None  # changing logs nobody in
    assert rv(access.login, engine, card, PIN) == C.CKR_PIN_INCORRECT
    while rv(access.login, engine, card, b"000009") != C.CKR_PIN_LOCKED:
        pass
    assert rv(access.login, engine, card, b"583920") == C.CKR_PIN_LOCKED
    assert rv(access.reset_pin, engine, card, b"87654321", b"640271") == C.CKR_PIN_INCORRECT
    access.reset_pin(engine, card, SO, b"640271")
    assert not card.so
    access.login(engine, card, b"640271")
    assert card.user


def test_always_authenticate_key_signs_with_its_pin_given_again_counted_like_a_login(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    engine = make_engine(tmp_path)
    card = engine.create_card("c", SO, PIN, policy=PinPolicy(delay_base=0.0, delay_max=0.0))
    access.login(engine, card, PIN)
    pub, priv = service.generate(engine, card, "p256", None, "each", True)
    key_id = priv.attrs[C.CKA_ID]
    mech = Mechanism(C.CKM_ECDSA_SHA256)
    assert rv(service.sign, engine, card, key_id, mech, b"x") == C.CKR_USER_NOT_LOGGED_IN
    assert rv(service.sign, engine, card, key_id, mech, b"x", b"000001") == C.CKR_PIN_INCORRECT
    assert engine.card(card.slot_id).record.user_failures == 1
    signature = service.sign(engine, card, key_id, mech, b"x", PIN)
    assert engine.card(card.slot_id).record.user_failures == 0
    r, s = int.from_bytes(signature[:32]), int.from_bytes(signature[32:])
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

    engine.crypto_key(card, pub).verify(encode_dss_signature(r, s), b"x", ec.ECDSA(hashes.SHA256()))
    access.logout(engine, card)
    # the PIN given again does not stand for a login: logged out, the private key is not even seen
    assert rv(service.sign, engine, card, key_id, mech, b"x", PIN) == C.CKR_KEY_HANDLE_INVALID
