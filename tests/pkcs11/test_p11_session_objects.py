"""Session objects and token objects created, copied and destroyed in each session state, as the spec's
session-state tables say (a strict card: private objects only after the user logged in)."""

from __future__ import annotations

import ctypes

import pytest
from p11_support import SO_PIN, USER_PIN, CardEnv, RawModule, make_template, ulong

from vsc_provider.ck import constants as C

TRUE, FALSE = b"\x01", b"\x00"


def _data_template(token: bool, private: bool) -> list[tuple[int, bytes]]:
    return [
        (C.CKA_CLASS, ulong(C.CKO_DATA)),
        (C.CKA_TOKEN, TRUE if token else FALSE),
        (C.CKA_PRIVATE, TRUE if private else FALSE),
        (C.CKA_VALUE, b"x"),
    ]


# (session state, token object, private object) -> expected CKR for create, copy and destroy
TABLE = {
    ("ro_public", False, False): C.CKR_OK,
    ("ro_public", False, True): C.CKR_USER_NOT_LOGGED_IN,
    ("ro_public", True, False): C.CKR_SESSION_READ_ONLY,
    ("ro_public", True, True): C.CKR_SESSION_READ_ONLY,
    ("rw_public", False, False): C.CKR_OK,
    ("rw_public", False, True): C.CKR_USER_NOT_LOGGED_IN,
    ("rw_public", True, False): C.CKR_OK,
    ("rw_public", True, True): C.CKR_USER_NOT_LOGGED_IN,
    ("ro_user", False, False): C.CKR_OK,
    ("ro_user", False, True): C.CKR_OK,
    ("ro_user", True, False): C.CKR_SESSION_READ_ONLY,
    ("ro_user", True, True): C.CKR_SESSION_READ_ONLY,
    ("rw_user", False, False): C.CKR_OK,
    ("rw_user", False, True): C.CKR_OK,
    ("rw_user", True, False): C.CKR_OK,
    ("rw_user", True, True): C.CKR_OK,
    ("rw_so", False, False): C.CKR_OK,
    ("rw_so", False, True): C.CKR_USER_NOT_LOGGED_IN,
    ("rw_so", True, False): C.CKR_OK,
    ("rw_so", True, True): C.CKR_USER_NOT_LOGGED_IN,
}


@pytest.mark.parametrize("state", ["ro_public", "rw_public", "ro_user", "rw_user", "rw_so"])
def test_session_objects_follow_the_session_state_tables(card_env: CardEnv, module_path: str, state: str) -> None:
    raw = RawModule(module_path)
    slot = int(card_env.slot().slot_id)
    assert raw.C_CloseAllSessions(slot) == C.CKR_OK
    h = raw.open(slot, rw=state.startswith("rw"))
    if not state.endswith("so"):
        raw.open(slot, rw=False)  # keeps the login when `h` closes below (closing the last session logs out)
    if state.endswith("user"):
        assert raw.login(h, USER_PIN) == C.CKR_OK
    elif state.endswith("so"):
        assert raw.login(h, SO_PIN, C.CKU_SO) == C.CKR_OK
    try:
        for (st, token, private), expected in TABLE.items():
            if st != state:
                continue
            pairs = _data_template(token, private)
            attrs, keep = make_template(pairs)
            obj = ctypes.c_ulong()
            rv = raw.C_CreateObject(h, attrs, len(pairs), ctypes.byref(obj))
            assert rv == expected, (state, token, private, "create", hex(rv))
            if rv == C.CKR_OK:
                copy = ctypes.c_ulong()
                assert raw.C_CopyObject(h, obj.value, None, 0, ctypes.byref(copy)) == C.CKR_OK
                assert raw.C_DestroyObject(h, copy.value) == C.CKR_OK
                assert raw.C_DestroyObject(h, obj.value) == C.CKR_OK
            if token or expected != C.CKR_OK or state.endswith("so"):
                continue
            # A session object stays valid until destroyed or its session closes.
            assert raw.C_CreateObject(h, attrs, len(pairs), ctypes.byref(obj)) == C.CKR_OK
            buf = (C.CKA_LABEL, b"")
            label_attrs, keep_label = make_template([buf])
            assert raw.C_GetAttributeValue(h, obj.value, label_attrs, 1) == C.CKR_OK
            assert raw.C_CloseSession(h) == C.CKR_OK
            h = raw.open(slot, rw=state.startswith("rw"))
            assert raw.C_GetAttributeValue(h, obj.value, label_attrs, 1) == C.CKR_OBJECT_HANDLE_INVALID
            del keep, keep_label
    finally:
        raw.C_CloseAllSessions(slot)
