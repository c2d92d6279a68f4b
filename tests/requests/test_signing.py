"""What the card signs to approve a request, for each alg and format, made by real card keys through the card
service and verified independently with `cryptography` (checks.py)."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from asn1crypto import cms as a_cms
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.conftest import SO_PIN, USER_PIN
from tests.requests.checks import verify_jws, verify_signature
from tests.requests.standin import make_cert
from vsc_provider import api
from vsc_provider.ck import constants as C
from vsc_provider.ck.params import Mechanism
from vsc_provider.provisioning import wire
from vsc_provider.requests import signing
from vsc_provider.requests.model import PendingRequest, RequestError
from vsc_provider.token import service

KEY_OF_ALG = {"RS256": "rsa2048", "RS512": "rsa2048", "PS256": "rsa2048", "ES256": "p256", "ES384": "p384"}
DATA = b"the contract, version 3"


class CardKeys:
    def __init__(self, serial: str) -> None:
        self.serial = serial
        self.ids: dict[str, bytes] = {}
        for kind in ("rsa2048", "p256", "p384"):
            made = api.generate_key(serial, kind, kind, USER_PIN)
            self.ids[kind] = bytes.fromhex(made[0].id)

    def public(self, kind: str) -> Any:
        card = api.find_card(self.serial)
        obj = service.with_key_id(card, self.ids[kind], C.CKO_PUBLIC_KEY)[0]
        return serialization.load_der_public_key(obj.attrs[C.CKA_PUBLIC_KEY_INFO])

    def signer(self, kind: str) -> Callable[[Mechanism, bytes], bytes]:
        card = api.find_card(self.serial)

        def sign(mechanism: Mechanism, data: bytes) -> bytes:
            with api.session(card, pin=USER_PIN):
                return service.sign(api.engine(), card, self.ids[kind], mechanism, data)

        return sign


@pytest.fixture
def keys(vsc_home: Path) -> Iterator[CardKeys]:
    info = api.create_card("Signer", USER_PIN, SO_PIN)
    yield CardKeys(info.serial)


def request(kind: str = "sign", alg: str = "ES256", fmt: str = "jws", **doc: Any) -> PendingRequest:
    document = {"id": "r9", "iss": "https://idp.example", "kind": kind, "alg": alg, "key": "sign", **doc}
    return PendingRequest(
        id="r9",
        card="S",
        card_label="C",
        kind=kind,  # type: ignore[arg-type]
        rp="Shop",
        alg=alg,
        format=fmt,  # type: ignore[arg-type]
        metadata=(),
        expires=time.time() + 60,
        display_hash=wire.b64u(hashlib.sha256(b"payload").digest()),
        document=document,
    )


@pytest.mark.parametrize("alg", sorted(KEY_OF_ALG))
def test_sign_jws_over_the_data_verifies_for_each_alg(keys: CardKeys, alg: str) -> None:
    kind = KEY_OF_ALG[alg]
    r = request(alg=alg, data=wire.b64u(DATA))
    compact = signing.answer_signature(r, keys.signer(kind), b"", time.time())
    header, payload = verify_jws(compact, keys.public(kind))
    assert header == {"alg": alg, "vsc_request": "r9", "vsc_display": r.display_hash}
    assert payload == DATA
    # another key of the same type does not verify it: the check above is not vacuous
    other = api.generate_key(keys.serial, kind, "other", USER_PIN)
    card = api.find_card(keys.serial)
    obj = service.with_key_id(card, bytes.fromhex(other[0].id), C.CKO_PUBLIC_KEY)[0]
    with pytest.raises(InvalidSignature):
        verify_jws(compact, serialization.load_der_public_key(obj.attrs[C.CKA_PUBLIC_KEY_INFO]))


@pytest.mark.parametrize("alg", ["RS256", "PS256", "ES384"])
def test_auth_jws_binds_request_challenge_display_hash_and_audience(keys: CardKeys, alg: str) -> None:
    kind = KEY_OF_ALG[alg]
    r = request(kind="auth", alg=alg, challenge="Y2hhbGxlbmdl")
    before = int(time.time())
    compact = signing.answer_signature(r, keys.signer(kind), b"", time.time())
    header, payload = verify_jws(compact, keys.public(kind))
    claims = json.loads(payload)
    assert header == {"alg": alg}
    assert claims["typ"] == "vsc-auth" and claims["request"] == "r9" and claims["challenge"] == "Y2hhbGxlbmdl"
    assert claims["display_hash"] == r.display_hash and claims["aud"] == "https://idp.example"
    assert before <= claims["iat"] <= time.time()


def signed_attrs(digest: bytes, hash_name: str) -> bytes:
    """DER signed attributes (SET OF), built here with asn1crypto as any CMS encoder would."""
    attrs = a_cms.CMSAttributes(
        [
            {"type": "content_type", "values": ["data"]},
            {"type": "message_digest", "values": [digest]},
        ]
    )
    return bytes(attrs.dump())


@pytest.mark.parametrize(
    ("alg", "hash_name"),
    [
        ("RS256", "sha256"),
        ("RS512", "sha512"),
        ("PS256", "sha256"),
        ("ES256", "sha256"),
        ("ES384", "sha384"),
    ],
)
def test_cms_signature_over_signed_attributes_verifies_with_the_digest_algorithm(
    keys: CardKeys, alg: str, hash_name: str
) -> None:
    kind = KEY_OF_ALG[alg]
    attrs = signed_attrs(hashlib.new(hash_name, DATA).digest(), hash_name)
    signature = signing.cms_signature(alg, hash_name, attrs, keys.signer(kind))
    verify_signature(keys.public(kind), alg, signature, attrs, hash_name, der_ecdsa=True)
    with pytest.raises(InvalidSignature):
        verify_signature(keys.public(kind), alg, signature, attrs + b"\x00", hash_name, der_ecdsa=True)


def test_cms_digest_is_the_rps_hash_or_the_algs_hash_of_the_data() -> None:
    digest = hashlib.sha384(DATA).digest()
    assert signing.cms_hash(request(alg="ES384", fmt="cms", hash=wire.b64u(digest))) == ("sha384", digest)
    assert signing.cms_hash(request(alg="RS512", fmt="cms", data=wire.b64u(DATA))) == (
        "sha512",
        hashlib.sha512(DATA).digest(),
    )
    # a hash of another algorithm than the alg signs with, or no digest at all, is refused
    with pytest.raises(RequestError, match="not a sha256 digest, as ES256 signs"):
        signing.cms_hash(request(fmt="cms", hash=wire.b64u(digest)))
    with pytest.raises(RequestError, match="not a sha256 digest"):
        signing.cms_hash(request(fmt="cms", hash=wire.b64u(b"short")))
    with pytest.raises(RequestError, match="neither"):
        signing.cms_hash(request(fmt="cms"))


def test_a_jws_needs_the_data(keys: CardKeys) -> None:
    r = request(hash=wire.b64u(hashlib.sha256(DATA).digest()))
    with pytest.raises(RequestError, match="needs the data"):
        signing.answer_signature(r, keys.signer("p256"), b"", time.time())


@pytest.mark.skipif(
    importlib.util.find_spec("vsc_provider.provisioning.cms") is None,
    reason="provisioning/cms.py (the shared CMS encoder) is built on the server branch",
)
@pytest.mark.parametrize("alg", ["RS256", "ES256"])
def test_detached_cms_carries_the_certificate_and_verifies(keys: CardKeys, alg: str) -> None:
    kind = KEY_OF_ALG[alg]
    card = api.find_card(keys.serial)
    ca = ec.generate_private_key(ec.SECP256R1())
    cert = make_cert("alice", "CA", ca, keys.public(kind)).public_bytes(serialization.Encoding.DER)
    r = request(alg=alg, fmt="cms", data=wire.b64u(DATA))
    der = wire.unb64u(signing.answer_signature(r, keys.signer(kind), cert, time.time()))
    info = a_cms.ContentInfo.load(der)
    signed = info["content"]
    assert signed["encap_content_info"]["content"].native is None  # detached
    assert signed["certificates"][0].chosen.dump() == cert
    signer = signed["signer_infos"][0]
    attrs = signer["signed_attrs"]
    digest = next(a["values"][0].native for a in attrs if a["type"].native == "message_digest")
    assert digest == hashlib.sha256(DATA).digest()
    der_attrs = b"\x31" + attrs.dump()[1:]
    verify_signature(keys.public(kind), alg, signer["signature"].native, der_attrs, "sha256", der_ecdsa=True)
    assert card.serial == keys.serial
