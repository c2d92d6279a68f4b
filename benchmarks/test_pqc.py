"""Post-quantum rows: ML-DSA-65 sign/verify and ML-KEM-768 encapsulate/decapsulate, vsc through python-pkcs11
against raw `cryptography` (SoftHSM 2.6 has neither: its cells read n/a).

Measured like test_sign.py: rounds spread over the run, vsc and raw back to back in each, a figure is the
best round's median. The keys are session keys made on the card for the run.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cryptography.hazmat.primitives.asymmetric import mldsa, mlkem

from benchmarks.cases import MESSAGE
from benchmarks.common import ROUNDS, median_us, python_client, report_rounds, smoke

SIGN = "sign ML-DSA-65 ML_DSA"
VERIFY = "verify ML-DSA-65 ML_DSA"
ENCAPSULATE = "encapsulate ML-KEM-768 (C_EncapsulateKey: secret key object)"
DECAPSULATE = "decapsulate ML-KEM-768 (C_DecapsulateKey: secret key object)"


def test_pqc(benchmark: Any, sessions: dict[str, Any]) -> None:
    import pkcs11
    from pkcs11 import Attribute, KeyType
    from pkcs11.mechanisms import MLDSAParameterSet, MLKEMParameterSet

    session = sessions["vsc"]
    dsa_pub, dsa_priv = session.generate_keypair(
        KeyType.ML_DSA, public_template={Attribute.PARAMETER_SET: MLDSAParameterSet.ML_DSA_65}
    )
    kem_pub, kem_priv = session.generate_keypair(
        KeyType.ML_KEM, public_template={Attribute.PARAMETER_SET: MLKEMParameterSet.ML_KEM_768}
    )
    raw_dsa = mldsa.MLDSA65PrivateKey.generate()
    raw_kem = mlkem.MLKEM768PrivateKey.generate()
    signature = dsa_priv.sign(MESSAGE)
    raw_signature = raw_dsa.sign(MESSAGE)
    ciphertext, _ = kem_pub.encapsulate_key(KeyType.GENERIC_SECRET)
    _, raw_ciphertext = raw_kem.public_key().encapsulate()
    made: list[Any] = []  # the secret key objects each KEM call creates, destroyed between rounds

    def encapsulate() -> bytes:
        ct, key = kem_pub.encapsulate_key(KeyType.GENERIC_SECRET)
        made.append(key)
        return bytes(ct)

    def decapsulate() -> bytes:
        made.append(kem_priv.decapsulate_key(ciphertext, KeyType.GENERIC_SECRET))
        return b"ok"

    def verify() -> bytes:
        assert dsa_pub.verify(MESSAGE, signature)
        return b"ok"

    def raw_verify() -> bytes:
        raw_dsa.public_key().verify(raw_signature, MESSAGE)
        return b"ok"

    calls: dict[tuple[str, str], Callable[[], bytes]] = {
        (SIGN, "vsc"): lambda: bytes(dsa_priv.sign(MESSAGE)),
        (SIGN, "raw"): lambda: raw_dsa.sign(MESSAGE),
        (VERIFY, "vsc"): verify,
        (VERIFY, "raw"): raw_verify,
        (ENCAPSULATE, "vsc"): encapsulate,
        (ENCAPSULATE, "raw"): lambda: raw_kem.public_key().encapsulate()[1],
        (DECAPSULATE, "vsc"): decapsulate,
        (DECAPSULATE, "raw"): lambda: raw_kem.decapsulate(raw_ciphertext),
    }
    rounds = 1 if smoke(benchmark) else ROUNDS
    iterations = 2 if smoke(benchmark) else 200
    figures: dict[tuple[str, str], list[float]] = {}

    def run() -> None:
        for _ in range(rounds):
            for (op, impl), call in calls.items():
                figures.setdefault((op, impl), []).append(median_us(call, iterations))
                for key in made:
                    key.destroy()
                made.clear()

    try:
        benchmark.pedantic(run, rounds=1)
    finally:
        for obj in (dsa_pub, dsa_priv, kem_pub, kem_priv):
            try:
                obj.destroy()
            except pkcs11.PKCS11Error:
                pass
    report_rounds(benchmark, figures, python_client)
