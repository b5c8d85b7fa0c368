"""Choosing among a recogniser's readings: correct each, search each, keep the likeliest."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from api.service import open_snapshot
from indexer.build import BuildConfig, build_snapshot
from search.engine import SearchEngine
from search.types import SearchRequest, SearchResult
from search.voice import (
    ReadingChoiceConfig,
    VoiceQueryCorrector,
    search_readings,
    title_coverage,
)
from tests.search.test_voice import VOICE_PRODUCTS


@pytest.fixture(scope="module")
def voice_engine(tmp_path_factory: pytest.TempPathFactory) -> SearchEngine:
    out: Path = tmp_path_factory.mktemp("voice-readings") / "snapshot"
    build_snapshot(VOICE_PRODUCTS, out, config=BuildConfig(languages=("en",), embedder="none"))
    return open_snapshot(out, ranker="none")


@pytest.fixture(scope="module")
def corrector(voice_engine: SearchEngine) -> VoiceQueryCorrector:
    return VoiceQueryCorrector.from_products(
        voice_engine.vocabulary, voice_engine.analyzer, voice_engine.store.products
    )


class Searches:
    """A search function that records what it was asked."""

    def __init__(self, engine: SearchEngine) -> None:
        self.engine = engine
        self.asked: list[str] = []

    def __call__(self, text: str) -> SearchResult | None:
        self.asked.append(text)
        if not text.strip():
            return None
        return self.engine.search(SearchRequest(text=text, k=5, as_you_type=False))


class TestTitleCoverage:
    @pytest.mark.parametrize(
        ("query", "titles", "expected"),
        [
            ("cotton shirt", ["White cotton shirt"], 1.0),
            ("cotton shirts", ["White cotton shirt"], 1.0),  # stems
            ("cotton car", ["White cotton shirt", "Blue car cover"], 0.5),
            ("the", ["White cotton shirt"], 0.0),  # no terms
            ("cotton shirt", [], 0.0),
            ("", ["White cotton shirt"], 0.0),
        ],
    )
    def test_share_of_query_terms_in_one_title(
        self, voice_engine: SearchEngine, query: str, titles: list[str], expected: float
    ) -> None:
        assert title_coverage(voice_engine.analyzer, query, titles) == pytest.approx(expected)


class TestSearchReadings:
    def test_a_runner_up_that_fits_the_catalogue_wins(
        self, voice_engine: SearchEngine, corrector: VoiceQueryCorrector
    ) -> None:
        searches = Searches(voice_engine)
        outcome = search_readings(
            corrector,
            # Every word of the first is a catalogue word, but no product has them all.
            [("white car shirt", 0.80), ("White cotton shirt.", 0.78)],
            searches,
        )

        assert outcome.query == "white cotton shirt"
        assert outcome.result is not None and outcome.result.hits[0].product.id == "SHIRT-2"
        assert [c.text for c in outcome.considered] == ["white car shirt", "white cotton shirt"]
        # The better-fitting reading is searched first; the other could no longer win.
        assert searches.asked == ["white cotton shirt"]
        assert math.isnan(outcome.scores[0]) and outcome.scores[1] > 1.0

    def test_a_much_likelier_reading_keeps_its_place(
        self, voice_engine: SearchEngine, corrector: VoiceQueryCorrector
    ) -> None:
        searches = Searches(voice_engine)
        outcome = search_readings(
            corrector,
            [("white cotton shirt", 0.9), ("blue car cover", 0.05)],
            searches,
        )

        assert outcome.query == "white cotton shirt"
        # Even with all its words in one title the unlikely reading could not have won: it is
        # not searched.
        assert searches.asked == ["white cotton shirt"]
        assert math.isnan(outcome.scores[1])

    def test_readings_the_same_after_correction_are_searched_once(
        self, voice_engine: SearchEngine, corrector: VoiceQueryCorrector
    ) -> None:
        searches = Searches(voice_engine)
        outcome = search_readings(
            corrector,
            [("Blue cotton shirt.", 0.9), ("blue cotton shirt", 0.8), ("Blue, cotton shirt", 0.7)],
            searches,
        )

        assert searches.asked == ["blue cotton shirt"]
        assert len(outcome.considered) == 1

    def test_max_readings(self, voice_engine: SearchEngine, corrector: VoiceQueryCorrector) -> None:
        searches = Searches(voice_engine)
        search_readings(
            corrector,
            [("garden hose", 0.9), ("copper pipe", 0.8), ("night light", 0.7)],
            searches,
            ReadingChoiceConfig(max_readings=2),
        )

        assert searches.asked and set(searches.asked) <= {"garden hose", "copper pipe"}

    @pytest.mark.parametrize("readings", [[], [("", 1.0)], [("  ", 0.5), ("...", 0.4)]])
    def test_nothing_to_search(
        self,
        voice_engine: SearchEngine,
        corrector: VoiceQueryCorrector,
        readings: list[tuple[str, float]],
    ) -> None:
        searches = Searches(voice_engine)
        outcome = search_readings(corrector, readings, searches)

        assert outcome.query == ""
        assert outcome.result is None
        assert searches.asked == []

    @pytest.mark.parametrize("field", ["max_readings", "top_titles"])
    def test_bad_config(self, field: str) -> None:
        with pytest.raises(ValueError, match=field):
            ReadingChoiceConfig(**{field: 0})
