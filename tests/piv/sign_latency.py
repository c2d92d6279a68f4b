"""Run as a program: sign N times with the key of CKA_ID 01 through a PKCS#11 module (python-pkcs11), print
`<median microseconds per signature> <signature hex>` of the last one. One module per process: python-pkcs11
loads one library at a time."""

from __future__ import annotations

import statistics
import sys
import time

import pkcs11
from pkcs11 import Attribute, Mechanism, ObjectClass


def main() -> None:
    module_path, token_label, pin, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    lib = pkcs11.lib(module_path)
    token = lib.get_token(token_label=token_label)
    data = b"PIV latency"
    with token.open(user_pin=pin) as session:
        key = next(session.get_objects({Attribute.CLASS: ObjectClass.PRIVATE_KEY, Attribute.ID: b"\x01"}))
        times = []
        sig = b""
        for _ in range(count):
            start = time.perf_counter()
            sig = key.sign(data, mechanism=Mechanism.SHA256_RSA_PKCS)
            times.append(time.perf_counter() - start)
    print(f"{statistics.median(times) * 1e6:.0f} {sig.hex()}")


if __name__ == "__main__":
    main()
