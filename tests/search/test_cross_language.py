"""Cross-language search on a small shop with Polish and English titles (issue 18, part 1).

The catalogue mirrors the bundled demo: most titles English, some Polish, analysed in both
languages. The queries are the demo's failures: ``granatowa koszula`` showed a navy jacket and a
sofa instead of the English navy shirts, ``czerwona sukienka`` red sneakers instead of red
dresses, ``dżinsy`` beds and a table (through the semantic fallback), and ``lampa stołowa`` was
"corrected" to ``lampa stylu``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from api.service import open_snapshot
from indexer.build import BuildConfig, build_snapshot
from search.engine import EngineConfig, SearchEngine
from search.types import Product, SearchRequest
from search.understand import MatchKind, QueryUnderstander, UnderstandConfig


def en(pid: str, title: str, category: str) -> Product:
    return Product(id=pid, title=title, categories=(("Shop", category),), lang="en")


def pl(pid: str, title: str, category: str, description: str = "") -> Product:
    return Product(
        id=pid, title=title, categories=(("Sklep", category),), description=description, lang="pl"
    )


PRODUCTS: tuple[Product, ...] = (
    en("SH1", "UrbanThread Slim Fit Oxford Shirt, Navy", "Shirts"),
    en("SH2", "Linnea Relaxed Fit Poplin Shirt, Navy", "Shirts"),
    en("SH3", "Northbound Regular Fit Linen Shirt, Navy", "Shirts"),
    en("SH4", "UrbanThread Regular Fit Flannel Shirt, Navy", "Shirts"),
    en("SH5", "Linnea Slim Fit Oxford Shirt, White", "Shirts"),
    en("JA1", "Northbound Quilted Jacket, Navy", "Jackets"),
    en("SO1", "Nordhaus Oslo Corner Sofa in Navy Velvet", "Sofas"),
    en("DR1", "Linnea Maxi Wrap Dress in Red", "Dresses"),
    en("DR2", "UrbanThread Mini Slip Dress in Red", "Dresses"),
    en("DR3", "Wiśniewska Atelier Midi A-Line Dress in Red", "Dresses"),
    en("DR4", "Linnea Midi Wrap Dress in Green", "Dresses"),
    en("SN1", "StrideLab Court Canvas Sneakers, Red", "Sneakers"),
    en("SN2", "StrideLab Runner Leather Sneakers, Red", "Sneakers"),
    en("JE1", "Linnea Slim Jeans, Navy", "Jeans"),
    en("JE2", "Northbound Straight Leg Jeans, Black", "Jeans"),
    en("LA1", "Nordhaus Luna Table Lamp with White Linen Shade", "Lamps"),
    en("LA2", "Lumo Living Aura Table Lamp with Black Glass Shade", "Lamps"),
    en("LA3", "Nordhaus Iskra Floor Lamp with Black Metal Shade", "Lamps"),
    en("BE1", "Nordhaus Bergen Platform Bed in Grey Linen", "Beds"),
    en("TA1", "Dębowy Dwór Oslo Walnut Dining Table, Brown", "Tables"),
    en("CH1", "Nordhaus Aarhus Oak Dining Chair, Black", "Chairs"),
    pl("PJA", "Kurtka pikowana granatowa Northbound Denim", "Kurtki"),
    pl("PSH", "Koszula lniana biała Linnea Relaxed Fit", "Koszule"),
    pl("PJE", "Jeansy proste czarne UrbanThread Slim", "Jeansy"),
    pl("PSP", "Spodnie jeansowe granatowe Linnea Tapered", "Jeansy"),
    pl("PDR", "Sukienka midi czerwona Linnea Maxi", "Sukienki"),
    pl("PLA", "Lampa stojąca biała Nordhaus Nova", "Lampy"),
    pl("PTA", "Stół dębowy biały Dębowy Dwór Oslo", "Stoły", "Stół w skandynawskim stylu."),
    pl("PCH", "Krzesło dębowe czarne Kowalski Meble Sopot", "Krzesła"),
)


class EnglishOnlyEmbedder:
    """Records the query texts it embeds (a stand-in for MiniLM, which reads English)."""

    name = "recording"
    version = "1"
    dim = 4
    min_similarity = 0.0

    def __init__(self) -> None:
        self.queries: list[str] = []

    def warm_up(self) -> None:
        pass

    def _embed(self, texts: Sequence[str]) -> np.ndarray:
        out = np.ones((len(texts), self.dim), dtype=np.float32)
        return out / np.linalg.norm(out, axis=1, keepdims=True)

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        self.queries.extend(texts)
        return self._embed(texts)

    def embed_documents(
        self, texts: Sequence[str], batch_size: int = 64, show_progress: bool = False
    ) -> np.ndarray:
        return self._embed(texts)


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bilingual") / "snapshot"
    build_snapshot(PRODUCTS, out, config=BuildConfig(languages=("en", "pl"), embedder="none"))
    return out


@pytest.fixture(scope="module")
def engine(snapshot: Path) -> SearchEngine:
    return open_snapshot(snapshot, use_semantic=False, ranker="none")


def search(engine: SearchEngine, text: str, k: int = 10) -> list[str]:
    result = engine.search(SearchRequest(text=text, k=k, as_you_type=False))
    return [h.product.id for h in result.hits]


class TestDemoCases:
    def test_navy_shirt_in_polish_finds_the_english_navy_shirts(self, engine: SearchEngine) -> None:
        found = search(engine, "granatowa koszula")
        assert set(found[:4]) == {"SH1", "SH2", "SH3", "SH4"}
        assert found.index("JA1") > 4 and "SO1" not in found[:6]

    @pytest.mark.parametrize(
        "text", ["granatowe koszule", "granatowej koszuli", "koszulę granatową"]
    )
    def test_any_inflection(self, engine: SearchEngine, text: str) -> None:
        assert set(search(engine, text)[:4]) == {"SH1", "SH2", "SH3", "SH4"}

    def test_red_dress_in_polish_finds_the_english_red_dresses(self, engine: SearchEngine) -> None:
        found = search(engine, "czerwona sukienka")
        assert set(found[:4]) == {"DR1", "DR2", "DR3", "PDR"}
        assert not {"SN1", "SN2"} & set(found[:5])

    @pytest.mark.parametrize("text", ["dżinsy", "dzinsy", "jeansy", "jeans"])
    def test_jeans_spellings_meet(self, engine: SearchEngine, text: str) -> None:
        result = engine.search(SearchRequest(text=text, k=10, as_you_type=False))
        assert result.fallback is None
        assert {h.product.id for h in result.hits} == {"JE1", "JE2", "PJE", "PSP"}

    def test_table_lamp_in_polish_is_not_corrected(self, engine: SearchEngine) -> None:
        result = engine.search(SearchRequest(text="lampa stołowa", k=10, as_you_type=False))
        assert result.corrected_query is None
        assert [h.product.id for h in result.hits][:2] in (["LA1", "LA2"], ["LA2", "LA1"])


class TestEnglishFindsPolish:
    def test_white_shirt(self, engine: SearchEngine) -> None:
        assert set(search(engine, "white shirt")[:2]) == {"SH5", "PSH"}

    def test_oak_chair_does_not_follow_a_polish_brand(self, engine: SearchEngine) -> None:
        """The English walnut table of the brand "Dębowy Dwór" (Oak Manor) is no oak chair:
        the Polish side of "oak" matches only Polish-analysed words."""
        found = search(engine, "oak chair")
        assert set(found[:2]) == {"CH1", "PCH"}
        assert "TA1" not in found


class TestUnderstanding:
    def test_polish_words_carry_their_english(self, engine: SearchEngine) -> None:
        query = engine.understander.understand(
            SearchRequest(text="granatowa koszula", as_you_type=False)
        )
        assert [w.translation for w in query.words] == ["navy", "shirt"]
        assert query.semantic_text == "navy shirt"
        shirt = query.words[1]
        assert any(
            a.kind is MatchKind.TRANSLATION and a.word == "shirt" for a in shirt.alternatives
        )

    def test_english_words_are_not_rendered(self, engine: SearchEngine) -> None:
        query = engine.understander.understand(SearchRequest(text="navy shirt", as_you_type=False))
        assert [w.translation for w in query.words] == [None, None]
        assert query.semantic_text == "navy shirt"

    def test_the_embedder_sees_english(self, tmp_path: Path) -> None:
        embedder = EnglishOnlyEmbedder()
        build_snapshot(
            PRODUCTS, tmp_path / "s", config=BuildConfig(languages=("en", "pl")), embedder=embedder
        )
        engine = open_snapshot(tmp_path / "s", embedder=embedder, ranker="none")
        embedder.queries.clear()
        engine.search(SearchRequest(text="czerwona sukienka dla dzieci", as_you_type=False))
        assert embedder.queries == ["red dress kids"]

    def test_translation_can_be_turned_off(self, snapshot: Path) -> None:
        """Without the lexicon only the Polish shirt matches "koszula" (the English navy
        shirts come after it, on their colour alone)."""
        config = EngineConfig(understand=UnderstandConfig(translate=False))
        plain = open_snapshot(snapshot, use_semantic=False, ranker="none", config=config)
        assert search(plain, "granatowa koszula")[0] == "PSH"


class TestCorrections:
    def test_a_sound_alike_too_far_is_not_a_correction(self, snapshot: Path) -> None:
        """Without the lexicon, "stolowa" sounds like the description's "stylu" by English
        rules (every vowel merged); 4 edits of 7 letters is no correction."""
        config = EngineConfig(understand=UnderstandConfig(translate=False))
        plain = open_snapshot(snapshot, use_semantic=False, ranker="none", config=config)
        request = SearchRequest(text="lampa stolowa", as_you_type=False)
        query = plain.understander.understand(request)
        assert query.corrected_text != "lampa stylu"
        assert all(a.word != "stylu" for w in query.words for a in w.alternatives)
        loose = UnderstandConfig(translate=False, max_sound_distance=0.6)
        understander = QueryUnderstander(
            plain.analyzer, plain.vocabulary, plain.lexical.term_ids, loose
        )
        looser = understander.understand(request)  # the English-catalogue setting
        assert any(a.word == "stylu" for w in looser.words for a in w.alternatives)

    def test_a_word_known_by_its_polish_stem_is_not_corrected(self, engine: SearchEngine) -> None:
        query = engine.understander.understand(SearchRequest(text="krzesłami", as_you_type=False))
        (word,) = query.words
        assert word.known
        assert {a.kind for a in word.alternatives} <= {MatchKind.EXACT, MatchKind.TRANSLATION}

    def test_english_typos_are_still_corrected(self, engine: SearchEngine) -> None:
        result = engine.search(SearchRequest(text="oxfrod shirt", as_you_type=False))
        assert result.corrected_query == "oxford shirt"


@pytest.fixture(scope="module")
def english(tmp_path_factory: pytest.TempPathFactory) -> SearchEngine:
    """The English titles alone, analysed in English only."""
    out = tmp_path_factory.mktemp("english") / "snapshot"
    products = [p for p in PRODUCTS if p.lang == "en"]
    build_snapshot(products, out, config=BuildConfig(languages=("en",), embedder="none"))
    return open_snapshot(out, use_semantic=False, ranker="none")


class TestEnglishOnlyCatalogue:
    @pytest.mark.parametrize(
        "text", ["navy shirt", "table lamp", "kable ties", "air kompresor", "5/8 in puch", "mikser"]
    )
    def test_english_queries_are_unchanged(self, english: SearchEngine, text: str) -> None:
        """English queries (respelled ones included) understand exactly as without the lexicon."""
        off = QueryUnderstander(
            english.analyzer,
            english.vocabulary,
            english.lexical.term_ids,
            UnderstandConfig(translate=False),
        )
        request = SearchRequest(text=text, as_you_type=False)
        assert english.understander.understand(request) == off.understand(request)

    def test_a_polish_query_still_finds_english_titles(self, english: SearchEngine) -> None:
        assert set(search(english, "granatowa koszula")[:4]) == {"SH1", "SH2", "SH3", "SH4"}
