"""Verify, RSA-OAEP decrypt and C_GenerateKeyPair (session objects) for SoftHSM, vsc and raw `cryptography`."""

from __future__ import annotations

from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from benchmarks.cases import MESSAGE
from benchmarks.common import IMPLS, describe

HASHES = {"SHA-1": (hashes.SHA1, "SHA1"), "SHA-256": (hashes.SHA256, "SHA256")}


def _keys(session: Any, kind: str) -> tuple[Any, Any]:
    import pkcs11

    O = pkcs11.ObjectClass
    return session.get_key(object_class=O.PRIVATE_KEY, label=kind), session.get_key(
        object_class=O.PUBLIC_KEY, label=kind
    )


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("kind", ["rsa2048", "p256"])
def test_verify(benchmark: Any, kind: str, impl: str, sessions: dict[str, Any], raw_keys: dict[str, Any]) -> None:
    op = "verify RSA-2048 SHA256_RSA_PKCS" if kind == "rsa2048" else "verify P-256 ECDSA (SHA-256 digest)"
    if impl == "raw":
        public = raw_keys[kind].public_key()
        if kind == "rsa2048":
            sig = raw_keys[kind].sign(MESSAGE, padding.PKCS1v15(), hashes.SHA256())
            describe(benchmark, op, "cryptography", impl)
            benchmark(public.verify, sig, MESSAGE, padding.PKCS1v15(), hashes.SHA256())
        else:
            sig = raw_keys[kind].sign(MESSAGE, ec.ECDSA(hashes.SHA256()))
            describe(benchmark, op, "cryptography", impl)
            benchmark(public.verify, sig, MESSAGE, ec.ECDSA(hashes.SHA256()))
        return
    import hashlib

    import pkcs11

    private, public = _keys(sessions[impl], kind)
    mech = pkcs11.Mechanism.SHA256_RSA_PKCS if kind == "rsa2048" else pkcs11.Mechanism.ECDSA
    data = MESSAGE if kind == "rsa2048" else hashlib.sha256(MESSAGE).digest()
    sig = private.sign(data, mechanism=mech)
    describe(benchmark, op, "python-pkcs11", impl)
    assert benchmark(public.verify, data, sig, mechanism=mech)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("hash_name", list(HASHES))
def test_decrypt_oaep(
    benchmark: Any, hash_name: str, impl: str, sessions: dict[str, Any], raw_keys: dict[str, Any]
) -> None:
    op = f"decrypt RSA-2048 RSA_PKCS_OAEP {hash_name}"
    hash_cls, pkcs11_name = HASHES[hash_name]
    oaep = padding.OAEP(mgf=padding.MGF1(hash_cls()), algorithm=hash_cls(), label=None)
    if impl == "raw":
        key = raw_keys["rsa2048"]
        ciphertext = key.public_key().encrypt(b"session key " * 2, oaep)
        describe(benchmark, op, "cryptography", impl)
        benchmark(key.decrypt, ciphertext, oaep)
        return
    import pkcs11

    private, public = _keys(sessions[impl], "rsa2048")
    n = int.from_bytes(public[pkcs11.Attribute.MODULUS], "big")
    e = int.from_bytes(public[pkcs11.Attribute.PUBLIC_EXPONENT], "big")
    ciphertext = rsa.RSAPublicNumbers(e, n).public_key().encrypt(b"session key " * 2, oaep)
    param = (pkcs11.Mechanism["SHA_1" if pkcs11_name == "SHA1" else pkcs11_name], pkcs11.MGF[pkcs11_name], None)
    try:
        private.decrypt(ciphertext, mechanism=pkcs11.Mechanism.RSA_PKCS_OAEP, mechanism_param=param)
    except (pkcs11.MechanismInvalid, pkcs11.MechanismParamInvalid, pkcs11.ArgumentsBad):
        pytest.skip(f"{impl} does not support OAEP with {hash_name}")
    describe(benchmark, op, "python-pkcs11", impl)
    plain = benchmark(private.decrypt, ciphertext, mechanism=pkcs11.Mechanism.RSA_PKCS_OAEP, mechanism_param=param)
    assert plain == b"session key " * 2


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("kind", ["rsa2048", "p256"])
def test_generate_keypair(benchmark: Any, kind: str, impl: str, sessions: dict[str, Any]) -> None:
    op = f"C_GenerateKeyPair {'RSA-2048' if kind == 'rsa2048' else 'P-256'} (ms)"
    rounds = 1 if getattr(benchmark, "disabled", False) else (8 if kind == "rsa2048" else 50)
    if impl == "raw":
        describe(benchmark, op, "cryptography", impl, unit="ms")
        if kind == "rsa2048":
            benchmark.pedantic(rsa.generate_private_key, args=(65537, 2048), rounds=rounds)
        else:
            benchmark.pedantic(ec.generate_private_key, args=(ec.SECP256R1(),), rounds=rounds)
        return
    import pkcs11
    from pkcs11.util.ec import encode_named_curve_parameters

    session = sessions[impl]
    if kind == "rsa2048":

        def generate() -> None:
            public, private = session.generate_keypair(pkcs11.KeyType.RSA, 2048, store=False)
            public.destroy()
            private.destroy()

    else:
        params = session.create_domain_parameters(
            pkcs11.KeyType.EC, {pkcs11.Attribute.EC_PARAMS: encode_named_curve_parameters("secp256r1")}, local=True
        )

        def generate() -> None:
            public, private = params.generate_keypair(store=False)
            public.destroy()
            private.destroy()

    describe(benchmark, op, "python-pkcs11", impl, unit="ms")
    benchmark.pedantic(generate, rounds=rounds)
