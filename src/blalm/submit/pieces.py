"""The pieces of a submission, each written atomically and marked complete, so a re-run does only
what is missing:

* :func:`export_revision` — a revision's branch of the model repository (done when the branch's
  commit message names the same checkpoint);
* :func:`score_revision` — every zero-shot task of one revision (``predictions.json`` in the
  official layout, then ``work/scores/<revision>/<task>.json`` with blalm's score and the collated
  metric, whose ``key`` names the checkpoint, the suite, the data and the scoring precision; a task
  is done when both files are there with the same key), and the revision's AoA surprisals
  (``work/aoa/<revision>.json``);
* :func:`glue` — the (Super)GLUE predictions of ``main`` (``blalm finetune``, which resumes itself;
  an earlier ``blalm finetune`` of the same checkpoint with the same settings is reused).

The model of a revision is loaded only when one of its pieces is missing.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Callable

from blalm.atomic import read_json, write_json_atomic, write_text_atomic
from blalm.eval.data import TaskUnavailable
from blalm.submit.layout import CDI_FILE, GLUE_TASKS, ZeroShotTask, glue_predictions_path, predictions_path
from blalm.submit.plan import Plan
from blalm.submit.repo import branch_commit, commit_folder, commit_message, show_file

Log = Callable[[str], None]


def write_official_json(path: Path, data: Any) -> None:
    """JSON as the official pipeline writes it (``json.dump``: one line, NaN allowed), atomically."""
    write_text_atomic(path, json.dumps(data))


def checkpoint_line(ckpt: dict[str, Any]) -> str:
    return f"Checkpoint: {ckpt['name']} (step {ckpt['step']}, {ckpt['words_seen']:,} words seen)"


def revision_message(revision: str, ckpt: dict[str, Any]) -> str:
    return f"{revision}\n\n{checkpoint_line(ckpt)}\nMade by blalm submit."


def export_revision(plan: Plan, branch: str, ckpt: dict[str, Any], extra: dict[str, str] | None = None) -> str:
    """Export ``ckpt`` (plus ``extra`` files, e.g. the model card) and commit it as ``branch``."""
    import shutil

    from blalm.model.export import export_hf

    message = revision_message(branch, ckpt)
    existing = branch_commit(plan.repo, branch)
    if existing is not None and commit_message(plan.repo, existing) == message \
            and all(show_file(plan.repo, existing, name) == text for name, text in (extra or {}).items()):
        return existing
    folder = plan.work / "export" / branch
    shutil.rmtree(folder, ignore_errors=True)
    export_hf(ckpt["path"], folder)
    for name, text in (extra or {}).items():
        (folder / name).write_text(text, encoding="utf-8")
    commit = commit_folder(plan.repo, folder, branch, message, plan.git_date)
    shutil.rmtree(folder, ignore_errors=True)
    return commit


def score_key(ckpt: dict[str, Any], suite: str, data: str) -> dict[str, Any]:
    return {"checkpoint": ckpt["name"], "step": ckpt["step"], "suite": suite, "data": data}


def scoring_precision(plan: Plan) -> str:
    """The precision the zero-shot tasks are scored in (``--precision`` as it resolves on ``--device``)."""
    from blalm.run.device import resolve_device, resolve_precision

    return resolve_precision(plan.cfg.precision, resolve_device(plan.cfg.device))


def zero_shot_key(plan: Plan, ckpt: dict[str, Any], task: ZeroShotTask, suite: str, precision: str) -> dict[str, Any]:
    """What a task's scores depend on: the checkpoint, the suite, the data and the precision (bf16
    scores are never reused for an fp32 request, nor the other way round)."""
    from blalm.submit.scoring import task_data_path

    return {**score_key(ckpt, suite, str(task_data_path(plan.eval_dir, task, suite))), "precision": precision}


def sidecar_path(plan: Plan, revision: str, task: str) -> Path:
    return plan.work / "scores" / revision / f"{task}.json"


def done_score(plan: Plan, revision: str, task: ZeroShotTask, suite: str, key: dict[str, Any]) -> dict | None:
    side = read_json(sidecar_path(plan, revision, task.name))
    if side and side.get("key") == key and predictions_path(plan.results, plan.name, revision, task, suite).is_file():
        return side
    return None


class LazyModel:
    """The revision's (model, tokenizer), loaded on first use."""

    def __init__(self, plan: Plan, path: str):
        self.plan, self.path, self.pair = plan, path, None

    def get(self) -> tuple[Any, Any]:
        if self.pair is None:
            from blalm.eval.loading import load_for_eval
            from blalm.run.device import resolve_device

            self.pair = load_for_eval(self.path, device=str(resolve_device(self.plan.cfg.device)))
        return self.pair


def score_revision(plan: Plan, revision: str, ckpt: dict[str, Any], suite: str, tasks: tuple[ZeroShotTask, ...],
                   model: LazyModel, log: Log) -> dict[str, dict[str, Any]]:
    """Every task of one revision: ``{task: {"status": "ok", ...sidecar} | {"status": "missing", "reason"}}``."""
    from blalm.run.device import precision_context
    from blalm.submit.scoring import score_task

    precision = scoring_precision(plan)
    out: dict[str, dict[str, Any]] = {}
    for task in tasks:
        key = zero_shot_key(plan, ckpt, task, suite, precision)
        side = done_score(plan, revision, task, suite, key)
        if side is None:
            lm, tok = model.get()
            try:
                with precision_context(next(lm.parameters()).device, precision):
                    res = score_task(lm, tok, task, suite, plan.eval_dir, plan.cfg.batch_size, plan.cfg.progress)
            except TaskUnavailable as exc:      # an earlier run's files of this task are not kept
                predictions_path(plan.results, plan.name, revision, task, suite).unlink(missing_ok=True)
                sidecar_path(plan, revision, task.name).unlink(missing_ok=True)
                out[task.name] = {"status": "missing", "reason": str(exc)}
                continue
            write_official_json(predictions_path(plan.results, plan.name, revision, task, suite), res.pop("predictions"))
            side = {"key": key, **res}
            write_json_atomic(sidecar_path(plan, revision, task.name), side)
            log(f"{revision} {task.name}: {_score_text(res['result'])}")
        out[task.name] = {"status": "ok", **side}
    return out


def _score_text(result: dict[str, Any]) -> str:
    if "eye_tracking" in result:
        return f"eye {result['eye_tracking']['score']:.2f}, reading {result['self_paced_reading']['score']:.2f}"
    return f"{result['score']:.2f}" if result.get("score") is not None else result.get("reason", "no score")


def score_aoa(plan: Plan, revision: str, ckpt: dict[str, Any], model: LazyModel) -> dict[str, Any]:
    """The revision's AoA word surprisals: after BOS for the Wordbank CDI words (blalm's AoA) and,
    with the official word file, after each of its contexts (``surprisal.json``)."""
    from blalm.eval.aoa import aoa_word_surprisals, aoa_words
    from blalm.eval.data import load_cdi
    from blalm.eval.predictions import aoa_context_surprisals, load_aoa_word_file
    from blalm.run.device import precision_context

    path = plan.work / "aoa" / f"{revision}.json"
    precision = scoring_precision(plan)
    key = {**score_key(ckpt, "aoa", str(plan.eval_dir / CDI_FILE)), "word_file": str(plan.aoa_words or ""),
           "precision": precision}
    piece = read_json(path)
    if piece and piece.get("key") == key:
        return piece
    lm, tok = model.get()
    piece = {"key": key, "bos_only": None, "contexts": None}
    with precision_context(next(lm.parameters()).device, precision):   # as the zero-shot tasks
        try:
            piece["bos_only"] = aoa_word_surprisals(lm, tok, aoa_words(load_cdi(plan.eval_dir / CDI_FILE)),
                                                    plan.cfg.batch_size)
        except TaskUnavailable as exc:
            piece["bos_only_reason"] = str(exc)
        if plan.aoa_words is not None:
            words = load_aoa_word_file(plan.aoa_words)
            surprisals = aoa_context_surprisals(lm, tok, words, plan.cfg.batch_size)
            piece["contexts"] = [{"word": w, "contexts": c, "surprisals": s} for (w, c), s in zip(words, surprisals)]
    write_json_atomic(path, piece)
    return piece


# ---------------------------------------------------------------------------------------------
# GLUE
# ---------------------------------------------------------------------------------------------

AUTO_GLUE_JOBS_CUDA = 3   # glue_jobs = 0 on CUDA: a small model's fine-tuning steps leave a GPU mostly idle
# On CUDA the fine-tuning is compiled unless --finetune-set compile=false: on one H200 the 34M recipe
# model's MultiRC step ran 15.2 steps/s compiled against 7.0 eager after ~2 min of compilation per
# process (docs/results/glue_h100.md), and the protocol's 25,680 steps are ~1 h eager.


def finetune_config(plan: Plan, tasks: list[str]):
    """The ``blalm finetune`` settings of the submission: ``--finetune-set`` items, the main
    checkpoint, ``tasks``, the GLUE data, and ``jobs`` from ``--glue-jobs`` (0 = auto:
    :data:`AUTO_GLUE_JOBS_CUDA` when the fine-tuning device resolves to CUDA, else 1). On CUDA
    ``compile`` is on unless a ``--finetune-set compile=...`` item says otherwise."""
    from blalm.config import from_dict, parse_override, set_dotted
    from blalm.finetune.config import FinetuneConfig
    from blalm.run.device import resolve_device

    data: dict[str, Any] = {}
    for item in plan.cfg.finetune:
        key, value = parse_override(item)
        set_dotted(data, key, value)
    data.update(model=str(Path(plan.main["path"]).resolve()), tasks=tasks, data_dir=str(plan.glue_dir),
                progress=plan.cfg.progress)
    data.setdefault("device", plan.cfg.device)
    cuda = resolve_device(data["device"]).type == "cuda"
    data.setdefault("compile", cuda)
    cfg = from_dict(FinetuneConfig, data, where="--finetune-set")
    return dataclasses.replace(cfg, jobs=plan.cfg.glue_jobs or (AUTO_GLUE_JOBS_CUDA if cuda else 1))


def reusable_finetune(folder: Path, cfg: Any, task: str) -> dict[str, Any] | None:
    """The task's result in a 'blalm finetune' folder run with the same settings on the same model."""
    from blalm.finetune.config import RESUMABLE_KEYS
    from blalm.finetune.layout import RESULTS_FILE, task_settings
    from blalm.run.layout import CONFIG_FILE
    from blalm.finetune.tasks import TASKS
    from blalm.run.resume import config_differences

    old, result = read_json(folder / task / CONFIG_FILE), read_json(folder / task / RESULTS_FILE)
    if not old or not result or result.get("status") != "ok":
        return None
    same = not config_differences(old, task_settings(cfg, TASKS[task]), free=frozenset(RESUMABLE_KEYS))
    return result if same else None


def valid_size(glue_dir: Path, task: str) -> int | None:
    from blalm.finetune.tasks import count_examples, task_file

    path = task_file(glue_dir, task, "valid")
    return None if path is None else count_examples(path)


def glue(plan: Plan, log: Log) -> dict[str, dict[str, Any]]:
    """The GLUE predictions of ``main``: ``{task: {"status": "ok", "score", ...} | {"status": "missing", ...}}``."""
    from blalm.eval.predictions import glue_predictions
    from blalm.finetune.layout import RESULTS_FILE
    from blalm.finetune.run import finetune

    if not plan.glue_dir.is_dir():
        for t in GLUE_TASKS:
            glue_predictions_path(plan.results, plan.name, t).unlink(missing_ok=True)
        return {t: {"status": "missing", "reason": f"GLUE data folder not found: {plan.glue_dir} (give --glue-data)"}
                for t in GLUE_TASKS}
    cfg = finetune_config(plan, list(GLUE_TASKS))
    earlier = Path(plan.cfg.glue_results).expanduser() if plan.cfg.glue_results else plan.run_dir / "glue"
    work = plan.work / "glue"
    results = {t: reusable_finetune(earlier, cfg, t) for t in GLUE_TASKS}
    todo = [t for t in GLUE_TASKS if results[t] is None]
    reasons: dict[str, str] = {}
    if todo:
        report = finetune(dataclasses.replace(cfg, tasks=todo), work, log=log)
        for t in todo:
            results[t] = read_json(work / t / RESULTS_FILE)
            reasons[t] = report["tasks"][t].get("reason", "")
    out: dict[str, dict[str, Any]] = {}
    for t in GLUE_TASKS:
        res, size = results[t], valid_size(plan.glue_dir, t)
        glue_predictions_path(plan.results, plan.name, t).unlink(missing_ok=True)   # written again when ok
        if not res or res.get("status") != "ok":
            out[t] = {"status": "missing", "reason": reasons.get(t) or "fine-tuning gave no result"}
        elif len(res["predictions"]) != size:
            out[t] = {"status": "missing", "reason": f"the predictions cover {len(res['predictions'])} of the "
                                                     f"{size} examples of the valid file (max_valid)"}
        else:
            log(f"glue {t}: {'reused from ' + str(earlier) if t not in todo else 'fine-tuned in ' + str(work)}")
            write_official_json(glue_predictions_path(plan.results, plan.name, t), glue_predictions(t, res["predictions"]))
            out[t] = {"status": "ok", "score": res["score"], "metric": res.get("metric_for_valid"),
                      **{k: res[k] for k in ("accuracy", "f1", "mcc", "best_epoch", "epochs") if k in res}}
    return out
