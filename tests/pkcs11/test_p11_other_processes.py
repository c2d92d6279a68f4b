"""What another process commits is seen at this process's next call, signing included: no reload point
to wait for. The other process is the real module in a second Python process, or the `vsc` command."""

from __future__ import annotations

import subprocess
import sys

import pkcs11
import pytest
from p11_support import USER_PIN, CardEnv, make_card, vsc
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass

P256 = bytes.fromhex("06082a8648ce3d030107")

OTHER = """
import sys
import pkcs11
from pkcs11 import Attribute, ObjectClass
lib = pkcs11.lib(sys.argv[1])
with lib.get_token(token_serial=sys.argv[2].encode()).open(rw=True, user_pin=sys.argv[3]) as s:
    key = s.get_key(ObjectClass.PRIVATE_KEY, label=sys.argv[4])
    if sys.argv[5] == "unsign":
        key[Attribute.SIGN] = False
    else:
        key.destroy()
"""


def _other(card_env: CardEnv, module_path: str, serial: str, label: str, action: str) -> None:
    env_args = [sys.executable, "-c", OTHER, module_path, serial, USER_PIN, label, action]
    subprocess.run(env_args, check=True, timeout=60, env={"VSC_HOME": str(card_env.home), "PATH": "/usr/bin:/bin"})


def test_changes_by_another_process_reach_the_next_signature(card_env: CardEnv, module_path: str) -> None:
    serial = make_card(card_env.home, "Shared card")
    token = card_env.token(serial)
    s = token.open(rw=True, user_pin=USER_PIN)
    keys = {}
    for label in ("a", "b"):
        _, keys[label] = s.generate_keypair(
            KeyType.EC, store=True, label=label, public_template={Attribute.EC_PARAMS: P256}
        )
        for _ in range(2):  # the second signature takes C_SignInit's prepared path
            assert keys[label].sign(b"data", mechanism=Mechanism.ECDSA_SHA256)

    _other(card_env, module_path, serial, "a", "unsign")
    with pytest.raises(pkcs11.PKCS11Error) as refused:
        keys["a"].sign(b"data", mechanism=Mechanism.ECDSA_SHA256)
    assert "0x68" in str(refused.value)  # CKR_KEY_FUNCTION_NOT_PERMITTED

    _other(card_env, module_path, serial, "b", "destroy")
    with pytest.raises(pkcs11.KeyHandleInvalid):
        keys["b"].sign(b"data", mechanism=Mechanism.ECDSA_SHA256)

    _, c = s.generate_keypair(KeyType.EC, store=True, label="c", public_template={Attribute.EC_PARAMS: P256})
    assert c.sign(b"data", mechanism=Mechanism.ECDSA_SHA256)
    vsc(card_env.home, "card", "delete", serial, "--yes")
    with pytest.raises(pkcs11.DeviceRemoved):
        c.sign(b"data", mechanism=Mechanism.ECDSA_SHA256)
    with pytest.raises(pkcs11.DeviceRemoved):
        s.close()  # python-pkcs11 logs out first: the card is gone
    assert not [t for t in card_env.lib.get_tokens() if t.serial == serial.encode()]


def test_a_key_made_by_another_process_is_found_at_once(card_env: CardEnv) -> None:
    token = card_env.token()
    with token.open(rw=True, user_pin=USER_PIN) as s:
        before = {k.label for k in s.get_objects({Attribute.CLASS: ObjectClass.PRIVATE_KEY})}
        vsc(card_env.home, "key", "generate", "--card", card_env.serial, "--type", "p256", "--label", "from cli",
            "--pin", USER_PIN)  # fmt: skip
        after = {k.label for k in s.get_objects({Attribute.CLASS: ObjectClass.PRIVATE_KEY})}
        assert after - before == {"from cli"}
