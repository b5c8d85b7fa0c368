"""Colour search end to end in the core: colours read from text and drawn photos at build time,
colour words and the ``colour`` parameter at query time, facets, explain and the conflicts report.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from api.service import open_snapshot
from indexer.build import BuildConfig, build_snapshot
from search.colour import lookup
from search.engine import EngineConfig, SearchEngine
from search.errors import InvalidRequestError
from search.index.colours import FAMILY_GRADE, ColourIndex, text_colours
from search.types import Product, ProductColour, SearchRequest


def draw_shirt(path: Path, rgb: tuple[int, int, int], background=(255, 255, 255)) -> str:
    """A T-shirt silhouette in one colour on a plain background."""
    image = Image.new("RGB", (120, 140), background)
    draw = ImageDraw.Draw(image)
    draw.polygon(
        [(30, 20), (50, 12), (70, 12), (90, 20), (110, 45), (95, 55), (88, 45), (88, 125),
         (32, 125), (32, 45), (25, 55), (10, 45)],
        fill=rgb,
    )  # fmt: skip
    image.save(path)
    return str(path)


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> SearchEngine:
    work = tmp_path_factory.mktemp("colour-search")
    corrupt = work / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    products = [
        # Text says navy; the photo agrees.
        Product("S1", "Oxford shirt, navy", categories=(("Shirts",),),
                images=(draw_shirt(work / "s1.png", (31, 42, 68)),)),
        # No colour in the text: only the photo knows it is dark blue.
        Product("S2", "Poplin shirt", categories=(("Shirts",),),
                images=(draw_shirt(work / "s2.png", (28, 38, 72)),)),
        # A red shirt, photo and text agree.
        Product("S3", "Linen shirt", attributes={"colour": ("Red",)}, categories=(("Shirts",),),
                images=(draw_shirt(work / "s3.png", (200, 20, 30)),)),
        # The PIM says red, the photo shows green: a catalogue bug to surface.
        Product("S4", "Flannel shirt", colours=("red",), categories=(("Shirts",),),
                images=(draw_shirt(work / "s4.png", (30, 140, 50)),)),
        # A navy product of another type: must not beat shirts for "navy shirt".
        Product("J1", "Denim jacket in navy", categories=(("Jackets",),)),
        # Unreadable photo: reported, the product still indexed from its text.
        Product("S5", "Bordowa koszula lniana", colours=(), categories=(("Shirts",),),
                images=(str(corrupt),), lang="pl"),
        Product("S6", "Orange shirt", categories=(("Shirts",),)),
        Product("T1", "Coffee table", categories=(("Tables",),)),
    ]  # fmt: skip
    build_snapshot(
        products, work / "snap", config=BuildConfig(languages=("en", "pl"), embedder="none")
    )
    return open_snapshot(work / "snap", use_semantic=False, ranker="none")


def ids(engine: SearchEngine, **kwargs: object) -> list[str]:
    request = SearchRequest(**{"as_you_type": False, "k": 10, **kwargs})  # type: ignore[arg-type]
    return [h.product.id for h in engine.search(request).hits]


class TestIndexedColours:
    def test_text_and_photo_colours_are_kept_with_their_source(self, engine: SearchEngine) -> None:
        colours = engine.colours.of(engine.store.doc_of["S1"])
        assert [c.source for c in colours][:2] == ["text", "photo"]
        assert colours[0].name == "navy"
        assert colours[1].family == "blue"

    def test_photo_alone_gives_a_colour(self, engine: SearchEngine) -> None:
        colours = engine.colours.of(engine.store.doc_of["S2"])
        assert colours and all(c.source == "photo" for c in colours)
        assert colours[0].family == "blue"
        assert 0 < colours[0].share <= 1 and 0 < colours[0].confidence <= 1

    def test_conflict_and_unreadable_photo_are_reported(self, engine: SearchEngine) -> None:
        report = engine.colour_report()
        assert report is not None
        listed = report["conflicts"]
        assert isinstance(listed, list)
        conflicts = {c["product_id"]: c for c in listed}
        assert set(conflicts) == {"S4"}
        assert conflicts["S4"]["text_colours"] == ["red"]
        assert lookup(str(conflicts["S4"]["photo_colour"])).family.value == "green"  # type: ignore[union-attr]
        errors = report["photo_errors"]
        assert isinstance(errors, list)
        assert [e["product_id"] for e in errors] == ["S5"]
        # The product with the unreadable photo is still found by its text colour.
        assert engine.colours.of(engine.store.doc_of["S5"])[0].name == "burgundy"
        assert engine.manifest.counts["colour_conflicts"] == 1
        assert engine.manifest.counts["photo_errors"] == 1


class TestColourQueries:
    def test_colour_word_finds_photo_only_product(self, engine: SearchEngine) -> None:
        found = ids(engine, text="navy shirt")
        assert set(found[:2]) == {"S1", "S2"}

    def test_colour_words_do_not_starve_the_type(self, engine: SearchEngine) -> None:
        found = ids(engine, text="navy shirt")
        # Every shirt ranks above the navy jacket, which matches only the colour.
        assert found.index("J1") > max(found.index(s) for s in ("S3", "S4", "S6"))

    def test_neighbour_colour_words(self, engine: SearchEngine) -> None:
        assert ids(engine, text="dark blue shirt")[:2] in (["S1", "S2"], ["S2", "S1"])
        # The burgundy shirt (titled in Polish) first; burgundy is close to red: the red
        # shirts come before orange and green ones.
        found = ids(engine, text="burgundy shirt")
        assert found[0] == "S5"
        assert found[1] in ("S3", "S4")
        assert found.index("S3") < found.index("S6")
        assert ids(engine, text="bordowa koszula")[0] == "S5"

    def test_polish_colour_word(self, engine: SearchEngine) -> None:
        # No Polish navy shirt: the English navy shirts (by text and by photo) come first, as
        # for "navy shirt", then the Polish shirt of another colour; the navy jacket last.
        found = ids(engine, text="granatowa koszula")
        assert found[:3] == ["S1", "S2", "S5"]
        assert found[-1] == "J1"
        navy = ids(engine, text="granatowa")
        assert set(navy[:2]) == {"S1", "J1"}  # stated navy first, then the photo's dark blue
        assert "S2" in navy

    def test_colour_parameter_filters_to_the_family_closest_first(
        self, engine: SearchEngine
    ) -> None:
        found = ids(engine, text="shirt", colour="#1f2a44")
        assert set(found[:2]) == {"S1", "S2"}
        assert set(found) <= {"S1", "S2", "J1"}  # J1: the colour without the type, after
        browse = ids(engine, colour="granatowy")
        assert set(browse) == {"S1", "S2", "J1"}
        assert browse[-1] == "S2"  # navy stated in the text beats a photo's dark blue

    def test_family_parameter_keeps_every_shade(self, engine: SearchEngine) -> None:
        assert set(ids(engine, colour="blue")) == {"S1", "S2", "J1"}

    def test_hex_code_in_text(self, engine: SearchEngine) -> None:
        assert set(ids(engine, text="#1f2a44 shirt")[:2]) == {"S1", "S2"}

    def test_bad_colour_parameter_names_the_field(self, engine: SearchEngine) -> None:
        with pytest.raises(InvalidRequestError) as info:
            engine.search(SearchRequest(text="shirt", colour="blurple"))
        assert info.value.field == "colour"
        assert "navy" in info.value.message  # examples of valid values

    def test_non_colour_phrase_is_plain_text(self, engine: SearchEngine) -> None:
        assert ids(engine, text="coffee table") == ["T1"]

    def test_colour_off_restores_text_order(self, engine: SearchEngine) -> None:
        plain = engine.with_config(EngineConfig(colour_weight=0.0, colour_rerank=0.0))
        # Without colour knowledge the photo-only navy shirt is not preferred.
        assert ids(plain, text="navy shirt")[0] != "S2"


class TestFacetsAndExplain:
    def test_colour_facet_counts_families_with_swatches(self, engine: SearchEngine) -> None:
        result = engine.search(SearchRequest(text="shirt", facets=("colour",), as_you_type=False))
        buckets = {b.value: b for b in result.facets["colour"]}
        assert buckets["blue"].count == 2
        assert buckets["red"].count >= 2  # S3, S4 (text), S5
        assert all(b.swatch and b.swatch.startswith("#") for b in buckets.values())

    def test_explain_shows_colour_contribution(self, engine: SearchEngine) -> None:
        result = engine.search(SearchRequest(text="navy shirt", explain=True, as_you_type=False))
        top = result.hits[0]
        assert top.explanation is not None
        colour_notes = [d for stage, d in top.explanation.adjustments if stage == "colour"]
        assert colour_notes and "asked navy" in colour_notes[0]
        assert "closeness" in colour_notes[0]


class TestColourIndex:
    def colour(self, name: str, source: str = "text", strength: float = 1.0) -> ProductColour:
        c = lookup(name)
        assert c is not None
        return ProductColour(c.name, c.family.value, c.hex, c.lab, source, 1.0, strength)  # type: ignore[arg-type]

    def test_graded_match(self) -> None:
        index = ColourIndex(
            [[self.colour("navy")], [self.colour("dark blue")], [self.colour("blue")],
             [self.colour("orange")], []]
        )  # fmt: skip
        match = index.match(lookup("navy"))  # type: ignore[arg-type]
        assert match[0] == pytest.approx(1.0)
        assert match[0] > match[1] > match[2] > match[3]
        assert match[2] >= FAMILY_GRADE  # same family
        assert match[3] == 0.0 and match[4] == 0.0

    def test_strength_weighs_the_match(self) -> None:
        index = ColourIndex(
            [[self.colour("red", strength=1.0)], [self.colour("red", strength=0.5)]]
        )
        match = index.match(lookup("red"))  # type: ignore[arg-type]
        assert match[0] == pytest.approx(2 * match[1])

    def test_multi_matches_only_multi(self) -> None:
        index = ColourIndex([[self.colour("multi")], [self.colour("red")]])
        assert list(index.match(lookup("multicolour"))) == [1.0, 0.0]  # type: ignore[arg-type]

    def test_save_and_load_round_trip(self, tmp_path: Path) -> None:
        index = ColourIndex([[self.colour("navy"), self.colour("white", "photo", 0.4)], []])
        index.save(tmp_path / "colours.json")
        loaded = ColourIndex.load(tmp_path / "colours.json")
        assert loaded.of(0)[0].name == "navy" and loaded.of(0)[1].source == "photo"
        assert loaded.of(1) == ()
        assert np.allclose(loaded.match(lookup("navy")), index.match(lookup("navy")), atol=1e-3)  # type: ignore[arg-type]

    def test_bad_family_in_file_is_refused(self, tmp_path: Path) -> None:
        (tmp_path / "colours.json").write_text(
            '[[{"name":"x","family":"plaid","hex":"#000000","lab":[0,0,0],"source":"text",'
            '"share":1,"confidence":1}]]'
        )
        with pytest.raises(ValueError, match="plaid"):
            ColourIndex.load(tmp_path / "colours.json")


class TestTextColours:
    @pytest.mark.parametrize(
        ("product", "names"),
        [
            (Product("a", "Shirt", colours=("Navy Blue",)), ["navy"]),
            (Product("b", "Shirt", attributes={"Kolor": ("czerwony",)}), ["red"]),
            (Product("c", "Shirt", attributes={"color": ("black/white",)}), ["black", "white"]),
            (Product("d", "Burgundy linen shirt"), ["burgundy"]),
            (Product("e", "Shirt", description="A soft olive shirt."), ["olive"]),
            (Product("f", "Red shirt", description="Pairs with black jeans."), ["red"]),
            (Product("g", "Coffee table"), []),
            (Product("h", "Shirt"), []),
        ],
    )
    def test_sources_in_order_of_trust(self, product: Product, names: list[str]) -> None:
        colours, unknown = text_colours(product)
        assert [c.name for c in colours] == names
        assert unknown == []

    def test_unknown_colour_value_is_reported(self) -> None:
        colours, unknown = text_colours(Product("x", "Shirt", colours=("Mocha Latte Swirl",)))
        assert unknown == ["Mocha Latte Swirl"]
        assert colours == []


class TestColourGrades:
    def colour(self, name: str, source: str = "text") -> ProductColour:
        c = lookup(name)
        assert c is not None
        return ProductColour(c.name, c.family.value, c.hex, c.lab, source, 1.0, 1.0)  # type: ignore[arg-type]

    def test_closer_shades_of_the_family_rank_first(self) -> None:
        # Scarlet is closer to red than to maroon, though both are far enough for the floor.
        index = ColourIndex([[self.colour("red")], [self.colour("maroon")], [self.colour("blue")]])
        match = index.match(lookup("scarlet"))  # type: ignore[arg-type]
        assert match[0] > match[1] >= FAMILY_GRADE
        assert match[2] < FAMILY_GRADE

    @pytest.mark.parametrize(
        ("texts", "expected"),
        [
            ((["red"], ["red", "black"], ["black", "red"]), [0, 1, 2]),
            ((["black", "red"], ["red"]), [1, 0]),
            (([], ["red"]), [1, 0]),
        ],
    )
    def test_one_text_colour_beats_one_of_several(
        self, texts: tuple[list[str], ...], expected: list[int]
    ) -> None:
        index = ColourIndex([[self.colour(n) for n in names] for names in texts])
        match = index.match(lookup("red"))  # type: ignore[arg-type]
        assert list(np.argsort(-match, kind="stable")) == expected

    def test_photo_colours_keep_their_strength(self) -> None:
        alone = ColourIndex([[self.colour("red", "photo")]]).match(lookup("red"))  # type: ignore[arg-type]
        beside = ColourIndex([[self.colour("black"), self.colour("red", "photo")]])
        assert beside.match(lookup("red"))[0] == pytest.approx(alone[0])  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def photo_engine(tmp_path_factory: pytest.TempPathFactory) -> SearchEngine:
    work = tmp_path_factory.mktemp("photo-colour")
    products = []
    for kind in ("shirt", "lamp"):
        for colour, rgb in {"red": (200, 25, 30), "blue": (30, 60, 170)}.items():
            path = work / f"{kind}-{colour}.png"
            image = Image.new("RGB", (96, 96), (255, 255, 255))
            draw = ImageDraw.Draw(image)
            if kind == "shirt":
                draw.polygon([(20, 15), (76, 15), (90, 35), (74, 42), (74, 88), (22, 88),
                              (22, 42), (6, 35)], fill=rgb)  # fmt: skip
            else:
                draw.ellipse((30, 10, 66, 46), fill=rgb)
                draw.rectangle((45, 46, 51, 88), fill=rgb)
            image.save(path)
            products.append(
                Product(f"{kind}-{colour}", f"{colour} {kind}", categories=((kind,),),
                        images=(str(path),))
            )  # fmt: skip
    build_snapshot(
        products,
        work / "snap",
        config=BuildConfig(embedder="none", image_embedder="descriptor"),
    )
    return open_snapshot(work / "snap", use_semantic=False, ranker="none")


class TestPhotoWithColourWord:
    def test_colour_word_keeps_the_kind_of_product(self, photo_engine: SearchEngine) -> None:
        found = photo_engine.similar("shirt-red", SearchRequest(text="in blue", k=3))
        ids = [h.product.id for h in found.hits]
        assert ids[0] == "shirt-blue"
        # Products in the asked colour come before look-alikes in another colour.
        assert ids.index("lamp-blue") < ids.index("lamp-red")

    def test_category_votes_follow_the_nearest_products(self, photo_engine: SearchEngine) -> None:
        photos = photo_engine.photos
        assert photos is not None
        doc = photo_engine.store.doc_of["shirt-red"]
        sims, docs = photos.images.index.search(photos.images.vectors[doc], 4)
        votes = photos._category_votes(sims, docs)
        shirts = [photo_engine.store.doc_of[f"shirt-{c}"] for c in ("red", "blue")]
        lamps = [photo_engine.store.doc_of[f"lamp-{c}"] for c in ("red", "blue")]
        assert votes.shape == (len(photo_engine.store),)
        assert votes[shirts].min() > votes[lamps].max()
        assert votes[shirts[0]] + votes[lamps[0]] == pytest.approx(1.0)
