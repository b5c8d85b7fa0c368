"""Ranking features, the learned ranking stage and the LightGBM scorer (a real model the test trains)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from api.service import open_snapshot
from models.ranker import PACKAGED_RANKERS, LightGBMScorer, OnnxTreeScorer, load_ranker
from search.engine import SearchEngine
from search.rank.features import FEATURE_NAMES, FeatureExtractor
from search.rank.learned import LearnedRanker
from search.types import SearchRequest

F = {name: i for i, name in enumerate(FEATURE_NAMES)}


def features_for(engine: SearchEngine, text: str) -> tuple[list[str], npt.NDArray[np.float32]]:
    found = engine.candidates(SearchRequest(text=text, as_you_type=False))
    extractor = FeatureExtractor(engine.lexical)
    rows = extractor.extract(found.query, found.fused, found.runs, None)
    return [engine.store.products[h.doc].id for h in found.fused], rows


class TestFeatures:
    def test_shape_and_names(self, core_engine: SearchEngine) -> None:
        ids, rows = features_for(core_engine, "oak chair")
        assert rows.shape == (len(ids), len(FEATURE_NAMES))
        assert np.isfinite(rows).all()

    def test_coverage_and_head_word_in_title(self, core_engine: SearchEngine) -> None:
        ids, rows = features_for(core_engine, "oak chair")
        chair = rows[ids.index("CHAIR-1")]  # "Oak dining chair"
        assert chair[F["coverage"]] == 1.0
        assert chair[F["exact_coverage"]] == 1.0
        assert chair[F["head_in_title"]] == 1.0
        assert chair[F["head_position"]] == 1.0  # "chair" is the title's last word
        assert chair[F["first_in_title"]] == 1.0
        partial = [r for i, r in zip(ids, rows, strict=True) if i != "CHAIR-1"]
        assert all(r[F["coverage"]] < 1.0 or r[F["head_position"]] >= 0 for r in partial)

    def test_ordered_pairs_reward_the_query_word_order(self, core_engine: SearchEngine) -> None:
        ids, rows = features_for(core_engine, "dining chair")
        assert rows[ids.index("CHAIR-1")][F["ordered_pairs"]] == 1.0
        ids, rows = features_for(core_engine, "chair dining")
        assert rows[ids.index("CHAIR-1")][F["ordered_pairs"]] == 0.0

    def test_corrections_are_not_exact(self, core_engine: SearchEngine) -> None:
        _ids, rows = features_for(core_engine, "wallnut chiar")
        top = rows[0]
        assert top[F["coverage"]] == 1.0
        assert top[F["exact_coverage"]] == 0.0

    def test_retriever_ranks_are_log_ranks_in_each_run(self, core_engine: SearchEngine) -> None:
        found = core_engine.candidates(SearchRequest(text="oak chair sofa", as_you_type=False))
        rows = FeatureExtractor(core_engine.lexical).extract(
            found.query, found.fused, found.runs, None
        )
        lexical = [h.doc for h in found.runs["lexical"]]
        for row, hit in zip(rows, found.fused, strict=True):
            rank = lexical.index(hit.doc) + 1 if hit.doc in lexical else 1000
            assert row[F["lexical_rank"]] == pytest.approx(np.log1p(rank))
            assert row[F["semantic_rank"]] == pytest.approx(np.log1p(1000))  # no semantic run
            assert row[F["fused_score"]] == pytest.approx(hit.score)

    def test_without_vectors_semantic_features_are_zero(self, core_engine: SearchEngine) -> None:
        _, rows = features_for(core_engine, "oak chair")
        assert (rows[:, F["semantic_similarity"]] == 0).all()

    def test_no_candidates(self, core_engine: SearchEngine) -> None:
        ids, rows = features_for(core_engine, "zzzzqqq")
        assert ids == [] and rows.shape == (0, len(FEATURE_NAMES))


def train_model(path: Path, prefer: str) -> LightGBMScorer:
    """Train a tiny real LightGBM ranker that puts high values of one feature first."""
    import lightgbm as lgb

    rng = np.random.default_rng(0)
    rows = rng.random((400, len(FEATURE_NAMES))).astype(np.float32)
    rows[:, F[prefer]] *= 10  # spans counts such as title lengths as well as shares
    labels = (rows[:, F[prefer]] * 0.4).round().astype(int)
    model = lgb.LGBMRanker(n_estimators=30, min_child_samples=5, verbose=-1)
    model.fit(rows, labels, group=[20] * 20, feature_name=list(FEATURE_NAMES))
    model.booster_.save_model(str(path))
    return LightGBMScorer(path)


class TestLightGBMScorer:
    def test_real_model_round_trip(self, tmp_path: Path) -> None:
        scorer = train_model(tmp_path / "m.txt", "title_length")
        assert scorer.feature_names == FEATURE_NAMES
        rows = np.full((2, len(FEATURE_NAMES)), 0.5, dtype=np.float32)
        rows[0, F["title_length"]] = 0.5
        rows[1, F["title_length"]] = 9.0
        scores = scorer.score(rows)
        assert scores[1] > scores[0]
        assert scorer.score(rows[:0]).shape == (0,)

    def test_missing_and_malformed_files(self, tmp_path: Path) -> None:
        with pytest.raises(FileNotFoundError, match="does not exist"):
            LightGBMScorer(tmp_path / "absent.txt")
        bad = tmp_path / "bad.txt"
        bad.write_text("not a model\nTree=0\n")
        with pytest.raises(ValueError, match="not a LightGBM text model"):
            LightGBMScorer(bad)

    @pytest.mark.parametrize("kind", ["hybrid", "lexical"])
    def test_packaged_models_match_the_features(self, kind: str) -> None:
        scorer = LightGBMScorer(PACKAGED_RANKERS[kind])
        assert scorer.feature_names == FEATURE_NAMES
        assert load_ranker("auto", semantic=kind == "hybrid") is not None
        assert load_ranker("none", semantic=True) is None


class TestOnnxTreeScorer:
    """The packaged rankers serve from their ONNX conversions (no LightGBM import)."""

    @pytest.mark.parametrize("kind", ["hybrid", "lexical"])
    def test_packaged_onnx_scores_as_lightgbm_does(
        self, kind: str, core_engine: SearchEngine
    ) -> None:
        onnx = load_ranker("auto", semantic=kind == "hybrid")
        assert isinstance(onnx, OnnxTreeScorer)
        assert onnx.feature_names == FEATURE_NAMES
        assert onnx.path == PACKAGED_RANKERS[kind].with_suffix(".onnx")
        text = LightGBMScorer(PACKAGED_RANKERS[kind])
        rng = np.random.default_rng(1)
        rows = rng.random((300, len(FEATURE_NAMES))).astype(np.float32)
        rows[:, F["title_length"]] *= 20
        _, real = features_for(core_engine, "oak chair")
        rows = np.vstack([rows, real])
        np.testing.assert_allclose(onnx.score(rows), text.score(rows), atol=1e-5)
        assert onnx.score(rows[:0]).shape == (0,)

    def test_the_packaged_onnx_files_are_converted_from_the_packaged_models(self) -> None:
        import hashlib

        for kind, path in PACKAGED_RANKERS.items():
            scorer = OnnxTreeScorer(path.with_suffix(".onnx"))
            meta = scorer._session.get_modelmeta().custom_metadata_map
            assert meta["source_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest(), (
                f"{path.with_suffix('.onnx')} is stale: run scripts/export_ranker_onnx.py {path}"
            )
            assert kind in scorer.name

    def test_serving_imports_no_lightgbm(self, core_snapshot: Path) -> None:
        """The packaged ranker scores searches without LightGBM (or scikit-learn) in memory."""
        import subprocess
        import sys

        script = (
            "import sys\n"
            "from api.service import open_snapshot, warm_up_engine\n"
            "from search.types import SearchRequest\n"
            f"engine = open_snapshot({str(core_snapshot)!r})\n"
            "warm_up_engine(engine)\n"
            "learned = [s for s in engine.stages if s.name == 'learned']\n"
            "assert learned and type(learned[0].scorer).__name__ == 'OnnxTreeScorer'\n"
            "engine.search(SearchRequest(text='oak chair', k=5))\n"
            "print(sorted(m for m in ('lightgbm', 'sklearn') if m in sys.modules))\n"
        )
        done = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip().splitlines()[-1] == "[]"

    def test_bad_files(self, tmp_path: Path) -> None:
        with pytest.raises(FileNotFoundError, match="does not exist"):
            OnnxTreeScorer(tmp_path / "absent.onnx")
        bad = tmp_path / "bad.onnx"
        bad.write_bytes(b"not a model")
        with pytest.raises(ValueError, match="not a readable ONNX model"):
            OnnxTreeScorer(bad)
        nameless = tmp_path / "minilm.onnx"
        nameless.write_bytes((Path("models/weights/efficientnet_lite0.onnx")).read_bytes())
        with pytest.raises(ValueError, match="names no features"):
            OnnxTreeScorer(nameless)


class TestLearnedRanker:
    def test_model_decides_the_order(self, core_engine: SearchEngine, tmp_path: Path) -> None:
        found = core_engine.candidates(SearchRequest(text="oak chair", as_you_type=False))
        ranker = LearnedRanker(
            FeatureExtractor(core_engine.lexical), train_model(tmp_path / "m.txt", "title_length")
        )
        ranked = ranker.rank(found.query, found.fused, found.runs)
        assert {h.doc for h in ranked} == {h.doc for h in found.fused}
        lengths = [core_engine.lexical.data.title_sequence(h.doc).size for h in ranked]
        assert lengths[0] == max(lengths)
        assert all(h.source == "learned" for h in ranked)

    def test_candidates_beyond_depth_keep_fused_order(
        self, core_engine: SearchEngine, tmp_path: Path
    ) -> None:
        found = core_engine.candidates(SearchRequest(text="oak chair sofa", as_you_type=False))
        assert len(found.fused) > 2
        ranker = LearnedRanker(
            FeatureExtractor(core_engine.lexical),
            train_model(tmp_path / "m.txt", "title_length"),
            depth=2,
        )
        ranked = ranker.rank(found.query, found.fused, found.runs)
        assert ranked[2:] == found.fused[2:]

    def test_feature_mismatch_is_refused(self, core_engine: SearchEngine) -> None:
        class Stale:
            name = "stale"
            feature_names = ("lexical_score",)

            def warm_up(self) -> None: ...

            def score(self, features: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
                return np.zeros(len(features))

        with pytest.raises(ValueError, match="trained on features"):
            LearnedRanker(FeatureExtractor(core_engine.lexical), Stale())

    def test_engine_explains_the_learned_stage(self, core_snapshot: Path, tmp_path: Path) -> None:
        engine = open_snapshot(
            core_snapshot, ranker=str(train_model(tmp_path / "m.txt", "coverage").path)
        )
        hit = engine.search(SearchRequest(text="oak chair", explain=True)).hits[0]
        assert hit.explanation is not None
        stages = dict(hit.explanation.adjustments)
        assert stages["learned"].startswith("m: fused rank ")
        (_trace,) = hit.explanation.retrievers
        assert hit.explanation.fused_score != hit.score  # the model's score replaced fusion's

    def test_unloadable_model_is_a_snapshot_error(
        self, core_snapshot: Path, tmp_path: Path
    ) -> None:
        from search.errors import SnapshotError

        with pytest.raises(SnapshotError, match="cannot load ranking model"):
            open_snapshot(core_snapshot, ranker=str(tmp_path / "nope.txt"))
