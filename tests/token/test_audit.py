"""The audit log in the engine on a real store: the server's unblock and the SO's block, a forked child that
must not write its parent's queue, a deleted card's log, and a store opened with another device key."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import pytest

from vsc_provider.ck import constants as C
from vsc_provider.ck.errors import CKRError
from vsc_provider.token import audit, audit_journal, audit_store, audit_writer
from vsc_provider.token.engine import Engine
from vsc_provider.token.pin import PinPolicy

PIN = b"482915"
SO = b"19283746"


def _engine(root: Path, key: str = "device.key") -> Engine:
    return Engine(root / "store.sqlite", root / key)


def _kinds(engine: Engine, card_id: int) -> list[tuple[str, str]]:
    engine.audit.flush()
    chain, _ = audit.entries(engine.store, card_id)
    return [(e.kind, e.result) for e in chain]


def _verify(engine: Engine, card_id: int, serial: str) -> int:
    chain, head = audit.entries(engine.store, card_id)
    return audit.verify(engine.device_key, serial, chain, head)


def test_so_block_and_the_servers_unblock(tmp_path: Path) -> None:
    engine = _engine(tmp_path)
    card = engine.create_card("c", SO, PIN, policy=PinPolicy(max_tries=3, delays=False))
    for _ in range(2):
        with pytest.raises(CKRError):
            engine.login(card, True, b"00000001")
    with pytest.raises(CKRError) as blocked:
        engine.login(card, True, b"00000002")
    assert blocked.value.rv == C.CKR_PIN_LOCKED
    for _ in range(3):
        with pytest.raises(CKRError):
            engine.login(card, False, b"000001")
    other = _engine(tmp_path)  # another process
    with pytest.raises(CKRError):  # the SO PIN is blocked: no unblock with it
        other.unblock_user(other.cards[card.slot_id], SO)
    other.audit.flush()
    kinds = _kinds(engine, card.slot_id)
    assert kinds[:4] == [
        ("login-so", "CKR_PIN_INCORRECT"),
        ("login-so", "CKR_PIN_INCORRECT"),
        ("login-so", "CKR_PIN_LOCKED"),
        ("block-so", "CKR_OK"),
    ]
    assert kinds[4:8] == [("login-user", "CKR_PIN_INCORRECT")] * 2 + [
        ("login-user", "CKR_PIN_LOCKED"),
        ("block-user", "CKR_OK"),
    ]
    assert kinds[8:] == [("login-so", "CKR_PIN_LOCKED")]
    assert _verify(engine, card.slot_id, card.serial) == 9


def test_unblock_user_is_recorded(tmp_path: Path) -> None:
    engine = _engine(tmp_path)
    card = engine.create_card("c", SO, PIN, policy=PinPolicy(max_tries=2, delays=False))
    for _ in range(2):
        with pytest.raises(CKRError):
            engine.login(card, False, b"000001")
    engine.unblock_user(card, SO)
    engine.login(card, False, PIN)
    assert _kinds(engine, card.slot_id)[-3:] == [
        ("login-so", "CKR_OK"),
        ("unblock-user", "CKR_OK"),
        ("login-user", "CKR_OK"),
    ]


def test_reinitializing_the_card_is_recorded_and_keeps_the_log(tmp_path: Path) -> None:
    engine = _engine(tmp_path)
    card = engine.create_card("c", SO, PIN)
    engine.login(card, False, PIN)
    engine.logout(card)
    engine.reinitialize(card, SO, "renamed")
    assert _kinds(engine, card.slot_id) == [
        ("login-user", "CKR_OK"),
        ("logout-user", "CKR_OK"),
        ("login-so", "CKR_OK"),
        ("init-token", "CKR_OK"),
    ]
    assert _verify(engine, card.slot_id, card.serial) == 4


def test_a_logout_ends_a_login_in_the_log_a_logout_of_nobody_does_not(tmp_path: Path) -> None:
    engine = _engine(tmp_path)
    card = engine.create_card("c", SO, PIN)
    engine.logout(card)  # nobody logged in
    engine.login(card, True, SO)
    engine.logout(card)
    engine.logout(card)  # again: nobody
    engine.login(card, False, PIN)
    engine.logout(card)
    assert _kinds(engine, card.slot_id) == [
        ("login-so", "CKR_OK"),
        ("logout-so", "CKR_OK"),
        ("login-user", "CKR_OK"),
        ("logout-user", "CKR_OK"),
    ]
    assert _verify(engine, card.slot_id, card.serial) == 4


def test_a_forked_child_does_not_write_its_parents_queue(tmp_path: Path) -> None:
    engine = _engine(tmp_path)
    card = engine.create_card("c", SO, PIN)
    who = audit.Who(card.slot_id, audit.SIGN, "01", "k", C.CKM_ECDSA)
    for _ in range(5):
        engine.audit.use(who, C.CKR_OK)
    pid = os.fork()
    if pid == 0:
        try:
            engine.audit.flush()  # what the parent queued is the parent's
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    assert _kinds(engine, card.slot_id) == [("sign", "CKR_OK")] * 5
    assert _verify(engine, card.slot_id, card.serial) == 5


def test_a_deleted_cards_log_goes_with_it(tmp_path: Path) -> None:
    engine = _engine(tmp_path)
    card = engine.create_card("c", SO, PIN)
    engine.login(card, False, PIN)
    assert _kinds(engine, card.slot_id) == [("login-user", "CKR_OK")]
    engine.delete_card(card.slot_id)
    assert audit.entries(engine.store, card.slot_id) == ([], None)


def test_another_device_key_cannot_vouch_for_the_head(tmp_path: Path) -> None:
    engine = _engine(tmp_path)
    card = engine.create_card("c", SO, PIN)
    engine.login(card, False, PIN)
    engine.audit.flush()
    foreign = _engine(tmp_path, "other.key")  # a new device key for the same store
    chain, head = audit.entries(foreign.store, card.slot_id)
    with pytest.raises(audit.AuditBroken) as broken:
        audit.verify(foreign.device_key, card.serial, chain, head)
    assert broken.value.seq == 1 and "not sealed on this device" in broken.value.reason
    assert audit.verify(engine.device_key, card.serial, chain, head) == 1


def test_a_full_journal_is_folded_as_one_block_that_stores_its_text_once(tmp_path: Path) -> None:
    engine = _engine(tmp_path)
    card = engine.create_card("c", SO, PIN)
    signer = audit.Who(card.slot_id, audit.SIGN, "01", "signing key", C.CKM_ECDSA)
    decrypter = audit.Who(card.slot_id, audit.DECRYPT, "02", "decryption key", C.CKM_RSA_PKCS)
    full = audit_journal.CAPACITY

    def rows() -> list[tuple[int, int, bytes]]:
        with engine.store.reading() as db:
            query = "SELECT first_seq, last_seq, block FROM audit WHERE card_id = ?"
            return [(first, last, bytes(block)) for first, last, block in db.execute(query, (card.slot_id,))]

    for i in range(full + 1):  # the use that finds the journal full folds it
        if i == full:
            assert rows() == []  # until then, every use is in the journal only
        engine.audit.use(decrypter if i % 3 == 0 else signer, C.CKR_OK if i % 5 else C.CKR_FUNCTION_FAILED)
    assert [(first, last) for first, last, _ in rows()] == [(1, full)]
    engine.audit.flush()
    assert [(first, last) for first, last, _ in rows()] == [(1, full), (full + 1, full + 1)]
    rows_ = rows()[:1]
    block = rows_[0][2]
    assert block.count(b"signing key") == 2 and block.count(b"decryption key") == 2  # once per result
    chain, _ = audit.entries(engine.store, card.slot_id)
    assert audit_store.unpack_block(block) == chain[:full]
    assert audit_store.block_of(chain[:full]) == block
    assert [e.seq for e in chain] == list(range(1, full + 2))
    assert (chain[0].key_label, chain[0].result) == ("decryption key", "CKR_FUNCTION_FAILED")
    assert (chain[1].key_label, chain[1].mechanism, chain[1].result) == ("signing key", "CKM_ECDSA", "CKR_OK")
    assert all(e.prev == p.hash for p, e in itertools.pairwise(chain))
    assert _verify(engine, card.slot_id, card.serial) == full + 1


def test_an_unreadable_block_is_reported_at_its_first_entry(tmp_path: Path) -> None:
    engine = _engine(tmp_path)
    card = engine.create_card("c", SO, PIN)
    engine.login(card, False, PIN)
    engine.login(card, False, PIN)
    engine.audit.flush()
    with engine.store.transaction() as db:
        db.execute("UPDATE audit SET block = substr(block, 1, 40) WHERE first_seq = 2")
    chain, _ = audit.entries(engine.store, card.slot_id)
    assert [e.seq for e in chain] == [1, 2] and chain[1].result == "(unreadable)"
    with pytest.raises(audit.AuditBroken) as broken:
        _verify(engine, card.slot_id, card.serial)
    assert broken.value.seq == 2
    engine.login(card, False, PIN)  # a writer after it starts from nothing it can read: the chain stays broken
    engine.audit.flush()
    with pytest.raises(audit.AuditBroken):
        _verify(engine, card.slot_id, card.serial)


def test_a_writer_rereads_the_chain_end_after_other_writes(tmp_path: Path) -> None:
    engine = _engine(tmp_path)
    other = _engine(tmp_path)  # another connection, as another process has
    card = engine.create_card("c", SO, PIN)
    for log in (engine.audit, other.audit, engine.audit, other.audit, engine.audit):  # each follows the other
        log.use(audit.Who(card.slot_id, audit.SIGN, "01", "k", C.CKM_ECDSA), C.CKR_OK)
        log.flush()
    assert _verify(engine, card.slot_id, card.serial) == 5
    # This connection's own change to the log (not an audit write) is seen too: no signing over a cut chain.
    with engine.store.transaction() as db:
        db.execute("DELETE FROM audit WHERE card_id = ? AND first_seq = 5", (card.slot_id,))
    engine.login(card, False, PIN)
    chain, head = audit.entries(engine.store, card.slot_id)
    assert [e.seq for e in chain] == [1, 2, 3, 4, 6] and head is not None and head.seq == 5
    with pytest.raises(audit.AuditBroken) as broken:
        _verify(engine, card.slot_id, card.serial)
    assert broken.value.seq == 5


def test_a_write_longer_than_a_block_is_split(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = _engine(tmp_path)
    card = engine.create_card("c", SO, PIN)
    monkeypatch.setattr(audit_writer, "MAX_BLOCK", 7)
    who = audit.Who(card.slot_id, audit.SIGN, "01", "k", C.CKM_ECDSA)
    for _ in range(20):
        engine.audit.pending.append((1_700_000_000_000_000_000, who, C.CKR_OK))
    engine.audit.flush()
    with engine.store.reading() as db:
        rows = db.execute("SELECT first_seq, last_seq FROM audit ORDER BY first_seq").fetchall()
    assert rows == [(1, 7), (8, 14), (15, 20)]
    assert _verify(engine, card.slot_id, card.serial) == 20
