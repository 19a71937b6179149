"""Age of acquisition (AoA): do words reach the model in the order they reach children?

Follows the official pipeline's ``AoA_word/`` (surprisals) and ``utils.py`` ``AoAEvaluator``
(scoring), after Chang & Bergen (2022). What it measures: for each CDI word, the training point at
which the model "acquires" it (its surprisal has fallen half way from chance to its best) is
compared with the age at which half of the children produce it; the score is Pearson's r between
the two over the words where both are defined (``curve_fitness``). It needs the word's surprisal
at several checkpoints of one training run — a single model gives no curve, so ``blalm eval`` on
one model reports AoA as not available; call :func:`aoa_curve_fitness` with the surprisals of a
run's checkpoints (:func:`aoa_word_surprisals` for each).

Definitions followed:

* **Word surprisal** (``evaluation_functions.py``, ``use_bos_only=True``, the default of
  ``analyze_steps``): the text ``bos_token + word`` tokenized with the tokenizer's special
  tokens, the summed ``−ln P`` of the tokens that overlap the word. No context sentence is used,
  so the pipeline's context file (``cdi_childes.json``, not available here) is not needed.
* **Child AoA** (``compute_child_aoa``): fit ``a / (1 + exp(−b (age − c))) + d`` to the share of
  children producing the word at 16–30 months (bounds a∈[0,2], b∈[0,1], c∈[first, last age],
  d∈[−0.5, 0.5]; start (1, 0.1, mean age, 0)); the AoA is where the curve crosses 0.5, kept only
  inside the age range. Needs ≥ 3 ages.
* **Model AoA** (``compute_model_aoa``): fit the same sigmoid to −surprisal over
  ``log10(step + 1)`` (step = words seen; start (range, 1, mean, min), no bounds); the threshold is
  half way between "chance", ``log2(300000)``, and the lowest surprisal seen (the pipeline mixes
  log2 chance with natural-log surprisals; kept as is); the AoA is the crossing in ``log10``
  units, kept only when the step lies within the steps given. Needs ≥ 3 steps.

Deviations: our words are Wordbank's CDI items from
``aoa/child_american_english_proportions.csv`` (column ``definition``, cleaned by
:func:`blalm.eval.data.clean_cdi_word`; the pipeline reads a ``word`` column of its own CDI file);
the sigmoid fits use our Levenberg–Marquardt (:func:`blalm.eval.metrics.fit_curve`) instead of
scipy's ``curve_fit``; with fewer than 3 words the pipeline returns a fitness of 0.0, we return
no score (``status: "not available"``).
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np

from blalm.eval.data import CdiWord, TaskUnavailable
from blalm.eval.metrics import fit_curve, pearson, sigmoid4, sigmoid_crossing
from blalm.eval.scoring import encode_candidates, sequence_logprobs

CHANCE_VOCAB = 300_000   # the pipeline's "approximate_vocab" for the chance-level surprisal
THRESHOLD = 0.5


def aoa_words(cdi: Sequence[CdiWord]) -> list[str]:
    """The CDI words scored (the pipeline's ``load_eval`` keeps words longer than one character)."""
    return [w.word for w in cdi if len(w.word) > 1]


def aoa_word_surprisals(model: Any, tokenizer: Any, words: Sequence[str], batch_size: int = 64,
                        progress: bool = False) -> dict[str, float]:
    """``{word: −ln P(word | BOS)}`` for one checkpoint (natural log, as the pipeline)."""
    bos = tokenizer.bos_token
    if bos is None:
        raise TaskUnavailable("aoa: the tokenizer defines no BOS token (the AoA surprisal is taken after BOS)")
    words = [w.strip() for w in words]
    encoded = encode_candidates(tokenizer, [bos + w for w in words], words)
    logps = sequence_logprobs(model, encoded, batch_size=batch_size, progress=progress, desc="aoa")
    return {w: -lp for w, lp in zip(words, logps)}


def child_aoa(ages: Sequence[float], proportions: Sequence[float], threshold: float = THRESHOLD) -> float | None:
    """Age (months) at which the fitted share of children producing the word reaches ``threshold``."""
    x = np.asarray(ages, dtype=np.float64)
    y = np.asarray(proportions, dtype=np.float64)
    ok = ~np.isnan(y)
    x, y = x[ok], y[ok]
    if len(y) < 3:
        return None
    p = fit_curve(sigmoid4, x, y, p0=[1.0, 0.1, float(x.mean()), 0.0],
                  lower=[0.0, 0.0, float(x[0]), -0.5], upper=[2.0, 1.0, float(x[-1]), 0.5])
    if p is None:
        return None
    aoa = sigmoid_crossing(*p, level=threshold)
    if aoa is None or aoa < x[0] or aoa > x[-1]:
        return None
    return aoa


def model_aoa(steps: Sequence[float], surprisals: Sequence[float], threshold: float = THRESHOLD,
              approximate_vocab: float = CHANCE_VOCAB) -> float | None:
    """``log10(step + 1)`` at which the fitted surprisal curve is half way from chance to its minimum."""
    if len(steps) != len(surprisals):
        raise ValueError("steps and surprisals differ in length")
    s = np.asarray(steps, dtype=np.float64)
    v = np.asarray(surprisals, dtype=np.float64)
    ok = ~np.isnan(v)
    s, v = s[ok], v[ok]
    if len(v) < 3:
        return None
    chance = math.log2(approximate_vocab)
    level = -(chance - threshold * (chance - float(v.min())))
    neg = -v
    logs = np.log10(s + 1.0)
    p = fit_curve(sigmoid4, logs, neg, p0=[float(neg.max() - neg.min()), 1.0, float(logs.mean()), float(neg.min())])
    if p is None:
        return None
    log_aoa = sigmoid_crossing(*p, level=level)
    if log_aoa is None:
        return None
    step = 10.0 ** log_aoa - 1.0
    if step < s[0] or step > s[-1]:
        return None
    return log_aoa


def aoa_curve_fitness(surprisals_by_step: Mapping[float, Mapping[str, float]], cdi: Sequence[CdiWord]
                      ) -> dict[str, Any]:
    """Pearson's r between model and child AoA over the words where both are defined.

    ``surprisals_by_step``: ``{words seen at the checkpoint: {word: surprisal}}`` for ≥ 3 checkpoints.
    """
    steps = sorted(surprisals_by_step)
    if len(steps) < 3:
        return {"status": "not available",
                "reason": f"AoA needs word surprisals from at least 3 checkpoints of one run; got {len(steps)}"}
    by_word = {w.word: w for w in cdi}
    model_aoas, child_aoas, words = [], [], []
    for word in sorted({w for step in steps for w in surprisals_by_step[step]}):
        if word not in by_word:
            continue
        entry = by_word[word]
        c = child_aoa(entry.ages, entry.proportions)
        if c is None:
            continue
        pts = [(st, surprisals_by_step[st][word]) for st in steps if word in surprisals_by_step[st]]
        m = model_aoa([p[0] for p in pts], [p[1] for p in pts])
        if m is None:
            continue
        model_aoas.append(m)
        child_aoas.append(c)
        words.append(word)
    if len(words) < 3:
        return {"status": "not available", "n_words": len(words),
                "reason": f"only {len(words)} words have both a model and a child AoA (need 3)"}
    r = pearson(model_aoas, child_aoas)
    return {"status": "ok", "score": r * 100.0, "curve_fitness": r,
            "unit": "Pearson r x 100 between model AoA (log10 words) and child AoA (months)",
            "n_words": len(words), "steps": steps, "words": words,
            "model_aoa": model_aoas, "child_aoa": child_aoas}
