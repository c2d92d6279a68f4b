"""Identity metadata: the JWK and PEM that `vsc card show --json` and `vsc key export-public` print are the key
the PKCS#11 module signs with. A JWS is signed through python-pkcs11 and verified with jwcrypto against the
JWK, and with `cryptography` against the PEM; thumbprints are recomputed here from RFC 7638's rules."""

from __future__ import annotations

import hashlib
import json
from base64 import urlsafe_b64encode
from typing import Any

import pkcs11
import pytest
from asn1crypto.algos import DSASignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from jwcrypto import jwk, jws
from p11_support import USER_PIN, CardEnv, public_key_of, vsc
from pkcs11 import Attribute, Mechanism, ObjectClass

KINDS = {  # vsc key type: (JWS alg, PKCS#11 mechanism)
    "p256": ("ES256", Mechanism.ECDSA_SHA256),
    "p384": ("ES384", Mechanism.ECDSA_SHA384),
    "rsa2048": ("RS256", Mechanism.SHA256_RSA_PKCS),
    "ed25519": ("EdDSA", Mechanism.EDDSA),
}
# RFC 7638 section 3.2: the required members of each key type, in lexicographic order.
REQUIRED = {"EC": ("crv", "kty", "x", "y"), "RSA": ("e", "kty", "n"), "OKP": ("crv", "kty", "x")}


def b64u(data: bytes) -> str:
    return urlsafe_b64encode(data).rstrip(b"=").decode()


def rfc7638_thumbprint(key: dict[str, Any]) -> str:
    members = {name: key[name] for name in REQUIRED[key["kty"]]}
    return b64u(hashlib.sha256(json.dumps(members, separators=(",", ":"), sort_keys=True).encode()).digest())


@pytest.fixture(scope="module")
def shown(card_env: CardEnv) -> dict[str, Any]:
    for kind in KINDS:
        vsc(
            card_env.home,
            "key",
            "generate",
            "--card",
            card_env.serial,
            "--type",
            kind,
            "--label",
            kind,
            "--pin",
            USER_PIN,
        )
    return dict(json.loads(vsc(card_env.home, "card", "show", card_env.serial, "--json").stdout))


# key_info's usage names, in its order, as python-pkcs11 names the attributes
USAGES = (
    ("sign", Attribute.SIGN),
    ("verify", Attribute.VERIFY),
    ("sign-recover", Attribute.SIGN_RECOVER),
    ("verify-recover", Attribute.VERIFY_RECOVER),
    ("encrypt", Attribute.ENCRYPT),
    ("decrypt", Attribute.DECRYPT),
    ("wrap", Attribute.WRAP),
    ("unwrap", Attribute.UNWRAP),
    ("derive", Attribute.DERIVE),
)


def usages_of(*objs: Any) -> list[str]:
    """The usages the module reports for a key's objects (an attribute a class lacks counts as false)."""

    def has(obj: Any, attr: Attribute) -> bool:
        try:
            return bool(obj[attr])
        except pkcs11.AttributeTypeInvalid:
            return False

    return [name for name, attr in USAGES if any(has(o, attr) for o in objs)]


def both_halves(card_env: CardEnv) -> dict[str, list[str]]:
    data = json.loads(vsc(card_env.home, "card", "show", card_env.serial, "--pin", USER_PIN, "--json").stdout)
    return {k["label"]: k["usages"] for k in data["keys"]}


def verify_with_pem(pem: str, alg: str, signature: bytes, data: bytes) -> None:
    key = serialization.load_pem_public_key(pem.encode())
    if isinstance(key, ec.EllipticCurvePublicKey):
        digest = hashes.SHA256() if alg == "ES256" else hashes.SHA384()
        key.verify(DSASignature.from_p1363(signature).dump(), data, ec.ECDSA(digest))
    elif isinstance(key, rsa.RSAPublicKey):
        key.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
    else:
        assert isinstance(key, ed25519.Ed25519PublicKey)
        key.verify(signature, data)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_jwk_and_pem_verify_a_signature_made_through_the_module(card_env: CardEnv, shown: dict[str, Any], kind: str):
    alg, mechanism = KINDS[kind]
    entry = next(k for k in shown["keys"] if k["label"] == kind)
    key_id = bytes.fromhex(entry["id"])
    assert entry["jwk"]["kid"] == entry["id"]
    assert entry["jwk_thumbprint"] == rfc7638_thumbprint(entry["jwk"])
    assert "d" not in entry["jwk"] and "p" not in entry["jwk"]  # public members only

    header = b64u(json.dumps({"alg": alg, "kid": entry["id"]}).encode())
    payload = b64u(b'{"hello":"card"}')
    signing_input = f"{header}.{payload}".encode()
    with card_env.token().open(user_pin=USER_PIN) as session:
        priv = session.get_key(object_class=ObjectClass.PRIVATE_KEY, id=key_id)
        signature = priv.sign(signing_input, mechanism=mechanism)
        pub = session.get_key(object_class=ObjectClass.PUBLIC_KEY, id=key_id)
        module_key = public_key_of(pub)
        assert pub[Attribute.LABEL] == kind
        # Without the PIN only the public half's usages are shown; with it, both halves'.
        assert entry["usages"] == usages_of(pub)
        assert both_halves(card_env)[kind] == usages_of(pub, priv)

    # The module's public key object is the exported key.
    exported = serialization.load_pem_public_key(entry["pem"].encode())
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    assert exported.public_bytes(serialization.Encoding.DER, spki) == module_key.public_bytes(
        serialization.Encoding.DER, spki
    )
    assert jwk.JWK.from_pyca(module_key).thumbprint() == entry["jwk_thumbprint"]

    verify_with_pem(entry["pem"], alg, signature, signing_input)
    token = jws.JWS()
    token.deserialize(f"{header}.{payload}.{b64u(signature)}")
    token.verify(jwk.JWK(**entry["jwk"]))
    assert token.payload == b'{"hello":"card"}'
    # A changed payload does not verify against the same JWK.
    forged = jws.JWS()
    forged.deserialize(f"{header}.{b64u(b'{}')}.{b64u(signature)}")
    with pytest.raises(jws.InvalidJWSSignature):
        forged.verify(jwk.JWK(**entry["jwk"]))

    # export-public gives the same key in every format, by label and by hex id.
    assert vsc(card_env.home, "key", "export-public", card_env.serial, kind).stdout == entry["pem"]
    as_jwk = json.loads(
        vsc(card_env.home, "key", "export-public", card_env.serial, entry["id"], "--format", "jwk").stdout
    )
    assert as_jwk == entry["jwk"]
    der = card_env.home / f"{kind}.der"
    vsc(card_env.home, "key", "export-public", card_env.serial, kind, "--format", "der", "--out", str(der))
    assert der.read_bytes() == module_key.public_bytes(serialization.Encoding.DER, spki)


def test_usages_with_the_pin_include_the_private_half(card_env: CardEnv, shown: dict[str, Any]):
    usages = both_halves(card_env)
    assert {"sign", "verify"} <= set(usages["p256"]) and "sign" not in next(
        k["usages"] for k in shown["keys"] if k["label"] == "p256"
    )
    assert {"sign", "verify", "encrypt", "decrypt"} <= set(usages["rsa2048"])
    assert shown["binding"] is None  # a local card


def test_export_public_errors_are_one_line(card_env: CardEnv, shown: dict[str, Any]):
    missing = vsc(card_env.home, "key", "export-public", card_env.serial, "nope", check=False)
    assert missing.returncode != 0 and "no public key 'nope'" in missing.stderr and "Traceback" not in missing.stderr
    bad = vsc(card_env.home, "key", "export-public", card_env.serial, "p256", "--format", "xml", check=False)
    assert bad.returncode != 0 and "Traceback" not in bad.stderr
    nocard = vsc(card_env.home, "key", "export-public", "no-such-card", "p256", check=False)
    assert nocard.returncode != 0 and "no card" in nocard.stderr and "Traceback" not in nocard.stderr


def test_export_public_refuses_an_ambiguous_label(card_env: CardEnv, shown: dict[str, Any]):
    for _ in range(2):
        vsc(card_env.home, "key", "generate", "--card", card_env.serial, "--type", "p256", "--label", "twice",
            "--pin", USER_PIN)  # fmt: skip
    both = vsc(card_env.home, "key", "export-public", card_env.serial, "twice", check=False)
    assert both.returncode != 0 and "several keys are labelled 'twice'" in both.stderr
    with card_env.token().open() as session:
        ids = [
            k[Attribute.ID].hex()
            for k in session.get_objects({Attribute.LABEL: "twice", Attribute.CLASS: ObjectClass.PUBLIC_KEY})
        ]
    assert len(ids) == 2
    for key_id in ids:
        one = vsc(card_env.home, "key", "export-public", card_env.serial, key_id, "--format", "jwk").stdout
        assert json.loads(one)["kid"] == key_id
