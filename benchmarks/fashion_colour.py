"""Colour extraction from product photos against the fashion set's ``baseColour`` labels.

Photo only: the extractor sees nothing but the picture. For every product with a photo and a
``baseColour`` in ``shared/data/fashion`` (4,958 of 4,961; or a seeded sample with ``--limit``):

* **family top-1 / top-2**: the label's colour family (the label looked up in :mod:`search.colour`)
  equals the family of the main extracted colour / of one of the two main colours;
* **exact top-1 / top-2**: the extracted colour's vocabulary entry is the label's entry, over
  labels the vocabulary holds with coordinates (``Multi`` and unknown labels are not comparable);
* **family, metallic as flat colour**: the same as family top-1/top-2, but a metallic label
  (Silver, Gold, Steel, ...) counts under the family of its nearest non-metallic colour
  (silver -> grey, gold -> yellow): a photo shows the hue of a metal, never the sheen, and
  :func:`search.colour.nearest` leaves metallic names out, so the strict metric can never credit
  them;
* per-family accuracy, a confusion table of families (rows: label, columns: main extracted
  colour), and milliseconds per photo (file read included).

Run ``python -m benchmarks.fashion_colour [--limit N]``; JSON goes to
``benchmarks/results/fashion_colour.json``.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import random
import statistics
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from benchmarks.common import results_dir, shared_dir
from indexer.colours import PhotoColourExtractor
from search.colour import Family, lookup, nearest

#: Family name used when a label has no vocabulary entry.
UNKNOWN = "?"


@dataclass(frozen=True, slots=True)
class Photo:
    """A labelled fashion photo.

    Attributes:
        product_id: The ``id`` column.
        path: The JPEG.
        label: ``baseColour`` as written.
        article_type: ``articleType``, for error analysis.
    """

    product_id: str
    path: Path
    label: str
    article_type: str


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the extractor said about one photo.

    Attributes:
        product_id: The product.
        label: ``baseColour``.
        label_name: The label's vocabulary name, or "" when the vocabulary lacks it.
        label_family: The label's family, or :data:`UNKNOWN`.
        flat_family: The label's family with a metallic label taken as its nearest flat colour.
        names: Extracted colour names, main first.
        families: Their families.
        shares: Their shares.
        product_pixels: Share of the frame taken by the product.
        ms: Milliseconds for this photo (read + extract).
        article_type: ``articleType``.
    """

    product_id: str
    label: str
    label_name: str
    label_family: str
    flat_family: str
    names: tuple[str, ...]
    families: tuple[str, ...]
    shares: tuple[float, ...]
    product_pixels: float
    ms: float
    article_type: str


def load_photos(shared: Path | None = None) -> list[Photo]:
    """Read the labelled photos of ``fashion/``.

    Args:
        shared: The shared folder; defaults to :func:`benchmarks.common.shared_dir`.

    Returns:
        Products that have a photo and a non-empty ``baseColour``, in file order.

    Raises:
        FileNotFoundError: When the data is missing.
    """
    root = (shared or shared_dir()) / "data" / "fashion"
    styles = root / "styles.csv.gz"
    if not styles.is_file():
        raise FileNotFoundError(f"no fashion data at {root} (set PRODUCTSEARCH_SHARED)")
    photos: list[Photo] = []
    with gzip.open(styles, "rt", encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            if row["image"] and row["baseColour"].strip():
                photos.append(
                    Photo(
                        row["id"],
                        root / row["image"],
                        row["baseColour"].strip(),
                        row["articleType"],
                    )
                )
    return photos


def _flat_family(label: str) -> str:
    """The label's family, a metallic label taken as the family of its nearest flat colour."""
    entry = lookup(label)
    if entry is None:
        return UNKNOWN
    if entry.family is Family.METALLIC:
        return str(nearest(entry.lab)[0].family)
    return str(entry.family)


def run(photos: Sequence[Photo], extractor: PhotoColourExtractor) -> list[Outcome]:
    """Extract colours from every photo.

    Args:
        photos: The photos.
        extractor: The extractor under test.

    Returns:
        One outcome per photo, in order.
    """
    outcomes: list[Outcome] = []
    for photo in photos:
        entry = lookup(photo.label)
        start = time.perf_counter()
        result = extractor.extract_path(photo.path)
        ms = (time.perf_counter() - start) * 1000.0
        outcomes.append(
            Outcome(
                product_id=photo.product_id,
                label=photo.label,
                label_name=entry.name if entry is not None else "",
                label_family=str(entry.family) if entry is not None else UNKNOWN,
                flat_family=_flat_family(photo.label),
                names=tuple(c.name for c in result.colours),
                families=tuple(c.family for c in result.colours),
                shares=tuple(c.share for c in result.colours),
                product_pixels=result.product_pixels,
                ms=ms,
                article_type=photo.article_type,
            )
        )
    return outcomes


def _rate(hits: int, total: int) -> float:
    return round(hits / total, 4) if total else 0.0


def summarise(outcomes: Sequence[Outcome]) -> dict[str, object]:
    """Accuracies, per-family and per-label breakdowns, confusion table and timing.

    Args:
        outcomes: From :func:`run`.

    Returns:
        A JSON-ready summary.
    """
    fam = [o for o in outcomes if o.label_family != UNKNOWN]
    fam1 = sum(o.families[:1] == (o.label_family,) for o in fam)
    fam2 = sum(o.label_family in o.families[:2] for o in fam)
    flat1 = sum(o.families[:1] == (o.flat_family,) for o in fam)
    flat2 = sum(o.flat_family in o.families[:2] for o in fam)
    # Exact names are comparable where the label is a concrete vocabulary colour.
    exact = [o for o in fam if o.label_family != "multi" and o.label_name]
    ex1 = sum(o.names[:1] == (o.label_name,) for o in exact)
    ex2 = sum(o.label_name in o.names[:2] for o in exact)

    per_family: dict[str, dict[str, float | int]] = {}
    groups: dict[str, list[Outcome]] = defaultdict(list)
    for o in fam:
        groups[o.label_family].append(o)
    for family, group in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        per_family[family] = {
            "n": len(group),
            "top1": _rate(sum(o.families[:1] == (family,) for o in group), len(group)),
            "top2": _rate(sum(family in o.families[:2] for o in group), len(group)),
        }
    per_label: dict[str, dict[str, float | int | str]] = {}
    labels: dict[str, list[Outcome]] = defaultdict(list)
    for o in outcomes:
        labels[o.label].append(o)
    for label, group in sorted(labels.items(), key=lambda kv: -len(kv[1])):
        per_label[label] = {
            "n": len(group),
            "family": group[0].label_family,
            "family_top1": _rate(
                sum(o.families[:1] == (o.label_family,) for o in group), len(group)
            ),
            "exact_top1": _rate(sum(o.names[:1] == (o.label_name,) for o in group), len(group)),
            "most_common": Counter(o.names[0] if o.names else "" for o in group).most_common(1)[0][
                0
            ],
        }
    confusion: dict[str, dict[str, int]] = {}
    for o in fam:
        row = confusion.setdefault(o.label_family, {})
        predicted = o.families[0] if o.families else "none"
        row[predicted] = row.get(predicted, 0) + 1
    times = sorted(o.ms for o in outcomes)
    return {
        "photos": len(outcomes),
        "family_comparable": len(fam),
        "family_top1": _rate(fam1, len(fam)),
        "family_top2": _rate(fam2, len(fam)),
        "family_flat_metallic_top1": _rate(flat1, len(fam)),
        "family_flat_metallic_top2": _rate(flat2, len(fam)),
        "exact_comparable": len(exact),
        "exact_top1": _rate(ex1, len(exact)),
        "exact_top2": _rate(ex2, len(exact)),
        "ms_mean": round(statistics.fmean(times), 3) if times else 0.0,
        "ms_p50": round(times[len(times) // 2], 3) if times else 0.0,
        "ms_p99": round(times[min(len(times) - 1, int(0.99 * len(times)))], 3) if times else 0.0,
        "unknown_labels": sorted({o.label for o in outcomes if o.label_family == UNKNOWN}),
        "per_family": per_family,
        "per_label": per_label,
        "confusion": confusion,
    }


def print_summary(summary: dict[str, object]) -> None:
    """Print the headline table, per-family accuracy and the family confusion table.

    Args:
        summary: From :func:`summarise`.
    """
    print(f"photos: {summary['photos']}  (family-comparable {summary['family_comparable']},")
    print(f"         exact-comparable {summary['exact_comparable']})")
    print("| metric | top-1 | top-2 |")
    print("|---|---|---|")
    print(f"| family | {summary['family_top1']:.3f} | {summary['family_top2']:.3f} |")
    print(
        f"| family, metallic as flat colour | {summary['family_flat_metallic_top1']:.3f} "
        f"| {summary['family_flat_metallic_top2']:.3f} |"
    )
    print(f"| exact label | {summary['exact_top1']:.3f} | {summary['exact_top2']:.3f} |")
    print(
        f"ms/photo: mean {summary['ms_mean']:.2f}, p50 {summary['ms_p50']:.2f}, "
        f"p99 {summary['ms_p99']:.2f}"
    )
    per_family = summary["per_family"]
    assert isinstance(per_family, dict)
    print("\n| family | n | top-1 | top-2 |")
    print("|---|---|---|---|")
    for family, row in per_family.items():
        print(f"| {family} | {row['n']} | {row['top1']:.3f} | {row['top2']:.3f} |")
    confusion = summary["confusion"]
    assert isinstance(confusion, dict)
    columns = sorted({c for row in confusion.values() for c in row})
    print("\nconfusion (rows: label family, columns: main extracted family)")
    print("| label \\ photo | " + " | ".join(columns) + " |")
    print("|---|" + "---|" * len(columns))
    for family in per_family:
        row = confusion.get(family, {})
        print(f"| {family} | " + " | ".join(str(row.get(c, 0)) for c in columns) + " |")


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: run the benchmark, print the tables, write the JSON.

    Args:
        argv: Arguments (default: ``sys.argv[1:]``).
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--limit", type=int, default=None, help="seeded sample of N photos")
    parser.add_argument("--seed", type=int, default=0, help="sample seed (with --limit)")
    parser.add_argument("--out", type=Path, default=None, help="JSON path")
    parser.add_argument("--details", type=Path, default=None, help="also write per-photo JSONL")
    args = parser.parse_args(argv)
    if args.limit is not None and args.limit < 1:
        parser.error("--limit must be at least 1")

    photos = load_photos()
    if args.limit is not None and args.limit < len(photos):
        photos = random.Random(args.seed).sample(photos, args.limit)
    extractor = PhotoColourExtractor()
    extractor.extract_path(photos[0].path)  # warm-up: imports, tables
    outcomes = run(photos, extractor)
    summary = summarise(outcomes)
    summary["settings"] = {
        "max_colours": extractor.max_colours,
        "min_share": extractor.min_share,
        "size": extractor.size,
        "seed": extractor.seed,
        "limit": args.limit,
        "sample_seed": args.seed,
    }
    print_summary(summary)
    out = args.out or results_dir() / "fashion_colour.json"
    out.write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"\nwrote {out}")
    if args.details is not None:
        with args.details.open("w", encoding="utf-8") as f:
            for o in outcomes:
                f.write(json.dumps(asdict(o), ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
