"""``finetune(cfg, out_dir)``: fine-tune a pretrained model on each task and write the results.

MODEL is a blalm checkpoint folder or a Hugging Face causal-LM folder (an exported blalm model or
any ``AutoModelForCausalLM`` folder with a fast tokenizer), loaded in float32 by the evaluation
stage's :func:`blalm.eval.loading.load_for_eval`. A blalm model (either form) is fine-tuned as the
blalm decoder itself; another model as its Hugging Face base model (``model.base_model``).

Per task ``T`` the run folder ``OUT/T/`` is a small training run of the training stage's kind:
``config.json`` (the resolved settings of this task), ``run_info.json``, ``metrics.jsonl`` (``setup``,
``train`` records every ``log_every`` steps, ``valid`` after every epoch, ``resume``, ``eval``),
``checkpoints/`` written atomically by :func:`blalm.train.checkpoint.save_checkpoint` at every epoch
end, every ``save_every`` steps and the end (the fine-tuned decoder as ``model.safetensors`` +
``model_config.json`` + tokenizer, so ``load_model`` reads it when the model is a blalm one; the
head as ``head.safetensors``; the AdamW state; ``state.json`` with the step, the RNG states and
the per-epoch validation records; only the latest folder is kept unless ``keep_all_checkpoints``),
and ``results.json`` once the last epoch is done. ``OUT/results.json`` gathers every task and the
GLUE score.

**Validation and the reported score (as the official pipeline).** After every epoch the model is
scored on the task's ``valid`` file (accuracy; F1 and MCC for binary tasks). The task's result is
the epoch with the best validation metric (``metric_for_valid``: F1 for MRPC and QQP, accuracy
otherwise; the earliest epoch wins a tie): its scores and predictions. Every epoch's scores are
kept in the result (``per_epoch``). The official pipeline evaluates on the same ``valid`` files
(its predict data is the valid file), so the reported score is the best epoch's validation
score. The checkpoint holds the last epoch's weights, not the best epoch's.

Re-running the same command resumes: a task with ``results.json`` is done; a task with a checkpoint
continues from ``checkpoints/latest`` with its per-epoch records. On CPU a killed and resumed run
ends with the same weights, per-epoch scores and predictions as an uninterrupted one: the example
order of each epoch is a pure function of (seed, epoch), the learning rate of the step, the
checkpoint holds weights, optimizer state and RNG states, and validation draws no random numbers.

Optimizer: AdamW over every parameter (decoder and head), peak ``lr`` (3e-5), weight decay on 2-D
weights, the training stage's schedule (warm-up, then cosine decay), gradient clipping at
``grad_clip``. Loss: cross-entropy of the head's logits (float32). On CUDA the forward runs under
``precision`` (bf16 autocast by default; weights and optimizer state stay float32); on the CPU in
float32.

**Speed (GPU).** The training loop reads nothing back from the GPU between log records (batches go
over through pinned memory without blocking, the loss is summed on the device, the head's
last-token gather needs no check there), so the host queues steps ahead of the GPU. The valid file
is scored in batches of similar length (sorted by length; predictions come back in file order),
``eval_batch`` examples each (0 = auto: 128 on CUDA, 32 on the CPU). ``compile`` (``--compile``)
compiles each decoder block with ``torch.compile(dynamic=True)`` (regional compilation, see
:func:`blalm.finetune.head.compile_backbone`; a Hugging Face base model's ``layers``/``h`` blocks,
else it stays eager) and rounds batch widths up to whole mLSTM chunks, which keeps the compiled
graphs to one per chunk count for training and one for validation. It changes no math: compiled
and eager runs agree to float rounding, and a run may be resumed with the other setting.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from blalm.atomic import write_json_atomic
from blalm.config import to_dict
from blalm.errors import BlalmError, InputError
from blalm.finetune.config import RESUMABLE_KEYS, FinetuneConfig
from blalm.finetune.head import SequenceClassifier, compile_backbone, is_blalm_decoder, pad_batch, width_multiple
from blalm.finetune.metrics import accuracy, binary_f1, binary_mcc
from blalm.finetune.tasks import TASKS, Task, TaskUnavailable, encode, load_task
from blalm.runinfo import run_info
from blalm.model.checkpoint import TOKENIZER_FILES
from blalm.train import checkpoint as ckpt
from blalm.train.data import epoch_permutation
from blalm.train.config import config_differences
from blalm.train.metrics import MetricsLogger, truncate_metrics
from blalm.train.optim import lr_factor, set_learning_rates
from blalm.train.trainer import resolve_device

RESULTS_FILE = "results.json"
CONFIG_FILE = "config.json"
HEAD_FILE = "head.safetensors"
METRIC_KEYS = ("accuracy", "f1", "mcc", "score", "metric")
AUTO_EVAL_BATCH_CUDA = 128   # eval_batch = 0: no_grad forwards of <= 512 tokens (a 270M model uses a few GiB)
AUTO_EVAL_BATCH_CPU = 32


def task_settings(cfg: FinetuneConfig, task: Task) -> dict[str, Any]:
    """The resolved settings of one task (what its config.json holds and resume compares)."""
    out = to_dict(cfg)
    out.pop("tasks")
    out["task"] = task.name
    out["batch_size"] = cfg.batch_size or task.batch_size
    out["epochs"] = cfg.epochs or task.epochs
    out["data_dir"] = str(cfg.glue_dir())
    out["model"] = str(Path(cfg.model).expanduser().resolve())
    out["metric_for_valid"] = task.primary
    return out


def check_model_dir(model_dir: Path) -> None:
    """InputError unless ``model_dir`` looks like a blalm checkpoint or a Hugging Face model folder."""
    from blalm.model.checkpoint import is_model_checkpoint

    if not model_dir.is_dir():
        raise InputError(f"{model_dir}: model folder not found; give a blalm checkpoint folder "
                         f"(RUN_DIR/checkpoints/<name>) or a Hugging Face model folder (e.g. from 'blalm export')")
    if not is_model_checkpoint(model_dir) and not (model_dir / "config.json").is_file():
        raise InputError(f"{model_dir}: neither a blalm checkpoint (model.safetensors + model_config.json) nor a "
                         f"Hugging Face model folder (config.json + weights + tokenizer); give a checkpoint folder, "
                         f"e.g. RUN_DIR/checkpoints/<name>, or the folder 'blalm export' wrote")


def load_backbone(model_dir: Path, device: torch.device) -> tuple[torch.nn.Module, Any, dict[str, Any], str]:
    """(backbone, tokenizer, config dict for checkpoints, kind) of MODEL, in float32 on ``device``.

    kind ``"blalm"``: the backbone is the blalm decoder (of a blalm checkpoint or an exported folder)
    and its checkpoints are blalm checkpoints; ``"hf"``: the Hugging Face base model of another
    causal LM (its checkpoints are for resuming only: ``model_config.json`` holds its HF config)."""
    from blalm.eval.loading import load_for_eval

    check_model_dir(model_dir)
    lm, tokenizer = load_for_eval(model_dir, device=str(device), dtype=torch.float32)
    inner = getattr(lm, "model", None)
    if getattr(lm.config, "model_type", None) == "blalm" and inner is not None and is_blalm_decoder(inner):
        return inner, tokenizer, dataclasses.asdict(inner.config), "blalm"
    base = lm.base_model
    if base is lm or not hasattr(base.config, "hidden_size"):
        raise InputError(f"{model_dir}: {type(lm).__name__} exposes no base model with a hidden_size to put a "
                         f"classification head on; give a causal LM with a base model (GPT-2, Llama, ...)")
    return base, tokenizer, {"hf_config": json.loads(lm.config.to_json_string())}, "hf"


def _pad_id(tokenizer: Any) -> int:
    for tid in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if tid is not None:
            return int(tid)
    return 0


def to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``tensor`` (on the CPU) on ``device``. To a GPU through pinned memory without blocking: a
    plain ``.to("cuda")`` of pageable memory waits for the GPU to finish its queue (a host sync
    every step); the caching host allocator keeps the pinned block until the copy is done."""
    if device.type != "cuda":
        return tensor.to(device)
    return tensor.pin_memory().to(device, non_blocking=True)


def eval_batch_size(cfg: FinetuneConfig, device: torch.device) -> int:
    """``cfg.eval_batch``, or for 0 (auto) 128 on CUDA and 32 elsewhere."""
    if cfg.eval_batch:
        return cfg.eval_batch
    return AUTO_EVAL_BATCH_CUDA if device.type == "cuda" else AUTO_EVAL_BATCH_CPU


@torch.no_grad()
def predict_logits(model: SequenceClassifier, sequences: list[list[int]], pad_id: int, batch: int,
                   device: torch.device, precision: str = "fp32", multiple: int = 1) -> torch.Tensor:
    """Float32 logits ``(N, num_labels)`` of every sequence, in the order given (eval mode;
    ``precision`` applies on CUDA; ``multiple`` rounds batch widths up, see ``pad_batch``).

    The sequences are scored in batches of similar length (sorted by length, stably), so batches
    carry little padding; under right padding a causal decoder's result at a row's last real token
    does not depend on the other rows of its batch. The logits stay on the device until the end
    (one host sync for the whole file)."""
    from blalm.eval.suite import gpu_precision

    was = model.training
    model.eval()
    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
    parts = []
    for start in range(0, len(order), batch):
        ids, mask = pad_batch([sequences[i] for i in order[start:start + batch]], pad_id, multiple)
        with gpu_precision(precision):
            parts.append(model(to_device(ids, device), to_device(mask, device)).float())
    model.train(was)
    if not parts:
        return torch.zeros((0, model.head.out_features))
    in_order = torch.cat(parts).cpu()
    logits = torch.empty_like(in_order)
    logits[torch.tensor(order)] = in_order
    return logits


def predict(model: SequenceClassifier, sequences: list[list[int]], pad_id: int, batch: int,
            device: torch.device, precision: str = "fp32", multiple: int = 1) -> list[int]:
    """The predicted label of every sequence, in the order given (see :func:`predict_logits`)."""
    return predict_logits(model, sequences, pad_id, batch, device, precision, multiple).argmax(dim=-1).tolist()


def task_metrics(task: Task, predictions: list[int], labels: list[int]) -> dict[str, Any]:
    """Accuracy; F1 and MCC for binary tasks (as the official pipeline reports them); ``score`` is
    the task's validation metric (F1 for MRPC/QQP, accuracy otherwise), named by ``metric``."""
    res: dict[str, Any] = {"accuracy": accuracy(predictions, labels)}
    if task.num_labels == 2:
        res["f1"] = binary_f1(predictions, labels)
        res["mcc"] = binary_mcc(predictions, labels)
    res["score"] = res[task.primary]
    res["metric"] = task.primary
    return res


def best_epoch(records: list[dict[str, Any]]) -> dict[str, Any]:
    """The per-epoch record with the highest ``score`` (the earliest one on a tie)."""
    if not records:
        raise ValueError("no per-epoch validation records")
    return max(records, key=lambda rec: rec["score"])   # max keeps the first of equal scores


def _prune_checkpoints(root: Path, keep: str) -> None:
    """Remove every checkpoint folder under ``root`` but ``keep`` (the one ``latest`` names)."""
    for entry in list(root.iterdir()):
        if entry.is_dir() and not entry.name.startswith(".") and entry.name != keep:
            shutil.rmtree(entry, ignore_errors=True)


def finetune_task(cfg: FinetuneConfig, task: Task, task_dir: Path, log: Callable[[str], None]) -> dict[str, Any]:
    """Fine-tune (or resume, or skip when done) one task; return its result record."""
    from tqdm import tqdm

    from blalm.eval.suite import gpu_precision

    settings = task_settings(cfg, task)
    ckpt_root = task_dir / "checkpoints"
    if (task_dir / CONFIG_FILE).is_file():
        old = json.loads((task_dir / CONFIG_FILE).read_text(encoding="utf-8"))
        diffs = config_differences(old, settings, free=frozenset(RESUMABLE_KEYS))
        if diffs:
            lines = "\n".join(f"  {k}: {a!r} in the run, {b!r} now" for k, a, b in diffs)
            raise BlalmError(f"{task_dir} holds a fine-tuning run with other settings, so it cannot be resumed:\n"
                             f"{lines}\nRe-run with the same options or choose a new --out")
        if (task_dir / RESULTS_FILE).is_file():
            log(f"{task.name}: already done ({task_dir / RESULTS_FILE})")
            return json.loads((task_dir / RESULTS_FILE).read_text(encoding="utf-8"))

    train_ex, valid_ex = load_task(cfg.glue_dir(), task.name, cfg.max_train, cfg.max_valid)
    device = resolve_device(cfg.device)
    precision = cfg.precision if device.type == "cuda" else "fp32"
    model_dir = Path(cfg.model).expanduser()
    backbone, tokenizer, model_config, kind = load_backbone(model_dir, device)
    torch.manual_seed(cfg.seed)      # after loading: the head's initialisation depends on the seed alone
    np.random.seed(cfg.seed % 2**32)
    import random
    random.seed(cfg.seed)
    model = SequenceClassifier(backbone, task.num_labels, cfg.dropout).to(device)
    # compiled blocks (compiled on their first call); batch widths rounded to what keeps their graphs few
    compiled_layers = compile_backbone(backbone) if cfg.compile else 0
    multiple = width_multiple(backbone) if cfg.compile else 1
    eval_batch = eval_batch_size(cfg, device)
    pad_id = _pad_id(tokenizer)
    train_seqs = [encode(tokenizer, ex["fields"], cfg.max_length) for ex in train_ex]
    train_labels = [ex["label"] for ex in train_ex]
    valid_seqs = [encode(tokenizer, ex["fields"], cfg.max_length) for ex in valid_ex]
    gold = [ex["label"] for ex in valid_ex]
    B, epochs = settings["batch_size"], settings["epochs"]
    steps_per_epoch = math.ceil(len(train_seqs) / B)
    total = steps_per_epoch * epochs

    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    decay = [n for n, p in named if p.ndim >= 2]
    no_decay = [n for n, p in named if p.ndim < 2]
    params = dict(named)
    opt = torch.optim.AdamW([{"params": [params[n] for n in decay], "weight_decay": cfg.weight_decay},
                             {"params": [params[n] for n in no_decay], "weight_decay": 0.0}], lr=cfg.lr,
                            fused=device.type == "cuda")   # one kernel for all parameters on a GPU
    for group in opt.param_groups:
        group["base_lr"] = cfg.lr
    optimizers, names = {"adamw": opt}, {"adamw": [decay, no_decay]}

    ckpt.cleanup_stale(ckpt_root)
    latest = ckpt.read_latest(ckpt_root) if ckpt_root.is_dir() else None
    state = ckpt.read_state(latest) if latest is not None else None
    step = 0
    records: list[dict[str, Any]] = []          # one per finished epoch: its validation scores
    best_predictions: list[int] | None = None   # of the best epoch so far
    seconds_before = 0.0                        # wall time of earlier (killed) sessions
    task_dir.mkdir(parents=True, exist_ok=True)
    if latest is not None:   # before the logger opens the file: truncation replaces it
        truncate_metrics(task_dir, state["step"])
    else:
        (task_dir / "metrics.jsonl").unlink(missing_ok=True)
    metrics = MetricsLogger(task_dir, tensorboard=False)
    t_session = time.time()
    if latest is not None:
        backbone.load_state_dict(ckpt.load_model_state(latest, device))
        model.head.load_state_dict(ckpt.load_tensors(latest / HEAD_FILE, device))
        # read on the CPU: AdamW's load_state_dict moves the moments to their parameters' device and
        # keeps its 'step' counters on the CPU, as a fresh AdamW holds them (a CUDA 'step' would cost a sync
        # per parameter and step)
        ckpt.load_optimizer_state(optimizers, names, ckpt.load_tensors(latest / ckpt.OPTIMIZER_FILE, "cpu"),
                                  state["optimizer_scalars"])
        ckpt.set_rng_state(state["rng"])
        step = state["step"]
        records = list(state.get("per_epoch", []))
        best_predictions = state.get("best_predictions")
        seconds_before = float(state.get("seconds", 0.0))
        metrics.log({"kind": "resume", "step": step, "checkpoint": latest.name})
        log(f"{task.name}: resuming from {latest} (step {step} of {total})")
    else:
        write_json_atomic(task_dir / CONFIG_FILE, settings)
        write_json_atomic(task_dir / "run_info.json", run_info(settings, cfg.seed))
        metrics.log({"kind": "setup", "step": 0, "task": task.name, "train_examples": len(train_seqs),
                     "valid_examples": len(valid_ex), "batch_size": B, "epochs": epochs,
                     "steps_per_epoch": steps_per_epoch, "total_steps": total, "model_kind": kind,
                     "parameters": sum(p.numel() for p in model.parameters()), "device": str(device),
                     "precision": precision, "metric_for_valid": task.primary, "eval_batch": eval_batch,
                     "compiled_layers": compiled_layers, "width_multiple": multiple})
        log(f"{task.name}: {len(train_seqs)} training examples, batch {B}, {epochs} epochs = {total} steps "
            f"on {device} ({precision}{f', {compiled_layers} compiled layers' if cfg.compile else ''})")
    tokenizer_files = [model_dir / n for n in TOKENIZER_FILES if (model_dir / n).is_file()]

    model.train()
    saver = ckpt.BackgroundSaver()   # checkpoints are written while the steps go on
    bar = tqdm(total=total, initial=step, desc=f"finetune {task.name}", unit="step", dynamic_ncols=True,
               disable=not cfg.progress, file=sys.stderr)
    # the loss stays on the device between log records: no host sync per step keeps the GPU queue full
    interval_loss, interval_n, t0 = torch.zeros((), device=device), 0, time.time()
    perm_epoch, perm = -1, None
    try:
        while step < total:
            epoch, s = divmod(step, steps_per_epoch)
            if epoch != perm_epoch:      # the epoch's order, drawn once per epoch (as the trainer does)
                perm, perm_epoch = epoch_permutation(len(train_seqs), cfg.seed, epoch), epoch
            rows = perm[s * B:(s + 1) * B]
            lrs = set_learning_rates(optimizers, lr_factor(step, total, cfg.warmup_fraction, cfg.min_lr_fraction))
            ids, mask = pad_batch([train_seqs[i] for i in rows], pad_id, multiple)
            labels = to_device(torch.tensor([train_labels[i] for i in rows], dtype=torch.long), device)
            with gpu_precision(precision):
                loss = F.cross_entropy(model(to_device(ids, device), to_device(mask, device)).float(), labels)
            loss.backward()
            loss = loss.detach()
            ckpt.fault_point("step_backward")
            grad_norm = torch.nn.utils.clip_grad_norm_(list(params.values()),
                                                       cfg.grad_clip if cfg.grad_clip > 0 else float("inf"))
            opt.step()
            opt.zero_grad(set_to_none=True)
            step += 1
            interval_loss += loss.float()
            interval_n += 1
            bar.update(1)
            if step % cfg.log_every == 0 or step == total:
                mean_loss = float(interval_loss) / interval_n
                bar.set_postfix(loss=f"{mean_loss:.4f}", refresh=False)
                metrics.log({"kind": "train", "step": step, "epoch": step / steps_per_epoch,
                             "loss": mean_loss, "lr": lrs, "grad_norm": float(grad_norm),
                             "seconds": round(time.time() - t0, 3)})
                interval_loss, interval_n, t0 = torch.zeros((), device=device), 0, time.time()
            if step % steps_per_epoch == 0:          # an epoch ended: score it on the valid file
                predictions = predict(model, valid_seqs, pad_id, eval_batch, device, precision, multiple)
                record = {"epoch": step // steps_per_epoch, "step": step, **task_metrics(task, predictions, gold)}
                if not records or record["score"] > best_epoch(records)["score"]:
                    best_predictions = predictions
                records.append(record)
                metrics.log({"kind": "valid", **record})
                with tqdm.external_write_mode(file=sys.stderr):      # a line of its own, not inside the bar
                    log(f"{task.name}: epoch {record['epoch']}/{epochs}: " + _scores_line(record))
            if step % steps_per_epoch == 0 or (cfg.save_every and step % cfg.save_every == 0) or step == total:
                opt_tensors, opt_scalars = ckpt.optimizer_tensors(optimizers, names)
                name = f"step{step:07d}"
                state = {"step": step, "epoch": step // steps_per_epoch, "total_steps": total,
                         "steps_per_epoch": steps_per_epoch, "complete": step == total, "loss": float(loss),
                         "rng": ckpt.rng_state(), "optimizer_scalars": opt_scalars,
                         "optimizer_param_names": names, "task": task.name, "model_kind": kind,
                         "per_epoch": records, "best_predictions": best_predictions,
                         "seconds": round(seconds_before + time.time() - t_session, 3)}
                keep_all = cfg.keep_all_checkpoints   # else only the latest checkpoint folder stays
                saver.save(ckpt_root, name, backbone.state_dict(), opt_tensors, state, model_config, tokenizer_files,
                           extra_tensors={HEAD_FILE: model.head.state_dict()},
                           drop_optimizer_of=latest if keep_all else None,
                           then=None if keep_all else functools.partial(_prune_checkpoints, ckpt_root, name))
                latest = ckpt_root / name
    finally:
        saver.close()   # the last checkpoint is on disk before the task reports its result
        bar.close()

    best = best_epoch(records)
    seconds = round(seconds_before + time.time() - t_session, 3)
    result = {"status": "ok", "task": task.name, **{k: best[k] for k in METRIC_KEYS if k in best},
              "best_epoch": best["epoch"], "metric_for_valid": task.primary, "per_epoch": records,
              "n_train": len(train_seqs), "n_valid": len(gold), "steps": total, "epochs": epochs,
              "batch_size": B, "precision": precision, "device": str(device), "seconds": seconds,
              "checkpoint": str(latest) if latest else None, "predictions": best_predictions}
    metrics.log({"kind": "eval", "step": total, "best_epoch": best["epoch"],
                 **{k: best[k] for k in METRIC_KEYS if k in best}})
    metrics.close()
    write_json_atomic(task_dir / RESULTS_FILE, result)
    log(f"{task.name}: best epoch {best['epoch']} of {epochs} by {task.primary}: " + _scores_line(best))
    return result


def _scores_line(res: dict[str, Any]) -> str:
    return ", ".join(f"{label} {res[key]:.2f}" for key, label in (("accuracy", "accuracy"), ("f1", "F1"),
                                                                   ("mcc", "MCC")) if key in res)


def glue_summary(tasks: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The GLUE column: mean of the tasks' primary scores (F1 for MRPC/QQP, accuracy otherwise)
    over the tasks that have a result; the others are listed with their reason."""
    ok = {t: r["score"] for t, r in tasks.items() if r.get("status") == "ok"}
    missing = {t: r.get("reason", "") for t, r in tasks.items() if r.get("status") != "ok"}
    if not ok:
        return {"status": "not available", "reason": "no task has a result", "missing": missing}
    return {"status": "ok", "score": sum(ok.values()) / len(ok), "components": ok, "missing": missing}


def finetune(cfg: FinetuneConfig, out_dir: Path, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Fine-tune on every task of ``cfg`` (resuming what ``out_dir`` holds) and write OUT/results.json."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise BlalmError(f"--out {out_dir} exists and is not a folder; give a folder path")
    glue_dir = cfg.glue_dir()
    if not glue_dir.is_dir():
        raise InputError(f"{glue_dir}: GLUE data folder not found; give --data-dir with the folder that holds "
                         f"{{task}}.train.jsonl and {{task}}.valid.jsonl (the official glue_filtered), or set "
                         f"BLALM_DATA_DIR to the data folder holding eval/full_eval/glue_filtered")
    check_model_dir(Path(cfg.model).expanduser())
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    results: dict[str, dict[str, Any]] = {}
    for name in cfg.tasks:
        try:
            res = finetune_task(cfg, TASKS[name], out_dir / name, log)
        except TaskUnavailable as exc:
            res = {"status": "not available", "task": name, "reason": str(exc)}
            log(f"{name}: not available ({exc})")
        results[name] = res
    report = {"model": str(cfg.model), "data_dir": str(cfg.glue_dir()), "glue": glue_summary(results),
              "tasks": {t: {k: v for k, v in r.items() if k != "predictions"} for t, r in results.items()},
              "seconds": round(time.time() - t0, 3),
              "task_seconds": {t: r["seconds"] for t, r in results.items() if "seconds" in r},
              "config": to_dict(cfg)}
    write_json_atomic(out_dir / RESULTS_FILE, report)
    return report


def format_results(report: dict[str, Any]) -> str:
    lines = []
    for name, res in report["tasks"].items():
        if res.get("status") == "ok":
            lines.append(f"{name}: {_scores_line(res)} (best epoch {res.get('best_epoch', '?')} by "
                         f"{res.get('metric', 'accuracy')})")
        else:
            lines.append(f"{name}: {res['status']} ({res.get('reason', '')})")
    glue = report["glue"]
    lines.append(f"GLUE: {glue['score']:.2f} (mean of {', '.join(glue['components'])})" if glue["status"] == "ok"
                 else f"GLUE: not available ({glue['reason']})")
    return "\n".join(lines)
