"""The call sequences the Windows Base CSP / smart card KSP make, replayed against real cards, with the built
PKCS#11 module on the same store in this process: what one front end does, the other sees.

Signatures and decryptions are checked with `cryptography` against the public-key blobs of CardGetContainerInfo
and against certificates; RSA buffers are little-endian as CryptoAPI keeps them.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import uuid

import pkcs11
import pytest
from conftest import COMPAT_PIN, COMPAT_SO_PIN, EdgeEnv
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils
from cryptography.x509.oid import NameOID
from p11_support import SO_PIN, USER_PIN
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass

from vsc_provider.minidriver import admin_key, auth, files, properties
from vsc_provider.minidriver import agreement as AG
from vsc_provider.minidriver import containers as K
from vsc_provider.minidriver import errors as E
from vsc_provider.minidriver import layouts as L
from vsc_provider.minidriver import signing as S
from vsc_provider.minidriver.context import CardContext, delete_context

ROLE_USER, ROLE_ADMIN = 1, 2


def _code(exc: pytest.ExceptionInfo[E.MinidriverError]) -> int:
    return exc.value.code


def _rsa_public(blob: bytes) -> rsa.RSAPublicKey:
    _, _, n, e = L.parse_rsa_public_blob(blob)
    return rsa.RSAPublicNumbers(e, n).public_key()


def _ec_public(blob: bytes) -> ec.EllipticCurvePublicKey:
    magic, x, y, _ = L.parse_ecc_blob(blob)
    curve = ec.SECP256R1() if magic in (L.ECDSA_PUBLIC_MAGIC[256], L.ECDH_PUBLIC_MAGIC[256]) else ec.SECP384R1()
    return ec.EllipticCurvePublicNumbers(int.from_bytes(x, "big"), int.from_bytes(y, "big"), curve).public_key()


def _by_name(ctx: CardContext, name: str) -> K.Container:
    return next(c for c in K.containers(ctx) if c.name == name)


def _new_container(ctx: CardContext, key_spec: int, bits: int = 0) -> K.Container:
    """What the Base CSP does to make a key: read cmapfile, write it back with a record for the new container
    (its GUID), then CardCreateContainer at that index."""
    records = L.unpack_cmapfile(files.read_file(ctx, "mscp", "cmapfile"))
    name = "{" + str(uuid.uuid4()).upper() + "}"
    records.append(L.ContainerMapRecord(name, L.CONTAINER_MAP_VALID_CONTAINER, 0, bits))
    files.write_file(ctx, "mscp", "cmapfile", L.pack_cmapfile(records))
    made = K.create_container(ctx, len(records) - 1, K.CARD_CREATE_CONTAINER_KEY_GEN, key_spec, bits)
    assert made.name == name
    return made


def test_acquire_and_read_the_card_files(edge: EdgeEnv) -> None:
    ctx = edge.context()
    assert files.enum_files(ctx, "") == ["cardid", "cardapps", "cardcf"]
    cardid = files.read_file(ctx, "", "cardid")
    assert len(cardid) == 16 and properties.get_property(ctx, properties.CP_CARD_GUID) == cardid
    assert edge.context().card.serial == edge.serial and files.read_file(edge.context(), "", "cardid") == cardid
    assert files.read_file(ctx, "", "cardapps") == b"mscp\0\0\0\0"
    cf = L.CacheFile.unpack(files.read_file(ctx, "", "cardcf"))
    assert cf.version == 1
    assert len(files.read_file(ctx, "mscp", "cmapfile")) % 86 == 0
    assert properties.get_property(ctx, properties.CP_CARD_SERIAL_NO) == edge.serial.encode()
    assert properties.query_capabilities(ctx) == L.card_capabilities(False, True)
    assert properties.get_property(ctx, properties.CP_CARD_LIST_PINS) == (0b110).to_bytes(4, "little")
    assert properties.get_property(ctx, properties.CP_CARD_PIN_INFO, ROLE_ADMIN)[8:12] == (4).to_bytes(4, "little")
    assert properties.get_property(ctx, properties.CP_CARD_READ_ONLY) == bytes(4)
    assert properties.get_property(ctx, properties.CP_CARD_CACHE_MODE) == (1).to_bytes(4, "little")
    sizes = properties.query_key_sizes(ctx, K.AT_KEYEXCHANGE)
    assert L.CARD_KEY_SIZES.unpack(sizes) == (1, 2048, 2048, 4096, 1024)
    assert L.CARD_KEY_SIZES.unpack(properties.query_key_sizes(ctx, K.AT_ECDSA[256]))[1:4] == (256, 256, 256)
    # CardGetProperty("Key Sizes") takes the key spec in dwFlags, as the Base CSP passes it
    for key_spec, expected in (
        (K.AT_SIGNATURE, (1, 2048, 2048, 4096, 1024)),
        (K.AT_KEYEXCHANGE, (1, 2048, 2048, 4096, 1024)),
        (K.AT_ECDSA[384], (1, 384, 384, 384, 0)),
        (K.AT_ECDHE[256], (1, 256, 256, 256, 0)),
    ):
        assert L.CARD_KEY_SIZES.unpack(properties.get_property(ctx, properties.CP_CARD_KEYSIZES, key_spec)) == expected
    for undefined in (0, 99):
        with pytest.raises(E.MinidriverError) as exc:
            properties.get_property(ctx, properties.CP_CARD_KEYSIZES, undefined)
        assert _code(exc) == E.SCARD_E_INVALID_PARAMETER
    with pytest.raises(E.MinidriverError) as exc:  # P-521: defined, not offered
        properties.get_property(ctx, properties.CP_CARD_KEYSIZES, K.AT_ECDSA[521])
    assert _code(exc) == E.SCARD_E_UNSUPPORTED_FEATURE
    free = L.CARD_FREE_SPACE_INFO.unpack(files.query_free_space(ctx))
    assert free[0] == 1 and free[1] == L.CARD_DATA_VALUE_UNKNOWN and free[3] == 255
    assert L.CARD_FILE_INFO.unpack(files.get_file_info(ctx, "", "cardid")) == (1, 16, L.EVERYONE_READ_ADMIN_WRITE_AC)
    with pytest.raises(E.MinidriverError) as exc:
        files.read_file(ctx, "mscp", "nothere")
    assert _code(exc) == E.SCARD_E_FILE_NOT_FOUND
    with pytest.raises(E.MinidriverError) as exc:
        properties.get_property(ctx, "No Such Property")
    assert _code(exc) == E.SCARD_E_INVALID_PARAMETER
    with pytest.raises(E.MinidriverError) as exc:
        files.write_file(ctx, "", "cardid", bytes(16))
    assert _code(exc) == E.SCARD_W_SECURITY_VIOLATION
    delete_context(ctx)


def test_a_wrong_pin_counts_down_on_the_shared_counter_and_blocks(edge: EdgeEnv) -> None:
    ctx = edge.context(edge.compatible)
    full = auth.attempts_remaining(ctx, ROLE_USER)
    with pytest.raises(E.MinidriverError) as exc:
        auth.authenticate_ex(ctx, ROLE_USER, 0, b"0000")
    assert _code(exc) == E.SCARD_W_WRONG_CHV and exc.value.attempts_remaining == full - 1
    with pytest.raises(pkcs11.PinIncorrect):  # a PKCS#11 host's wrong try counts on the same counter
        edge.token(edge.compatible).open(user_pin="0000")
    with pytest.raises(E.MinidriverError) as exc:
        auth.authenticate_pin(ctx, "user", b"0000")
    assert _code(exc) == E.SCARD_W_WRONG_CHV and exc.value.attempts_remaining == full - 3
    left = full - 3
    while left > 1:
        with pytest.raises(E.MinidriverError) as exc:
            auth.authenticate_ex(ctx, ROLE_USER, 0, b"0000")
        left -= 1
        assert exc.value.attempts_remaining == left
    with pytest.raises(E.MinidriverError) as exc:
        auth.authenticate_ex(ctx, ROLE_USER, 0, b"0000")
    assert _code(exc) == E.SCARD_W_CHV_BLOCKED and exc.value.attempts_remaining == 0
    with pytest.raises(E.MinidriverError) as exc:
        auth.authenticate_ex(ctx, ROLE_USER, 0, COMPAT_PIN.encode())  # the right PIN: still blocked
    assert _code(exc) == E.SCARD_W_CHV_BLOCKED
    with pytest.raises(pkcs11.PinLocked):
        edge.token(edge.compatible).open(user_pin=COMPAT_PIN)
    # the admin PIN unblocks: a wrong one counts on the SO counter, the right one sets a new user PIN
    with pytest.raises(E.MinidriverError) as exc:
        auth.unblock_pin(ctx, "user", b"00000000", b"5555")
    assert _code(exc) == E.SCARD_W_WRONG_CHV and exc.value.attempts_remaining == auth.attempts_remaining(
        ctx, ROLE_ADMIN
    )
    auth.unblock_pin(ctx, "user", COMPAT_SO_PIN.encode(), b"5555")
    assert auth.authenticate_ex(ctx, ROLE_USER, 0, b"5555") == full
    assert properties.get_property(ctx, properties.CP_CARD_AUTHENTICATED_STATE) == (0b010).to_bytes(4, "little")
    with edge.token(edge.compatible).open(user_pin="5555"):
        pass
    # and back, through a PIN change proved by the PIN itself
    auth.change_authenticator_ex(
        ctx, auth.PIN_CHANGE_FLAG_CHANGEPIN, ROLE_USER, b"5555", ROLE_USER, COMPAT_PIN.encode()
    )
    auth.deauthenticate_ex(ctx, 0b010)
    assert properties.get_property(ctx, properties.CP_CARD_AUTHENTICATED_STATE) == bytes(4)
    auth.authenticate_ex(ctx, ROLE_ADMIN, 0, COMPAT_SO_PIN.encode())
    assert properties.get_property(ctx, properties.CP_CARD_AUTHENTICATED_STATE) == (0b100).to_bytes(4, "little")
    with edge.token(edge.compatible).open(user_pin=COMPAT_PIN):
        pass


def test_cardcf_changes_when_pkcs11_changes_the_card(edge: EdgeEnv) -> None:
    ctx = edge.context()
    before = L.CacheFile.unpack(files.read_file(ctx, "", "cardcf"))
    with edge.token().open(rw=True, user_pin=USER_PIN) as s:
        key_id = uuid.uuid4().bytes
        pub, priv = s.generate_keypair(KeyType.RSA, 2048, id=key_id, label="made by PKCS#11", store=True)
        after = L.CacheFile.unpack(files.read_file(ctx, "", "cardcf"))
        assert after.containers != before.containers and after.pins == before.pins
        # the PKCS#11 key pair is a container named after its CKA_ID, with its public key
        c = _by_name(ctx, "{" + str(uuid.UUID(bytes=key_id)) + "}")
        record = L.unpack_cmapfile(files.read_file(ctx, "mscp", "cmapfile"))[c.index]
        assert record.flags & L.CONTAINER_MAP_VALID_CONTAINER and record.keyex_key_bits == 2048
        blob = K.get_container_info(ctx, c.index).keyex_public_key
        assert _rsa_public(blob).public_numbers().n == int.from_bytes(pub[Attribute.MODULUS], "big")
        auth.authenticate_ex(ctx, ROLE_USER, 0, USER_PIN.encode())
        digest = hashlib.sha256(b"through the card edge").digest()
        info = S.SigningInfo(1, c.index, K.AT_KEYEXCHANGE, 0, S.CALG_SHA_256, digest)
        signature = S.sign_data(ctx, info)
        _rsa_public(blob).verify(signature[::-1], b"through the card edge", padding.PKCS1v15(), hashes.SHA256())
        priv.destroy()
        pub.destroy()
        gone = L.CacheFile.unpack(files.read_file(ctx, "", "cardcf"))
        assert gone.containers != after.containers
        assert all(k.key_id != key_id for k in K.containers(ctx))
    # a PIN change elsewhere moves the PIN counter
    with edge.token().open(rw=True, user_pin=USER_PIN) as s:
        s.set_pin(USER_PIN, "739184")
        s.set_pin("739184", USER_PIN)
    assert L.CacheFile.unpack(files.read_file(ctx, "", "cardcf")).pins != before.pins


def test_container_made_through_the_card_edge_is_a_pkcs11_key(edge: EdgeEnv) -> None:
    ctx = edge.context()
    auth.authenticate_ex(ctx, ROLE_USER, 0, USER_PIN.encode())
    before = L.CacheFile.unpack(files.read_file(ctx, "", "cardcf"))
    c = _new_container(ctx, K.AT_KEYEXCHANGE, 2048)
    assert L.CacheFile.unpack(files.read_file(ctx, "", "cardcf")).containers != before.containers
    info = K.get_container_info(ctx, c.index)
    assert (
        info.version == 1
        and info.sig_public_key == b""
        and info.keyex_public_key[:8] == bytes.fromhex("0602000000a40000")
    )
    public = _rsa_public(info.keyex_public_key)
    with edge.token().open(user_pin=USER_PIN) as s:
        key_id = uuid.UUID(c.name.strip("{}")).bytes  # CKA_ID is the container GUID
        priv = s.get_key(object_class=ObjectClass.PRIVATE_KEY, id=key_id)
        assert priv[Attribute.LABEL] == c.name and priv[Attribute.DECRYPT]
        data = b"signed by PKCS#11"
        public.verify(priv.sign(data, mechanism=Mechanism.SHA256_RSA_PKCS), data, padding.PKCS1v15(), hashes.SHA256())

    # the CSP stores the certificate as mscp/kxcNN; PKCS#11 sees a certificate with the key's CKA_ID
    ca = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "edge test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder(name, name, public, x509.random_serial_number(), now, now + datetime.timedelta(days=1))
        .sign(ca, hashes.SHA256())
        .public_bytes(serialization.Encoding.DER)
    )
    cert_file = f"kxc{c.index:02d}"
    files.create_file(ctx, "mscp", cert_file, 0, L.EVERYONE_READ_USER_WRITE_AC)
    files.write_file(ctx, "mscp", cert_file, cert)
    assert cert_file in files.enum_files(ctx, "mscp") and files.read_file(ctx, "mscp", cert_file) == cert
    with edge.token().open() as s:
        found = list(s.get_objects({Attribute.CLASS: ObjectClass.CERTIFICATE, Attribute.ID: key_id}))
        assert len(found) == 1 and found[0][Attribute.VALUE] == cert

    # CardSignData: PKCS#1 v1.5 with the DigestInfo, PSS, PKCS#1 v1.5 without an OID (SSL3's MD5+SHA-1) and
    # CARD_PADDING_NONE (raw RSA over a block the CSP padded); verified with the certificate
    certified = x509.load_der_x509_certificate(cert).public_key()
    assert isinstance(certified, rsa.RSAPublicKey)
    digest = hashlib.sha384(b"message").digest()
    sig = S.sign_data(ctx, S.SigningInfo(1, c.index, K.AT_KEYEXCHANGE, 0, S.CALG_SHA_384, digest))
    certified.verify(sig[::-1], b"message", padding.PKCS1v15(), hashes.SHA384())
    pss = S.SigningInfo(
        2,
        c.index,
        K.AT_KEYEXCHANGE,
        S.CARD_PADDING_INFO_PRESENT,
        0,
        digest,
        S.PaddingInfo("SHA384", 48),
        S.CARD_PADDING_PSS,
    )
    sig = S.sign_data(ctx, pss)
    certified.verify(sig[::-1], b"message", padding.PSS(padding.MGF1(hashes.SHA384()), 48), hashes.SHA384())
    ssl3 = hashlib.md5(b"m").digest() + hashlib.sha1(b"m").digest()
    sig = S.sign_data(ctx, S.SigningInfo(1, c.index, K.AT_KEYEXCHANGE, 0, S.CALG_SSL3_SHAMD5, ssl3))
    assert certified.recover_data_from_signature(sig[::-1], padding.PKCS1v15(), None) == ssl3  # no DigestInfo
    digest_info = bytes.fromhex("3041300d060960864801650304020205000430") + digest
    block = b"\x00\x01" + b"\xff" * (256 - 3 - len(digest_info)) + b"\x00" + digest_info

    def raw_rsa(data: bytes) -> S.SigningInfo:
        flags, none = S.CARD_PADDING_INFO_PRESENT, S.PaddingInfo()
        return S.SigningInfo(2, c.index, K.AT_KEYEXCHANGE, flags, 0, data, none, S.CARD_PADDING_NONE)

    raw_info = raw_rsa(block)
    sig = S.sign_data(ctx, raw_info)
    assert len(sig) == 256 and raw_info.cb_signed_data == 256
    certified.verify(sig[::-1], b"message", padding.PKCS1v15(), hashes.SHA384())
    with pytest.raises(E.MinidriverError) as exc:
        S.sign_data(ctx, raw_rsa(b"\x00" + block))  # longer than the modulus
    assert _code(exc) == E.SCARD_E_INVALID_PARAMETER
    size_only = S.SigningInfo(2, c.index, K.AT_KEYEXCHANGE, S.CARD_BUFFER_SIZE_ONLY, S.CALG_SHA_384, digest)
    assert S.sign_data(ctx, size_only) == b"" and size_only.cb_signed_data == 256
    with pytest.raises(E.MinidriverError) as exc:
        S.sign_data(ctx, S.SigningInfo(1, c.index, K.AT_SIGNATURE, 0, S.CALG_SHA_384, digest))
    assert _code(exc) == E.SCARD_E_INVALID_PARAMETER
    with pytest.raises(E.MinidriverError) as exc:
        S.sign_data(ctx, S.SigningInfo(1, c.index, K.AT_KEYEXCHANGE, 0, S.CALG_SHA_256, digest))  # 48 bytes
    assert _code(exc) == E.SCARD_E_INVALID_PARAMETER

    # CardRSADecrypt: raw (the CSP unpads), PKCS#1 v1.5 and OAEP on the card
    secret = b"session key bytes"
    ct = public.encrypt(secret, padding.PKCS1v15())
    raw = S.rsa_decrypt(ctx, S.RsaDecryptInfo(1, c.index, K.AT_KEYEXCHANGE, ct[::-1]))[::-1]
    assert len(raw) == 256 and raw[:2] == b"\x00\x02" and raw.endswith(b"\x00" + secret)
    plain = S.rsa_decrypt(ctx, S.RsaDecryptInfo(2, c.index, K.AT_KEYEXCHANGE, ct[::-1], None, S.CARD_PADDING_PKCS1))
    assert plain[::-1] == secret
    oaep = public.encrypt(secret, padding.OAEP(padding.MGF1(hashes.SHA256()), hashes.SHA256(), None))
    info = S.RsaDecryptInfo(2, c.index, K.AT_KEYEXCHANGE, oaep[::-1], S.PaddingInfo("SHA256"), S.CARD_PADDING_OAEP)
    assert S.rsa_decrypt(ctx, info)[::-1] == secret
    with pytest.raises(E.MinidriverError) as exc:
        S.rsa_decrypt(ctx, S.RsaDecryptInfo(2, c.index, K.AT_KEYEXCHANGE, ct[:100], None, S.CARD_PADDING_PKCS1))
    assert _code(exc) == E.SCARD_E_INSUFFICIENT_BUFFER

    # CardDeleteContainer: PKCS#11 no longer finds the key pair
    files.delete_file(ctx, "mscp", cert_file)
    K.delete_container(ctx, c.index)
    with edge.token().open(user_pin=USER_PIN) as s:
        assert not list(s.get_objects({Attribute.ID: key_id}))


def test_signature_key_and_ecdsa_and_ecdh_containers(edge: EdgeEnv) -> None:
    ctx = edge.context()
    auth.authenticate_ex(ctx, ROLE_USER, 0, USER_PIN.encode())
    sig_only = _new_container(ctx, K.AT_SIGNATURE, 2048)
    assert sig_only.sig_bits == 2048 and sig_only.keyex_bits == 0
    info = K.get_container_info(ctx, sig_only.index)
    assert info.keyex_public_key == b"" and info.sig_public_key[4:8] == (0x2400).to_bytes(4, "little")
    with pytest.raises(E.MinidriverError) as exc:
        ct = _rsa_public(info.sig_public_key).encrypt(b"x", padding.PKCS1v15())
        S.rsa_decrypt(ctx, S.RsaDecryptInfo(1, sig_only.index, K.AT_KEYEXCHANGE, ct[::-1]))
    assert _code(exc) == E.SCARD_E_INVALID_PARAMETER
    # a signature key's certificate is mscp/kscNN; PKCS#11 sees it with the key's CKA_ID
    ca = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "signature key")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder(name, name, _rsa_public(info.sig_public_key), 7, now, now + datetime.timedelta(days=1))
        .sign(ca, hashes.SHA256())
        .public_bytes(serialization.Encoding.DER)
    )
    ksc = f"ksc{sig_only.index:02d}"
    files.create_file(ctx, "mscp", ksc, 0, L.EVERYONE_READ_USER_WRITE_AC)
    with pytest.raises(E.MinidriverError) as exc:
        files.write_file(ctx, "mscp", ksc, b"not a certificate")
    assert _code(exc) == E.SCARD_E_INVALID_PARAMETER
    files.write_file(ctx, "mscp", ksc, cert)
    listed = files.enum_files(ctx, "mscp")
    assert ksc in listed and f"kxc{sig_only.index:02d}" not in listed
    assert files.read_file(ctx, "mscp", ksc) == cert
    with edge.token().open() as s:
        found = list(s.get_objects({Attribute.CLASS: ObjectClass.CERTIFICATE, Attribute.ID: sig_only.key_id}))
        assert [c[Attribute.VALUE] for c in found] == [cert]
    files.delete_file(ctx, "mscp", ksc)
    assert ksc not in files.enum_files(ctx, "mscp")
    with edge.token().open() as s:
        assert not list(s.get_objects({Attribute.CLASS: ObjectClass.CERTIFICATE, Attribute.ID: sig_only.key_id}))

    ecdsa = _new_container(ctx, K.AT_ECDSA[256])
    blob = K.get_container_info(ctx, ecdsa.index).sig_public_key
    assert blob[:4] == b"ECS1" and K.get_container_info(ctx, ecdsa.index).keyex_public_key == b""
    digest = hashlib.sha256(b"ecdsa").digest()
    rs = S.sign_data(ctx, S.SigningInfo(2, ecdsa.index, K.AT_ECDSA[256], 0, 0, digest))
    assert len(rs) == 64
    der = utils.encode_dss_signature(int.from_bytes(rs[:32], "big"), int.from_bytes(rs[32:], "big"))
    _ec_public(blob).verify(der, b"ecdsa", ec.ECDSA(hashes.SHA256()))
    with edge.token().open(user_pin=USER_PIN) as s:
        key = s.get_key(object_class=ObjectClass.PRIVATE_KEY, id=ecdsa.key_id)
        assert key[Attribute.SIGN] and not key[Attribute.DERIVE]

    ecdh = _new_container(ctx, K.AT_ECDHE[256])
    blob = K.get_container_info(ctx, ecdh.index).keyex_public_key
    assert blob[:4] == b"ECK1"
    peer = ec.generate_private_key(ec.SECP256R1())
    numbers = peer.public_key().public_numbers()
    agreement = AG.DhAgreementInfo(
        2, ecdh.index, 0, L.ecc_public_blob(L.ECDH_PUBLIC_MAGIC[256], numbers.x, numbers.y, 32)
    )
    index = AG.construct_dh_agreement(ctx, agreement)
    shared = peer.exchange(ec.ECDH(), _ec_public(blob))
    hashed = AG.derive_key(
        ctx, AG.DeriveKeyInfo(1, 0, "HASH", index, [(AG.KDF_HASH_ALGORITHM, "SHA256"), (AG.KDF_SECRET_APPEND, b"tail")])
    )
    assert hashed == hashlib.sha256(shared + b"tail").digest()
    assert AG.derive_key(ctx, AG.DeriveKeyInfo(1, 0, "TRUNCATE", index)) == shared[::-1]
    # HMAC: HMAC_key(prepend || Z || append) with the hash named
    hmac_params: list[tuple[int, bytes | str]] = [
        (AG.KDF_HASH_ALGORITHM, "SHA384"),
        (AG.KDF_HMAC_KEY, b"hmac key"),
        (AG.KDF_SECRET_PREPEND, b"head"),
        (AG.KDF_SECRET_APPEND, b"tail"),
    ]
    mac = AG.derive_key(ctx, AG.DeriveKeyInfo(2, 0, "HMAC", index, hmac_params))
    assert mac == hmac.new(b"hmac key", b"head" + shared + b"tail", hashlib.sha384).digest()
    size_only = AG.DeriveKeyInfo(2, AG.CARD_BUFFER_SIZE_ONLY, "HMAC", index, hmac_params)
    assert AG.derive_key(ctx, size_only) == b"" and size_only.cb_derived_key == 48
    with pytest.raises(E.MinidriverError) as exc:
        AG.derive_key(ctx, AG.DeriveKeyInfo(2, 0, "HMAC", index, [(AG.KDF_HASH_ALGORITHM, "MD5")]))
    assert _code(exc) == E.SCARD_E_UNSUPPORTED_FEATURE
    AG.destroy_dh_agreement(ctx, index)
    with pytest.raises(E.MinidriverError) as exc:
        AG.derive_key(ctx, AG.DeriveKeyInfo(1, 0, "HASH", index))
    assert _code(exc) == E.SCARD_E_INVALID_PARAMETER
    with pytest.raises(E.MinidriverError) as exc:  # an ECDH key does not sign
        S.sign_data(ctx, S.SigningInfo(2, ecdh.index, K.AT_ECDSA[256], 0, 0, digest))
    assert _code(exc) == E.SCARD_E_INVALID_PARAMETER
    for c in (ecdh, ecdsa, sig_only):
        K.delete_container(ctx, _by_name(ctx, c.name).index)


def test_import_a_key_into_a_container(edge: EdgeEnv) -> None:
    ctx = edge.context()
    auth.authenticate_ex(ctx, ROLE_USER, 0, USER_PIN.encode())
    key = rsa.generate_private_key(65537, 2048)
    p = key.private_numbers()
    blob = L.rsa_private_blob(
        L.RsaPrivateFields(2048, 65537, p.public_numbers.n, p.p, p.q, p.dmp1, p.dmq1, p.iqmp, p.d), L.CALG_RSA_KEYX
    )
    index = len(K.containers(ctx))
    c = K.create_container(ctx, index, K.CARD_CREATE_CONTAINER_KEY_IMPORT, K.AT_KEYEXCHANGE, 2048, blob)
    digest = hashlib.sha256(b"imported").digest()
    sig = S.sign_data(ctx, S.SigningInfo(1, c.index, K.AT_KEYEXCHANGE, 0, S.CALG_SHA_256, digest))
    key.public_key().verify(sig[::-1], b"imported", padding.PKCS1v15(), hashes.SHA256())
    with pytest.raises(E.MinidriverError) as exc:
        K.create_container(ctx, index, K.CARD_CREATE_CONTAINER_KEY_GEN, K.AT_KEYEXCHANGE, 2048)
    assert _code(exc) == E.NTE_EXISTS
    with pytest.raises(E.MinidriverError) as exc:
        K.create_container(ctx, index + 1, K.CARD_CREATE_CONTAINER_KEY_IMPORT, K.AT_KEYEXCHANGE, 2048, blob[:-3])
    assert _code(exc) == E.NTE_BAD_DATA
    K.delete_container(ctx, c.index)


def test_what_needs_the_user_is_refused_without_it(edge: EdgeEnv) -> None:
    ctx = edge.context()
    auth.deauthenticate_ex(ctx, 0b110)
    with pytest.raises(E.MinidriverError) as exc:
        K.create_container(ctx, len(K.containers(ctx)), K.CARD_CREATE_CONTAINER_KEY_GEN, K.AT_KEYEXCHANGE, 2048)
    assert _code(exc) == E.SCARD_W_SECURITY_VIOLATION
    with pytest.raises(E.MinidriverError) as exc:
        files.create_file(ctx, "mscp", "notes")
    assert _code(exc) == E.SCARD_W_SECURITY_VIOLATION
    with pytest.raises(E.MinidriverError) as exc:
        K.container(ctx, 200)
    assert _code(exc) == E.SCARD_E_NO_KEY_CONTAINER
    with pytest.raises(E.MinidriverError) as exc:
        auth.authenticate_ex(ctx, 5, 0, b"123456")
    assert _code(exc) == E.SCARD_E_INVALID_PARAMETER


def test_data_files(edge: EdgeEnv) -> None:
    ctx = edge.context()
    auth.authenticate_ex(ctx, ROLE_USER, 0, USER_PIN.encode())
    files.create_file(ctx, "myapp", "public", 0, L.EVERYONE_READ_USER_WRITE_AC)
    files.create_file(ctx, "myapp", "secret", 0, L.USER_READ_WRITE_AC)
    with pytest.raises(E.MinidriverError) as exc:
        files.create_file(ctx, "myapp", "public")
    assert _code(exc) == E.ERROR_FILE_EXISTS
    files.write_file(ctx, "myapp", "public", b"hello")
    files.write_file(ctx, "myapp", "secret", b"hidden")
    assert files.enum_files(ctx, "myapp") == ["public", "secret"]
    assert L.CARD_FILE_INFO.unpack(files.get_file_info(ctx, "myapp", "secret")) == (1, 6, L.USER_READ_WRITE_AC)
    other = edge.context()  # another process: sees the public file, and the private one once authenticated
    assert files.read_file(other, "myapp", "public") == b"hello"
    with pytest.raises(E.MinidriverError):
        files.read_file(other, "myapp", "secret")
    auth.authenticate_ex(other, ROLE_USER, 0, USER_PIN.encode())
    assert files.read_file(other, "myapp", "secret") == b"hidden"
    files.delete_file(ctx, "myapp", "public")
    files.delete_file(ctx, "myapp", "secret")
    with pytest.raises(E.MinidriverError) as exc:
        files.enum_files(other, "myapp")
    assert _code(exc) == E.SCARD_E_DIR_NOT_FOUND


def test_the_admin_pin_changes_itself(edge: EdgeEnv) -> None:
    ctx = edge.context()
    new = b"56473829"
    auth.change_authenticator_ex(ctx, auth.PIN_CHANGE_FLAG_CHANGEPIN, ROLE_ADMIN, SO_PIN.encode(), ROLE_ADMIN, new)
    with pytest.raises(E.MinidriverError) as exc:
        auth.authenticate_ex(ctx, ROLE_ADMIN, 0, SO_PIN.encode())
    assert _code(exc) == E.SCARD_W_WRONG_CHV
    auth.change_authenticator_ex(ctx, auth.PIN_CHANGE_FLAG_CHANGEPIN, ROLE_ADMIN, new, ROLE_ADMIN, SO_PIN.encode())
    with edge.token().open(rw=True, so_pin=SO_PIN):
        pass


def _respond(admin_key: bytes, challenge: bytes) -> bytes:
    from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
    from cryptography.hazmat.primitives.ciphers import Cipher, modes

    encryptor = Cipher(TripleDES(admin_key), modes.ECB()).encryptor()
    return encryptor.update(challenge) + encryptor.finalize()


def test_admin_challenge_response_unblocks_the_user_pin(edge: EdgeEnv) -> None:
    ctx = edge.context(edge.compatible)
    with pytest.raises(E.MinidriverError) as exc:
        auth.get_challenge(ctx)
    assert _code(exc) == E.SCARD_E_UNSUPPORTED_FEATURE  # no admin key yet
    key = bytes(range(1, 25))
    admin_key.set_admin_key(ctx, COMPAT_SO_PIN.encode(), key)
    other = edge.context(edge.compatible)  # the key is the card's, seen by every process
    challenge = auth.get_challenge(other)
    assert len(challenge) == 8
    assert auth.authenticate_challenge(other, _respond(key, challenge)) > 0
    assert properties.get_property(other, properties.CP_CARD_AUTHENTICATED_STATE) == (0b100).to_bytes(4, "little")
    with pytest.raises(E.MinidriverError) as exc:
        auth.authenticate_challenge(other, _respond(key, challenge))  # a challenge answers once
    assert _code(exc) == E.SCARD_E_INVALID_PARAMETER
    challenge = auth.get_challenge(other)
    with pytest.raises(E.MinidriverError) as exc:
        auth.authenticate_challenge(other, _respond(bytes(24), challenge))
    assert _code(exc) == E.SCARD_W_WRONG_CHV and exc.value.attempts_remaining is not None
    # block the user PIN, then unblock it with a response
    codes = []
    for _ in range(auth.attempts_remaining(ctx, ROLE_USER)):
        with pytest.raises(E.MinidriverError) as exc:
            auth.authenticate_ex(ctx, ROLE_USER, 0, b"0000")
        codes.append(_code(exc))
    assert codes[-1] == E.SCARD_W_CHV_BLOCKED and set(codes[:-1]) == {E.SCARD_W_WRONG_CHV}
    challenge = auth.get_challenge(ctx)
    auth.unblock_pin(ctx, "user", _respond(key, challenge), b"6666", 0, auth.CARD_AUTHENTICATE_PIN_CHALLENGE_RESPONSE)
    with edge.token(edge.compatible).open(user_pin="6666"):
        pass
    # a new admin key, proved by the old one; then the PIN back
    new_key = bytes(range(101, 125))
    challenge = auth.get_challenge(ctx)
    auth.change_authenticator(
        ctx, "admin", _respond(key, challenge), new_key, 0, auth.CARD_AUTHENTICATE_PIN_CHALLENGE_RESPONSE
    )
    challenge = auth.get_challenge(ctx)
    auth.authenticate_challenge(ctx, _respond(new_key, challenge))
    auth.authenticate_ex(ctx, ROLE_USER, 0, b"6666")
    auth.change_authenticator(ctx, "user", b"6666", COMPAT_PIN.encode())
