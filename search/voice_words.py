"""Catalogue words a heard word may be, matched the way its language sounds and inflects.

A recogniser writes Polish with or without diacritics (``zolta``), in another case or number
than the title (``krzesła`` for ``Krzesło``), or as a near sound (``koszura`` for ``koszula``).
:class:`CatalogueWords` keeps every title word in its written form (diacritics kept) and finds
the catalogue words a heard word may be, best first:

* the same word once folded (``zolta`` -> ``żółta``);
* the same word in another inflection: the same Stempel stem (Polish analyser,
  :mod:`search.analysis`) or, for words written without diacritics, which Stempel cannot stem,
  the same folded word less its inflectional ending (``krzesla`` and ``krzesło`` meet at
  ``krzesl``);
* a word that sounds alike: Polish spelling-by-sound keys (``rz``/``ż``, ``ch``/``h``, voiced and
  voiceless pairs) or, in English, metaphone, compared with the spelling.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping

import jellyfish
from rapidfuzz import process
from rapidfuzz.distance import Indel, Levenshtein

from search.analysis import fold, get_language, tokenize

# Polish inflectional endings of nouns and adjectives, folded, longest first: stripping one
# brings the cases, numbers and genders of a word to one key ("krzesla", "krzeslo" -> "krzesl";
# "zolta", "zolte", "zolty" -> "zolt").
_PL_ENDINGS = (
    "owego", "owemu", "owymi", "owych", "ami", "ach", "ego", "emu", "ymi", "ych", "imi", "ich",
    "owi", "om", "ow", "ia", "ie", "iu", "ii", "a", "e", "i", "o", "u", "y",
)  # fmt: skip
_MIN_STEM = 3

SAME_WORD = 1.0
"""Similarity of a heard word that folds to the catalogue word."""

SAME_STEM = 0.9
"""Similarity (at most) of a heard word that is another inflection of the catalogue word."""


def light_stem(folded: str) -> str:
    """A folded Polish word without its inflectional ending (at least three letters kept)."""
    for ending in _PL_ENDINGS:
        if folded.endswith(ending) and len(folded) - len(ending) >= _MIN_STEM:
            return folded[: -len(ending)]
    return folded


def sound_key(folded: str, language: str | None) -> str:
    """The spelling-by-sound key of a folded word (or run of words read as one): Polish
    rules for ``"pl"``, metaphone otherwise."""
    letters = re.sub(r"[^a-z]", "", folded)
    if not letters:
        return ""
    if language == "pl":
        return get_language("pl").sound_key(letters)
    return str(jellyfish.metaphone(letters))


class CatalogueWords:
    """The catalogue's title words in their written forms, with language-aware look-up.

    Args:
        forms: Folded word -> its most frequent written form (lower case, diacritics kept).
        counts: Folded word -> titles it occurs in (more frequent words win ties).
    """

    def __init__(self, forms: Mapping[str, str], counts: Mapping[str, int] | None = None) -> None:
        self.forms = dict(forms)
        self.counts = dict(counts or {})
        self._indexes: dict[str, _SoundIndex] = {}
        self._stems: dict[str, dict[str, list[str]]] = {}

    @classmethod
    def from_texts(cls, texts: Iterable[str]) -> CatalogueWords:
        """Collect the alphabetic words (three letters or more) of titles and brands."""
        written: dict[str, Counter[str]] = defaultdict(Counter)
        for text in texts:
            for token in tokenize(text):
                if token.surface.isalpha() and len(token.surface) >= _MIN_STEM:
                    written[token.folded][token.surface] += 1
        return cls(
            {folded: c.most_common(1)[0][0] for folded, c in written.items()},
            {folded: sum(c.values()) for folded, c in written.items()},
        )

    def __len__(self) -> int:
        return len(self.forms)

    def written(self, word: str) -> str:
        """The catalogue's written form of a word (the word itself when it has none)."""
        return self.forms.get(fold(word), word)

    def _stem_index(self, language: str) -> dict[str, list[str]]:
        """Stem -> folded words, by Stempel stem of the written form and by light stem."""
        index = self._stems.get(language)
        if index is None:
            stemmer = get_language(language)
            index = defaultdict(list)
            for folded, form in self.forms.items():
                for stem in {fold(stemmer.stem(form)), "~" + light_stem(folded)}:
                    index[stem].append(folded)
            self._stems[language] = index = dict(index)
        return index

    def _sound_index(self, language: str | None) -> _SoundIndex:
        key = language or ""
        index = self._indexes.get(key)
        if index is None:
            index = self._indexes[key] = _SoundIndex(self.forms, language)
        return index

    def snap(
        self, word: str, language: str | None, limit: int = 3, min_similarity: float = 0.5
    ) -> list[tuple[float, str]]:
        """Catalogue words ``word`` may be, best first, as ``(similarity, written form)``.

        Args:
            word: A heard word.
            language: Its language (``"pl"`` adds inflections and Polish sound keys).
            limit: At most this many.
            min_similarity: Weaker sound-alikes are left out.

        Returns:
            :data:`SAME_WORD` for the same folded word, up to :data:`SAME_STEM` for another
            inflection, less for sound-alikes.
        """
        folded = fold(word)
        found: dict[str, float] = {}
        if folded in self.forms:
            found[folded] = SAME_WORD
        if language == "pl" and folded.isalpha():
            stems = self._stem_index("pl")
            keys = {fold(get_language("pl").stem(word.lower())), "~" + light_stem(folded)}
            for key in keys:
                for other in stems.get(key, ()):
                    similarity = SAME_STEM * (
                        0.8 + 0.2 * Indel.normalized_similarity(folded, other)
                    )
                    found[other] = max(found.get(other, 0.0), similarity)
        for similarity, other in self._sound_index(language).near(folded, min_similarity):
            found[other] = max(found.get(other, 0.0), similarity)
        ranked = sorted(found.items(), key=lambda p: (-p[1], -self.counts.get(p[0], 0), p[0]))
        return [(round(sim, 4), self.forms[f]) for f, sim in ranked[:limit]]


class _SoundIndex:
    """Sound keys of the catalogue's words for one language, searched by edit distance."""

    def __init__(self, forms: Mapping[str, str], language: str | None) -> None:
        self.language = language
        self.words = list(forms)
        self.keys = [sound_key(w, language) for w in self.words]

    def near(self, folded: str, min_similarity: float) -> list[tuple[float, str]]:
        key = sound_key(folded, self.language)
        if len(key) < 2:
            return []
        out: list[tuple[float, str]] = []
        for _, key_similarity, i in process.extract(
            key, self.keys, scorer=Levenshtein.normalized_similarity, score_cutoff=0.5, limit=12
        ):
            other = self.words[i]
            similarity = 0.5 * key_similarity + 0.5 * Indel.normalized_similarity(folded, other)
            if similarity >= min_similarity and other != folded:
                out.append((min(similarity, SAME_STEM - 0.01), other))
        return out
