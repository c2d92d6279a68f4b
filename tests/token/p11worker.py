"""A separate process that uses the built PKCS#11 module through python-pkcs11, driven by the tests.

Usage: p11worker.py MODULE COMMAND [ARGS...]; it prints one JSON line per result and flushes.
"""

from __future__ import annotations

import json
import os
import sys
import time

import pkcs11
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from pkcs11.exceptions import PKCS11Error


def out(**data: object) -> None:
    print(json.dumps(data), flush=True)


def wait_for(path: str, limit: float = 30.0) -> None:
    deadline = time.monotonic() + limit
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise SystemExit("gave up waiting for " + path)
        time.sleep(0.005)


def main() -> None:
    lib = pkcs11.lib(sys.argv[1])
    command = sys.argv[2]
    if command == "watch":
        # Report slots, then after each line on stdin report slots again and sign with a named key.
        out(slots=[s.slot_id for s in lib.get_slots(token_present=True)])
        for line in sys.stdin:
            label, pin = line.split()
            slots = lib.get_slots(token_present=True)
            result: dict[str, object] = {"slots": [s.slot_id for s in slots]}
            for slot in slots:
                with slot.get_token().open(user_pin=pin) as session:
                    keys = list(session.get_objects({Attribute.CLASS: ObjectClass.PRIVATE_KEY, Attribute.LABEL: label}))
                    if keys:
                        result["signature"] = (
                            keys[0].sign(b"from another process", mechanism=Mechanism.ECDSA_SHA256).hex()
                        )
            out(**result)
    elif command == "guess":
        token = lib.get_slots(token_present=True)[0].get_token()
        wait_for(sys.argv[4])
        try:
            token.open(user_pin=sys.argv[3]).close()
            out(result="OK")
        except PKCS11Error as exc:
            out(result=type(exc).__name__)
    elif command == "churn":
        # Generate key pairs, import private keys and write data objects forever; print each committed round.
        from cryptography.hazmat.primitives.asymmetric import ec
        from pkcs11.util.ec import encode_named_curve_parameters

        p256 = encode_named_curve_parameters("secp256r1")
        token = lib.get_slots(token_present=True)[0].get_token()
        with token.open(rw=True, user_pin=sys.argv[3]) as session:
            n = 0
            while True:
                n += 1
                _pub, priv = session.generate_keypair(KeyType.RSA, 2048, store=True, label=f"churn-{n}")
                imported = ec.generate_private_key(ec.SECP256R1()).private_numbers().private_value
                session.create_object(
                    {
                        Attribute.CLASS: ObjectClass.PRIVATE_KEY,
                        Attribute.KEY_TYPE: KeyType.EC,
                        Attribute.TOKEN: True,
                        Attribute.LABEL: f"imp-{n}",
                        Attribute.EC_PARAMS: p256,
                        Attribute.VALUE: imported.to_bytes(32, "big"),
                        Attribute.SIGN: True,
                    }
                )
                data = session.create_object(
                    {
                        Attribute.CLASS: ObjectClass.DATA,
                        Attribute.TOKEN: True,
                        Attribute.LABEL: f"d-{n}",
                        Attribute.VALUE: b"x" * 2000,
                    }
                )
                out(key=priv.label, imported=f"imp-{n}", data=n, handle=getattr(data, "handle", 0))


if __name__ == "__main__":
    main()
