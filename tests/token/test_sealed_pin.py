"""The PIN kept for fingerprint approval (token/sealed_pin.py) with real engines on a real store: never in the
clear in the store, opened only with the card's device-key layer (a store copied to a machine with another
device key does not give it), altered entries refused, the no-match count kept across processes' engines, an
entry of a card's earlier life ignored."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from vsc_provider.token import access, audit, sealed_pin
from vsc_provider.token.engine import Engine

PIN = b"482915"
SO = b"19283746"


def test_sealed_pin_opens_here_only_and_counts_no_matches(tmp_path: Path) -> None:
    engine = Engine(tmp_path / "store.sqlite", tmp_path / "device.key")
    card = engine.create_card("c", SO, PIN)
    assert sealed_pin.read(engine.store, card) is None and not sealed_pin.usable(None)
    sealed_pin.enable(engine.store, card, engine.layer_key(card), PIN)
    entry = sealed_pin.read(engine.store, card)
    assert entry is not None and sealed_pin.usable(entry)
    assert sealed_pin.unseal(card, engine.layer_key(card), entry) == PIN
    for path in tmp_path.iterdir():
        assert PIN not in path.read_bytes(), path

    altered = dict(entry, pin=entry["pin"][:-4] + ("AAA=" if not entry["pin"].endswith("AAA=") else "BBB="))
    assert sealed_pin.unseal(card, engine.layer_key(card), altered) is None

    # the store copied to another machine (another device key): the entry is there, the PIN does not open
    other = tmp_path / "other"
    other.mkdir()
    for name in ("store.sqlite", "store.sqlite-wal", "store.sqlite-shm"):
        if (tmp_path / name).exists():
            shutil.copy(tmp_path / name, other / name)
    elsewhere = Engine(other / "store.sqlite", other / "device.key")
    elsewhere.refresh()
    copied = next(iter(elsewhere.cards.values()))
    copied_entry = sealed_pin.read(elsewhere.store, copied)
    assert copied_entry is not None
    assert sealed_pin.unseal(copied, elsewhere.layer_key(copied), copied_entry) is None

    # no-matches are counted in the store: another engine (another process) sees them
    second = Engine(tmp_path / "store.sqlite", tmp_path / "device.key")
    second.refresh()
    same = second.cards[card.slot_id]
    assert [sealed_pin.count_failure(second.store, same) for _ in range(3)] == [1, 2, 3]
    assert not sealed_pin.usable(sealed_pin.read(engine.store, card))
    sealed_pin.reset_failures(engine.store, card)
    assert sealed_pin.usable(sealed_pin.read(second.store, same))
    raw = engine.store.read_meta(f"fingerprint-pin:{card.serial}")
    assert raw is not None and json.loads(raw)["failures"] == 0

    # a card initialised again (a new life: another `created`) ignores the entry of its earlier life
    engine.reinitialize(card, SO, "c again")
    engine.refresh(force=True)
    assert sealed_pin.read(engine.store, engine.cards[card.slot_id]) is None
    assert sealed_pin.disable(engine.store, card) is True
    assert sealed_pin.disable(engine.store, card) is False
    assert sealed_pin.read(second.store, same) is None and sealed_pin.count_failure(engine.store, card) == 0


def test_a_user_pin_change_or_reset_forgets_the_sealed_pin_at_once_an_so_pin_change_does_not(tmp_path: Path) -> None:
    engine = Engine(tmp_path / "store.sqlite", tmp_path / "device.key")
    card = engine.create_card("c", SO, PIN)

    def sealed() -> bool:
        return sealed_pin.read(engine.store, engine.cards[card.slot_id]) is not None

    sealed_pin.enable(engine.store, card, engine.layer_key(card), PIN)
    access.change_pin(engine, card, SO, b"28374651", so=True)  # the SO's own PIN: the user's stays sealed
    assert sealed()
    access.change_pin(engine, card, PIN, b"615243")  # C_SetPIN, `vsc pin change`, the card edges' change
    assert not sealed()

    sealed_pin.enable(engine.store, card, engine.layer_key(card), b"615243")
    access.reset_pin(engine, card, b"28374651", b"736251")  # the SO sets a new user PIN (C_InitPIN, unblock)
    assert not sealed()
    engine.audit.flush()
    kinds = [e.kind for e in audit.entries(engine.store, card.slot_id)[0]]
    assert kinds.count("pin-change-user") == 1 and kinds.count("pin-reset-user") == 1
