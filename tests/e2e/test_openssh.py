"""OpenSSH: ssh-keygen -D reads the card's public keys, ssh-agent loads the card (ssh-add -s, PIN through an
SSH_ASKPASS script), ssh-keygen -Y signs through the agent, and a real sshd on 127.0.0.1 accepts the card's key."""

from __future__ import annotations

import getpass
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from e2e_support import USER_PIN, Background, CardKey, E2ECard, free_port, require_tool, run


def openssh_blob(key: CardKey) -> str:
    """The base64 key blob OpenSSH prints for the card's public key (from its certificate)."""
    line = key.cert.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return line.decode().split()[1]


@pytest.fixture(autouse=True)
def _tools() -> None:
    require_tool("ssh-keygen", "openssh-client")
    require_tool("ssh-agent", "openssh-client")
    require_tool("ssh-add", "openssh-client")


def test_ssh_keygen_D_prints_card_keys(e2e_card: E2ECard) -> None:
    out = run("ssh-keygen -D", ["ssh-keygen", "-D", e2e_card.module], env=e2e_card.env).stdout
    for k in e2e_card.keys:
        assert openssh_blob(k) in out, f"ssh-keygen -D did not print the card's {k.label} key:\n{out}"
    assert "ssh-rsa " in out and "ecdsa-sha2-nistp256 " in out, out


@dataclass
class Agent:
    socket: Path
    env: dict[str, str]
    process: Background


@pytest.fixture
def agent(e2e_card: E2ECard, background: Any, tmp_path: Path) -> Iterator[Agent]:
    """An ssh-agent of the test's own, allowed to load the module (its default allow-list is /usr/lib*/*)."""
    sock = tmp_path / "agent.sock"
    proc = background("ssh-agent", ["ssh-agent", "-D", "-a", str(sock), "-P", e2e_card.module], env=e2e_card.env)
    proc.wait_for_text("SSH_AUTH_SOCK")
    askpass = tmp_path / "askpass.sh"
    askpass.write_text(f"#!/bin/sh\necho {USER_PIN}\n")
    askpass.chmod(0o700)
    env = {
        **e2e_card.env,
        "SSH_AUTH_SOCK": str(sock),
        "SSH_ASKPASS": str(askpass),
        "SSH_ASKPASS_REQUIRE": "force",
        "DISPLAY": os.environ.get("DISPLAY", ":0"),
    }
    run("ssh-add -s (PIN from SSH_ASKPASS)", ["ssh-add", "-s", e2e_card.module], env=env)
    yield Agent(sock, env, proc)


def test_agent_loads_the_card_and_signs(e2e_card: E2ECard, agent: Agent, tmp_path: Path) -> None:
    listed = run("ssh-add -L", ["ssh-add", "-L"], env=agent.env).stdout
    for k in e2e_card.keys:
        assert openssh_blob(k) in listed, f"ssh-add -L after ssh-add -s lacks the card's {k.label} key:\n{listed}"
    message = tmp_path / "message.txt"
    message.write_text("signed through ssh-agent by the virtual card\n")
    for k in e2e_card.keys:
        line = next(ln for ln in listed.splitlines() if openssh_blob(k) in ln)
        pub = tmp_path / f"{k.label}.pub"
        pub.write_text(line + "\n")
        sig = Path(f"{message}.sig")
        sig.unlink(missing_ok=True)
        run(f"ssh-keygen -Y sign with the {k.label} key in the agent",
            ["ssh-keygen", "-Y", "sign", "-f", str(pub), "-n", "file", str(message)], env=agent.env)  # fmt: skip
        allowed = tmp_path / "allowed_signers"
        allowed.write_text(f"card@example {line}\n")
        verified = run(
            f"ssh-keygen -Y verify of the {k.label} signature",
            ["ssh-keygen", "-Y", "verify", "-f", str(allowed), "-I", "card@example", "-n", "file", "-s", str(sig)],
            input=message.read_text(),
        )
        assert "Good" in verified.stdout + verified.stderr, verified.stdout + verified.stderr


def test_sshd_accepts_the_card_key(e2e_card: E2ECard, agent: Agent, background: Any, tmp_path: Path) -> None:
    sshd = shutil.which("sshd") or "/usr/sbin/sshd"
    if not os.path.exists(sshd):
        require_tool("sshd", "openssh-server")
    require_tool("ssh", "openssh-client")
    user = getpass.getuser()
    host_key = tmp_path / "host_ed25519"
    run("ssh-keygen host key", ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(host_key)])
    authorized = tmp_path / "authorized_keys"
    authorized.write_text(f"ssh-rsa {openssh_blob(e2e_card.rsa)} card-rsa\n")
    port = free_port()
    config = tmp_path / "sshd_config"
    config.write_text(
        f"ListenAddress 127.0.0.1:{port}\nHostKey {host_key}\nAuthorizedKeysFile {authorized}\n"
        "StrictModes no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nPubkeyAuthentication yes\n"
        f"AllowUsers {user}\nUsePAM no\nLoginGraceTime 30\nPidFile none\nLogLevel VERBOSE\n"
    )
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege separation directory sshd insists on
    server = background("sshd", [sshd, "-D", "-e", "-f", str(config)])
    server.wait_for_text("Server listening")
    known = tmp_path / "known_hosts"
    known.write_text(f"[127.0.0.1]:{port} {Path(str(host_key) + '.pub').read_text()}")
    out = run(
        "ssh to the test sshd with the card's RSA key from the agent",
        ["ssh", "-F", "none", "-p", str(port), "-o", f"UserKnownHostsFile={known}", "-o", "BatchMode=yes",
         "-o", "ConnectTimeout=20", "-o", "PreferredAuthentications=publickey",
         f"{user}@127.0.0.1", "echo card-login-ok"],
        env=agent.env,
    )  # fmt: skip
    assert "card-login-ok" in out.stdout, out.stdout + out.stderr
    log = server.output()
    assert "Accepted publickey" in log, f"sshd did not log a public-key login:\n{log}"
    fingerprint = run("ssh-keygen -lf", ["ssh-keygen", "-lf", str(authorized)]).stdout.split()[1]
    assert fingerprint in log, f"sshd accepted another key than the card's ({fingerprint}):\n{log}"
