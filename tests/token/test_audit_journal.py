"""The audit journal (token/audit_journal.py) under the writer, on a real store and real files: its modes,
exactly-once folding whoever folds, a torn record, threads, an ended process's journal, a store folder where
no journal can be made, and a file that is not a journal."""

from __future__ import annotations

import os
import sqlite3
import stat
import threading
from pathlib import Path
from typing import Any

import pytest

from vsc_provider.ck import constants as C
from vsc_provider.token import audit, audit_journal
from vsc_provider.token.engine import Engine

PIN = b"482915"
SO = b"19283746"


def _engine(root: Path) -> Engine:
    return Engine(root / "store.sqlite", root / "device.key")


def _signs(engine: Engine, card_id: int) -> list[audit.Entry]:
    chain, head = audit.entries(engine.store, card_id)
    with engine.store.reading() as db:
        serial = engine.store.card_serial(db, card_id)
    assert serial is not None
    assert audit.verify(engine.device_key, serial, chain, head) == len(chain)
    return [e for e in chain if e.kind == audit.SIGN]


def _journals(root: Path) -> list[Path]:
    return sorted((root / "store.sqlite-audit").glob("*.journal"))


def test_the_journal_is_private_and_holds_uses_until_folded(tmp_path: Path) -> None:
    engine = _engine(tmp_path)
    card = engine.create_card("c", SO, PIN)
    who = audit.Who(card.slot_id, audit.SIGN, "01", "k", C.CKM_ECDSA)
    for _ in range(10):
        engine.audit.use(who, C.CKR_OK)
    [journal] = _journals(tmp_path)
    assert stat.S_IMODE(journal.stat().st_mode) == 0o600
    assert stat.S_IMODE(journal.parent.stat().st_mode) == 0o700
    assert journal.name.startswith(f"{os.getpid()}-")
    assert _signs(engine, card.slot_id) == []  # not folded yet
    engine.audit.flush()
    assert len(_signs(engine, card.slot_id)) == 10
    engine.audit.close()
    assert _journals(tmp_path) == []  # everything folded: deleted


def test_another_process_folds_a_live_journal_and_each_entry_is_folded_once(tmp_path: Path) -> None:
    engine = _engine(tmp_path)
    reader = _engine(tmp_path)  # another connection and writer, as `vsc audit list` in another process
    card = engine.create_card("c", SO, PIN)
    who = audit.Who(card.slot_id, audit.SIGN, "01", "k", C.CKM_ECDSA)
    for _ in range(7):
        engine.audit.use(who, C.CKR_OK)
    reader.audit.flush()
    assert len(_signs(reader, card.slot_id)) == 7
    for _ in range(3):
        engine.audit.use(who, C.CKR_OK)
    engine.audit.flush()
    reader.audit.flush()
    signs = _signs(engine, card.slot_id)
    assert [e.seq for e in signs] == list(range(1, 11))
    assert len(_journals(tmp_path)) == 1  # the writer's own: it still lives


def test_a_torn_record_stops_the_fold_until_it_is_written(tmp_path: Path) -> None:
    engine = _engine(tmp_path)
    card = engine.create_card("c", SO, PIN)
    who = audit.Who(card.slot_id, audit.SIGN, "01", "k", C.CKM_ECDSA)
    for _ in range(20):
        engine.audit.use(who, C.CKR_OK)
    journal = engine.audit._journal
    assert journal is not None
    slot = audit_journal.ENTRIES + 16 * 12
    journal.map[slot] = 0  # as if the process were still writing entry 13 (its mark comes last)
    engine.audit.flush()
    assert len(_signs(engine, card.slot_id)) == 12
    journal.map[slot] = 1
    engine.audit.flush()
    assert [e.seq for e in _signs(engine, card.slot_id)] == list(range(1, 21))


def test_threads_using_keys_at_once_lose_no_entry(tmp_path: Path) -> None:
    engine = _engine(tmp_path)
    card = engine.create_card("c", SO, PIN)
    per_thread = audit_journal.CAPACITY  # four threads fill and fold journals while the others write
    keys = [audit.Who(card.slot_id, audit.SIGN, f"0{i}", f"k{i}", C.CKM_ECDSA) for i in range(4)]

    def work(who: audit.Who) -> None:
        for i in range(per_thread):
            engine.audit.use(who, C.CKR_OK if i % 100 else C.CKR_FUNCTION_FAILED)

    threads = [threading.Thread(target=work, args=(who,)) for who in keys]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    engine.audit.flush()
    signs = _signs(engine, card.slot_id)
    assert len(signs) == 4 * per_thread
    for i in range(4):
        mine = [e for e in signs if e.key_label == f"k{i}"]
        assert len(mine) == per_thread
        assert sum(e.result == "CKR_FUNCTION_FAILED" for e in mine) == per_thread // 100 + 1
    engine.audit.close()
    assert _journals(tmp_path) == []


def test_the_journal_of_an_ended_process_is_folded_by_the_next_and_deleted(tmp_path: Path) -> None:
    engine = _engine(tmp_path)
    card = engine.create_card("c", SO, PIN)
    who = audit.Who(card.slot_id, audit.SIGN, "01", "k", C.CKM_ECDSA)
    engine.audit.use(who, C.CKR_OK)  # the parent's own journal, before the fork
    pid = os.fork()
    if pid == 0:
        try:
            child = _engine(tmp_path)
            for _ in range(5):
                child.audit.use(audit.Who(card.slot_id, audit.DECRYPT, "02", "d", C.CKM_RSA_PKCS), C.CKR_OK)
            engine.audit.use(who, C.CKR_OK)  # the inherited log writes a journal of the child's own
        finally:
            os._exit(0)  # as SIGKILL: no exit handlers, nothing folded
    os.waitpid(pid, 0)
    child_journals = [p for p in _journals(tmp_path) if p.name.startswith(f"{pid}-")]
    assert len(child_journals) == 2
    engine.audit.flush()
    chain, _ = audit.entries(engine.store, card.slot_id)
    assert sorted((e.kind, e.origin.endswith(f"[{pid}]")) for e in chain) == [
        ("decrypt", True),
        ("decrypt", True),
        ("decrypt", True),
        ("decrypt", True),
        ("decrypt", True),
        ("sign", False),
        ("sign", True),
    ]
    assert not any(p.name.startswith(f"{pid}-") for p in _journals(tmp_path))
    assert len(_signs(engine, card.slot_id)) == 2


def test_without_a_journal_uses_wait_in_memory(tmp_path: Path) -> None:
    engine = _engine(tmp_path)
    card = engine.create_card("c", SO, PIN)
    (tmp_path / "store.sqlite-audit").write_text("not a folder")  # no journal can be made there
    who = audit.Who(card.slot_id, audit.SIGN, "01", "k", C.CKM_ECDSA)
    for _ in range(5):
        engine.audit.use(who, C.CKR_OK)
    assert len(engine.audit.pending) == 5
    engine.audit.flush()
    assert len(_signs(engine, card.slot_id)) == 5


def test_a_file_that_is_not_a_journal_is_left_out_and_the_rest_is_folded(tmp_path: Path) -> None:
    engine = _engine(tmp_path)
    card = engine.create_card("c", SO, PIN)
    folder = tmp_path / "store.sqlite-audit"
    folder.mkdir(mode=0o700)
    bad = folder / "1-bad.journal"
    bad.write_bytes(os.urandom(audit_journal.SIZE))
    for _ in range(3):
        engine.audit.use(audit.Who(card.slot_id, audit.SIGN, "01", "k", C.CKM_ECDSA), C.CKR_OK)
    engine.audit.flush()
    assert len(_signs(engine, card.slot_id)) == 3
    assert bad.exists()  # kept for whoever looks into it


def test_a_hole_left_by_a_killed_thread_does_not_hide_the_entries_after_it(tmp_path: Path) -> None:
    engine = _engine(tmp_path)
    card = engine.create_card("c", SO, PIN)
    pid = os.fork()
    if pid == 0:
        try:
            child = _engine(tmp_path)
            for _ in range(10):
                child.audit.use(audit.Who(card.slot_id, audit.SIGN, "01", "k", C.CKM_ECDSA), C.CKR_OK)
            journal = child.audit._journal
            assert journal is not None
            journal.map[audit_journal.ENTRIES + 16 * 3] = 0  # a thread killed before it marked its slot
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    engine.audit.flush()
    assert len(_signs(engine, card.slot_id)) == 9
    assert _journals(tmp_path) == []


def test_a_journal_that_fails_does_not_fail_the_key_use(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = _engine(tmp_path)
    card = engine.create_card("c", SO, PIN)

    def broken(self: audit_journal.Journal, d: audit_journal.Description) -> int:
        raise RuntimeError("a bug in the journal")

    monkeypatch.setattr(audit_journal.Journal, "describe", broken)
    engine.audit.use(audit.Who(card.slot_id, audit.SIGN, "01", "k", C.CKM_ECDSA), C.CKR_OK)  # no exception
    assert len(engine.audit.pending) == 1
    engine.audit.flush()
    assert len(_signs(engine, card.slot_id)) == 1


def test_a_failed_commit_leaves_no_gap_in_the_chain(tmp_path: Path) -> None:
    engine = _engine(tmp_path)
    card = engine.create_card("c", SO, PIN)
    engine.audit.event(card.slot_id, "login-user")
    real = engine.store._db

    class FullDisk:
        """The store's connection, whose next COMMIT fails as on a full disk (then it works again)."""

        def __init__(self) -> None:
            self.fail = True

        def execute(self, sql: str, *args: Any) -> Any:
            if sql == "COMMIT" and self.fail:
                self.fail = False
                raise sqlite3.OperationalError("database or disk is full")
            return real.execute(sql, *args)

        def __getattr__(self, name: str) -> Any:
            return getattr(real, name)

    engine.store._db = FullDisk()  # type: ignore[assignment]
    engine.audit.event(card.slot_id, "logout-user")  # not written: kept in memory
    engine.audit.event(card.slot_id, "login-user")  # written with it, after entry 1, not after a rolled-back 2
    engine.store._db = real
    chain, head = audit.entries(engine.store, card.slot_id)
    assert [(e.seq, e.kind) for e in chain] == [(1, "login-user"), (2, "logout-user"), (3, "login-user")]
    assert audit.verify(engine.device_key, card.serial, chain, head) == 3


def test_a_fifo_or_a_folder_named_like_a_journal_neither_hangs_nor_stops_the_folds(tmp_path: Path) -> None:
    engine = _engine(tmp_path)
    card = engine.create_card("c", SO, PIN)
    folder = tmp_path / "store.sqlite-audit"
    folder.mkdir(mode=0o700)
    os.mkfifo(folder / "1-fifo.journal")  # opening it for reading would wait for a writer forever
    (folder / "2-folder.journal").mkdir()
    (folder / "3-short.journal").write_bytes(b"vscaudj\x01")
    who = audit.Who(card.slot_id, audit.SIGN, "01", "k", C.CKM_ECDSA)
    done = threading.Event()

    def fold() -> None:
        for _ in range(3):
            engine.audit.use(who, C.CKR_OK)
        engine.audit.flush()
        engine.audit.event(card.slot_id, "login-user")
        done.set()

    worker = threading.Thread(target=fold, daemon=True)
    worker.start()
    worker.join(timeout=30)
    assert done.is_set(), "the fold hangs on a file that is not a journal"
    assert len(_signs(engine, card.slot_id)) == 3
    engine.audit.close()
    assert sorted(p.name for p in folder.iterdir()) == ["1-fifo.journal", "2-folder.journal", "3-short.journal"]


def test_a_journal_without_room_for_another_description_keeps_the_rest_in_memory(tmp_path: Path) -> None:
    engine = _engine(tmp_path)
    card = engine.create_card("c", SO, PIN)
    label = "a long label " * 40  # cut to MAX_TEXT characters in the journal
    kinds = 200  # more descriptions than the journal has room for
    for i in range(kinds):
        engine.audit.use(audit.Who(card.slot_id, audit.SIGN, f"{i:04x}", label, C.CKM_ECDSA), C.CKR_OK)
    assert engine.audit.pending  # the uses the journal had no room for
    assert engine.audit._retired == []  # the journal is not given up for it: its slots stay in use
    engine.audit.use(audit.Who(card.slot_id, audit.SIGN, "0000", label, C.CKM_ECDSA), C.CKR_OK)
    assert len(_journals(tmp_path)) == 1
    engine.audit.flush()
    signs = _signs(engine, card.slot_id)
    assert len(signs) == kinds + 1
    assert {len(e.key_label) for e in signs} == {audit_journal.MAX_TEXT, len(label)}


def test_close_keeps_a_journal_whose_taken_slot_is_not_written_yet(tmp_path: Path) -> None:
    engine = _engine(tmp_path)
    card = engine.create_card("c", SO, PIN)
    who = audit.Who(card.slot_id, audit.SIGN, "01", "k", C.CKM_ECDSA)
    engine.audit.use(who, C.CKR_OK)
    journal = engine.audit._journal
    assert journal is not None
    next(journal.slots)  # another thread took a slot and has not written it yet
    for _ in range(5):
        engine.audit.use(who, C.CKR_OK)
    engine.audit.close()  # C_Finalize meanwhile: the entries after the hole are not folded, so the file stays
    assert len(_journals(tmp_path)) == 1
    engine.audit.use(who, C.CKR_OK)  # a use after close starts a new journal, it does not fail
    later = _engine(tmp_path)  # the next process, once this one has closed its journals
    engine.audit.close()
    later.audit.flush()
    assert len(_signs(later, card.slot_id)) == 7


def test_a_forked_child_never_folds_through_its_parents_connection(tmp_path: Path) -> None:
    engine = _engine(tmp_path)
    card = engine.create_card("c", SO, PIN)
    who = audit.Who(card.slot_id, audit.SIGN, "01", "k", C.CKM_ECDSA)
    engine.audit.use(who, C.CKR_OK)
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            engine.store.audit_transaction = lambda *_: os._exit(3)  # type: ignore[method-assign]
            for _ in range(4):
                engine.audit.use(who, C.CKR_OK)
            engine.audit.flush()
            engine.audit.close()
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert [p for p in _journals(tmp_path) if p.name.startswith(f"{pid}-")]  # left for the next fold
    engine.audit.flush()
    assert len(_signs(engine, card.slot_id)) == 5
