"""p11-kit: `vsc setup p11-kit` writes a module file, p11-kit lists the module, p11-kit-proxy.so signs with the card's
keys, and `p11-kit server` exports the card to p11-kit-client.so (the out-of-process mode).

p11-kit ignores ~/.config/pkcs11 for root, so as root the p11-kit steps run as the unprivileged user `nobody`
(uid 65534) with a card store of its own, exactly as a desktop user would have it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from e2e_support import USER_PIN, E2ECard, make_card, require_file, require_tool, run

NOBODY = 65534
PROXY = "/usr/lib/x86_64-linux-gnu/p11-kit-proxy.so"
CLIENT = "/usr/lib/x86_64-linux-gnu/pkcs11/p11-kit-client.so"


@dataclass
class P11KitUser:
    card: E2ECard
    home: Path
    prefix: list[str]  # runs a command as the p11-kit user
    env: dict[str, str]

    def run(self, what: str, cmd: list[str], **kw: Any) -> Any:
        return run(what, [*self.prefix, *cmd], env=self.env, **kw)


@pytest.fixture(scope="module")
def user() -> Iterator[P11KitUser]:
    require_tool("p11-kit", "p11-kit")
    require_tool("pkcs11-tool", "opensc")
    base = Path(tempfile.mkdtemp(prefix="vsc-p11kit-"))
    try:
        base.chmod(0o755)
        card = make_card(base / "vsc-home", base / "work")
        home = base / "home"
        home.mkdir()
        prefix: list[str] = []
        if os.geteuid() == 0:
            prefix = [require_tool("setpriv", "util-linux"), f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
            for path in [base, *base.rglob("*")]:
                os.chown(path, NOBODY, NOBODY)
            probe = run(
                "python -c 'import vsc_provider' as nobody",
                [*prefix, sys.executable, "-c", "import vsc_provider"],
                env={"HOME": str(home)},
                check=False,
            )
            if probe.returncode != 0:
                pytest.fail(
                    "as root the p11-kit tests run as nobody (p11-kit ignores root's ~/.config/pkcs11), but nobody "
                    f"cannot import the package from {sys.executable}: make the checkout and venv world-readable\n"
                    f"{probe.stderr}"
                )
        env = {**card.env, "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"), "TMPDIR": str(base)}
        env.pop("XDG_RUNTIME_DIR", None)
        yield P11KitUser(card, home, prefix, env)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def vsc(user: P11KitUser, *args: str) -> str:
    return user.run(f"vsc {' '.join(args)}", [sys.executable, "-m", "vsc_provider.cli", *args]).stdout


@pytest.fixture(scope="module")
def registered(user: P11KitUser) -> Iterator[Path]:
    out = vsc(user, "setup", "p11-kit")
    target = user.home / ".config" / "pkcs11" / "modules" / "vsc-provider.module"
    assert f"wrote {target}" in out, f"vsc setup p11-kit said:\n{out}"
    again = vsc(user, "setup", "p11-kit")
    assert "nothing to change" in again, f"vsc setup p11-kit is not idempotent:\n{again}"
    yield target
    out = vsc(user, "setup", "p11-kit", "--undo")
    assert f"removed {target}" in out and not target.exists(), out


def test_p11kit_lists_the_module(user: P11KitUser, registered: Path) -> None:
    out = user.run("p11-kit list-modules", ["p11-kit", "list-modules"]).stdout
    assert "vsc-provider" in out, f"p11-kit list-modules does not show the module:\n{out}"
    assert "token: E2E card" in out, f"p11-kit list-modules does not show the card:\n{out}"
    assert user.card.serial in out, out


def sign_and_verify(
    user: P11KitUser, lib: str, what: str, env: dict[str, str] | None = None, raw_ec: bool = False
) -> None:
    """Sign with both card keys through `lib` (pkcs11-tool) and verify with openssl against the certificates' keys.

    raw_ec: p11-kit 0.24's RPC forwards only CKM_ECDSA and CKM_ECDSA_SHA1 of the EC mechanisms, so over
    p11-kit-client.so the digest is made here and signed with raw CKM_ECDSA.
    """
    work = user.card.work
    message = work / "p11kit-message.txt"
    message.write_text(f"signed through {what}\n")
    digest = work / "p11kit-message.sha256"
    digest.write_bytes(hashlib.sha256(message.read_bytes()).digest())
    for path in (message, digest):
        os.chown(path, os.stat(work).st_uid, os.stat(work).st_gid)
    cases = [
        (user.card.rsa, "SHA256-RSA-PKCS", message),
        (user.card.ec, "ECDSA" if raw_ec else "ECDSA-SHA256", digest if raw_ec else message),
    ]
    for k, mech, data in cases:
        sig = work / f"p11kit-{k.label}.sig"
        fmt = ["--signature-format", "openssl"] if k is user.card.ec else []
        result = run(
            f"pkcs11-tool --sign -m {mech} ({k.label}) through {what}",
            [*user.prefix, "pkcs11-tool", "--module", lib, "--token-label", "E2E card", "--login", "--pin", USER_PIN,
             "--sign", "--id", k.id, "-m", mech, "-i", str(data), "-o", str(sig), *fmt],
            env={**user.env, **(env or {})},
        )  # fmt: skip
        pub = work / f"p11kit-{k.label}.pub.pem"
        pub.write_bytes(k.public_pem)
        verified = run(
            f"openssl pkeyutl -verify of the {k.label} signature made through {what}",
            ["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", str(pub), "-pkeyopt", "digest:sha256",
             "-in", str(digest), "-sigfile", str(sig)],
        )  # fmt: skip
        assert "Signature Verified Successfully" in verified.stdout, result.stdout + result.stderr


def test_sign_through_p11kit_proxy(user: P11KitUser, registered: Path) -> None:
    proxy = require_file(PROXY, "p11-kit-modules")
    sign_and_verify(user, proxy, "p11-kit-proxy.so")


def test_p11kit_server_and_client(user: P11KitUser, background: Any) -> None:
    client = require_file(CLIENT, "p11-kit-modules")
    socket_path = user.card.work / "p11-kit.sock"
    server = background(
        "p11-kit server",
        [*user.prefix, "p11-kit", "server", "-f", "-n", str(socket_path), "--provider", user.card.module,
         user.card.token_uri],
        env=user.env,
    )  # fmt: skip
    server.wait_for_text("P11_KIT_SERVER_ADDRESS")
    address = {"P11_KIT_SERVER_ADDRESS": f"unix:path={socket_path}"}
    sign_and_verify(user, client, "p11-kit server + p11-kit-client.so", address, raw_ec=True)
