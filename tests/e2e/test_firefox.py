"""Firefox ESR, headless: the module loaded in the profile's NSS db (`vsc setup firefox --profile`) or by the
`SecurityDevices` enterprise policy (`vsc setup firefox --policy`), the test CA trusted, the client certificate
selected automatically, and the PIN dialog answered from a privileged Marionette script; the page from a Python
HTTPS server that requires a client certificate shows the card's subject. A wrong PIN must not reach the page.

Firefox reads policies.json only from system locations: on Linux /etc/firefox/policies/policies.json first
(its "SysConfD"; Debian's firefox-esr too), else the install's distribution/ folder. The policy case therefore
writes /etc/firefox/policies/policies.json, only as root (CI); it backs up any existing file and puts it back
(or removes what it created) when the test ends, passed or failed. As a user outside CI it skips.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e_support import (
    IN_CI,
    USER_PIN,
    E2ECard,
    cert_sha256,
    free_port,
    require_tool,
    run,
    run_vsc,
    start_https_server,
)
from marionette import Marionette, MarionetteError

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
# Where Firefox on Linux looks for enterprise policies first (Services.dirsvc "SysConfD" + policies/).
SYSTEM_POLICY_FILE = Path("/etc/firefox/policies/policies.json")
MODULE_NAME = "vsc-provider"  # the name `vsc setup firefox` gives the module (profile and policy alike)

PREFS = {
    "security.default_personal_cert": "Select Automatically",
    "security.osclientcerts.autoload": False,
    "security.enterprise_roots.enabled": False,
    "browser.shell.checkDefaultBrowser": False,
    "browser.startup.homepage_override.mstone": "ignore",
    "browser.aboutwelcome.enabled": False,
    "browser.safebrowsing.malware.enabled": False,
    "browser.safebrowsing.phishing.enabled": False,
    "browser.safebrowsing.downloads.enabled": False,
    "app.update.disabledForTesting": True,
    "datareporting.policy.dataSubmissionEnabled": False,
    "toolkit.telemetry.enabled": False,
    "network.captive-portal-service.enabled": False,
    "network.connectivity-service.enabled": False,
    "extensions.update.enabled": False,
    "security.remote_settings.crlite_filters.enabled": False,
    "security.OCSP.enabled": 0,
    "network.proxy.type": 0,
}

# Runs in Firefox's chrome context: answer NSS's PIN prompt (a common dialog) with `pin`, at most `answers`
# times, and cancel any further prompt. The count of prompts seen goes to a pref the test reads back.
PIN_OBSERVER = """
const [pin, answers] = arguments;
Services.prefs.setIntPref("vsc.test.prompts", 0);
const observer = {
  observe(subject) {
    const win = subject.document ? subject : subject.ownerGlobal;
    const doc = win.document;
    const seen = Services.prefs.getIntPref("vsc.test.prompts", 0) + 1;
    Services.prefs.setIntPref("vsc.test.prompts", seen);
    win.setTimeout(() => {
      const dialog = doc.getElementById("commonDialog") || doc.querySelector("dialog");
      const field = doc.getElementById("password1Textbox");
      if (seen <= answers && field) {
        field.value = pin;
        dialog.acceptDialog();
      } else {
        dialog.cancelDialog();
      }
    }, 0);
  },
};
Services.obs.addObserver(observer, "common-dialog-loaded");
return true;
"""


def firefox_binary() -> str:
    for name in ("firefox-esr", "firefox"):
        if shutil.which(name):
            return name
    return require_tool("firefox-esr", "firefox-esr")


def make_profile(card: E2ECard, directory: Path, marionette_port: int, module_in_profile: bool = True) -> None:
    """A profile trusting the test CA; with module_in_profile, the module added to its NSS db (pkcs11.txt)."""
    directory.mkdir(parents=True)
    spec = f"sql:{directory}"
    run("certutil -N (Firefox profile db)", ["certutil", "-N", "-d", spec, "--empty-password"])
    run("certutil -A (trust the test CA in the profile)",
        ["certutil", "-A", "-d", spec, "-n", "vsc test CA", "-t", "C,,", "-i", str(card.ca_path)])  # fmt: skip
    if module_in_profile:
        out = run_vsc("setup", "firefox", "--profile", str(directory), env=card.env).stdout
        assert f"added module {MODULE_NAME!r}" in out, f"vsc setup firefox --profile said:\n{out}"
    else:
        pkcs11_txt = (directory / "pkcs11.txt").read_text()
        assert card.module not in pkcs11_txt, f"the module is already in the new profile's pkcs11.txt:\n{pkcs11_txt}"
    prefs = {**PREFS, "marionette.port": marionette_port}
    (directory / "user.js").write_text("".join(f"user_pref({_js(k)}, {_js(v)});\n" for k, v in prefs.items()))


def _js(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


@pytest.fixture
def firefox(firefox_turn: None, background: Any, tmp_path: Path) -> Iterator[Any]:
    """Start a headless Firefox on a profile for a card; yields (marionette, process); always stopped."""
    require_tool("certutil", "libnss3-tools")
    binary = firefox_binary()
    clients: list[Marionette] = []

    def start(card: E2ECard, module_in_profile: bool = True) -> tuple[Marionette, Any]:
        port = free_port()
        profile = tmp_path / "profile"
        make_profile(card, profile, port, module_in_profile)
        home = tmp_path / "home"
        home.mkdir(exist_ok=True)
        env = {**card.env, "HOME": str(home), "MOZ_HEADLESS": "1", "MOZ_CRASHREPORTER_DISABLE": "1"}
        env.pop("DISPLAY", None)
        proc = background(
            "firefox",
            [binary, "--headless", "--marionette", "--remote-allow-system-access", "--no-remote",
             "--profile", str(profile), "about:blank"],
            env=env,
        )  # fmt: skip
        try:
            client = Marionette(port, timeout=90)
        except OSError as exc:
            raise AssertionError(f"Firefox did not open Marionette on {port}: {exc}\n{proc.output()}") from None
        clients.append(client)
        client.new_session()
        return client, proc

    try:
        yield start
    finally:
        for client in clients:
            client.close()


@pytest.fixture
def system_policy(firefox_turn: None, e2e_card: E2ECard, tmp_path: Path) -> Iterator[Path]:
    """The SecurityDevices policy for the module in Firefox's system policies.json, for one test; root only.

    Any existing policies.json is kept aside and put back afterwards; directories made here are removed.
    """
    if os.geteuid() != 0:
        message = (
            f"the enterprise-policy case writes {SYSTEM_POLICY_FILE}, the system file Firefox reads policies from: "
            "run the tests as root to include it (CI does); the pkcs11.txt case covers a user's run"
        )
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    policy = SYSTEM_POLICY_FILE
    backup = tmp_path / "policies.json.orig"
    created = [d for d in (policy.parent.parent, policy.parent) if not d.exists()]
    had_file = policy.exists()
    if had_file:
        shutil.copy2(policy, backup)
    try:
        out = run_vsc("setup", "firefox", "--policy", "--policy-file", str(policy), env=e2e_card.env).stdout
        assert f"set SecurityDevices policy {MODULE_NAME!r}" in out or "nothing to change" in out, (
            f"vsc setup firefox --policy said:\n{out}"
        )
        for directory in created:
            directory.chmod(0o755)
        if not had_file:
            policy.chmod(0o644)
        yield policy
    finally:
        if had_file:
            shutil.copy2(backup, policy)
        else:
            policy.unlink(missing_ok=True)
            for directory in reversed(created):
                with contextlib.suppress(OSError):  # not empty: something else was put there meanwhile
                    directory.rmdir()


# Runs in Firefox's chrome context: the enterprise-policy engine's state and the loaded PKCS#11 modules.
POLICY_STATE = """
const db = Cc["@mozilla.org/security/pkcs11moduledb;1"].getService(Ci.nsIPKCS11ModuleDB);
return Promise.resolve(db.listModules()).then(list => ({
  active: Services.policies.status == Ci.nsIEnterprisePolicies.ACTIVE,
  policies: Services.policies.getActivePolicies(),
  modules: Array.from(list, m => ({ name: m.name, lib: m.libName })),
}));
"""


def policy_state(client: Marionette) -> Any:
    client.context("chrome")
    try:
        return client.script(POLICY_STATE)
    finally:
        client.context("content")


def visit(client: Marionette, url: str, pin: str, answers: int) -> str:
    client.context("chrome")
    client.script(PIN_OBSERVER, [pin, answers])
    client.context("content")
    try:
        client.navigate(url)
    except MarionetteError as exc:
        # A failed client-auth handshake shows Firefox's error page, which Navigate reports as an error.
        return f"NAVIGATION ERROR {exc}\n" + client.page_source()
    deadline = time.monotonic() + 20
    source = client.page_source()
    while "vsc client auth" not in source and time.monotonic() < deadline:
        time.sleep(0.25)
        source = client.page_source()
    return f"URL {client.command('WebDriver:GetCurrentURL')}\n{source}"


def prompts_seen(client: Marionette) -> int:
    client.context("chrome")
    try:
        return int(client.script('return Services.prefs.getIntPref("vsc.test.prompts", 0);'))
    finally:
        client.context("content")


def save_screenshot(client: Marionette, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    path.write_bytes(client.screenshot_png())
    return path


def test_firefox_logs_in_with_the_card(e2e_card: E2ECard, firefox: Any, background: Any) -> None:
    server, port = start_https_server(background, e2e_card)
    client, proc = firefox(e2e_card)
    page = visit(client, f"https://127.0.0.1:{port}/", USER_PIN, answers=2)
    shot = save_screenshot(client, "firefox-client-auth.png")
    log = server.output()
    assert any(f"sha256={cert_sha256(k)}" in log for k in e2e_card.keys), (
        f"the HTTPS server did not see a card certificate from Firefox:\n{log}\n--- page ---\n{page}\n"
        f"--- firefox ---\n{proc.output()[-3000:]}"
    )
    assert any(k.subject_cn in page for k in e2e_card.keys), f"Firefox did not reach the page ({shot}):\n{page}"
    assert prompts_seen(client) >= 1, "Firefox never asked for the card PIN"
    assert os.path.getsize(shot) > 0


def test_firefox_logs_in_with_the_card_by_enterprise_policy(
    e2e_card: E2ECard, system_policy: Path, firefox: Any, background: Any
) -> None:
    server, port = start_https_server(background, e2e_card)
    client, proc = firefox(e2e_card, module_in_profile=False)
    state = policy_state(client)
    loaded = [m for m in state["modules"] if m["lib"] == e2e_card.module]
    assert state["active"] and loaded, (
        f"Firefox did not load the module from the SecurityDevices policy in {system_policy}:\n{state}\n"
        f"--- policies.json ---\n{system_policy.read_text()}\n--- firefox ---\n{proc.output()[-3000:]}"
    )
    assert loaded[0]["name"] == MODULE_NAME, state
    page = visit(client, f"https://127.0.0.1:{port}/", USER_PIN, answers=2)
    shot = save_screenshot(client, "firefox-client-auth-policy.png")
    log = server.output()
    assert any(f"sha256={cert_sha256(k)}" in log for k in e2e_card.keys), (
        f"the HTTPS server did not see a card certificate from Firefox (module by policy):\n{log}\n"
        f"--- page ---\n{page}\n--- firefox ---\n{proc.output()[-3000:]}"
    )
    assert any(k.subject_cn in page for k in e2e_card.keys), (
        f"Firefox (module by policy) did not reach the page ({shot}):\n{page}"
    )
    assert prompts_seen(client) >= 1, "Firefox never asked for the card PIN"
    assert os.path.getsize(shot) > 0


def test_firefox_wrong_pin_does_not_reach_the_page(fresh_card: E2ECard, firefox: Any, background: Any) -> None:
    server, port = start_https_server(background, fresh_card)
    client, proc = firefox(fresh_card)
    page = visit(client, f"https://127.0.0.1:{port}/", "000000", answers=1)
    save_screenshot(client, "firefox-wrong-pin.png")
    assert prompts_seen(client) >= 1, f"Firefox never asked for the PIN:\n{proc.output()[-3000:]}"
    for k in fresh_card.keys:
        assert k.subject_cn not in page, f"a wrong PIN reached the page:\n{page}"
    assert "CLIENT subject=" not in server.output(), (
        f"the server accepted a client after a wrong PIN:\n{server.output()}"
    )
