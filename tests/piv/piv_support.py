"""A store with a card whose four PIV slots hold keys and certificates (CKA_IDs 01 to 04), made through the
card service as an issuer's import would make them, and the card's management key."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "pkcs11"))

from p11_support import vsc

from vsc_provider.cert_builder import certificate_builder
from vsc_provider.piv import management_key as M
from vsc_provider.piv import objects as O
from vsc_provider.token import access, service
from vsc_provider.token.engine import Card, Engine

PIN = "482915"
SO_PIN = "19283746"  # the PUK
SLOT_KEYS = {0x9A: "rsa2048", 0x9C: "p256", 0x9D: "p256", 0x9E: "p384"}


@dataclass
class PivHome:
    home: Path
    serial: str
    management_key: M.ManagementKey
    certificates: dict[int, x509.Certificate]

    def engine(self) -> Engine:
        return Engine(self.home / "store.sqlite", self.home / "device.key")

    def card(self, engine: Engine) -> Card:
        engine.refresh()
        return next(c for c in engine.cards.values() if c.serial == self.serial)


def self_signed(private: Any, name: str) -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    return certificate_builder(subject, subject, private.public_key(), 30).sign(private, hashes.SHA256())


def new_key(kind: str) -> Any:
    if kind.startswith("rsa"):
        return rsa.generate_private_key(65537, int(kind[3:]))
    return ec.generate_private_key(ec.SECP256R1() if kind == "p256" else ec.SECP384R1())


def make_piv_home(home: Path, mgmt_algorithm: int = O.ALG_AES_192) -> PivHome:
    """A strict card (PIN waiting periods of 0.05 s doubling) with the four slots filled, and its
    management key."""
    out = vsc(home, "card", "create", "--label", "PIV card", "--pin", PIN, "--so-pin", SO_PIN, "--json")
    serial = str(json.loads(out.stdout)["serial"])
    engine = Engine(home / "store.sqlite", home / "device.key")
    engine.refresh()
    card = next(c for c in engine.cards.values() if c.serial == serial)
    access.login(engine, card, PIN.encode())
    certificates = {}
    for slot, kind in SLOT_KEYS.items():
        private = new_key(kind)
        key_id = O.DEFAULT_SLOT_IDS[slot]
        service.import_private_key(engine, card, private, key_id, f"slot {slot:02X}")
        cert = self_signed(private, f"PIV slot {slot:02X}")
        service.store_certificate(
            engine, card, cert.public_bytes(serialization.Encoding.DER), key_id, f"slot {slot:02X}"
        )
        certificates[slot] = cert
    access.logout(engine, card)
    key = M.set_key(engine, card, SO_PIN.encode(), mgmt_algorithm)
    return PivHome(home, serial, key, certificates)
