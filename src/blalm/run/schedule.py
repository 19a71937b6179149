"""What an optimizer step does is a function of its number: the learning-rate schedule and the
order in which an epoch visits the examples. Train and finetune share both, so that a resumed run
repeats exactly the steps it lost.
"""

from __future__ import annotations

import math

import numpy as np
import torch


def warmup_steps(total_steps: int, warmup_fraction: float) -> int:
    return math.ceil(warmup_fraction * total_steps)


def lr_factor(step: int, total_steps: int, warmup_fraction: float = 0.1, min_lr_fraction: float = 0.0,
              schedule: str = "cosine", decay_fraction: float = 0.2) -> float:
    """Multiplier of the peak learning rate for the optimizer step ``step`` (0-based) of ``total_steps``:
    ``(step + 1) / W`` during the ``W = ceil(warmup_fraction * total_steps)`` warm-up steps, then

    * ``schedule = "cosine"``: cosine from 1 down to ``min_lr_fraction`` over the remaining steps
      (reached at the last step's end);
    * ``schedule = "wsd"`` (warm-up, stable, decay): 1 until the last ``D = ceil(decay_fraction *
      total_steps)`` steps, then linear from 1 down to ``min_lr_fraction`` over those D steps;
    * ``schedule = "official"`` (the fine-tuning's): the official BabyLM trainer's scheduler
      (``evaluation_pipeline/finetune/utils.py``, ``cosine_schedule_with_warmup``, stepped after each
      optimizer step): ``step / W`` over ``W = int(warmup_fraction * total_steps)`` warm-up steps (the
      first step has lr 0), then the same cosine.
    """
    if schedule == "official":
        w = int(warmup_fraction * total_steps)
        if step < w:
            return step / w
        progress = (step - w) / max(1, total_steps - w)
        return min_lr_fraction + (1.0 - min_lr_fraction) * 0.5 * (1.0 + math.cos(math.pi * progress))
    w = warmup_steps(total_steps, warmup_fraction)
    if step < w:
        return (step + 1) / w
    if schedule == "wsd":
        decay = min(total_steps - w, math.ceil(decay_fraction * total_steps))
        into_decay = step - (total_steps - decay)
        if decay <= 0 or into_decay < 0:
            return 1.0
        return 1.0 - (1.0 - min_lr_fraction) * min(1.0, (into_decay + 1) / decay)
    if schedule != "cosine":
        raise ValueError(f"unknown learning-rate schedule {schedule!r} (cosine, wsd or official)")
    progress = (step - w) / max(1, total_steps - w)
    return min_lr_fraction + (1.0 - min_lr_fraction) * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def set_learning_rates(optimizers: dict[str, torch.optim.Optimizer], factor: float) -> dict[str, float]:
    """Scale every group's ``base_lr`` by ``factor``; return each optimizer's current peak-group lr."""
    out = {}
    for name, opt in optimizers.items():
        for group in opt.param_groups:
            group["lr"] = group["base_lr"] * factor
        out[name] = opt.param_groups[0]["lr"]
    return out


def epoch_permutation(n_items: int, seed: int, epoch: int) -> np.ndarray:
    """The order in which epoch ``epoch`` visits ``n_items`` items: a pure function of ``(seed, epoch)``
    (numpy's PCG64 seeded with both)."""
    return np.random.Generator(np.random.PCG64([int(seed), int(epoch)])).permutation(n_items)
