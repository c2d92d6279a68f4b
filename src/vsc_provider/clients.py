"""`vsc setup ...`: register the PKCS#11 module with the programs that use it (Firefox, NSS databases, p11-kit,
OpenSSH). Every command is idempotent, says what it changed, and `--undo` reverts exactly that.
"""

from __future__ import annotations

import configparser
import json
import os
import shutil
import subprocess
from pathlib import Path

import click

from vsc_provider import module, url_handler
from vsc_provider.cli_support import friendly
from vsc_provider.requests.cli import setup_agent
from vsc_provider.setup_files import write_or_remove

NSS_MODULE_NAME = "vsc-provider"
P11KIT_FILE_NAME = "vsc-provider.module"
SSH_BEGIN = "# >>> vsc-provider (vsc setup ssh) >>>"
SSH_END = "# <<< vsc-provider <<<"
DEFAULT_POLICY_FILE = Path("/etc/firefox/policies/policies.json")


class SetupError(click.ClickException):
    pass


def _library() -> str:
    try:
        return str(module.library_path())
    except FileNotFoundError as exc:
        raise SetupError(str(exc)) from None


def _tool(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise SetupError(f"{name} not found: install {package} (Debian: apt-get install {package})")
    return path


def _run(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120)
    if result.returncode != 0:
        raise SetupError(f"{' '.join(cmd)} failed:\n{result.stdout}{result.stderr}".rstrip())
    return result


# --- NSS databases (Chromium's ~/.pki/nssdb, Firefox profiles, any certutil -d directory) ---------------------


def nss_registered_library(dbdir: Path, name: str = NSS_MODULE_NAME) -> str | None:
    """The library path under which `name` is registered in the NSS db at dbdir, or None."""
    modutil = _tool("modutil", "libnss3-tools")
    result = subprocess.run(
        [modutil, "-dbdir", f"sql:{dbdir}", "-list", name],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=120,
    )
    if result.returncode != 0:
        return None
    for line in result.stdout.splitlines():
        text = line.strip()
        if text.lower().startswith("library file:") or text.lower().startswith("library name:"):
            return text.split(":", 1)[1].strip()
    return None


def setup_nss_db(dbdir: Path, undo: bool = False, name: str = NSS_MODULE_NAME) -> list[str]:
    """Add (or with undo, remove) the module in one NSS database; the list of changes made."""
    modutil = _tool("modutil", "libnss3-tools")
    lib = _library()
    current = nss_registered_library(dbdir, name) if (dbdir / "cert9.db").exists() else None
    if undo:
        if current is None:
            return []
        _run([modutil, "-dbdir", f"sql:{dbdir}", "-delete", name, "-force"])
        return [f"removed module {name!r} from NSS db {dbdir}"]
    changes: list[str] = []
    if not (dbdir / "cert9.db").exists():
        dbdir.mkdir(parents=True, exist_ok=True)
        _run([_tool("certutil", "libnss3-tools"), "-N", "-d", f"sql:{dbdir}", "--empty-password"])
        changes.append(f"created NSS db {dbdir}")
    if current == lib:
        return changes
    if current is not None:
        _run([modutil, "-dbdir", f"sql:{dbdir}", "-delete", name, "-force"])
        changes.append(f"removed stale module {name!r} ({current}) from NSS db {dbdir}")
    # FRIENDLY: certificates are public, so NSS may look them up without asking for the PIN first.
    _run([modutil, "-dbdir", f"sql:{dbdir}", "-add", name, "-libfile", lib, "-mechanisms", "FRIENDLY", "-force"])
    changes.append(f"added module {name!r} ({lib}) to NSS db {dbdir}")
    return changes


def _report(changes: list[str], nothing: str) -> None:
    if not changes:
        click.echo(nothing)
    for change in changes:
        click.echo(change)


# --- Firefox ------------------------------------------------------------------------------------------------------


def firefox_profiles(root: Path | None = None) -> list[Path]:
    """The default Firefox profile directories listed in profiles.ini (~/.mozilla/firefox)."""
    base = root or Path.home() / ".mozilla" / "firefox"
    ini = base / "profiles.ini"
    if not ini.exists():
        return []
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(ini)
    defaults: list[Path] = []
    for section in parser.sections():
        entry = parser[section]
        if section.startswith("Install") and "Default" in entry:
            defaults.append(base / entry["Default"])
        elif section.startswith("Profile") and entry.get("Default") == "1" and "Path" in entry:
            path = Path(entry["Path"])
            defaults.append(path if entry.get("IsRelative", "1") == "0" else base / path)
    unique: list[Path] = []
    for path in defaults:
        if path not in unique:
            unique.append(path)
    return unique


def setup_firefox_policy(policy_file: Path, undo: bool = False, name: str = NSS_MODULE_NAME) -> list[str]:
    """Add (or remove) the module in the SecurityDevices enterprise policy of a policies.json."""
    data: dict[str, object] = {}
    if policy_file.exists():
        try:
            data = json.loads(policy_file.read_text() or "{}")
        except json.JSONDecodeError as exc:
            raise SetupError(f"{policy_file} is not valid JSON: {exc}") from None
    policies = data.setdefault("policies", {})
    if not isinstance(policies, dict):
        raise SetupError(f"{policy_file}: 'policies' is not an object")
    devices = policies.setdefault("SecurityDevices", {})
    if not isinstance(devices, dict):
        raise SetupError(f"{policy_file}: 'SecurityDevices' is not an object")
    # Both the old form (name -> path) and the newer {"Add": {name: path}} are read by Firefox; write the newer.
    add = devices.setdefault("Add", {})
    lib = _library()
    if undo:
        removed = add.pop(name, None) is not None
        removed = devices.pop(name, None) is not None or removed
        if not removed:
            return []
        if not add:
            devices.pop("Add")
        if not devices:
            policies.pop("SecurityDevices")
        if not policies and set(data) == {"policies"}:
            policy_file.unlink()
            return [f"removed {name!r} from the SecurityDevices policy and deleted the empty {policy_file}"]
        policy_file.write_text(json.dumps(data, indent=2) + "\n")
        return [f"removed {name!r} from the SecurityDevices policy in {policy_file}"]
    if add.get(name) == lib:
        return []
    add[name] = lib
    policy_file.parent.mkdir(parents=True, exist_ok=True)
    policy_file.write_text(json.dumps(data, indent=2) + "\n")
    return [f"set SecurityDevices policy {name!r} -> {lib} in {policy_file}"]


# --- p11-kit ------------------------------------------------------------------------------------------------------


def p11kit_modules_dir(system: bool) -> Path:
    """p11-kit reads ~/.config/pkcs11/modules only for non-root users; root needs the system directory."""
    if system or os.geteuid() == 0:
        return Path("/etc/pkcs11/modules")
    config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config) / "pkcs11" / "modules"


def setup_p11kit(directory: Path, undo: bool = False) -> list[str]:
    target = directory / P11KIT_FILE_NAME
    text = module.p11kit_module_text()
    return write_or_remove(target, text, undo)


# --- OpenSSH ------------------------------------------------------------------------------------------------------


def ssh_block() -> str:
    # A trailing `Host *` block: ssh takes the first value it finds, so hosts configured above keep theirs.
    return f"{SSH_BEGIN}\nHost *\n    PKCS11Provider {_library()}\n{SSH_END}\n"


def setup_ssh(config: Path, undo: bool = False) -> list[str]:
    text = config.read_text() if config.exists() else ""
    lines = text.splitlines(keepends=True)
    start = next((i for i, ln in enumerate(lines) if ln.strip() == SSH_BEGIN), -1)
    end = next((i for i, ln in enumerate(lines) if ln.strip() == SSH_END), -1)
    has_block = 0 <= start <= end
    without = "".join(lines[:start] + lines[end + 1 :]) if has_block else text
    if undo:
        if not has_block:
            return []
        config.write_text(without)
        return [f"removed the PKCS11Provider block from {config}"]
    block = ssh_block()
    current = "".join(lines[start : end + 1]) if has_block else None
    if current == block:
        return []
    if without and not without.endswith("\n"):
        without += "\n"
    config.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    config.write_text(without + block)
    config.chmod(0o600)
    return [f"{'updated' if has_block else 'added'} the PKCS11Provider block in {config}"]


# --- the click group --------------------------------------------------------------------------------------------


@click.group("setup")
def setup() -> None:
    """Register the PKCS#11 module with Firefox, NSS, p11-kit and OpenSSH, and the personal:// link handler
    (idempotent; --undo reverts)."""


@setup.command("nss")
@click.option(
    "--dbdir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="NSS database directory (e.g. ~/.pki/nssdb for Chromium); created when missing",
)
@click.option("--undo", is_flag=True, help="remove the module from that database")
def setup_nss(dbdir: Path, undo: bool) -> None:
    """Add the module to an NSS database with modutil."""
    _report(setup_nss_db(dbdir.expanduser(), undo), f"nothing to change in NSS db {dbdir}")


@setup.command("firefox")
@click.option(
    "--profile",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="profile directory (default: the default profiles in ~/.mozilla/firefox/profiles.ini)",
)
@click.option("--policy", is_flag=True, help="write the SecurityDevices enterprise policy instead (all profiles)")
@click.option(
    "--policy-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=DEFAULT_POLICY_FILE,
    show_default=True,
    help="policies.json to edit with --policy",
)
@click.option("--undo", is_flag=True, help="remove what this command added")
def setup_firefox(profile: Path | None, policy: bool, policy_file: Path, undo: bool) -> None:
    """Load the module in Firefox: in a profile's NSS db (quit Firefox first), or by enterprise policy."""
    if policy:
        _report(setup_firefox_policy(policy_file, undo), f"nothing to change in {policy_file}")
        return
    profiles = [profile.expanduser()] if profile else firefox_profiles()
    if not profiles:
        raise SetupError("no Firefox profile found: start Firefox once, or pass --profile DIR (or use --policy)")
    for directory in profiles:
        if (directory / "lock").is_symlink():
            click.echo(f"note: {directory} looks in use; quit Firefox before changing it", err=True)
        _report(setup_nss_db(directory, undo), f"nothing to change in Firefox profile {directory}")


@setup.command("p11-kit")
@click.option("--system", is_flag=True, help="write /etc/pkcs11/modules (always the case for root)")
@click.option("--undo", is_flag=True, help="remove what this command added")
def setup_p11kit_cmd(system: bool, undo: bool) -> None:
    """Write a p11-kit module file so every p11-kit aware program (GnuTLS, p11-kit-proxy) sees the cards."""
    directory = p11kit_modules_dir(system)
    _report(setup_p11kit(directory, undo), f"nothing to change in {directory}")


@setup.command("ssh")
@click.option("--write", is_flag=True, help="add a PKCS11Provider block to the ssh client configuration")
@click.option(
    "--config",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="ssh client configuration to edit (default ~/.ssh/config)",
)
@click.option("--undo", is_flag=True, help="remove what this command added")
def setup_ssh_cmd(write: bool, config: Path | None, undo: bool) -> None:
    """Print (or with --write, add to ~/.ssh/config) the PKCS11Provider line for ssh."""
    target = (config or Path.home() / ".ssh" / "config").expanduser()
    if not write and not undo:
        lib = _library()
        click.echo(f"PKCS11Provider {lib}")
        click.echo(f"# one-off: ssh -I {lib} host    public keys: ssh-keygen -D {lib}", err=True)
        click.echo(f"# agent:   ssh-agent -P '{lib}' and then ssh-add -s {lib}", err=True)
        return
    _report(setup_ssh(target, undo), f"nothing to change in {target}")


setup.add_command(url_handler.setup_url_handler)
setup.add_command(setup_agent)


# --- trusting a card's identity CA ------------------------------------------------------------------------------

CA_TRUST = "T,C,"  # NSS trust: a CA for client (SSL `T`) and e-mail (`C`) certificates, not for web servers


def trust_ca_nss(dbdir: Path, der: bytes, nickname: str) -> list[str]:
    """Add a CA to an NSS db with CA_TRUST (idempotent); the changes made."""
    certutil = _tool("certutil", "libnss3-tools")
    db = f"sql:{dbdir}"
    changes: list[str] = []
    if not (dbdir / "cert9.db").exists():
        dbdir.mkdir(parents=True, exist_ok=True)
        _run([certutil, "-N", "-d", db, "--empty-password"])
        changes.append(f"created NSS db {dbdir}")
    present = subprocess.run(
        [certutil, "-L", "-d", db, "-n", nickname, "-r"], capture_output=True, stdin=subprocess.DEVNULL, timeout=120
    )
    listed = _run([certutil, "-L", "-d", db]).stdout.splitlines()
    trusted = any(line.startswith(nickname + " ") and line.split()[-1] == CA_TRUST for line in listed)
    if present.returncode == 0 and present.stdout == der and trusted:
        return changes
    added = subprocess.run(
        [certutil, "-A", "-d", db, "-n", nickname, "-t", CA_TRUST], input=der, capture_output=True, timeout=120
    )
    if added.returncode != 0:
        raise SetupError(f"certutil -A failed: {added.stderr.decode(errors='replace').strip()}")
    changes.append(f"trusted {nickname!r} in NSS db {dbdir} ({CA_TRUST}: client and e-mail certificates)")
    return changes


@setup.command("trust-ca")
@click.option("--card", "card_ref", required=True, help="the card (serial, slot or label) whose identity CA to trust")
@click.option("--nss-db", type=click.Path(file_okay=False, path_type=Path), default=None, help="an NSS db directory")
@click.option("--pem", "pem_file", type=click.Path(dir_okay=False, path_type=Path), default=None, help="a PEM file")
@friendly
def setup_trust_ca(card_ref: str, nss_db: Path | None, pem_file: Path | None) -> None:
    """Install the identity CA that issued the card's certificates for a local service: into an NSS db (certutil)
    or as a PEM file (OpenSSL's -CAfile, nginx's ssl_client_certificate, Apache's SSLCACertificateFile)."""
    from cryptography.hazmat.primitives import serialization

    from vsc_provider.provisioning import identity_ca

    if (nss_db is None) == (pem_file is None):
        raise click.UsageError("give one of --nss-db DIR or --pem FILE")
    ca = identity_ca.card_ca(card_ref)
    if nss_db is not None:
        target = nss_db.expanduser()
        der = ca.public_bytes(serialization.Encoding.DER)
        _report(trust_ca_nss(target, der, identity_ca.nickname(card_ref)), f"nothing to change in NSS db {target}")
    elif pem_file is not None:
        text = identity_ca.pem(ca).decode()
        _report(write_or_remove(pem_file.expanduser(), text, undo=False), f"{pem_file} is up to date")
