"""End to end: ``productsearch serve --demo`` in a real process, queried over HTTP on loopback.

The demo catalogue is generated, imported (three bad rows reported), indexed with the packaged
MiniLM and served by uvicorn; the test then searches as a storefront would.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    data_dir = tmp_path_factory.mktemp("demo")
    port = _free_port()
    exe = shutil.which("productsearch") or str(Path(sys.executable).with_name("productsearch"))
    proc = subprocess.Popen(
        [
            exe,
            "serve",
            "--demo",
            "--data-dir",
            str(data_dir),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                out = proc.stdout.read().decode() if proc.stdout else ""
                pytest.fail(f"server exited with {proc.returncode}:\n{out}")
            try:
                if httpx.get(f"{base}/ready", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        else:
            pytest.fail("server did not become ready in 240 s")
        yield base
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_health_reports_the_demo_snapshot(demo: str) -> None:
    body = httpx.get(f"{demo}/health").json()
    assert body["counts"]["products"] == 300
    assert body["counts"]["import_errors"] == 3
    assert body["models"]["text_embedder"] == "minilm"


def test_search_with_facets(demo: str) -> None:
    body = httpx.get(
        f"{demo}/search", params={"q": "sofa", "k": 5, "facets": "brand,category"}
    ).json()
    assert body["total"] >= 5
    assert all("sofa" in hit["title"].lower() for hit in body["hits"])
    categories = {f["value"] for f in body["facets"]["category"]}
    assert "Furniture > Sofas" in categories


def test_typo_is_corrected(demo: str) -> None:
    body = httpx.get(f"{demo}/search", params={"q": "shrit"}).json()
    assert body["corrected_query"] == "shirt"
    assert body["hits"] and "shirt" in body["hits"][0]["title"].lower()


def test_polish_query_without_diacritics(demo: str) -> None:
    body = httpx.get(f"{demo}/search", params={"q": "krzeslo", "k": 10}).json()
    titles = [hit["title"] for hit in body["hits"]]
    # "krzeslo" is "krzesło" without its diacritic: the Polish chairs, and (through the
    # Polish-English lexicon) the English ones; nothing else.
    assert any(title.startswith("Krzesło") for title in titles)
    assert titles and all("chair" in t.lower() or t.startswith("Krzesło") for t in titles)


def test_semantic_match_without_shared_words(demo: str) -> None:
    body = httpx.get(f"{demo}/search", params={"q": "couch", "k": 3}).json()
    # Sofas in either language ("kanapa" is a Polish sofa).
    assert body["hits"] and all(
        "sofa" in hit["title"].lower() or "kanapa" in hit["title"].lower() for hit in body["hits"]
    )


def test_product_and_its_picture(demo: str) -> None:
    hit = httpx.get(f"{demo}/search", params={"q": "lamp", "k": 1}).json()["hits"][0]
    product = httpx.get(f"{demo}/products/{hit['id']}").json()
    assert product["title"] == hit["title"]
    picture = httpx.get(f"{demo}{hit['image']}")
    assert picture.status_code == 200 and picture.headers["content-type"] == "image/png"


def test_bad_parameter_is_422(demo: str) -> None:
    response = httpx.get(f"{demo}/search", params={"q": "sofa", "k": 0})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query", "k"]
