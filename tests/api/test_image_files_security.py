"""``GET /products/{id}/images/{n}`` serves only real raster photos under the image roots
(issue 15 §1): a catalogue naming ``/etc/passwd``, ``../../etc/hostname``, the keys database,
a symbolic link out of the photo folder, an SVG with a script or an HTML page gets 404 and
not a byte of the file; a real PNG is served with ``nosniff`` and a sandboxing CSP."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from api.app import create_app
from api.routes.products import raster_media_type
from api.settings import Settings
from indexer.build import BuildConfig, build_from_catalogue

SECRET = b"root:x:0:0:SECRET-MARKER:/root:/bin/bash\n"
SVG = (
    b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10">'
    b"<script>fetch('/admin/keys')</script></svg>"
)
HTML = b"<!doctype html><html><body><script>alert(document.cookie)</script></body></html>"


def png_bytes(colour: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), colour).save(buffer, format="PNG")
    return buffer.getvalue()


# (product id, image location as the catalogue writes it): every one must stay unserved.
ATTACKS: tuple[tuple[str, str], ...] = (
    ("PASSWD", "/etc/passwd"),
    ("HOSTNAME", "../../etc/hostname"),
    ("KEYS-DB", "../var/keys.sqlite3"),
    ("OUTSIDE-PNG", "../outside/secret.png"),  # a real image, but outside the photo folder
    ("SYMLINK-OUT", "images/escape.png"),  # a link inside the folder to a file outside it
    ("SYMLINK-DIR", "images/up/secret.png"),  # a linked folder pointing outside
    ("SVG", "images/evil.svg"),
    ("SVG-AS-PNG", "images/evil-svg.png"),  # the name lies: the content decides
    ("HTML", "images/page.html"),
    ("HTML-AS-JPG", "images/page.jpg"),
    ("TRUNCATED-PNG", "images/truncated.png"),  # PNG magic, then HTML
    ("FOLDER", "images"),
)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, Path]]:
    base = tmp_path_factory.mktemp("image-files")
    shop = base / "shop"
    photos = shop / "images"
    photos.mkdir(parents=True)
    (base / "var").mkdir()
    (base / "var" / "keys.sqlite3").write_bytes(b"SQLite format 3\x00" + SECRET)
    (base / "outside").mkdir()
    (base / "outside" / "secret.png").write_bytes(png_bytes((1, 2, 3)))
    (base / "outside" / "passwd").write_bytes(SECRET)
    (photos / "chair.png").write_bytes(png_bytes())
    (photos / "escape.png").symlink_to(base / "outside" / "passwd")
    (photos / "up").symlink_to(base / "outside", target_is_directory=True)
    (photos / "evil.svg").write_bytes(SVG)
    (photos / "evil-svg.png").write_bytes(SVG)
    (photos / "page.html").write_bytes(HTML)
    (photos / "page.jpg").write_bytes(HTML)
    (photos / "truncated.png").write_bytes(b"\x89PNG\r\n\x1a\n" + HTML)
    rows = [{"id": "CHAIR-1", "title": "Red chair", "images": ["images/chair.png"]}]
    rows += [{"id": pid, "title": f"Item {pid}", "images": [where]} for pid, where in ATTACKS]
    catalogue = shop / "catalogue.jsonl"
    catalogue.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    snapshot = build_from_catalogue(
        catalogue, base / "snapshot", config=BuildConfig(embedder="none", photo_colours=False)
    ).snapshot_dir
    settings = Settings(index_dir=snapshot, text_embedder="none", open_mode=True, keys_db=None)
    with TestClient(create_app(settings)) as client:
        yield client, base


class TestImageRoots:
    def test_build_records_the_catalogue_folder_as_image_root(
        self, served: tuple[TestClient, Path]
    ) -> None:
        _, base = served
        manifest = json.loads((base / "snapshot" / "manifest.json").read_text())
        assert manifest["settings"]["image_roots"] == [str((base / "shop").resolve())]

    def test_a_real_png_under_the_root_is_served_safely(
        self, served: tuple[TestClient, Path]
    ) -> None:
        client, _ = served
        response = client.get("/products/CHAIR-1/images/0")
        assert response.status_code == 200
        assert response.content == png_bytes()
        assert response.headers["content-type"] == "image/png"
        assert response.headers["x-content-type-options"] == "nosniff"
        csp = response.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "sandbox" in csp

    @pytest.mark.parametrize(("product_id", "location"), ATTACKS)
    def test_attacks_are_not_served(
        self, served: tuple[TestClient, Path], product_id: str, location: str
    ) -> None:
        client, _ = served
        response = client.get(f"/products/{product_id}/images/0")
        assert response.status_code == 404, location
        assert "SECRET-MARKER" not in response.text
        assert "<script" not in response.text
        assert response.headers["content-type"] == "application/json"

    def test_an_outside_file_is_refused_whether_or_not_it_exists(
        self, served: tuple[TestClient, Path]
    ) -> None:
        # No oracle: /etc/passwd (exists) and ../../etc/hostname (may not) answer alike.
        client, _ = served
        details = {
            client.get(f"/products/{pid}/images/0").json()["detail"].split(" is ", 1)[1]
            for pid in ("PASSWD", "HOSTNAME", "KEYS-DB", "OUTSIDE-PNG")
        }
        assert details == {"not under the catalogue's image folders"}


class TestDelta:
    def test_a_delta_keeps_the_image_roots(
        self, served: tuple[TestClient, Path], tmp_path: Path
    ) -> None:
        from indexer.delta import apply_changes
        from search.types import Product

        _, base = served
        result = apply_changes(
            base / "snapshot",
            tmp_path / "after-delta",
            upserts=[Product(id="NEW-1", title="New lamp")],
        )
        assert result.manifest.settings["image_roots"] == [str((base / "shop").resolve())]


class TestConfiguredRoots:
    def test_configured_roots_replace_the_recorded_folder(
        self, served: tuple[TestClient, Path]
    ) -> None:
        _, base = served
        outside = base / "outside"
        settings = Settings(
            index_dir=base / "snapshot",
            text_embedder="none",
            open_mode=True,
            keys_db=None,
            image_roots=[outside],
        )
        with TestClient(create_app(settings)) as client:
            # The shop folder is no root any more; the configured one is (a real PNG in it).
            assert client.get("/products/CHAIR-1/images/0").status_code == 404
            response = client.get("/products/SYMLINK-DIR/images/0")
            assert response.status_code == 200
            assert response.content == png_bytes((1, 2, 3))
            # A root never lets a non-image through.
            assert client.get("/products/SYMLINK-OUT/images/0").status_code == 404

    def test_image_roots_read_from_the_environment(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        monkeypatch.setenv("PRODUCTSEARCH_IMAGE_ROOTS", f"{tmp_path}/a,{tmp_path}/b")
        assert Settings().image_roots == [tmp_path / "a", tmp_path / "b"]


class TestRasterCheck:
    @pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "WEBP"])
    def test_real_rasters_pass(self, fmt: str) -> None:
        buffer = io.BytesIO()
        Image.new("RGB", (8, 8), (9, 9, 9)).save(buffer, format=fmt)
        assert raster_media_type(buffer.getvalue()) == f"image/{fmt.lower()}"

    @pytest.mark.parametrize(
        "data",
        [
            SVG,
            HTML,
            SECRET,
            b"",
            b"\x89PNG\r\n\x1a\n" + HTML,
            b"GIF89a<script>alert(1)</script>",
            b"\xff\xd8\xff" + HTML,
            b"RIFF\x00\x00\x00\x00WEBP" + HTML,
        ],
    )
    def test_everything_else_fails(self, data: bytes) -> None:
        assert raster_media_type(data) is None
