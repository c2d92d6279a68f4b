"""The approval page's HTML: the list of pending requests, one request with every metadata item, the answers.

Everything that comes from a request is escaped or re-encoded here: text as escaped text, images only as
PNG/JPEG/GIF data: URIs (the type taken from the bytes), PDFs as images of their pages, raw data as a hex view.
The pages need no script and load nothing from elsewhere (see the content security policy in page.py).
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from collections.abc import Iterable
from html import escape
from urllib.parse import quote

from vsc_provider.requests.model import MetadataItem, PendingRequest
from vsc_provider.requests.pdf_pages import PdfRenderError, render_pdf

LIST_REFRESH_S = 10
HEX_LIMIT = 4096  # bytes of a raw item shown as hex; the rest is counted, not shown
_COLOUR = re.compile(r"#[0-9a-fA-F]{6}")
_LOGO = re.compile(r"data:image/(png|jpeg|gif);base64,([A-Za-z0-9+/]*={0,2})")
_KINDS = {"auth": "log in", "sign": "sign"}

STYLESHEET = """\
body { font-family: sans-serif; margin: 0; color: #1d1d1f; background: #f6f6f7; }
main { max-width: 60rem; margin: 0 auto; padding: 1rem 1.5rem 3rem; }
header.brand { display: flex; align-items: center; gap: 1rem; padding: .75rem 1.5rem; background: #fff;
  border-bottom: 6px solid #4a5568; }
header.brand img { max-height: 48px; max-width: 160px; }
header.brand .name { font-size: 1.25rem; font-weight: bold; }
table { border-collapse: collapse; width: 100%; background: #fff; }
th, td { text-align: left; padding: .5rem .75rem; border-bottom: 1px solid #ddd; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: .25rem 1rem; }
dl.facts dt { font-weight: bold; }
dl.facts dd { margin: 0; overflow-wrap: anywhere; }
section.item { background: #fff; border: 1px solid #ddd; padding: .5rem 1rem 1rem; margin: 1rem 0; }
pre { white-space: pre-wrap; overflow-wrap: anywhere; }
pre.text { font-family: inherit; font-size: 1rem; }
pre.hex { font-family: monospace; white-space: pre; overflow-x: auto; }
img.shown { max-width: 100%; border: 1px solid #ccc; display: block; margin: .5rem 0; }
.error { background: #fde8e8; border: 1px solid #c53030; padding: .75rem 1rem; }
.note { color: #555; }
form.answer { background: #fff; border: 1px solid #ddd; padding: 1rem; margin-top: 1.5rem; }
form.answer input[type=password] { font-size: 1.1rem; padding: .3rem; }
form.answer button { font-size: 1rem; padding: .4rem 1.2rem; margin-right: .5rem; }
"""


def _e(text: object) -> str:
    return escape(str(text), quote=True)


def time_left(expires: float, now: float) -> str:
    left = math.floor(expires - now)
    if left <= 0:
        return "expired"
    minutes, seconds = divmod(left, 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min {seconds} s" if minutes else f"{seconds} s"


def image_type(data: bytes) -> str | None:
    """The MIME type of a PNG, JPEG or GIF by its magic bytes; None for anything else (SVG and the rest)."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    return None


def data_uri(data: bytes) -> str | None:
    kind = image_type(data)
    return None if kind is None else f"data:{kind};base64,{base64.b64encode(data).decode()}"


def brand_colour(branding: dict[str, object]) -> str | None:
    """The branding colour as six lower-case hex digits, or None when absent or not #rrggbb."""
    value = branding.get("colour")
    if isinstance(value, str) and _COLOUR.fullmatch(value):
        return value[1:].lower()
    return None


def brand_logo(branding: dict[str, object]) -> str | None:
    """The logo as a data: URI re-made from its decoded bytes, only when they are a PNG, JPEG or GIF."""
    value = branding.get("logo")
    if not isinstance(value, str):
        return None
    found = _LOGO.fullmatch(value)
    if found is None:
        return None
    try:
        raw = base64.b64decode(found.group(2), validate=True)
    except (binascii.Error, ValueError):
        return None
    return data_uri(raw)


def hex_view(data: bytes, limit: int = HEX_LIMIT) -> str:
    """Offset, 16 bytes in hex and the printable ASCII of each line, of at most `limit` bytes."""
    lines = []
    for offset in range(0, min(len(data), limit), 16):
        chunk = data[offset : offset + 16]
        hexed = " ".join(f"{b:02x}" for b in chunk)
        text = "".join(chr(b) if 0x20 <= b < 0x7F else "." for b in chunk)
        lines.append(f"{offset:08x}  {hexed:<47}  {text}")
    return "\n".join(lines)


def _document(title: str, body: str, base: str, colour: str | None = None, branding: str = "", refresh: int = 0) -> str:
    brand_css = f'<link rel="stylesheet" href="{base}brand/{colour}.css">' if colour else ""
    # the list reloads itself (no script needed) so that new requests show up; a request's page never does
    reload = f'<meta http-equiv="refresh" content="{refresh}">' if refresh else ""
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">{reload}'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title>"
        f'<link rel="stylesheet" href="{base}style.css">{brand_css}</head>'
        f"<body>{branding}<main>{body}</main></body></html>\n"
    )


def _brand_header(request: PendingRequest | None) -> tuple[str, str | None]:
    """The identity server's header (logo and name) and its colour, from the request's branding."""
    branding = request.branding if request is not None else {}
    name = branding.get("name")
    logo = brand_logo(branding)
    parts = []
    if logo:
        parts.append(f'<img src="{logo}" alt="">')
    parts.append(f'<span class="name">{_e(name) if isinstance(name, str) and name else "Virtual smart card"}</span>')
    return f'<header class="brand">{"".join(parts)}</header>', brand_colour(branding)


def request_href(base: str, request_id: str) -> str:
    return f"{base}requests/{quote(request_id, safe='')}"


def list_page(base: str, requests: Iterable[PendingRequest], now: float) -> str:
    rows = [
        "<tr>"
        f"<td>{_e(r.card_label)}</td><td>{_e(r.rp)}</td><td>{_e(_KINDS.get(r.kind, r.kind))}</td>"
        f"<td>{_e(time_left(r.expires, now))}</td>"
        f'<td><a href="{_e(request_href(base, r.id))}">Review</a></td>'
        "</tr>"
        for r in sorted(requests, key=lambda r: r.expires)
    ]
    if rows:
        table = (
            "<table><thead><tr><th>Card</th><th>Relying party</th><th>Kind</th><th>Time left</th><th></th></tr>"
            f"</thead><tbody>{''.join(rows)}</tbody></table>"
        )
    else:
        table = '<p class="note">No request is waiting.</p>'
    body = f'<h1>Pending requests</h1>{table}<p><a href="{base}">Refresh</a></p>'
    header, _ = _brand_header(None)
    return _document("Pending requests", body, base, branding=header, refresh=LIST_REFRESH_S)


def _item(index: int, item: MetadataItem) -> str:
    title = f"<h3>{_e(item.label) or f'Item {index + 1}'}</h3>"
    if item.type == "text":
        content = f'<pre class="text">{_e(item.data.decode("utf-8", errors="replace"))}</pre>'
    elif item.type == "image":
        uri = data_uri(item.data)
        content = (
            f'<img class="shown" src="{uri}" alt="{_e(item.label)}">'
            if uri
            else '<p class="error">This image is not a PNG, JPEG or GIF file and is not shown.</p>'
        )
    elif item.type == "pdf":
        content = _pdf(item)
    elif item.type == "raw":
        shown = min(len(item.data), HEX_LIMIT)
        note = f"{len(item.data)} bytes"
        if shown < len(item.data):
            note += f"; the first {shown} are shown"
        content = f'<p class="note">{note}</p><pre class="hex">{_e(hex_view(item.data))}</pre>'
    else:
        content = f'<p class="error">An item of unknown type {_e(item.type)} is not shown.</p>'
    return f'<section class="item item-{_e(item.type)}">{title}{content}</section>'


def _pdf(item: MetadataItem) -> str:
    try:
        rendered = render_pdf(item.data)
    except PdfRenderError as exc:
        return f'<p class="error">{_e(exc)}</p>'
    shown = len(rendered.pages)
    note = f"PDF, {rendered.total_pages} page{'s' if rendered.total_pages != 1 else ''}"
    if shown < rendered.total_pages:
        note += f"; the first {shown} are shown"
    images = "".join(
        f'<img class="shown" src="data:image/png;base64,{base64.b64encode(png).decode()}" '
        f'alt="{_e(item.label)}, page {n}">'
        for n, png in enumerate(rendered.pages, start=1)
    )
    return f'<p class="note">{note}</p>{images}'


def detail_page(
    base: str,
    request: PendingRequest,
    csrf: str,
    now: float,
    error: str | None = None,
    status: str = "",
    fingerprint: bool = False,
) -> str:
    """One request's page; with `fingerprint`, a "Use fingerprint" button approves after fprintd's match."""
    left = time_left(request.expires, now)
    facts = (
        '<dl class="facts">'
        f"<dt>Relying party</dt><dd>{_e(request.rp)}</dd>"
        f"<dt>Asks to</dt><dd>{_e(_KINDS.get(request.kind, request.kind))}</dd>"
        f"<dt>Card</dt><dd>{_e(request.card_label)} ({_e(request.card)})</dd>"
        f"<dt>Signature</dt><dd>{_e(request.alg)}, {_e(request.format.upper())}</dd>"
        f"<dt>Time left</dt><dd>{_e(left)}</dd>"
        f"<dt>Request</dt><dd>{_e(request.id)}</dd>"
        "</dl>"
    )
    items = "".join(_item(i, item) for i, item in enumerate(request.metadata))
    if not items:
        items = '<p class="note">The relying party sent nothing to show.</p>'
    banner = f'<p class="error" role="alert">{_e(error)}</p>' if error else ""
    if status:
        banner += f'<p class="note" role="status">{_e(status)}</p>'
    if left == "expired":
        answer = '<p class="error">This request has expired and can no longer be approved.</p>'
    else:
        answer = (
            f'<form class="answer" method="post" action="{_e(request_href(base, request.id))}">'
            f'<input type="hidden" name="csrf" value="{_e(csrf)}">'
            f'<input type="hidden" name="shown" value="{_e(request.display_hash)}">'
            '<p><label for="pin">PIN of the card</label> '
            '<input type="password" id="pin" name="pin" autocomplete="off" inputmode="numeric"></p>'
            '<p><button type="submit" id="approve" name="decision" value="approve">Approve</button>'
            '<button type="submit" id="reject" name="decision" value="reject">Reject</button></p>'
            + (
                '<p><button type="submit" id="fingerprint" name="decision" value="fingerprint">Use fingerprint'
                "</button> then put your finger on the reader (instead of typing the PIN)</p>"
                if fingerprint
                else ""
            )
            + "</form>"
        )
    body = (
        f'<p><a href="{base}">All requests</a></p>'
        f"<h1>{_e(request.rp)} asks you to {_e(_KINDS.get(request.kind, request.kind))}</h1>"
        f"{banner}{facts}<h2>What you are asked to {_e(_KINDS.get(request.kind, request.kind))}</h2>{items}{answer}"
    )
    return _branded(f"Request from {request.rp}", body, base, request)


def _branded(title: str, body: str, base: str, request: PendingRequest) -> str:
    """A page about one request, under its identity server's branding."""
    header, colour = _brand_header(request)
    return _document(title, body, base, colour, header)


def answered_page(base: str, request: PendingRequest, decision: str) -> str:
    verb = "rejected" if decision == "reject" else "approved"
    body = (
        f'<h1 id="answered">Request {verb}</h1>'
        f"<p>You {verb} the request from {_e(request.rp)} on {_e(request.card_label)}.</p>"
        f'<p><a href="{base}">All requests</a></p>'
    )
    return _branded(f"Request {verb}", body, base, request)


def message_page(base: str, title: str, message: str) -> str:
    body = f'<h1>{_e(title)}</h1><p class="error">{_e(message)}</p><p><a href="{base}">All requests</a></p>'
    header, _ = _brand_header(None)
    return _document(title, body, base, branding=header)


def brand_stylesheet(colour: str) -> str:
    """The one rule that colours a request's header: `colour` has been checked to be six hex digits."""
    return f"header.brand {{ border-bottom-color: #{colour}; }}\nform.answer {{ border-top: 4px solid #{colour}; }}\n"
