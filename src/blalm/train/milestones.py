"""BabyLM checkpoint milestones, counted in words seen.

The BabyLM 2025 rules ask for checkpoints at every 1M words seen up to 10M, every 10M up to
100M, then every 100M (words *seen*: repeated epochs count again, so 10 epochs of the 100M-word
strict corpus reach 1000M). ``milestone_scale`` multiplies every milestone, so that a small demo
corpus gets the same pattern: with ``milestone_scale = 0.02`` the milestones are 20k, 40k, ..,
200k, 400k, .., 2M, 4M, .. words seen (a 200k-word corpus checkpoints every 20k words in its
first epoch).

Checkpoints are named by the milestone: ``words_001M``, ``words_020M``, ``words_1000M``, and for
scaled milestones that are not whole millions ``words_020k`` (or the plain number when not
whole thousands). Epoch ends are ``epoch_01``, ``epoch_02``, ..; a run stopped by ``max_steps``
ends with ``step_000040``. A checkpoint due for several reasons at once is saved once, under the
first of these names that applies (milestone, epoch end, end of run).
"""

from __future__ import annotations

UNIT = 1_000_000


def base_milestones(limit_words: float) -> list[int]:
    """The unscaled milestones (words) up to ``limit_words``: 1M..10M by 1M, 20M..100M by 10M,
    then every 100M."""
    out: list[int] = []
    value = 0
    while True:
        value += UNIT if value < 10 * UNIT else 10 * UNIT if value < 100 * UNIT else 100 * UNIT
        if value > limit_words:
            return out
        out.append(value)


def milestones(total_words: int, scale: float = 1.0) -> list[int]:
    """Scaled milestones (words seen, integers) up to ``total_words``."""
    return [round(m * scale) for m in base_milestones(total_words / scale)]


def milestone_name(words: int) -> str:
    if words % UNIT == 0:
        return f"words_{words // UNIT:03d}M"
    if words % 1000 == 0:
        return f"words_{words // 1000:03d}k"
    return f"words_{words}"


def epoch_name(epoch: int) -> str:
    return f"epoch_{epoch:02d}"


def step_name(step: int) -> str:
    return f"step_{step:06d}"


def words_seen(tokens_seen: int, train_words: int, train_tokens: int) -> int:
    """Words seen after ``tokens_seen`` tokens: ``tokens_seen x train_words / train_tokens`` (floored, exact)."""
    return tokens_seen * train_words // train_tokens


def crossed(milestone_list: list[int], words_before: int, words_after: int) -> list[int]:
    """The milestones reached by a step that took words seen from ``words_before`` to ``words_after``."""
    return [m for m in milestone_list if words_before < m <= words_after]
