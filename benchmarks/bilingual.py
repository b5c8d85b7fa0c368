"""Cross-language search (issue 18, part 1): Polish queries on English titles and back.

Two catalogues of the fashion set's products (``shared/data/fashion``), built with the
project's own indexer: the English one as the shop titles them (``productDisplayName``, the
category path and gender/usage/season attributes; the colour label is not indexed) and a
Polish one written from the labels by :mod:`benchmarks.polish_fashion` ("Granatowa koszula męska
bawełniana Turtle"). Each query exists in both languages:

- colour + type: ``navy blue shirts`` / ``granatowa koszula`` (every pair with at least
  ``--min-pairs`` products of both catalogues);
- use + type: ``sports tshirts`` / ``sportowe koszulki``;
- material + type (the material the English title names): ``leather belts`` / ``skórzany
  pasek``.

Polish queries are written in the singular or the plural (a third of them), noun last, the
adjective agreeing. A hit is relevant when it has the query's article type and its colour
label, usage label or title material. precision@10 is measured for the queries in the
catalogue's language and in the other language, in the same run, with the Polish-English
lexicon (the default) and without it (``translate=False``). Floors: Polish queries on the English
catalogue reach 0.85 x the English queries' precision there, and English queries on the
Polish catalogue 0.85 x the Polish queries'.

Run: ``python -m benchmarks.bilingual [--embedder none|minilm] [--rebuild]``; writes
``benchmarks/results/bilingual.json``.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import statistics
import time
import zlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from api.service import open_snapshot
from benchmarks.common import percentile, results_dir, shared_dir
from benchmarks.polish_fashion import (
    ARTICLES,
    COLOURS,
    MATERIALS,
    PLURALS,
    USES,
    FashionRow,
    form,
    material_of,
    polish_product,
)
from indexer.build import BuildConfig, build_snapshot
from search.engine import EngineConfig, SearchEngine
from search.types import Product, SearchRequest
from search.understand import UnderstandConfig

#: Ratio floors of the issue: other-language precision over same-language precision.
FLOOR = 0.85


@dataclass(frozen=True, slots=True)
class Query:
    """One query in both languages and what makes a hit relevant."""

    kind: str
    english: str
    polish: str
    article: str
    colour: str | None = None
    usage: str | None = None
    material: str | None = None

    def relevant(self, row: FashionRow) -> bool:
        """Whether a product answers the query."""
        return (
            row.article == self.article
            and (self.colour is None or row.colour == self.colour)
            and (self.usage is None or row.usage == self.usage)
            and (self.material is None or material_of(row.title) == self.material)
        )


def load_rows(data: Path) -> list[FashionRow]:
    """The labelled products of the fashion set that have a title and an article type."""
    rows = []
    with gzip.open(data / "styles.csv.gz", "rt", encoding="utf-8") as fh:
        for r in csv.DictReader(fh):
            title = (r["productDisplayName"] or "").strip()
            if title and r["articleType"]:
                rows.append(
                    FashionRow(
                        r["id"],
                        r["gender"],
                        r["masterCategory"],
                        r["subCategory"],
                        r["articleType"],
                        r["baseColour"],
                        r["usage"],
                        title,
                    )
                )
    return rows


def english_product(row: FashionRow) -> Product:
    """The product as the fashion set titles it (as ``benchmarks.fashion_search`` indexes it,
    without the photo)."""
    attributes = {
        name: (value,) for name, value in (("gender", row.gender), ("usage", row.usage)) if value
    }
    return Product(
        id=row.id,
        title=row.title,
        categories=((row.master, row.sub, row.article),),
        attributes=attributes,
        lang="en",
    )


def _polish_noun(article: str, plural: bool) -> tuple[str, str]:
    """(noun phrase, gender for agreement) of an article type, in the number asked."""
    noun, gender, _ = ARTICLES[article]
    if gender == "pl" or not plural:
        return noun, gender
    return PLURALS[noun], "pl"


def make_queries(rows: Sequence[FashionRow], min_pairs: int) -> list[Query]:
    """Colour, use and material queries for every pair with ``min_pairs`` products that the
    Polish catalogue holds too."""
    kept = [r for r in rows if polish_product(r) is not None]
    queries: list[Query] = []

    def polish(adjective: tuple[str, str, str], article: str, english: str) -> str:
        plural = zlib.crc32(english.encode()) % 3 == 0
        noun, gender = _polish_noun(article, plural)
        return f"{form(adjective, gender)} {noun}"

    pairs = Counter((r.article, r.colour) for r in kept)
    for (article, colour), n in sorted(pairs.items()):
        if n >= min_pairs:
            english = f"{colour.lower()} {article.lower()}"
            text = polish(COLOURS[colour], article, english)
            queries.append(Query("colour+type", english, text, article, colour=colour))
    uses = Counter((r.article, r.usage) for r in kept if r.usage in USES and r.usage != "Casual")
    for (article, usage), n in sorted(uses.items()):
        if n >= min_pairs:
            english = f"{usage.lower()} {article.lower()}"
            text = polish(USES[usage], article, english)
            queries.append(Query("use+type", english, text, article, usage=usage))
    materials = Counter((r.article, material_of(r.title)) for r in kept)
    for (article, material), n in sorted(
        materials.items(), key=lambda kv: (kv[0][0], kv[0][1] or "")
    ):
        if material is not None and n >= min_pairs:
            english = f"{material} {article.lower()}"
            text = polish(MATERIALS[material], article, english)
            queries.append(Query("material+type", english, text, article, material=material))
    return queries


def precision(
    engines: Sequence[SearchEngine],
    texts: Sequence[str],
    queries: Sequence[Query],
    rows: dict[str, FashionRow],
) -> tuple[list[list[float]], list[list[float]], list[list[float]]]:
    """Per engine and query: precision@10, search time and query-understanding time (ms).

    The engines take turns on each query (in alternating order), so a machine whose load
    drifts during the run slows them alike.
    """
    p10: list[list[float]] = [[] for _ in engines]
    search_ms: list[list[float]] = [[] for _ in engines]
    understand_ms: list[list[float]] = [[] for _ in engines]
    for n, (text, query) in enumerate(zip(texts, queries, strict=True)):
        order = list(range(len(engines)))
        if n % 2:
            order.reverse()
        for e in order:
            engine = engines[e]
            request = SearchRequest(text=text, k=10, as_you_type=False)
            started = time.perf_counter()
            engine.understander.understand(request)
            understood = time.perf_counter()
            ids = [h.product.id for h in engine.search(request).hits]
            done = time.perf_counter()
            understand_ms[e].append((understood - started) * 1000)
            search_ms[e].append((done - understood) * 1000)
            p10[e].append(sum(1 for i in ids if query.relevant(rows[i])) / 10)
    return p10, search_ms, understand_ms


def build(
    products: Sequence[Product], out: Path, languages: tuple[str, ...], embedder: str
) -> float:
    """Build a snapshot with the project's indexer; returns the seconds it took."""
    started = time.perf_counter()
    config = BuildConfig(
        languages=languages,
        embedder=embedder,
        overwrite=True,
        photo_colours=False,
        image_embedder="none",
    )
    build_snapshot(products, out, config=config)
    return time.perf_counter() - started


def main(argv: Sequence[str] | None = None) -> int:
    """Build both catalogues (or reuse them), run every query both ways, print and write."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=shared_dir() / "data" / "fashion")
    parser.add_argument("--index", type=Path, default=Path("var/bench/bilingual"))
    parser.add_argument("--embedder", default="none", help="none (lexical) or minilm (hybrid)")
    parser.add_argument("--rebuild", action="store_true")
    parser.add_argument("--min-pairs", type=int, default=20)
    parser.add_argument("--out", type=Path, default=results_dir() / "bilingual.json")
    args = parser.parse_args(argv)

    rows = load_rows(args.data)
    by_id = {r.id: r for r in rows}
    english = [english_product(r) for r in rows]
    polish = [p for p in (polish_product(r) for r in rows) if p is not None]
    queries = make_queries(rows, args.min_pairs)
    report: dict[str, object] = {
        "embedder": args.embedder,
        "products": {"en": len(english), "pl": len(polish)},
        "queries": len(queries),
        "kinds": dict(Counter(q.kind for q in queries)),
        "floor": FLOOR,
    }
    catalogues = {
        "en": (english, ("en", "pl")),
        "pl": (polish, ("pl", "en")),
    }
    results: dict[str, dict[str, object]] = {}
    for lang, (products, languages) in catalogues.items():
        folder = args.index.with_name(f"{args.index.name}-{lang}-{args.embedder}")
        if args.rebuild or not (folder / "manifest.json").is_file():
            print(
                f"building the {lang} catalogue ({len(products)} products) in {folder}", flush=True
            )
            report[f"build_s_{lang}"] = round(build(products, folder, languages, args.embedder), 1)
        engines = [
            open_snapshot(
                folder,
                use_semantic=args.embedder != "none",
                config=EngineConfig(understand=UnderstandConfig(translate=translate)),
            )
            for translate in (True, False)
        ]
        for engine in engines:  # warm: caches, the Polish stemmer's tables, concepts' terms
            for q in queries[:50]:
                engine.search_ids(q.english, 10)
                engine.search_ids(q.polish, 10)
        own = [q.english if lang == "en" else q.polish for q in queries]
        other = [q.polish if lang == "en" else q.english for q in queries]
        own_runs = precision(engines, own, queries, by_id)
        other_runs = precision(engines, other, queries, by_id)
        for e, label in enumerate(("lexicon", "no lexicon")):
            p_own, lat_own, und_own = (run[e] for run in own_runs)
            p_other, lat_other, und_other = (run[e] for run in other_runs)
            results[f"{lang} catalogue, {label}"] = {
                "own_p10": statistics.fmean(p_own),
                "other_p10": statistics.fmean(p_other),
                "ratio": statistics.fmean(p_other) / max(statistics.fmean(p_own), 1e-9),
                "p50_ms": {"own": percentile(lat_own, 50), "other": percentile(lat_other, 50)},
                "p99_ms": {"own": percentile(lat_own, 99), "other": percentile(lat_other, 99)},
                "understand_p50_ms": {
                    "own": percentile(und_own, 50),
                    "other": percentile(und_other, 50),
                },
                "by_kind": {
                    kind: {
                        "n": sum(1 for q in queries if q.kind == kind),
                        "own_p10": statistics.fmean(
                            p for p, q in zip(p_own, queries, strict=True) if q.kind == kind
                        ),
                        "other_p10": statistics.fmean(
                            p for p, q in zip(p_other, queries, strict=True) if q.kind == kind
                        ),
                    }
                    for kind in sorted({q.kind for q in queries})
                },
                "weakest_other": sorted(
                    ((p, t) for p, t in zip(p_other, other, strict=True)), key=lambda x: x[0]
                )[:10],
            }
        del engines
    report["results"] = results

    print(
        f"\n{len(queries)} queries in both languages ({report['kinds']}); "
        f"{len(english)} English-titled and {len(polish)} Polish-titled products; "
        f"embedder {args.embedder}"
    )
    header = (
        f"{'catalogue':<26} {'own-language P@10':>18} {'other-language P@10':>20} "
        f"{'ratio':>6} {'floor':>8}  {'search p50 own / other':>22}  {'understand p50':>15}"
    )
    print(header)
    print("-" * len(header))
    for name, row in results.items():
        ratio = float(row["ratio"])  # type: ignore[arg-type]
        flag = "met" if ratio >= FLOOR else "NOT met"
        lat, und = row["p50_ms"], row["understand_p50_ms"]
        assert isinstance(lat, dict) and isinstance(und, dict)
        print(
            f"{name:<26} {float(row['own_p10']):>18.3f} {float(row['other_p10']):>20.3f} "  # type: ignore[arg-type]
            f"{ratio:>6.3f} {flag if 'no lexicon' not in name else '':>8}  "
            f"{lat['own']:>10.2f} / {lat['other']:<9.2f}  {und['own']:>6.3f} / {und['other']:.3f}"
        )
    for name, row in results.items():
        by_kind = row["by_kind"]
        assert isinstance(by_kind, dict)
        print(
            f"  {name}: "
            + "; ".join(
                f"{kind} ({v['n']}) {v['own_p10']:.3f} / {v['other_p10']:.3f}"
                for kind, v in by_kind.items()
            )
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, ensure_ascii=False))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
