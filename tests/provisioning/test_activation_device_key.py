"""An activated card gets a device-key back end too (issue 14): `vsc activate --device-key tpm` seals its layer
to the TPM, including the server-checked PIN's extra layer; the copy of the store on another TPM does not open."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import USER_PIN, run_vsc
from tests.provisioning.test_activation import activate
from tests.server.idserver import IdServer
from tests.swtpm_support import swtpm


@pytest.mark.parametrize("profile", ["light", "online"])
def test_activation_with_the_tpm_back_end(
    profile: str, id_server: IdServer, vsc_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with swtpm(tmp_path / "tpm-a") as first, swtpm(tmp_path / "tpm-b") as second:
        monkeypatch.setenv("VSC_TPM_TCTI", first)
        serial = activate(id_server.link(f"tina-{profile}", profile), "--device-key", "tpm")["serial"]
        shown = json.loads(run_vsc("card", "show", serial, "--json").stdout)
        assert shown["device_key"] == "tpm"
        assert run_vsc("key", "list", "--card", serial, "--pin", USER_PIN).returncode == 0
        copy = tmp_path / "copy"
        shutil.copytree(vsc_home, copy, ignore=shutil.ignore_patterns("*-signal"))
        refused = run_vsc(
            "key", "list", "--card", serial, "--pin", USER_PIN, check=False,
            env={"VSC_HOME": str(copy), "VSC_TPM_TCTI": second},
        )  # fmt: skip
        assert refused.returncode != 0 and "TPM" in refused.stderr, refused.stderr
