"""Server-checked PINs, device side: the token's OnlinePinCheck (token/online.py) over the card's server.

The PKCS#11 layer installs `ServerPinCheck` in every engine it starts. Importing this module costs nothing
more than the token does: HTTP, JOSE and HMAC load at the first server-checked PIN, so a host whose cards
are all local never imports them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vsc_provider.ck import constants as C
from vsc_provider.ck.errors import CKRError
from vsc_provider.token import keywrap
from vsc_provider.token.binding import TAMPERED
from vsc_provider.token.online import PinAnswer
from vsc_provider.token.store import CardRecord

if TYPE_CHECKING:
    from vsc_provider.provisioning.http import PinnedClient, ServerError

PIN_VERIFIER_KDF = keywrap.KdfParams()
LOGIN_TIMEOUT = 10.0  # seconds for the whole answer; 5 to connect
CONNECT_TIMEOUT = 5.0


def pin_verifier(pin: bytes, salt: bytes) -> bytes:
    """What the server keeps to check PIN proofs: scrypt of the PIN under its own salt and purpose."""
    return keywrap.derive(b"vsc-pin-verifier:" + pin, salt, PIN_VERIFIER_KDF)


def _client(binding: dict[str, Any]) -> PinnedClient:
    import httpx

    from vsc_provider.provisioning.http import PinnedClient

    timeout = httpx.Timeout(LOGIN_TIMEOUT, connect=CONNECT_TIMEOUT)
    return PinnedClient(binding["url"], binding["pin"], bytes.fromhex(binding["cert"]), timeout=timeout)


class ServerPinCheck:
    """The online PIN check and PIN change over the card's pinned HTTPS link, signed by its device key."""

    def check(self, record: CardRecord, pin: bytes, device_key: bytes) -> PinAnswer:
        from vsc_provider.provisioning import device, wire
        from vsc_provider.provisioning.http import ServerError

        binding = untampered(record)
        try:
            dev = device.DeviceKey.unseal(binding["device_key"], device_key, record.serial)
            verifier = pin_verifier(pin, bytes.fromhex(binding["pin_salt"]))
            with _client(binding) as client:
                nonce = client.nonce()
                payload = {"proof": wire.b64u(wire.pin_proof(verifier, nonce))}
                body = dev.sign(binding["url"] + "/v1/pin", nonce, payload, kid=binding["device"])
                result = client.call("POST", "/v1/pin", body)
        except ServerError as exc:
            raise pin_error(record, exc) from None
        return PinAnswer(dev.open(result["secret"]), bool(result.get("renew")))

    def change(self, record: CardRecord, old_pin: bytes, new_pin: bytes, device_key: bytes) -> bytes:
        from vsc_provider.provisioning import device, wire
        from vsc_provider.provisioning.http import ServerError

        binding = untampered(record)
        dev = device.DeviceKey.unseal(binding["device_key"], device_key, record.serial)
        salt = bytes.fromhex(binding["pin_salt"])
        try:
            with _client(binding) as client:
                info = client.call("GET", "/v1/server")
                nonce = client.nonce()
                payload = {
                    "proof": wire.b64u(wire.pin_proof(pin_verifier(old_pin, salt), nonce)),
                    "pin_verifier": device.jwe_to_server(info["jwks"], pin_verifier(new_pin, salt)),
                }
                body = dev.sign(binding["url"] + "/v1/pin/change", nonce, payload, kid=binding["device"])
                result = client.call("POST", "/v1/pin/change", body)
        except ServerError as exc:
            raise pin_error(record, exc) from None
        return dev.open(result["secret"])


def untampered(record: CardRecord) -> dict[str, Any]:
    """The card's server binding, refused when the engine found its MAC broken (token/binding.py)."""
    binding = record.server or {}
    if binding.get("state") == TAMPERED:
        raise CKRError(
            C.CKR_DEVICE_ERROR,
            f"card {record.serial}: its server binding was changed outside vsc, so it is not used;"
            " delete the card and activate it again",
        )
    return binding


def pin_error(record: CardRecord, exc: ServerError) -> CKRError:
    """The PKCS#11 meaning of the server's refusal of a PIN proof."""
    if exc.error == "pin_incorrect":
        return CKRError(C.CKR_PIN_INCORRECT, f"wrong PIN ({exc.body.get('tries_left')} tries left on the server)")
    if exc.error == "pin_blocked":
        return CKRError(C.CKR_PIN_LOCKED, "the server blocked the PIN: ask its administrator to unblock it")
    if exc.error == "pin_wait":
        return CKRError(C.CKR_FUNCTION_FAILED, f"too many wrong PINs: wait {exc.body.get('retry_after', 0):.0f}s")
    from vsc_provider import log as vlog

    vlog.get("vsc.provisioning").error("server PIN check for card %s failed: %s", record.serial, exc)
    return CKRError(C.CKR_DEVICE_ERROR, f"the card's server cannot check the PIN: {exc}")
