"""One zero-shot task on one model: the official predictions, blalm's score and the collated metric.

:func:`score_task` reads the task's data with ``blalm.eval.data``, scores every candidate with
``blalm.eval.tasks.score_items`` (``blalm.eval.reading.reading_surprisals`` for reading), and returns

* ``predictions`` — the task's ``predictions.json`` (``blalm.eval.predictions``);
* ``result`` — blalm's score, as ``blalm eval`` reports it (``accuracy_result``,
  ``entity_tracking_result``, ``wug_result``, ``reading_results``), for the model card;
* ``metric`` — what ``collate_preds.py`` computes from the predictions for ``fast_eval_results``.

A task whose data is absent raises ``blalm.eval.data.TaskUnavailable`` with the path looked for.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from blalm.eval.data import TaskUnavailable
from blalm.submit.layout import ENTITY_FAST_FALLBACK, ZeroShotTask


def task_data_path(eval_dir: Path, task: ZeroShotTask, suite: str) -> Path:
    """Where the task's data lies (the fast entity tracking falls back to the full regular split)."""
    path = eval_dir / task.data[suite]
    if task.name == "entity_tracking" and suite == "fast" and not path.is_dir():
        return eval_dir / ENTITY_FAST_FALLBACK
    return path


def score_task(model: Any, tokenizer: Any, task: ZeroShotTask, suite: str, eval_dir: Path,
               batch_size: int = 1024, progress: bool = False) -> dict[str, Any]:
    """``{"predictions", "result", "metric", "data", "n_items"}`` of one task (see the module docstring).
    Batches are formed as ``blalm eval`` forms them (its token budget for the device), so the
    scores are the very numbers ``blalm eval`` reports."""
    from blalm.eval.config import ENTITY_SPLITS, EWOK_PASSWORD, EvalConfig
    from blalm.eval.scoring import model_device
    from blalm.eval import data as d
    from blalm.eval import predictions as p
    from blalm.eval.reading import reading_results, reading_surprisals
    from blalm.eval.tasks import accuracy_result, entity_tracking_result, score_items, wug_result

    path = task_data_path(eval_dir, task, suite)
    kw = {"batching": EvalConfig(batch_size=batch_size).batching(model_device(model).type), "progress": progress}
    if task.name == "reading":
        rows = d.load_reading(path)
        pred, prev = reading_surprisals(model, tokenizer, rows, **kw)
        detail = reading_results(rows, pred, prev)
        return {"predictions": p.reading_predictions(pred, prev), "result": detail,
                "metric": p.reading_metric(detail), "data": str(path), "n_items": len(rows)}
    if task.name in ("blimp", "blimp_supplement"):
        items = d.load_minimal_pairs(path, task.name)
    elif task.name == "ewok":
        items = d.load_ewok(path, EWOK_PASSWORD)
    elif task.name == "entity_tracking":
        items = d.load_entity_tracking(path)
        if suite == "fast" and path.name != "entity_tracking_fast":
            items = [it for it in items if it.group.startswith("regular_")]
    elif task.name in ("wug_adj", "wug_past"):
        items = d.load_wug(path, EWOK_PASSWORD, task.name)
    elif task.name == "comps":
        items = p.load_comps(path)
    else:  # pragma: no cover - the table in layout.py names no other task
        raise TaskUnavailable(f"{task.name}: no scorer")
    scores = score_items(model, tokenizer, items, desc=f"{task.name} {suite}", **kw)
    if task.name in ("wug_adj", "wug_past"):
        predictions = p.wug_predictions(items, scores, task.name)
        return {"predictions": predictions, "result": wug_result(items, scores),
                "metric": p.wug_metric(predictions, items), "data": str(path), "n_items": len(items)}
    whole_sentence = task.name == "comps"
    predictions = p.ranking_predictions(items, scores, whole_sentence=whole_sentence)
    if task.name == "entity_tracking":
        result = entity_tracking_result(items, scores, ENTITY_SPLITS)
    else:
        result = accuracy_result(items, scores, "per_group")
    metric = p.target_accuracy_metric(predictions, items, whole_sentence=whole_sentence)
    return {"predictions": predictions, "result": result, "metric": metric, "data": str(path), "n_items": len(items)}
