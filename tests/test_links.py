"""personal:// links: `vsc open` sends request links to the running agent's page (printed without a desktop,
given to the real xdg-open with one), refuses unknown links, and `vsc setup url-handler` registers the handler
with the real xdg-mime (on a temporary HOME and XDG directories)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import require_tool, run_vsc
from vsc_provider import url_handler

AGENT_URL = "http://127.0.0.1:45123/Zm9vYmFyYmF6cXV4/"
NO_DESKTOP = {"DISPLAY": "", "WAYLAND_DISPLAY": ""}


def write_agent_file(home: Path, pid: int, url: str = AGENT_URL) -> None:
    home.mkdir(parents=True, exist_ok=True)
    (home / "agent.json").write_text(json.dumps({"pid": pid, "url": url}))


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_request_link_prints_the_agents_page_without_a_desktop(vsc_home):
    write_agent_file(vsc_home, os.getpid())  # this test's process stands for a running agent
    out = run_vsc("open", "personal://request?id=req_7-AbC", env=NO_DESKTOP).stdout
    assert out.strip() == AGENT_URL + "requests/req_7-AbC"
    # The agent's URL without its trailing slash still gives the same page.
    write_agent_file(vsc_home, os.getpid(), AGENT_URL.rstrip("/"))
    out = run_vsc("open", "personal://request?id=req_7-AbC", env=NO_DESKTOP).stdout
    assert out.strip() == AGENT_URL + "requests/req_7-AbC"


def test_request_link_without_a_running_agent(vsc_home):
    missing = run_vsc("open", "personal://request?id=abc", env=NO_DESKTOP, check=False)
    assert "start it with `vsc agent`" in one_line_error(missing)
    write_agent_file(vsc_home, dead_pid())
    dead = run_vsc("open", "personal://request?id=abc", env=NO_DESKTOP, check=False)
    assert "no vsc agent is running: start it with `vsc agent`" in one_line_error(dead)
    (vsc_home / "agent.json").write_text("{half")
    broken = run_vsc("open", "personal://request?id=abc", env=NO_DESKTOP, check=False)
    assert "vsc agent" in one_line_error(broken)
    write_agent_file(vsc_home, os.getpid(), "http://evil.example/")
    foreign = run_vsc("open", "personal://request?id=abc", env=NO_DESKTOP, check=False)
    assert "does not name a running agent" in one_line_error(foreign)


@pytest.mark.parametrize(
    ("link", "message"),
    [
        ("personal://pay?to=bob", "unknown link personal://pay"),
        ("https://example.com/", "not a personal:// link"),
        ("personal://request?id=../../etc", "needs one id"),
        ("personal://request?id=a&id=b", "needs one id"),
        ("personal://request", "needs one id"),
        ("personal://request?id=abc&server=http://plain", "one https:// URL"),
        ("personal://request?id=abc&server=https://idp.example", "no card here is bound to https://idp.example"),
        ("personal://activate?server=https://x&code=c", "activation link lacks 'pin'"),
    ],
)
def test_bad_and_unknown_links_are_one_line_errors(vsc_home, link, message):
    write_agent_file(vsc_home, os.getpid())
    assert message in one_line_error(run_vsc("open", link, env=NO_DESKTOP, check=False))


def test_request_link_opens_the_page_with_xdg_open_on_a_desktop(vsc_home, tmp_path):
    require_tool("xdg-open", "xdg-utils")
    write_agent_file(vsc_home, os.getpid())
    # xdg-open on a desktop it does not know hands web pages to $BROWSER: here a program that records them.
    opened = tmp_path / "opened.txt"
    browser = tmp_path / "browser"
    browser.write_text(f'#!/bin/sh\nprintf "%s\\n" "$1" >> {opened}\n')
    browser.chmod(browser.stat().st_mode | stat.S_IXUSR)
    env = {
        "DISPLAY": ":77",
        "BROWSER": str(browser),
        "XDG_CURRENT_DESKTOP": "",
        "XDG_DATA_HOME": str(tmp_path / "data"),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        # no system-wide desktop entries (the machine's browser would be chosen first)
        "XDG_DATA_DIRS": str(tmp_path / "none"),
        "XDG_CONFIG_DIRS": str(tmp_path / "none"),
    }
    out = run_vsc("open", "personal://request?id=r1", env=env).stdout
    page = AGENT_URL + "requests/r1"
    assert out.strip() == f"opened {page}"
    deadline = time.monotonic() + 20
    while not (opened.exists() and opened.read_text()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert opened.read_text().splitlines() == [page]


def test_setup_url_handler_registers_with_xdg_mime_and_undoes(tmp_path):
    xdg_mime = require_tool("xdg-mime", "xdg-utils")
    validate = require_tool("desktop-file-validate", "desktop-file-utils")
    home = tmp_path / "home"
    env = {
        "HOME": str(home),
        "XDG_DATA_HOME": str(home / "data"),
        "XDG_CONFIG_HOME": str(home / "config"),
        "XDG_CURRENT_DESKTOP": "",
    }
    full_env = {**os.environ, **env}

    def query() -> str:
        done = subprocess.run(
            [xdg_mime, "query", "default", "x-scheme-handler/personal"],
            capture_output=True,
            text=True,
            env=full_env,
            timeout=60,
        )
        return done.stdout.strip()

    assert query() == ""
    # The user's own choices (and comments) in mimeapps.list are kept, through setup and undo.
    mimeapps = home / "config" / "mimeapps.list"
    mimeapps.parent.mkdir(parents=True)
    mine = "# chosen by me\n[Default Applications]\ntext/html=firefox-esr.desktop\n"
    mimeapps.write_text(mine)
    first = run_vsc("setup", "url-handler", env=env).stdout
    entry = home / "data" / "applications" / "vsc-personal.desktop"
    assert f"wrote {entry}" in first and "xdg-mime default" in first
    assert query() == "vsc-personal.desktop"
    text = entry.read_text()
    assert "MimeType=x-scheme-handler/personal;" in text
    exec_line = next(line for line in text.splitlines() if line.startswith("Exec="))
    assert exec_line == f"Exec={Path(sys.executable).parent / 'vsc'} open %u"
    checked = subprocess.run([validate, str(entry)], capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0 and not checked.stdout.strip(), checked.stdout + checked.stderr
    assert "nothing to change" in run_vsc("setup", "url-handler", env=env).stdout
    # Another handler chosen by the user later is put back by a second setup.
    subprocess.run([xdg_mime, "default", "other.desktop", "x-scheme-handler/personal"], env=full_env, check=True)
    again = run_vsc("setup", "url-handler", env=env).stdout
    assert "xdg-mime default" in again and "wrote" not in again
    assert query() == "vsc-personal.desktop"

    undone = run_vsc("setup", "url-handler", "--undo", env=env).stdout
    assert f"removed {entry}" in undone and "mimeapps.list" in undone
    assert not entry.exists()
    assert query() == ""
    assert mimeapps.read_text().startswith(mine) and "personal" not in mimeapps.read_text()
    assert "nothing to change" in run_vsc("setup", "url-handler", "--undo", env=env).stdout


def test_exec_quoting_follows_the_desktop_entry_rules():
    assert url_handler._exec_arg("/usr/bin/vsc") == "/usr/bin/vsc"
    assert url_handler._exec_arg("/opt/my tools/vsc") == '"/opt/my tools/vsc"'
    assert url_handler._exec_arg('/a b/"q"$') == '"/a b/\\\\"q\\\\"\\\\$"'
    assert url_handler._exec_arg("/x/100%/vsc") == "/x/100%%/vsc"


def test_request_link_reaches_the_real_approval_page(vsc_home):
    """The page the link names is the approval page's own route: served here by page_server as the agent
    serves it, over a request source holding one request."""
    import httpx

    from tests.requests.page_support import MemorySource, request
    from vsc_provider.requests.model import MetadataItem
    from vsc_provider.requests.page_server import serve

    source = MemorySource.holding(request("req-42", (MetadataItem("text", "Transfer", b"250 EUR to Carol"),)))
    url, stop = serve(source)
    try:
        write_agent_file(vsc_home, os.getpid(), url)
        page = run_vsc("open", "personal://request?id=req-42", env=NO_DESKTOP).stdout.strip()
        assert page == url + "requests/req-42"
        shown = httpx.get(page, trust_env=False, timeout=30)
        assert shown.status_code == 200, shown.text
        assert "250 EUR to Carol" in shown.text and "Example Bank" in shown.text
        # A link for a request that is not pending names a page that says so (not someone else's request).
        gone = run_vsc("open", "personal://request?id=req-43", env=NO_DESKTOP).stdout.strip()
        assert httpx.get(gone, trust_env=False, timeout=30).status_code == 404
    finally:
        stop()
