"""Create a SoftHSM2 token and a vsc card holding the same key set, so both modules do identical work.

    python softhsm-config/make_token.py DIR [--label bench] [--find-sizes 1,100,1000] [--no-vsc]

DIR receives: softhsm2.conf (from softhsm2.conf.in) and tokens/, the SoftHSM token LABEL with RSA-2048,
RSA-3072, EC P-256, EC P-384 and Ed25519 key pairs and certificates; keys/*.pem, the same private keys
for the raw `cryptography` floor; ca.pem, the throw-away CA that issued every certificate; vsc/, a
VSC_HOME with a card LABEL holding freshly generated keys of the same types (made with the `vsc` CLI)
and certificates; for each N in --find-sizes, a token/card "find-N" holding N objects (one P-256 key
pair and N-2 data objects, or just the public key for N=1); env.json describing all of it.
Key labels are the key types (rsa2048, rsa3072, p256, p384, ed25519) on both tokens.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from asn1crypto.core import ObjectIdentifier, OctetString
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID

from vsc_provider.token import curves

HERE = Path(__file__).resolve().parent
SOFTHSM_MODULE = "/usr/lib/softhsm/libsofthsm2.so"
USER_PIN = "482915"
SO_PIN = "19283746"
KEY_TYPES = ("rsa2048", "rsa3072", "p256", "p384", "ed25519")
CURVES: dict[str, tuple[ec.EllipticCurve, str]] = {
    kind: (curves.ec_curve(curves.KINDS[kind]), curves.KINDS[kind]) for kind in ("p256", "p384")
}
ED25519_OID = curves.ED25519_OID
PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey


def write_config(directory: Path) -> Path:
    """softhsm2.conf for a token directory inside DIR; returns the config's path."""
    tokens = directory / "tokens"
    tokens.mkdir(parents=True, exist_ok=True)
    conf = directory / "softhsm2.conf"
    conf.write_text((HERE / "softhsm2.conf.in").read_text().replace("@TOKENDIR@", str(tokens)))
    return conf


def new_key(kind: str) -> PrivateKey:
    if kind.startswith("rsa"):
        return rsa.generate_private_key(65537, int(kind[3:]))
    if kind in CURVES:
        return ec.generate_private_key(CURVES[kind][0])
    if kind == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    raise ValueError(f"unknown key type {kind}")


def make_ca(directory: Path) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "vsc benchmark CA")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    (directory / "ca.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key, cert


def issue(ca: tuple[ec.EllipticCurvePrivateKey, x509.Certificate], public: PublicKey, name: str) -> x509.Certificate:
    ca_key, ca_cert = ca
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_cert.subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=365))
        .sign(ca_key, hashes.SHA256())
    )


def _ec_point(public: ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey) -> bytes:
    raw = public.public_bytes(
        serialization.Encoding.X962 if isinstance(public, ec.EllipticCurvePublicKey) else serialization.Encoding.Raw,
        serialization.PublicFormat.UncompressedPoint
        if isinstance(public, ec.EllipticCurvePublicKey)
        else serialization.PublicFormat.Raw,
    )
    return OctetString(raw).dump()


def key_attributes(kind: str, key: PrivateKey, key_id: bytes) -> tuple[dict[Any, Any], dict[Any, Any]]:
    """python-pkcs11 templates (private, public) that import KEY as a token key pair labelled KIND."""
    from pkcs11 import Attribute, KeyType, ObjectClass

    common = {Attribute.TOKEN: True, Attribute.LABEL: kind, Attribute.ID: key_id}
    private: dict[Any, Any] = {
        **common,
        Attribute.CLASS: ObjectClass.PRIVATE_KEY,
        Attribute.PRIVATE: True,
        Attribute.SENSITIVE: True,
        Attribute.EXTRACTABLE: False,
        Attribute.SIGN: True,
    }
    public: dict[Any, Any] = {**common, Attribute.CLASS: ObjectClass.PUBLIC_KEY, Attribute.VERIFY: True}
    if isinstance(key, rsa.RSAPrivateKey):
        n = key.private_numbers()
        big = _big
        rsa_public = {Attribute.MODULUS: big(n.public_numbers.n), Attribute.PUBLIC_EXPONENT: big(n.public_numbers.e)}
        private.update(rsa_public)
        private.update(
            {
                Attribute.KEY_TYPE: KeyType.RSA,
                Attribute.DECRYPT: True,
                Attribute.PRIVATE_EXPONENT: big(n.d),
                Attribute.PRIME_1: big(n.p),
                Attribute.PRIME_2: big(n.q),
                Attribute.EXPONENT_1: big(n.dmp1),
                Attribute.EXPONENT_2: big(n.dmq1),
                Attribute.COEFFICIENT: big(n.iqmp),
            },
        )
        public.update(rsa_public)
        public.update({Attribute.KEY_TYPE: KeyType.RSA, Attribute.ENCRYPT: True})
    elif isinstance(key, ec.EllipticCurvePrivateKey):
        params = ObjectIdentifier(CURVES[kind][1]).dump()
        size = (key.curve.key_size + 7) // 8
        private.update(
            {
                Attribute.KEY_TYPE: KeyType.EC,
                Attribute.EC_PARAMS: params,
                Attribute.VALUE: key.private_numbers().private_value.to_bytes(size, "big"),
            }
        )
        public.update(
            {
                Attribute.KEY_TYPE: KeyType.EC,
                Attribute.EC_PARAMS: params,
                Attribute.EC_POINT: _ec_point(key.public_key()),
            }
        )
    else:
        params = ObjectIdentifier(ED25519_OID).dump()
        raw = key.private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
        )
        private.update({Attribute.KEY_TYPE: KeyType.EC_EDWARDS, Attribute.EC_PARAMS: params, Attribute.VALUE: raw})
        public.update(
            {
                Attribute.KEY_TYPE: KeyType.EC_EDWARDS,
                Attribute.EC_PARAMS: params,
                Attribute.EC_POINT: _ec_point(key.public_key()),
            }
        )
    return private, public


def _big(value: int) -> bytes:
    return value.to_bytes((value.bit_length() + 7) // 8 or 1, "big")


def cert_attributes(cert: x509.Certificate, label: str, key_id: bytes) -> dict[Any, Any]:
    from pkcs11 import Attribute, CertificateType, ObjectClass

    return {
        Attribute.CLASS: ObjectClass.CERTIFICATE,
        Attribute.CERTIFICATE_TYPE: CertificateType.X_509,
        Attribute.TOKEN: True,
        Attribute.PRIVATE: False,
        Attribute.LABEL: label,
        Attribute.ID: key_id,
        Attribute.SUBJECT: cert.subject.public_bytes(),
        Attribute.ISSUER: cert.issuer.public_bytes(),
        Attribute.SERIAL_NUMBER: _big(cert.serial_number),
        Attribute.VALUE: cert.public_bytes(serialization.Encoding.DER),
    }


def softhsm_init_token(conf: Path, label: str, pin: str, so_pin: str) -> None:
    subprocess.run(
        ["softhsm2-util", "--init-token", "--free", "--label", label, "--pin", pin, "--so-pin", so_pin],
        check=True,
        capture_output=True,
        env={**os.environ, "SOFTHSM2_CONF": str(conf)},
    )


def fill_softhsm(lib: Any, label: str, pin: str, keys: dict[str, PrivateKey], ca: Any, certs: Path) -> None:
    """Import the key pairs and issue + import their certificates."""
    with lib.get_token(token_label=label).open(rw=True, user_pin=pin) as session:
        for index, (kind, key) in enumerate(keys.items(), 1):
            key_id = bytes([index]) * 4
            private, public = key_attributes(kind, key, key_id)
            session.create_object(private)
            session.create_object(public)
            cert = issue(ca, key.public_key(), f"softhsm {kind}")
            (certs / f"softhsm-{kind}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
            session.create_object(cert_attributes(cert, kind, key_id))


def read_public_key(session: Any, label: str) -> PublicKey:
    """The public key labelled LABEL on a token, as a `cryptography` object."""
    from pkcs11 import Attribute, KeyType, ObjectClass

    obj = session.get_key(object_class=ObjectClass.PUBLIC_KEY, label=label)
    if obj.key_type == KeyType.RSA:
        n = int.from_bytes(obj[Attribute.MODULUS], "big")
        e = int.from_bytes(obj[Attribute.PUBLIC_EXPONENT], "big")
        return rsa.RSAPublicNumbers(e, n).public_key()
    point = obj[Attribute.EC_POINT]
    raw = (
        OctetString.load(point).native
        if point[:1] == b"\x04" and len(point) > 2 and point[1] == len(point) - 2
        else point
    )
    if obj.key_type == KeyType.EC_EDWARDS:
        return ed25519.Ed25519PublicKey.from_public_bytes(raw)
    return ec.EllipticCurvePublicKey.from_encoded_point(CURVES[label][0], raw)


def vsc(*args: str, home: Path) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "vsc_provider.cli", *args],
        check=False,
        capture_output=True,
        text=True,
        env={**os.environ, "VSC_HOME": str(home)},
        stdin=subprocess.DEVNULL,
    )
    if result.returncode != 0:
        raise RuntimeError(f"vsc {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout


def vsc_module_path() -> str:
    return vsc("module", "path", home=Path(os.environ.get("VSC_HOME", "/nonexistent"))).strip()


def make_vsc_card(home: Path, label: str, pin: str, so_pin: str, kinds: tuple[str, ...]) -> None:
    vsc("card", "create", "--label", label, "--pin", pin, "--so-pin", so_pin, home=home)
    for kind in kinds:
        vsc("key", "generate", "--card", label, "--type", kind, "--label", kind, "--pin", pin, home=home)


def certify_vsc(lib: Any, home: Path, label: str, pin: str, kinds: tuple[str, ...], ca: Any, certs: Path) -> None:
    with lib.get_token(token_label=label).open(user_pin=pin) as session:
        publics = {kind: read_public_key(session, kind) for kind in kinds}
    for kind, public in publics.items():
        path = certs / f"vsc-{kind}.pem"
        path.write_bytes(issue(ca, public, f"vsc {kind}").public_bytes(serialization.Encoding.PEM))
        vsc("cert", "import", "--card", label, str(path), "--label", kind, "--pin", pin, home=home)


def pad_token(lib: Any, label: str, pin: str, count: int) -> None:
    """Bring a token holding one P-256 key pair up to COUNT objects with small data objects."""
    from pkcs11 import Attribute, ObjectClass

    with lib.get_token(token_label=label).open(rw=True, user_pin=pin) as session:
        if count == 1:
            session.get_key(object_class=ObjectClass.PRIVATE_KEY, label="p256").destroy()
        for i in range(max(0, count - 2)):
            session.create_object(
                {
                    Attribute.CLASS: ObjectClass.DATA,
                    Attribute.TOKEN: True,
                    Attribute.PRIVATE: False,
                    Attribute.LABEL: f"pad-{i:05d}",
                    Attribute.APPLICATION: "vsc-bench",
                    Attribute.VALUE: i.to_bytes(4, "big"),
                }
            )


def make(directory: Path, label: str, pin: str, so_pin: str, find_sizes: list[int], with_vsc: bool) -> dict[str, Any]:
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    (directory / "keys").mkdir()
    certs = directory / "certs"
    certs.mkdir()
    conf = write_config(directory)
    home = directory / "vsc"
    os.environ["SOFTHSM2_CONF"] = str(conf)
    os.environ["VSC_HOME"] = str(home)
    import pkcs11

    keys = {kind: new_key(kind) for kind in KEY_TYPES}
    for kind, key in keys.items():
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        (directory / "keys" / f"{kind}.pem").write_bytes(pem)
    ca = make_ca(directory)
    find_labels = {n: f"find-{n}" for n in find_sizes}
    softhsm_init_token(conf, label, pin, so_pin)
    for find_label in find_labels.values():
        softhsm_init_token(conf, find_label, pin, so_pin)
    env: dict[str, Any] = {
        "label": label,
        "pin": pin,
        "so_pin": so_pin,
        "keys": list(KEY_TYPES),
        "find_tokens": {str(n): lbl for n, lbl in find_labels.items()},
        "softhsm_conf": str(conf),
        "softhsm_module": SOFTHSM_MODULE,
        "keys_dir": str(directory / "keys"),
    }
    softhsm = pkcs11.lib(SOFTHSM_MODULE)
    fill_softhsm(softhsm, label, pin, keys, ca, certs)
    for n, find_label in find_labels.items():
        find_keys: dict[str, PrivateKey] = {"p256": keys["p256"]}
        with softhsm.get_token(token_label=find_label).open(rw=True, user_pin=pin) as session:
            private, public = key_attributes("p256", find_keys["p256"], b"\x07" * 4)
            session.create_object(private)
            session.create_object(public)
        pad_token(softhsm, find_label, pin, n)
    if with_vsc:
        make_vsc_card(home, label, pin, so_pin, KEY_TYPES)
        for find_label in find_labels.values():
            make_vsc_card(home, find_label, pin, so_pin, ("p256",))
        module = vsc_module_path()
        vsc_lib = pkcs11.lib(module)
        certify_vsc(vsc_lib, home, label, pin, KEY_TYPES, ca, certs)
        for n, find_label in find_labels.items():
            pad_token(vsc_lib, find_label, pin, n)
        env.update(vsc_home=str(home), vsc_module=module)
    (directory / "env.json").write_text(json.dumps(env, indent=2) + "\n")
    return env


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("directory", type=Path)
    parser.add_argument("--label", default="bench")
    parser.add_argument("--pin", default=USER_PIN)
    parser.add_argument("--so-pin", default=SO_PIN)
    parser.add_argument("--find-sizes", default="1,100,1000", help="comma-separated object counts ('' for none)")
    parser.add_argument("--no-vsc", action="store_true", help="only the SoftHSM token")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.find_sizes.split(",") if s.strip()]
    env = make(args.directory.resolve(), args.label, args.pin, args.so_pin, sizes, not args.no_vsc)
    print(json.dumps(env, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
