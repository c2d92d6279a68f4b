"""The README's shell examples, run as a new user would paste them: a broken example fails here.

Every ```sh block between "## A card, step by step" and "## The identity server" runs, in order, in one bash
with an empty VSC_HOME, HOME and working directory, unless the line before it is
`<!-- readme-test: skip (reason) -->` (install commands, examples that need a remote server or a terminal).
Blocks elsewhere must carry that mark, so that a new example is either run or knowingly left out.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

from tests.conftest import require_file, require_tool

README = Path(__file__).resolve().parent.parent / "README.md"
FIRST_RUN_SECTION = "## A card, step by step"
END_OF_RUN = "## The identity server"
SKIP = re.compile(r"^<!-- readme-test: skip \((?P<reason>[^)]+)\) -->$")


class Block(NamedTuple):
    line: int  # 1-based line of the opening fence
    text: str
    skipped: str | None  # the reason, when marked
    in_run_sections: bool


def shell_blocks(text: str) -> list[Block]:
    blocks: list[Block] = []
    lines = text.splitlines()
    running = False
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("## "):
            running = line == FIRST_RUN_SECTION or (running and line != END_OF_RUN)
        if line.strip() == "```sh":
            end = lines.index("```", i + 1)
            mark = SKIP.match(lines[i - 1]) if i else None
            blocks.append(Block(i + 1, "\n".join(lines[i + 1 : end]), mark["reason"] if mark else None, running))
            i = end
        i += 1
    return blocks


def test_the_parser_sees_the_walkthrough_and_the_marks():
    blocks = shell_blocks(README.read_text())
    run = [b for b in blocks if b.in_run_sections and b.skipped is None]
    assert 'vsc card create --label "Work card"' in run[0].text
    assert any("openssl dgst" in b.text for b in run) and any("pkcs11-tool" in b.text for b in run)
    assert any(b.skipped and "bash .ci/install.sh" in b.text for b in blocks)


def test_every_block_outside_the_walkthrough_is_marked():
    unmarked = [b.line for b in shell_blocks(README.read_text()) if not b.in_run_sections and b.skipped is None]
    assert unmarked == [], f"README.md lines {unmarked}: ```sh blocks outside the run sections need a skip mark"


def test_readme_examples_run(tmp_path):
    for tool, package in (
        ("pkcs11-tool", "opensc"),
        ("p11tool", "gnutls-bin"),
        ("ssh-keygen", "openssh-client"),
        ("openssl", "openssl"),
        ("certutil", "libnss3-tools"),
        ("openvpn", "openvpn"),
    ):
        require_tool(tool, package)
    require_file("/usr/lib/x86_64-linux-gnu/engines-3/pkcs11.so", "libengine-pkcs11-openssl")
    run = [b for b in shell_blocks(README.read_text()) if b.in_run_sections and b.skipped is None]
    script = ["set -eo pipefail"]
    for block in run:
        script += [f"echo '### README.md line {block.line}' >&2", block.text]
    work, home = tmp_path / "work", tmp_path / "home"
    work.mkdir()
    home.mkdir()
    drop = {"OPENSSL_CONF", "PKCS11_MODULE_PATH", "GNUTLS_PIN", "XDG_DATA_HOME", "XDG_CONFIG_HOME", "VSC_DEBUG"}
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(
        HOME=str(home),
        VSC_HOME=str(tmp_path / "vsc-home"),
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
    )
    result = subprocess.run(
        ["bash", "-c", "\n".join(script)],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        stdin=subprocess.DEVNULL,
    )
    where = [line for line in result.stderr.splitlines() if line.startswith("### README.md line")]
    assert result.returncode == 0, f"failed in the block at {where[-1] if where else '?'}:\n{result.stderr[-3000:]}"
    assert len(where) == len(run)
    # What the walkthrough promised: the certificate sits under the key's label, and signatures were made.
    assert "object=work;type=cert" in result.stdout
    assert (work / "msg.sig").stat().st_size > 0 and (work / "me.csr").exists()


def test_the_package_list_matches_install_sh():
    install = (README.parent / ".ci" / "install.sh").read_text()
    array = re.search(r"^packages=\((?P<body>[^)]*)\)", install, re.MULTILINE)
    assert array is not None
    installed = set(array["body"].split())
    text = README.read_text()
    section = text[text.index("`.ci/install.sh` installs") : text.index(FIRST_RUN_SECTION)]
    named = set(re.findall(r"`([a-z0-9][a-z0-9.+-]+)`", section))
    assert installed - named == set(), "packages install.sh installs that the README does not name and explain"
    assert {"build-essential", "python3-venv", "sqlite3", "openssh-server"} <= installed
