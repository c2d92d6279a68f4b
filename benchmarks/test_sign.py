"""C_SignInit+C_Sign latency through python-pkcs11 for SoftHSM and vsc, and raw `cryptography` (the floor)."""

from __future__ import annotations

from typing import Any

import pytest

from benchmarks.cases import SIGN_CASES, SignCase
from benchmarks.common import IMPLS, describe


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("case", list(SIGN_CASES.values()), ids=lambda c: f"{c.kind}-{c.mech.replace(' ', '-')}")
def test_sign(benchmark: Any, case: SignCase, impl: str, sessions: dict[str, Any], raw_keys: dict[str, Any]) -> None:
    if impl == "raw":
        key = raw_keys[case.kind]
        describe(benchmark, case.op, "cryptography", impl)
        signature = benchmark(case.raw, key)
    else:
        import pkcs11

        key = sessions[impl].get_key(object_class=pkcs11.ObjectClass.PRIVATE_KEY, label=case.kind)
        try:
            case.pkcs11(key)
        except pkcs11.MechanismInvalid:
            pytest.skip(f"{impl} does not support {case.mech}")
        describe(benchmark, case.op, "python-pkcs11", impl)
        signature = benchmark(case.pkcs11, key)
    assert signature
