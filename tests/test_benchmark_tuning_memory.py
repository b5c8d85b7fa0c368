"""The workload of ``benchmarks/tuning_memory.py``: its rules are valid, each rule's texts trigger
that rule alone (checked with the real rule matcher), plain texts trigger none, and every shopper
triggers every rule."""

from __future__ import annotations

import os

import pytest

from benchmarks.load import Catalogue
from benchmarks.tuning_memory import make_workload, memory_kb, synonym_rules
from search.rules import RuleSet, rule_from_dict

TITLES = [
    "Single Handle Kitchen Faucet with Tap Aerator",
    "Brass Spigot for Outdoor Faucet Supply",
    "LED Bulb 60 Watt Lamp Replacement",
    "Antique Bulb Filament Light",
    "Elongated Toilet Seat in White",
    "Commode Chair with Arms",
    "Stainless Sink Strainer Basket",
    "Pedestal Basin in Bone",
]
QUERIES = ["toilet seat cover", "garden hose", "white paint", "faucet", "kitchen sink drain"]


@pytest.fixture(scope="module")
def catalogue() -> Catalogue:
    products = [(str(i), title) for i, title in enumerate(TITLES)]
    return Catalogue("tiny", products, QUERIES)


class TestWorkload:
    def test_rules_use_only_sets_whose_words_are_all_indexed(self) -> None:
        rules = synonym_rules(TITLES, 4)
        words = [rule["actions"][0]["words"] for rule in rules]
        # cabinet/cupboard/hutch comes before bulb in the list but no title holds it.
        assert words == [
            ["faucet", "tap", "spigot"],
            ["bulb", "lamp"],
            ["toilet", "commode"],
            ["sink", "basin"],
        ]
        for rule in rules:
            rule_from_dict(rule)  # what POST /admin/rules validates with

    def test_too_few_usable_sets_is_an_error_naming_the_count(self) -> None:
        with pytest.raises(ValueError, match="only 4 synonym sets"):
            synonym_rules(TITLES, 5)

    def test_each_text_triggers_its_rule_alone(self, catalogue: Catalogue) -> None:
        workload = make_workload(catalogue, 4)
        rules = RuleSet([rule_from_dict(r) for r in workload.rules])
        for rule, texts in zip(workload.rules, workload.rule_queries, strict=True):
            assert texts[0] == rule["query"]
            assert len(texts) > 1  # phrases from titles too
            for text in texts:
                assert [r.id for r in rules.match(text).rules] == [rule["id"]], text
        assert workload.plain_queries
        for text in workload.plain_queries:
            assert not rules.match(text), text
        # The dev queries naming a rule word are left out of the plain ones.
        assert sorted(workload.plain_queries) == ["garden hose", "white paint"]

    @pytest.mark.parametrize("plain", [0, 3])
    def test_every_shopper_triggers_every_rule_once(self, catalogue: Catalogue, plain: int) -> None:
        workload = make_workload(catalogue, 4)
        rules = RuleSet([rule_from_dict(r) for r in workload.rules])
        for shopper in range(5):
            texts = workload.shopper_queries(shopper, plain)
            assert len(texts) == 4 + plain
            fired = [r.id for text in texts for r in rules.match(text).rules]
            assert sorted(fired) == sorted(r["id"] for r in workload.rules)


def test_memory_of_this_process_is_read_from_proc() -> None:
    if not os.path.exists(f"/proc/{os.getpid()}/status"):
        pytest.skip("no /proc")
    found = memory_kb(os.getpid())
    assert 0 < found["VmRSS"] <= found["VmHWM"]
    with pytest.raises(RuntimeError, match="cannot read the memory"):
        memory_kb(2**22 + 12345)  # above the kernel's pid limit
