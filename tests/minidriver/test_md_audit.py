"""The card edge's PIN events in the card's audit log (read with `vsc audit list`): the admin role's
challenge-response (CardGetChallenge, CardAuthenticateChallenge) recorded as a login with its result, the try
that blocks it and the tries after, the admin key set or changed, and the user's deauthentication as a logout;
`vsc audit verify` still passes."""

from __future__ import annotations

import json
from typing import Any

import pytest
from conftest import COMPAT_PIN, COMPAT_SO_PIN, EdgeEnv
from p11_support import vsc

from vsc_provider.minidriver import admin_key, auth
from vsc_provider.minidriver import errors as E

ROLE_USER = 1
KEY = bytes(range(31, 55))


def _respond(key: bytes, challenge: bytes) -> bytes:
    from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
    from cryptography.hazmat.primitives.ciphers import Cipher, modes

    encryptor = Cipher(TripleDES(key), modes.ECB()).encryptor()
    return encryptor.update(challenge) + encryptor.finalize()


def _entries(edge: EdgeEnv, serial: str) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = json.loads(vsc(edge.home, "audit", "list", "--card", serial, "--json").stdout)[
        "entries"
    ]
    return entries


def _card_with_admin_key(edge: EdgeEnv, label: str) -> tuple[str, Any]:
    """A compatible-policy card (its serial) and a card-edge context on it whose admin key is KEY."""
    out = vsc(
        edge.home, "card", "create", "--label", label, "--pin", COMPAT_PIN, "--so-pin", COMPAT_SO_PIN,
        "--policy", "compatible", "--json",
    )  # fmt: skip
    serial = str(json.loads(out.stdout)["serial"])
    ctx = edge.context(serial)
    admin_key.set_admin_key(ctx, COMPAT_SO_PIN.encode(), KEY)
    return serial, ctx


def test_admin_challenges_and_the_users_deauthentication_are_recorded(edge: EdgeEnv) -> None:
    serial, ctx = _card_with_admin_key(edge, "Edge audit")
    auth.authenticate_challenge(ctx, _respond(KEY, auth.get_challenge(ctx)))
    tries = ctx.card.policy.pin.max_tries
    results = []
    for _ in range(tries + 1):  # wrong until blocked, and once more
        challenge = auth.get_challenge(ctx)
        with pytest.raises(E.MinidriverError) as refused:
            auth.authenticate_challenge(ctx, _respond(bytes(24), challenge))
        results.append(refused.value.code)
    assert results == [E.SCARD_W_WRONG_CHV] * (tries - 1) + [E.SCARD_W_CHV_BLOCKED] * 2
    auth.authenticate_ex(ctx, ROLE_USER, 0, COMPAT_PIN.encode())
    auth.deauthenticate_ex(ctx, 1 << ROLE_USER)  # CardDeauthenticateEx: the user's login ends

    kinds = [(e["kind"], e["result"]) for e in _entries(edge, serial)]
    assert kinds == [
        ("login-so", "CKR_OK"),  # the SO PIN that sets the admin key
        ("pin-change-admin-key", "CKR_OK"),
        ("login-admin-challenge", "CKR_OK"),
        *[("login-admin-challenge", "CKR_PIN_INCORRECT")] * (tries - 1),
        ("login-admin-challenge", "CKR_PIN_LOCKED"),  # the try that blocks
        ("block-admin-challenge", "CKR_OK"),
        ("login-admin-challenge", "CKR_PIN_LOCKED"),  # refused while blocked
        ("login-user", "CKR_OK"),
        ("logout-user", "CKR_OK"),
    ]
    assert "verified" in vsc(edge.home, "audit", "verify", "--card", serial).stdout


def test_an_unblock_by_the_admin_challenge_is_recorded_as_a_reset(edge: EdgeEnv) -> None:
    serial, ctx = _card_with_admin_key(edge, "Edge reset")
    response = _respond(KEY, auth.get_challenge(ctx))
    auth.unblock_pin(ctx, "user", response, b"6666", 0, auth.CARD_AUTHENTICATE_PIN_CHALLENGE_RESPONSE)
    kinds = [(e["kind"], e["result"]) for e in _entries(edge, serial)]
    assert kinds[-2:] == [("login-admin-challenge", "CKR_OK"), ("pin-reset-user", "CKR_OK")]
    assert "verified" in vsc(edge.home, "audit", "verify", "--card", serial).stdout
