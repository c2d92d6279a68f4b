"""A process taking HOTP codes from one card's key through the token engine for a given time after a go line
on stdin: prints one JSON line per code."""

from __future__ import annotations

import json
import sys
import time

from vsc_provider.token import access, otp_keys
from vsc_provider.token.engine import Engine


def main() -> None:
    name, seconds, pin = sys.argv[1], float(sys.argv[2]), sys.argv[3]
    engine = Engine()
    card = next(iter(engine.cards.values()))
    access.login(engine, card, pin.encode())
    key = otp_keys.find(card, name)
    print("ready", flush=True)
    sys.stdin.readline()  # both workers start together
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        code = otp_keys.code(engine, card, key)
        print(json.dumps({"code": code.code, "counter": code.moving_factor}), flush=True)


if __name__ == "__main__":
    main()
