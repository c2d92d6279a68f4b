"""The stream's life on the real relay: the event-stream format, keep-alives, the end after its lifetime, the
client's stop event, HTTPS with the operator's certificate, nothing written to disk, and the CLI's refusals."""

from __future__ import annotations

import ipaddress
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.conftest import run_vsc
from tests.relay.relay_process import Listener, Relay, fake_jwe, free_port, new_topic
from vsc_provider.cert_builder import certificate_builder
from vsc_provider.relay.client import RelayError, listen, post_notification


def test_the_wire_format_keepalives_and_the_end_of_a_stream(make_relay: Callable[..., Relay]) -> None:
    relay = make_relay("--keepalive", "0.3", "--stream-seconds", "2")
    topic, jwe = new_topic(), fake_jwe()
    text = ""
    started = time.monotonic()
    with httpx.Client(timeout=10) as client, client.stream("GET", f"{relay.url}/v1/topics/{topic}") as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-store"
        for chunk in response.iter_text():
            text += chunk
            if chunk.startswith(": listening"):
                assert post_notification(relay.url, topic, jwe) == 1
    lasted = time.monotonic() - started
    assert 1.9 < lasted < 5, lasted  # the relay ended it (a clean end: iter_text finished without an error)
    assert f"event: notification\ndata: {jwe}\n\n" in text
    assert text.count(": keep-alive\n\n") >= 3
    relay.wait_listeners(0)


def test_listen_returns_when_the_relay_ends_the_stream(make_relay: Callable[..., Relay]) -> None:
    relay = make_relay("--stream-seconds", "1")
    listener = Listener(relay.url, new_topic())
    assert listener.ended.wait(6)
    assert listener.error is None


def test_a_stop_event_ends_a_quiet_listen_at_once(relay: Relay) -> None:
    # the keep-alive is 15 s away: listen must not wait for it
    base = relay.health()["listeners"]
    listener = Listener(relay.url, new_topic())
    relay.wait_listeners(base + 1)
    time.sleep(0.3)
    listener.stop.set()
    assert listener.ended.wait(3)  # well before the keep-alive, 15 s away
    assert listener.error is None
    relay.wait_listeners(base)
    # a stop event set beforehand: no connection at all
    stopped = threading.Event()
    stopped.set()
    assert list(listen(relay.url, new_topic(), stopped)) == []


def test_an_unreachable_relay_is_a_relay_error() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(RelayError) as posted:
        post_notification(url, new_topic(), fake_jwe())
    assert posted.value.status is None
    with pytest.raises(RelayError):
        next(listen(url, new_topic()))


def test_a_server_that_is_no_relay_is_a_relay_error(tmp_path: Path) -> None:
    # a plain web server answering 200 with a page: listen must say so, not wait for events that never come
    topic = new_topic()
    (tmp_path / "v1" / "topics").mkdir(parents=True)
    (tmp_path / "v1" / "topics" / topic).write_text("<html>hello</html>")
    port = free_port()
    web = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/")
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        began = time.monotonic()
        with pytest.raises(RelayError, match="event stream"):
            next(listen(f"http://127.0.0.1:{port}", topic))
        assert time.monotonic() - began < 5
    finally:
        web.terminate()
        web.wait(10)


def test_head_answers_headers_and_takes_no_place(make_relay: Callable[..., Relay]) -> None:
    relay = make_relay("--max-per-topic", "1")
    topic = new_topic()
    response = httpx.head(f"{relay.url}/v1/topics/{topic}")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert httpx.head(f"{relay.url}/v1/topics/nope").status_code == 400
    assert relay.health()["listeners"] == 0
    listener = Listener(relay.url, topic)
    relay.wait_listeners(1)
    listener.close()
    assert listener.error is None


def _self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "relay test")])
    cert = (
        certificate_builder(name, name, key.public_key(), 1)
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "relay.pem", directory / "relay.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


def test_https_with_the_operators_certificate(
    make_relay: Callable[..., Relay], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cert, key = _self_signed(tmp_path)
    relay = make_relay("--tls-cert", str(cert), "--tls-key", str(key), scheme="https", verify=str(cert))
    topic, jwe = new_topic(), fake_jwe()
    # not trusted yet: both clients refuse the relay's certificate
    with pytest.raises(RelayError):
        post_notification(relay.url, topic, jwe)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    listener = Listener(relay.url, topic)
    try:
        relay.wait_listeners(1)
        assert post_notification(relay.url, topic, jwe) == 1
        assert listener.next() == jwe
        listener.stop.set()  # the stop guard works under TLS too
        assert listener.ended.wait(3)
        assert listener.error is None
    finally:
        listener.close()
    with pytest.raises(httpx.RemoteProtocolError):  # no plain HTTP on the TLS port
        httpx.get(relay.url.replace("https:", "http:") + "/v1/health")


def test_the_relay_writes_nothing(make_relay: Callable[..., Relay]) -> None:
    relay = make_relay("--post-token", "a-token-to-post-with")
    topic = new_topic()
    listener = Listener(relay.url, topic)
    relay.wait_listeners(1)
    for i in range(20):
        assert post_notification(relay.url, topic, fake_jwe(str(i)), token="a-token-to-post-with") == 1
        listener.next()
    post_notification(relay.url, new_topic(), fake_jwe(), token="a-token-to-post-with")
    listener.close()
    relay.stop()
    assert list(relay.workdir.rglob("*")) == []
    assert list(relay.home.rglob("*")) == []
    log = relay.log.read_text()
    assert topic not in log and "a-token-to-post-with" not in log


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tls-cert", "CERT"], "--tls-cert and --tls-key go together"),
        (["--tls-key", "CERT"], "--tls-cert and --tls-key go together"),
        (["--post-token", " "], "--post-token must not be empty"),
        (["--tls-cert", "/nonexistent/cert.pem", "--tls-key", "CERT"], "does not exist"),
        (["--max-per-topic", "0"], "--max-per-topic"),
        (["--port", "70000"], "--port"),
    ],
)
def test_the_cli_refuses_bad_options_in_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    cert = tmp_path / "cert.pem"
    cert.write_text("not used")
    result = run_vsc("push-relay", "run", *[str(cert) if a == "CERT" else a for a in args], check=False, timeout=60)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_tls_files_that_do_not_load_are_one_line(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    result = run_vsc("push-relay", "run", "--tls-cert", str(junk), "--tls-key", str(junk), check=False, timeout=60)
    assert result.returncode == 1
    assert "do not load as a PEM certificate and key" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_command_is_listed() -> None:
    result = run_vsc("--help")
    assert "push-relay" in result.stdout
