"""As-you-type suggestions in English and Polish: latency (issue 6: p99 <= 10 ms) and what the
shopper gets (issue 18, part 3).

Every query is typed letter by letter; each prefix is one suggestion request, timed in-process
(k = 8). Per language and catalogue:

- ``p50``/``p99`` latency and the share of prefixes with no suggestion (``empty``);
- ``complete@8``: of the prefixes that end inside a word (two letters of it or more), the share
  whose suggestions hold the query up to the end of that word (``granatowa ko`` -> a suggestion
  starting ``granatowa koszula``), diacritics ignored;
- ``typo@8``: the first three letters of the query's first word (of four letters or more) with
  one slip that keeps the first letter (the 2nd and 3rd swapped, or the 3rd a keyboard
  neighbour: ``sfo`` for ``sofa``); the share whose suggestions hold a phrase starting with that
  word.

Sets: English, the Home Depot dev queries on its titles (``--index``, the latency set of issue
6) and the fashion set's English queries on its English titles; Polish, the fashion set's Polish
queries (:mod:`benchmarks.bilingual`) on its Polish titles and on the English titles (a shop
analysed in Polish). The fashion snapshots are the ones ``python -m benchmarks.bilingual``
builds (``--fashion-index``).

Run: ``python -m benchmarks.suggest``; writes ``benchmarks/results/suggest.json``.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections.abc import Sequence
from pathlib import Path

from api.service import open_snapshot
from benchmarks.common import load_home_depot, percentile, results_dir, shared_dir
from search.analysis import fold

#: Neighbours on a QWERTY keyboard (the slips of ``typo@8``).
_KEYS = ("qwertyuiop", "asdfghjkl", "zxcvbnm")


def _neighbours(letter: str) -> str:
    for keys in _KEYS:
        col = keys.find(letter)
        if col >= 0:
            near = keys[max(col - 1, 0) : col] + keys[col + 1 : col + 2]
            return near or keys
    return ""


def typo_prefix(word: str, rng: random.Random) -> str | None:
    """The first three letters of ``word`` with one slip (first letter kept), or None."""
    head = fold(word)[:3]
    if len(fold(word)) < 4 or not head.isalpha():
        return None
    if rng.random() < 0.5 and head[1] != head[2]:
        return head[0] + head[2] + head[1]
    near = _neighbours(head[2])
    return head[:2] + rng.choice(near) if near else None


def measure(suggester: object, queries: Sequence[str], popular: dict[str, int] | None) -> dict:
    """Type every query; latency, empty share, complete@8 and typo@8."""
    suggest = suggester.suggest  # type: ignore[attr-defined]
    timings: list[float] = []
    empty = 0
    hits = attempts = 0
    for text in queries:
        for end in range(1, len(text) + 1):
            typed = text[:end]
            t0 = time.perf_counter()
            found = suggest(typed, 8, popular=popular)
            timings.append((time.perf_counter() - t0) * 1000)
            empty += not found.suggestions
            word_start = typed.rfind(" ") + 1
            if end - word_start >= 2 and end < len(text) and text[end] != " ":
                stop = text.find(" ", end)
                target = fold(text[: stop if stop >= 0 else len(text)])
                attempts += 1
                hits += any(fold(s.text).startswith(target) for s in found.suggestions)
    rng = random.Random(0)
    typo_hits = typo_attempts = 0
    for text in queries:
        first = text.split(" ")[0]
        slip = typo_prefix(first, rng)
        if slip is None or fold(first).startswith(slip):
            continue
        typo_attempts += 1
        found = suggest(slip, 8, popular=popular)
        typo_hits += any(fold(s.text).startswith(fold(first)) for s in found.suggestions)
    return {
        "queries": len(queries),
        "requests": len(timings),
        "p50_ms": round(percentile(timings, 50), 3),
        "p99_ms": round(percentile(timings, 99), 3),
        "max_ms": round(max(timings), 3) if timings else 0.0,
        "empty_share": round(empty / max(len(timings), 1), 3),
        "complete_at_8": round(hits / max(attempts, 1), 3),
        "typo_at_8": round(typo_hits / max(typo_attempts, 1), 3),
        "typo_prefixes": typo_attempts,
    }


def main(argv: list[str] | None = None) -> None:
    """Run the sets, print a table and write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", type=Path, default=Path("var/bench/hd-lexical"))
    parser.add_argument(
        "--fashion-index",
        type=Path,
        default=Path("var/bench/bilingual"),
        help="prefix of the snapshots benchmarks.bilingual builds (-en-none, -pl-none)",
    )
    parser.add_argument(
        "--queries", type=int, default=500, help="dev queries typed (seeded sample)"
    )
    parser.add_argument("--out", type=Path, default=results_dir() / "suggest.json")
    args = parser.parse_args(argv)

    from benchmarks.bilingual import load_rows, make_queries

    hd = load_home_depot()
    texts = random.Random(0).sample(sorted(hd.queries.values()), args.queries)
    popular = {q.lower(): 1 + i % 7 for i, q in enumerate(texts)}
    rows = load_rows(shared_dir() / "data" / "fashion")
    fashion = make_queries(rows, 20)
    english = [q.english for q in fashion]
    polish = [q.polish for q in fashion]
    sets = [
        ("en", "Home Depot titles (popular queries on)", args.index, texts, popular),
        ("en", "fashion, English titles", _fashion(args.fashion_index, "en"), english, None),
        ("pl", "fashion, Polish titles", _fashion(args.fashion_index, "pl"), polish, None),
        ("pl", "fashion, English titles", _fashion(args.fashion_index, "en"), polish, None),
    ]
    result: dict[str, object] = {}
    print(
        f"{'lang':<5} {'catalogue':<38} {'phrases':>8} {'build s':>8} {'p50 ms':>7} {'p99 ms':>7} "
        f"{'empty':>6} {'complete@8':>11} {'typo@8':>7}"
    )
    for lang, name, index, queries, pop in sets:
        engine = open_snapshot(index, use_semantic=False, ranker="none")
        started = time.perf_counter()
        suggester = engine.suggester
        build_s = time.perf_counter() - started
        row = {"phrases": len(suggester), "build_s": round(build_s, 2)}
        row.update(measure(suggester, queries, pop))
        result[f"{lang}: {name}"] = row
        print(
            f"{lang:<5} {name:<38} {row['phrases']:>8} {row['build_s']:>8} {row['p50_ms']:>7} "
            f"{row['p99_ms']:>7} {row['empty_share']:>6} {row['complete_at_8']:>11} "
            f"{row['typo_at_8']:>7}"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")


def _fashion(prefix: Path, lang: str) -> Path:
    return prefix.with_name(f"{prefix.name}-{lang}-none")


if __name__ == "__main__":
    main()
