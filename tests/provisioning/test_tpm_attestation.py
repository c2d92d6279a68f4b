"""TPM attestation (issue 14, docs/attestation.md): a card sealed to a TPM registers a non-exportable TPM key with
its device at activation; its lifecycle calls carry a JWS by that key, which only the same TPM can make. A copy
of the store on another machine (another swtpm) neither attests nor opens, and the server refuses its calls."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import USER_PIN, run_vsc
from tests.provisioning.test_activation import activate
from tests.server.idserver import IdServer, light_request, start_server
from tests.swtpm_support import swtpm
from vsc_provider import api
from vsc_provider.provisioning import wire
from vsc_provider.provisioning.device import DeviceKey
from vsc_provider.provisioning.http import ServerError
from vsc_provider.token import tpm_attest


def _device_show(server: IdServer, device_id: str) -> dict[str, Any]:
    out = run_vsc("server", "device", "show", "--data", str(server.data), device_id)
    return dict(json.loads(out.stdout))


def _status_call(server: IdServer, dev: DeviceKey, device_id: str, extra: dict[str, Any] | None = None) -> Any:
    """A /v1/status signed by the device key (what a copied store holds), with `extra` in its payload;
    `extra` may be a function of the nonce."""
    with server.client() as client:
        nonce = client.nonce()
        payload = extra(nonce) if callable(extra) else dict(extra or {})
        body = dev.sign(server.url + "/v1/status", nonce, payload, kid=device_id)
        return client.call("POST", "/v1/status", body)


def _one_line_error(result: Any, *words: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert all(w in result.stderr for w in words), result.stderr


def test_tpm_key_registered_and_a_copied_store_cannot_attest(
    id_server: IdServer, vsc_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with swtpm(tmp_path / "tpm-a") as first, swtpm(tmp_path / "tpm-b") as second:
        monkeypatch.setenv("VSC_TPM_TCTI", first)
        serial = activate(id_server.link("tara", "light"), "--device-key", "tpm")["serial"]
        binding = dict(api.find_card(serial).record.server or {})
        tpm_key = binding["tpm_key"]
        assert set(tpm_key) == {"public", "private", "jwk"}  # the TPM's own blobs: nothing exportable
        assert json.loads(run_vsc("card", "show", serial, "--json").stdout)["attestation"] == "tpm"
        shown = _device_show(id_server, binding["device"])
        assert shown["attested"] == "tpm" and shown["tpm_key"] == tpm_key["jwk"]
        listed = {d["id"]: d for d in id_server.devices()}
        assert listed[binding["device"]]["attested"] == "tpm"
        assert id_server.query("SELECT tpm_key FROM devices WHERE id = ?", (binding["device"],))[0][0]

        run_vsc("identity", "status", serial)  # attested on TPM A
        run_vsc("identity", "renew", serial, "--pin", USER_PIN)  # /v1/renew is attested too

        # the server refuses a call by the device key alone, or attested by another TPM's key
        dev = DeviceKey.unseal(binding["device_key"], api.engine().device_key, serial)
        with pytest.raises(ServerError) as none:
            _status_call(id_server, dev, binding["device"])
        assert none.value.status == 403 and none.value.error == "tpm_attestation_required"
        monkeypatch.setenv("VSC_TPM_TCTI", second)
        other = tpm_attest.create()  # a key of "another machine's" TPM
        claims = {"device": dev.thumbprint()}
        with pytest.raises(ServerError) as foreign:
            _status_call(
                id_server,
                dev,
                binding["device"],
                lambda n: {
                    "tpm_attestation": tpm_attest.sign_es256(other, wire.TPM_ATTESTATION_TYP, {**claims, "nonce": n})
                },
            )
        assert foreign.value.status == 403 and foreign.value.error == "bad_tpm_attestation"
        with pytest.raises(tpm_attest.TpmError):  # TPM B does not load TPM A's key
            tpm_attest.sign_es256(tpm_key, wire.TPM_ATTESTATION_TYP, {**claims, "nonce": "x"})
        monkeypatch.setenv("VSC_TPM_TCTI", first)
        stale = tpm_attest.sign_es256(tpm_key, wire.TPM_ATTESTATION_TYP, {**claims, "nonce": "an-older-nonce"})
        with pytest.raises(ServerError) as replayed:
            _status_call(id_server, dev, binding["device"], {"tpm_attestation": stale})
        assert replayed.value.error == "bad_tpm_attestation"
        good = _status_call(  # the same request attested by TPM A goes through
            id_server,
            dev,
            binding["device"],
            lambda n: {
                "tpm_attestation": tpm_attest.sign_es256(tpm_key, wire.TPM_ATTESTATION_TYP, {**claims, "nonce": n})
            },
        )
        assert good["state"] == "active"

        # the whole data directory copied to another machine: neither attestation nor unlocking works there
        copy = tmp_path / "copy"
        shutil.copytree(vsc_home, copy, ignore=shutil.ignore_patterns("*-signal"))
        elsewhere = {"VSC_HOME": str(copy), "VSC_TPM_TCTI": second}
        _one_line_error(run_vsc("identity", "status", serial, check=False, env=elsewhere), "TPM")
        _one_line_error(run_vsc("identity", "delete", serial, check=False, env=elsewhere), "TPM")
        _one_line_error(run_vsc("key", "list", "--card", serial, "--pin", USER_PIN, check=False, env=elsewhere), "TPM")
        run_vsc("identity", "delete", serial, "--force", env=elsewhere)  # the copy wipes itself, the server untold
        assert run_vsc("card", "show", serial, check=False, env=elsewhere).returncode != 0
        assert {d["id"]: d for d in id_server.devices()}[binding["device"]]["state"] == "active"
        run_vsc("identity", "status", serial)  # the original still attests

    # the TPM is gone (its process stopped): a one-line error, nothing sent
    _one_line_error(run_vsc("identity", "status", serial, check=False), "TPM")


def test_file_back_end_cards_attest_as_before(
    id_server: IdServer, vsc_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with swtpm(tmp_path / "tpm") as tcti:
        monkeypatch.setenv("VSC_TPM_TCTI", tcti)  # a TPM is there, but this card does not use it
        serial = activate(id_server.link("fred", "light"), "--device-key", "file")["serial"]
        binding = dict(api.find_card(serial).record.server or {})
        assert "tpm_key" not in binding
        assert json.loads(run_vsc("card", "show", serial, "--json").stdout)["attestation"] is None
        assert _device_show(id_server, binding["device"])["attested"] is None
        run_vsc("identity", "status", serial)
    monkeypatch.delenv("VSC_TPM_TCTI")
    run_vsc("identity", "status", serial)  # no TPM at all: no error either


def test_server_refuses_a_tpm_key_it_cannot_check(
    id_server: IdServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    link = id_server.link("tess", "light")
    rsa_jwk = DeviceKey.generate().public_jwk()
    for bad in (rsa_jwk, {"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}, "P-256"):
        body, client = light_request(id_server, link, tpm_key=bad)
        with client, pytest.raises(ServerError) as refused:
            client.call("POST", "/v1/activate", body)
        assert (refused.value.status, refused.value.error) == (400, "bad_tpm_key")
    with swtpm(tmp_path / "tpm") as tcti:
        monkeypatch.setenv("VSC_TPM_TCTI", tcti)
        key = tpm_attest.create()
    body, client = light_request(id_server, link, tpm_key=key["jwk"])  # no attestation by it
    with client, pytest.raises(ServerError) as unsigned:
        client.call("POST", "/v1/activate", body)
    assert (unsigned.value.status, unsigned.value.error) == (403, "tpm_attestation_required")
    assert id_server.admin("POST", "/v1/offer", {"code": wire.ActivationLink.parse(link).code})["user"] == "tess"
    with pytest.raises(ServerError) as unknown:
        id_server.admin("GET", "/admin/devices/no-such-device")
    assert (unknown.value.status, unknown.value.error) == (404, "unknown_device")


def test_migration_registers_the_same_tpm_key_with_the_new_server(
    id_server: IdServer, vsc_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = start_server(tmp_path / "b")
    try:
        run_vsc("server", "trust", "--data", str(target.data), "--peer-data", str(id_server.data))
        with swtpm(tmp_path / "tpm") as tcti:
            monkeypatch.setenv("VSC_TPM_TCTI", tcti)
            serial = activate(id_server.link("mona", "light"), "--device-key", "tpm")["serial"]
            before = dict(api.find_card(serial).record.server or {})
            run_vsc("identity", "migrate", serial, "--to", target.url, "--to-pin", target.pin, "--pin", USER_PIN)
            after = dict(api.find_card(serial).record.server or {})
            assert after["url"] == target.url and after["tpm_key"] == before["tpm_key"]
            shown = _device_show(target, after["device"])
            assert shown["attested"] == "tpm" and shown["tpm_key"] == before["tpm_key"]["jwk"]
            assert _device_show(id_server, before["device"])["state"] == "migrated"
            run_vsc("identity", "status", serial)  # attested towards the new server
    finally:
        target.stop()


def test_a_resumed_activation_sends_the_same_tpm_key(
    id_server: IdServer, vsc_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.provisioning.test_resume import CRASHED, KILLED_ACTIVATION

    link = id_server.link("rita", "light")
    with swtpm(tmp_path / "tpm") as tcti:
        monkeypatch.setenv("VSC_TPM_TCTI", tcti)
        killed = subprocess.run(
            [sys.executable, "-c", KILLED_ACTIVATION, "before_install", "activate", link, "--pin", USER_PIN],
            capture_output=True,
            text=True,
            timeout=120,
            stdin=subprocess.DEVNULL,
        )
        assert killed.returncode == CRASHED, killed.stderr
        first = next(d for d in id_server.devices() if d["user"] == "rita")
        assert first["attested"] == "tpm" and first["confirmed"] is None
        registered = _device_show(id_server, first["id"])["tpm_key"]
        serial = activate(link)["serial"]  # resumed: the same device, the same TPM key
        binding = dict(api.find_card(serial).record.server or {})
        assert binding["device"] == first["id"] and binding["tpm_key"]["jwk"] == registered
        assert _device_show(id_server, first["id"])["confirmed"] is not None
        run_vsc("identity", "status", serial)
