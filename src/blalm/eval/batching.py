"""How sequences are grouped into forward passes (pure: token ids in, index lists out).

* :class:`Batching` — the knobs: at most ``batch_size`` rows and ``token_budget`` padded tokens per
  forward pass, candidates sharing ``shared_prefix_min`` leading tokens run their prefix once, and
  (for a compiled model) a ladder of padded ``widths`` so that only a few shapes are ever seen.
* :func:`plan_batches` — length-sorted batches packed to the budget (longest first; equal lengths
  keep their order, so the plan depends only on the lengths).
* :func:`shared_prefix_groups` — sequences that share a long token prefix (lexicographic neighbours),
  for the shared-prefix path of :mod:`blalm.eval.scoring`.
* :func:`plan_shared_batches` — such groups packed into batches whose prefixes are cut to one length.

None of this changes a score: which rows share a forward pass is a matter of speed only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

# Padded widths a compiled model sees (a few shapes, each compiled once per process).
WIDTH_LADDER = (16, 32, 64, 128, 256, 512, 1024, 2048)
# The default token budget per forward pass: small batches stay in a CPU's caches (1024 was the
# fastest of 512 ... 8192 for a tiny BLaLM); a GPU wants large ones (see docs/results/eval_speed.md).
DEFAULT_TOKEN_BUDGET = {"cpu": 1024, "cuda": 16384}


@dataclass(frozen=True)
class Batching:
    """What one forward pass may hold (see the module docstring)."""

    batch_size: int = 1024        # most rows (sequences) per forward pass
    token_budget: int = 4096      # most padded tokens (rows x width) per forward pass; 0 = no limit
    shared_prefix_min: int = 32   # run a prefix of at least this many shared tokens once (0 = never)
    widths: tuple[int, ...] = ()  # compiled models: pad every batch to one of these widths, rows to a fixed count

    def validate(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")
        if self.token_budget < 0 or self.shared_prefix_min < 0:
            raise ValueError("token_budget and shared_prefix_min must be at least 0")

    def rows_for(self, width: int) -> int:
        """The most rows of ``width`` tokens that fit one forward pass (at least 1)."""
        if not self.token_budget:
            return self.batch_size
        return max(1, min(self.batch_size, self.token_budget // max(width, 1)))

    def padded_width(self, width: int) -> int:
        """``width`` rounded up to the ladder (unchanged without one, or beyond its top)."""
        for w in self.widths:
            if w >= width:
                return w
        return width


def plan_batches(lengths: Sequence[int], batching: Batching) -> list[list[int]]:
    """Indices grouped into forward passes, longest first: each batch holds at most
    ``rows_for(padded width of its longest row)`` rows. ``lengths`` are the widths fed to the model
    (for next-token scoring, a sequence's length less one)."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    k = 0
    while k < len(order):
        rows = batching.rows_for(batching.padded_width(lengths[order[k]]))
        batches.append(order[k:k + rows])
        k += rows
    return batches


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """The number of leading items ``a`` and ``b`` share."""
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


@dataclass(frozen=True)
class SharedGroup:
    """Sequences (indices) whose first ``prefix`` tokens are the same; each has at least two more."""

    prefix: int
    members: tuple[int, ...]


def shared_prefix_groups(seqs: Sequence[Sequence[int]], min_shared: int
                         ) -> tuple[list[SharedGroup], list[int]]:
    """Groups of at least two sequences sharing ``min_shared`` or more leading tokens, and the
    indices of the sequences in no group. Neighbours in sorted order join a group while that costs
    fewer tokens than a group of their own (entity tracking: the options of one item share the whole
    story; two items that share only its start stay apart). Every grouped sequence keeps at least two tokens after
    the shared prefix (one input and one target of its own)."""
    if min_shared <= 0 or len(seqs) < 2:
        return [], list(range(len(seqs)))
    order = sorted(range(len(seqs)), key=lambda i: tuple(seqs[i]))
    groups: list[SharedGroup] = []
    alone: list[int] = []
    members = [order[0]]
    shared = len(seqs[order[0]])

    def close() -> None:
        prefix = min(shared, min(len(seqs[m]) for m in members) - 2)
        if len(members) >= 2 and prefix >= min_shared:
            groups.append(SharedGroup(prefix=prefix, members=tuple(sorted(members))))
        else:
            alone.extend(members)

    adjacent = [common_prefix(seqs[a], seqs[b]) for a, b in zip(order, order[1:])] + [0]
    for k, i in enumerate(order[1:]):
        lcp = adjacent[k]           # sorted: the group's shared part is the least of these
        joined = min(shared, lcp)
        deeper = adjacent[k + 1] > lcp + max(8, lcp // 8)   # i shares much more with the next one
        # join unless the members' longer continuations cost more than running the shared part again
        if lcp >= min_shared and not deeper and len(members) * (shared - joined) <= joined:
            members.append(i)
            shared = joined
        else:
            close()
            members, shared = [i], len(seqs[i])
    close()
    return groups, sorted(alone)


def plan_shared_batches(groups: Sequence[SharedGroup], lengths: Sequence[int], batching: Batching
                        ) -> list[tuple[int, list[int]]]:
    """``(prefix length, group indices)`` per forward pair: groups sorted by prefix, each batch's
    prefix cut to its shortest one (at most 1/8 of it, and 8 tokens, shorter than the longest),
    both passes (prefixes; continuations) within the budget."""
    order = sorted(range(len(groups)), key=lambda g: -groups[g].prefix)
    out: list[tuple[int, list[int]]] = []
    k = 0
    while k < len(order):
        top = groups[order[k]].prefix
        batch: list[int] = []
        rows = longest = 0
        prefix = top
        while k < len(order):
            g = groups[order[k]]
            if batch and top - g.prefix > max(8, top // 8):
                break
            new_longest = max(longest, max(lengths[m] for m in g.members))
            new_rows = rows + len(g.members)
            if batch and (len(batch) + 1 > batching.rows_for(g.prefix)
                          or new_rows > batching.rows_for(new_longest - 1 - g.prefix)):
                break
            batch.append(order[k])
            rows, longest, prefix = new_rows, new_longest, g.prefix
            k += 1
        out.append((prefix, batch))
    return out
