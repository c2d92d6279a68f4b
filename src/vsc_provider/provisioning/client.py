"""The provisioning protocol as the device runs it: activate, status, renew, delete, migrate, PIN checks.

A card's server binding (the `server` JSON of its store record) holds the server URL, the TLS pin and
certificate, the device id, the sealed device key and the ids of the keys the server knows.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from hashlib import sha256
from typing import Any, NamedTuple

from vsc_provider import api, processes
from vsc_provider import log as vlog
from vsc_provider.ck import constants as C
from vsc_provider.ck.errors import CKRError
from vsc_provider.provisioning import card_keys, device, online, otp_seed, wire
from vsc_provider.provisioning.http import PinnedClient, ServerError
from vsc_provider.provisioning.online import pin_verifier
from vsc_provider.token import card_layer, curves, service
from vsc_provider.token.engine import Card, Engine
from vsc_provider.token.pin import weakness

log = vlog.get("vsc.provisioning")


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
        binding["url"] + path, nonce, tpm_attested(binding, key, path, payload, nonce), kid=binding["device"]
    )


def tpm_attested(
    binding: dict[str, Any], dev: device.DeviceKey, path: str, payload: dict[str, Any], nonce: str
) -> dict[str, Any]:
    """The payload with the TPM key's attestation for this nonce, when the card has a TPM key and the call is
    one the server checks it on (wire.TPM_ATTESTED_CALLS); else the payload as it is."""
    tpm_key = binding.get("tpm_key")
    if not tpm_key or path not in wire.TPM_ATTESTED_CALLS:
        return payload
    return {**payload, "tpm_attestation": device.tpm_attestation(tpm_key, dev.thumbprint(), nonce)}


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


def _link_id(link: wire.ActivationLink) -> str:
    """What an unfinished card keeps to recognise its link: a hash, so the store never holds a live code."""
    return sha256(f"vsc-activation:{link.server}:{link.code}".encode()).hexdigest()


def activate(link_text: str, pin: str, label: str | None = None, device_key: str | None = None) -> api.CardInfo:
    """Activate a card from a link, or finish the activation of the same link that a killed process left.
    `device_key` is the new card's device-key back end (token/card_layer.py; default: the best available).

    Before the server is asked, the hidden card holds its keys, the sealed device key and the request's
    inputs, so a process killed after the server used the code can send the same request again: the server
    answers it again until the device's first kid-signed request (docs/protocol.md, "Resuming")."""
    link = wire.ActivationLink.parse(link_text)
    problem = weakness(pin.encode())
    if problem:
        raise CKRError(C.CKR_PIN_INVALID, problem)
    eng: Engine = api.engine()
    leftover = _claim_interrupted(eng, link)
    purge_unfinished(eng)
    if leftover is not None:
        resumed = _resume(eng, leftover, link, pin)
        if resumed is not None:
            return resumed
    with PinnedClient(link.server, link.pin) as client:
        offer = client.call("POST", "/v1/offer", {"code": link.code})
        profile = offer["profile"]
        if len(pin) < int(profile.get("pin_min_length", 6)):
            raise CKRError(
                C.CKR_PIN_LEN_RANGE, f"this server wants PINs of at least {profile['pin_min_length']} digits"
            )
        dev = device.DeviceKey.generate()
        so_pin = "".join(secrets.choice("0123456789") for _ in range(16))  # unblocking is the server admin's job:
        # the server keeps it (sealed) and sends it back to the device key when the administrator unblocks
        pending: dict[str, Any] = {
            "url": link.server,
            "pin": link.pin,
            "state": "activating",
            "pid": os.getpid(),
            "link": _link_id(link),
        }
        card = eng.create_card(
            (label or offer["user"])[:32],
            so_pin.encode(),
            pin.encode(),
            api.default_policy_from_env(),
            server=pending,
            device_key=device_key or card_layer.best_available(),
        )
        sent = False
        try:
            with api.session(card, pin=pin):
                made, entries = _generate_requests(eng, card, profile["keys"], offer["user"])
                pv_salt = secrets.token_bytes(16)
                tpm_key = device.new_tpm_key() if card_layer.kind(card.record.device_key) == "tpm" else None
                if tpm_key is not None:
                    pending["tpm_key"] = tpm_key
                pending.update(
                    device_key=dev.seal(eng.device_key, card.serial),
                    offer=offer,
                    pin_salt=pv_salt.hex(),
                    made=[{"id": k.request_id, "kind": k.kind, "key_id": k.key_id.hex()} for k in made],
                )
                eng.set_binding(card.slot_id, pending)  # from here on a killed activation can resume
                sent = True
                act = _Activation(client, link, dev, offer, pin, pv_salt, so_pin, tpm_key)
                result = client.call("POST", "/v1/activate", _activation_request(act, entries))
                binding = _finish_activation(eng, card, act, made, result)
        except BaseException as exc:
            refused = isinstance(exc, ServerError) and 400 <= exc.status < 500
            if not sent or refused:
                eng.delete_card(card.slot_id)
            else:  # the server may have used the code: the card stays (hidden) for the same link to resume
                log.warning(
                    "card %s: activation interrupted; `vsc activate` with the same link resumes it", card.serial
                )
            raise
        _confirm(client, binding, dev)
    log.info("activated card %s with %s", card.serial, link.server)
    return api.card_info(eng.cards[card.slot_id])


def _claim_interrupted(eng: Engine, link: wire.ActivationLink) -> int | None:
    """The slot of a card that a dead process left activating this very link with its request stored,
    taken over by this process (its pid in the binding, in one transaction, so one claimant wins)."""
    eng.refresh(force=True)
    wanted = _link_id(link)
    for rec in list(eng.hidden.values()):
        binding = rec.server or {}
        if binding.get("link") != wanted or "device_key" not in binding:
            continue
        if eng.edit_binding(rec.id, _claim):
            return rec.id
    return None


def _claim(now: dict[str, Any]) -> dict[str, Any] | None:
    """An unfinished activation's binding taken over by this process, unless its own process still runs."""
    if now.get("state") != "activating" or processes.alive(int(now.get("pid", 0))):
        return None
    return {**now, "pid": os.getpid()}


def _resume(eng: Engine, slot_id: int, link: wire.ActivationLink, pin: str) -> api.CardInfo | None:
    """Send the interrupted activation again (same device key, same card keys), install the answer.

    None when nothing usable survived (the card is removed and the caller starts afresh). A server's
    refusal removes the card too; a wrong PIN or an unreachable server keeps it for the next try."""
    card = eng.adopt_activation(slot_id)
    pending = dict(online.untampered(card.record))
    offer = pending["offer"]
    try:
        dev = device.DeviceKey.unseal(pending["device_key"], eng.device_key, card.serial)
    except ValueError:
        log.warning("card %s: the interrupted activation's device key is lost; starting afresh", card.serial)
        eng.delete_card(slot_id)
        return None
    log.info("card %s: resuming the interrupted activation with %s", card.serial, link.server)
    try:
        with PinnedClient(link.server, link.pin) as client, api.session(card, pin=pin):
            try:
                made = [
                    card_keys.existing_key(card, m["id"], m["kind"], bytes.fromhex(m["key_id"]))
                    for m in pending["made"]
                ]
            except StopIteration:
                log.warning("card %s: the interrupted activation's keys are gone; starting afresh", card.serial)
                eng.delete_card(slot_id)
                return None
            service.keep_only(eng, card, [k.key_id for k in made])  # what a half-done install left goes
            entries = [{"id": k.request_id, "csr": wire.b64u(card_keys.csr(eng, card, k, offer["user"]))} for k in made]
            pv_salt = bytes.fromhex(pending["pin_salt"])
            act = _Activation(client, link, dev, offer, pin, pv_salt, None, pending.get("tpm_key"))
            result = client.call("POST", "/v1/activate", _activation_request(act, entries))
            binding = _finish_activation(eng, card, act, made, result)
            _confirm(client, binding, dev)
    except CKRError as exc:
        if exc.rv == C.CKR_PIN_INCORRECT:
            raise CKRError(
                C.CKR_PIN_INCORRECT, "wrong PIN: resuming an interrupted activation needs the PIN chosen for it"
            ) from None
        if exc.rv == C.CKR_PIN_LOCKED:
            eng.delete_card(slot_id)
        raise
    except ServerError as exc:
        if 400 <= exc.status < 500:
            eng.delete_card(slot_id)
        raise
    log.info("activated card %s with %s (resumed)", card.serial, link.server)
    return api.card_info(eng.cards[slot_id])


def _generate_requests(
    eng: Engine, card: Card, requests: list[dict[str, Any]], user: str
) -> tuple[list[card_keys.CardKey], list[dict[str, str]]]:
    made, entries = [], []
    for req in requests:
        if req["format"] == "imported":
            continue
        key = card_keys.generate(eng, card, req["id"], req["type"], f"{user} {req['id']}"[:64])
        made.append(key)
        entries.append({"id": req["id"], "csr": wire.b64u(card_keys.csr(eng, card, key, user))})
    return made, entries


class _Activation(NamedTuple):
    """What one activation (or its resumption) talks with: the server, the link, the new device key, the
    server's offer, the PIN and the salt of the PIN verifier the server keeps."""

    client: PinnedClient
    link: wire.ActivationLink
    dev: device.DeviceKey
    offer: dict[str, Any]
    pin: str
    pv_salt: bytes
    so_pin: str | None = None  # sent to the server (a JWE) so its administrator can unblock the card; None
    # when resuming: the server kept the one of the first try
    tpm_key: dict[str, Any] | None = None  # the card's TPM attestation key (tpm back end), registered with the device


def _activation_request(act: _Activation, entries: list[dict[str, str]]) -> dict[str, Any]:
    client, link, dev, offer, pin, pv_salt, so_pin, tpm_key = act
    payload: dict[str, Any] = {"code": link.code, "keys": entries}
    if so_pin is not None:
        payload["so_pin"] = device.jwe_to_server(offer["server"]["jwks"], so_pin.encode())
    if not offer["profile"].get("offline", True):
        payload["pin_verifier"] = device.jwe_to_server(offer["server"]["jwks"], pin_verifier(pin.encode(), pv_salt))
    nonce = client.nonce()
    attestation = device.attest(dev, nonce)
    if attestation is not None:
        payload["attestation"] = attestation
    if tpm_key is not None:
        payload["tpm_key"] = tpm_key["jwk"]
        payload["tpm_attestation"] = device.tpm_attestation(tpm_key, dev.thumbprint(), nonce)
    return dev.sign(link.server + "/v1/activate", nonce, payload)


def _install(
    eng: Engine,
    card: Card,
    dev: device.DeviceKey,
    made: list[card_keys.CardKey],
    issued: list[dict[str, Any]],
    user: str,
) -> list[dict[str, Any]]:
    by_id = {k.request_id: k for k in made}
    recorded = []
    for entry in issued:
        label = f"{user} {entry['id']}"[:64]
        if entry.get("format") == "imported":
            key_id = card_keys.import_private_key(eng, card, dev.open(entry["key"]), label)
        else:
            key_id = by_id[entry["id"]].key_id
        if "certificate" in entry:
            api.store_certificate(card, wire.unb64u(entry["certificate"]), key_id, label)
        recorded.append(
            {"id": entry["id"], "usage": entry.get("usage"), "format": entry.get("format"), "key_id": key_id.hex()}
        )
    return recorded


def _finish_activation(
    eng: Engine, card: Card, act: _Activation, made: list[card_keys.CardKey], result: dict[str, Any]
) -> dict[str, Any]:
    """Certificates and imported keys onto the card, then the binding turns active (for an online profile
    in the same transaction as the data key's re-wrap under the server secret)."""
    client, link, dev, offer, pin, pv_salt, _, tpm_key = act
    recorded = _install(eng, card, dev, made, result["keys"], offer["user"])
    otp_name = otp_seed.install(eng, card, dev, result.get("otp"))
    online = "secret" in result
    binding = {
        "url": link.server,
        "pin": link.pin,
        "cert": client.cert_der.hex(),
        "state": "active",
        "device": result["device"],
        "device_key": dev.seal(eng.device_key, card.serial),
        "user": result["user"],
        "profile": result["profile"],
        "offline": not online,
        "pin_check": "server" if online else "local",
        "pin_salt": pv_salt.hex(),
        "tls_ca": wire.unb64u(result["ca"]).hex(),  # the server's CA: it issues the server's next TLS keys
        "keys": recorded,
        "activated": time.time(),
    }
    if otp_name is not None:
        binding["otp"] = otp_name  # the OTP key whose seed the server holds
    if tpm_key is not None:
        binding["tpm_key"] = tpm_key
    if online:
        eng.bind_server_secret(card, pin.encode(), dev.open(result["secret"]), server=binding)
    else:
        eng.set_binding(card.slot_id, binding)
    return binding


def _confirm(client: PinnedClient, binding: dict[str, Any], dev: device.DeviceKey) -> None:
    """The first kid-signed request: the server stops replaying the activation (and will not drop the
    device as never confirmed). If it fails, the card's next signed request (status, online PIN) confirms."""
    try:
        nonce = client.nonce()
        payload = tpm_attested(binding, dev, "/v1/status", {}, nonce)
        body = dev.sign(binding["url"] + "/v1/status", nonce, payload, kid=binding["device"])
        client.call("POST", "/v1/status", body)
    except ServerError as exc:
        log.warning("the server was not told that device %s is installed: %s", binding["device"], exc)


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
            kept.update(tls_pins=tls_pins(info), tls_ca=wire.unb64u(info["ca"]).hex())
    except (KeyError, TypeError, ValueError) as exc:
        log.warning("card %s: the server's TLS announcement is not usable: %s", card.serial, exc)
    if any(binding.get(name) != value for name, value in kept.items()):
        eng.edit_binding(card.slot_id, lambda b: {**b, **kept} if b.get("state") == "active" else None)
    return kept.get("server_jwks")


def tls_pins(info: dict[str, Any]) -> list[str]:
    """The pins of a /v1/server answer's TLS announcement, checked with its protocol key."""
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
    return list(claims["pins"])


def _unblock(eng: Engine, card: Card, sealed_so_pin: str) -> None:
    """The administrator unblocked the card's PIN on the server: the card's own counter is cleared with the
    SO PIN the server kept since activation (sent back in a JWE to the device key)."""
    binding = online.untampered(card.record)
    dev = device.DeviceKey.unseal(binding["device_key"], eng.device_key, card.serial)
    eng.unblock_user(card, dev.open(sealed_so_pin))
    log.info("card %s: the PIN's wrong-try counter was cleared by the server's administrator", card.serial)


def renew_if_requested(ref: str, pin: str) -> bool:
    """Renew now if the server asked for it at an earlier contact (the PIN is needed for new keys)."""
    card = api.find_card(ref)
    if not (card.record.server or {}).get("renew_requested"):
        return False
    renew(ref, pin)
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
    """New keys on the device, certificates for them, then the old keys destroyed.

    Order matters for crashes: until the new certificates are installed the old keys stay, so a crash
    at any point leaves a card with at least one complete, usable set.
    """
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
        made, entries = _generate_requests(eng, card, offer_keys, binding["user"])
        nonce = client.nonce()
        # the new CSRs travel inside a JWS by the current card keys: the server checks it against the
        # certificates it issued, so a stolen device key alone cannot renew
        claim = {"nonce": nonce, "device": binding["device"], "keys": entries}
        possession = card_keys.possession_jws(eng, card, old_keys, claim)
        payload = tpm_attested(binding, dev, "/v1/renew", {"renewal": possession}, nonce)
        body = dev.sign(binding["url"] + "/v1/renew", nonce, payload, kid=binding["device"])
        try:
            result = client.call("POST", "/v1/renew", body)
        except BaseException:
            for key in made:
                service.destroy_key_id(eng, card, key.key_id)
            raise
        recorded = _install(eng, card, dev, made, result["keys"], binding["user"])
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
        recorded = _install(eng, card, dev, made, result["keys"], result["user"])
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
        _confirm(confirming, binding, dev)
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
