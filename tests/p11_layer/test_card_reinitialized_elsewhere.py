"""C_InitToken in another process gives the card a new data key; this process, still logged in, kept the
old one and sealed new key material under it: keys that no process could ever decrypt again (and that
this one used happily until logout)."""

from __future__ import annotations

from vsc_provider.ck import attributes as A
from vsc_provider.ck import constants as C
from vsc_provider.ck.params import Mechanism
from vsc_provider.pkcs11 import objects, signing
from vsc_provider.pkcs11.state import LIB
from vsc_provider.token.engine import Engine

from .conftest import PIN, SO_PIN, Env, rsa_pair, rv


def test_login_ends_when_another_process_reinitializes_the_card(env: Env) -> None:
    h = env.session()
    other = Engine()
    other.reinitialize(other.cards[env.slot], SO_PIN, "fresh")
    # The next write that would seal key material under the old data key is refused...
    assert rv(rsa_pair, h, {C.CKA_TOKEN: A.TRUE}) == C.CKR_USER_NOT_LOGGED_IN
    # ...and once this process has seen the change, it is logged out.
    objects.find_objects_init(h, [])
    objects.find_objects_final(h)
    assert not LIB.sessions[h].card.user
    assert rv(signing.sign_init, h, Mechanism(C.CKM_SHA256_RSA_PKCS), 1) in (
        C.CKR_KEY_HANDLE_INVALID,
        C.CKR_USER_NOT_LOGGED_IN,
    )


def test_a_pin_check_that_sees_a_reinitialized_card_drops_the_old_data_key(env: Env) -> None:
    """C_Login(CKU_CONTEXT_SPECIFIC) reads the card's record: if another process re-initialised the card
    (and gave it a new user PIN), the data key held here is the old one and must go."""
    here = Engine()
    card = here.cards[env.slot]
    here.login(card, False, PIN)
    assert card.data_key is not None
    other = Engine()
    theirs = other.cards[env.slot]
    other.reinitialize(theirs, SO_PIN, "fresh")
    other.login(other.cards[env.slot], True, SO_PIN)
    other.set_user_pin(other.cards[env.slot], b"593017")
    here.verify_pin(card, False, b"593017")
    assert card.data_key is None and not card.user
