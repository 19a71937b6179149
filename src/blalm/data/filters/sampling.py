"""At most N samples per document (paper §3.2: "subsample up to 200 samples per book")."""

from __future__ import annotations

import random
from typing import Sequence, TypeVar

__all__ = ["sample_segments"]

T = TypeVar("T")


def sample_segments(segments: Sequence[T], n: int, seed: int | str, doc_id: str) -> list[T]:
    """A uniform random subset of ``n`` segments in their original (book) order.

    Deterministic: the generator is ``random.Random(f"{seed}:{doc_id}")``, so the same seed and
    document always give the same subset, and every document gets its own draw. ``n <= 0`` or
    ``n >= len(segments)`` keeps everything.
    """
    if n <= 0 or n >= len(segments):
        return list(segments)
    rng = random.Random(f"{seed}:{doc_id}")
    keep = sorted(rng.sample(range(len(segments)), n))
    return [segments[i] for i in keep]
