"""Train the packaged learned-ranking model on the Home Depot relevance judgements.

    python -m benchmarks.train_ranker --index var/bench/hd-minilm --out models/rankers/hybrid.txt
    python -m benchmarks.train_ranker --index var/bench/hd-lexical --out models/rankers/lexical.txt
    python scripts/export_ranker_onnx.py models/rankers/hybrid.txt models/rankers/lexical.txt

(the service scores the packaged models from their ONNX conversions; a test fails while an
``.onnx`` file is older than its ``.txt``).

The dev queries are split by a hash of their id: 70% train the model, 30% are held out. The
script prints nDCG@10 of fusion alone and with the model on the held-out part for queries as
written, with a keyboard typo and spelled by sound (training uses all three versions of the
training queries, so the model learns what corrected matches are worth). The benchmarks report
the held-out part separately: those queries never touched the model.

Labels are the graded judgements mapped to 0..4 (``round((grade - 1) * 2)``); unjudged
candidates count as 0, the same convention as the nDCG the benchmarks compute.
"""

from __future__ import annotations

import argparse
import json
import time
import zlib
from pathlib import Path

import numpy as np

from api.service import open_snapshot
from benchmarks.common import evaluate, load_home_depot, make_query_sets
from search.engine import SearchEngine
from search.rank.features import FEATURE_NAMES
from search.types import SearchRequest

TRAIN_SHARE = 7  # of 10 hash buckets


def is_training_query(query_id: str) -> bool:
    """True for the 70% of dev queries the packaged model was trained on."""
    return zlib.crc32(query_id.encode()) % 10 < TRAIN_SHARE


def _label(grade: float | None) -> int:
    return 0 if grade is None else round((grade - 1.0) * 2.0)


def collect(
    engine: SearchEngine, texts: dict[str, str], depth: int
) -> dict[str, tuple[list[str], np.ndarray]]:
    """Fused candidates (ids) and their features for each query."""
    out = {}
    extractor = engine.ranker.extractor if engine.ranker is not None else None
    if extractor is None:
        from search.rank.features import FeatureExtractor

        vectors = engine.vector_index.vectors if engine.vector_index is not None else None
        extractor = FeatureExtractor(engine.lexical, vectors)
    for qid, text in texts.items():
        found = engine.candidates(SearchRequest(text=text, as_you_type=False))
        head = found.fused[:depth]
        features = extractor.extract(found.query, head, found.runs, found.query.vector)
        out[qid] = ([engine.store.products[h.doc].id for h in head], features)
    return out


def main(argv: list[str] | None = None) -> None:
    """Collect features, train LambdaMART, report held-out metrics, write the model."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--index", type=Path, required=True, help="Home Depot snapshot folder")
    parser.add_argument("--out", type=Path, required=True, help="model file to write")
    parser.add_argument("--depth", type=int, default=100, help="candidates re-ranked per query")
    parser.add_argument("--trees", type=int, default=300)
    parser.add_argument(
        "--limit-queries", type=int, default=0, help="use only N queries (smoke runs)"
    )
    args = parser.parse_args(argv)

    import lightgbm as lgb

    hd = load_home_depot()
    qids = sorted(q for q in hd.queries if q in hd.qrels)
    if args.limit_queries:
        qids = qids[: args.limit_queries]
    sets = make_query_sets({q: hd.queries[q] for q in qids})
    engine = open_snapshot(args.index, ranker="none")
    print(f"snapshot {args.index}: {len(engine)} products, retrievers {list(engine.retrievers)}")
    data: dict[str, dict[str, tuple[list[str], np.ndarray]]] = {}
    for name, texts in sets.items():
        started = time.perf_counter()
        data[name] = collect(engine, texts, args.depth)
        print(f"features for {name}: {time.perf_counter() - started:.0f} s", flush=True)

    rows, labels, groups = [], [], []
    for name in sets:
        for qid, (ids, features) in data[name].items():
            if is_training_query(qid) and ids:
                rows.append(features)
                labels.append([_label(hd.qrels[qid].get(pid)) for pid in ids])
                groups.append(len(ids))
    model = lgb.LGBMRanker(
        objective="lambdarank",
        n_estimators=args.trees,
        learning_rate=0.05,
        num_leaves=31,
        min_child_samples=50,
        subsample=0.8,
        subsample_freq=1,
        colsample_bytree=0.8,
        lambdarank_truncation_level=20,
        verbose=-1,
    )
    model.fit(
        np.vstack(rows), np.concatenate(labels), group=groups, feature_name=list(FEATURE_NAMES)
    )

    report: dict[str, dict[str, float]] = {}
    for name in sets:
        fused, learned = {}, {}
        for qid, (ids, features) in data[name].items():
            if is_training_query(qid):
                continue
            fused[qid] = ids
            scores = np.asarray(model.booster_.predict(features)) if ids else np.zeros(0)
            order = np.argsort(-scores, kind="stable")
            learned[qid] = [ids[i] for i in order]
        before, after = evaluate(fused, hd.qrels), evaluate(learned, hd.qrels)
        report[name] = {
            "fusion": before.ndcg_at_10,
            "learned": after.ndcg_at_10,
            "queries": before.queries,
        }
        print(
            f"held-out {name:10s} nDCG@10 fusion {before.ndcg_at_10:.4f} -> learned {after.ndcg_at_10:.4f} ({before.queries} queries)"
        )
    gains = sorted(
        zip(model.booster_.feature_importance("gain"), FEATURE_NAMES, strict=True), reverse=True
    )
    print("feature gain:", ", ".join(f"{n} {g:.0f}" for g, n in gains))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    model.booster_.save_model(str(args.out))
    args.out.with_suffix(".json").write_text(
        json.dumps(
            {
                "snapshot": str(args.index),
                "trees": args.trees,
                "depth": args.depth,
                "held_out": report,
            },
            indent=2,
        )
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
