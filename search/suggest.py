"""As-you-type query suggestions: popular past queries and catalogue phrases, typo tolerant.

Catalogue phrases are what shoppers type, taken from product titles, each with the number of
titles holding it (a phrase of several words must occur in at least two):

* the words and word pairs of titles. A pair never crosses punctuation or the edge of the
  product's brand, so "Kurtka granatowa Kowalski Meble" gives ``kurtka granatowa`` and
  ``kowalski meble`` but never ``granatowa kowalski``;
* colour and product phrases in the order shoppers type them: ``navy shirt`` from "Oxford
  Shirt, Navy", ``granatowa kurtka`` from "Kurtka pikowana granatowa";
* in a catalogue analysed in Polish, the same words in the other language through the lexicon
  (:mod:`search.lexicon`): an English shirt titled "Shirt, Navy" also gives ``koszula`` and
  ``granatowa koszula`` (the adjective agreeing with the noun), a Polish "Krzesło dębowe" also
  ``oak`` and ``chair``.

A prefix is completed by binary search over the sorted phrases. When nothing starts with the
typed text, its last word is corrected: to the most frequent catalogue word within the typo
tolerance, else to a phrase whose start is one edit from it (``sfo`` -> ``sofa``, ``chi`` ->
``chair``: a short prefix has no whole word to correct towards). After a Polish noun,
adjectives agree with it (``krzesła dęb`` -> ``krzesła dębowe``); after a Polish adjective, nouns
it cannot describe are left out (``granatowa k`` -> ``granatowa kurtka``, not ``granatowa
krzesło``).
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from search.analysis import Analyzer, Token, fold, normalise_query, tokenize
from search.colour import spot_colours
from search.index.vocabulary import Vocabulary
from search.inflect_pl import Gender, agree
from search.lexicon import Concept, Lexicon, default_lexicon
from search.types import Product
from search.understand import max_edits

SuggestionKind = Literal["query", "catalogue"]

# Where a title's phrases stop: punctuation between words ("Shirt, Navy", "Sofa (3-seater)").
_SEGMENT = re.compile(r"[,;:()|/\[\]]|\s[-–—]\s")
# English words after which a title's head noun has been said ("Table Lamp with a Linen Shade").
_AFTER_HEAD = frozenset({"with", "in", "for", "and", "without", "by", "from"})
# Colour concepts that only modify another colour ("light", "dark") or name colour itself.
_NOT_A_COLOUR = frozenset({"light", "dark", "colour"})
# Generic Polish adjective endings (nominative m/f/n): a word the lexicon does not list still
# agrees ("tapicerowan-y/-a/-e", "skandynawsk-i/-a/-ie").
_ADJECTIVE_ENDINGS = (("owy", "owa", "owe"), ("ski", "ska", "skie"), ("cki", "cka", "ckie"))
_LETTERS = "abcdefghijklmnopqrstuvwxyz"
_GENDERS: tuple[Gender, ...] = ("m", "f", "n", "pl")
# Single words read after a word they must agree with (most are left out by agreement).
_WIDE = 8


@dataclass(frozen=True, slots=True)
class Suggestion:
    """One suggestion.

    Attributes:
        text: What to put in the search box.
        kind: ``"query"`` (what other shoppers searched) or ``"catalogue"`` (title words).
        score: Popularity: searches for a query, titles for a catalogue phrase.
        corrected: True when the typed text was corrected to find it.
    """

    text: str
    kind: SuggestionKind
    score: float
    corrected: bool = False


@dataclass(frozen=True, slots=True)
class Suggestions:
    """The answer to one prefix."""

    prefix: str
    suggestions: tuple[Suggestion, ...]
    took_ms: float


def _title_parts(title: str) -> list[list[Token]]:
    """A title's words (derived tokens left out) in its runs between punctuation."""
    return [[t for t in tokenize(part) if not t.derived] for part in _SEGMENT.split(title)]


def _title_segments(
    parts: list[list[Token]], brand_words: list[str]
) -> list[list[tuple[str, str]]]:
    """A title's runs of (folded, surface) words between punctuation (see :func:`_title_parts`),
    the brand's words a run of their own."""
    out: list[list[tuple[str, str]]] = []
    for part in parts:
        words = [(t.folded, t.surface) for t in part if not t.is_unit and len(t.folded) > 1]
        n = len(brand_words)
        start = 0
        i = 0
        while n and i + n <= len(words):
            if [w for w, _ in words[i : i + n]] == brand_words:
                out.extend(run for run in (words[start:i], words[i : i + n]) if run)
                start = i = i + n
            else:
                i += 1
        if words[start:]:
            out.append(words[start:])
    return out


class _Descriptors:
    """Colour and product phrases of titles, in shopper order and, for a catalogue analysed in
    Polish, in both languages."""

    def __init__(self, lexicon: Lexicon, bilingual: bool) -> None:
        self.lexicon = lexicon
        self.bilingual = bilingual

    def _polish(self, concept: Concept, word_class: str | None = None) -> str | None:
        for word in concept.polish:
            if len(word.tokens) == 1 and (
                word_class is None
                or word.word_class == word_class
                or (word_class == "noun" and word.gender is not None)
            ):
                return word.lemma
        return None

    def _noun(self, concept: Concept) -> tuple[str, Gender] | None:
        for word in concept.polish:
            gender = word.gender
            if len(word.tokens) == 1 and gender is not None:
                return word.lemma, gender
        return None

    def _nominative_adjective(self, folded: str) -> bool:
        """Whether a Polish form is an adjective's nominative ("granatowa", not "granatowo")."""
        lemma = self.lexicon.adjective(folded)
        return lemma is not None and folded in {fold(agree(lemma, g)) for g in ("m", "f", "n")}

    def phrases(
        self, title: str, parts: list[list[Token]], brand_words: Iterable[str] = ()
    ) -> dict[str, str]:
        """Folded phrase -> display form, of one title (given as :func:`_title_parts`; its
        brand's words left out: the brand "Kowalski Meble" names no furniture)."""
        lex = self.lexicon
        brand = set(brand_words)
        tokens = [t for part in parts for t in part]
        readings = [
            None if t.folded in brand else r for t, r in zip(tokens, lex.read(tokens), strict=True)
        ]
        cuts = [segment for segment, part in enumerate(parts) for _ in part]
        colour: tuple[Concept, str] | None = None
        polish_head: tuple[Concept, str] | None = None
        english_head: tuple[Concept, str] | None = None
        english_open = True
        seen: list[Concept] = []
        for i, (token, reading) in enumerate(zip(tokens, readings, strict=False)):
            if english_open and (
                token.folded in _AFTER_HEAD or (i < len(cuts) and cuts[i] > 0 and english_head)
            ):
                english_open = False
            joined = lex.english(tokens[i - 1].folded + token.folded) if i else ()
            if joined:  # "T-Shirt": "t" + "shirt"
                concept = lex.concepts[joined[0]]
                seen.append(concept)
                if concept.is_product and english_open:
                    english_head = (concept, concept.rendering)
                continue
            if reading is None or token.is_number or reading.rendering == "":
                continue
            concept = lex.concepts[reading.concepts[0]]
            seen.append(concept)
            polish = reading.language == "pl"
            if concept.kind == "colour":
                nominative = not polish or self._nominative_adjective(token.folded)
                if colour is None and concept.rendering not in _NOT_A_COLOUR and nominative:
                    colour = (concept, token.surface)
            elif concept.is_product:
                if polish and polish_head is None and lex.noun(token.folded) is not None:
                    polish_head = (concept, token.surface)
                elif not polish and english_open:
                    english_head = (concept, token.surface)
        out: dict[str, str] = {}
        if colour is not None and (polish_head or english_head) is not None:
            # "Coffee Table" names no colour: search.colour knows such compounds.
            named = {w.folded for m in spot_colours(title)[0] for w in tokenize(m.text)}
            if fold(colour[1]) not in named:
                colour = None
        polish_colour = colour is not None and lex.adjective(fold(colour[1])) is not None
        head = (polish_head or english_head) if polish_colour else (english_head or polish_head)
        if colour is not None and head is not None and polish_colour == (head is polish_head):
            shown = f"{colour[1]} {head[1]}".lower()
            out.setdefault(fold(shown), shown)
        if not self.bilingual:
            return out
        # The same in both languages, from the concepts.
        if colour is not None and head is not None:
            english = f"{colour[0].rendering} {head[0].rendering}"
            out.setdefault(fold(english), english)
            adjective, noun = self._polish(colour[0], "adj"), self._noun(head[0])
            if adjective is not None and noun is not None:
                in_polish = f"{agree(adjective, noun[1])} {noun[0]}"
                out.setdefault(fold(in_polish), in_polish)
        for concept in seen:
            # Products and materials by name in the other language ("koszula", "oak"); a
            # colour on its own is no search, and the colour phrases above hold them.
            if not (concept.is_product or concept.kind == "material"):
                continue
            for word in (concept.rendering, self._polish(concept)):
                if word:
                    out.setdefault(fold(word), word)
        return out


class Suggester:
    """Completes typed prefixes from catalogue phrases and popular queries.

    Args:
        phrases: Folded phrase -> (display form, titles holding it).
        vocabulary: The snapshot vocabulary (typo correction of the last word).
        analyzer: The snapshot analyser (stopwords).
        lexicon: The Polish-English lexicon (agreement); None takes the packaged one.
    """

    def __init__(
        self,
        phrases: Mapping[str, tuple[str, int]],
        vocabulary: Vocabulary,
        analyzer: Analyzer,
        lexicon: Lexicon | None = None,
    ) -> None:
        # Phrases as sorted UTF-8 bytes in numpy arrays (UTF-8 sorts like code points), not as
        # lists of str: a million titles give ~400,000 phrases, and their str objects, spread
        # over the memory the build used, kept most of that memory from being returned.
        keys = sorted(phrases)
        self._keys = np.array([k.encode("utf-8") for k in keys], dtype=bytes)
        self._display = np.array([phrases[k][0].encode("utf-8") for k in keys], dtype=bytes)
        self._counts = np.array([phrases[k][1] for k in keys], dtype=np.int64)
        self.vocabulary = vocabulary
        self.analyzer = analyzer
        self.lexicon = lexicon if lexicon is not None else default_lexicon()

    @classmethod
    def from_products(
        cls, products: Iterable[Product], vocabulary: Vocabulary, analyzer: Analyzer
    ) -> Suggester:
        """:meth:`from_titles` over products' titles and brands, read in one pass (a lazy store
        decodes its products on each pass)."""
        titles: list[str] = []
        brands: list[str | None] = []
        for product in products:
            titles.append(product.title)
            brands.append(product.brand)
        return cls.from_titles(titles, vocabulary, analyzer, brands=brands)

    @classmethod
    def from_titles(
        cls,
        titles: Sequence[str],
        vocabulary: Vocabulary,
        analyzer: Analyzer,
        brands: Sequence[str | None] | None = None,
        lexicon: Lexicon | None = None,
    ) -> Suggester:
        """Collect the phrases of product titles (see the module's description).

        Args:
            titles: Product titles.
            vocabulary: The snapshot vocabulary.
            analyzer: The snapshot analyser.
            brands: Each title's product brand (None: not known), so that no phrase runs from
                a title's words into its brand.
            lexicon: The Polish-English lexicon; None takes the packaged one.

        Raises:
            ValueError: ``brands`` is not as long as ``titles``.
        """
        if brands is not None and len(brands) != len(titles):
            raise ValueError(f"{len(brands)} brands for {len(titles)} titles")
        lexicon = lexicon if lexicon is not None else default_lexicon()
        descriptors = _Descriptors(lexicon, "pl" in analyzer.language_codes)
        counts: Counter[str] = Counter()
        display: dict[str, Counter[str]] = {}
        for i, title in enumerate(titles):
            seen: dict[str, str] = {}
            brand = brands[i] if brands is not None else None
            brand_words = [t.folded for t in tokenize(brand) if not t.derived] if brand else []
            parts = _title_parts(title)
            for run in _title_segments(parts, brand_words):
                for j, (key, surface) in enumerate(run):
                    if not analyzer.is_stopword(key) and not key.isdigit():
                        seen.setdefault(key, surface)
                    if j + 1 < len(run):
                        nxt_key, nxt_surface = run[j + 1]
                        if analyzer.is_stopword(key) or analyzer.is_stopword(nxt_key):
                            continue
                        seen.setdefault(f"{key} {nxt_key}", f"{surface} {nxt_surface}")
            for key, shown in descriptors.phrases(title, parts, brand_words).items():
                seen.setdefault(key, shown)
            for key, surface in seen.items():
                counts[key] += 1
                display.setdefault(key, Counter())[surface] += 1
        phrases = {
            key: (display[key].most_common(1)[0][0], n)
            for key, n in counts.items()
            if " " not in key or n >= 2
        }
        return cls(phrases, vocabulary, analyzer, lexicon)

    @property
    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The phrase keys, display forms and counts (to rebuild it with :meth:`from_arrays`
        in another process: a service builds a swapped-in snapshot's suggester in a child)."""
        return self._keys, self._display, self._counts

    @classmethod
    def from_arrays(
        cls,
        arrays: tuple[np.ndarray, np.ndarray, np.ndarray],
        vocabulary: Vocabulary,
        analyzer: Analyzer,
        lexicon: Lexicon | None = None,
    ) -> Suggester:
        """A suggester from another's :attr:`arrays` and the snapshot's vocabulary and analyser.

        Raises:
            ValueError: the arrays differ in length.
        """
        keys, display, counts = arrays
        if not len(keys) == len(display) == len(counts):
            raise ValueError("keys, display and counts must have the same length")
        out = cls.__new__(cls)
        out._keys, out._display, out._counts = keys, display, counts
        out.vocabulary = vocabulary
        out.analyzer = analyzer
        out.lexicon = lexicon if lexicon is not None else default_lexicon()
        return out

    def __len__(self) -> int:
        return len(self._keys)

    def _complete(self, prefix: str, limit: int) -> list[tuple[str, int]]:
        encoded = prefix.encode("utf-8")
        start = int(np.searchsorted(self._keys, encoded, side="left"))
        # No UTF-8 byte is 0xff: every key starting with the prefix sorts before this.
        end = int(np.searchsorted(self._keys, encoded + b"\xff", side="left"))
        if end <= start:
            return []
        ids = np.arange(start, end)
        if len(ids) > limit:
            ids = ids[np.argpartition(-self._counts[ids], limit - 1)[:limit]]
        ranked = sorted(ids.tolist(), key=lambda i: (-int(self._counts[i]), self._keys[i]))
        return [(self._display[i].decode("utf-8"), int(self._counts[i])) for i in ranked]

    def suggest(
        self,
        text: str,
        k: int = 8,
        *,
        popular: Mapping[str, int] | None = None,
    ) -> Suggestions:
        """Suggestions for what the shopper has typed so far.

        Args:
            text: The typed text (the last word may be incomplete).
            k: Most suggestions returned.
            popular: Past queries (keyed by :func:`search.analysis.normalise_query`) -> searches; those starting
                with the typed text come first. Shared with every shopper, so it should hold
                only queries searched by several distinct shoppers (the behavioural signals'
                ``QuerySignals.searches`` is 0 below ``min_shoppers``), never one client's say.

        Returns:
            Up to ``k`` suggestions, popular queries first, then catalogue phrases.
        """
        started = time.perf_counter()
        typed = normalise_query(text)  # the key popular queries are stored under
        out: list[Suggestion] = []
        if not typed:
            return Suggestions(text, (), 0.0)
        seen: set[str] = set()
        if popular:
            matches = sorted(
                ((q, n) for q, n in popular.items() if q.startswith(typed) and q != typed),
                key=lambda p: (-p[1], p[0]),
            )
            for query, n in matches[: max(1, k // 2)]:
                out.append(Suggestion(query, "query", float(n)))
                seen.add(query)
        words = typed.split(" ")
        last = words[-1]
        previous = words[-2] if len(words) >= 2 else None
        # Complete the last two words as a title phrase ("navy sh" -> "navy shirt"), else the
        # last word alone among words that follow the previous one in some title.
        context = words[:-2] if len(words) >= 2 else []
        corrected = False
        found = self._complete(" ".join(words[-2:]), k)
        if not found and previous is not None:
            context = words[:-1]
            after = self._after(previous, last, k)
            found = self._agree(previous, after or self._words(last, _WIDE * k), after=bool(after))
        if not found:
            corrected = True
            fixed = self._correct(last)
            variants = [fixed] if fixed is not None else self._prefix_variants(last)
            if previous is not None:
                context = words[:-1]
                after = _merge(self._after(previous, v, k) for v in variants)
                found = after or _merge(self._words(v, _WIDE * k) for v in variants)
                found = self._agree(previous, found, after=bool(after))
            else:
                found = _merge(self._complete(v, k) for v in variants)
        shown = " ".join(text.split()).lower().split(" ")  # as typed, diacritics kept
        for phrase, n in found:
            suggestion = " ".join([*shown[: len(context)], phrase.lower()])
            key = fold(suggestion)
            if key in seen or key == typed:
                continue
            seen.add(key)
            out.append(Suggestion(suggestion, "catalogue", float(n), corrected))
            if len(out) >= k:
                break
        return Suggestions(text, tuple(out[:k]), (time.perf_counter() - started) * 1000.0)

    def _words(self, prefix: str, limit: int) -> list[tuple[str, int]]:
        """Single-word completions of ``prefix``."""
        return [(p, n) for p, n in self._complete(prefix, limit * 4) if " " not in p][:limit]

    def _after(self, previous: str, prefix: str, limit: int) -> list[tuple[str, int]]:
        """Completions of ``prefix`` that follow ``previous`` (or, for a Polish word, another
        of its forms: "krzesła" also as "krzesło") in titles, as the single word."""
        forms = [previous]
        word = self.lexicon.polish_word(previous)
        if word is not None:
            forms += [f for f in (word.singular, word.plural) if f and f != previous]
        found = []
        for form in forms:
            pairs = self._complete(f"{form} {prefix}", limit)
            found.append([(phrase.split(" ", 1)[1], n) for phrase, n in pairs if " " in phrase])
        return _merge(found)

    def _correct(self, word: str) -> str | None:
        """The most frequent catalogue word within the typo tolerance of ``word``, or of its
        prefixes (a misspelt word still being typed: "shrt" -> "shirt")."""
        edits = max_edits(word)
        if not edits or not word.isalpha():
            return None
        candidates = self.vocabulary.fuzzy_candidates(word, edits)
        if not candidates:
            return None
        best = max(candidates, key=lambda c: (-c.distance, c.df))
        return best.word

    def _prefix_variants(self, word: str) -> list[str]:
        """Prefixes one edit from a typed word that some phrase starts with, the first letter
        kept: swapped letters first ("sfo" -> "sof"), then a letter too many, one missing
        and one mistyped ("chi" -> "chai", "cha")."""
        if len(word) < 3 or not word.isalpha():
            return []
        swaps = [word[:i] + word[i + 1] + word[i] + word[i + 2 :] for i in range(1, len(word) - 1)]
        drops = [word[:i] + word[i + 1 :] for i in range(1, len(word))]
        adds = [word[:i] + c + word[i:] for i in range(1, len(word)) for c in _LETTERS]
        subs = [word[:i] + c + word[i + 1 :] for i in range(1, len(word)) for c in _LETTERS]
        candidates = list(
            dict.fromkeys(v for v in (*swaps, *drops, *adds, *subs) if v != word and len(v) >= 3)
        )
        if not candidates or not len(self._keys):
            return []
        width = self._keys.dtype.itemsize
        usable = [v for v in candidates if len(v.encode("utf-8")) < width]
        if not usable:
            return []
        encoded = np.array([v.encode("utf-8") for v in usable], dtype=self._keys.dtype)
        ends = np.array([v.encode("utf-8") + b"\xff" for v in usable], dtype=self._keys.dtype)
        start = np.searchsorted(self._keys, encoded, side="left")
        end = np.searchsorted(self._keys, ends, side="left")
        return [v for v, s, e in zip(usable, start, end, strict=True) if e > s]

    def _agree(
        self, previous: str, found: list[tuple[str, int]], *, after: bool = False
    ) -> list[tuple[str, int]]:
        """Single-word completions made to agree with the Polish word before them: adjectives
        take the gender and number of a noun ("krzesła" + "dębowy" -> "dębowe"); after an
        adjective only nouns it can describe stay, a noun of another gender in the plural where
        the adjective's form allows ("szare plec" -> "szare plecaki"; after "granatowa" no
        "krzesło", and no brand or town: "granatowa kowalski" is nothing a shopper types).

        Args:
            previous: The folded word before the completed one.
            found: (word, titles) completions.
            after: They follow ``previous`` in some title; otherwise they are words starting
                with the typed prefix anywhere, and after a Polish noun only adjectives stay.
        """
        lex = self.lexicon
        noun = lex.noun(previous)
        if noun is not None:
            gender: Gender = "pl" if noun[1] else noun[0]
            agreed: list[tuple[str, int]] = []
            for phrase, n in found:
                lemma = self._adjective_lemma(phrase)
                if lemma is not None:
                    agreed.append((agree(lemma, gender), n))
                elif after:
                    agreed.append((phrase, n))
            return _merge([agreed])
        lemma = lex.adjective(previous)
        if lemma is None:
            if any(lex.concepts[c].kind == "colour" for c in lex.english(previous)):
                # After an English colour, an English product ("navy sh" -> "navy shirt").
                return [
                    (phrase, n)
                    for phrase, n in found
                    if any(lex.concepts[c].is_product for c in lex.english(fold(phrase)))
                ]
            return found
        genders = {g for g in _GENDERS if fold(agree(lemma, g)) == previous}
        if not genders:  # an oblique form ("granatowej"): nothing to check against
            return found
        kept = []
        for phrase, n in found:
            other = lex.noun(fold(phrase))
            if other is None:
                continue
            if ("pl" if other[1] else other[0]) in genders:
                kept.append((phrase, n))
            elif "pl" in genders:  # "szare plec" -> "szare plecaki", the catalogue's "plecak"
                plural = self._plural(fold(phrase))
                if plural is not None:
                    kept.append((plural, n))
        return _merge([kept])

    def _plural(self, folded: str) -> str | None:
        """The nominative plural (with diacritics) of a Polish noun form of the lexicon."""
        word = self.lexicon.polish_word(folded)
        if word is None or not word.plural:
            return None
        return next((f for f in word.surface_forms if fold(f) == word.plural), None)

    def _adjective_lemma(self, phrase: str) -> str | None:
        """The lemma of a Polish adjective (the lexicon's, or by a common ending)."""
        if " " in phrase:
            return None
        lower = phrase.lower()
        lemma = self.lexicon.adjective(fold(lower))
        if lemma is not None:
            return lemma
        for endings in _ADJECTIVE_ENDINGS:
            for ending in endings:
                if lower.endswith(ending) and len(lower) > len(ending) + 2:
                    return lower[: -len(ending)] + endings[0]
        return None


def _merge(lists: Iterable[list[tuple[str, int]]]) -> list[tuple[str, int]]:
    """Phrases from several lists, each once (its highest count), in the lists' order."""
    best: dict[str, int] = {}
    for found in lists:
        for phrase, n in found:
            if n > best.get(phrase, -1):
                best[phrase] = n
    return list(best.items())


def save_suggestions(arrays: tuple[np.ndarray, np.ndarray, np.ndarray], path: Path) -> None:
    """Write a suggester's :attr:`Suggester.arrays` (a snapshot's ``suggestions.npz``)."""
    keys, display, counts = arrays
    with path.open("wb") as fh:
        np.savez(fh, keys=keys, display=display, counts=counts)


def load_suggestions(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Read what :func:`save_suggestions` wrote (byte strings and counts: no pickled objects).

    Raises:
        ValueError: the file is not such arrays (or a key is missing).
    """
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = (data["keys"], data["display"], data["counts"])
    except (KeyError, OSError, ValueError) as exc:
        raise ValueError(f"{path} does not hold a suggester's arrays: {exc}") from exc
    keys, display, counts = arrays
    if keys.dtype.kind != "S" or display.dtype.kind != "S" or counts.dtype.kind not in "iu":
        raise ValueError(f"{path} does not hold a suggester's arrays (unexpected types)")
    return arrays
