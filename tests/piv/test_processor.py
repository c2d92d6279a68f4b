"""The PIV card application answered APDU by APDU, byte for byte where the answer is fixed (SELECT, GET DATA,
VERIFY's counters), and checked with `cryptography` where it is a signature or a key."""

from __future__ import annotations

import hashlib
import os
import time

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from piv_support import PIN, SO_PIN, PivHome

from vsc_provider.ck import constants as C
from vsc_provider.piv import objects as O
from vsc_provider.piv import tlv
from vsc_provider.piv.processor import PivCard
from vsc_provider.token import service

SELECT = bytes.fromhex("00A4040009A00000030800001000")


def pin_field(pin: str) -> bytes:
    return pin.encode().ljust(8, b"\xff")


def apdu(cla: int, ins: int, p1: int, p2: int, data: bytes = b"", le: int | None = None) -> bytes:
    out = bytes([cla, ins, p1, p2])
    if data:
        out += bytes([len(data)]) + data if len(data) < 256 else b"\x00" + len(data).to_bytes(2, "big") + data
    if le is not None:
        out += bytes([le & 0xFF])
    return out


def ok(resp: bytes) -> bytes:
    assert resp[-2:] == b"\x90\x00", resp[-2:].hex()
    return resp[:-2]


def whole(card: PivCard, resp: bytes) -> bytes:
    """A response with the rest of it fetched by GET RESPONSE while the card says 61xx."""
    out = resp[:-2]
    while resp[-2] == 0x61:
        resp = card.process(bytes([0x00, 0xC0, 0x00, 0x00, resp[-1]]))
        out += resp[:-2]
    return out + ok(resp[-2:])


def inner(card: PivCard, resp: bytes, tag: int = 0x7C) -> dict[int, bytes]:
    return tlv.as_dict(tlv.as_dict(whole(card, resp))[tag])


@pytest.fixture
def card(piv_home: PivHome) -> PivCard:
    engine = piv_home.engine()
    piv = PivCard(engine, piv_home.card(engine).slot_id)
    ok(piv.process(SELECT))
    return piv


def test_select_answers_the_application_property_template(card: PivCard) -> None:
    expected = (
        "6133"
        "4F06000010000100"
        "79074F05A000000308"
        "500F" + b"vsc virtual PIV".hex() + "AC0F800107800105800111800114060100"
        "9000"
    )
    assert card.process(SELECT).hex().upper() == expected.upper()
    assert card.process(bytes.fromhex("00A4040007A0000005272101")) == b"\x6a\x82"  # another application


def test_get_data_of_discovery_chuid_ccc_key_history(card: PivCard, piv_home: PivHome) -> None:
    discovery = card.process(bytes.fromhex("00CB3FFF035C017E00"))
    assert discovery.hex().upper() == "7E124F0BA0000003080000100001005F2F0240009000"
    guid = O.card_guid(piv_home.serial)
    chuid = ok(card.process(bytes.fromhex("00CB3FFF055C035FC10200")))
    assert chuid == bytes.fromhex(
        "533B3019D4E739DA739CED39CE739D836858210842108421C84210C3EB3410"
        + guid.hex()
        + "3508"
        + b"20991231".hex()
        + "3E00FE00"
    )
    ccc = ok(card.process(bytes.fromhex("00CB3FFF055C035FC10700")))
    assert ccc[:4] == bytes.fromhex("5333F015") and ccc[4:11] == bytes.fromhex("A000000116FF02")
    assert ccc[11:25] == guid[:14]
    assert ok(card.process(bytes.fromhex("00CB3FFF055C035FC10C00"))) == bytes.fromhex("5308C10100C20100FE00")
    assert card.process(bytes.fromhex("00CB3FFF055C035FC10900")) == b"\x6a\x82"  # printed information


def test_certificate_objects_come_in_parts_by_get_response(card: PivCard, piv_home: PivHome) -> None:
    first = card.process(bytes.fromhex("00CB3FFF055C035FC10500"))
    assert first[-2] == 0x61 and len(first) == 258
    whole = first[:-2]
    resp = first
    while resp[-2] == 0x61:
        resp = card.process(bytes([0x00, 0xC0, 0x00, 0x00, resp[-1]]))
        whole += resp[:-2]
    assert resp[-2:] == b"\x90\x00"
    der = tlv.as_dict(tlv.as_dict(whole)[0x53])[0x70]
    assert der == piv_home.certificates[0x9A].public_bytes(serialization.Encoding.DER)
    # an extended Le takes it in one answer
    extended = card.process(bytes.fromhex("00CB3FFF00000" + "55C035FC1050000"))
    assert ok(extended) == whole


def test_verify_counts_down_blocks_and_the_puk_resets(card: PivCard) -> None:
    status = bytes.fromhex("0020008000")[:4]
    assert card.process(status) == b"\x63\xca"
    wrong = apdu(0, 0x20, 0, 0x80, pin_field("111111"))
    assert card.process(wrong) == b"\x63\xc9"
    assert card.process(status) == b"\x63\xc9"
    assert card.process(apdu(0, 0x20, 0, 0x80, pin_field(PIN))) == b"\x90\x00"
    assert card.process(status) == b"\x90\x00"
    assert card.process(bytes.fromhex("0020FF80")) == b"\x90\x00"  # security status reset
    assert card.process(status) == b"\x63\xca"  # the right PIN cleared the counter
    answers = []
    while len(answers) < 10:
        resp = card.process(wrong)
        if resp == b"\x69\x85":  # a waiting period between wrong tries: nothing counted
            continue
        answers.append(resp.hex())
    assert answers == [f"63c{n:x}" for n in range(9, 0, -1)] + ["6983"]
    assert card.process(apdu(0, 0x20, 0, 0x80, pin_field(PIN))) == b"\x69\x83"
    assert card.process(status) == b"\x69\x83"
    # RESET RETRY COUNTER with the PUK (the SO PIN): a wrong PUK counts down, the right one sets a new PIN
    assert card.process(apdu(0, 0x2C, 0, 0x80, pin_field("11111111") + pin_field("246810"))) == b"\x63\xc9"
    assert card.process(apdu(0, 0x2C, 0, 0x80, pin_field(SO_PIN) + pin_field("246810"))) == b"\x90\x00"
    assert card.process(apdu(0, 0x20, 0, 0x80, pin_field("246810"))) == b"\x90\x00"
    # CHANGE REFERENCE DATA: old and new
    assert card.process(apdu(0, 0x24, 0, 0x80, pin_field("000000") + pin_field(PIN))) == b"\x63\xc9"
    assert card.process(apdu(0, 0x24, 0, 0x80, pin_field("246810") + pin_field(PIN))) == b"\x90\x00"
    assert card.process(bytes.fromhex("0020FF80")) == b"\x90\x00"
    assert card.process(apdu(0, 0x20, 0, 0x80, pin_field(PIN))) == b"\x90\x00"


def test_bad_apdus_get_status_words(card: PivCard) -> None:
    assert card.process(b"\x00\xa4") == b"\x67\x00"
    assert card.process(bytes.fromhex("00A4040009A000")) == b"\x67\x00"  # Lc longer than the data
    assert card.process(bytes.fromhex("80CB3FFF00")) == b"\x6e\x00"
    assert card.process(bytes.fromhex("00FE000000")) == b"\x6d\x00"
    assert card.process(bytes.fromhex("00CB3FFF015C")) == b"\x6a\x80"
    assert card.process(apdu(0, 0x20, 0, 0x80, b"\x31\x32")) == b"\x6a\x80"  # not 8 bytes
    assert card.process(bytes.fromhex("00C0000000")) == b"\x69\x85"  # nothing to get
    assert card.process(bytes.fromhex("0047009A04AC028000")) == b"\x6a\x80"  # an empty algorithm
    assert card.process(bytes.fromhex("0087119C047C028200")) == b"\x6a\x80"  # neither 81 nor 85


def _sign(card: PivCard, alg: int, slot: int, block: bytes) -> bytes:
    body = tlv.tlv(0x7C, tlv.tlv(0x82) + tlv.tlv(0x81, block))
    return inner(card, card.process(apdu(0, 0x87, alg, slot, body, 0)))[0x82]


def test_general_authenticate_signs_after_verify(card: PivCard, piv_home: PivHome) -> None:
    digest = hashlib.sha256(b"PIV").digest()
    body = tlv.tlv(0x7C, tlv.tlv(0x82) + tlv.tlv(0x81, digest))
    assert card.process(apdu(0, 0x87, O.ALG_P256, 0x9C, body, 0)) == b"\x69\x82"  # no PIN yet
    ok(card.process(apdu(0, 0x20, 0, 0x80, pin_field(PIN))))
    assert card.process(apdu(0, 0x87, O.ALG_P384, 0x9C, body, 0)) == b"\x6a\x86"  # not the slot's algorithm
    sig = _sign(card, O.ALG_P256, 0x9C, digest)
    piv_home.certificates[0x9C].public_key().verify(sig, digest, ec.ECDSA(Prehashed(hashes.SHA256())))  # type: ignore[call-arg]
    # RSA: the client pads; the card does the raw private operation (the 256-byte block, chained in two)
    public = piv_home.certificates[0x9A].public_key()
    assert isinstance(public, rsa.RSAPublicKey)
    digest_info = bytes.fromhex("3031300d060960864801650304020105000420") + digest
    block = b"\x00\x01" + b"\xff" * (256 - 3 - len(digest_info)) + b"\x00" + digest_info
    body = tlv.tlv(0x7C, tlv.tlv(0x82) + tlv.tlv(0x81, block))
    assert card.process(apdu(0x10, 0x87, O.ALG_RSA_2048, 0x9A, body[:200])) == b"\x90\x00"
    resp = card.process(apdu(0x00, 0x87, O.ALG_RSA_2048, 0x9A, body[200:], 0))
    sig = inner(card, resp)[0x82]
    public.verify(sig, b"PIV", padding.PKCS1v15(), hashes.SHA256())


def test_ecdh_with_the_key_management_key(card: PivCard, piv_home: PivHome) -> None:
    ok(card.process(apdu(0, 0x20, 0, 0x80, pin_field(PIN))))
    peer = ec.generate_private_key(ec.SECP256R1())
    point = peer.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    body = tlv.tlv(0x7C, tlv.tlv(0x82) + tlv.tlv(0x85, point))
    secret = inner(card, card.process(apdu(0, 0x87, O.ALG_P256, 0x9D, body, 0)))[0x82]
    mine = piv_home.certificates[0x9D].public_key()
    assert isinstance(mine, ec.EllipticCurvePublicKey)
    assert secret == peer.exchange(ec.ECDH(), mine)


def _admin(card: PivCard, piv_home: PivHome) -> None:
    """Mutual authentication with the management key (AES-192 here)."""
    key = piv_home.management_key
    alg = key.algorithm
    witness = inner(card, card.process(apdu(0, 0x87, alg, 0x9B, tlv.tlv(0x7C, tlv.tlv(0x80)), 0)))[0x80]
    dec = Cipher(algorithms.AES(key.key), modes.ECB()).decryptor()
    plain = dec.update(witness) + dec.finalize()
    challenge = os.urandom(16)
    body = tlv.tlv(0x7C, tlv.tlv(0x80, plain) + tlv.tlv(0x81, challenge))
    answer = inner(card, card.process(apdu(0, 0x87, alg, 0x9B, body, 0)))[0x82]
    enc = Cipher(algorithms.AES(key.key), modes.ECB()).encryptor()
    assert answer == enc.update(challenge) + enc.finalize()


def test_management_key_guards_generate_and_put_data(card: PivCard, piv_home: PivHome) -> None:
    gen = apdu(0, 0x47, 0, 0x9E, bytes.fromhex("AC03800111"), 0)
    assert card.process(gen) == b"\x69\x82"
    # a wrong witness
    key = piv_home.management_key
    ok(card.process(apdu(0, 0x87, key.algorithm, 0x9B, tlv.tlv(0x7C, tlv.tlv(0x80)), 0)))
    body = tlv.tlv(0x7C, tlv.tlv(0x80, bytes(16)) + tlv.tlv(0x81, bytes(16)))
    assert card.process(apdu(0, 0x87, key.algorithm, 0x9B, body, 0)) == b"\x69\x82"
    assert card.process(gen) == b"\x69\x82"
    _admin(card, piv_home)
    point = inner(card, card.process(gen), 0x7F49)[0x86]
    assert len(point) == 65 and point[0] == 4
    # the new key is a PKCS#11 key pair with the slot's CKA_ID, and it signs through PIV
    engine = card.session.engine
    pubs = service.with_key_id(piv_home.card(engine), b"\x04", C.CKO_PUBLIC_KEY)
    assert len(pubs) == 1
    public = serialization.load_der_public_key(pubs[0].attrs[C.CKA_PUBLIC_KEY_INFO])
    assert isinstance(public, ec.EllipticCurvePublicKey)
    assert public.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint) == point
    # a certificate for it through PUT DATA (chained), then read back
    from piv_support import self_signed

    other = ec.generate_private_key(ec.SECP256R1())
    der = self_signed(other, "put data").public_bytes(serialization.Encoding.DER)
    body = tlv.tlv(0x5C, bytes.fromhex("5FC101")) + tlv.tlv(0x53, O.certificate_object(der))
    assert card.process(apdu(0x10, 0xDB, 0x3F, 0xFF, body[:100])) == b"\x90\x00"
    assert card.process(apdu(0x00, 0xDB, 0x3F, 0xFF, body[100:])) == b"\x90\x00"
    read = bytearray()
    resp = card.process(bytes.fromhex("00CB3FFF055C035FC10100"))
    while True:
        read += resp[:-2]
        if resp[-2] != 0x61:
            break
        resp = card.process(bytes([0, 0xC0, 0, 0, resp[-1]]))
    assert tlv.as_dict(tlv.as_dict(bytes(read))[0x53])[0x70] == der
    # not a certificate
    bad = tlv.tlv(0x5C, bytes.fromhex("5FC101")) + tlv.tlv(0x53, tlv.tlv(0x70, b"junk"))
    assert card.process(apdu(0, 0xDB, 0x3F, 0xFF, bad)) == b"\x6a\x80"
    # after a reset (power off) the management key must be proved again
    card.reset()
    ok(card.process(SELECT))
    assert card.process(gen) == b"\x69\x82"


def test_p384_signs_and_rsa_3072_is_generated_and_signs_by_extended_apdus(card: PivCard, piv_home: PivHome) -> None:
    ok(card.process(apdu(0, 0x20, 0, 0x80, pin_field(PIN))))
    digest = hashlib.sha384(b"PIV").digest()
    sig = _sign(card, O.ALG_P384, 0x9E, digest)
    piv_home.certificates[0x9E].public_key().verify(sig, digest, ec.ECDSA(Prehashed(hashes.SHA384())))  # type: ignore[call-arg]
    _admin(card, piv_home)
    resp = card.process(bytes.fromhex("0047009A05AC0380010500"))
    fields = inner(card, resp, 0x7F49)
    public = rsa.RSAPublicNumbers(int.from_bytes(fields[0x82], "big"), int.from_bytes(fields[0x81], "big")).public_key()
    assert public.key_size == 3072
    digest_info = bytes.fromhex("3031300d060960864801650304020105000420") + hashlib.sha256(b"3072").digest()
    block = b"\x00\x01" + b"\xff" * (384 - 3 - len(digest_info)) + b"\x00" + digest_info
    body = tlv.tlv(0x7C, tlv.tlv(0x82) + tlv.tlv(0x81, block))
    extended = bytes([0, 0x87, O.ALG_RSA_3072, 0x9A, 0]) + len(body).to_bytes(2, "big") + body + b"\x00\x00"
    sig = inner(card, card.process(extended))[0x82]
    public.verify(sig, b"3072", padding.PKCS1v15(), hashes.SHA256())


def test_vpcd_control_messages(card: PivCard) -> None:
    from vsc_provider.piv import vpcd

    atr = vpcd.answer(card, b"\x04")
    assert atr == bytes.fromhex("3B878001" + b"vsc-PIV".hex() + "02")  # TCK: XOR of T0..the last byte
    ok(card.process(apdu(0, 0x20, 0, 0x80, pin_field(PIN))))
    assert card.process(bytes.fromhex("00200080")) == b"\x90\x00"
    assert vpcd.answer(card, b"\x02") is None  # reset: the PIN is no longer verified
    assert card.process(bytes.fromhex("00200080")) == b"\x63\xca"
    assert vpcd.answer(card, SELECT) == card.process(SELECT)


def test_a_slot_map_gives_slot_9a_the_key_and_certificate_of_another_cka_id(piv_home: PivHome) -> None:
    engine = piv_home.engine()
    card = PivCard(engine, piv_home.card(engine).slot_id, O.parse_slot_map(["9A=02"]))
    ok(card.process(SELECT))
    # 5FC105 (9A's certificate object) is the CKA_ID 02 certificate, the one 9C shows by default
    der = tlv.as_dict(tlv.as_dict(whole(card, card.process(bytes.fromhex("00CB3FFF055C035FC10500"))))[0x53])[0x70]
    mapped = piv_home.certificates[0x9C]
    assert der == mapped.public_bytes(serialization.Encoding.DER)
    assert der != piv_home.certificates[0x9A].public_bytes(serialization.Encoding.DER)
    # 9A now signs with the P-256 key of CKA_ID 02; RSA-2048 is no longer 9A's algorithm
    ok(card.process(apdu(0, 0x20, 0, 0x80, pin_field(PIN))))
    digest = hashlib.sha256(b"mapped").digest()
    body = tlv.tlv(0x7C, tlv.tlv(0x82) + tlv.tlv(0x81, digest))
    assert card.process(apdu(0, 0x87, O.ALG_RSA_2048, 0x9A, body, 0)) == b"\x6a\x86"
    sig = _sign(card, O.ALG_P256, 0x9A, digest)
    mapped.public_key().verify(sig, digest, ec.ECDSA(Prehashed(hashes.SHA256())))  # type: ignore[call-arg]


@pytest.mark.parametrize("pair", ["9B=01", "9A=zz", "9A", "9A=", "XY=01"])
def test_a_bad_slot_map_is_refused(pair: str) -> None:
    with pytest.raises(ValueError, match="9A"):
        O.parse_slot_map([pair])


def test_change_reference_data_changes_the_puk(card: PivCard) -> None:
    new_puk = "58203917"
    puk_status = bytes.fromhex("00200081")
    assert card.process(puk_status) == b"\x6a\x88"  # VERIFY knows only the PIN
    # a wrong old PUK counts down the SO PIN's counter
    assert card.process(apdu(0, 0x24, 0, 0x81, pin_field("11111111") + pin_field(new_puk))) == b"\x63\xc9"
    # a new PUK the card's policy refuses (too short) is wrong data, and nothing is counted
    assert card.process(apdu(0, 0x24, 0, 0x81, pin_field(SO_PIN) + pin_field("2468"))) == b"\x6a\x80"
    assert card.process(apdu(0, 0x24, 0, 0x81, pin_field(SO_PIN) + pin_field(new_puk))) == b"\x90\x00"
    # the old PUK no longer resets the PIN; the new one does, and the new PIN verifies
    wrong = card.process(apdu(0, 0x2C, 0, 0x80, pin_field(SO_PIN) + pin_field("246810")))
    assert wrong == b"\x63\xc9"  # the right PUK cleared the counter: one wrong try since
    resp = b""
    for _ in range(100):  # a waiting period after the wrong try (6985): nothing counted, try again
        resp = card.process(apdu(0, 0x2C, 0, 0x80, pin_field(new_puk) + pin_field("246810")))
        if resp != b"\x69\x85":
            break
        time.sleep(0.05)
    assert resp == b"\x90\x00"
    assert card.process(apdu(0, 0x20, 0, 0x80, pin_field("246810"))) == b"\x90\x00"
    assert card.process(apdu(0, 0x20, 0, 0x80, pin_field(PIN))) == b"\x63\xc9"


def test_a_key_generated_through_piv_signs_through_the_pkcs11_module(
    card: PivCard, piv_home: PivHome, module_path: str
) -> None:
    import pkcs11
    from p11_support import store_loaded
    from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass

    _admin(card, piv_home)
    point = inner(card, card.process(apdu(0, 0x47, 0, 0x9E, bytes.fromhex("AC03800111"), 0)), 0x7F49)[0x86]
    generated = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
    lib = pkcs11.lib(module_path)
    with store_loaded(lib, piv_home.home):
        token = lib.get_token(token_serial=piv_home.serial.encode())
        with token.open(user_pin=PIN) as session:
            private = session.get_key(object_class=ObjectClass.PRIVATE_KEY, key_type=KeyType.EC, id=b"\x04")
            public = session.get_key(object_class=ObjectClass.PUBLIC_KEY, key_type=KeyType.EC, id=b"\x04")
            assert private[Attribute.SIGN] and public[Attribute.EC_POINT].endswith(point)  # DER OCTET STRING
            rs = private.sign(b"made through PIV", mechanism=Mechanism.ECDSA_SHA256)
    der = utils.encode_dss_signature(int.from_bytes(rs[:32], "big"), int.from_bytes(rs[32:], "big"))
    generated.verify(der, b"made through PIV", ec.ECDSA(hashes.SHA256()))
    # and through PIV: the same key in slot 9E
    ok(card.process(apdu(0, 0x20, 0, 0x80, pin_field(PIN))))
    digest = hashlib.sha256(b"and through PIV").digest()
    generated.verify(_sign(card, O.ALG_P256, 0x9E, digest), digest, ec.ECDSA(Prehashed(hashes.SHA256())))  # type: ignore[call-arg]
