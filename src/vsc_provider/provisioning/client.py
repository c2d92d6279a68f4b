"""The provisioning protocol as the device runs it after activation (activation.py): signed device calls,
status, renew, delete, migrate.

A card's server binding (the `server` JSON of its store record) holds the server URL, the TLS pin and
certificate, the device id, the sealed device key and the ids of the keys the server knows.
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

from vsc_provider import api, processes
from vsc_provider import log as vlog
from vsc_provider.ck import constants as C
from vsc_provider.ck.errors import CKRError
from vsc_provider.provisioning import card_install, card_keys, device, online, wire
from vsc_provider.provisioning.http import PinnedClient, ServerError
from vsc_provider.provisioning.online import pin_verifier
from vsc_provider.token import card_lock, curves, service
from vsc_provider.token.engine import Card, Engine

log = vlog.get("vsc.provisioning")

RENEWAL_LOCK = "renewal"  # card_lock purpose: one renewal of a card at a time


class CardWiped(Exception):
    """The server deleted (or migrated away) the card's identity; the card was wiped here."""


def purge_unfinished(eng: Engine) -> int:
    """Cards left by an activation that was killed half-way (its process is gone) are removed.

    Until then they are hidden from every other process (Engine.hidden): no slot, no `vsc card list` line."""
    eng.refresh(force=True)
    gone = 0
    for rec in list(eng.hidden.values()):
        binding = rec.server or {}
        if binding.get("state") == "activating" and not processes.alive(int(binding.get("pid", 0))):
            log.info("removing card %s left by an interrupted activation", rec.serial)
            eng.delete_card(rec.id)
            gone += 1
    return gone


def pinned_client(binding: dict[str, Any]) -> PinnedClient:
    """A client of the card's server: the key pinned at activation, the keys announced since, its CA."""
    return PinnedClient.for_binding(binding)


def signed_body(
    binding: dict[str, Any], serial: str, client: PinnedClient, path: str, payload: dict[str, Any], eng: Engine
) -> dict[str, Any]:
    """A device call's body: the payload in a JWS by the card's device key (kid), with a fresh nonce."""
    key = device.DeviceKey.unseal(binding["device_key"], eng.device_key, serial)
    nonce = client.nonce()
    return key.sign(
        binding["url"] + path, nonce, device.tpm_attested(binding, key, path, payload, nonce), kid=binding["device"]
    )


def _signed_call(binding: dict[str, Any], serial: str, path: str, payload: dict[str, Any], eng: Engine) -> Any:
    with pinned_client(binding) as client:
        return client.call("POST", path, signed_body(binding, serial, client, path, payload, eng))


def active_binding(card: Card) -> dict[str, Any]:
    """The card's binding to its server, refused unless active and intact (an edited one reads `tampered`)."""
    binding = online.untampered(card.record)
    if binding.get("state") != "active":
        raise CKRError(C.CKR_FUNCTION_FAILED, "this card is not bound to a server")
    return dict(binding)


def device_call(card: Card, path: str, payload: dict[str, Any], eng: Engine) -> dict[str, Any]:
    binding = active_binding(card)
    try:
        return dict(_signed_call(binding, card.serial, path, payload, eng))
    except ServerError as exc:
        if exc.status == 410 and exc.error in ("device_deleted", "device_migrated"):
            wipe(eng, card)
            raise CardWiped(
                f"the server {exc.error.split('_')[1]} this card's identity: card {card.serial} wiped"
            ) from None
        raise


def wipe(eng: Engine, card: Card) -> None:
    log.warning("wiping card %s (%s) as its server asked", card.serial, card.label)
    eng.delete_card(card.slot_id)


# --- activation -------------------------------------------------------------------------------------


# --- later calls ------------------------------------------------------------------------------------


def status(ref: str, pin: str | None = None) -> dict[str, Any]:
    """Contact the server: wipes the card if the server deleted it; acts on a server-set renewal flag.

    With the PIN a requested renewal is done at once; without it the card is marked (`vsc card list`
    shows "renewal requested") and renewed by the next `vsc` command that has the PIN."""
    eng: Engine = api.engine()
    card = api.find_card(ref)
    _finish_release(eng, card)
    result = device_call(card, "/v1/status", {}, eng)
    if result.get("state") in ("deleted", "migrated"):
        wipe(eng, card)
        raise CardWiped(f"the server {result['state']} this card's identity: card {card.serial} wiped")
    learn_server(eng, card)
    if "unblock" in result:
        _unblock(eng, card, result["unblock"])
        result = device_call(card, "/v1/status", {"unblocked": True}, eng)
        result["unblocked"] = True
    wanted = bool(result.get("renew"))
    if wanted and pin is not None:
        renew(ref, pin)
        result["renewed"] = True
    elif wanted != bool((card.record.server or {}).get("renew_requested")):
        eng.mark_renewal(card.slot_id, wanted)
    return result


def learn_server(eng: Engine, card: Card) -> dict[str, Any] | None:
    """Fetch GET /v1/server (pinned) and keep in the binding what the card needs of it: the TLS keys the server
    announces (a JWS by its protocol key) and its CA, so the card still reaches it after `vsc server rotate-tls
    --switch` even if it is offline at that moment; and its protocol keys, which sign requests. Returns those
    keys (a JWKS), or None when the answer has none."""
    binding = active_binding(card)
    with PinnedClient.for_binding(binding) as client:
        info = client.call("GET", "/v1/server")
    kept: dict[str, Any] = {}
    jwks = info.get("jwks")
    if isinstance(jwks, dict):
        kept["server_jwks"] = jwks
    try:
        if "tls" in info:  # servers announce; the card keeps what it has when one does not
            pins, retire = tls_pins(info)
            kept.update(tls_pins=pins, tls_retire=retire, tls_ca=wire.unb64u(info["ca"]).hex())
    except (KeyError, TypeError, ValueError) as exc:
        log.warning("card %s: the server's TLS announcement is not usable: %s", card.serial, exc)
    if any(binding.get(name) != value for name, value in kept.items()):
        eng.edit_binding(card.slot_id, lambda b: {**b, **kept} if b.get("state") == "active" else None)
    return kept.get("server_jwks")


def tls_pins(info: dict[str, Any]) -> tuple[list[str], dict[str, int]]:
    """The pins of a /v1/server answer's TLS announcement, checked with its protocol key, and the retired
    ones with the time from which they are refused."""
    from jwcrypto import jwk, jws
    from jwcrypto.common import JWException

    token = jws.JWS()
    try:
        token.deserialize(info["tls"]["announcement"])
        token.verify(jwk.JWK(**info["jwks"]["keys"][0]), alg="RS256")
    except JWException as exc:
        raise ValueError(f"the announcement does not verify: {exc}") from None
    claims = json.loads(token.payload)
    if claims.get("typ") != "vsc-tls-pins" or not all(isinstance(p, str) for p in claims.get("pins", [None])):
        raise ValueError("not a TLS pin announcement")
    retire = claims.get("retire", {})
    if not isinstance(retire, dict) or not all(isinstance(t, int) for t in retire.values()):
        raise ValueError("not a TLS pin announcement")
    return list(claims["pins"]), {str(pin): int(until) for pin, until in retire.items()}


def _unblock(eng: Engine, card: Card, sealed_so_pin: str) -> None:
    """The administrator unblocked the card's PIN on the server: the card's own counter is cleared with the
    SO PIN the server kept since activation (sent back in a JWE to the device key)."""
    binding = online.untampered(card.record)
    dev = device.DeviceKey.unseal(binding["device_key"], eng.device_key, card.serial)
    eng.unblock_user(card, dev.open(sealed_so_pin))
    log.info("card %s: the PIN's wrong-try counter was cleared by the server's administrator", card.serial)


def renew_if_requested(ref: str, pin: str) -> bool:
    """Renew now if the card's server asked for it (its certificates near their end, or the admin): the flag
    recorded at a contact without the PIN (`vsc identity status`, a C_Login of an online card, this command's
    own login included). Called by `vsc card show --pin` and by approvals (`vsc requests approve`, the agent)
    once their own work is done. One renewal of a card at a time across processes: the flag is read again
    under the card's renewal lock, so a second caller finds it gone. A renewal that fails, whatever the
    reason, is logged in one line and left for the next time; the command's own result stands."""
    eng: Engine = api.engine()
    eng.refresh()
    card = api.find_card(ref)
    if not (card.record.server or {}).get("renew_requested"):
        return False
    try:
        with card_lock.held(eng.store.path, card.serial, RENEWAL_LOCK):
            eng.refresh(force=True)
            card = api.find_card(card.serial)
            if not (card.record.server or {}).get("renew_requested"):
                return False  # another process renewed it while this one waited
            _renew(card.serial, pin)
    except Exception as exc:  # the caller's work is done: whatever failed here is tried again next time
        reason = str(exc) if isinstance(exc, ServerError | CKRError) else f"{type(exc).__name__}: {exc}"
        log.warning("card %s: the renewal its server asked for failed, tried again next time: %s", card.serial, reason)
        return False
    log.info("card %s: renewed, as its server asked", card.serial)
    return True


def delete(ref: str, force: bool = False) -> None:
    """Tell the server, then wipe (with force: wipe even when the server cannot be told)."""
    eng: Engine = api.engine()
    card = api.find_card(ref)
    try:
        device_call(card, "/v1/delete", {}, eng)
    except CardWiped:
        return
    except (ServerError, CKRError):  # CKRError: the call could not be made (its TPM attestation key, on a copy)
        if not force:
            raise
    eng.delete_card(card.slot_id)


def renew(ref: str, pin: str) -> api.CardInfo:
    """New keys on the device, certificates for them, then the old keys destroyed; under the card's renewal
    lock (renew_if_requested takes the same), so two renewals of one card never run at once."""
    eng: Engine = api.engine()
    serial = api.find_card(ref).serial
    with card_lock.held(eng.store.path, serial, RENEWAL_LOCK):
        eng.refresh(force=True)
        return _renew(serial, pin)


def _renew(ref: str, pin: str) -> api.CardInfo:
    """Order matters for crashes: until the new certificates are installed the old keys stay, so a crash
    at any point leaves a card with at least one complete, usable set. Any failure before then (the server
    down, a refusal, a malformed answer) destroys the keys this call made: the card is as it was. (A local
    failure while storing the new certificates, after the server issued them, also destroys the new keys; the
    server then lists keys the card no longer has, as a crash there would leave it: delete and activate again.)"""
    eng: Engine = api.engine()
    card = api.find_card(ref)
    binding = active_binding(card)
    dev = device.DeviceKey.unseal(binding["device_key"], eng.device_key, card.serial)
    with (
        PinnedClient.for_binding(binding) as client,
        api.session(card, pin=pin),
    ):
        current = [k for k in binding["keys"] if k["format"] != "imported"]
        kinds = {k["id"]: _kind_of(card, k) for k in current}
        old_keys = [card_keys.existing_key(card, k["id"], kinds[k["id"]], bytes.fromhex(k["key_id"])) for k in current]
        offer_keys = [{"id": k["id"], "type": kinds[k["id"]], "format": k["format"]} for k in current]
        made, entries = card_install.generate_requests(eng, card, offer_keys, binding["user"])
        try:
            nonce = client.nonce()
            # the new CSRs travel inside a JWS by the current card keys: the server checks it against the
            # certificates it issued, so a stolen device key alone cannot renew
            claim = {"nonce": nonce, "device": binding["device"], "keys": entries}
            possession = card_keys.possession_jws(eng, card, old_keys, claim)
            payload = device.tpm_attested(binding, dev, "/v1/renew", {"renewal": possession}, nonce)
            body = dev.sign(binding["url"] + "/v1/renew", nonce, payload, kid=binding["device"])
            result = client.call("POST", "/v1/renew", body)
            recorded = card_install.install(eng, card, dev, made, result["keys"], binding["user"])
        except BaseException:
            for key in made:
                service.destroy_key_id(eng, card, key.key_id)
            raise
        old = {k["id"]: k for k in binding["keys"]}
        kept = [k for k in binding["keys"] if k["format"] == "imported"]
        for entry in recorded:
            service.destroy_key_id(eng, card, bytes.fromhex(old[entry["id"]]["key_id"]))
        binding["keys"] = kept + recorded
        binding["renewed"] = time.time()
        binding.pop("renew_requested", None)
    eng.set_binding(card.slot_id, binding)
    return api.card_info(eng.cards[card.slot_id])


def _kind_of(card: Card, recorded: dict[str, Any]) -> str:
    from vsc_provider.token import ec_params

    key_id = bytes.fromhex(recorded["key_id"])
    for obj in card.objects.values():
        if obj.klass == C.CKO_PUBLIC_KEY and obj.attrs.get(C.CKA_ID) == key_id:
            from vsc_provider.ck import attributes as A

            key_type = A.get_ulong(obj.attrs, C.CKA_KEY_TYPE)
            if key_type == C.CKK_RSA:
                return f"rsa{A.get_ulong(obj.attrs, C.CKA_MODULUS_BITS)}"
            curve = ec_params.curve_from_params(obj.attrs[C.CKA_EC_PARAMS])
            return next((kind for kind, oid in curves.KINDS.items() if oid == curve), "ed25519")
    raise CKRError(C.CKR_KEY_HANDLE_INVALID, f"key {recorded['id']} is missing from the card")


def migrate(ref: str, pin: str, target_url: str, target_pin: str) -> api.CardInfo:
    """Move the card from its server A to server B: A signs a ticket naming the keys (and B's protocol key),
    B certifies the same keys (proved by CSRs signed on the token), the card's binding then names only B,
    and last B's signed receipt tells A to let the device go. If B refuses, nothing changed: the card
    still works with A (A keeps the device active until it sees B's receipt)."""
    eng: Engine = api.engine()
    card = api.find_card(ref)
    binding = active_binding(card)
    target_url = target_url.rstrip("/")
    with PinnedClient(target_url, target_pin) as target, api.session(card, pin=pin):
        info = target.call("GET", "/v1/server")
        issued = device_call(card, "/v1/migration", {"target": target_url, "target_key": info["jwks"]["keys"][0]}, eng)
        ticket = issued["ticket"]
        old_dev = device.DeviceKey.unseal(binding["device_key"], eng.device_key, card.serial)
        dev = device.DeviceKey.generate()
        moved = [k for k in binding["keys"] if k["format"] != "imported"]
        made = [card_keys.existing_key(card, k["id"], _kind_of(card, k), bytes.fromhex(k["key_id"])) for k in moved]
        entries = [{"id": k.request_id, "csr": wire.b64u(card_keys.csr(eng, card, k, binding["user"]))} for k in made]
        pv_salt = secrets.token_bytes(16)
        payload: dict[str, Any] = {
            "ticket": ticket,
            "keys": entries,
            "pin_verifier": device.jwe_to_server(info["jwks"], pin_verifier(pin.encode(), pv_salt)),
        }
        if "so_pin" in issued:  # the old server's copy of the SO PIN moves to the new one
            payload["so_pin"] = device.jwe_to_server(info["jwks"], old_dev.open(issued["so_pin"]))
        nonce = target.nonce()
        attestation = device.attest(dev, nonce)
        if attestation is not None:
            payload["attestation"] = attestation
        if binding.get("tpm_key"):  # the same TPM key, registered with the new server too
            payload["tpm_key"] = binding["tpm_key"]["jwk"]
            payload["tpm_attestation"] = device.tpm_attestation(binding["tpm_key"], dev.thumbprint(), nonce)
        result = target.call("POST", "/v1/activate", dev.sign(target_url + "/v1/activate", nonce, payload))
        for k in made:  # the old server's certificates go; the keys stay
            service.destroy_key_id(eng, card, k.key_id, C.CKO_CERTIFICATE)
        recorded = card_install.install(eng, card, dev, made, result["keys"], result["user"])
        online = "secret" in result
        eng.bind_server_secret(card, pin.encode(), dev.open(result["secret"]) if online else None)
    old = {k: binding[k] for k in ("url", "pin", "cert", "device", "device_key")}
    binding.update(
        url=target_url,
        pin=target_pin,
        cert=target.cert_der.hex(),
        device=result["device"],
        device_key=dev.seal(eng.device_key, card.serial),
        profile=result["profile"],
        offline=not online,
        pin_check="server" if online else "local",
        pin_salt=pv_salt.hex(),
        keys=[k for k in binding["keys"] if k["format"] == "imported"] + recorded,
        migrated=time.time(),
        release={**old, "receipt": result["receipt"]},
    )
    binding.pop("renew_requested", None)
    eng.set_binding(card.slot_id, binding)
    with PinnedClient(target_url, target_pin, target.cert_der) as confirming:
        card_install.confirm(confirming, binding, dev)
    _finish_release(eng, eng.cards[card.slot_id])
    return api.card_info(eng.cards[card.slot_id])


def _finish_release(eng: Engine, card: Card) -> None:
    """Hand the new server's receipt to the old server, which then ends the device there. Kept in the
    binding and retried at the next contact (`vsc identity status`) if the old server cannot be reached."""
    binding = dict(card.record.server or {})
    release = binding.get("release")
    if not release:
        return
    try:
        _signed_call(release, card.serial, "/v1/migration/complete", {"receipt": release["receipt"]}, eng)
    except ServerError as exc:
        if exc.status == 0 or exc.status >= 500:
            log.warning(
                "card %s: the old server %s was not told of the migration yet: %s", card.serial, release["url"], exc
            )
            return
        log.warning("card %s: the old server %s refused the migration receipt: %s", card.serial, release["url"], exc)
    binding.pop("release", None)
    eng.set_binding(card.slot_id, binding)
