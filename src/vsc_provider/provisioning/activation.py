"""Activation as the device runs it: a one-time link becomes a card with the server's certificates, and an
activation cut short (the process killed once the server answered) resumes with the same link."""

from __future__ import annotations

import os
import secrets
import time
from hashlib import sha256
from typing import Any, NamedTuple

from vsc_provider import api, processes
from vsc_provider import log as vlog
from vsc_provider.ck import constants as C
from vsc_provider.ck.errors import CKRError
from vsc_provider.provisioning import card_install, card_keys, device, online, otp_seed, wire
from vsc_provider.provisioning.client import purge_unfinished
from vsc_provider.provisioning.http import PinnedClient, ServerError
from vsc_provider.provisioning.online import pin_verifier
from vsc_provider.token import card_layer, service
from vsc_provider.token.engine import Card, Engine
from vsc_provider.token.pin import weakness

log = vlog.get("vsc.provisioning")


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
                made, entries = card_install.generate_requests(eng, card, profile["keys"], offer["user"])
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
        card_install.confirm(client, binding, dev)
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
            card_install.confirm(client, binding, dev)
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


def _finish_activation(
    eng: Engine, card: Card, act: _Activation, made: list[card_keys.CardKey], result: dict[str, Any]
) -> dict[str, Any]:
    """Certificates and imported keys onto the card, then the binding turns active (for an online profile
    in the same transaction as the data key's re-wrap under the server secret)."""
    client, link, dev, offer, pin, pv_salt, _, tpm_key = act
    recorded = card_install.install(eng, card, dev, made, result["keys"], offer["user"])
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
