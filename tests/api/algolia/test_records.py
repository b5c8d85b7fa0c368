"""Products as Algolia records, attribute retrieval, and highlighting and snippets as
InstantSearch reads them."""

from __future__ import annotations

from typing import Any

import pytest

from api.algolia.records import Highlighter, QueryWords, Tags, product_record, retrieve
from search.analysis import Analyzer
from search.engine import SearchEngine
from search.types import Availability, Product, ProductColour

SOFA = Product(
    id="SOFA 1/2",
    title="Granatowa sofa Łódź",
    description="A deep navy sofa for three, with oak legs and linen cushions.",
    brand="Meble Łódź",
    categories=(("Home", "Sofas", "Corner"), ("Sale",)),
    attributes={"material": ("linen", "oak")},
    price=1299.0,
    sale_price=999.0,
    currency="PLN",
    availability=Availability.PREORDER,
    images=("/srv/photos/sofa.jpg", "https://cdn.example/sofa-2.jpg"),
    url="https://shop.example/sofa",
    lang="pl",
)
NAVY = ProductColour("navy", "blue", "#000080", (13.0, 47.0, -64.0), "text", 1.0, 1.0)
FAINT = ProductColour("white", "white", "#ffffff", (100.0, 0.0, 0.0), "photo", 0.05, 0.3)


@pytest.fixture(scope="module")
def analyzer(core_engine: SearchEngine) -> Analyzer:
    """English and Polish, as the shared snapshot analyses."""
    return core_engine.analyzer


def highlighter(
    analyzer: Analyzer, query: str, corrected: str | None = None, *, prefix: bool = True
) -> Highlighter:
    return Highlighter(
        QueryWords.of(query, corrected, analyzer, prefix_last=prefix), analyzer, Tags()
    )


class TestRecord:
    def test_the_mapping(self) -> None:
        record = product_record(SOFA, (NAVY, FAINT))
        assert record["objectID"] == "SOFA 1/2"
        assert record["title"] == record["name"] == "Granatowa sofa Łódź"
        assert record["categories"] == {
            "lvl0": ["Home", "Sale"],
            "lvl1": ["Home > Sofas"],
            "lvl2": ["Home > Sofas > Corner"],
        }
        assert (record["price"], record["regular_price"], record["on_sale"]) == (
            999.0,
            1299.0,
            True,
        )
        assert record["currency"] == "PLN" and record["availability"] == "preorder"
        # The colour facet's families: a faint photo colour does not count.
        assert record["colour"] == ["blue"]
        assert record["colours"][0] == {"name": "navy", "family": "blue", "hex": "#000080"}
        # A local photo is served by the service (never its path); a remote one as it is.
        assert record["image"] == "/products/SOFA%201%2F2/images/0"
        assert record["images"][1] == "https://cdn.example/sofa-2.jpg"
        assert "/srv" not in str(record)
        assert record["attributes"] == {"material": ["linen", "oak"]}

    def test_a_bare_product(self) -> None:
        record = product_record(Product(id="X", title="Lamp"), ())
        assert record["categories"] == {} and record["colour"] == []
        assert record["image"] is None and record["price"] is None and record["on_sale"] is False


class TestRetrieve:
    RECORD: dict[str, Any] = product_record(SOFA, (NAVY,))

    @pytest.mark.parametrize(
        ("names", "keys"),
        [
            (["*"], set(RECORD)),
            (["*", "-description", "-images"], set(RECORD) - {"description", "images"}),
            (["title", "price"], {"objectID", "title", "price"}),
            ([], {"objectID"}),
            (["nope", "title.x"], {"objectID"}),
        ],
    )
    def test_names(self, names: list[str], keys: set[str]) -> None:
        assert set(retrieve(self.RECORD, names)) == keys

    def test_nested(self) -> None:
        out = retrieve(self.RECORD, ["categories.lvl1", "attributes.material"])
        assert out["categories"] == {"lvl1": ["Home > Sofas"]}
        assert out["attributes"] == {"material": ["linen", "oak"]}


class TestHighlight:
    def test_diacritics_stems_and_prefix(self, analyzer: Analyzer) -> None:
        h = highlighter(analyzer, "lodz sofas gran")
        answer = h.text("Granatowa sofa Łódź")
        assert answer["value"] == "<em>Granatowa</em> <em>sofa</em> <em>Łódź</em>"
        assert answer["matchLevel"] == "full"
        assert answer["matchedWords"] == ["lodz", "sofas", "gran"]
        assert answer["fullyHighlighted"] is True

    def test_a_finished_last_word_is_no_prefix(self, analyzer: Analyzer) -> None:
        assert "<em>" not in highlighter(analyzer, "gran ").text("Granatowa")["value"]
        assert "<em>" not in highlighter(analyzer, "gran", prefix=False).text("Granatowa")["value"]

    def test_partial_and_none(self, analyzer: Analyzer) -> None:
        h = highlighter(analyzer, "oak table")
        partial = h.text("A deep navy sofa with oak legs")
        assert partial["matchLevel"] == "partial" and partial["matchedWords"] == ["oak"]
        assert partial["fullyHighlighted"] is False
        none = h.text("Linen cushions")
        assert none == {"value": "Linen cushions", "matchLevel": "none", "matchedWords": []}

    def test_stopwords_are_not_marked(self, analyzer: Analyzer) -> None:
        answer = highlighter(analyzer, "sofa for kids").text("A sofa for the living room")
        assert answer["value"] == "A <em>sofa</em> for the living room"

    def test_the_corrected_word_is_marked(self, analyzer: Analyzer) -> None:
        answer = highlighter(analyzer, "sofe ", "sofa ").text("Corner sofa")
        assert answer["value"] == "Corner <em>sofa</em>"
        assert answer["matchedWords"] == ["sofe"]

    def test_custom_tags_and_no_escaping(self, analyzer: Analyzer) -> None:
        h = Highlighter(
            QueryWords.of("sofa", None, analyzer, prefix_last=True),
            analyzer,
            Tags("__ais-highlight__", "__/ais-highlight__"),
        )
        answer = h.text("<b>Sofa</b> & co")
        # Algolia's values are not HTML-escaped either: clients escape (InstantSearch does).
        assert answer["value"] == "<b>__ais-highlight__Sofa__/ais-highlight__</b> & co"

    def test_an_empty_query_marks_nothing(self, analyzer: Analyzer) -> None:
        assert highlighter(analyzer, "").text("Sofa")["matchLevel"] == "none"

    def test_the_default_attributes_arrays_and_objects(self, analyzer: Analyzer) -> None:
        record = product_record(SOFA, (NAVY,))
        result = highlighter(analyzer, "sofa").highlight_result(record, None)
        assert set(result) == {"title", "name", "brand", "categories", "description"}
        assert result["categories"]["lvl1"] == [
            {
                "value": "Home > <em>Sofas</em>",
                "matchLevel": "full",
                "matchedWords": ["sofa"],
                "fullyHighlighted": False,
            }
        ]
        chosen = highlighter(analyzer, "oak").highlight_result(
            record, ["attributes.material", "price", "objectID", "nope"]
        )
        assert chosen == {
            "attributes": {
                "material": [
                    {"value": "linen", "matchLevel": "none", "matchedWords": []},
                    {
                        "value": "<em>oak</em>",
                        "matchLevel": "full",
                        "matchedWords": ["oak"],
                        "fullyHighlighted": True,
                    },
                ]
            }
        }
        everything = highlighter(analyzer, "oak").highlight_result(record, ["*"])
        assert {"colour", "attributes", "title"} <= set(everything)


class TestSnippet:
    def test_a_window_around_the_first_match(self, analyzer: Analyzer) -> None:
        record = product_record(SOFA, ())
        result = highlighter(analyzer, "legs").snippet_result(record, [("description", 4)])
        assert result["description"] == {
            "value": "…oak <em>legs</em> and linen…",
            "matchLevel": "full",
        }

    def test_no_match_starts_at_the_beginning(self, analyzer: Analyzer) -> None:
        answer = highlighter(analyzer, "zebra").snippet("one two three four five", 3)
        assert answer == {"value": "one two three…", "matchLevel": "none"}

    def test_short_text_is_whole(self, analyzer: Analyzer) -> None:
        assert highlighter(analyzer, "two").snippet("one two", 10)["value"] == "one <em>two</em>"
