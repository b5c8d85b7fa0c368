"""Memory of the service with synonym rules and A/B tests against none (issue 16).

Issue 16's goal: RSS no longer grows with the number of synonym sets and A/B arms. The real
service (``productsearch serve``, its own process, with a merchandising DB, an admin key and
events on) serves a Home Depot snapshot with text vectors (the default hybrid pipeline), twice:

* **(a) untuned**: no rules, no experiments;
* **(b) tuned**: ``--rules`` synonym rules (each a ``contains`` rule: a catalogue word -> a set
  of catalogue words meaning the same, from :data:`SYNONYM_SETS`) and two running A/B tests,
  each with a control arm and an arm with other ranking weights (:data:`EXPERIMENTS`), all put
  through the admin HTTP API.

Each case gets the same warm-up (plain searches without shopper ids), then the server's RSS is
read (``VmRSS``, lowest of a few samples, and the peak ``VmHWM`` from ``/proc/<pid>/status``);
then the same workload: ``--shoppers`` shoppers (each with its own ``user_id`` and
``session_id``, so both arms of both tests are served) each search every rule's word (in a
phrase taken from a title) and ``--plain`` plain dev queries that name no rule word, ``--passes``
times over; RSS is read after each pass. The table gives the growth over the workload per case
and the ratio of (b)'s growth to (a)'s. After the memory is read, each rule's word is searched
once more to check that the rules were live: with the rule it must match more products.

Usage::

    python -m benchmarks.tuning_memory                       # all 54,667 products
    python -m benchmarks.tuning_memory --products 5000 --shoppers 20 --passes 1

The snapshot is built once into ``--cache`` (``var/bench/tuning-memory-hd<N>-minilm``) and
reused; pass another worktree's cache to compare two versions of the code on the same snapshot.
The server is started with ``PYTHONPATH`` set to this checkout, so it runs the same code as the
driver even when another checkout is installed in the virtual environment. Prints the table and
writes ``benchmarks/results/tuning_memory.json`` (``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks.common import results_dir

if TYPE_CHECKING:
    from benchmarks.load import Catalogue, Service

MB = 1024 * 1024

#: The repository this file belongs to: the server is pointed at its packages.
REPO = Path(__file__).resolve().parents[1]

#: Synonym sets a home-improvement shop would write, in order of preference: the first word is
#: the rule's query, the rest the words it also finds. Only sets whose every word is in the
#: indexed titles are used, so every synonym can change what a search finds.
SYNONYM_SETS: tuple[tuple[str, ...], ...] = (
    ("faucet", "tap", "spigot"),
    ("cabinet", "cupboard", "hutch"),
    ("bulb", "lamp"),
    ("toilet", "commode"),
    ("sink", "basin"),
    ("rug", "carpet", "mat"),
    ("shelf", "shelving", "rack"),
    ("grill", "barbecue", "bbq"),
    ("hose", "tubing"),
    ("fence", "railing"),
    ("trash", "garbage", "waste"),
    ("sofa", "couch", "loveseat"),
    ("heater", "furnace"),
    ("screw", "fastener"),
    ("lumber", "board", "plank"),
    ("lock", "deadbolt", "latch"),
    ("wrench", "spanner"),
    ("outlet", "receptacle"),
    ("pipe", "tube"),
    ("patio", "deck"),
    ("ladder", "stepladder"),
    ("vacuum", "vac"),
    ("cordless", "battery"),
    ("mower", "lawnmower"),
    ("drill", "driver"),
    ("blinds", "shades", "shutters"),
    ("tile", "mosaic"),
    ("vanity", "washstand"),
    ("flashlight", "torch"),
    ("gloves", "mittens"),
)

#: Two A/B tests, one hashed by user and one by session; each treatment arm ranks with other
#: weights than the serving ones, so three weightings are served side by side.
EXPERIMENTS: dict[str, dict[str, Any]] = {
    "lexical-heavy": {
        "unit": "user",
        "variants": [
            {"name": "control", "share": 0.5},
            {
                "name": "lexical",
                "share": 0.5,
                "weights": {"retrievers": {"lexical": 1.0, "semantic": 0.1}, "behaviour": 1.0},
            },
        ],
    },
    "semantic-heavy": {
        "unit": "session",
        "variants": [
            {"name": "control", "share": 0.5},
            {
                "name": "semantic",
                "share": 0.5,
                "weights": {"retrievers": {"lexical": 1.0, "semantic": 0.8}, "colour_weight": 1.2},
            },
        ],
    },
}

#: Plain searches before the first memory reading (loads the query embedder, fills caches).
WARM_UP = 20

#: Words that make a poor second word of a phrase ("faucet with").
_FILLERS = frozenset({"and", "for", "not", "the", "with", "without", "from", "featuring", "into"})


def _words(text: str) -> list[str]:
    """The words a rule matches on (the rules' own normalisation: folded, punctuation dropped)."""
    from search.analysis import normalise_query

    return normalise_query(text).split()


# --------------------------------------------------------------------------------------------
# Workload


@dataclass(frozen=True, slots=True)
class Workload:
    """What the shoppers search, the same in both cases.

    Attributes:
        rules: The synonym rules as the admin API takes them.
        rule_queries: Per rule, texts that hold its word and no other rule's word.
        plain_queries: Dev queries that hold no rule word.
    """

    rules: list[dict[str, Any]]
    rule_queries: list[list[str]]
    plain_queries: list[str]

    def shopper_queries(self, shopper: int, plain: int) -> list[str]:
        """One shopper's searches: one per rule (a different phrase per shopper) and ``plain``
        plain queries, interleaved in a shopper-seeded order."""
        texts = [queries[shopper % len(queries)] for queries in self.rule_queries]
        start = shopper * plain
        texts += [self.plain_queries[(start + j) % len(self.plain_queries)] for j in range(plain)]
        random.Random(f"shopper:{shopper}").shuffle(texts)
        return texts


def synonym_rules(titles: Sequence[str], count: int) -> list[dict[str, Any]]:
    """The first ``count`` of :data:`SYNONYM_SETS` whose words are all in ``titles``, as rules.

    Args:
        titles: The indexed product titles.
        count: Rules wanted.

    Returns:
        ``contains`` rules with one ``synonyms`` action each (ids ``syn-<word>``).

    Raises:
        ValueError: Fewer than ``count`` sets have all their words in the titles.
    """
    vocabulary = {word for title in titles for word in _words(title)}
    usable = [words for words in SYNONYM_SETS if all(w in vocabulary for w in words)]
    if len(usable) < count:
        raise ValueError(
            f"only {len(usable)} synonym sets have every word in the catalogue, "
            f"{count} asked for: index more products or ask for fewer --rules"
        )
    return [
        {
            "id": f"syn-{words[0]}",
            "match": "contains",
            "query": words[0],
            "actions": [{"type": "synonyms", "words": list(words), "one_way": False}],
            "description": f"{words[0]} also finds {', '.join(words[1:])}",
        }
        for words in usable[:count]
    ]


def make_workload(catalogue: Catalogue, rules: int, phrases: int = 5) -> Workload:
    """The rules and the query texts of the workload.

    Args:
        catalogue: The indexed titles and the dev queries.
        rules: Synonym rules to make.
        phrases: Texts per rule: its word alone, then two-word phrases of titles starting with it.

    Returns:
        The workload.
    """
    titles = [title for _, title in catalogue.products]
    made = synonym_rules(titles, rules)
    rule_words = {rule["query"] for rule in made}
    rule_queries: list[list[str]] = []
    for rule in made:
        word = rule["query"]
        found = [word]
        for title in titles:
            tokens = _words(title)
            for i, token in enumerate(tokens[:-1]):
                follower = tokens[i + 1]
                phrase = f"{word} {follower}"
                # Exactly one rule per text: one synonym set per search.
                if (
                    token == word
                    and follower.isalpha()
                    and len(follower) > 2
                    and follower not in _FILLERS | rule_words
                    and phrase not in found
                ):
                    found.append(phrase)
            if len(found) >= phrases:
                break
        rule_queries.append(found[:phrases])
    plain = [q for q in catalogue.queries if not rule_words.intersection(_words(q))]
    plain_queries = random.Random(0).sample(plain, min(400, len(plain)))
    return Workload(made, rule_queries, plain_queries)


# --------------------------------------------------------------------------------------------
# Memory


def memory_kb(pid: int) -> dict[str, int]:
    """``VmRSS`` and ``VmHWM`` (peak RSS) of a process, in KiB, from ``/proc/<pid>/status``.

    Args:
        pid: Process id.

    Returns:
        ``{"VmRSS": ..., "VmHWM": ...}``.

    Raises:
        RuntimeError: The status file is unreadable or lacks the fields (not Linux, or the
            process is gone).
    """
    found: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as fh:
            for line in fh:
                name, _, value = line.partition(":")
                if name in ("VmRSS", "VmHWM"):
                    found[name] = int(value.split()[0])
    except OSError as exc:
        raise RuntimeError(f"cannot read the memory of process {pid}: {exc}") from exc
    if len(found) != 2:
        raise RuntimeError(f"/proc/{pid}/status has no VmRSS/VmHWM")
    return found


def settled_memory(pid: int, seconds: float = 1.5) -> dict[str, float]:
    """RSS once it stops moving (the lowest of samples over ``seconds``) and the peak, in MB."""
    samples: list[dict[str, int]] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        samples.append(memory_kb(pid))
        time.sleep(0.1)
    return {
        "rss_mb": round(min(s["VmRSS"] for s in samples) / 1024, 1),
        "hwm_mb": round(max(s["VmHWM"] for s in samples) / 1024, 1),
    }


# --------------------------------------------------------------------------------------------
# Driving the service


def configure(service: Service, workload: Workload) -> None:
    """Put the workload's rules and :data:`EXPERIMENTS` through the admin API.

    Raises:
        RuntimeError: The service refused one (its answer is in the message).
    """
    import httpx

    headers = {"Authorization": f"Bearer {service.admin_token}"}
    with httpx.Client(base_url=service.base_url, headers=headers, timeout=120) as http:
        for rule in workload.rules:
            response = http.post("/admin/rules", json=rule)
            if response.status_code != 201:
                raise RuntimeError(f"rule {rule['id']}: {response.status_code} {response.text}")
        for experiment_id, body in EXPERIMENTS.items():
            response = http.put(f"/admin/experiments/{experiment_id}", json=body)
            if response.status_code != 200:
                raise RuntimeError(
                    f"experiment {experiment_id}: {response.status_code} {response.text}"
                )


def run_workload(
    service: Service, workload: Workload, shoppers: int, plain: int, threads: int
) -> dict[str, Any]:
    """Every shopper's searches, ``threads`` shoppers at a time.

    Returns:
        Searches sent, seconds, answers by status, and per experiment the arms served.
    """
    import httpx

    statuses: Counter[str] = Counter()
    arms: dict[str, Counter[str]] = {}
    lock = threading.Lock()
    headers = {"Authorization": f"Bearer {service.search_token}"}
    limits = httpx.Limits(max_connections=threads, max_keepalive_connections=threads)

    with httpx.Client(
        base_url=service.base_url, headers=headers, timeout=300, limits=limits
    ) as http:

        def shopper(number: int) -> None:
            mine: Counter[str] = Counter()
            served: list[tuple[str, str]] = []
            for text in workload.shopper_queries(number, plain):
                response = http.get(
                    "/search",
                    params={
                        "q": text,
                        "k": 10,
                        "as_you_type": "false",
                        "user_id": f"user-{number}",
                        "session_id": f"session-{number}",
                    },
                )
                mine[str(response.status_code)] += 1
                if response.status_code == 200:
                    served += response.json().get("variants", {}).items()
            with lock:
                statuses.update(mine)
                for experiment, arm in served:
                    arms.setdefault(experiment, Counter())[arm] += 1

        began = time.perf_counter()
        with ThreadPoolExecutor(max_workers=threads) as pool:
            list(pool.map(shopper, range(shoppers)))
        seconds = time.perf_counter() - began
    return {
        "searches": sum(statuses.values()),
        "seconds": round(seconds, 1),
        "statuses": dict(statuses),
        "arms": {e: dict(sorted(c.items())) for e, c in sorted(arms.items())},
    }


def _search_totals(service: Service, texts: Sequence[str]) -> dict[str, int]:
    """Products each text matches (``total``), searched without shopper ids."""
    import httpx

    headers = {"Authorization": f"Bearer {service.search_token}"}
    totals: dict[str, int] = {}
    with httpx.Client(base_url=service.base_url, headers=headers, timeout=120) as http:
        for text in texts:
            response = http.get("/search", params={"q": text, "k": 1, "as_you_type": "false"})
            response.raise_for_status()
            totals[text] = int(response.json()["total"])
    return totals


def measure_case(
    name: str, snapshot: Path, workload: Workload, args: argparse.Namespace, *, tuned: bool
) -> dict[str, Any]:
    """Serve ``snapshot``, tune it (``tuned``), warm it, then read memory around the workload."""
    import httpx

    from benchmarks.load import start_service

    env = {"PYTHONPATH": os.pathsep.join(filter(None, (str(REPO), os.environ.get("PYTHONPATH"))))}
    with tempfile.TemporaryDirectory(prefix="tuning-memory-") as tmp:
        service = start_service(snapshot, Path(tmp), semantic=True, env=env, link=True)
        try:
            assert service.proc is not None
            pid = service.proc.pid
            if tuned:
                configure(service, workload)
            headers = {"Authorization": f"Bearer {service.search_token}"}
            with httpx.Client(base_url=service.base_url, headers=headers, timeout=300) as http:
                for text in workload.plain_queries[:WARM_UP]:
                    response = http.get("/search", params={"q": text, "as_you_type": "false"})
                    response.raise_for_status()
            ready = settled_memory(pid)
            _log(f"{name}: ready at {ready['rss_mb']} MB")
            passes = []
            for number in range(args.passes):
                ran = run_workload(service, workload, args.shoppers, args.plain, args.threads)
                passes.append({**ran, **settled_memory(pid)})
                _log(
                    f"{name}: pass {number + 1}: {ran['searches']} searches in "
                    f"{ran['seconds']} s, RSS {passes[-1]['rss_mb']} MB"
                )
            totals = _search_totals(service, [rule["query"] for rule in workload.rules])
        finally:
            service.stop()
    after = passes[-1]
    return {
        "case": name,
        "rules": len(workload.rules) if tuned else 0,
        "experiments": len(EXPERIMENTS) if tuned else 0,
        "ready": ready,
        "passes": passes,
        "after": {"rss_mb": after["rss_mb"], "hwm_mb": after["hwm_mb"]},
        "growth_mb": round(after["rss_mb"] - ready["rss_mb"], 1),
        "rule_word_totals": totals,
    }


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Run both cases; returns the report."""
    from benchmarks.load import cached_snapshot, home_depot_catalogue

    catalogue = home_depot_catalogue(args.products)
    cache = args.cache or Path("var/bench") / f"tuning-memory-hd{args.products or ''}-minilm"
    snapshot, built = cached_snapshot(catalogue, Path(cache), semantic=True)
    _log(f"catalogue {catalogue.name}: {len(catalogue.products)} products, snapshot {snapshot}")
    workload = make_workload(catalogue, args.rules)
    cases = [
        measure_case("a: none", snapshot, workload, args, tuned=False),
        measure_case(
            f"b: {len(workload.rules)} rules + {len(EXPERIMENTS)} A/B",
            snapshot,
            workload,
            args,
            tuned=True,
        ),
    ]
    untuned, tuned = cases
    widened = [
        word
        for word, total in tuned["rule_word_totals"].items()
        if total > untuned["rule_word_totals"].get(word, total)
    ]
    arms_served = {e: sorted(c) for e, c in tuned["passes"][-1]["arms"].items()}
    ratio = (
        round(tuned["growth_mb"] / untuned["growth_mb"], 2) if untuned["growth_mb"] > 0 else None
    )
    return {
        "benchmark": "tuning_memory",
        "catalogue": catalogue.name,
        "products": len(catalogue.products),
        "semantic": True,
        "snapshot": {"path": str(snapshot), **built},
        "code": str(REPO),
        "shoppers": args.shoppers,
        "searches_per_pass": args.shoppers * (len(workload.rules) + args.plain),
        "passes": args.passes,
        "threads": args.threads,
        "rules": workload.rules,
        "experiments": EXPERIMENTS,
        "cases": cases,
        "growth_ratio_b_over_a": ratio,
        "growth_difference_mb": round(tuned["growth_mb"] - untuned["growth_mb"], 1),
        "rules_that_widened_the_match": len(widened),
        "arms_served": arms_served,
        "goal": "RSS does not grow with synonym sets and A/B arms: (b) grows as (a) does",
    }


def format_table(report: Mapping[str, Any]) -> str:
    """The cases as a text table, with the growth ratio under it."""
    head = (
        f"{'case':<26} {'RSS ready':>10} {'RSS after':>10} {'growth':>8} "
        f"{'peak ready':>11} {'peak after':>11} {'searches':>9}"
    )
    lines = [head, "-" * len(head)]
    for case in report["cases"]:
        searches = sum(p["searches"] for p in case["passes"])
        lines.append(
            f"{case['case']:<26} {case['ready']['rss_mb']:>7.1f} MB {case['after']['rss_mb']:>7.1f}"
            f" MB {case['growth_mb']:>+5.1f} MB {case['ready']['hwm_mb']:>8.1f} MB "
            f"{case['after']['hwm_mb']:>8.1f} MB {searches:>9}"
        )
    ratio = report["growth_ratio_b_over_a"]
    lines.append(
        f"growth (b)/(a): {'n/a (a did not grow)' if ratio is None else f'{ratio:.2f}x'}"
        f" ({report['growth_difference_mb']:+.1f} MB)"
    )
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options (see the module docstring)."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.tuning_memory", description=(__doc__ or "").split("\n\n")[0]
    )
    parser.add_argument(
        "--products", type=int, default=None, metavar="N", help="index the first N (default all)"
    )
    parser.add_argument("--rules", type=int, default=20, help="synonym rules in case b (20)")
    parser.add_argument("--shoppers", type=int, default=60, help="distinct shoppers (60)")
    parser.add_argument("--plain", type=int, default=10, help="plain searches per shopper (10)")
    parser.add_argument("--passes", type=int, default=2, help="workload passes (2)")
    parser.add_argument("--threads", type=int, default=4, help="concurrent shoppers (4)")
    parser.add_argument(
        "--cache",
        type=Path,
        default=None,
        metavar="DIR",
        help="snapshot cache (default var/bench/tuning-memory-hd<N>-minilm)",
    )
    parser.add_argument("--out", type=Path, default=None, help="JSON report path")
    args = parser.parse_args(argv)
    if not 1 <= args.rules <= len(SYNONYM_SETS):
        parser.error(f"--rules must be from 1 to {len(SYNONYM_SETS)}")
    if min(args.shoppers, args.passes, args.threads) < 1 or args.plain < 0:
        parser.error("--shoppers, --passes and --threads must be positive, --plain not negative")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run, print the table and write the JSON report."""
    args = parse_args(argv)
    report = measure(args)
    print(
        f"catalogue {report['catalogue']} ({report['products']} products, text vectors); "
        f"{report['shoppers']} shoppers x {report['passes']} passes, "
        f"{report['searches_per_pass']} searches per pass"
    )
    print(format_table(report))
    print(
        f"rules that widened their word's match: {report['rules_that_widened_the_match']}/"
        f"{len(report['rules'])}; arms served in b: {report['arms_served']}"
    )
    out = args.out or results_dir() / "tuning_memory.json"
    out.write_text(json.dumps(report, indent=2))
    print(f"wrote {out}")
    return 0


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
