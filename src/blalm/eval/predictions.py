"""Per-item predictions in the official BabyLM 2025 pipeline's ``predictions.json`` formats, from
blalm's own scorer, and the numbers the official ``collate_preds.py`` computes back from them.

The formats (official ``sentence_zero_shot/compute_results.py``, ``reading/run.py``, ``finetune/run.py``,
``AoA_word/evaluation_functions.py``; read, not copied):

* **Ranking tasks** (BLiMP, supplement, EWoK, entity tracking, COMPS): ``{uid: {"predictions":
  [{"id": f"{uid}_{k}", "pred": TEXT}, ...]}}``, one entry per item in data order, ``k`` counting
  the items of that uid. The uid is the BLiMP ``UID``, the supplement's file name, the EWoK
  ``Domain``, ``{split}_{numops}_ops`` for entity tracking, the COMPS subset. ``TEXT`` is the chosen
  candidate's completion (the whole sentence for BLiMP, ``" " + Target`` for EWoK, the option for
  entity tracking); COMPS predicts the whole chosen sentence. The choice is the first maximum of the
  candidates' summed log-probabilities (``torch.max``), so a tie picks the correct candidate 0.
* **WUG**: the same with uid = the task name (``wug_adj``, ``wug_past``) and ``"prob"``, the softmax
  probability of candidate 0 over the candidates' log-probabilities.
* **Reading**: ``{"reading": {"predictions": [{"id": ROW, "pred": SURPRISAL, "prev_pred": SURPRISAL
  or NaN}]}}``, in nats, one entry per CSV row (NaN is written as JSON's ``NaN``, as ``json.dump`` does).
* **GLUE**: ``{task: {"predictions": [{"id": f"{task}_{i}", "pred": LABEL}]}}`` in valid-file order.
* **AoA**: ``surprisal.json`` with ``metadata`` and ``results``: per checkpoint, word and context
  ``{"step", "word_count", "target_word", "context_id", "context", "surprisal"}``. The official run
  (``eval_aoa.sh``) scores the word after each of its contexts from the word file
  ``cdi_childes.json`` (``{word: [{"context": ...}, ...]}``; words of one character are skipped):
  the text ``context.strip() + " " + word`` tokenized with the tokenizer's special tokens, the
  summed ``-ln P`` of the tokens overlapping the word (:func:`aoa_context_surprisals`).

COMPS (``{prefix_acceptable, prefix_unacceptable, property_phrase}`` records in ``comps_base``,
``comps_wugs``, ``comps_wugs_dist-before`` and ``comps_wugs_dist-in_between``) is read by
:func:`load_comps` as the official ``decode_comps`` reads it; its data is not in ../shared/data.

The ``*_metric`` functions compute what ``collate_preds.py`` puts in ``fast_eval_results``: the
share of items whose prediction (stripped) equals the correct candidate's completion, per uid
(entity tracking likewise, over the regular split; COMPS: the correct whole sentence, as the
official ``calculate_results_from_pred.py`` scores it); Spearman's rho between ``prob`` and the human
ratio (WUG); and the reading ΔR² ratios ``{"spr", "rt"}`` (not ×100).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from blalm.errors import InputError
from blalm.eval.data import RankingItem, TaskUnavailable, jsonl_files, need, read_jsonl_file
from blalm.eval.metrics import softmax_first, spearman

COMPS_SUBSETS = {"comps_base": "base", "comps_wugs": "wugs", "comps_wugs_dist-before": "wugs_dist_before"}
COMPS_OTHER_SUBSET = "wugs_dist_in_between"   # the official decode_comps: every other file name


def chosen_index(scores: Sequence[float]) -> int:
    """The first candidate with the highest score (``torch.max``'s index)."""
    best = max(scores)
    return next(i for i, s in enumerate(scores) if s == best)


def ranking_predictions(items: Sequence[RankingItem], scores: Sequence[Sequence[float]],
                        uid: str | None = None, whole_sentence: bool = False) -> dict[str, Any]:
    """``{uid: {"predictions": [...]}}`` (see the module docstring); ``uid`` replaces each item's
    group (WUG), ``whole_sentence`` predicts the sentence instead of the completion (COMPS)."""
    out: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for item, item_scores in zip(items, scores, strict=True):
        key = uid or item.group
        k = chosen_index(item_scores)
        rows = out.setdefault(key, {"predictions": []})["predictions"]
        text = item.sentences[k] if whole_sentence else item.completions[k]
        rows.append({"id": f"{key}_{len(rows)}", "pred": text})
    return out


def wug_predictions(items: Sequence[RankingItem], scores: Sequence[Sequence[float]], task: str) -> dict[str, Any]:
    """The WUG predictions (uid = ``task``) with the probability of candidate 0."""
    out = ranking_predictions(items, scores, uid=task)
    for row, item_scores in zip(out[task]["predictions"], scores, strict=True):
        row["prob"] = softmax_first(item_scores)
    return out


def reading_predictions(pred: Sequence[float], prev_pred: Sequence[float]) -> dict[str, Any]:
    return {"reading": {"predictions": [{"id": i, "pred": float(p), "prev_pred": float(q)}
                                        for i, (p, q) in enumerate(zip(pred, prev_pred, strict=True))]}}


def glue_predictions(task: str, labels: Sequence[int]) -> dict[str, Any]:
    return {task: {"predictions": [{"id": f"{task}_{i}", "pred": int(y)} for i, y in enumerate(labels)]}}


# ---------------------------------------------------------------------------------------------
# What collate_preds.py computes from the predictions (fast_eval_results)
# ---------------------------------------------------------------------------------------------

def _rows_by_uid(predictions: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    return {uid: block["predictions"] for uid, block in predictions.items()}


def target_accuracy_metric(predictions: dict[str, Any], items: Sequence[RankingItem],
                           uid: str | None = None, whole_sentence: bool = False) -> dict[str, float]:
    """Per uid, the share of items whose stripped prediction is the correct candidate's completion
    (``whole_sentence``: the correct sentence, as the official pipeline scores COMPS)."""
    gold: dict[str, list[str]] = {}
    for item in items:
        text = item.sentences[0] if whole_sentence else item.completions[0]
        gold.setdefault(uid or item.group, []).append(text.strip())
    out = {}
    for key, rows in _rows_by_uid(predictions).items():
        pairs = list(zip(rows, gold.get(key, [])))
        out[key] = sum(str(r["pred"]).strip() == g for r, g in pairs) / len(pairs)
    return out


def wug_metric(predictions: dict[str, Any], items: Sequence[RankingItem]) -> dict[str, float]:
    """Per uid, Spearman's rho between the predictions' ``prob`` and the items' human ratios."""
    out = {}
    for key, rows in _rows_by_uid(predictions).items():
        pairs = list(zip(rows, items))
        out[key] = spearman([r["prob"] for r, _ in pairs], [float(it.ratio) for _, it in pairs])
    return out


def reading_metric(detail: dict[str, dict[str, Any]]) -> dict[str, float]:
    """``{"spr", "rt"}`` from :func:`blalm.eval.reading.reading_results`'s per-measure R²."""
    def ratio(m: dict[str, Any]) -> float:
        return (m["r2_model"] - m["r2_baseline"]) / (1 - m["r2_baseline"])

    eye = [ratio(m) for m in detail["eye_tracking"]["per_measure"].values()]
    spr = ratio(next(iter(detail["self_paced_reading"]["per_measure"].values())))
    return {"spr": spr, "rt": sum(eye) / len(eye)}


# ---------------------------------------------------------------------------------------------
# COMPS and the AoA word file (data the official pipeline reads that blalm.eval.data does not)
# ---------------------------------------------------------------------------------------------

def load_comps(folder: Path) -> list[RankingItem]:
    """COMPS from every ``*.jsonl`` of ``folder``: candidates ``prefix_acceptable + " " + phrase`` and
    ``prefix_unacceptable + " " + phrase``, the phrase scored; group = the subset of the file name."""
    items = []
    for path in jsonl_files(Path(folder), "comps"):
        group = COMPS_SUBSETS.get(path.stem, COMPS_OTHER_SUBSET)
        for lineno, obj in read_jsonl_file(path):
            where = f"{path}:{lineno}"
            need(obj, ("prefix_acceptable", "prefix_unacceptable", "property_phrase"), where)
            phrase = obj["property_phrase"]
            good, bad = f"{obj['prefix_acceptable']} {phrase}", f"{obj['prefix_unacceptable']} {phrase}"
            items.append(RankingItem(group=group, sentences=(good, bad), completions=(phrase, phrase), source=where))
    return items


def load_aoa_word_file(path: Path) -> list[tuple[str, list[str]]]:
    """``(word, contexts)`` of the official AoA word file (``cdi_childes.json``), words longer than
    one character, in file order (``AoA_word/eval_util.py`` ``load_eval``, ``min_context`` 0 as
    ``eval_aoa.sh`` runs it)."""
    path = Path(path)
    if not path.is_file():
        raise TaskUnavailable(f"AoA word file not found: {path} (the official cdi_childes.json, "
                              f"https://osf.io/ryjfm/)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected an object {{word: [{{\"context\": ...}}, ...]}}")
    out = []
    for word, entries in data.items():
        if len(word) <= 1:
            continue
        if not isinstance(entries, list) or not all(isinstance(e, dict) and isinstance(e.get("context"), str)
                                                    for e in entries):
            raise InputError(f"{path}: the entry of {word!r} must be a list of {{\"context\": TEXT}} objects")
        out.append((word, [e["context"] for e in entries]))
    return out


def aoa_context_surprisals(model: Any, tokenizer: Any, words: Sequence[tuple[str, list[str]]],
                           batch_size: int = 64, progress: bool = False) -> list[list[float]]:
    """``-ln P(word | context)`` for every context of every word (see the module docstring)."""
    from blalm.eval.scoring import encode_candidates, sequence_logprobs

    texts, targets = [], []
    for word, contexts in words:
        w = word.strip()
        for context in contexts:
            texts.append(context.strip() + " " + w)
            targets.append(w)
    logps = sequence_logprobs(model, encode_candidates(tokenizer, texts, targets), batch_size=batch_size,
                              progress=progress, desc="aoa")
    out, k = [], 0
    for _, contexts in words:
        out.append([-logps[k + i] for i in range(len(contexts))])
        k += len(contexts)
    return out
