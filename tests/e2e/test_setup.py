"""`vsc setup nss|firefox|ssh`: each registers the module where the program looks, is idempotent, says what it
changed, and --undo reverts it; the real programs (certutil, ssh) then see the card (p11-kit: test_p11kit.py)."""

from __future__ import annotations

import json
from pathlib import Path

from e2e_support import E2ECard, require_tool, run, run_vsc


def vsc(card: E2ECard, *args: str, home: Path | None = None) -> str:
    env = dict(card.env)
    if home is not None:
        env["HOME"] = str(home)
    return run_vsc(*args, env=env).stdout


def test_setup_nss(e2e_card: E2ECard, tmp_path: Path) -> None:
    require_tool("certutil", "libnss3-tools")
    db = tmp_path / "nssdb"
    first = vsc(e2e_card, "setup", "nss", "--dbdir", str(db))
    assert f"created NSS db {db}" in first and "added module 'vsc-provider'" in first, first
    assert "nothing to change" in vsc(e2e_card, "setup", "nss", "--dbdir", str(db))
    listed = run(
        "certutil -L -h after vsc setup nss", ["certutil", "-L", "-d", f"sql:{db}", "-h", "E2E card"], env=e2e_card.env
    )
    assert "E2E card:rsa" in listed.stdout and "E2E card:ec" in listed.stdout, listed.stdout
    assert "removed module 'vsc-provider'" in vsc(e2e_card, "setup", "nss", "--dbdir", str(db), "--undo")
    assert "nothing to change" in vsc(e2e_card, "setup", "nss", "--dbdir", str(db), "--undo")
    modules = run("modutil -list after --undo", ["modutil", "-dbdir", f"sql:{db}", "-list"]).stdout
    assert "vsc-provider" not in modules, modules


def test_setup_firefox_default_profile(e2e_card: E2ECard, tmp_path: Path) -> None:
    require_tool("modutil", "libnss3-tools")
    home = tmp_path / "home"
    profile = home / ".mozilla" / "firefox" / "abcd.default-esr"
    profile.mkdir(parents=True)
    (profile.parent / "profiles.ini").write_text(
        "[Install4F96D1932A9F858E]\nDefault=abcd.default-esr\nLocked=1\n\n"
        "[Profile0]\nName=default-esr\nIsRelative=1\nPath=abcd.default-esr\nDefault=1\n"
    )
    out = vsc(e2e_card, "setup", "firefox", home=home)
    assert f"added module 'vsc-provider' ({e2e_card.module}) to NSS db {profile}" in out, out
    assert e2e_card.module in (profile / "pkcs11.txt").read_text()
    assert "nothing to change" in vsc(e2e_card, "setup", "firefox", home=home)
    assert "removed module" in vsc(e2e_card, "setup", "firefox", "--undo", home=home)
    assert e2e_card.module not in (profile / "pkcs11.txt").read_text()


def test_setup_firefox_policy(e2e_card: E2ECard, tmp_path: Path) -> None:
    policy = tmp_path / "policies" / "policies.json"
    out = vsc(e2e_card, "setup", "firefox", "--policy", "--policy-file", str(policy))
    assert "set SecurityDevices policy" in out, out
    assert json.loads(policy.read_text()) == {
        "policies": {"SecurityDevices": {"Add": {"vsc-provider": e2e_card.module}}}
    }
    assert "nothing to change" in vsc(e2e_card, "setup", "firefox", "--policy", "--policy-file", str(policy))
    out = vsc(e2e_card, "setup", "firefox", "--policy", "--policy-file", str(policy), "--undo")
    assert "deleted the empty" in out and not policy.exists(), out

    # Other policies are kept, and survive --undo.
    policy.write_text(json.dumps({"policies": {"DisableTelemetry": True}}))
    vsc(e2e_card, "setup", "firefox", "--policy", "--policy-file", str(policy))
    data = json.loads(policy.read_text())
    assert data["policies"]["DisableTelemetry"] is True and "SecurityDevices" in data["policies"], data
    vsc(e2e_card, "setup", "firefox", "--policy", "--policy-file", str(policy), "--undo")
    assert json.loads(policy.read_text()) == {"policies": {"DisableTelemetry": True}}


def test_setup_firefox_without_profile_fails_clearly(e2e_card: E2ECard, tmp_path: Path) -> None:
    result = run_vsc("setup", "firefox", env={**e2e_card.env, "HOME": str(tmp_path)}, check=False)
    assert result.returncode != 0 and "no Firefox profile found" in result.stderr, result.stderr


def test_setup_ssh(e2e_card: E2ECard, tmp_path: Path) -> None:
    require_tool("ssh", "openssh-client")
    printed = vsc(e2e_card, "setup", "ssh")
    assert printed.strip() == f"PKCS11Provider {e2e_card.module}", printed
    config = tmp_path / "ssh_config"
    original = "Host example\n    User alice\n"
    config.write_text(original)
    out = vsc(e2e_card, "setup", "ssh", "--write", "--config", str(config))
    assert "added the PKCS11Provider block" in out, out
    assert "nothing to change" in vsc(e2e_card, "setup", "ssh", "--write", "--config", str(config))
    text = config.read_text()
    assert text.startswith(original) and text.count("PKCS11Provider") == 1, text
    resolved = run("ssh -G with the written config", ["ssh", "-G", "-F", str(config), "somehost"]).stdout
    assert f"pkcs11provider {e2e_card.module}" in resolved, resolved
    example = run("ssh -G example", ["ssh", "-G", "-F", str(config), "example"]).stdout
    assert "user alice" in example, example
    assert "removed the PKCS11Provider block" in vsc(e2e_card, "setup", "ssh", "--undo", "--config", str(config))
    assert config.read_text() == original
    assert "nothing to change" in vsc(e2e_card, "setup", "ssh", "--undo", "--config", str(config))


def test_setup_ssh_default_config(e2e_card: E2ECard, tmp_path: Path) -> None:
    out = vsc(e2e_card, "setup", "ssh", "--write", home=tmp_path)
    config = tmp_path / ".ssh" / "config"
    assert f"added the PKCS11Provider block in {config}" in out, out
    assert oct(config.stat().st_mode & 0o777) == "0o600"
    vsc(e2e_card, "setup", "ssh", "--undo", home=tmp_path)
    assert config.read_text() == ""
