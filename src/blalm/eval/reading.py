"""Eye tracking and self-paced reading: how much model surprisal adds to a reading-time regression.

Follows the official pipeline's ``reading/run.py`` (same definitions in
``calculate_results_from_pred.py`` and ``collate_preds.py``), data of De Varda et al. (2023):

* **Surprisal** of each row's ``word`` after its context ``item``: ``pred = −ln P(word | item)``
  with ``P`` from ``get_p2`` (``reading/evaluation_functions.py``; see ``blalm.eval.scoring``:
  the word tokenized without a leading space, multi-token words as a product over re-tokenized
  extensions; we sum float32 log-probabilities where the pipeline multiplies softmax
  probabilities and takes ``−log``, the same number without underflow). ``prev_pred`` is the same for ``prev_word`` after ``prev_item``; missing (NaN) when
  the row has no previous word.
* **Eye tracking**: for each of ``RTfirstfix``, ``RTfirstpass``, ``RTgopast``, ``RTrightbound``,
  a baseline OLS ``RT ~ Subtlex_log10 + length + context_length`` plus their three pairwise
  interactions, and the same plus ``pred``; each regression on the rows where its variables are
  present. Per measure the score is ``(R²_model − R²_baseline) / (1 − R²_baseline) × 100``; the
  task's score is the mean over the four measures.
* **Self-paced reading**: target ``self_paced_reading_time``; baseline predictors
  ``Subtlex_log10, length, context_length, prev_length, prev_pred`` with all ten pairwise
  interactions (the spill-over model); the full model adds ``pred``. Same score.

Units: the pipeline reports these ×100 (the paper's "Eye" and "Reading" columns, e.g. 0.98 and
0.45). Note the score is the *relative* gain ``ΔR² / (1 − R²_baseline)``, not the plain ΔR²;
``delta_r2`` and both R² are kept per measure in the detail.
The pipeline's correlation table (EEG components) is not computed; it enters no score.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

from blalm.errors import InputError
from blalm.eval.batching import Batching
from blalm.eval.data import ReadingRow
from blalm.eval.metrics import predictive_power
from blalm.eval.scoring import next_token_logprobs, word_queries

EYE_MEASURES = ("RTfirstfix", "RTfirstpass", "RTgopast", "RTrightbound")
SPR_MEASURE = "self_paced_reading_time"
EYE_BASELINE = ("Subtlex_log10", "length", "context_length")
SPR_BASELINE = ("Subtlex_log10", "length", "context_length", "prev_length", "prev_pred")


@dataclass(frozen=True)
class ReadingQueries:
    """The next-token questions of the reading rows: ``queries[a:b]`` for each span, and which rows
    have a previous word (whose span follows the row's own)."""

    queries: tuple[tuple[tuple[int, ...], int], ...]
    spans: tuple[tuple[int, int], ...]
    has_prev: tuple[bool, ...]


def reading_queries(tokenizer: Any, rows: Sequence[ReadingRow], prepend_bos: bool = False) -> ReadingQueries:
    """Tokenize every row's word after its context, and its previous word after the previous context."""
    spans: list[tuple[int, int]] = []
    queries: list[tuple[tuple[int, ...], int]] = []

    def add(context: str, word: str, where: str) -> None:
        try:
            steps = word_queries(tokenizer, context, word, prepend_bos)
        except ValueError as exc:
            raise InputError(f"{where}: {exc}") from None
        spans.append((len(queries), len(queries) + len(steps)))
        queries.extend(steps)

    for row in rows:
        add(row.item, row.word, row.source)
        if row.prev_item is not None:
            add(row.prev_item, row.prev_word or "", row.source)
    return ReadingQueries(tuple(queries), tuple(spans), tuple(r.prev_item is not None for r in rows))


def reading_surprisals(model: Any, tokenizer: Any, rows: Sequence[ReadingRow], batch_size: int = 64,
                       prepend_bos: bool = False, progress: bool = False, batching: Batching | None = None,
                       prepared: ReadingQueries | None = None
                       ) -> tuple[list[float], list[float]]:
    """``(pred, prev_pred)``: each row's word surprisal and its previous word's (NaN when none), in nats.
    ``prepared``: :func:`reading_queries` of ``rows`` when the caller already has it."""
    prepared = prepared or reading_queries(tokenizer, rows, prepend_bos)
    logps = next_token_logprobs(model, prepared.queries, batch_size=batch_size, progress=progress,
                                desc="reading", batching=batching)
    surprisals = [-math.fsum(logps[a:b]) for a, b in prepared.spans]
    pred, prev, k = [], [], 0
    for hp in prepared.has_prev:
        pred.append(surprisals[k])
        k += 1
        if hp:
            prev.append(surprisals[k])
            k += 1
        else:
            prev.append(math.nan)
    return pred, prev


def reading_results(rows: Sequence[ReadingRow], pred: Sequence[float], prev_pred: Sequence[float]
                    ) -> dict[str, dict[str, Any]]:
    """``{"eye_tracking": ..., "self_paced_reading": ...}`` from the surprisals (pure)."""
    col = {name: [r.values[name] for r in rows] for name in rows[0].values}
    col["pred"] = list(pred)
    col["prev_pred"] = list(prev_pred)
    eye = {m: predictive_power(col[m], {b: col[b] for b in EYE_BASELINE}, col["pred"]) for m in EYE_MEASURES}
    spr = predictive_power(col[SPR_MEASURE], {b: col[b] for b in SPR_BASELINE}, col["pred"])
    unit = "(R2_model - R2_baseline) / (1 - R2_baseline) x 100"
    return {
        "eye_tracking": {"status": "ok", "score": sum(v["score"] for v in eye.values()) / len(eye),
                         "unit": unit + ", mean over the 4 eye-tracking measures",
                         "n_rows": len(rows), "per_measure": eye},
        "self_paced_reading": {"status": "ok", "score": spr["score"], "unit": unit + " (spill-over baseline)",
                               "n_rows": len(rows), "per_measure": {SPR_MEASURE: spr}},
    }
