"""The approval page (vsc_provider.requests.page) served by page_server.serve on a real socket, driven with httpx:
the token, every metadata kind, branding, escaping, CSRF and origin checks, headers, answers, the bind address."""

from __future__ import annotations

import base64
import html
import logging
import re
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import httpx
import pytest

from tests.conftest import require_tool
from tests.requests.page_support import PIN, MemorySource, logo_uri, pdf, png, png_size, request
from vsc_provider.requests.model import MetadataItem, PendingRequest, RequestSource
from vsc_provider.requests.page import CONTENT_SECURITY_POLICY
from vsc_provider.requests.page_html import HEX_LIMIT
from vsc_provider.requests.page_server import serve

PNG = png(40, 30)

ALL_KINDS = (
    MetadataItem("text", "Contract summary", b"Pay 1 250,00 EUR to ACME Ltd\nReference 7781"),
    MetadataItem("image", "Signature stamp", PNG),
    MetadataItem("pdf", "Contract", pdf(["Contract page one", "Contract page two"])),
    MetadataItem("raw", "Payload", bytes(range(40))),
)


@pytest.fixture
def pdf_tools() -> None:
    require_tool("pdftoppm", "poppler-utils")
    require_tool("pdfinfo", "poppler-utils")


class _Current:
    """The source of the test that runs now: one server per module, each test with a source of its own."""

    source: RequestSource = MemorySource()

    def pending(self) -> list[PendingRequest]:
        return self.source.pending()

    def approve(self, request_id: str, pin: str) -> None:
        self.source.approve(request_id, pin)

    def reject(self, request_id: str) -> None:
        self.source.reject(request_id)


Serving = Callable[[RequestSource], AbstractContextManager[tuple[httpx.Client, str, str]]]


@pytest.fixture(scope="module")
def page_url() -> Iterator[tuple[_Current, str]]:
    current = _Current()
    url, stop = serve(current)
    try:
        yield current, url
    finally:
        stop()


@pytest.fixture
def serving(page_url: tuple[_Current, str]) -> Serving:
    """`with serving(source) as (client, base, origin)`: the page for `source` on a real socket, a client for
    it, the path under the token and the page's origin."""
    current, url = page_url

    @contextmanager
    def use(source: RequestSource) -> Iterator[tuple[httpx.Client, str, str]]:
        current.source = source
        origin, token = url.rstrip("/").rsplit("/", 1)
        try:
            with httpx.Client(base_url=origin, timeout=30) as client:
                yield client, f"/{token}/", origin
        finally:
            current.source = MemorySource()

    return use


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found, f"no CSRF field on the page:\n{page}"
    return found.group(1)


def shown_of(page: str) -> str:
    found = re.search(r'name="shown" value="([^"]+)"', page)
    assert found, page
    return found.group(1)


def images_in(page: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)]


def section(page: str, kind: str) -> str:
    found = re.search(rf'<section class="item item-{kind}">(.*?)</section>', page, re.S)
    assert found, f"no {kind} item on the page:\n{page[:3000]}"
    return found.group(1)


def answer_form(client: httpx.Client, base: str, request_id: str = "req-1") -> dict[str, str]:
    page = client.get(f"{base}requests/{request_id}").text
    return {"csrf": csrf_of(page), "shown": shown_of(page)}


def test_only_the_token_path_answers(serving: Serving) -> None:
    source = MemorySource.holding(request())
    with serving(source) as (client, base, origin):
        assert client.get(base).status_code == 200
        token = base.strip("/")
        wrong = token[:-1] + ("A" if token[-1] != "A" else "B")
        for path in ("/", "/favicon.ico", f"/{token}", f"/{wrong}/", f"/{wrong}/requests/req-1", f"/{token}/nothing",
                     f"/{wrong}/style.css", f"/x/{token}/", f"{base}requests/req-1/extra"):  # fmt: skip
            assert client.get(path).status_code == 404, path
        form = {**answer_form(client, base), "decision": "approve", "pin": PIN}
        response = client.post(f"/{wrong}/requests/req-1", data=form, headers={"Origin": origin})
        assert response.status_code == 404
    assert source.approved == [] and source.rejected == []


def test_list_shows_each_pending_request(serving: Serving) -> None:
    source = MemorySource.holding(
        request("req-1", rp="Example Bank", card_label="Alice's card", kind="sign", ttl=250),
        request("req-2", rp="Payroll Portal", card_label="Work card", kind="auth", ttl=7300),
    )
    with serving(source) as (client, base, _):
        response = client.get(base)
    page = response.text
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    for text in ("Example Bank", html.escape("Alice's card"), "Payroll Portal", "Work card", "sign", "log in"):
        assert text in page, text
    assert re.search(r"<td>4 min \d+ s</td>", page), page
    assert re.search(r"<td>2 h 1 min</td>", page), page
    assert f'href="{base}requests/req-1"' in page and f'href="{base}requests/req-2"' in page
    # the request that expires first comes first
    assert page.index("Example Bank") < page.index("Payroll Portal")
    assert '<meta http-equiv="refresh" content="10">' in page  # new requests show up without a script


def test_empty_list_says_so(serving: Serving) -> None:
    with serving(MemorySource()) as (client, base, _):
        assert "No request is waiting." in client.get(base).text


def test_detail_renders_every_metadata_kind(pdf_tools: None, serving: Serving) -> None:
    source = MemorySource.holding(request(metadata=ALL_KINDS))
    with serving(source) as (client, base, _):
        response = client.get(f"{base}requests/req-1")
    page = response.text
    assert response.status_code == 200
    assert "Example Bank" in page and "Example Identity" in page
    assert "Pay 1 250,00 EUR to ACME Ltd\nReference 7781" in section(page, "text")
    assert images_in(section(page, "image")) == [PNG]
    pages = images_in(section(page, "pdf"))
    assert len(pages) == 2 and "PDF, 2 pages" in section(page, "pdf")
    for image in pages:
        width, height = png_size(image)
        assert max(width, height) == 1100 and 700 < width < 800, (width, height)  # A4 portrait, long side bounded
    hexed = section(page, "raw")
    assert "40 bytes" in hexed
    assert "00000000  00 01 02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e 0f  ................" in hexed
    assert "00000020  20 21 22 23 24 25 26 27" in hexed and html.escape(" !\"#$%&'") in hexed
    for label in ("Contract summary", "Signature stamp", "Contract", "Payload"):
        assert f"<h3>{label}</h3>" in page
    assert 'name="pin"' in page and 'id="approve"' in page and 'id="reject"' in page
    assert "http-equiv" not in page  # a page where the PIN is typed never reloads itself


def test_raw_data_is_bounded(serving: Serving) -> None:
    data = bytes(i % 251 for i in range(HEX_LIMIT + 5000))
    with serving(MemorySource.holding(request(metadata=(MetadataItem("raw", "Big", data),)))) as (client, base, _):
        hexed = section(client.get(f"{base}requests/req-1").text, "raw")
    offsets = re.findall(r"(?:^|>)([0-9a-f]{8})  ", hexed, re.M)
    assert offsets[0] == "00000000" and int(offsets[-1], 16) == HEX_LIMIT - 16 and len(offsets) == HEX_LIMIT // 16
    assert f"{len(data)} bytes; the first {HEX_LIMIT} are shown" in hexed


def test_pdf_pages_are_bounded(pdf_tools: None, serving: Serving) -> None:
    source = MemorySource.holding(request(metadata=(MetadataItem("pdf", "Long", pdf([f"P{n}" for n in range(12)])),)))
    with serving(source) as (client, base, _):
        shown = section(client.get(f"{base}requests/req-1").text, "pdf")
    assert len(images_in(shown)) == 10
    assert "PDF, 12 pages; the first 10 are shown" in shown


def test_a_pdf_that_does_not_render_shows_a_message(pdf_tools: None, serving: Serving) -> None:
    items = (
        MetadataItem("pdf", "Broken", b"%PDF-1.4\n1 0 obj << /Type /Catalog >> garbage"),
        MetadataItem("pdf", "Not a PDF", b"<html>hello</html>"),
        MetadataItem("text", "Still shown", b"the rest of the request"),
    )
    with serving(MemorySource.holding(request(metadata=items))) as (client, base, _):
        response = client.get(f"{base}requests/req-1")
    assert response.status_code == 200
    assert response.text.count("the PDF could not be rendered") == 2, response.text
    assert "does not start with %PDF-" in response.text
    assert "the rest of the request" in response.text and 'id="approve"' in response.text


def test_without_pdftoppm_the_page_says_what_is_missing(monkeypatch: pytest.MonkeyPatch, serving: Serving) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    source = MemorySource.holding(request(metadata=(MetadataItem("pdf", "Doc", pdf(["not rendered here"])),)))
    with serving(source) as (client, base, _):
        response = client.get(f"{base}requests/req-1")
    assert response.status_code == 200
    assert "pdfinfo is not installed (Debian: poppler-utils)" in response.text


def test_only_png_jpeg_and_gif_images_are_shown(serving: Serving) -> None:
    svg = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'
    jpeg = b"\xff\xd8\xff\xe0" + b"\x00" * 20
    gif = b"GIF89a" + b"\x00" * 20
    items = (
        MetadataItem("image", "Vector", svg),
        MetadataItem("image", "Photo", jpeg),
        MetadataItem("image", "G", gif),
    )
    with serving(MemorySource.holding(request(metadata=items))) as (client, base, _):
        page = client.get(f"{base}requests/req-1").text
    assert "<svg" not in page and "svg+xml" not in page
    assert "not a PNG, JPEG or GIF file" in page
    assert f'src="data:image/jpeg;base64,{base64.b64encode(jpeg).decode()}"' in page
    assert f'src="data:image/gif;base64,{base64.b64encode(gif).decode()}"' in page


def test_branding_logo_and_colour_are_checked(serving: Serving) -> None:
    logo = png(8, 8, (200, 10, 10))
    good = request("good", branding={"name": "Bank ID", "logo": logo_uri(logo), "colour": "#A1B2C3"})
    bad = request(
        "bad",
        branding={"name": "Other", "logo": logo_uri(b"<svg/>", "image/svg+xml"), "colour": "red; } body { x: y"},
    )
    lying = request("lying", branding={"logo": logo_uri(b"<svg/>", "image/png"), "colour": "#12345"})
    with serving(MemorySource.holding(good, bad, lying)) as (client, base, _):
        page = client.get(f"{base}requests/good").text
        assert '<span class="name">Bank ID</span>' in page
        assert f'<img src="{logo_uri(logo)}" alt="">' in page
        assert f'href="{base}brand/a1b2c3.css"' in page
        css = client.get(f"{base}brand/a1b2c3.css")
        assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
        assert "#a1b2c3" in css.text
        for path in ("brand/red.css", "brand/a1b2c3;x.css", "brand/A1B2C3.css", "brand/a1b2c30.css"):
            assert client.get(base + path).status_code == 404, path
        for other in ("bad", "lying"):
            page = client.get(f"{base}requests/{other}").text
            assert "/brand/" not in page and "svg" not in page and "red;" not in page
            assert "<img" not in page


def test_html_in_requests_is_escaped(serving: Serving) -> None:
    evil = '<script>alert(1)</script>"><img src=x onerror=alert(2)>'
    source = MemorySource.holding(
        request(
            "req-1",
            (MetadataItem("text", evil, evil.encode()), MetadataItem("raw", evil, evil.encode())),
            rp=evil,
            card_label=evil,
            branding={"name": evil, "colour": "#000000"},
        )
    )
    with serving(source) as (client, base, origin):
        pages = [client.get(base).text, client.get(f"{base}requests/req-1").text]
        form = {**answer_form(client, base), "decision": "reject"}
        pages.append(client.post(f"{base}requests/req-1", data=form, headers={"Origin": origin}).text)
    for page in pages:
        assert "<script" not in page and "<img src=x" not in page, page
        assert html.escape(evil) in page
    assert source.rejected == ["req-1"]


def test_security_headers_on_every_answer(serving: Serving) -> None:
    source = MemorySource.holding(request())
    with serving(source) as (client, base, origin):
        responses = [
            client.get(base),
            client.get(f"{base}requests/req-1"),
            client.get(f"{base}style.css"),
            client.get("/elsewhere"),
            client.post(f"{base}requests/req-1", data={"decision": "approve"}, headers={"Origin": origin}),
            client.get(base, headers={"Host": "attacker.example:8765"}),
        ]
    assert [r.status_code for r in responses] == [200, 200, 200, 404, 403, 400]
    for response in responses:
        headers = response.headers
        assert headers["content-security-policy"] == CONTENT_SECURITY_POLICY
        assert "default-src 'none'" in headers["content-security-policy"]
        assert "http" not in headers["content-security-policy"]  # no remote source allowed anywhere
        assert headers["x-frame-options"] == "DENY"
        assert headers["cache-control"] == "no-store"
        assert headers["referrer-policy"] == "same-origin"
        assert headers["x-content-type-options"] == "nosniff"


def test_pages_load_nothing_from_elsewhere(pdf_tools: None, serving: Serving) -> None:
    with serving(MemorySource.holding(request(metadata=ALL_KINDS))) as (client, base, _):
        for page in (client.get(base).text, client.get(f"{base}requests/req-1").text):
            for url in re.findall(r'(?:src|href|action)="([^"]*)"', page):
                assert url.startswith((base, "data:image/")), url
            assert "<script" not in page and "style=" not in page


def test_a_host_that_is_not_loopback_is_refused(serving: Serving) -> None:
    """A DNS name rebound to 127.0.0.1 arrives with its own Host: refused before any route."""
    source = MemorySource.holding(request())
    with serving(source) as (client, base, _):
        form = {**answer_form(client, base), "decision": "approve", "pin": PIN}
        for host in ("attacker.example", "attacker.example:8765", "127.0.0.1.attacker.example", ""):
            assert client.get(base, headers={"Host": host}).status_code == 400, host
            response = client.post(
                f"{base}requests/req-1", data=form, headers={"Host": host, "Origin": f"http://{host}"}
            )
            assert response.status_code == 400, host
        for host in ("localhost:8765", "[::1]:8765", "127.0.0.1"):
            assert client.get(base, headers={"Host": host}).status_code == 200, host
    assert source.approved == []


@pytest.mark.parametrize(
    ("case", "fields", "headers"),
    [
        ("no CSRF token", {"decision": "approve", "pin": PIN}, {"Origin": "OWN"}),
        ("wrong CSRF token", {"csrf": "x" * 43, "decision": "approve", "pin": PIN}, {"Origin": "OWN"}),
        ("two CSRF tokens", {"decision": "approve", "pin": PIN}, {"Origin": "OWN"}),
        ("foreign Origin", {"decision": "approve", "pin": PIN}, {"Origin": "http://attacker.example"}),
        ("other port", {"decision": "approve", "pin": PIN}, {"Origin": "http://127.0.0.1:9999"}),
        ("null Origin", {"decision": "approve", "pin": PIN}, {"Origin": "null"}),
        ("foreign Referer", {"decision": "approve", "pin": PIN}, {"Referer": "http://attacker.example/x"}),
        ("neither Origin nor Referer", {"decision": "approve", "pin": PIN}, {}),
    ],
)
def test_csrf_refused(case: str, fields: dict[str, str], headers: dict[str, str], serving: Serving) -> None:
    source = MemorySource.holding(request())
    with serving(source) as (client, base, origin):
        form = answer_form(client, base)
        if case in ("no CSRF token", "wrong CSRF token"):
            form.pop("csrf")
        body: dict[str, str | list[str]] = {**form, **fields}
        if case == "two CSRF tokens":
            body["csrf"] = [form["csrf"], form["csrf"]]
        headers = {name: origin if value == "OWN" else value for name, value in headers.items()}
        response = client.post(f"{base}requests/req-1", data=body, headers=headers)
    assert response.status_code == 403, (case, response.text)
    assert "not sent from the approval page" in response.text
    assert PIN not in response.text
    assert source.approved == [] and source.rejected == [] and len(source.pending()) == 1


def test_the_form_must_be_a_small_urlencoded_form(serving: Serving) -> None:
    source = MemorySource.holding(request())
    with serving(source) as (client, base, origin):
        form = {**answer_form(client, base), "decision": "approve", "pin": PIN}
        as_json = client.post(f"{base}requests/req-1", json=form, headers={"Origin": origin})
        big = client.post(f"{base}requests/req-1", data={**form, "pad": "x" * 9000}, headers={"Origin": origin})
    assert as_json.status_code == 400 and big.status_code == 400
    assert source.approved == []


def test_approve_passes_the_pin_to_the_source(caplog: pytest.LogCaptureFixture, serving: Serving) -> None:
    caplog.set_level(logging.DEBUG)
    source = MemorySource.holding(request("req-1"), request("req-2"))
    with serving(source) as (client, base, origin):
        form = {**answer_form(client, base), "decision": "approve", "pin": PIN}
        response = client.post(f"{base}requests/req-1", data=form, headers={"Origin": origin})
        assert response.status_code == 200, response.text
        assert "Request approved" in response.text and "Example Bank" in response.text
        assert PIN not in response.text
        assert source.approved == [("req-1", PIN)]
        assert [r.id for r in source.pending()] == ["req-2"]
        # answered: the page says so instead of answering again
        again = client.post(f"{base}requests/req-1", data=form, headers={"Origin": origin})
        assert again.status_code == 404 and source.approved == [("req-1", PIN)]
        # the Referer alone (a browser that sends no Origin) is enough when it is the page's own
        form = {**answer_form(client, base, "req-2"), "decision": "approve", "pin": PIN}
        referer = f"{origin}{base}requests/req-2"
        assert client.post(f"{base}requests/req-2", data=form, headers={"Referer": referer}).status_code == 200
    assert source.approved == [("req-1", PIN), ("req-2", PIN)]
    assert PIN not in caplog.text


def test_a_request_error_is_shown_on_the_page(caplog: pytest.LogCaptureFixture, serving: Serving) -> None:
    caplog.set_level(logging.DEBUG)
    wrong_pin = "777333"
    source = MemorySource.holding(request(metadata=(MetadataItem("text", "What", b"Transfer 10 EUR"),)))
    with serving(source) as (client, base, origin):
        form = {**answer_form(client, base), "decision": "approve", "pin": wrong_pin}
        response = client.post(f"{base}requests/req-1", data=form, headers={"Origin": origin})
        assert response.status_code == 400
        assert '<p class="error" role="alert">wrong PIN: 2 tries left</p>' in response.text
        assert "Transfer 10 EUR" in response.text and 'id="approve"' in response.text  # the request again
        assert wrong_pin not in response.text and 'value=""' not in response.text.split('name="pin"')[1][:50]
        empty = client.post(f"{base}requests/req-1", data={**form, "pin": ""}, headers={"Origin": origin})
        assert empty.status_code == 400 and "Type the card&#x27;s PIN to approve." in empty.text
        odd = client.post(f"{base}requests/req-1", data={**form, "decision": "maybe"}, headers={"Origin": origin})
        assert odd.status_code == 400 and "Choose Approve or Reject." in odd.text
    assert source.approved == [] and len(source.pending()) == 1
    assert wrong_pin not in caplog.text


def test_an_unexpected_source_failure_is_a_page_not_a_traceback(
    caplog: pytest.LogCaptureFixture, serving: Serving
) -> None:
    class Failing(MemorySource):
        def approve(self, request_id: str, pin: str) -> None:
            raise OSError("card store unreadable")

    source = Failing({"req-1": request()})
    with serving(source) as (client, base, origin):
        form = {**answer_form(client, base), "decision": "approve", "pin": PIN}
        response = client.post(f"{base}requests/req-1", data=form, headers={"Origin": origin})
    assert response.status_code == 500 and "could not be approved: see the agent&#x27;s log" in response.text
    assert "Traceback" not in response.text and PIN not in caplog.text


def test_reject(serving: Serving) -> None:
    source = MemorySource.holding(request())
    with serving(source) as (client, base, origin):
        form = {**answer_form(client, base), "decision": "reject", "pin": ""}
        response = client.post(f"{base}requests/req-1", data=form, headers={"Origin": origin})
    assert response.status_code == 200 and "Request rejected" in response.text
    assert source.rejected == ["req-1"] and source.approved == []


def test_the_answer_is_for_what_was_shown(serving: Serving) -> None:
    source = MemorySource.holding(request())
    with serving(source) as (client, base, origin):
        form = {**answer_form(client, base), "decision": "approve", "pin": PIN, "shown": "something-else"}
        response = client.post(f"{base}requests/req-1", data=form, headers={"Origin": origin})
    assert response.status_code == 409 and "changed after this page showed it" in response.text
    assert source.approved == []


def test_an_expired_request_cannot_be_approved(serving: Serving) -> None:
    live = request(ttl=300)
    source = MemorySource.holding(live)
    with serving(source) as (client, base, origin):
        form = {**answer_form(client, base), "decision": "approve", "pin": PIN}
        source.requests["req-1"] = request(ttl=-1)
        page = client.get(f"{base}requests/req-1").text
        assert "has expired" in page and 'id="approve"' not in page and "expired" in client.get(base).text
        response = client.post(f"{base}requests/req-1", data=form, headers={"Origin": origin})
    assert response.status_code == 409 and source.approved == []


def test_unknown_request_is_404(serving: Serving) -> None:
    with serving(MemorySource.holding(request())) as (client, base, _):
        response = client.get(f"{base}requests/nope")
    assert response.status_code == 404 and "not pending" in response.text


@pytest.fixture
def served() -> Iterator[tuple[str, MemorySource]]:
    source = MemorySource.holding(request(metadata=(MetadataItem("text", "What", b"Sign the lease"),)))
    url, stop = serve(source)
    try:
        yield url, source
    finally:
        stop()


def listening_addresses(port: int) -> list[str]:
    """The local addresses of LISTEN sockets on `port`, from /proc/net/tcp and tcp6 (hex, as the kernel has them)."""
    found = []
    for name in ("tcp", "tcp6"):
        table = Path("/proc/net") / name
        if not table.exists():
            continue
        for line in table.read_text().splitlines()[1:]:
            fields = line.split()
            address, _, hex_port = fields[1].rpartition(":")
            if int(hex_port, 16) == port and fields[3] == "0A":  # 0A: LISTEN
                found.append(address)
    return found


def test_serve_binds_127_0_0_1_only_and_stops(served: tuple[str, MemorySource]) -> None:
    url, _ = served
    found = re.fullmatch(r"http://127\.0\.0\.1:(\d+)/([A-Za-z0-9_-]{43})/", url)
    assert found, url
    port = int(found.group(1))
    assert listening_addresses(port) == ["0100007F"]  # 127.0.0.1, little-endian hex; nothing on 0.0.0.0 or ::
    response = httpx.get(url)
    assert response.status_code == 200 and "Example Bank" in response.text
    assert httpx.get(f"http://127.0.0.1:{port}/").status_code == 404
    assert httpx.get(url.replace(found.group(2), "A" * 43)).status_code == 404


def test_serve_approves_with_the_pin_over_http(served: tuple[str, MemorySource]) -> None:
    url, source = served
    with httpx.Client() as client:
        page = client.get(url + "requests/req-1").text
        assert "Sign the lease" in page
        form = {"csrf": csrf_of(page), "shown": shown_of(page), "decision": "approve", "pin": PIN}
        origin = url.split("/", 3)
        refused = client.post(url + "requests/req-1", data=form, headers={"Origin": "http://localhost:1"})
        assert refused.status_code == 403 and source.approved == []
        response = client.post(url + "requests/req-1", data=form, headers={"Origin": "/".join(origin[:3])})
    assert response.status_code == 200, response.text
    assert source.approved == [("req-1", PIN)]


def test_two_servers_have_different_tokens_and_stop_closes_the_port() -> None:
    first, stop_first = serve(MemorySource())
    second, stop_second = serve(MemorySource())
    try:
        assert first.rsplit("/", 2)[1] != second.rsplit("/", 2)[1]
        assert httpx.get(first).status_code == 200 and httpx.get(second).status_code == 200
    finally:
        stop_first()
        stop_second()
    for url in (first, second):
        with pytest.raises(httpx.ConnectError):
            httpx.get(url, timeout=2)


def test_connections_get_tcp_nodelay() -> None:
    """asyncio turns Nagle off (TCP_NODELAY) only on connections whose socket proto says TCP; without it each
    answer on a kept-alive connection waited ~40 ms for a delayed ACK."""
    import asyncio
    import socket

    from vsc_provider.requests.page_server import listening_socket

    listener = listening_socket()
    assert listener.proto == socket.IPPROTO_TCP
    listener.listen()
    client = socket.create_connection(listener.getsockname())
    accepted, _ = listener.accept()
    try:
        asyncio.base_events._set_nodelay(accepted)  # what asyncio does to every accepted connection
        assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    finally:
        for s in (client, accepted, listener):
            s.close()


def test_fingerprint_is_offered_only_by_a_source_that_has_it_and_needs_the_csrf_token(serving: Serving) -> None:
    """A source without fingerprint support (this test double) shows no "Use fingerprint" button, and a form
    that asks for one anyway approves nothing; a fingerprint answer without the CSRF token is refused before any
    reader is asked (the agent's fingerprint approval with fprintd is in test_fingerprint.py)."""
    source = MemorySource.holding(request("req-1"))
    with serving(source) as (client, base, origin):
        page = client.get(f"{base}requests/req-1").text
        assert 'value="fingerprint"' not in page and "Use fingerprint" not in page
        form = {**answer_form(client, base), "decision": "fingerprint"}
        asked = client.post(f"{base}requests/req-1", data=form, headers={"Origin": origin})
        assert asked.status_code == 400 and "Type the card&#x27;s PIN to approve." in asked.text, asked.text
        forged = client.post(f"{base}requests/req-1", data={**form, "csrf": "x" * 43}, headers={"Origin": origin})
        assert forged.status_code == 403
    assert source.approved == [] and [r.id for r in source.pending()] == ["req-1"]
