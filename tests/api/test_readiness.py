"""``/ready`` says 200 only once the engine is warm, so a load balancer never sends searches to a
replica whose first query would still pay for loading and running its models.

Before, ``/ready`` answered 200 as soon as the snapshot was opened, and 19 searches got 503 in the
first seconds after a restart: the first inference of a model is slow and the searches queued
behind it ran past the time limit.
"""

from __future__ import annotations

import gc
import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.service import open_snapshot
from api.settings import Settings
from indexer.delta import run_off_process, verify_and_prepare
from search.engine import SearchEngine
from search.errors import SnapshotError
from search.rank.context import Reranked
from search.suggest import Suggester
from search.types import Hit
from tests.api import build_snapshot

FIRST_CALL_S = 1.5
"""How long the first re-ranking takes: a model's first inference (torch allocates, compiles)."""


class ColdModel:
    """A re-ranker whose first call is slow and the rest fast, as a real model's."""

    name = "cold-model"

    def __init__(self) -> None:
        self.calls = 0
        self._lock = threading.Lock()

    def rerank(self, query: object, hits: list[Hit], context: object) -> Reranked:
        with self._lock:  # a model loads once; callers meanwhile wait for it
            self.calls += 1
            if self.calls == 1:
                time.sleep(FIRST_CALL_S)
        return Reranked(list(hits))


@pytest.fixture(scope="module")
def snapshot_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_snapshot(tmp_path_factory.mktemp("readiness"))


def cold_engine(snapshot_dir: Path) -> tuple[SearchEngine, ColdModel]:
    model = ColdModel()
    engine = open_snapshot(snapshot_dir, use_semantic=False, ranker="none")
    return engine.with_rerankers([*engine.rerankers, model]), model


class TestReady:
    def test_ready_is_503_until_warm_and_no_search_after_it_gets_503(
        self, snapshot_dir: Path
    ) -> None:
        engine, model = cold_engine(snapshot_dir)
        settings = Settings(
            text_embedder="none",
            events_db="none",
            search_timeout_s=1.0,  # shorter than the cold first call
            ready_wait_s=0,  # listen at once: the warm-up goes on meanwhile
        )
        app = create_app(settings, engine=engine)
        with TestClient(app) as client:
            _, token = app.state.security.keys.create("storefront", "search")
            auth = {"Authorization": f"Bearer {token}"}
            first = client.get("/ready")
            assert first.status_code == 503, first.text
            assert "warming up" in first.json()["detail"]
            assert first.headers["Retry-After"]
            assert client.get("/health").status_code == 200  # liveness answers meanwhile

            deadline = time.monotonic() + 30
            while client.get("/ready").status_code != 200:
                assert time.monotonic() < deadline, "never became ready"
                time.sleep(0.05)
            assert model.calls >= 1  # the warm-up ran a real query through the pipeline

            def search(n: int) -> int:
                query = ("sofa", "oak chair", "lamp", "table")[n % 4]
                return client.get("/search", params={"q": query}, headers=auth).status_code

            with ThreadPoolExecutor(8) as pool:
                codes = list(pool.map(search, range(32)))
        assert codes == [200] * 32

    def test_start_up_waits_for_a_short_warm_up(self, snapshot_dir: Path) -> None:
        engine, model = cold_engine(snapshot_dir)
        settings = Settings(text_embedder="none", events_db="none", ready_wait_s=30)
        with TestClient(create_app(settings, engine=engine)) as client:
            assert model.calls >= 1
            assert client.get("/ready").status_code == 200

    def test_a_warm_service_leaves_its_objects_out_of_garbage_collections(
        self, snapshot_dir: Path
    ) -> None:
        engine = open_snapshot(snapshot_dir, use_semantic=False)
        settings = Settings(text_embedder="none", events_db="none", ready_wait_s=30)
        assert gc.get_freeze_count() == 0
        with TestClient(create_app(settings, engine=engine)) as client:
            assert client.get("/ready").status_code == 200
            # The engine's objects are frozen: a full collection no longer walks them.
            assert gc.get_freeze_count() > 1000
            assert client.get("/search", params={"q": "oak"}).status_code == 200
        # A stopped application gives them back to the collector.
        assert gc.get_freeze_count() == 0

    def test_a_failing_warm_up_query_keeps_it_not_ready(self, snapshot_dir: Path) -> None:
        class Broken(ColdModel):
            def rerank(self, query: object, hits: list[Hit], context: object) -> Reranked:
                raise RuntimeError("model file is corrupt")

        engine = open_snapshot(snapshot_dir, use_semantic=False, ranker="none")
        engine = engine.with_rerankers([Broken()])
        settings = Settings(text_embedder="none", events_db="none", ready_wait_s=10)
        with TestClient(create_app(settings, engine=engine)) as client:
            response = client.get("/ready")
        assert response.status_code == 503
        assert "warming up" in response.json()["detail"]


class TestSwapsOffTheRequestPath:
    """Reloads and catalogue changes do their heavy work (checksums, the delta build, the
    suggester) in a child process, so searches never queue behind it for the GIL; what the
    child built is what the service would have built itself."""

    def test_the_work_runs_in_another_process(self) -> None:
        assert run_off_process(os.getpid) != os.getpid()

    def test_errors_come_back_as_they_were_raised(self, tmp_path: Path) -> None:
        with pytest.raises(SnapshotError, match="does not exist"):
            run_off_process(verify_and_prepare, tmp_path / "nowhere")

    def test_the_suggester_built_in_the_child_is_the_engines(self, snapshot_dir: Path) -> None:
        manifest, arrays = run_off_process(verify_and_prepare, snapshot_dir)
        engine = open_snapshot(snapshot_dir, use_semantic=False, ranker="none")
        assert manifest == engine.manifest
        for ours, theirs in zip(arrays, engine.suggester.arrays, strict=True):
            assert np.array_equal(ours, theirs)
        adopted = open_snapshot(snapshot_dir, use_semantic=False, ranker="none")
        adopted.adopt_suggester(Suggester.from_arrays(arrays, adopted.vocabulary, adopted.analyzer))
        expected = engine.suggester.suggest("oa").suggestions
        assert expected and adopted.suggester.suggest("oa").suggestions == expected

    def test_a_change_is_suggested_and_searched_at_once(self, tmp_path: Path) -> None:
        snapshot = build_snapshot(tmp_path)
        settings = Settings(index_dir=snapshot, text_embedder="none", events_db="none")
        app = create_app(settings)
        with TestClient(app) as client:
            _, token = app.state.security.keys.create("ops", "admin")
            admin = {"Authorization": f"Bearer {token}"}
            changed = client.post(
                "/admin/catalogue/changes",
                json={"upserts": [{"id": "HAMMOCK-1", "title": "Garden hammock in teal"}]},
                headers=admin,
            )
            assert changed.status_code == 200, changed.text
            suggest = client.get("/suggest", params={"q": "hamm"}, headers=admin).json()
            search = client.get("/search", params={"q": "hammock"}, headers=admin).json()
            assert client.get("/ready").status_code == 200
        assert "hammock" in json.dumps(suggest).lower()
        assert [h["id"] for h in search["hits"]] == ["HAMMOCK-1"]
