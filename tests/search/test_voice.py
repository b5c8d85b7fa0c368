"""Voice query correction: spoken numbers, catalogue re-segmentation, hints (no models needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from api.service import open_snapshot
from indexer.build import BuildConfig, build_snapshot
from search.analysis import Analyzer
from search.engine import SearchEngine
from search.types import Product, SearchRequest
from search.voice import (
    Correction,
    VoiceCorrectorConfig,
    VoiceQueryCorrector,
    sound_code,
    spoken_numbers,
    title_phrases,
)

VOICE_PRODUCTS: tuple[Product, ...] = (
    Product(id="SHIRT-1", title="Blue cotton shirt, long sleeve", brand="Fjord"),
    Product(id="SHIRT-2", title="White cotton shirt", brand="Fjord"),
    Product(id="CAR-1", title="Blue car cover", brand="Autox"),
    Product(id="TUB-1", title="Delta Windemere tub and shower faucet in chrome", brand="Delta"),
    Product(id="PIPE-1", title="3/4 in. x 10 ft. copper pipe", brand="Mueller"),
    Product(id="PIPE-2", title="1/2 in. x 10 ft. copper pipe", brand="Mueller"),
    Product(id="DRILL-1", title="Ryobi 18V cordless drill", brand="Ryobi"),
    Product(id="HOSE-1", title="Garden hose 50 ft.", brand="Flexzilla"),
    Product(id="FAUCET-1", title="Moen kitchen faucet, stainless", brand="Moen"),
    Product(id="LIGHT-1", title="Night light with dusk sensor", brand="GE"),
    Product(id="LUMBER-1", title="2 in. x 4 in. x 8 ft. stud", brand="Weyerhaeuser"),
)
"""A small hardware and clothing catalogue with brands, fractions and two-word phrases."""


@pytest.fixture(scope="module")
def voice_engine(tmp_path_factory: pytest.TempPathFactory) -> SearchEngine:
    out: Path = tmp_path_factory.mktemp("voice") / "snapshot"
    build_snapshot(VOICE_PRODUCTS, out, config=BuildConfig(languages=("en",), embedder="none"))
    return open_snapshot(out, ranker="none")


@pytest.fixture(scope="module")
def corrector(voice_engine: SearchEngine) -> VoiceQueryCorrector:
    return VoiceQueryCorrector.from_products(
        voice_engine.vocabulary, voice_engine.analyzer, voice_engine.store.products
    )


def top_ids(engine: SearchEngine, text: str, k: int = 3) -> list[str]:
    result = engine.search(SearchRequest(text=text, k=k, as_you_type=False))
    return [hit.product.id for hit in result.hits]


class TestSpokenNumbers:
    @pytest.mark.parametrize(
        ("spoken", "written"),
        [
            ("three quarter inch copper pipe", "3/4 inch copper pipe"),
            ("Three-quarter inch copper pipe.", "3/4 inch copper pipe"),
            ("half inch pipe", "1/2 inch pipe"),
            ("a quarter inch bit", "1/4 inch bit"),
            ("five eighths drywall", "5/8 drywall"),
            ("one and a half inch elbow", "1 1/2 inch elbow"),
            ("two and three quarters inch", "2 3/4 inch"),
            ("two by four by eight", "2 x 4 x 8"),
            ("2 by 4", "2 x 4"),
            ("twenty four volt battery", "24 volt battery"),
            ("one hundred twenty volt", "120 volt"),
            ("a hundred foot hose", "100 foot hose"),
            ("point seven five inch screws", ".75 inch screws"),
            ("¾ inch plywood", "3/4 inch plywood"),
            ("3 1-4 inch", "3 1/4 inch"),
            ("one slash two inch", "1/2 inch"),
            # Number homophones only where a fraction follows.
            ("free slash eight plywood", "3/8 plywood"),
            ("Free slash 8 riser", "3/8 riser"),
            ("for eighths inch", "4/8 inch"),
            ("free quarter inch", "3/4 inch"),
            ("won slash two", "1/2"),
            ("tools for eight year olds", "tools for 8 year olds"),
            ("a tree over the fence", "a tree over the fence"),
            ("shelf for quarter round", "shelf for 1/4 round"),
            ("o ring", "o ring"),
            ("stand by light", "stand by light"),
            ("", ""),
        ],
    )
    def test_written_like_catalogue_titles(self, spoken: str, written: str) -> None:
        assert spoken_numbers(spoken) == written


class TestSoundCode:
    def test_runs_of_words_are_read_as_one(self) -> None:
        assert sound_code("car insured") == sound_code("carinsured")
        assert sound_code("night light") == sound_code("nightlight")

    def test_digits_are_read_as_words(self) -> None:
        assert sound_code("1 to mere") == sound_code("one to mere")

    def test_sh_and_th_are_merged(self) -> None:
        assert sound_code("shirt")[0] == sound_code("sirt")[0]
        assert sound_code("thin") == sound_code("tin")

    def test_empty(self) -> None:
        assert sound_code("") == ""
        assert sound_code("...") == ""


class TestVoiceQueryCorrector:
    @pytest.mark.parametrize(
        ("heard", "expected", "first"),
        [
            ("blue car insured", "blue cotton shirt", "SHIRT-1"),
            ("Delphi won the mere tub chrome", "delta windemere tub chrome", "TUB-1"),
            ("Fry-o by cordless drill", "ryobi cordless drill", "DRILL-1"),
            ("Mount kitchen, Fauci.", "mount kitchen faucet", "FAUCET-1"),
            ("Nightlight", "night light", "LIGHT-1"),
        ],
    )
    def test_misheard_phrases_lead_to_the_products(
        self,
        corrector: VoiceQueryCorrector,
        voice_engine: SearchEngine,
        heard: str,
        expected: str,
        first: str,
    ) -> None:
        correction = corrector.correct(heard)

        assert correction.text == expected
        assert correction.changed
        assert all(0 < change.similarity <= 1 for change in correction.changes)
        assert top_ids(voice_engine, correction.text)[0] == first

    def test_without_correction_the_shirt_is_not_first(
        self, corrector: VoiceQueryCorrector, voice_engine: SearchEngine
    ) -> None:
        assert top_ids(voice_engine, "blue car insured")[0] == "CAR-1"

    def test_changes_say_what_was_replaced(self, corrector: VoiceQueryCorrector) -> None:
        correction = corrector.correct("blue car insured")

        assert [(c.heard, c.catalogue) for c in correction.changes] == [
            ("car insured", "cotton shirt")
        ]
        assert correction.transcript == "blue car insured"

    def test_fractions_and_sizes(
        self, corrector: VoiceQueryCorrector, voice_engine: SearchEngine
    ) -> None:
        correction = corrector.correct("three quarter inch copper pipe")

        assert correction.text == "3/4 inch copper pipe"
        assert not correction.changes  # numbers are normalised, nothing re-segmented
        assert top_ids(voice_engine, correction.text)[0] == "PIPE-1"
        assert top_ids(voice_engine, corrector.correct("two by four stud").text)[0] == "LUMBER-1"

    @pytest.mark.parametrize(
        "heard", ["cordless drill", "white cotton shirt", "garden hose", "copper pipe"]
    )
    def test_catalogue_words_are_left_alone(
        self, corrector: VoiceQueryCorrector, heard: str
    ) -> None:
        correction = corrector.correct(heard)

        assert correction.text == heard
        assert not correction.changed
        assert correction.score == pytest.approx(1.0, abs=0.25)

    @pytest.mark.parametrize("heard", ["", "   ", "...", "?"])
    def test_empty_transcripts(self, corrector: VoiceQueryCorrector, heard: str) -> None:
        correction = corrector.correct(heard)

        assert correction.text == ""
        assert not correction.changed

    def test_unrelated_words_stay_as_heard(self, corrector: VoiceQueryCorrector) -> None:
        # Nothing in the catalogue sounds like this: better to search it as heard.
        assert corrector.correct("xylophone").text == "xylophone"

    def test_best_of_prefers_the_reading_that_fits_the_catalogue(
        self, corrector: VoiceQueryCorrector
    ) -> None:
        best = corrector.best_of(["blew cotten sure it", "blue cotton shirt"])

        assert best.text == "blue cotton shirt"
        assert corrector.best_of([]) == Correction("", "", "", (), 0.0)

    def test_hints_are_frequent_catalogue_terms(self, corrector: VoiceQueryCorrector) -> None:
        hints = corrector.hints(8)

        assert len(hints) == 8
        assert "cotton shirt" in corrector.hints(100)
        assert all(" " not in h for h in corrector.hints(100, phrases=False))
        assert "and" not in corrector.hints(1000)  # stopwords are no hint
        assert corrector.hints(0) == ()

    def test_runs_do_not_swallow_a_stopword_at_their_edge(
        self, corrector: VoiceQueryCorrector, voice_engine: SearchEngine
    ) -> None:
        # "and tie": "and" was heard right; only the word after it is in question.
        assert corrector.correct("blue cotton shirt and tie").text == "blue cotton shirt and tie"
        # A stopword inside a run may still be re-segmented.
        assert corrector.correct("Delphi won the mere tub").text == "delta windemere tub"
        swallowing = VoiceQueryCorrector.from_titles(
            voice_engine.vocabulary,
            voice_engine.analyzer,
            (p.title for p in voice_engine.store.products),
            VoiceCorrectorConfig(edge_stopwords=True),
        )
        assert swallowing.correct("blue cotton shirt and tie").text != "blue cotton shirt and tie"

    def test_sound_alike_search_is_remembered(self, corrector: VoiceQueryCorrector) -> None:
        first = corrector.correct("blue car insured")

        assert corrector._candidate_cache  # the readings of one utterance share runs of words
        assert corrector.correct("blue car insured") == first

    def test_thresholds_are_configurable(self, voice_engine: SearchEngine) -> None:
        strict = VoiceQueryCorrector.from_titles(
            voice_engine.vocabulary,
            voice_engine.analyzer,
            (p.title for p in voice_engine.store.products),
            VoiceCorrectorConfig(min_phrase_similarity=0.95, min_similarity=0.95),
        )

        assert strict.correct("blue car insured").text == "blue car insured"


class TestTitlePhrases:
    def test_counts_titles_not_occurrences(self) -> None:
        phrases = title_phrases(
            ["Cotton shirt, cotton shirt", "White cotton shirt", "2 in. x 4 in. stud"],
            Analyzer(("en",)),
            min_count=1,
        )

        assert phrases["cotton shirt"] == 2
        assert phrases["white cotton"] == 1
        assert not any(any(c.isdigit() for c in p) for p in phrases)

    def test_min_count(self) -> None:
        phrases = title_phrases(["a b c", "red sofa", "red sofa bed"], Analyzer(("en",)))

        assert phrases == {"red sofa": 2}


POLISH_PRODUCTS: tuple[Product, ...] = (
    Product(id="KRZ-1", title="Krzesło ogrodowe składane, żółte", brand="Kowalski", lang="pl"),
    Product(id="KRZ-2", title="Krzesło kuchenne dębowe, czarne", brand="Kowalski", lang="pl"),
    Product(id="SOF-1", title="Sofa skórzana narożna, czarna", brand="Polmeb", lang="pl"),
    Product(id="STO-1", title="Stół dębowy rozkładany", brand="Dębowy Dwór", lang="pl"),
    Product(id="LAM-1", title="Lampa stojąca do salonu, biała", brand="Zorza", lang="pl"),
    Product(id="WIE-1", title="Wiertarka akumulatorowa kompaktowa", brand="Tatra", lang="pl"),
    Product(id="KOS-1", title="Koszula lniana męska, niebieska", brand="Mazur", lang="pl"),
    Product(id="DRL-1", title="Cordless drill with battery", brand="Tatra", lang="en"),
)
"""A small Polish shop with an English product, as mixed catalogues are."""


@pytest.fixture(scope="module")
def polish_engine(tmp_path_factory: pytest.TempPathFactory) -> SearchEngine:
    out: Path = tmp_path_factory.mktemp("voice-pl") / "snapshot"
    build_snapshot(
        POLISH_PRODUCTS, out, config=BuildConfig(languages=("pl", "en"), embedder="none")
    )
    return open_snapshot(out, ranker="none")


@pytest.fixture(scope="module")
def polish_corrector(polish_engine: SearchEngine) -> VoiceQueryCorrector:
    return VoiceQueryCorrector.from_products(
        polish_engine.vocabulary, polish_engine.analyzer, polish_engine.store.products
    )


class TestPolishCorrection:
    @pytest.mark.parametrize(
        ("heard", "searched", "first"),
        [
            # Diacritics lost: folded, they are the catalogue's words.
            ("zolte krzeslo ogrodowe", "żółte krzesło ogrodowe", "KRZ-1"),
            # Another inflection, without diacritics (Stempel cannot stem it): same ending-less
            # stem as the title's word.
            ("krzesla ogrodowe", "krzesło ogrodowe", "KRZ-1"),
            # Another inflection with diacritics: Stempel's stem is the title word's.
            ("krzeseł kuchennych", "krzesło kuchenne", "KRZ-2"),
            # A near sound: Polish sound keys (sz/rz...) and spelling.
            ("koszura lniana", "koszula lniana", "KOS-1"),
            # Two misheard words that sound like one catalogue word.
            ("wiert arka", "wiertarka", "WIE-1"),
        ],
    )
    def test_heard_words_snap_to_the_catalogue_words(
        self,
        polish_engine: SearchEngine,
        polish_corrector: VoiceQueryCorrector,
        heard: str,
        searched: str,
        first: str,
    ) -> None:
        correction = polish_corrector.correct(heard, "pl")

        assert correction.text == searched
        assert correction.changes
        assert all(c.heard in heard for c in correction.changes)
        assert top_ids(polish_engine, correction.text)[0] == first

    def test_changes_name_the_written_catalogue_word(
        self, polish_corrector: VoiceQueryCorrector
    ) -> None:
        correction = polish_corrector.correct("zolta sofa", "pl")

        # The title writes "czarna"/"żółte": "zolta" is another form of "żółte".
        assert [(c.heard, c.catalogue) for c in correction.changes] == [("zolta", "żółte")]
        assert correction.changes[0].similarity >= 0.72

    def test_catalogue_words_are_kept(self, polish_corrector: VoiceQueryCorrector) -> None:
        correction = polish_corrector.correct("Lampa stojąca do salonu", "pl")

        assert correction.text == "lampa stojąca do salonu"
        assert not correction.changed

    def test_english_reading_is_unchanged_by_the_polish_rules(
        self, polish_corrector: VoiceQueryCorrector
    ) -> None:
        # Without a language the corrector reads English numbers and uses metaphone.
        assert polish_corrector.correct("two cordless drills").text == "2 cordless drills"
        assert polish_corrector.correct("two cordless drills", "pl").text.startswith("two")

    def test_hints_keep_diacritics(self, polish_corrector: VoiceQueryCorrector) -> None:
        hints = polish_corrector.hints(200, phrases=False)

        assert "żółte" in hints and "krzesło" in hints and "zolte" not in hints

    def test_prepare_builds_the_polish_indexes_once(
        self, polish_corrector: VoiceQueryCorrector
    ) -> None:
        polish_corrector.prepare(["en", "pl"])
        built = polish_corrector._codes("pl")

        polish_corrector.prepare(["pl"])

        assert polish_corrector._codes("pl") is built
        assert polish_corrector.correct("zolte krzeslo", "pl").text == "żółte krzesło"
