"""p11-kit: the module registered through a module file is listed by p11-kit, p11-kit-proxy.so signs with the
card's keys, and `p11-kit server` exports the card to p11-kit-client.so (the out-of-process mode).

p11-kit reads ~/.config/pkcs11/modules only for non-root users. As a user, the test registers the module with
`vsc setup p11-kit` in a temporary HOME. As root (CI), it writes the module file `vsc module p11-kit` prints
into /etc/pkcs11/modules/ under a name of its own (what `vsc setup p11-kit --system` does with a fixed name),
and removes it (and any directory it had to create) when the tests end, passed or failed.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from e2e_support import USER_PIN, E2ECard, make_card, require_file, require_tool, run, run_vsc

PROXY = "/usr/lib/x86_64-linux-gnu/p11-kit-proxy.so"
CLIENT = "/usr/lib/x86_64-linux-gnu/pkcs11/p11-kit-client.so"
SYSTEM_MODULES = Path("/etc/pkcs11/modules")


@dataclass
class P11KitUser:
    card: E2ECard
    home: Path
    env: dict[str, str]

    def run(self, what: str, cmd: list[str], **kw: Any) -> Any:
        return run(what, cmd, env=self.env, **kw)


@pytest.fixture(scope="module")
def user(tmp_path_factory: pytest.TempPathFactory) -> P11KitUser:
    require_tool("p11-kit", "p11-kit")
    require_tool("pkcs11-tool", "opensc")
    base = tmp_path_factory.mktemp("p11kit")
    card = make_card(base / "vsc-home", base / "work")
    home = base / "home"
    home.mkdir()
    env = {**card.env, "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"), "TMPDIR": str(base)}
    return P11KitUser(card, home, env)


def vsc(user: P11KitUser, *args: str) -> str:
    return user.run(f"vsc {' '.join(args)}", [sys.executable, "-m", "vsc_provider.cli", *args]).stdout


@pytest.fixture(scope="module")
def registered(user: P11KitUser) -> Iterator[str]:
    """The module registered with p11-kit; yields the p11-kit module name (the file name without .module)."""
    if os.geteuid() != 0:
        yield from _registered_for_user(user)
    else:
        yield from _registered_system_wide(user)


def _registered_for_user(user: P11KitUser) -> Iterator[str]:
    out = vsc(user, "setup", "p11-kit")
    target = user.home / ".config" / "pkcs11" / "modules" / "vsc-provider.module"
    assert f"wrote {target}" in out, f"vsc setup p11-kit said:\n{out}"
    try:
        again = vsc(user, "setup", "p11-kit")
        assert "nothing to change" in again, f"vsc setup p11-kit is not idempotent:\n{again}"
        yield "vsc-provider"
    finally:
        out = vsc(user, "setup", "p11-kit", "--undo")
    assert f"removed {target}" in out and not target.exists(), out


def _registered_system_wide(user: P11KitUser) -> Iterator[str]:
    name = f"vsc-provider-e2e-{uuid.uuid4().hex[:12]}"
    target = SYSTEM_MODULES / f"{name}.module"
    text = run_vsc("module", "p11-kit", env=user.card.env).stdout
    assert f"module: {user.card.module}" in text, f"vsc module p11-kit printed:\n{text}"
    created = [d for d in (SYSTEM_MODULES.parent, SYSTEM_MODULES) if not d.exists()]
    try:
        SYSTEM_MODULES.mkdir(parents=True, exist_ok=True)
        for directory in created:
            directory.chmod(0o755)
        target.write_text(text)
        target.chmod(0o644)
        yield name
    finally:
        target.unlink(missing_ok=True)
        for directory in reversed(created):
            with contextlib.suppress(OSError):  # not empty: something else was put there meanwhile
                directory.rmdir()


def test_p11kit_lists_the_module(user: P11KitUser, registered: str) -> None:
    out = user.run("p11-kit list-modules", ["p11-kit", "list-modules"]).stdout
    assert f"{registered}:" in out, f"p11-kit list-modules does not show the module {registered!r}:\n{out}"
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
    cases = [
        (user.card.rsa, "SHA256-RSA-PKCS", message),
        (user.card.ec, "ECDSA" if raw_ec else "ECDSA-SHA256", digest if raw_ec else message),
    ]
    for k, mech, data in cases:
        sig = work / f"p11kit-{k.label}.sig"
        fmt = ["--signature-format", "openssl"] if k is user.card.ec else []
        result = run(
            f"pkcs11-tool --sign -m {mech} ({k.label}) through {what}",
            ["pkcs11-tool", "--module", lib, "--token-label", "E2E card", "--login", "--pin", USER_PIN,
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


def test_sign_through_p11kit_proxy(user: P11KitUser, registered: str) -> None:
    proxy = require_file(PROXY, "p11-kit-modules")
    sign_and_verify(user, proxy, "p11-kit-proxy.so")


def test_p11kit_server_and_client(user: P11KitUser, background: Any) -> None:
    client = require_file(CLIENT, "p11-kit-modules")
    socket_path = user.card.work / "p11-kit.sock"
    server = background(
        "p11-kit server",
        ["p11-kit", "server", "-f", "-n", str(socket_path), "--provider", user.card.module,
         user.card.token_uri],
        env=user.env,
    )  # fmt: skip
    server.wait_for_text("P11_KIT_SERVER_ADDRESS")
    address = {"P11_KIT_SERVER_ADDRESS": f"unix:path={socket_path}"}
    sign_and_verify(user, client, "p11-kit server + p11-kit-client.so", address, raw_ec=True)
