"""Photo uploads bounded in memory (issue 15 §3): a 7000x7000 PNG of zeros (~140-190 KB that
decodes to ~200 MB) is refused with 413 before a pixel is decoded, a JPEG of the same size is
decoded reduced, decodes run a few at a time, and a large decode hands its memory back."""

from __future__ import annotations

import asyncio
import io
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image

import api.uploads as uploads
from api.app import create_app
from api.settings import Settings
from api.uploads import (
    DEFAULT_UPLOAD_MAX_DECODED_PIXELS,
    UploadError,
    decode_image_upload,
    decode_upload,
)
from tests.api import build_snapshot


def encode(image: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def png_bomb() -> bytes:
    return encode(Image.new("RGB", (7000, 7000)), "PNG", compress_level=9)


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    snapshot = build_snapshot(tmp_path_factory.mktemp("upload-bombs"))
    settings = Settings(index_dir=snapshot, text_embedder="none", open_mode=True, keys_db=None)
    with TestClient(create_app(settings)) as test_client:
        yield test_client


class TestDecodedPixels:
    def test_png_bomb_is_refused_before_decoding(self, png_bomb: bytes) -> None:
        assert len(png_bomb) < 400_000
        began = time.perf_counter()
        with pytest.raises(UploadError) as caught:
            decode_image_upload(png_bomb)
        assert caught.value.status_code == 413
        assert "7000x7000" in caught.value.message
        assert f"{DEFAULT_UPLOAD_MAX_DECODED_PIXELS / 1e6:g} megapixel decoding limit" in (
            caught.value.message
        )
        assert time.perf_counter() - began < 2.0  # refused from the header, never decoded

    def test_large_jpeg_is_decoded_reduced(self) -> None:
        jpeg = encode(Image.new("RGB", (7000, 7000), (30, 60, 90)), "JPEG", quality=50)
        photo = decode_image_upload(jpeg)
        assert max(photo.size) <= 1024

    @pytest.mark.parametrize("fmt", ["PNG", "WEBP"])
    def test_formats_that_cannot_reduce_must_fit_whole(self, fmt: str) -> None:
        data = encode(Image.new("RGB", (40, 30)), fmt)
        with pytest.raises(UploadError) as caught:
            decode_image_upload(data, max_decoded_pixels=1000)
        assert caught.value.status_code == 413
        assert "only JPEGs are decoded at a reduced size" in caught.value.message
        assert decode_image_upload(data, max_decoded_pixels=1200).size == (40, 30)

    def test_jpeg_within_the_limit_after_reduction_passes(self) -> None:
        # 4000x3000 = 12 MP declared; decoded at 1/2 scale or less it fits 4 MP.
        jpeg = encode(Image.new("RGB", (4000, 3000), (200, 10, 10)), "JPEG")
        assert max(decode_image_upload(jpeg, max_decoded_pixels=4_000_000).size) == 1024

    def test_settings_from_the_environment(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("PRODUCTSEARCH_UPLOAD_MAX_DECODED_PIXELS", "1000000")
        monkeypatch.setenv("PRODUCTSEARCH_UPLOAD_DECODE_CONCURRENCY", "3")
        settings = Settings()
        assert settings.upload_max_decoded_pixels == 1_000_000
        assert settings.upload_decode_concurrency == 3


class TestSearchRoute:
    def test_png_bomb_gets_413_naming_the_limit(self, client: TestClient, png_bomb: bytes) -> None:
        response = client.post(
            "/search/image", files={"image": ("bomb.png", png_bomb, "image/png")}
        )
        assert response.status_code == 413
        assert "megapixel decoding limit" in response.json()["detail"]

    def test_route_uses_the_configured_limit(self, tmp_path: Path) -> None:
        settings = Settings(
            index_dir=build_snapshot(tmp_path),
            text_embedder="none",
            open_mode=True,
            keys_db=None,
            upload_max_decoded_pixels=100,
        )
        photo = encode(Image.new("RGB", (20, 20), (1, 2, 3)), "PNG")
        with TestClient(create_app(settings)) as client:
            response = client.post("/search/image", files={"image": ("p.png", photo, "image/png")})
        assert response.status_code == 413
        assert "0.0001 megapixel decoding limit" in response.json()["detail"]


class TestConcurrencyAndMemory:
    def test_decodes_run_at_most_the_configured_number_at_once(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        running = 0
        most = 0
        lock = threading.Lock()

        def slow_decode(data: bytes, *args: object) -> Image.Image:
            nonlocal running, most
            with lock:
                running += 1
                most = max(most, running)
            time.sleep(0.05)
            with lock:
                running -= 1
            return Image.new("RGB", (1, 1))

        monkeypatch.setattr(uploads, "_decode_and_trim", slow_decode)
        settings = Settings(upload_decode_concurrency=2, keys_db=None)

        async def burst() -> None:
            await asyncio.gather(*(decode_upload(b"x", settings) for _ in range(8)))

        asyncio.run(burst())
        assert most == 2

    def test_a_large_decode_returns_its_memory(self, monkeypatch: pytest.MonkeyPatch) -> None:
        import models.runtime

        calls: list[bool] = []

        def record(*, collect: bool = True) -> bool:
            calls.append(collect)
            return True

        monkeypatch.setattr(models.runtime, "release_free_memory", record)
        settings = Settings(keys_db=None)
        big = encode(Image.new("RGB", (2000, 1500), (5, 5, 5)), "PNG")
        small = encode(Image.new("RGB", (50, 50), (5, 5, 5)), "PNG")
        asyncio.run(decode_upload(small, settings))
        assert calls == []
        photo = asyncio.run(decode_upload(big, settings))
        assert max(photo.size) == 1024
        assert calls == [False]  # trimmed without a full garbage collection

    @pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc")
    def test_memory_of_a_decode_goes_back_to_the_system(self) -> None:
        # 25 MP decoded whole (~100 MB of pixels); afterwards RSS is back near where it was.
        photo = encode(Image.new("RGB", (5000, 5000)), "PNG", compress_level=1)
        settings = Settings(keys_db=None)
        asyncio.run(decode_upload(encode(Image.new("RGB", (64, 64)), "PNG"), settings))
        before = _rss_mb()
        for _ in range(3):
            assert max(asyncio.run(decode_upload(photo, settings)).size) == 1024
        assert _rss_mb() - before < 40

    def test_a_refused_upload_still_answers_its_error(
        self, monkeypatch: pytest.MonkeyPatch, png_bomb: bytes
    ) -> None:
        settings = Settings(keys_db=None)
        with pytest.raises(UploadError) as caught:
            asyncio.run(decode_upload(png_bomb, settings))
        assert caught.value.status_code == 413


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS in /proc/self/status")
