"""The word budget: quotas never exceed the budget or what a source holds; selection never overfills."""

from __future__ import annotations

import random

import pytest

from blalm.data.budget import allocate, select


def test_shares_split_the_budget_when_sources_hold_enough():
    quota = allocate(1000, {"a": 0.5, "b": 0.3, "c": 0.2}, {"a": 10**6, "b": 10**6, "c": 10**6})
    assert quota == {"a": 500, "b": 300, "c": 200}


def test_short_source_hands_its_share_to_absorbing_sources_by_share():
    quota = allocate(1000, {"a": 0.5, "b": 0.3, "c": 0.2}, {"a": 100, "b": 10**6, "c": 10**6})
    assert quota["a"] == 100
    assert sum(quota.values()) == 1000
    # the 400 words a could not fill go to b and c in the ratio 3:2
    assert quota["b"] == 300 + 240 and quota["c"] == 200 + 160


def test_non_absorbing_source_keeps_its_own_share():
    quota = allocate(1000, {"a": 0.5, "b": 0.5}, {"a": 100, "b": 10**6}, {"a": True, "b": False})
    assert quota == {"a": 100, "b": 500}


def test_shortfall_when_sources_hold_too_little():
    quota = allocate(1000, {"a": 1, "b": 1}, {"a": 100, "b": 200})
    assert quota == {"a": 100, "b": 200}


def test_zero_share_absorbers_take_leftovers_only_when_nothing_else_can():
    quota = allocate(1000, {"a": 1.0, "b": 0.0}, {"a": 300, "b": 10**6})
    assert quota == {"a": 300, "b": 700}


@pytest.mark.parametrize("seed", range(300))
def test_budget_property_over_random_configs(seed):
    rng = random.Random(seed)
    names = [f"s{i}" for i in range(rng.randint(1, 9))]
    budget = rng.randint(1, 10**7)
    shares = {n: rng.choice([0.0, rng.random(), rng.randint(1, 5)]) for n in names}
    if not any(shares.values()):
        shares[names[0]] = 1.0
    available = {n: rng.choice([0, rng.randint(0, budget), rng.randint(0, 3 * budget)]) for n in names}
    absorb = {n: rng.random() < 0.8 for n in names}
    quota = allocate(budget, shares, available, absorb)
    assert sum(quota.values()) <= budget
    assert all(0 <= quota[n] <= available[n] for n in names)
    absorbers_full = all(quota[n] == available[n] for n in names if absorb[n])
    assert sum(quota.values()) == budget or absorbers_full or sum(available.values()) <= budget
    # then fill each quota from random documents: never over, at most one segment short
    docs = [[rng.randint(1, 300) for _ in range(rng.randint(1, 12))] for _ in range(rng.randint(0, 400))]
    for n in names:
        chosen = select(docs, quota[n], seed)
        used = sum(sum(docs[i][:k]) for i, k in chosen.items())
        assert used <= quota[n]
        total = sum(map(sum, docs))
        if total >= quota[n]:
            assert quota[n] - used < 300


def test_select_is_deterministic_and_respects_exclude():
    docs = [[10, 20], [5], [7, 7, 7], [100], [1, 1]]
    a = select(docs, 50, "x")
    assert a == select(docs, 50, "x")
    assert sum(sum(docs[i][:k]) for i, k in a.items()) <= 50
    b = select(docs, 10**6, "x", exclude={3})
    assert 3 not in b and b == {0: 2, 1: 1, 2: 3, 4: 2}
