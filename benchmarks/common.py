"""Shared pieces of the benchmarks: the Home Depot data, relevance metrics, query-set generators.

The metrics follow ``shared/data/README.md`` exactly:

* nDCG@10 with gain ``relevance - 1`` (grades are means of raters on 1..3, so gains lie in 0..2),
  unjudged products gain 0, the standard ``log2(rank + 1)`` discount, and the ideal DCG taken from
  the judged grades of that query. A query whose ideal DCG is 0 (every judged product graded 1) has
  no defined nDCG: it is skipped and the number skipped is reported.
* recall@100 of the products graded 2 or more; queries without such a product are skipped.
* MRR: reciprocal rank of the first product graded 2 or more within the first 100 results (0 when
  none is there); queries without such a product are skipped, as for recall.

Query sets are made per query with a random generator seeded from ``(seed, query id)``, so a query's
variant does not depend on which other queries are in the set, nor on ``PYTHONHASHSEED``.
"""

from __future__ import annotations

import csv
import gzip
import math
import os
import random
import re
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

#: Relevance at or above which a product counts as relevant for recall and MRR.
RELEVANT_GRADE = 2.0

#: Names of the query sets :func:`make_query_sets` returns, in table order.
QUERY_SETS: tuple[str, ...] = ("as_written", "typo", "sound")


# --------------------------------------------------------------------------------------------
# Data


def shared_dir() -> Path:
    """Locate the shared data folder (never copied into the repository).

    Returns:
        ``$PRODUCTSEARCH_SHARED`` when set, else ``<repo>/../shared``.
    """
    env = os.environ.get("PRODUCTSEARCH_SHARED")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared"


def results_dir() -> Path:
    """Folder for benchmark JSON output (git-ignored); created on demand.

    Returns:
        ``<repo>/benchmarks/results``.
    """
    path = Path(__file__).resolve().parent / "results"
    path.mkdir(parents=True, exist_ok=True)
    return path


@dataclass(frozen=True)
class HomeDepot:
    """The Home Depot relevance set.

    Attributes:
        products: ``(product_uid, title)`` pairs in file order (54,667 in the shipped set).
        queries: Query id -> query text as the shopper typed it.
        qrels: Query id -> product uid -> mean human grade on 1..3.
    """

    products: list[tuple[str, str]]
    queries: dict[str, str]
    qrels: dict[str, dict[str, float]]


def load_home_depot(shared: Path | None = None) -> HomeDepot:
    """Read ``home_depot/`` from the shared data folder.

    Args:
        shared: The shared folder; defaults to :func:`shared_dir`.

    Returns:
        The products, the dev queries and their judgements.

    Raises:
        FileNotFoundError: When the data files are missing.
    """
    root = (shared or shared_dir()) / "data" / "home_depot"
    if not root.is_dir():
        raise FileNotFoundError(f"no Home Depot data at {root} (set PRODUCTSEARCH_SHARED)")
    with gzip.open(root / "products.csv.gz", "rt", encoding="utf-8", newline="") as f:
        reader = csv.reader(f)
        next(reader)  # header
        products = [(uid, title) for uid, title in reader]
    queries: dict[str, str] = {}
    with open(root / "queries_dev.tsv", encoding="utf-8") as f:
        next(f)
        for line in f:
            # Split by hand: queries hold quote characters (12" shelf) that csv would eat.
            qid, _, text = line.rstrip("\n").partition("\t")
            queries[qid] = text
    qrels: dict[str, dict[str, float]] = {}
    with open(root / "qrels_dev.tsv", encoding="utf-8") as f:
        next(f)
        for line in f:
            qid, uid, grade = line.rstrip("\n").split("\t")
            qrels.setdefault(qid, {})[uid] = float(grade)
    return HomeDepot(products=products, queries=queries, qrels=qrels)


# --------------------------------------------------------------------------------------------
# Metrics


def _unique(ranked_ids: Iterable[str], k: int) -> list[str]:
    """First ``k`` distinct ids: a duplicate must not earn its gain twice."""
    seen: set[str] = set()
    out: list[str] = []
    for uid in ranked_ids:
        if uid not in seen:
            seen.add(uid)
            out.append(uid)
            if len(out) == k:
                break
    return out


def ndcg_at_k(ranked_ids: Sequence[str], qrel: Mapping[str, float], k: int = 10) -> float | None:
    """nDCG@k with gain ``relevance - 1`` and the ``1 / log2(rank + 1)`` discount.

    Args:
        ranked_ids: Product ids, best first (duplicates after the first are ignored).
        qrel: Judged product id -> grade on 1..3; unjudged products gain 0.
        k: Cut-off.

    Returns:
        The score in 0..1, or None when the ideal DCG is 0 (no judged product graded above 1).
    """
    gains = sorted((max(g - 1.0, 0.0) for g in qrel.values()), reverse=True)[:k]
    ideal = sum(g / math.log2(i + 2) for i, g in enumerate(gains))
    if ideal <= 0.0:
        return None
    dcg = sum(
        max(qrel.get(uid, 1.0) - 1.0, 0.0) / math.log2(i + 2)
        for i, uid in enumerate(_unique(ranked_ids, k))
    )
    return dcg / ideal


def recall_at_k(
    ranked_ids: Sequence[str],
    qrel: Mapping[str, float],
    k: int = 100,
    min_grade: float = RELEVANT_GRADE,
) -> float | None:
    """Share of the products graded ``min_grade`` or more that appear in the first ``k``.

    Args:
        ranked_ids: Product ids, best first.
        qrel: Judged product id -> grade.
        k: Cut-off.
        min_grade: Lowest grade that counts as relevant.

    Returns:
        The recall in 0..1, or None when the query has no relevant product.
    """
    relevant = {uid for uid, g in qrel.items() if g >= min_grade}
    if not relevant:
        return None
    return len(relevant.intersection(_unique(ranked_ids, k))) / len(relevant)


def mrr(
    ranked_ids: Sequence[str],
    qrel: Mapping[str, float],
    k: int = 100,
    min_grade: float = RELEVANT_GRADE,
) -> float | None:
    """Reciprocal rank of the first product graded ``min_grade`` or more within the first ``k``.

    Args:
        ranked_ids: Product ids, best first.
        qrel: Judged product id -> grade.
        k: Cut-off; a first relevant product below it scores 0.
        min_grade: Lowest grade that counts as relevant.

    Returns:
        ``1 / rank`` (0 when none is in the first ``k``), or None when the query has no relevant
        product.
    """
    if not any(g >= min_grade for g in qrel.values()):
        return None
    for rank, uid in enumerate(_unique(ranked_ids, k), start=1):
        if qrel.get(uid, 0.0) >= min_grade:
            return 1.0 / rank
    return 0.0


@dataclass(frozen=True)
class Metrics:
    """Mean relevance metrics over a run.

    Attributes:
        ndcg_at_10: Mean nDCG@10 over the ``ndcg_queries`` queries where it is defined.
        recall_at_100: Mean recall@100 over the ``relevant_queries`` queries.
        mrr: Mean reciprocal rank (cut at 100) over the ``relevant_queries`` queries.
        queries: Queries of the run that have judgements.
        ndcg_queries: Queries with a non-zero ideal DCG.
        ndcg_skipped: ``queries - ndcg_queries``.
        relevant_queries: Queries with at least one product graded 2 or more.
    """

    ndcg_at_10: float
    recall_at_100: float
    mrr: float
    queries: int
    ndcg_queries: int
    ndcg_skipped: int
    relevant_queries: int

    def to_dict(self) -> dict[str, float | int]:
        """Plain dict for JSON output."""
        return asdict(self)


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def evaluate(run: Mapping[str, Sequence[str]], qrels: Mapping[str, Mapping[str, float]]) -> Metrics:
    """Score a run against judgements.

    Only the run's queries are scored (so a ``--limit-queries`` subset is fair); queries of the
    run without judgements are ignored.

    Args:
        run: Query id -> product ids, best first (at least 100 for a fair recall@100).
        qrels: Query id -> product id -> grade.

    Returns:
        The means and the query counts behind them.
    """
    ndcgs: list[float] = []
    recalls: list[float] = []
    rrs: list[float] = []
    judged = 0
    for qid, ranked in run.items():
        qrel = qrels.get(qid)
        if not qrel:
            continue
        judged += 1
        if (n := ndcg_at_k(ranked, qrel, 10)) is not None:
            ndcgs.append(n)
        if (r := recall_at_k(ranked, qrel, 100)) is not None:
            recalls.append(r)
        if (m := mrr(ranked, qrel, 100)) is not None:
            rrs.append(m)
    return Metrics(
        ndcg_at_10=_mean(ndcgs),
        recall_at_100=_mean(recalls),
        mrr=_mean(rrs),
        queries=judged,
        ndcg_queries=len(ndcgs),
        ndcg_skipped=judged - len(ndcgs),
        relevant_queries=len(recalls),
    )


def percentile(values: Sequence[float], q: float) -> float:
    """Percentile with linear interpolation (numpy's default), without numpy.

    Args:
        values: Samples, any order.
        q: Percentile in 0..100.

    Returns:
        The percentile, or NaN for no samples.

    Raises:
        ValueError: When ``q`` is outside 0..100.
    """
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"q must be in 0..100, got {q}")
    if not values:
        return math.nan
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def wait_until_ready(
    proc: subprocess.Popen[bytes],
    base_url: str,
    timeout_s: float,
    *,
    log_tail: Callable[[], str] = lambda: "",
    interval_s: float = 0.25,
) -> None:
    """Poll ``GET /ready`` on a server we started until it answers 200.

    Raises:
        RuntimeError: The process exited, or ``timeout_s`` passed (the message ends with
            ``log_tail()``, the server's log where the caller keeps one).
    """
    import httpx

    deadline = time.monotonic() + timeout_s
    with httpx.Client(base_url=base_url, timeout=10.0) as client:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode}:\n{log_tail()}")
            try:
                if client.get("/ready").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"server not ready after {timeout_s:.0f} s:\n{log_tail()}")
            time.sleep(interval_s)


def rss_bytes(pid: int) -> int | None:
    """Resident set size of a process (psutil when installed, else ``/proc``).

    Args:
        pid: Process id.

    Returns:
        Bytes, or None when it cannot be read.
    """
    try:
        import psutil

        return int(psutil.Process(pid).memory_info().rss)
    except ImportError:
        pass
    except Exception:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


# --------------------------------------------------------------------------------------------
# Query sets

_WORD = re.compile(r"[A-Za-z]{4,}")

# Staggered QWERTY: each letter's physical neighbours (same row and the rows above and below).
_QWERTY_NEIGHBOURS: dict[str, str] = {
    "q": "wa",
    "w": "qeas",
    "e": "wrsd",
    "r": "etdf",
    "t": "ryfg",
    "y": "tugh",
    "u": "yihj",
    "i": "uojk",
    "o": "ipkl",
    "p": "ol",
    "a": "qwsz",
    "s": "awedxz",
    "d": "serfcx",
    "f": "drtgvc",
    "g": "ftyhbv",
    "h": "gyujnb",
    "j": "huikmn",
    "k": "jiolm",
    "l": "kop",
    "z": "asx",
    "x": "zsdc",
    "c": "xdfv",
    "v": "cfgb",
    "b": "vghn",
    "n": "bhjm",
    "m": "njk",
}


def _same_case(template: str, letter: str) -> str:
    return letter.upper() if template.isupper() else letter


def _keyboard_typo(word: str, rng: random.Random) -> str:
    """One keyboard slip in an ASCII-letter word of 4+ letters; the first letter is kept."""
    n = len(word)
    ops = ["substitute", "delete", "insert", "transpose"]
    rng.shuffle(ops)
    for op in ops:
        if op == "substitute":
            i = rng.randrange(1, n)
            near = _QWERTY_NEIGHBOURS[word[i].lower()]
            return word[:i] + _same_case(word[i], rng.choice(near)) + word[i + 1 :]
        if op == "delete":
            i = rng.randrange(1, n)
            return word[:i] + word[i + 1 :]
        if op == "insert":
            # A neighbouring key struck together with the intended one, just before or after it.
            i = rng.randrange(1, n)
            extra = _same_case(word[i], rng.choice(_QWERTY_NEIGHBOURS[word[i].lower()]))
            at = i + rng.randrange(2)
            return word[:at] + extra + word[at:]
        pairs = [i for i in range(1, n - 1) if word[i].lower() != word[i + 1].lower()]
        if pairs:
            i = rng.choice(pairs)
            return word[:i] + word[i + 1] + word[i] + word[i + 2 :]
    return word  # unreachable: substitute always applies


def with_keyboard_typo(query: str, rng: random.Random) -> str:
    """Make one realistic keyboard typo in one word of the query.

    A word is a run of 4 or more ASCII letters (so ``1/2-inch`` offers ``inch`` and digits are
    never touched). One such word is picked at random and gets one of: a letter replaced by an
    adjacent QWERTY key, a letter deleted, an adjacent key inserted next to a letter, or two
    different neighbouring letters swapped. The first letter of the word is kept, as shoppers
    rarely mistype it.

    Args:
        query: Query text.
        rng: Source of randomness (seed it for repeatable sets).

    Returns:
        The query with exactly one word changed, or the query unchanged when it has no such word.
    """
    words = list(_WORD.finditer(query))
    if not words:
        return query
    m = rng.choice(words)
    return query[: m.start()] + _keyboard_typo(m.group(), rng) + query[m.end() :]


@dataclass(frozen=True, slots=True)
class _SoundRule:
    name: str
    pattern: re.Pattern[str]
    replacement: str


def _rule(name: str, pattern: str, replacement: str) -> _SoundRule:
    return _SoundRule(name, re.compile(pattern), replacement)


_C = "[bcdfghjklmnpqrstvwxz]"  # consonants (y excluded: it is often a vowel)

# English sound-alike rewrites, applied to a lower-case word; each keeps the pronunciation about
# the same. The guards keep off the common exceptions (ea in "bread", "there", "cc" in "accent").
_SOUND_RULES: tuple[_SoundRule, ...] = (
    _rule("ph->f", r"ph", "f"),
    _rule("ck->k", r"ck", "k"),
    _rule("c(a/o/u)->k", r"c(?=[aou])", "k"),
    _rule("c(e/i/y)->s", r"(?<![sc])c(?=[eiy])", "s"),
    _rule("que$->k", r"que$", "k"),
    _rule("qu->kw", r"qu(?!e$)", "kw"),
    _rule("x->ks", r"(?<=[a-z])x", "ks"),
    _rule("tion->shun", r"tion", "shun"),
    _rule("ough->uff", r"(?<=^[rt])ough$|(?<=^en)ough$", "uff"),
    _rule("ough->off", r"(?<=^c)ough$|(?<=^tr)ough$", "off"),
    _rule("ough->ow", r"(?<=^b)ough$|(?<=^pl)ough$", "ow"),
    _rule("ight->ite", r"ight(?=s?$)", "ite"),
    _rule("ea->ee", r"(?<!gr)(?<!sw)(?<!br)(?<!thr)ea(?=[lmnps]|t(?!h))", "ee"),
    _rule("ee->ea", r"ee(?=[lmnpt])", "ea"),
    _rule("cei->cee", r"(?<=c)ei", "ee"),
    _rule("ere$->eer", r"(?<![tw]h)(?<=[a-z]{2})ere$", "eer"),
    _rule("oo(l/m/n)$->u_e", r"oo([lmn])$", r"u\1e"),
    _rule("ew$->ue", r"(?<=[lr])ew$", "ue"),
    _rule("a_e->ai", r"(?<=" + _C + r")a(" + _C + r")e$", r"ai\1"),
    _rule("i_e->y_e", r"(?<=" + _C + r")i(?=" + _C + r"e$)", "y"),
    _rule("o_e->oa", r"(?<=" + _C + r")o(" + _C + r")e$", r"oa\1"),
    _rule("u_e->oo", r"(?<=[bdlrt])u([bdlt])e$", r"oo\1"),
    _rule("oa->o_e", r"oa(" + _C + r")$", r"o\1e"),
    _rule("oor$->ore", r"(?<=^d)oor$|(?<=^fl)oor$", "ore"),
    _rule("ai->ay", r"ai(?=[a-z])", "ay"),
    _rule("ay->ai", r"ay(?=[a-z])", "ai"),
    _rule("oi->oy", r"oi(?=[a-z])", "oy"),
    _rule("au->aw", r"au(?=[a-z])", "aw"),
    _rule("y->i", r"(?<=" + _C + r")y(?=" + _C + r")", "i"),
    _rule("y$->ie", r"(?<=[aeiou]" + _C + r")y$|(?<=[aeiou]" + _C + _C + r")y$", "ie"),
    _rule("le$->el", r"(?<=" + _C + r")le$", "el"),
    _rule("se$->ze", r"(?<=[aeiou])se$", "ze"),
    _rule("double->single", r"([bdfgklmnprstz])\1", r"\1"),
    # Only after one short vowel: "rod"->"rodd", "panel"->"panell"; never "-er", "-ed", "steell".
    _rule(
        "final->double",
        r"(?<=" + _C + r"[aeiou])([bfglmnpt])$|(?<=" + _C + r"[aiou])(d)$",
        r"\1\2\1\2",
    ),
    # Only truly silent ones: a magic e ("pipe"->"pip") changes the sound.
    _rule("silent e", r"(?<=[a-z]{4}iv)e$|(?<=[lr]v)e$", ""),
    _rule("wh->w", r"^wh", "w"),
    _rule("kn->n", r"^kn", "n"),
    _rule("wr->r", r"^wr", "r"),
    _rule("gh silent", r"(?<=[aeiou])gh(?=t)", ""),
)


def sound_alikes(word: str) -> dict[str, list[str]]:
    """Every respelling of ``word`` by one sound-alike rule.

    Args:
        word: A lower-case word.

    Returns:
        Rule name -> the distinct respellings it gives (rules that give none are left out).
    """
    out: dict[str, list[str]] = {}
    for rule in _SOUND_RULES:
        found: list[str] = []
        for m in rule.pattern.finditer(word):
            new = word[: m.start()] + m.expand(rule.replacement) + word[m.end() :]
            if new != word and len(new) >= 2 and new not in found:
                found.append(new)
        if found:
            out[rule.name] = found
    return out


def _respell(word: str, rng: random.Random, steps: int) -> str:
    current = word
    for _ in range(steps):
        options = sound_alikes(current)
        # Never undo an earlier step (ee->ea after ea->ee).
        options = {r: [s for s in v if s != word] for r, v in options.items()}
        options = {r: v for r, v in options.items() if v}
        if not options:
            break
        # A rule first, then where: a word with many doubled letters must not mostly get that.
        rule = rng.choice(sorted(options))
        current = rng.choice(options[rule])
    return current


def spelled_by_sound(query: str, rng: random.Random) -> str:
    """Respell one word as it sounds, the way a shopper who heard a name writes it.

    One alphabetic word of 4+ letters (brands included) gets one English sound-alike rewrite,
    sometimes (one time in three) a second one; the rule is chosen at random among those that
    apply, so sets are not dominated by one rule. Words where no rule applies are passed over
    for another word. Examples of what it can produce:

    ===========  ============  =======================
    word         respelled     rules
    ===========  ============  =======================
    toilet       toylet        oi->oy
    faucet       fawcet        au->aw
    phone        fone          ph->f
    knob         nob           kn->n
    ceiling      seeling       cei->cee, c(e/i/y)->s
    windemere    windemeer     ere$->eer
    light        lite          ight->ite
    vinyl        vinil         y->i
    screw        scrue         ew$->ue
    steel        steal         ee->ea
    cabinet      kabinet       c(a/o/u)->k
    handle       handel        le$->el
    ===========  ============  =======================

    Args:
        query: Query text.
        rng: Source of randomness (seed it for repeatable sets).

    Returns:
        The query with exactly one word respelled, or unchanged when no word has a rule.
    """
    tokens = query.split(" ")
    candidates = [i for i, t in enumerate(tokens) if len(t) >= 4 and t.isascii() and t.isalpha()]
    rng.shuffle(candidates)
    steps = 2 if rng.random() < 1 / 3 else 1
    for i in candidates:
        word = tokens[i]
        new = _respell(word.lower(), rng, steps)
        if new == word.lower():
            continue
        if word.isupper():
            new = new.upper()
        elif word[0].isupper():
            new = new.capitalize()
        tokens[i] = new
        return " ".join(tokens)
    return query


def make_query_sets(queries: Mapping[str, str], seed: int = 0) -> dict[str, dict[str, str]]:
    """The three query sets the benchmarks report.

    Args:
        queries: Query id -> text as written.
        seed: Seed; each query gets its own generator seeded from ``(set, seed, query id)``.

    Returns:
        ``{"as_written": ..., "typo": ..., "sound": ...}``, each query id -> text.
    """
    generators: dict[str, Callable[[str, random.Random], str]] = {
        "typo": with_keyboard_typo,
        "sound": spelled_by_sound,
    }
    sets: dict[str, dict[str, str]] = {"as_written": dict(queries)}
    for name, make in generators.items():
        sets[name] = {
            qid: make(text, random.Random(f"{name}:{seed}:{qid}")) for qid, text in queries.items()
        }
    return sets


def learned_order(engine: Any, request: Any) -> tuple[Any, list[Any]]:
    """A request's candidates (``SearchEngine.candidates``) and their order after the learned
    ranker (the fused order without one): the list the behaviour and personalisation stages
    receive, for benchmarks that drive those stages themselves."""
    found = engine.candidates(request)
    if engine.ranker is None:
        return found, list(found.fused)
    return found, engine.ranker.rank(found.query, found.fused, found.runs)
