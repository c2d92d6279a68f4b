"""Activation, pinned TLS, renewal, import, deletion, migration and many identities against the real server."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding

from tests.conftest import USER_PIN, run_vsc
from tests.server.conftest import start_beside
from tests.server.idserver import IdServer, start_server
from vsc_provider import api
from vsc_provider.ck import attributes as A
from vsc_provider.ck import constants as C
from vsc_provider.ck.errors import CKRError
from vsc_provider.ck.params import Mechanism
from vsc_provider.pkcs11 import encryption, general, sessions, signing
from vsc_provider.pkcs11.state import LIB
from vsc_provider.token import binding as binding_mac
from vsc_provider.token.device_key import load_device_key


@pytest.fixture
def inproc(vsc_home: Path) -> Iterator[None]:
    """The in-process PKCS#11 layer, initialised for this test's VSC_HOME."""
    for _ in range(2):
        try:
            general.finalize()
        except CKRError:
            pass
    yield
    try:
        general.finalize()
    except CKRError:
        pass


@contextmanager
def p11_session(serial: str, pin: str | None = None) -> Iterator[int]:
    """A read/write session of the in-process PKCS#11 layer on the card, the user logged in with `pin`."""
    try:
        LIB.require()
    except CKRError:
        general.initialize(None)
    h = sessions.open_session(api.find_card(serial).slot_id, C.CKF_SERIAL_SESSION | C.CKF_RW_SESSION)
    try:
        if pin is not None:
            sessions.login(h, C.CKU_USER, pin.encode())
        yield h
    finally:
        sessions.close_session(h)


def activate(link: str, *extra: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    out = run_vsc("activate", link, "--pin", USER_PIN, "--json", *extra, env=env)
    return dict(json.loads(out.stdout))


def cards() -> list[dict[str, Any]]:
    return list(json.loads(run_vsc("card", "list", "--json").stdout))


def certs_of(serial: str) -> dict[str, x509.Certificate]:
    info = next(c for c in cards() if c["serial"] == serial)
    out = {}
    for o in info["objects"]:
        if o["kind"] == "cert":
            raw = run_vsc("cert", "export", "--card", serial, o["id"]).stdout.encode()
            out[o["id"]] = x509.load_pem_x509_certificate(raw)
    return out


def sign_with(serial: str, key_id: str, data: bytes, pin: str = USER_PIN) -> bytes:
    card = api.find_card(serial)
    with p11_session(serial, pin) as h:
        priv = next(
            o
            for o in card.objects.values()
            if o.klass == C.CKO_PRIVATE_KEY and o.attrs.get(C.CKA_ID) == bytes.fromhex(key_id)
        )
        is_rsa = A.get_ulong(priv.attrs, C.CKA_KEY_TYPE) == C.CKK_RSA
        signing.sign_init(h, Mechanism(C.CKM_SHA256_RSA_PKCS if is_rsa else C.CKM_ECDSA_SHA256), priv.handle)
        return signing.sign(h, data, False, 8192)


def verify(cert: x509.Certificate, sig: bytes, data: bytes) -> None:
    pub = cert.public_key()
    if isinstance(pub, ec.EllipticCurvePublicKey):
        from asn1crypto.algos import DSASignature

        pub.verify(DSASignature.from_p1363(sig).dump(), data, ec.ECDSA(hashes.SHA256()))
    else:
        pub.verify(sig, data, padding.PKCS1v15(), hashes.SHA256())  # type: ignore[union-attr]


def test_activation_installs_certified_device_keys_and_uses_the_code_once(id_server: IdServer, inproc: None) -> None:
    link = id_server.link("alice")
    before = len(id_server.devices())
    info = activate(link)
    assert info["server"] == id_server.url
    listed = cards()
    assert [c["server"] for c in listed] == [id_server.url]
    certs = certs_of(info["serial"])
    assert len(certs) == 2
    ca = x509.load_pem_x509_certificate((id_server.data / "ca.pem").read_bytes())
    for key_id, cert in certs.items():
        assert cert.issuer == ca.subject
        cert.verify_directly_issued_by(ca)
        verify(cert, sign_with(info["serial"], key_id, b"hello"), b"hello")
    assert "server https://127.0.0.1" in run_vsc("card", "list").stdout
    again = run_vsc("activate", link, "--pin", USER_PIN, check=False)
    assert again.returncode != 0 and "unknown_code" in again.stderr
    assert len(cards()) == 1
    assert len(id_server.devices()) == before + 1


def test_pinned_tls_refuses_a_second_server_even_if_trusted(
    id_server: IdServer, tmp_path: Path, vsc_home: Path
) -> None:
    other = start_server(tmp_path / "other")
    try:
        real = id_server.link("bob")
        # the link names server B but carries A's pin: B is refused before any request is sent
        forged = real.replace(str(id_server.port), str(other.port))
        env = {"SSL_CERT_FILE": str(other.data / "ca.pem")}  # B's CA trusted system-wide changes nothing
        result = run_vsc("activate", forged, "--pin", USER_PIN, check=False, env=env)
        assert result.returncode != 0 and "pin" in result.stderr.lower()
        assert cards() == []
        assert other.devices() == []
        # a bound card whose server now answers with another certificate is refused on every call
        info = activate(id_server.link("bob"))
        store = vsc_home / "store.sqlite"
        import sqlite3

        db = sqlite3.connect(store)
        binding = json.loads(db.execute("SELECT server FROM cards").fetchone()[0])
        binding["url"] = other.url  # as if the server had moved: a binding changed the way vsc changes it
        binding = binding_mac.sealed(load_device_key(str(vsc_home / "device.key")), info["serial"], binding)
        db.execute("UPDATE cards SET server = ?", (json.dumps(binding),))
        db.commit()
        db.close()
        status = run_vsc("identity", "status", info["serial"], check=False)
        assert status.returncode != 0 and "pin" in status.stderr.lower()
    finally:
        other.stop()


def test_renewal_replaces_keys_and_certificates(id_server: IdServer, inproc: None) -> None:
    info = activate(id_server.link("carol"))
    old = certs_of(info["serial"])
    run_vsc("identity", "renew", info["serial"], "--pin", USER_PIN)
    new = certs_of(info["serial"])
    assert len(new) == 2 and not set(new) & set(old)
    for key_id, cert in new.items():
        verify(cert, sign_with(info["serial"], key_id, b"renewed"), b"renewed")
    objs = next(c for c in cards() if c["serial"] == info["serial"])["objects"]
    assert {o["id"] for o in objs} == set(new)


def test_escrowed_key_import_is_stored_non_extractable(id_server: IdServer, inproc: None) -> None:
    info = activate(id_server.link("dave", "escrow"))
    card = api.find_card(info["serial"])
    with p11_session(info["serial"], USER_PIN) as h:
        privs = [o for o in card.objects.values() if o.klass == C.CKO_PRIVATE_KEY]
        enc = next(o for o in privs if A.get_ulong(o.attrs, C.CKA_KEY_TYPE) == C.CKK_RSA)
        assert A.get_bool(enc.attrs, C.CKA_SENSITIVE) and not A.get_bool(enc.attrs, C.CKA_EXTRACTABLE)
        cert = x509.load_der_x509_certificate(
            next(
                o
                for o in card.objects.values()
                if o.klass == C.CKO_CERTIFICATE and o.attrs[C.CKA_ID] == enc.attrs[C.CKA_ID]
            ).attrs[C.CKA_VALUE]
        )
        secret = cert.public_key().encrypt(b"escrowed", padding.PKCS1v15())  # type: ignore[union-attr]
        encryption.decrypt_init(h, Mechanism(C.CKM_RSA_PKCS), enc.handle)
        assert encryption.decrypt(h, secret, False, 4096) == b"escrowed"


def test_local_and_server_initiated_deletion(id_server: IdServer, vsc_home: Path) -> None:
    mine = activate(id_server.link("erin"))
    run_vsc("identity", "delete", mine["serial"])
    assert cards() == []
    states = {d["user"]: d["state"] for d in id_server.devices()}
    assert states["erin"] == "deleted"
    theirs = activate(id_server.link("frank"))
    device = next(d for d in id_server.devices() if d["user"] == "frank")
    id_server.admin("POST", f"/admin/devices/{device['id']}/delete")
    result = run_vsc("identity", "status", theirs["serial"], check=False)
    assert result.returncode != 0 and "wiped" in result.stderr
    assert cards() == []


def test_migration_keeps_the_keys_and_moves_the_card(
    id_server: IdServer, tmp_path: Path, inproc: None, request: pytest.FixtureRequest
) -> None:
    target = start_beside(request, id_server, tmp_path / "b")
    try:
        run_vsc("server", "trust", "--data", str(target.data), "--peer-data", str(id_server.data))
        info = activate(id_server.link("gina"))
        before = certs_of(info["serial"])
        run_vsc("identity", "migrate", info["serial"], "--to", target.url, "--to-pin", target.pin, "--pin", USER_PIN)
        after = certs_of(info["serial"])
        assert set(after) == set(before)  # same keys (CKA_ID), new certificates
        ca_b = x509.load_pem_x509_certificate((target.data / "ca.pem").read_bytes())
        assert all(c.issuer == ca_b.subject for c in after.values())
        assert next(c for c in cards() if c["serial"] == info["serial"])["server"] == target.url
        for key_id, cert in after.items():
            verify(cert, sign_with(info["serial"], key_id, b"moved"), b"moved")
        assert {d["user"]: d["state"] for d in id_server.devices()}["gina"] == "migrated"
        run_vsc("identity", "status", info["serial"])  # talks to B now
    finally:
        target.stop()


def test_many_identities_from_several_servers_including_raw_keys(
    id_server: IdServer, tmp_path: Path, inproc: None
) -> None:
    other = start_server(tmp_path / "c")
    try:
        a = activate(id_server.link("hank"))
        b = activate(other.link("hank"), "--label", "hank at C")
        raw = activate(id_server.link("ivy", "raw"))
        listed = {c["serial"]: c for c in cards()}
        assert listed[a["serial"]]["server"] == id_server.url and listed[b["serial"]]["server"] == other.url
        assert len({c["slot"] for c in listed.values()}) == 3
        raw_objs = listed[raw["serial"]]["objects"]
        assert not [o for o in raw_objs if o["kind"] == "cert"]
        key_id = next(o["id"] for o in raw_objs if o["kind"] == "public")
        assert len(sign_with(raw["serial"], key_id, b"raw")) == 64
    finally:
        other.stop()


def _activating_rows(store: Path) -> int:
    """Cards in the store whose activation has not finished (read-only, never waits on a writer)."""
    import sqlite3

    if not store.exists():
        return 0
    try:
        db = sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=1)
        try:
            rows = db.execute("SELECT server FROM cards").fetchall()
        finally:
            db.close()
    except sqlite3.OperationalError:
        return 0
    return sum(1 for (server,) in rows if server and json.loads(server).get("state") == "activating")


def test_killed_activation_leaves_no_card_and_a_new_link_works(
    id_server: IdServer, vsc_home: Path, inproc: None
) -> None:
    import subprocess
    import sys

    from vsc_provider.pkcs11 import slots

    store = vsc_home / "store.sqlite"
    caught = False
    for _ in range(3):  # catch the activation while its card is incomplete (bounded retries)
        complete = len(cards())  # cards finished by an earlier round that was not caught
        proc = subprocess.Popen(
            [sys.executable, "-m", "vsc_provider.cli", "activate", id_server.link("jack"), "--pin", USER_PIN],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 60
            while proc.poll() is None and time.monotonic() < deadline and not _activating_rows(store):
                time.sleep(0.002)
            if proc.poll() is None and _activating_rows(store):
                # killed half-way (SIGKILL releases its store locks; SIGSTOP could freeze a writer)
                proc.kill()
                proc.wait(10)
                caught = _activating_rows(store) == 1
            if caught:  # the incomplete card is in the store, and no process sees it
                assert len(cards()) == complete  # `vsc card list` in another process
                general.initialize(None)
                try:
                    assert len(slots.get_slot_list(False)) == complete  # C_GetSlotList in this process
                finally:
                    general.finalize()
        finally:
            proc.kill()
            proc.wait(10)
        if caught:
            break
    assert caught, "the activation was never seen half-way"
    left = cards()
    assert all(c["server"] == id_server.url and len(c["objects"]) == 4 for c in left) and len(left) <= 1
    activate(id_server.link("jack"))  # a new link works, and the interrupted card is cleaned up
    done = cards()
    assert len(done) == 1 + len(left) and all(len(c["objects"]) == 4 for c in done)
    assert _activating_rows(store) == 0
