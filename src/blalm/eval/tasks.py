"""Zero-shot ranking tasks: BLiMP, BLiMP supplement, EWoK, entity tracking, WUG.

Every task is "score each candidate, compare" (official pipeline, ``sentence_zero_shot/``):

* **BLiMP, supplement, EWoK** — accuracy per group (paradigm file/UID, supplement file, EWoK
  domain), then the unweighted mean over groups (``run.py`` ``process_results``), in percent.
* **Entity tracking** — accuracy per ``{split}_{numops}_ops`` group, mean over the groups of each
  split, then the mean over the three splits (``run.py`` ``process_results``).
* **WUG** (adjective nominalisation, past tense) — the model's preference for candidate 0 is the
  softmax of the candidates' summed log-probabilities (``compute_results.py``
  ``rank_and_evaluate_wug``); the score is Spearman's rho between it and the human ``ratio``. We
  report it ×100 as ``calculate_results_from_pred.py`` and the paper's App. H do; the raw rho is
  kept beside it.

Ties: the pipeline predicts ``torch.max``'s first maximum and the correct candidate is always
first, so a tie counts as correct. Every result carries both ``score`` (ties correct, as the
pipeline) and ``score_ties_wrong``, and the number of ties.
"""

from __future__ import annotations

from typing import Any, Sequence

from blalm.eval.data import RankingItem
from blalm.eval.metrics import (count_by_group, entity_tracking_average, judge, macro_accuracy,
                                softmax_first, spearman)
from blalm.eval.batching import Batching
from blalm.eval.scoring import Encoded, encode_candidates, sequence_logprobs


def encode_items(tokenizer: Any, items: Sequence[RankingItem], prepend_bos: bool = False) -> list[Encoded]:
    """Every candidate of every item, tokenized (``scoring.encode_candidates``), item by item."""
    sentences = [s for it in items for s in it.sentences]
    completions = [c for it in items for c in it.completions]
    return encode_candidates(tokenizer, sentences, completions, prepend_bos)


def score_items(model: Any, tokenizer: Any, items: Sequence[RankingItem], batch_size: int = 64,
                prepend_bos: bool = False, progress: bool = False, desc: str = "scoring",
                batching: Batching | None = None,
                encoded: Sequence[Encoded] | None = None) -> list[tuple[float, ...]]:
    """Each item's candidates' summed log-probabilities (``scoring.sequence_logprobs``);
    ``encoded``: :func:`encode_items` of ``items`` when the caller already has it."""
    if encoded is None:
        encoded = encode_items(tokenizer, items, prepend_bos)
    flat = sequence_logprobs(model, encoded, batch_size=batch_size, progress=progress, desc=desc,
                             batching=batching)
    out, k = [], 0
    for it in items:
        n = len(it.sentences)
        out.append(tuple(flat[k:k + n]))
        k += n
    return out


def accuracy_result(items: Sequence[RankingItem], scores: Sequence[Sequence[float]],
                    group_key: str = "per_group") -> dict[str, Any]:
    """Macro-averaged accuracy (BLiMP, supplement, EWoK) with per-group detail."""
    choices = [judge(s) for s in scores]
    counts = count_by_group([it.group for it in items], choices)
    return {
        "status": "ok",
        "score": macro_accuracy(counts, ties_correct=True),
        "score_ties_wrong": macro_accuracy(counts, ties_correct=False),
        "unit": "accuracy (%), macro average over groups",
        "n_items": len(items), "n_ties": sum(c.tie for c in choices), "n_groups": len(counts),
        group_key: {g: c.as_dict() for g, c in counts.items()},
    }


def entity_tracking_result(items: Sequence[RankingItem], scores: Sequence[Sequence[float]],
                           splits: Sequence[str]) -> dict[str, Any]:
    """Mean over splits of the mean over each split's ``numops`` groups."""
    choices = [judge(s) for s in scores]
    counts = count_by_group([it.group for it in items], choices)
    score, per_split = entity_tracking_average(counts, splits, ties_correct=True)
    strict, per_split_strict = entity_tracking_average(counts, splits, ties_correct=False)
    return {
        "status": "ok", "score": score, "score_ties_wrong": strict,
        "unit": "accuracy (%), mean over splits of the mean over numops groups",
        "n_items": len(items), "n_ties": sum(c.tie for c in choices),
        "per_split": per_split, "per_split_ties_wrong": per_split_strict,
        "per_group": {g: c.as_dict() for g, c in counts.items()},
    }


def wug_result(items: Sequence[RankingItem], scores: Sequence[Sequence[float]]) -> dict[str, Any]:
    """Spearman's rho (×100) between the model's softmax preference for candidate 0 and ``ratio``."""
    model_ratio = [softmax_first(s) for s in scores]
    human = [float(it.ratio) for it in items]  # type: ignore[arg-type]
    rho = spearman(model_ratio, human)
    result: dict[str, Any] = {
        "status": "ok", "score": rho * 100.0, "spearman": rho,
        "unit": "Spearman rho x 100 (model P(candidate 0) vs human ratio)",
        "n_items": len(items), "n_first_preferred": sum(p > 0.5 for p in model_ratio),
    }
    if rho != rho:  # NaN: the model's preferences (or the ratios) are all equal
        result.update(status="skipped", score=None, spearman=None,
                      reason="Spearman's rho is undefined: the model's preferences are all equal")
    return result
