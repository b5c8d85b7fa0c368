"""As-you-type query suggestions: popular past queries and catalogue phrases, typo tolerant.

Catalogue phrases are the words and word pairs of product titles (a pair must occur in at least
two titles), each with the number of titles holding it. A prefix is completed by binary search over
the sorted phrases; when nothing starts with the typed text, its last word is corrected against
the catalogue vocabulary (edit distance) and completion is tried again.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from search.analysis import Analyzer, fold, normalise_query, tokenize
from search.index.vocabulary import Vocabulary
from search.understand import max_edits

SuggestionKind = Literal["query", "catalogue"]


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


class Suggester:
    """Completes typed prefixes from catalogue phrases and popular queries.

    Args:
        phrases: Folded phrase -> (display form, titles holding it).
        vocabulary: The snapshot vocabulary (typo correction of the last word).
        analyzer: The snapshot analyser (stopwords).
    """

    def __init__(
        self,
        phrases: Mapping[str, tuple[str, int]],
        vocabulary: Vocabulary,
        analyzer: Analyzer,
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

    @classmethod
    def from_titles(
        cls, titles: Sequence[str], vocabulary: Vocabulary, analyzer: Analyzer
    ) -> Suggester:
        """Collect title words and word pairs.

        Args:
            titles: Product titles.
            vocabulary: The snapshot vocabulary.
            analyzer: The snapshot analyser.
        """
        counts: Counter[str] = Counter()
        display: dict[str, Counter[str]] = {}
        for title in titles:
            words = [
                (t.folded, t.surface)
                for t in tokenize(title)
                if not t.derived and not t.is_unit and len(t.folded) > 1
            ]
            seen: dict[str, str] = {}
            for i, (key, surface) in enumerate(words):
                if not analyzer.is_stopword(key) and not key.isdigit():
                    seen.setdefault(key, surface)
                if i + 1 < len(words):
                    nxt_key, nxt_surface = words[i + 1]
                    if analyzer.is_stopword(key) or analyzer.is_stopword(nxt_key):
                        continue
                    seen.setdefault(f"{key} {nxt_key}", f"{surface} {nxt_surface}")
            for key, surface in seen.items():
                counts[key] += 1
                display.setdefault(key, Counter())[surface] += 1
        phrases = {
            key: (display[key].most_common(1)[0][0], n)
            for key, n in counts.items()
            if " " not in key or n >= 2
        }
        return cls(phrases, vocabulary, analyzer)

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
        # Complete the last two words as a title phrase ("navy sh" -> "navy shirt"), else the
        # last word alone among words that follow the previous one in some title.
        context = words[:-2] if len(words) >= 2 else []
        corrected = False
        found = self._complete(" ".join(words[-2:]), k)
        if not found and len(words) >= 2:
            context = words[:-1]
            found = self._after(words[-2], words[-1], k) or self._words(words[-1], k)
        if not found:
            fixed = self._correct(words[-1])
            if fixed is not None:
                corrected = True
                if len(words) >= 2:
                    context = words[:-1]
                    found = self._after(words[-2], fixed, k) or self._words(fixed, k)
                else:
                    found = self._complete(fixed, k)
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
        """Completions of ``prefix`` that follow ``previous`` in titles, as the single word."""
        pairs = self._complete(f"{previous} {prefix}", limit)
        return [(phrase.split(" ", 1)[1], n) for phrase, n in pairs if " " in phrase]

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
