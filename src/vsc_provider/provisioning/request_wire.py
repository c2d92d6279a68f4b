"""What both ends of the requests protocol (docs/protocol.md, "Requests") agree on: the signed documents'
`typ`, the signature algorithms and their hashes, the limits, and the display hash.

The server (vsc_provider.server.requests and friends) and the device (vsc_provider.requests) both import
this module, so each constant is written down once.
"""

from __future__ import annotations

import hashlib

from vsc_provider.provisioning import wire

REQUEST_TYP = "vsc-request"  # the payload of the request document the server signs for a device
AUTH_TYP = "vsc-auth"  # the payload the card signs to answer an auth request

KINDS = ("auth", "sign")
FORMATS = ("jws", "cms")
STATES = ("PENDING", "APPROVED", "REJECTED", "EXPIRED", "CANCELLED")
FINAL_STATES = STATES[1:]
DECISIONS = ("approve", "reject")

# the card signature algorithms a request may ask for (JOSE names) and the hash each one signs with
ALG_HASH = {"RS256": "sha256", "RS512": "sha512", "PS256": "sha256", "ES256": "sha256", "ES384": "sha384"}
ALGS = tuple(ALG_HASH)
RSA_ALGS = ("RS256", "RS512", "PS256")
EC_ALGS = {"ES256": "secp256r1", "ES384": "secp384r1"}  # alg -> the curve of the key (cryptography's name)
ECDSA_SIZES = {"ES256": 32, "ES384": 48}  # bytes per coordinate: a JWS signature is r||s of twice that
HASH_BY_LENGTH = {32: "sha256", 48: "sha384", 64: "sha512"}  # an RP's `hash` names its algorithm by length

METADATA_TYPES = ("text", "pdf", "image", "raw")
MAX_METADATA_ITEMS = 8
MAX_LABEL = 100  # characters
METADATA_LIMITS = {"text": 4 * 1024, "raw": 64 * 1024, "image": 1024 * 1024, "pdf": 2 * 1024 * 1024}  # bytes
IMAGE_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a")
PDF_MAGIC = b"%PDF-"
MAX_DATA = 1024 * 1024  # `data` to sign
MAX_RP_BODY = 4 * 1024 * 1024
TTL_RANGE = (10, 86400)
DEFAULT_TTL = 300
CHALLENGE_BYTES = 32
IAT_SKEW = 60  # seconds a request's or answer's iat may lie in the future

API_KEY_PREFIX = "vsc_rp_"

PUSH_KEEPALIVE = 15.0  # seconds between `: keep-alive` comments
PUSH_MAX_STREAM = 600.0  # the server ends a push stream after this many seconds
PUSH_BACKOFF = (0.5, 30.0)  # device reconnect back-off: first delay, doubling up to the second


def display_hash(payload: bytes) -> str:
    """b64u SHA-256 of the request document's payload bytes as received: it covers everything shown."""
    return wire.b64u(hashlib.sha256(payload).digest())


def digest(hash_name: str, data: bytes) -> bytes:
    """The digest of `data` with one of the hashes above (sha256, sha384, sha512)."""
    if hash_name not in ("sha256", "sha384", "sha512"):
        raise ValueError(f"unsupported hash {hash_name}")
    return hashlib.new(hash_name, data).digest()
