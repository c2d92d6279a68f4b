"""The identity server's HTTP API (Starlette): every device message is a JWS, every secret a JWE.

Handlers verify everything first and change state last, in one transaction whose first statement is
the conditional "use this code / ticket once", so a refused request stores nothing.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import secrets
import time
from dataclasses import dataclass
from hashlib import sha256
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from jwcrypto import jwe as jose_jwe
from jwcrypto import jwk as jose_jwk
from jwcrypto import jws as jose_jws
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from vsc_provider.provisioning import wire
from vsc_provider.server import openapi
from vsc_provider.server.ca import Authority
from vsc_provider.server.db import Database, Device
from vsc_provider.server.escrow import EscrowVault
from vsc_provider.server.profiles import KeyRequest, Profile
from vsc_provider.server.profiles import load as load_profiles

log = logging.getLogger("vsc.server")

PIN_MAX_TRIES = 10
ACTIVATION_TTL = 7 * 24 * 3600.0
TICKET_TTL = 24 * 3600.0
UNCONFIRMED_SWEEP = 100  # devices dropped per sweep at most: a sweep never holds the database for long


def confirm_ttl() -> float:
    """How long an activated device may stay unconfirmed: its activation can be replayed meanwhile, after it
    the device is deleted (its keys retired). VSC_SERVER_CONFIRM_TTL (seconds) shortens it for tests."""
    return float(os.environ.get("VSC_SERVER_CONFIRM_TTL", str(ACTIVATION_TTL)))


class ProtocolError(Exception):
    """A refused request: HTTP status, a machine-readable code and a sentence for people."""

    def __init__(self, status: int, error: str, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.status, self.error, self.detail, self.extra = status, error, detail, extra


def _public_der(key: Any) -> bytes:
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def key_matches(public_key: Any, kind: str) -> bool:
    if kind.startswith("rsa"):
        return isinstance(public_key, rsa.RSAPublicKey) and public_key.key_size == int(kind[3:])
    if kind in ("p256", "p384"):
        want = "secp256r1" if kind == "p256" else "secp384r1"
        return isinstance(public_key, ec.EllipticCurvePublicKey) and public_key.curve.name == want
    return kind == "ed25519" and isinstance(public_key, ed25519.Ed25519PublicKey)


def pin_delay(failures: int) -> float:
    """Growing waits after the third wrong PIN: base, 2*base, 4*base ... capped at an hour."""
    base = float(os.environ.get("VSC_SERVER_PIN_DELAY", "1.0"))
    return 0.0 if failures < 3 else min(base * 2 ** (failures - 3), 3600.0)


def old_key_signature_valid(public: Any, alg: str, signature: bytes, data: bytes) -> bool:
    """A JWS signature (RFC 7518 encodings: ECDSA as r||s) by a card key of any type the profiles allow."""
    try:
        if isinstance(public, rsa.RSAPublicKey) and alg in ("RS256", "RS512"):
            digest: hashes.HashAlgorithm = hashes.SHA256() if alg == "RS256" else hashes.SHA512()
            public.verify(signature, data, padding.PKCS1v15(), digest)
            return True
        if isinstance(public, ec.EllipticCurvePublicKey):
            want = {"secp256r1": ("ES256", hashes.SHA256()), "secp384r1": ("ES384", hashes.SHA384())}
            name, digest = want.get(public.curve.name, ("", hashes.SHA256()))
            half = (public.curve.key_size + 7) // 8
            if alg != name or len(signature) != 2 * half:
                return False
            from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

            der = encode_dss_signature(int.from_bytes(signature[:half], "big"), int.from_bytes(signature[half:], "big"))
            public.verify(der, data, ec.ECDSA(digest))
            return True
        if isinstance(public, ed25519.Ed25519PublicKey) and alg == "EdDSA":
            public.verify(signature, data)
            return True
    except InvalidSignature:
        return False
    return False


def pin_proof(verifier: bytes, nonce: str) -> bytes:
    return hmac.new(verifier, b"vsc-pin-proof:" + nonce.encode(), sha256).digest()


@dataclass
class Verified:
    header: dict[str, Any]
    payload: dict[str, Any]
    key: jose_jwk.JWK
    device: Device | None


class IdentityServer:
    """State shared by the handlers: data directory, CA, database, protocol key, profiles."""

    def __init__(self, data: Path, hosts: list[str]) -> None:
        self.data = data
        self.authority = Authority.load_or_create(data, hosts)
        self.db = Database(data / "server.sqlite")
        self.escrow = EscrowVault(data)
        self._seal_legacy_escrow()
        self.profiles = load_profiles(data)
        self.protocol_key = self._protocol_key()
        self.admin_token = self._admin_token()

    def _protocol_key(self) -> jose_jwk.JWK:
        """The server's JOSE key: signs migration tickets, decrypts JWEs sent to the server."""
        path = self.data / "protocol-key.json"
        if not path.exists():
            key = jose_jwk.JWK.generate(kty="RSA", size=3072)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(key.export_private())
        key = jose_jwk.JWK.from_json(path.read_text())
        key["kid"] = key.thumbprint()
        return key

    def _seal_legacy_escrow(self) -> None:
        """Escrowed keys stored in clear by earlier versions are sealed in place at start-up."""
        for rowid, device_id, key_id, blob in self.db.escrow_rows():
            if not EscrowVault.is_sealed(blob):
                sealed = self.escrow.seal(device_id, key_id, blob)
                with self.db.transaction() as tx:
                    tx.execute("UPDATE keys SET escrow = ? WHERE rowid = ?", (sealed, rowid))

    def _admin_token(self) -> str:
        path = self.data / "admin.json"
        if not path.exists():
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                json.dump({"token": secrets.token_urlsafe(32)}, f)
        return str(json.loads(path.read_text())["token"])

    # --- JOSE -----------------------------------------------------------------------------------

    def verify(self, body: Any, path: str, new_key: bool) -> Verified:
        """A flattened JWS: allowed alg, RSA >= 2048, good signature, url of this endpoint, fresh nonce."""
        if not isinstance(body, dict) or set(body) != {"protected", "payload", "signature"}:
            raise ProtocolError(400, "malformed_jws", "the body is a flattened JWS: protected, payload, signature")
        if not all(isinstance(v, str) for v in body.values()):
            raise ProtocolError(400, "malformed_jws", "JWS members are base64url strings")
        try:
            header = json.loads(wire.unb64u(body["protected"]))
        except (ValueError, UnicodeDecodeError):
            raise ProtocolError(400, "malformed_jws", "the protected header is not base64url JSON") from None
        if not isinstance(header, dict):
            raise ProtocolError(400, "malformed_jws", "the protected header is not a JSON object")
        alg = header.get("alg")
        if alg not in wire.JWS_ALGS:
            raise ProtocolError(400, "bad_alg", f"alg must be one of {', '.join(wire.JWS_ALGS)}")
        if "crit" in header or "b64" in header:
            raise ProtocolError(400, "malformed_jws", "crit and b64 are not supported")
        device = None
        if new_key:
            if "kid" in header or not isinstance(header.get("jwk"), dict):
                raise ProtocolError(400, "bad_key", "a new device key is sent as 'jwk' (and no 'kid')")
            key = self._device_jwk(header["jwk"])
        else:
            kid = header.get("kid")
            if "jwk" in header or not isinstance(kid, str):
                raise ProtocolError(400, "bad_key", "a registered device signs with 'kid' (and no 'jwk')")
            device = self.db.device(kid)
            if device is None:
                raise ProtocolError(401, "unknown_key", "no device is registered with this kid")
            key = jose_jwk.JWK(**device.jwk)
        token = jose_jws.JWS()
        token.allowed_algs = list(wire.JWS_ALGS)
        try:
            token.deserialize(json.dumps(body))
            token.verify(key, alg=alg)
        except Exception:
            raise ProtocolError(401, "bad_signature", "the JWS signature does not verify with the key") from None
        url = header.get("url")
        if not isinstance(url, str) or urlsplit(url).path != path:
            raise ProtocolError(400, "bad_url", f"the protected header's url must name {path}")
        nonce = header.get("nonce")
        if not isinstance(nonce, str) or not self.db.spend_nonce(nonce):
            raise ProtocolError(400, "bad_nonce", "unknown, expired or already used nonce: get a new one")
        try:
            payload = json.loads(token.payload)
        except ValueError:
            raise ProtocolError(400, "malformed_jws", "the payload is not JSON") from None
        if not isinstance(payload, dict):
            raise ProtocolError(400, "malformed_jws", "the payload is not a JSON object")
        if device is not None and device.confirmed is None:
            # the device knows its id, so it has its activation answer: that answer is not replayed any more
            self.db.confirm_device(device.id)
        return Verified(header, payload, key, device)

    @staticmethod
    def _device_jwk(data: dict[str, Any]) -> jose_jwk.JWK:
        if data.get("kty") != "RSA" or not isinstance(data.get("n"), str) or not isinstance(data.get("e"), str):
            raise ProtocolError(400, "bad_key", "device keys are RSA JWKs")
        if any(k in data for k in ("d", "p", "q", "dp", "dq", "qi")):
            raise ProtocolError(400, "bad_key", "never send a private key")
        try:
            bits = int.from_bytes(wire.unb64u(data["n"]), "big").bit_length()
            key = jose_jwk.JWK(kty="RSA", n=data["n"], e=data["e"])
        except Exception:
            raise ProtocolError(400, "bad_key", "malformed RSA JWK") from None
        if bits < wire.MIN_RSA_BITS:
            raise ProtocolError(400, "weak_key", f"device keys have at least {wire.MIN_RSA_BITS} bits")
        return key

    def jwe_to(self, jwk: dict[str, Any], plaintext: bytes) -> str:
        token = jose_jwe.JWE(plaintext, protected=json.dumps({"alg": wire.JWE_ALG, "enc": wire.JWE_ENC}))
        token.add_recipient(jose_jwk.JWK(kty="RSA", n=jwk["n"], e=jwk["e"]))
        return str(token.serialize(compact=True))

    def jwe_open(self, compact: Any) -> bytes:
        if not isinstance(compact, str) or len(compact) > 8192:
            raise ProtocolError(400, "bad_jwe", "expected a compact JWE")
        token = jose_jwe.JWE()
        token.allowed_algs = [wire.JWE_ALG, wire.JWE_ENC]
        try:
            token.deserialize(compact, key=self.protocol_key)
        except Exception:
            raise ProtocolError(400, "bad_jwe", "the JWE does not decrypt with the server's key") from None
        return bytes(token.payload)

    # --- handlers (synchronous: they run in the thread pool) ------------------------------------

    def info(self) -> dict[str, Any]:
        return {
            "protocol": 1,
            "jws_algorithms": list(wire.JWS_ALGS),
            "jwks": {"keys": [self.protocol_key.export_public(as_dict=True)]},
            "ca": wire.b64u(self.authority.cert.public_bytes(serialization.Encoding.DER)),
            "attestation_required": bool(self._attestation_keys()),
        }

    def new_nonce(self) -> str:
        nonce = secrets.token_urlsafe(24)
        self.db.add_nonce(nonce, wire.NONCE_TTL)
        return nonce

    def _offer_for(self, code: Any) -> tuple[str, Profile]:
        if not isinstance(code, str) or not 8 <= len(code) <= 128:
            raise ProtocolError(400, "bad_code", "an activation code is a string of 8 to 128 characters")
        found = self.db.activation(code)
        if found is None:
            raise ProtocolError(404, "unknown_code", "unknown, expired or already used activation code")
        user, profile_name = found
        return user, self.profiles[profile_name]

    def offer(self, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise ProtocolError(400, "malformed", "expected a JSON object with 'code'")
        user, profile = self._offer_for(body.get("code"))
        return {
            "user": user,
            "profile": profile.to_json(),
            "device_key": {"kty": "RSA", "min_bits": wire.MIN_RSA_BITS, "algorithms": list(wire.JWS_ALGS)},
            "attestation_required": bool(self._attestation_keys()),
            "server": {"jwks": {"keys": [self.protocol_key.export_public(as_dict=True)]}},
        }

    def _attestation_keys(self) -> list[jose_jwk.JWK]:
        folder = self.data / "attestation"
        if not folder.is_dir():
            return []
        return [jose_jwk.JWK.from_pem(p.read_bytes()) for p in sorted(folder.glob("*.pem"))]

    def _check_attestation(self, v: Verified) -> bool:
        trusted = self._attestation_keys()
        if not trusted:
            return False
        token = v.payload.get("attestation")
        if not isinstance(token, str) or len(token) > 16384:
            raise ProtocolError(403, "attestation_required", "this server accepts only attested devices")
        for key in trusted:
            checker = jose_jws.JWS()
            checker.allowed_algs = ["RS256", "RS512", "ES256", "ES384"]
            try:
                checker.deserialize(token)
                checker.verify(key)
                claims = json.loads(checker.payload)
            except Exception:  # noqa: S112 - try the next configured key
                continue
            if claims.get("device") == v.key.thumbprint() and claims.get("nonce") == v.header["nonce"]:
                return True
        raise ProtocolError(
            403, "bad_attestation", "the attestation is not signed by a configured key for this request"
        )

    def _csrs(self, v: Verified, requests: list[KeyRequest], allowed_spki: set[str] | None) -> dict[str, Any]:
        """The public key of each requested (device-generated) key, proven by its self-signed CSR."""
        wanted = {r.id: r for r in requests if r.format != "imported"}
        items = v.payload.get("keys")
        if not isinstance(items, list) or len(items) != len(wanted):
            raise ProtocolError(400, "bad_keys", f"expected {len(wanted)} key(s): {', '.join(sorted(wanted))}")
        out: dict[str, Any] = {}
        for item in items:
            if not isinstance(item, dict) or item.get("id") not in wanted or item["id"] in out:
                raise ProtocolError(400, "bad_keys", "each key entry is {id, csr} for a requested key, once")
            req = wanted[item["id"]]
            try:
                csr = x509.load_der_x509_csr(wire.unb64u(str(item.get("csr"))))
                valid = csr.is_signature_valid
                public = csr.public_key()
            except (ValueError, TypeError):
                raise ProtocolError(400, "bad_csr", f"key {req.id}: not a DER PKCS#10 request") from None
            if not valid:
                raise ProtocolError(400, "bad_csr_signature", f"key {req.id}: the CSR's signature does not verify")
            if not key_matches(public, req.type):
                raise ProtocolError(400, "wrong_key_type", f"key {req.id} must be {req.type}")
            if allowed_spki is not None and wire.b64u(sha256(_public_der(public)).digest()) not in allowed_spki:
                raise ProtocolError(400, "unknown_key", f"key {req.id} is not one the migration ticket names")
            out[req.id] = public
        return out

    def _issue(
        self, device_id: str, user: str, jwk: dict[str, Any], requests: list[KeyRequest], publics: dict[str, Any]
    ) -> tuple[list[dict[str, Any]], list[tuple[Any, ...]]]:
        response, rows = [], []
        for req in requests:
            entry: dict[str, Any] = {"id": req.id, "usage": req.usage, "format": req.format}
            escrow = None
            if req.format == "imported":
                private = rsa.generate_private_key(65537, int(req.type[3:]))
                public = private.public_key()
                der = private.private_bytes(
                    serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
                )
                entry["key"] = self.jwe_to(jwk, der)
                escrow = self.escrow.seal(device_id, req.id, der)
            else:
                public = publics[req.id]
            cert_der = None
            if req.format != "jwk":
                cert = self.authority.issue(public, user, req.usage)
                cert_der = cert.public_bytes(serialization.Encoding.DER)
                entry["certificate"] = wire.b64u(cert_der)
            rows.append((device_id, req.id, req.usage, req.format, _public_der(public), cert_der, escrow))
            response.append(entry)
        return response, rows

    def activate(self, body: Any) -> dict[str, Any]:
        self.drop_unconfirmed()
        v = self.verify(body, "/v1/activate", new_key=True)
        code, ticket = v.payload.get("code"), v.payload.get("ticket")
        allowed_spki = None
        ticket_id = None
        if isinstance(code, str) and ticket is None:
            replayed = self._replay(v, code)
            if replayed is not None:
                return replayed
            user, profile = self._offer_for(code)
        elif isinstance(ticket, str) and code is None:
            user, profile, allowed_spki, ticket_id = self._check_ticket(ticket)
        else:
            raise ProtocolError(400, "malformed", "the payload names either a code or a ticket")
        attested = self._check_attestation(v)
        requests = list(profile.keys)
        if ticket_id is not None:
            requests = [r for r in requests if r.format != "imported"]
        publics = self._csrs(v, requests, allowed_spki)
        verifier = secret = None
        if not profile.offline:
            verifier = self.jwe_open(v.payload.get("pin_verifier"))
            if len(verifier) != 32:
                raise ProtocolError(400, "bad_pin_verifier", "the PIN verifier has 32 bytes")
            secret = secrets.token_bytes(32)
        device_id = secrets.token_urlsafe(16)
        jwk = v.key.export_public(as_dict=True)
        keys, rows = self._issue(device_id, user, jwk, requests, publics)
        dev = Device(device_id, user, profile.name, jwk, "active", False, verifier, secret, 0, 0.0)
        with self.db.transaction() as tx:
            if code is not None:
                if not self.db.use_activation(tx, code, device_id):
                    raise ProtocolError(409, "code_used", "this activation code was used meanwhile")
            elif tx.execute("SELECT 1 FROM tickets WHERE id = ?", (ticket_id,)).fetchone():
                raise ProtocolError(409, "ticket_used", "this migration ticket was used already")
            else:
                tx.execute(
                    "INSERT INTO tickets(id, device, target, created) VALUES (?, ?, 'received', ?)",
                    (ticket_id, device_id, time.time()),
                )
            self.db.insert_device(tx, dev, attested)
            for row in rows:
                self.db.insert_key(tx, *row)
        log.info("activated device %s for %s (profile %s)", device_id, user, profile.name)
        out = self._activation_answer(dev, profile, keys)
        if ticket_id is not None:
            receipt = jose_jws.JWS(
                wire.canonical(
                    {"ticket": ticket_id, "device": device_id, "iss": self.public_url(), "iat": int(time.time())}
                )
            )
            receipt.add_signature(
                self.protocol_key, alg="RS256", protected={"alg": "RS256", "kid": self.protocol_key["kid"]}
            )
            out["receipt"] = receipt.serialize(compact=True)
        return out

    def _activation_answer(self, dev: Device, profile: Profile, keys: list[dict[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {
            "device": dev.id,
            "user": dev.user,
            "profile": profile.name,
            "offline": profile.offline,
            "keys": keys,
            "ca": wire.b64u(self.authority.cert.public_bytes(serialization.Encoding.DER)),
        }
        if dev.server_secret is not None:
            out["secret"] = self.jwe_to(dev.jwk, dev.server_secret)
        return out

    def _replay(self, v: Verified, code: str) -> dict[str, Any] | None:
        """The answer to an activation that already succeeded, again, for the same device key.

        A device killed after the server used its code but before it stored the answer asks again with the
        same device key and the same card keys. Replays stop at the device's first kid-signed request
        (it then has its answer) and after confirm_ttl(). Any other key, or a code not used by a device,
        gets None: the caller answers as for any used code. A replay changes nothing on the server."""
        device_id = self.db.code_device(code) if isinstance(code, str) and 8 <= len(code) <= 128 else None
        dev = self.db.device(device_id) if device_id else None
        if dev is None or dev.state != "active" or dev.confirmed is not None:
            return None
        if time.time() > dev.created + confirm_ttl():
            return None
        if not hmac.compare_digest(jose_jwk.JWK(**dev.jwk).thumbprint(), v.key.thumbprint()):
            return None
        profile = self.profiles.get(dev.profile)
        if profile is None:
            return None
        self._check_attestation(v)
        issued = {k["key_id"]: k for k in self.db.active_keys(dev.id)}
        publics = self._csrs(v, [r for r in profile.keys if r.id in issued], None)
        for key_id, public in publics.items():
            if issued[key_id]["spki"] != _public_der(public):
                raise ProtocolError(
                    409, "activation_mismatch", f"key {key_id} is not the key certified at this code's activation"
                )
        if dev.pin_verifier is not None:
            verifier = self.jwe_open(v.payload.get("pin_verifier"))
            if not hmac.compare_digest(verifier, dev.pin_verifier):
                raise ProtocolError(409, "activation_mismatch", "the PIN verifier is not the one of this activation")
        keys = []
        for key_id, row in issued.items():
            entry: dict[str, Any] = {"id": key_id, "usage": row["usage"], "format": row["format"]}
            if row["cert"] is not None:
                entry["certificate"] = wire.b64u(bytes(row["cert"]))
            if row["escrow"] is not None:
                entry["key"] = self.jwe_to(dev.jwk, self.escrow.unseal(dev.id, key_id, bytes(row["escrow"])))
            keys.append(entry)
        log.info("replayed the activation of unconfirmed device %s for %s", dev.id, dev.user)
        return self._activation_answer(dev, profile, keys)

    def drop_unconfirmed(self) -> None:
        """Devices never confirmed within confirm_ttl() of their activation are deleted, their keys retired;
        at most UNCONFIRMED_SWEEP per call (activations and the admin's device list call it)."""
        for device_id in self.db.drop_unconfirmed(time.time() - confirm_ttl(), UNCONFIRMED_SWEEP):
            log.warning("deleted device %s: never confirmed after its activation", device_id)

    def _active(self, v: Verified) -> Device:
        dev = v.device
        assert dev is not None
        if dev.state != "active":
            raise ProtocolError(410, f"device_{dev.state}", f"this device is {dev.state} on the server: wipe the card")
        return dev

    def status(self, body: Any) -> dict[str, Any]:
        v = self.verify(body, "/v1/status", new_key=False)
        assert v.device is not None
        return {"state": v.device.state, "renew": v.device.renew}

    def pin(self, body: Any) -> dict[str, Any]:
        v = self.verify(body, "/v1/pin", new_key=False)
        dev = self._check_pin(v)
        assert dev.server_secret is not None
        return {"secret": self.jwe_to(dev.jwk, dev.server_secret), "renew": dev.renew}

    def _check_pin(self, v: Verified) -> Device:
        """Count the try, then check the proof against the verifier (or a changed one not yet confirmed).

        A proof by the new verifier of a PIN change confirms it: the old one is dropped. Refusals raise."""
        dev = self._active(v)
        if dev.pin_verifier is None or dev.server_secret is None:
            raise ProtocolError(400, "offline_card", "this device's PIN is not checked by the server")
        proof = v.payload.get("proof")
        if not isinstance(proof, str):
            raise ProtocolError(400, "malformed", "the payload has 'proof'")
        now = time.time()
        with self.db.transaction() as tx:
            failures, blocked_until = tx.execute(
                "SELECT pin_failures, pin_blocked_until FROM devices WHERE id = ?", (dev.id,)
            ).fetchone()
            if failures >= PIN_MAX_TRIES:
                raise ProtocolError(423, "pin_blocked", "the PIN is blocked: ask the administrator to unblock it")
            if now < blocked_until:
                raise ProtocolError(429, "pin_wait", "too many wrong PINs: wait", retry_after=blocked_until - now)
            tx.execute("UPDATE devices SET pin_failures = ? WHERE id = ?", (failures + 1, dev.id))
        try:
            given = wire.unb64u(proof)
        except ValueError:
            given = b""
        nonce = v.header["nonce"]
        good = hmac.compare_digest(given, pin_proof(dev.pin_verifier, nonce))
        confirmed = dev.pin_verifier_next is not None and hmac.compare_digest(
            given, pin_proof(dev.pin_verifier_next, nonce)
        )
        if good or confirmed:
            if confirmed:
                self.db.set_device(dev.id, pin_verifier=dev.pin_verifier_next, pin_verifier_next=None)
                dev.pin_verifier, dev.pin_verifier_next = dev.pin_verifier_next, None
            self.db.set_device(dev.id, pin_failures=0, pin_blocked_until=0.0)
            return dev
        counted = failures + 1
        self.db.set_device(dev.id, pin_blocked_until=now + pin_delay(counted))
        if counted >= PIN_MAX_TRIES:
            raise ProtocolError(423, "pin_blocked", "the PIN is blocked: ask the administrator to unblock it")
        raise ProtocolError(403, "pin_incorrect", "wrong PIN", tries_left=PIN_MAX_TRIES - counted)

    def pin_change(self, body: Any) -> dict[str, Any]:
        """A new PIN verifier, accepted with a proof of the current PIN (a wrong one counts like /v1/pin).

        The new verifier works alongside the old one until a proof by the new one confirms it, so a device
        that dies between this answer and re-wrapping its data key still opens with the old PIN."""
        v = self.verify(body, "/v1/pin/change", new_key=False)
        new_verifier = self.jwe_open(v.payload.get("pin_verifier"))
        if len(new_verifier) != 32:
            raise ProtocolError(400, "bad_pin_verifier", "the PIN verifier has 32 bytes")
        dev = self._check_pin(v)
        assert dev.server_secret is not None
        self.db.set_device(dev.id, pin_verifier_next=new_verifier)
        return {"secret": self.jwe_to(dev.jwk, dev.server_secret)}

    def _possession(self, v: Verified, dev: Device) -> dict[str, Any]:
        """The renewal's inner JWS (general JSON serialization): its payload, once every current card key
        has signed it. Each signature is checked against the key the server certified (its certificate,
        or the registered public key for raw-key formats)."""
        jws = v.payload.get("renewal")
        if not isinstance(jws, dict) or not isinstance(jws.get("payload"), str):
            raise ProtocolError(400, "possession_required", "renewal carries a JWS signed by the current card keys")
        signatures = jws.get("signatures")
        if not isinstance(signatures, list) or len(signatures) > 16:
            raise ProtocolError(400, "possession_required", "renewal.signatures is a list, one per current key")
        current = {k["key_id"]: k for k in self.db.active_keys(dev.id) if k["format"] != "imported"}
        signed: set[str] = set()
        for item in signatures:
            if not isinstance(item, dict) or not isinstance(item.get("protected"), str):
                raise ProtocolError(400, "malformed_jws", "each signature has protected and signature")
            try:
                header = json.loads(wire.unb64u(item["protected"]))
                signature = wire.unb64u(str(item.get("signature")))
            except (ValueError, UnicodeDecodeError):
                raise ProtocolError(400, "malformed_jws", "a signature's header or value is not base64url") from None
            kid = header.get("kid") if isinstance(header, dict) else None
            if kid not in current:
                raise ProtocolError(400, "unknown_key", "a renewal signature names no current key of this device")
            key = current[kid]
            public = (
                x509.load_der_x509_certificate(key["cert"]).public_key()
                if key["cert"]
                else serialization.load_der_public_key(key["spki"])
            )
            signing_input = (item["protected"] + "." + jws["payload"]).encode()
            if not old_key_signature_valid(public, str(header.get("alg")), signature, signing_input):
                raise ProtocolError(401, "bad_possession", f"the signature by current key {kid} does not verify")
            signed.add(str(kid))
        if signed != set(current):
            raise ProtocolError(401, "bad_possession", "every current key signs the renewal")
        try:
            inner = json.loads(wire.unb64u(jws["payload"]))
        except (ValueError, UnicodeDecodeError):
            raise ProtocolError(400, "malformed_jws", "the renewal payload is not base64url JSON") from None
        if not isinstance(inner, dict) or inner.get("nonce") != v.header["nonce"] or inner.get("device") != dev.id:
            raise ProtocolError(400, "bad_possession", "the renewal payload names this request's nonce and device")
        return inner

    def renew(self, body: Any) -> dict[str, Any]:
        v = self.verify(body, "/v1/renew", new_key=False)
        dev = self._active(v)
        inner = self._possession(v, dev)
        profile = self.profiles[dev.profile]
        requests = [r for r in profile.keys if r.format != "imported"]
        publics = self._csrs(Verified(v.header, inner, v.key, dev), requests, None)
        keys, rows = self._issue(dev.id, dev.user, dev.jwk, requests, publics)
        with self.db.transaction() as tx:
            tx.execute("UPDATE keys SET active = 0 WHERE device = ? AND format != 'imported'", (dev.id,))
            for row in rows:
                self.db.insert_key(tx, *row)
            tx.execute("UPDATE devices SET renew = 0 WHERE id = ?", (dev.id,))
        return {"device": dev.id, "keys": keys}

    def delete(self, body: Any) -> dict[str, Any]:
        v = self.verify(body, "/v1/delete", new_key=False)
        dev = self._active(v)
        self._set_state(dev.id, "deleted")
        return {"state": "deleted"}

    def _set_state(self, device_id: str, state: str) -> None:
        with self.db.transaction() as tx:
            tx.execute("UPDATE devices SET state = ? WHERE id = ?", (state, device_id))
            tx.execute("UPDATE keys SET active = 0 WHERE device = ?", (device_id,))

    def migration(self, body: Any) -> dict[str, Any]:
        """Server A's side: a signed ticket naming the device's keys and the target's protocol key.

        The device stays A's (active) until it brings back the target's signed receipt (/v1/migration/complete):
        a migration that fails at the target leaves the card working with A."""
        v = self.verify(body, "/v1/migration", new_key=False)
        dev = self._active(v)
        target = v.payload.get("target")
        if not isinstance(target, str) or not target.startswith("https://") or len(target) > 512:
            raise ProtocolError(400, "bad_target", "target is the https URL of the new server")
        target_key_data = v.payload.get("target_key")
        if not isinstance(target_key_data, dict):
            raise ProtocolError(400, "bad_target", "target_key is the new server's protocol key (public RSA JWK)")
        target_key = self._device_jwk(target_key_data)
        keys = self.db.active_keys(dev.id)
        claims = {
            "iss": "vsc-identity-server",
            "jti": secrets.token_urlsafe(16),
            "aud": target.rstrip("/"),
            "aud_key": target_key.thumbprint(),
            "exp": int(time.time() + TICKET_TTL),
            "user": dev.user,
            "profile": dev.profile,
            "keys": [wire.b64u(sha256(k["spki"]).digest()) for k in keys if k["format"] != "imported"],
        }
        token = jose_jws.JWS(wire.canonical(claims))
        token.add_signature(self.protocol_key, alg="RS256", protected={"alg": "RS256", "kid": self.protocol_key["kid"]})
        with self.db.transaction() as tx:
            tx.execute(
                "INSERT INTO tickets(id, device, target, created, target_key, state) VALUES (?, ?, ?, ?, ?, 'issued')",
                (claims["jti"], dev.id, claims["aud"], time.time(), target_key.export_public()),
            )
        return {"ticket": token.serialize(compact=True)}

    def migration_complete(self, body: Any) -> dict[str, Any]:
        """Server A's side, second step: the target's receipt for one of this device's tickets ends the device here."""
        v = self.verify(body, "/v1/migration/complete", new_key=False)
        dev = self._active(v)
        receipt = v.payload.get("receipt")
        if not isinstance(receipt, str) or len(receipt) > 16384:
            raise ProtocolError(400, "bad_receipt", "receipt is the target server's compact JWS")
        checker = jose_jws.JWS()
        checker.allowed_algs = list(wire.JWS_ALGS)
        try:
            checker.deserialize(receipt)
            unverified = json.loads(wire.unb64u(receipt.split(".")[1]))
            ticket_id = str(unverified["ticket"])
        except Exception:
            raise ProtocolError(400, "bad_receipt", "the receipt is not a JWS naming a ticket") from None
        row = self.db.ticket(ticket_id)
        if row is None or row["device"] != dev.id or row["state"] != "issued" or not row["target_key"]:
            raise ProtocolError(400, "bad_receipt", "the receipt names no open migration ticket of this device")
        try:
            checker.verify(jose_jwk.JWK.from_json(row["target_key"]))
        except Exception:
            raise ProtocolError(401, "bad_receipt", "the receipt is not signed by the ticket's target") from None
        with self.db.transaction() as tx:
            done = tx.execute(
                "UPDATE tickets SET state = 'done' WHERE id = ? AND state = 'issued'", (ticket_id,)
            ).rowcount
            if done != 1:
                raise ProtocolError(409, "ticket_used", "this migration was completed already")
            tx.execute("UPDATE devices SET state = 'migrated' WHERE id = ?", (dev.id,))
            tx.execute("UPDATE keys SET active = 0 WHERE device = ?", (dev.id,))
        log.info("device %s migrated to %s", dev.id, row["target"])
        return {"state": "migrated"}

    def _check_ticket(self, ticket: str) -> tuple[str, Profile, set[str], str]:
        """Server B's side: a ticket from a server this one trusts (trusted-servers.json), for this server."""
        path = self.data / "trusted-servers.json"
        trusted = json.loads(path.read_text()) if path.exists() else []
        for entry in trusted:
            checker = jose_jws.JWS()
            checker.allowed_algs = list(wire.JWS_ALGS)
            try:
                checker.deserialize(ticket)
                checker.verify(jose_jwk.JWK(**entry["jwk"]))
                claims = json.loads(checker.payload)
            except Exception:  # noqa: S112 - try the next trusted server
                continue
            if not isinstance(claims, dict) or claims.get("exp", 0) < time.time():
                raise ProtocolError(400, "bad_ticket", "the migration ticket expired")
            if claims.get("aud") != self.public_url():
                raise ProtocolError(400, "bad_ticket", "the migration ticket is for another server")
            if claims.get("aud_key") != self.protocol_key.thumbprint():
                raise ProtocolError(400, "bad_ticket", "the migration ticket names another server key")
            profile = self.profiles.get(str(claims.get("profile")))
            if profile is None:
                raise ProtocolError(400, "bad_ticket", "this server has no profile of that name")
            return str(claims["user"]), profile, set(claims.get("keys", [])), str(claims["jti"])
        raise ProtocolError(403, "bad_ticket", "the ticket is not signed by a server this one trusts")

    def public_url(self) -> str:
        path = self.data / "server.json"
        return str(json.loads(path.read_text())["url"]) if path.exists() else ""

    # --- admin --------------------------------------------------------------------------------

    def check_admin(self, request: Request) -> None:
        auth = request.headers.get("authorization", "")
        if not auth.startswith("Bearer ") or not hmac.compare_digest(auth[7:].encode(), self.admin_token.encode()):
            raise ProtocolError(401, "unauthorized", "admin requests carry the bearer token from admin.json")

    def create_activation(self, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise ProtocolError(400, "malformed", "expected a JSON object")
        user, profile = body.get("user"), body.get("profile", "default")
        if not isinstance(user, str) or not 1 <= len(user) <= 64 or not user.isprintable():
            raise ProtocolError(400, "bad_user", "user is 1 to 64 printable characters")
        if profile not in self.profiles:
            raise ProtocolError(400, "bad_profile", f"profile is one of {', '.join(sorted(self.profiles))}")
        code = secrets.token_urlsafe(18)
        self.db.add_activation(code, user, profile, ACTIVATION_TTL)
        link = wire.ActivationLink(self.public_url(), code, self.authority.tls_pin)
        return {"link": str(link), "user": user, "profile": profile, "expires_in": ACTIVATION_TTL}

    def admin_device(self, device_id: str, action: str) -> dict[str, Any]:
        if self.db.device(device_id) is None:
            raise ProtocolError(404, "unknown_device", "no such device")
        if action == "delete":
            self._set_state(device_id, "deleted")
        elif action == "renew":
            self.db.set_device(device_id, renew=1)
        elif action == "unblock":
            self.db.set_device(device_id, pin_failures=0, pin_blocked_until=0.0)
        else:
            raise ProtocolError(404, "unknown_action", "actions: delete, renew, unblock")
        return {"device": device_id, "done": action}


# --- Starlette glue -------------------------------------------------------------------------------


async def _json_body(request: Request) -> Any:
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > wire.MAX_BODY):
        raise ProtocolError(413, "too_large", f"bodies are at most {wire.MAX_BODY} bytes")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > wire.MAX_BODY:
            raise ProtocolError(413, "too_large", f"bodies are at most {wire.MAX_BODY} bytes")
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise ProtocolError(400, "malformed", "the body is not JSON") from None


def _error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, ProtocolError)
    headers = {"Retry-After": str(int(exc.extra["retry_after"]) + 1)} if "retry_after" in exc.extra else None
    return JSONResponse({"error": exc.error, "detail": exc.detail, **exc.extra}, exc.status, headers=headers)


def _http_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return JSONResponse({"error": "http", "detail": str(exc.detail)}, exc.status_code)


def _crash(_: Request, exc: Exception) -> Response:
    log.exception("internal error", exc_info=exc)
    return JSONResponse({"error": "internal", "detail": "internal server error"}, 500)


def create_app(server: IdentityServer) -> Starlette:
    def device_call(handler: Any) -> Any:
        async def endpoint(request: Request) -> Response:
            body = await _json_body(request)
            result = await run_in_threadpool(handler, body)
            return JSONResponse(result, headers={"Cache-Control": "no-store"})

        return endpoint

    async def info(_: Request) -> Response:
        return JSONResponse(server.info())

    async def nonce(_: Request) -> Response:
        value = await run_in_threadpool(server.new_nonce)
        return JSONResponse({"nonce": value}, headers={"Replay-Nonce": value, "Cache-Control": "no-store"})

    async def spec(_: Request) -> Response:
        return JSONResponse(openapi.SPEC)

    async def admin_activation(request: Request) -> Response:
        server.check_admin(request)
        body = await _json_body(request)
        return JSONResponse(await run_in_threadpool(server.create_activation, body), 201)

    async def admin_devices(request: Request) -> Response:
        server.check_admin(request)
        await run_in_threadpool(server.drop_unconfirmed)
        return JSONResponse({"devices": await run_in_threadpool(server.db.devices)})

    async def admin_device(request: Request) -> Response:
        server.check_admin(request)
        result = await run_in_threadpool(
            server.admin_device, request.path_params["device"], request.path_params["action"]
        )
        return JSONResponse(result)

    routes = [
        Route("/openapi.json", spec, methods=["GET"]),
        Route("/v1/server", info, methods=["GET"]),
        Route("/v1/nonce", nonce, methods=["GET"]),
        Route("/v1/offer", device_call(server.offer), methods=["POST"]),
        Route("/v1/activate", device_call(server.activate), methods=["POST"]),
        Route("/v1/status", device_call(server.status), methods=["POST"]),
        Route("/v1/pin", device_call(server.pin), methods=["POST"]),
        Route("/v1/pin/change", device_call(server.pin_change), methods=["POST"]),
        Route("/v1/renew", device_call(server.renew), methods=["POST"]),
        Route("/v1/delete", device_call(server.delete), methods=["POST"]),
        Route("/v1/migration", device_call(server.migration), methods=["POST"]),
        Route("/v1/migration/complete", device_call(server.migration_complete), methods=["POST"]),
        Route("/admin/activations", admin_activation, methods=["POST"]),
        Route("/admin/devices", admin_devices, methods=["GET"]),
        Route("/admin/devices/{device}/{action}", admin_device, methods=["POST"]),
    ]
    return Starlette(
        routes=routes, exception_handlers={ProtocolError: _error, HTTPException: _http_error, Exception: _crash}
    )
