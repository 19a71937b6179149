"""The collated submission file and the AoA surprisal file, as the official pipeline writes them.

:func:`collate_submission` builds what ``collate_preds.py --fast`` writes to
``results/NAME/all_full_preds_and_fast_scores_causal.json``: the full-suite predictions of ``main``
read back from ``results/`` (``blimp``, ``blimp_supplement``, ``ewok``, ``entity_tracking``,
``wug_adj``, ``wug_past``, ``comps``, ``reading``, ``aoa``, ``glue`` — GLUE's tasks merged into one
object, in the official order), then ``fast_eval_results``: per task the list, in revision order, of
each revision's collated metric (``blalm.eval.predictions``: per-uid accuracies as fractions, the WUG
Spearman rho, the reading ``{"spr", "rt"}``). What a run lacks is left out (never filled in): a
missing task has no key, a missing revision no entry in the lists; ``status.json`` and the README
name every piece that is missing.

:func:`aoa_surprisals` builds ``surprisal.json`` as ``AoA_word/run.py`` saves it (indent 2): one
result per revision, word and context, ``step`` the revision name and ``word_count`` its official
word count.
"""

from __future__ import annotations

import json
from typing import Any

from blalm.submit.layout import (FAST_TASKS, FULL_TASKS, GLUE_TASKS, MAIN, TRACK_REVISIONS, aoa_path,
                                 glue_predictions_path, predictions_path)
from blalm.submit.plan import Plan

FAST_KEYS = ("blimp", "blimp_supplement", "ewok", "entity_tracking", "wug_adj", "wug_past", "reading")


def _load(path) -> Any:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def collate_submission(plan: Plan, fast_metrics: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """``fast_metrics``: ``{revision: {task: metric}}`` for the revisions scored, any order."""
    full: dict[str, Any] = {}
    for task in FULL_TASKS:
        data = _load(predictions_path(plan.results, plan.name, MAIN, task, "full"))
        if data is not None:
            full[task.name] = data
    aoa = _load(aoa_path(plan.results, plan.name))
    if aoa is not None:
        full["aoa"] = aoa
    full["glue"] = {}
    for task in GLUE_TASKS:
        data = _load(glue_predictions_path(plan.results, plan.name, task))
        if data is not None:
            full["glue"] |= data
    fast: dict[str, list[Any]] = {key: [] for key in FAST_KEYS}
    for revision in TRACK_REVISIONS[plan.track]:
        metrics = fast_metrics.get(revision)
        if metrics is None or any(t.name not in metrics for t in FAST_TASKS):
            continue
        for task in FAST_TASKS:
            fast[task.name].append(metrics[task.name])
    full["fast_eval_results"] = fast
    return full


def aoa_surprisals(plan: Plan, pieces: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    """``surprisal.json`` from the revisions' AoA pieces (``{revision: piece}``), or None without the
    official word file."""
    from blalm.submit.layout import revision_words

    results = []
    for revision in TRACK_REVISIONS[plan.track]:
        piece = pieces.get(revision)
        if not piece or not piece.get("contexts"):
            continue
        for entry in piece["contexts"]:
            for i, (context, surprisal) in enumerate(zip(entry["contexts"], entry["surprisals"])):
                results.append({"step": revision, "word_count": revision_words(revision),
                                "target_word": entry["word"], "context_id": i, "context": context,
                                "surprisal": surprisal})
    if not results:
        return None
    steps = {r["step"] for r in results}
    return {"metadata": {"model_name": plan.name, "use_bos_only": False,
                         "total_steps": len(TRACK_REVISIONS[plan.track]), "completed_steps": len(steps)},
            "results": results}
