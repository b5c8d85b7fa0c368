"""Product photos: local files, http(s) with retries and a cache, and per-product vectors."""

from __future__ import annotations

import contextlib
import io
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
from PIL import Image

from indexer.images import ImageLoader, ImageProblem, decode_image, embed_product_images
from models.image import DescriptorImageEmbedder
from search.errors import ImageLoadError


def jpeg(colour: tuple[int, int, int], size: tuple[int, int] = (60, 80)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


RED_JPEG = jpeg((200, 30, 30))
BLUE_JPEG = jpeg((30, 30, 200))


def noise_jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.effect_noise((200, 200), 64).convert("RGB").save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of product photos, good and bad."""
    root = tmp_path_factory.mktemp("photos")
    (root / "red.jpg").write_bytes(RED_JPEG)
    (root / "blue.jpg").write_bytes(BLUE_JPEG)
    Image.new("RGBA", (30, 40), (0, 160, 0, 255)).save(root / "green.png")
    data = noise_jpeg()
    (root / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (root / "notes.txt").write_text("not a photo")
    (root / "empty.jpg").write_bytes(b"")
    (root / "folder.jpg").mkdir()
    return root


class Handler(BaseHTTPRequestHandler):
    """Serves ``/red.jpg``, ``/blue.jpg``, ``/flaky.jpg`` (503 twice, then the photo),
    ``/missing.jpg`` (404), ``/slow.jpg`` (answers after 2 s), ``/big.jpg`` (too large)."""

    hits: ClassVar[Counter[str]] = Counter()

    def do_GET(self) -> None:
        path = self.path
        Handler.hits[path] += 1
        body: bytes | None = None
        status = 200
        if path == "/red.jpg":
            body = RED_JPEG
        elif path == "/blue.jpg":
            body = BLUE_JPEG
        elif path == "/flaky.jpg":
            if Handler.hits[path] <= 2:
                status = 503
            else:
                body = BLUE_JPEG
        elif path == "/slow.jpg":
            time.sleep(2.0)
            body = RED_JPEG
        elif path == "/big.jpg":
            body = b"\xff" * 5000
        else:
            status = 404
        self.send_response(status)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Content-Length", str(len(body or b"")))
        self.end_headers()
        if body:
            # The client may give up (size limit, timeout): that is what those tests check.
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Keep test output quiet."""


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(autouse=True)
def reset_hits() -> None:
    Handler.hits.clear()


class TestLocalFiles:
    def test_reads_absolute_relative_and_file_urls(self, photos: Path) -> None:
        loader = ImageLoader(base_dir=photos)
        assert loader.load(str(photos / "red.jpg")).size == (60, 80)
        assert loader.load("blue.jpg").size == (60, 80)
        assert loader.load((photos / "green.png").as_uri()).size == (30, 40)

    @pytest.mark.parametrize(
        ("name", "kind", "words"),
        [
            ("gone.jpg", "missing", "no such file"),
            ("folder.jpg", "missing", "folder"),
            ("truncated.jpg", "corrupt", "truncated"),
            ("empty.jpg", "corrupt", "empty"),
            ("notes.txt", "unsupported", "not an image"),
        ],
    )
    def test_problems_have_a_kind(self, photos: Path, name: str, kind: str, words: str) -> None:
        with pytest.raises(ImageLoadError) as info:
            ImageLoader(base_dir=photos).load(name)
        assert info.value.kind == kind
        assert words in info.value.message

    def test_unsupported_scheme(self) -> None:
        with pytest.raises(ImageLoadError) as info:
            ImageLoader().load("ftp://shop.example/a.jpg")
        assert info.value.kind == "unsupported"
        assert "ftp" in info.value.message

    def test_byte_limit(self, photos: Path) -> None:
        with pytest.raises(ImageLoadError) as info:
            ImageLoader(max_bytes=100).load(str(photos / "red.jpg"))
        assert info.value.kind == "too-large"

    def test_large_photos_are_shrunk_and_turned_upright(self, tmp_path: Path) -> None:
        exif = Image.Exif()
        exif[0x0112] = 6  # rotate 90 degrees clockwise to display
        Image.new("RGB", (3000, 1000), "navy").save(
            tmp_path / "phone.jpg", quality=80, exif=exif.tobytes()
        )
        image = ImageLoader(max_side=600).load(str(tmp_path / "phone.jpg"))
        assert image.size == (200, 600)

    def test_heic(self, tmp_path: Path) -> None:
        pillow_heif = pytest.importorskip("pillow_heif")
        pillow_heif.from_pillow(Image.new("RGB", (64, 48), (200, 30, 30))).save(
            tmp_path / "iphone.heic", quality=90
        )
        image = ImageLoader().load(str(tmp_path / "iphone.heic"))
        assert image.size == (64, 48)

    def test_formats_can_be_restricted(self) -> None:
        with pytest.raises(ImageLoadError, match="accepted: PNG") as info:
            decode_image(RED_JPEG, formats=("PNG",))
        assert info.value.kind == "unsupported"

    @pytest.mark.parametrize(
        ("kwargs", "message"),
        [
            ({"timeout": 0}, "timeout"),
            ({"retries": -1}, "retries"),
            ({"max_side": 4}, "max_side"),
            ({"workers": 0}, "workers"),
            ({"max_bytes": 0}, "max_bytes"),
        ],
    )
    def test_arguments_are_checked(self, kwargs: dict[str, float], message: str) -> None:
        with pytest.raises(ValueError, match=message):
            ImageLoader(**kwargs)  # type: ignore[arg-type]


class TestHttp:
    @pytest.fixture(autouse=True)
    def _allow_loopback(self, monkeypatch: pytest.MonkeyPatch) -> None:
        # The test server is on 127.0.0.1, which builds refuse by default (issue 15 §1).
        monkeypatch.setenv("PRODUCTSEARCH_IMAGE_FETCH_ALLOW_PRIVATE", "1")

    def test_download_and_cache(self, server: str, tmp_path: Path) -> None:
        cache = tmp_path / "cache"
        with ImageLoader(cache_dir=cache) as loader:
            assert loader.load(f"{server}/red.jpg").size == (60, 80)
            assert loader.load(f"{server}/red.jpg").size == (60, 80)
        assert Handler.hits["/red.jpg"] == 1
        assert len([p for p in cache.rglob("*") if p.is_file()]) == 1
        # A new loader over the same cache folder downloads nothing either.
        ImageLoader(cache_dir=cache).load(f"{server}/red.jpg")
        assert Handler.hits["/red.jpg"] == 1

    def test_retries_server_errors_with_backoff(self, server: str) -> None:
        started = time.monotonic()
        image = ImageLoader(retries=2, backoff=0.05).load(f"{server}/flaky.jpg")
        assert image.size == (60, 80)
        assert Handler.hits["/flaky.jpg"] == 3
        assert time.monotonic() - started >= 0.05 + 0.1

    def test_gives_up_after_the_retries(self, server: str) -> None:
        with pytest.raises(ImageLoadError, match="after 2 attempts: HTTP 503") as info:
            ImageLoader(retries=1, backoff=0.01).load(f"{server}/flaky.jpg")
        assert info.value.kind == "http"

    def test_client_errors_are_not_retried(self, server: str) -> None:
        with pytest.raises(ImageLoadError, match="HTTP 404") as info:
            ImageLoader(retries=3, backoff=0.01).load(f"{server}/missing.jpg")
        assert info.value.kind == "http"
        assert Handler.hits["/missing.jpg"] == 1

    def test_timeout(self, server: str) -> None:
        with pytest.raises(ImageLoadError, match="timed out") as info:
            ImageLoader(timeout=0.3, retries=0).load(f"{server}/slow.jpg")
        assert info.value.kind == "http"

    def test_download_size_limit(self, server: str) -> None:
        with pytest.raises(ImageLoadError) as info:
            ImageLoader(max_bytes=1000).load(f"{server}/big.jpg")
        assert info.value.kind == "too-large"

    def test_unreachable_host(self) -> None:
        with pytest.raises(ImageLoadError) as info:
            ImageLoader(timeout=1, retries=1, backoff=0.01).load("http://127.0.0.1:9/a.jpg")
        assert info.value.kind == "http"


class TestEmbedProductImages:
    def test_vectors_mask_and_problems(self, photos: Path, server: str) -> None:
        embedder = DescriptorImageEmbedder()
        refs = [
            [str(photos / "red.jpg")],
            [str(photos / "gone.jpg"), str(photos / "blue.jpg")],  # main photo missing
            [],
            [str(photos / "truncated.jpg"), str(photos / "notes.txt")],
            [f"{server}/red.jpg"],
            [f"{server}/missing.jpg"],
            ["green.png"],
        ]
        calls: list[tuple[int, int]] = []
        vectors, has_vector, problems = embed_product_images(
            refs,
            embedder,
            batch_size=3,
            loader=ImageLoader(base_dir=photos, retries=0, allow_private=True),  # 127.0.0.1
            progress=lambda done, total: calls.append((done, total)),
        )
        assert vectors.shape == (7, embedder.dim) and vectors.dtype == np.float32
        assert has_vector.tolist() == [True, True, False, False, True, False, True]
        np.testing.assert_allclose(np.linalg.norm(vectors[has_vector], axis=1), 1.0, atol=1e-5)
        assert not vectors[~has_vector].any()
        expected = embedder.embed_images(
            [Image.open(io.BytesIO(RED_JPEG)), Image.open(io.BytesIO(BLUE_JPEG))]
        )
        np.testing.assert_allclose(vectors[0], expected[0], atol=1e-5)
        np.testing.assert_allclose(vectors[4], expected[0], atol=1e-5)
        np.testing.assert_allclose(vectors[1], expected[1], atol=1e-5)  # fell back to photo 2
        assert [(p.product, Path(p.location).name, p.message.split(":")[0]) for p in problems] == [
            (1, "gone.jpg", "missing"),
            (3, "truncated.jpg", "corrupt"),
            (3, "notes.txt", "unsupported"),
            (5, "missing.jpg", "http"),
        ]
        assert all(isinstance(p, ImageProblem) for p in problems)
        assert calls == [(3, 7), (6, 7), (7, 7)]

    def test_several_photos_are_averaged(self, photos: Path) -> None:
        embedder = DescriptorImageEmbedder()
        red, blue = (str(photos / "red.jpg"), str(photos / "blue.jpg"))
        both = embed_product_images([[red, blue]], embedder, photos_per_product=2)
        single = embed_product_images([[red], [blue]], embedder)
        mean = single.vectors.sum(axis=0)
        np.testing.assert_allclose(both.vectors[0], mean / np.linalg.norm(mean), atol=1e-5)

    def test_a_failed_photo_makes_room_for_the_next(self, photos: Path) -> None:
        refs = [[str(photos / "gone.jpg"), str(photos / "red.jpg"), str(photos / "blue.jpg")]]
        result = embed_product_images(refs, DescriptorImageEmbedder(), photos_per_product=2)
        expected = embed_product_images(
            [[str(photos / "red.jpg"), str(photos / "blue.jpg")]],
            DescriptorImageEmbedder(),
            photos_per_product=2,
        )
        np.testing.assert_allclose(result.vectors, expected.vectors, atol=1e-6)
        assert len(result.problems) == 1

    def test_empty_catalogue(self) -> None:
        embedder = DescriptorImageEmbedder()
        result = embed_product_images([], embedder)
        assert result.vectors.shape == (0, embedder.dim)
        assert result.has_vector.shape == (0,)
        assert result.problems == []

    @pytest.mark.parametrize(
        ("kwargs", "message"),
        [({"batch_size": 0}, "batch_size"), ({"photos_per_product": 0}, "photos_per_product")],
    )
    def test_arguments_are_checked(self, kwargs: dict[str, int], message: str) -> None:
        with pytest.raises(ValueError, match=message):
            embed_product_images([["a.jpg"]], DescriptorImageEmbedder(), **kwargs)  # type: ignore[arg-type]
