"""A card deleted by another process: C_CloseSession and C_CloseAllSessions answered CKR_DEVICE_REMOVED /
CKR_SLOT_ID_INVALID and kept the session for ever, with its session objects (plaintext key material of
session keys) still referenced from it."""

from __future__ import annotations

from vsc_provider.ck import attributes as A
from vsc_provider.ck import constants as C
from vsc_provider.ck.params import Mechanism
from vsc_provider.pkcs11 import keys, sessions, slots
from vsc_provider.pkcs11.state import LIB
from vsc_provider.token.engine import Engine

from .conftest import Env, rv


def _delete_elsewhere(env: Env) -> None:
    Engine().delete_card(env.slot)  # another process's engine on the same store
    assert env.slot not in slots.get_slot_list(True)  # this process notices


def test_close_session_of_a_deleted_card_closes_it(env: Env) -> None:
    h = env.session()
    keys.generate_key(h, Mechanism(C.CKM_AES_KEY_GEN), [(C.CKA_VALUE_LEN, A.encode(C.CKA_VALUE_LEN, 32))])
    card = LIB.sessions[h].card
    _delete_elsewhere(env)
    assert rv(sessions.get_session_info, h) == C.CKR_DEVICE_REMOVED
    sessions.close_session(h)
    assert h not in LIB.sessions
    assert not card.session_objects
    assert rv(sessions.close_session, h) == C.CKR_SESSION_HANDLE_INVALID


def test_close_all_sessions_of_a_deleted_card_closes_them(env: Env) -> None:
    handles = [env.session(login=False) for _ in range(3)]
    _delete_elsewhere(env)
    sessions.close_all_sessions(env.slot)
    assert not any(h in LIB.sessions for h in handles)
    assert rv(sessions.close_all_sessions, env.slot) == C.CKR_SLOT_ID_INVALID
