"""What activation, renewal and migration share on the device: the card's new keys and their requests, the
issued certificates and escrowed keys onto the card, and the first signed call that confirms the install."""

from __future__ import annotations

from typing import Any

from vsc_provider import api
from vsc_provider import log as vlog
from vsc_provider.provisioning import card_keys, device, wire
from vsc_provider.provisioning.http import PinnedClient, ServerError
from vsc_provider.token import service
from vsc_provider.token.engine import Card, Engine

log = vlog.get("vsc.provisioning")


def generate_requests(
    eng: Engine, card: Card, requests: list[dict[str, Any]], user: str
) -> tuple[list[card_keys.CardKey], list[dict[str, str]]]:
    """New key pairs on the card and a CSR for each; if one fails, those made before it are destroyed."""
    made, entries = [], []
    try:
        for req in requests:
            if req["format"] == "imported":
                continue
            key = card_keys.generate(eng, card, req["id"], req["type"], f"{user} {req['id']}"[:64])
            made.append(key)
            entries.append({"id": req["id"], "csr": wire.b64u(card_keys.csr(eng, card, key, user))})
    except BaseException:
        for key in made:
            service.destroy_key_id(eng, card, key.key_id)
        raise
    return made, entries


def install(
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


def confirm(client: PinnedClient, binding: dict[str, Any], dev: device.DeviceKey) -> None:
    """The first kid-signed request: the server stops replaying the activation (and will not drop the
    device as never confirmed). If it fails, the card's next signed request (status, online PIN) confirms."""
    try:
        nonce = client.nonce()
        payload = device.tpm_attested(binding, dev, "/v1/status", {}, nonce)
        body = dev.sign(binding["url"] + "/v1/status", nonce, payload, kid=binding["device"])
        client.call("POST", "/v1/status", body)
    except ServerError as exc:
        log.warning("the server was not told that device %s is installed: %s", binding["device"], exc)
