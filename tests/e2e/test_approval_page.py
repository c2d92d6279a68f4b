"""The approval page in the real Firefox ESR, headless, driven through Marionette: the page that
page_server.serve runs for a source holding a sign request (a text and an image) is opened, the text is on it,
the image and the stylesheets loaded under the page's content security policy, the PIN is typed and Approve
clicked; the source must have recorded the approval with that PIN. Screenshots go to test-artifacts/."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e_support import free_port
from marionette import Marionette
from test_firefox import ARTIFACTS, PREFS, _js, firefox_binary

from tests.conftest import USER_PIN
from tests.requests.agent_process import agent
from tests.requests.page_support import PIN, MemorySource, png, request
from tests.requests.real import activated, assert_approved_jws, new_rp, sign_request, wait_state
from tests.server.conftest import id_server  # noqa: F401 - the real identity server, once per session
from tests.server.idserver import IdServer
from vsc_provider.requests.model import MetadataItem
from vsc_provider.requests.page_server import serve

TEXT = "Transfer 1 250,00 EUR to ACME Ltd, reference 7781"
BRAND = "#1a7f37"


@pytest.fixture
def browser(firefox_turn: None, background: Any, tmp_path: Path) -> Iterator[Marionette]:
    """A headless Firefox on a fresh profile (no card, no module), with a Marionette session."""
    binary = firefox_binary()
    port = free_port()
    profile = tmp_path / "profile"
    profile.mkdir()
    prefs = {**PREFS, "marionette.port": port}
    (profile / "user.js").write_text("".join(f"user_pref({_js(k)}, {_js(v)});\n" for k, v in prefs.items()))
    home = tmp_path / "home"
    home.mkdir()
    proc = background(
        "firefox",
        [binary, "--headless", "--marionette", "--no-remote", "--profile", str(profile), "about:blank"],
        env={"HOME": str(home), "MOZ_HEADLESS": "1", "MOZ_CRASHREPORTER_DISABLE": "1", "DISPLAY": ""},
    )
    try:
        client = Marionette(port, timeout=90)
    except OSError as exc:
        raise AssertionError(f"Firefox did not open Marionette on {port}: {exc}\n{proc.output()}") from None
    try:
        client.new_session()
        yield client
    finally:
        client.close()


def element(client: Marionette, css: str) -> str:
    """The WebDriver reference of the first element matching `css`."""
    found = client.command("WebDriver:FindElement", {"using": "css selector", "value": css})
    return str(found["element-6066-11e4-a52e-4f735466cecf"])


def click(client: Marionette, css: str) -> None:
    client.command("WebDriver:ElementClick", {"id": element(client, css)})


def wait_for(client: Marionette, text: str, timeout: float = 20) -> str:
    deadline = time.monotonic() + timeout
    source = client.page_source()
    while text not in source and time.monotonic() < deadline:
        time.sleep(0.1)
        source = client.page_source()
    assert text in source, f"{text!r} not on the page within {timeout}s:\n{source}"
    return source


def screenshot(client: Marionette, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    path.write_bytes(client.screenshot_png())
    print(f"screenshot: {path}")
    return path


def test_approve_in_firefox(browser: Marionette) -> None:
    image = png(160, 60, (200, 40, 40))
    source = MemorySource.holding(
        request(
            "req-1",
            (MetadataItem("text", "Payment", TEXT.encode()), MetadataItem("image", "Invoice", image)),
            rp="Example Bank",
            branding={"name": "Example Identity", "colour": BRAND},
        )
    )
    url, stop = serve(source)
    try:
        browser.navigate(url)
        wait_for(browser, "Example Bank")
        click(browser, "a[href$='/requests/req-1']")
        page = wait_for(browser, TEXT)
        loaded = browser.script(
            "const img = document.querySelector('section.item-image img');"
            "const header = document.querySelector('header.brand');"
            "return [img.complete, img.naturalWidth, img.naturalHeight,"
            " getComputedStyle(header).borderBottomColor];"
        )
        assert loaded == [True, 160, 60, "rgb(26, 127, 55)"], (
            f"the image or the stylesheets did not load under the page's CSP: {loaded}"
        )
        browser.command("WebDriver:ElementSendKeys", {"id": element(browser, "#pin"), "text": PIN})
        shot = screenshot(browser, "approval-page-request.png")
        assert shot.stat().st_size > 0
        click(browser, "#approve")
        done = wait_for(browser, "Request approved")
        screenshot(browser, "approval-page-approved.png")
    finally:
        stop()
    assert source.approved == [("req-1", PIN)], f"the source recorded {source.approved}; the page said:\n{done}"
    assert PIN not in page and PIN not in done


@pytest.fixture(scope="module")
def firefox_rp(id_server: IdServer) -> str:  # noqa: F811 - the fixture imported above
    return new_rp(id_server, "Firefox Shop")


def test_approve_in_firefox_on_the_real_agents_page(
    browser: Marionette,
    id_server: IdServer,  # noqa: F811 - the fixture imported above
    firefox_rp: str,
    vsc_home: Path,
    tmp_path: Path,
) -> None:
    """The real agent (a card activated from the real identity server) serves the page at the URL in
    $VSC_HOME/agent.json; Firefox shows the request, the PIN is typed, Approve clicked: the relying party's
    poll says APPROVED and verified, and `cryptography` verifies the signature too."""
    user, _ = activated(id_server)
    rid = sign_request(id_server, firefox_rp, user)
    with agent(tmp_path) as a:
        url = a.page_url(vsc_home, rid, 30)
        browser.navigate(url)
        wait_for(browser, "Firefox Shop")
        click(browser, f"a[href$='/requests/{rid}']")
        page = wait_for(browser, "120.00 EUR to ACME")
        browser.command("WebDriver:ElementSendKeys", {"id": element(browser, "#pin"), "text": USER_PIN})
        screenshot(browser, "agent-page-request.png")
        click(browser, "#approve")
        done = wait_for(browser, "Request approved", timeout=60)
        screenshot(browser, "agent-page-approved.png")
        wait_state(id_server, firefox_rp, rid, "APPROVED")
        assert_approved_jws(id_server, firefox_rp, rid)
        assert USER_PIN not in page and USER_PIN not in done and USER_PIN not in a.text()
        a.proc.send_signal(signal.SIGTERM)
        assert a.proc.wait(15) == 0
