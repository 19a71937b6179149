"""Classification metrics: pure functions of (predictions, labels) lists."""

from __future__ import annotations

import math
from typing import Sequence


def accuracy(predictions: Sequence[int], labels: Sequence[int]) -> float:
    """Share of predictions equal to the label, in % (0 for no items)."""
    if len(predictions) != len(labels):
        raise ValueError(f"{len(predictions)} predictions for {len(labels)} labels")
    if not labels:
        return 0.0
    return 100.0 * sum(int(p == y) for p, y in zip(predictions, labels)) / len(labels)


def confusion(predictions: Sequence[int], labels: Sequence[int], positive: int = 1) -> tuple[int, int, int, int]:
    """(tp, tn, fp, fn) of the ``positive`` class."""
    if len(predictions) != len(labels):
        raise ValueError(f"{len(predictions)} predictions for {len(labels)} labels")
    pairs = [(p == positive, y == positive) for p, y in zip(predictions, labels)]
    return (sum(p and y for p, y in pairs), sum(not p and not y for p, y in pairs),
            sum(p and not y for p, y in pairs), sum(not p and y for p, y in pairs))


def binary_f1(predictions: Sequence[int], labels: Sequence[int], positive: int = 1) -> float:
    """F1 of the ``positive`` class, in % (0 when there are no true positives)."""
    tp, _, fp, fn = confusion(predictions, labels, positive)
    return 0.0 if tp == 0 else 100.0 * 2 * tp / (2 * tp + fp + fn)


def binary_mcc(predictions: Sequence[int], labels: Sequence[int], positive: int = 1) -> float:
    """Matthews correlation of a binary task, in % (0 when a margin is empty, as scikit-learn)."""
    tp, tn, fp, fn = confusion(predictions, labels, positive)
    denominator = math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    return 0.0 if denominator == 0 else 100.0 * (tp * tn - fp * fn) / denominator
