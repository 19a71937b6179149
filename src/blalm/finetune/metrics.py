"""Classification metrics: pure functions of (predictions, labels) lists."""

from __future__ import annotations

from typing import Sequence


def accuracy(predictions: Sequence[int], labels: Sequence[int]) -> float:
    """Share of predictions equal to the label, in % (0 for no items)."""
    if len(predictions) != len(labels):
        raise ValueError(f"{len(predictions)} predictions for {len(labels)} labels")
    if not labels:
        return 0.0
    return 100.0 * sum(int(p == y) for p, y in zip(predictions, labels)) / len(labels)


def binary_f1(predictions: Sequence[int], labels: Sequence[int], positive: int = 1) -> float:
    """F1 of the ``positive`` class, in % (0 when there are no true positives)."""
    if len(predictions) != len(labels):
        raise ValueError(f"{len(predictions)} predictions for {len(labels)} labels")
    tp = sum(int(p == positive and y == positive) for p, y in zip(predictions, labels))
    fp = sum(int(p == positive and y != positive) for p, y in zip(predictions, labels))
    fn = sum(int(p != positive and y == positive) for p, y in zip(predictions, labels))
    if tp == 0:
        return 0.0
    return 100.0 * 2 * tp / (2 * tp + fp + fn)
