"""Photo downloads during a build (issue 15 §1): no fetches from loopback, private, link-local
or other non-global addresses unless allowed; DNS resolved once and the checked address
connected to; size, time and redirects bounded, every redirect target checked again.

A real HTTP server on 127.0.0.1 plays the shop's image host (and the internal service an
attacker would point a catalogue at)."""

from __future__ import annotations

import io
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

import indexer.images as images
from indexer.images import ALLOW_PRIVATE_ENV, ImageLoader, ImageLoadError, blocked_address_reason


def png_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (10, 200, 10)).save(buffer, format="PNG")
    return buffer.getvalue()


PNG = png_bytes()


class _Handler(BaseHTTPRequestHandler):
    hits: list[tuple[str, str]]  # (path, Host header), set on the subclass

    def log_message(self, *args: Any) -> None:  # keep pytest's output clean
        pass

    def do_GET(self) -> None:
        self.hits.append((self.path, self.headers.get("Host", "")))
        port = self.server.server_address[1]
        if self.path == "/ok.png":
            self._send(200, PNG, {"Content-Type": "image/png", "Content-Length": str(len(PNG))})
        elif self.path.startswith("/redirect/"):
            left = int(self.path.rsplit("/", 1)[1])
            target = "/ok.png" if left == 0 else f"/redirect/{left - 1}"
            self._send(302, b"", {"Location": target})
        elif self.path == "/to-private":
            self._send(302, b"", {"Location": f"http://127.0.0.2:{port}/ok.png"})
        elif self.path == "/to-file":
            self._send(302, b"", {"Location": "file:///etc/passwd"})
        elif self.path == "/big":  # no Content-Length: the size is only known by reading
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.end_headers()
            try:
                for _ in range(64):
                    self.wfile.write(b"\0" * 65536)
            except OSError:  # the client hung up at its limit, as it should
                pass
        elif self.path == "/big-declared":
            self._send(200, b"", {"Content-Length": str(50 * 1024 * 1024)})  # lies: no body
        elif self.path == "/slow":
            self.send_response(200)
            self.end_headers()
            try:
                for _ in range(100):
                    self.wfile.write(b"\0")
                    self.wfile.flush()
                    time.sleep(0.1)
            except OSError:
                pass
        else:
            self._send(404, b"no", {})

    def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def server() -> Iterator[tuple[str, list[tuple[str, str]]]]:
    hits: list[tuple[str, str]] = []
    handler = type("Handler", (_Handler,), {"hits": hits})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", hits
    finally:
        httpd.shutdown()
        httpd.server_close()


def loader(**kwargs: Any) -> ImageLoader:
    return ImageLoader(retries=0, timeout=5.0, workers=1, **kwargs)


@pytest.fixture
def only_127_0_0_1_is_public(monkeypatch: pytest.MonkeyPatch) -> None:
    """Treat 127.0.0.1 (the test server) as a public address; everything else as usual."""
    real = images.blocked_address_reason
    monkeypatch.setattr(
        images, "blocked_address_reason", lambda a: None if a == "127.0.0.1" else real(a)
    )


class TestAddresses:
    @pytest.mark.parametrize(
        "address",
        [
            "127.0.0.1",
            "127.9.9.9",
            "10.0.0.1",
            "172.16.5.4",
            "192.168.1.1",
            "169.254.169.254",  # cloud metadata
            "100.64.0.1",  # carrier-grade NAT
            "0.0.0.0",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fe80::1",
            "fe80::1%eth0",
            "fc00::1",
            "fd12:3456::1",
            "ff02::1",
            "::ffff:127.0.0.1",  # IPv4-mapped loopback
            "::ffff:169.254.169.254",
            "2002:7f00:1::1",  # 6to4 around 127.0.0.1
            "2001:db8::1",  # documentation
        ],
    )
    def test_non_global_addresses_are_refused(self, address: str) -> None:
        assert blocked_address_reason(address) is not None

    @pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "2606:4700::1111"])
    def test_global_addresses_pass(self, address: str) -> None:
        assert blocked_address_reason(address) is None


class TestPrivateFetch:
    def test_loopback_is_refused_by_default(
        self, server: tuple[str, list[tuple[str, str]]], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        base, hits = server
        monkeypatch.delenv(ALLOW_PRIVATE_ENV, raising=False)
        with loader() as fetch, pytest.raises(ImageLoadError) as caught:
            fetch.load(f"{base}/ok.png")
        assert caught.value.kind == "http"
        assert "loopback" in caught.value.message and ALLOW_PRIVATE_ENV in caught.value.message
        assert hits == []  # not even connected

    def test_localhost_name_is_refused(
        self, server: tuple[str, list[tuple[str, str]]], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        base, hits = server
        monkeypatch.delenv(ALLOW_PRIVATE_ENV, raising=False)
        with loader() as fetch, pytest.raises(ImageLoadError, match="refused"):
            fetch.load(base.replace("127.0.0.1", "localhost") + "/ok.png")
        assert hits == []

    def test_setting_allows_private_addresses(
        self, server: tuple[str, list[tuple[str, str]]], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        base, _ = server
        monkeypatch.setenv(ALLOW_PRIVATE_ENV, "1")
        with loader() as fetch:
            assert fetch.load(f"{base}/ok.png").size == (8, 8)
        monkeypatch.delenv(ALLOW_PRIVATE_ENV)
        with loader(allow_private=True) as fetch:
            assert fetch.read_bytes(f"{base}/ok.png") == PNG

    def test_build_reports_the_refusal_and_goes_on(
        self, server: tuple[str, list[tuple[str, str]]], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        from indexer.images import embed_product_images
        from models.image import load_image_embedder

        base, hits = server
        monkeypatch.delenv(ALLOW_PRIVATE_ENV, raising=False)
        embedder = load_image_embedder("descriptor")
        assert embedder is not None
        found = embed_product_images([[f"{base}/ok.png"]], embedder, loader=loader())
        assert not found.has_vector[0]
        assert "loopback" in found.problems[0].message
        assert hits == []


class TestPinnedResolution:
    def test_connects_to_the_checked_address_with_the_host_name(
        self,
        server: tuple[str, list[tuple[str, str]]],
        monkeypatch: pytest.MonkeyPatch,
        only_127_0_0_1_is_public: None,
    ) -> None:
        base, hits = server
        port = int(base.rsplit(":", 1)[1])
        real = socket.getaddrinfo
        answers = iter(["127.0.0.1", "10.1.2.3"])  # a rebinding resolver: public, then private
        asked: list[str] = []

        def rebinding(host: Any, *args: Any, **kwargs: Any) -> Any:
            if host == "photos.shop.test":
                asked.append(host)
                address = next(answers)
                return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]
            return real(host, *args, **kwargs)

        monkeypatch.setattr(socket, "getaddrinfo", rebinding)
        with loader(allow_private=False) as fetch:
            assert fetch.read_bytes(f"http://photos.shop.test:{port}/ok.png") == PNG
        assert asked == ["photos.shop.test"]  # resolved once: the connection used that answer
        assert hits == [("/ok.png", f"photos.shop.test:{port}")]


class TestTls:
    def test_https_goes_to_the_checked_address_and_checks_the_host_name(
        self,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
        only_127_0_0_1_is_public: None,
    ) -> None:
        openssl = shutil.which("openssl")
        if openssl is None:
            pytest.skip("needs the openssl command to make a certificate")
        cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
        subprocess.run(
            [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
             "-keyout", str(key), "-out", str(cert), "-subj", "/CN=photos.shop.test",
             "-addext", "subjectAltName=DNS:photos.shop.test"],
            check=True, capture_output=True,
        )  # fmt: skip
        hits: list[tuple[str, str]] = []
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), type("H", (_Handler,), {"hits": hits}))
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        port = httpd.server_address[1]
        real = socket.getaddrinfo

        def resolve(host: Any, *args: Any, **kwargs: Any) -> Any:
            if host in ("photos.shop.test", "other.shop.test"):
                return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]
            return real(host, *args, **kwargs)

        monkeypatch.setattr(socket, "getaddrinfo", resolve)
        trusted = ssl.create_default_context(cafile=str(cert))
        try:
            with loader(verify=trusted) as fetch:
                assert fetch.read_bytes(f"https://photos.shop.test:{port}/ok.png") == PNG
                with pytest.raises(ImageLoadError, match="CERTIFICATE_VERIFY_FAILED"):
                    fetch.read_bytes(f"https://other.shop.test:{port}/ok.png")
        finally:
            httpd.shutdown()
            httpd.server_close()
        assert hits == [("/ok.png", f"photos.shop.test:{port}")]


class TestRedirects:
    def test_a_short_chain_is_followed(self, server: tuple[str, list[tuple[str, str]]]) -> None:
        base, hits = server
        with loader(allow_private=True, max_redirects=3) as fetch:
            assert fetch.read_bytes(f"{base}/redirect/2") == PNG  # three redirects
        assert [path for path, _ in hits][-1] == "/ok.png"

    def test_a_long_chain_is_cut(self, server: tuple[str, list[tuple[str, str]]]) -> None:
        base, hits = server
        with (
            loader(allow_private=True, max_redirects=3) as fetch,
            pytest.raises(ImageLoadError, match="more than 3 redirects"),
        ):
            fetch.read_bytes(f"{base}/redirect/10")
        assert len(hits) == 4  # the first request and three redirects, no more

    def test_each_redirect_target_is_checked(
        self, server: tuple[str, list[tuple[str, str]]], only_127_0_0_1_is_public: None
    ) -> None:
        base, hits = server
        with loader(allow_private=False) as fetch, pytest.raises(ImageLoadError) as caught:
            fetch.read_bytes(f"{base}/to-private")
        assert "127.0.0.2" in caught.value.message and "loopback" in caught.value.message
        assert [path for path, _ in hits] == ["/to-private"]

    def test_redirect_to_another_scheme_is_refused(
        self, server: tuple[str, list[tuple[str, str]]]
    ) -> None:
        base, _ = server
        with (
            loader(allow_private=True) as fetch,
            pytest.raises(ImageLoadError, match="not an http"),
        ):
            fetch.read_bytes(f"{base}/to-file")


class TestBounds:
    def test_an_oversize_body_is_aborted(self, server: tuple[str, list[tuple[str, str]]]) -> None:
        base, _ = server
        with (
            loader(allow_private=True, max_bytes=1024 * 1024) as fetch,
            pytest.raises(ImageLoadError) as caught,
        ):
            fetch.read_bytes(f"{base}/big")
        assert caught.value.kind == "too-large"
        assert "1048576 byte limit" in caught.value.message

    def test_an_oversize_declared_length_is_refused_before_reading(
        self, server: tuple[str, list[tuple[str, str]]]
    ) -> None:
        base, _ = server
        with (
            loader(allow_private=True, max_bytes=1024 * 1024) as fetch,
            pytest.raises(ImageLoadError, match="52428800 bytes"),
        ):
            fetch.read_bytes(f"{base}/big-declared")

    def test_a_dripping_body_hits_the_deadline(
        self, server: tuple[str, list[tuple[str, str]]]
    ) -> None:
        base, _ = server
        began = time.monotonic()
        with (
            loader(allow_private=True, deadline=1.0) as fetch,
            pytest.raises(ImageLoadError, match="took more than 1 s"),
        ):
            fetch.read_bytes(f"{base}/slow")
        assert time.monotonic() - began < 5.0  # the server would drip for 10 s

    def test_a_png_bomb_in_a_catalogue_is_reported_not_decoded(self, tmp_path: Path) -> None:
        bomb = tmp_path / "bomb.png"
        Image.new("RGB", (7000, 7000)).save(bomb, compress_level=9)
        began = time.monotonic()
        with pytest.raises(ImageLoadError, match="25 megapixel decoding limit") as caught:
            ImageLoader().load(str(bomb))
        assert caught.value.kind == "too-large"
        assert time.monotonic() - began < 1.0

    @pytest.mark.parametrize(
        ("kwargs", "fragment"),
        [
            ({"max_redirects": -1}, "max_redirects"),
            ({"deadline": 0}, "deadline"),
            ({"max_decoded_pixels": 0}, "max_decoded_pixels"),
        ],
    )
    def test_bad_bounds_are_refused(self, kwargs: dict[str, Any], fragment: str) -> None:
        with pytest.raises(ValueError, match=fragment):
            ImageLoader(**kwargs)
