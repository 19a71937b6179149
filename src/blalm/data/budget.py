"""The word budget: how many words each source gets, and which segments fill them. Pure functions.

``allocate`` splits a budget over sources by their shares (paper Table 1), never giving a source
more than it holds; what a source cannot fill is handed on to the sources that may absorb it,
in proportion to their shares, until the budget is met or every absorbing source is exhausted
(water-filling). The result never exceeds the budget and sums to it whenever the sources hold
enough.

``select`` fills one source's quota from its documents, visited in a seeded random order: whole
documents while they fit, and at the boundary the longest prefix of a document's segments that
fits. A segment (one output line) is never split, so a source ends at most one segment short of
its quota.
"""

from __future__ import annotations

import random
from typing import Mapping, Sequence


def allocate(budget: int, shares: Mapping[str, float], available: Mapping[str, int],
             absorb: Mapping[str, bool] | None = None) -> dict[str, int]:
    """Integer word quotas per source: ``sum <= budget``, ``quota[s] <= available[s]``.

    Sources with ``absorb[s] = False`` never get more than their own share.
    """
    names = sorted(shares)
    absorb = {n: True for n in names} if absorb is None else dict(absorb)
    total_share = sum(max(shares[n], 0.0) for n in names)
    if budget <= 0 or total_share <= 0:
        return {n: 0 for n in names}
    own = _apportion(budget, {n: max(shares[n], 0.0) for n in names})
    quota = {n: min(own[n], max(available.get(n, 0), 0)) for n in names}
    while True:
        left = budget - sum(quota.values())
        open_ = [n for n in names if absorb.get(n, True) and quota[n] < available.get(n, 0)]
        if left <= 0 or not open_:
            return quota
        weights = {n: max(shares[n], 0.0) for n in open_}
        if sum(weights.values()) <= 0:
            weights = {n: 1.0 for n in open_}
        extra = _apportion(left, weights)
        for n in open_:
            quota[n] = min(quota[n] + extra[n], available[n])


def _apportion(total: int, weights: Mapping[str, float]) -> dict[str, int]:
    """Split integer ``total`` in proportion to ``weights`` (largest remainder; ties by name)."""
    wsum = sum(weights.values())
    exact = {n: total * w / wsum for n, w in weights.items()}
    out = {n: int(v) for n, v in exact.items()}
    rest = total - sum(out.values())
    for n in sorted(exact, key=lambda n: (-(exact[n] - out[n]), n))[:rest]:
        out[n] += 1
    return out


def select(doc_segment_words: Sequence[Sequence[int]], quota: int, seed: int | str,
           exclude: set[int] | frozenset[int] = frozenset()) -> dict[int, int]:
    """Choose segments to fill ``quota`` words: ``{doc_index: number_of_leading_segments}``.

    Documents are visited in an order shuffled by ``seed``; documents in ``exclude`` are skipped.
    The selected words never exceed ``quota``.
    """
    order = [i for i in range(len(doc_segment_words)) if i not in exclude]
    random.Random(seed).shuffle(order)
    chosen: dict[int, int] = {}
    left = quota
    for i in order:
        if left <= 0:
            break
        taken = 0
        for words in doc_segment_words[i]:
            if words > left:
                break
            left -= words
            taken += 1
        if taken:
            chosen[i] = taken
    return chosen
