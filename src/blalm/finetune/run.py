"""``finetune(cfg, out_dir)``: fine-tune a pretrained model on each task and write the results.

MODEL is a blalm checkpoint folder or a Hugging Face causal-LM folder (an exported blalm model or
any ``AutoModelForCausalLM`` folder with a fast tokenizer), loaded in float32 by the evaluation
stage's :func:`blalm.eval.loading.load_for_eval`. A blalm model (either form) is fine-tuned as the
blalm decoder itself; another model as its Hugging Face base model (``model.base_model``).

Per task ``T`` the run folder ``OUT/T/`` is a small training run of the training stage's kind:
``config.json`` (the resolved settings of this task), ``run_info.json``, ``metrics.jsonl`` (``setup``,
``train`` records every ``log_every`` steps, ``valid`` after every epoch, ``resume``, ``eval``),
``checkpoints/`` written atomically by :func:`blalm.run.checkpoint.save_checkpoint` at every epoch
end, every ``save_every`` steps and the end (the fine-tuned decoder as ``model.safetensors`` +
``model_config.json`` + tokenizer, so ``load_model`` reads it when the model is a blalm one; the
head as ``head.safetensors``; the AdamW state; ``state.json`` with the step, the RNG states and
the per-epoch validation records; the newest two folders are kept unless ``keep_all_checkpoints``),
and ``results.json`` once the last epoch is done. ``OUT/results.json`` gathers every task and the
GLUE score. With ``jobs > 1`` (``--jobs N``) the tasks are first fine-tuned in N child processes
side by side (:mod:`blalm.finetune.parallel`); the pass over every task here then reads them back.

**Validation and the reported score (as the official pipeline).** After every epoch the model is
scored on the task's ``valid`` file (accuracy; F1 and MCC for binary tasks). The task's result is
the epoch with the best validation metric (``metric_for_valid``: F1 for MRPC and QQP, accuracy
otherwise; the earliest epoch wins a tie): its scores and predictions. Every epoch's scores are
kept in the result (``per_epoch``). The official pipeline evaluates on the same ``valid`` files
(its predict data is the valid file), so the reported score is the best epoch's validation
score. The checkpoint holds the last epoch's weights, not the best epoch's.

Re-running the same command resumes: a task with ``results.json`` is done; a task with a checkpoint
continues from its newest checkpoint that verifies (``blalm.run.resume``) with its per-epoch records. On CPU a killed and resumed run
ends with the same weights, per-epoch scores and predictions as an uninterrupted one: the example
order of each epoch is a pure function of (seed, epoch), the learning rate of the step, the
checkpoint holds weights, optimizer state and RNG states, and validation draws no random numbers.

**The official trainer's recipe** (``evaluation_pipeline/finetune``, held to it by
``tests/test_finetune_official.py``): its head (:class:`~blalm.finetune.head.ClassifierHead`), AdamW
over every parameter (decoder and head) with peak ``lr`` 3e-5 and weight decay 0.01 on all of them,
its schedule (:func:`~blalm.run.schedule.lr_factor`'s ``"official"``: 6% linear warm-up from 0, then
cosine down to 0.1 of the peak), no gradient clipping (``grad_clip = 0``), full batches only (a short
last batch of an epoch is left out, its ``drop_last``). Ours on purpose: the head reads the last
real token (the official script reads the first, see :mod:`blalm.finetune.head`), the epoch order
is a pure function of (seed, epoch), and CUDA runs bf16 autocast. Loss: cross-entropy of the head's
logits (float32). On CUDA the forward runs under
``precision`` (bf16 autocast by default; weights and optimizer state stay float32); on the CPU in
float32.

**Speed (GPU).** The training loop reads nothing back from the GPU between log records (batches go
over through pinned memory without blocking, the loss is summed on the device, the head's
last-token gather needs no check there), so the host queues steps ahead of the GPU. The valid file
is scored in batches of similar length (sorted by length; predictions come back in file order),
``eval_batch`` examples each (0 = auto: 128 on CUDA, 32 on the CPU). ``compile`` (``--compile``)
compiles each decoder block with ``torch.compile(dynamic=True)`` (regional compilation, see
:func:`blalm.model.compile.compile_backbone`; a Hugging Face base model's ``layers``/``h`` blocks,
else it stays eager) and rounds batch widths up to whole mLSTM chunks, which keeps the compiled
graphs to one per chunk count for training and one for validation; ``compile_mode =
"reduce-overhead"`` (``--compile-mode``) also replays each block as CUDA graphs, widths rounded to
multiples of 64 (a graph per shape). It changes no math: compiled
and eager runs agree to float rounding, and a run may be resumed with the other setting.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from blalm.atomic import write_json_atomic
from blalm.config import to_dict
from blalm.errors import BlalmError, InputError
from blalm.finetune.config import RESUMABLE_KEYS, FinetuneConfig
from blalm.finetune.head import SequenceClassifier, compiled_width_multiple, is_blalm_decoder, pad_batch
from blalm.finetune.layout import RESULTS_FILE, finished_result, run_plan, task_settings
from blalm.finetune.metrics import accuracy, binary_f1, binary_mcc
from blalm.finetune.tasks import TASKS, Task, TaskUnavailable, encode, load_task
from blalm.lock import RunLock
from blalm.model.checkpoint import TOKENIZER_FILES
from blalm.model.compile import compile_backbone
from blalm.run.device import precision_context, resolve_device, resolve_precision, seed_everything
from blalm.run.layout import MODEL_FILE
from blalm.run.schedule import epoch_permutation
from blalm.run.session import RunSession, RunSpec, hold_lock

HEAD_FILE = "head.safetensors"
METRIC_KEYS = ("accuracy", "f1", "mcc", "score", "metric")
AUTO_EVAL_BATCH_CUDA = 128   # eval_batch = 0: no_grad forwards of <= 512 tokens (a 270M model uses a few GiB)
AUTO_EVAL_BATCH_CPU = 32


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
    from blalm.eval.loading import load_blalm_checkpoint, load_for_eval
    from blalm.model.checkpoint import is_model_checkpoint

    check_model_dir(model_dir)
    if is_model_checkpoint(model_dir):   # the blalm model itself: no Hugging Face wrapper around it
        inner, tokenizer = load_blalm_checkpoint(model_dir, str(device), torch.float32, hf=False)
        return inner, tokenizer, dataclasses.asdict(inner.config), "blalm"
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


def mark_replay(device: torch.device) -> None:
    """Tell compile_mode reduce-overhead's CUDA graphs that a new step begins (its outputs of the last
    replay may be overwritten). CUDA graphs exist on CUDA only; elsewhere nothing is called, which also
    spares an eager CPU process the ~1.3 s import of torch's CUDA-graph machinery."""
    if device.type == "cuda":
        torch.compiler.cudagraph_mark_step_begin()


@torch.no_grad()
def predict_logits(model: SequenceClassifier, sequences: list[list[int]], pad_id: int, batch: int,
                   device: torch.device, precision: str = "fp32", multiple: int = 1) -> torch.Tensor:
    """Float32 logits ``(N, num_labels)`` of every sequence, in the order given (eval mode;
    ``precision`` applies on CUDA; ``multiple`` rounds batch widths up, see ``pad_batch``).

    The sequences are scored in batches of similar length (sorted by length, stably), so batches
    carry little padding; under right padding a causal decoder's result at a row's last real token
    does not depend on the other rows of its batch. The logits stay on the device until the end
    (one host sync for the whole file)."""
    was = model.training
    model.eval()
    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
    parts = []
    for start in range(0, len(order), batch):
        ids, mask = pad_batch([sequences[i] for i in order[start:start + batch]], pad_id, multiple)
        mark_replay(device)
        with precision_context(device, precision):
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


def encode_examples(cfg: FinetuneConfig, examples: tuple[list[dict], list[dict]], tokenizer: Any) -> dict[str, Any]:
    """The task's training and valid examples, encoded (at most ``max_length`` tokens each)."""
    train_ex, valid_ex = examples
    return {"train": [encode(tokenizer, ex["fields"], cfg.max_length) for ex in train_ex],
            "train_labels": [ex["label"] for ex in train_ex],
            "valid": [encode(tokenizer, ex["fields"], cfg.max_length) for ex in valid_ex],
            "gold": [ex["label"] for ex in valid_ex]}


def build_adamw(model: torch.nn.Module, cfg: FinetuneConfig, device: torch.device
                ) -> tuple[dict[str, torch.optim.Optimizer], dict[str, list[list[str]]]]:
    """AdamW over every trainable parameter with one weight decay (the official trainer's
    ``AdamW(model.parameters(), ...)``); with the names of its one group."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    opt = torch.optim.AdamW([p for _, p in named], lr=cfg.lr, weight_decay=cfg.weight_decay,
                            fused=device.type == "cuda")   # one kernel for all parameters on a GPU
    opt.param_groups[0]["base_lr"] = cfg.lr
    return {"adamw": opt}, {"adamw": [[n for n, _ in named]]}


def finetune_task(cfg: FinetuneConfig, task: Task, task_dir: Path, log: Callable[[str], None]) -> dict[str, Any]:
    """Fine-tune (or resume, or skip when done) one task; return its result record."""
    settings = task_settings(cfg, task)
    done = finished_result(task_dir, settings, RESUMABLE_KEYS)
    if done is not None:
        log(f"{task.name}: already done ({task_dir / RESULTS_FILE})")
        return done
    examples = load_task(cfg.glue_dir(), task.name, cfg.max_train, cfg.max_valid)   # before TASK_DIR is made
    with hold_lock(task_dir, None, "fine-tuning run", log):
        return _finetune_task(cfg, task, task_dir, settings, examples, log)


def _finetune_task(cfg: FinetuneConfig, task: Task, task_dir: Path, settings: dict[str, Any],
                   examples: tuple[list[dict], list[dict]], log: Callable[[str], None]) -> dict[str, Any]:
    device = resolve_device(cfg.device)
    precision = resolve_precision(cfg.precision, device)
    model_dir = Path(cfg.model).expanduser()
    backbone, tokenizer, model_config, kind = load_backbone(model_dir, device)
    data = encode_examples(cfg, examples, tokenizer)
    spec = RunSpec(task_dir, settings, run_plan(len(data["train"]), settings["batch_size"], settings["epochs"]),
                   what="fine-tuning run", free_keys=RESUMABLE_KEYS, label=f"{task.name}: ", progress=cfg.progress,
                   desc=f"finetune {task.name}", keep_optimizer=2, keep_folders=None if cfg.keep_all_checkpoints else 2,
                   tensorboard=False, seed=cfg.seed)
    with RunSession(spec, log=log) as session:
        session.start(write_when_complete=True)
        seed_everything(cfg.seed)      # after loading: the head's initialisation depends on the seed alone
        model = SequenceClassifier(backbone, task.num_labels, cfg.dropout).to(device)
        # compiled blocks (compiled on their first call); batch widths rounded to what keeps their graphs few
        compiled_layers = compile_backbone(backbone, mode=cfg.compile_mode) if cfg.compile else 0
        tuning = TaskLoop(cfg=cfg, task=task, session=session, model=model, data=data, device=device,
                          precision=precision, pad_id=_pad_id(tokenizer), eval_batch=eval_batch_size(cfg, device),
                          multiple=compiled_width_multiple(backbone, cfg), kind=kind,
                          model_config=model_config, tokenizer_files=[model_dir / n for n in TOKENIZER_FILES
                                                                      if (model_dir / n).is_file()])
        tuning.restore_or_set_up(compiled_layers)
        tuning.run()
        return tuning.finish()


@dataclass
class TaskLoop:
    """One task's fine-tuning loop over a :class:`~blalm.run.session.RunSession`."""

    cfg: FinetuneConfig
    task: Task
    session: RunSession
    model: SequenceClassifier
    data: dict[str, Any]
    device: torch.device
    precision: str
    pad_id: int
    eval_batch: int
    multiple: int
    kind: str
    model_config: dict[str, Any]
    tokenizer_files: list[Path]
    records: list[dict[str, Any]] = field(default_factory=list)   # one per finished epoch: its validation scores
    best_predictions: list[int] | None = None                       # of the best epoch so far
    seconds_before: float = 0.0                                     # wall time of earlier (killed) sessions
    t_session: float = field(default_factory=time.time)

    def __post_init__(self) -> None:
        self.optimizers, self.names = build_adamw(self.model, self.cfg, self.device)
        self.params = [p for p in self.model.parameters() if p.requires_grad]

    def restore_or_set_up(self, compiled_layers: int) -> None:
        """Continue from the session's checkpoint (weights, head, AdamW, RNG, per-epoch records), or
        log the setup of a fresh start."""
        session, cfg, task = self.session, self.cfg, self.task
        session.restore({MODEL_FILE: self.model.backbone, HEAD_FILE: self.model.head}, self.optimizers,
                        self.names, self.device)
        state = session.point.state
        if state is not None:
            self.records = list(state.get("per_epoch", []))
            self.best_predictions = state.get("best_predictions")
            self.seconds_before = float(state.get("seconds", 0.0))
            return
        B, epochs, total = session.spec.settings["batch_size"], session.spec.settings["epochs"], session.total_steps
        session.emit({"kind": "setup", "step": 0, "task": task.name, "train_examples": len(self.data["train"]),
                      "valid_examples": len(self.data["valid"]), "batch_size": B, "epochs": epochs,
                      "steps_per_epoch": session.steps_per_epoch, "total_steps": total, "model_kind": self.kind,
                      "parameters": sum(p.numel() for p in self.model.parameters()), "device": str(self.device),
                      "precision": self.precision, "metric_for_valid": task.primary, "eval_batch": self.eval_batch,
                      "compiled_layers": compiled_layers, "width_multiple": self.multiple})
        session.say(f"{len(self.data['train'])} training examples, batch {B}, {epochs} epochs = {total} steps "
                    f"on {self.device} ({self.precision}{f', {compiled_layers} compiled layers' if cfg.compile else ''})")

    def run(self) -> None:
        """Optimizer steps to the end: one step, its record, the epoch's validation, a checkpoint."""
        session, cfg = self.session, self.cfg
        self.model.train()
        # the loss stays on the device between log records: no host sync per step keeps the GPU queue full
        interval = {"loss": torch.zeros((), device=self.device), "n": 0, "t0": time.time()}
        perm = (-1, None)
        with session.loop():
            while session.step < session.total_steps:
                epoch, s = divmod(session.step, session.steps_per_epoch)
                if perm[0] != epoch:      # the epoch's order, drawn once per epoch (as the trainer does)
                    perm = (epoch, epoch_permutation(len(self.data["train"]), cfg.seed, epoch))
                B = session.spec.settings["batch_size"]
                lrs = session.apply_schedule(self.optimizers, cfg.warmup_fraction, cfg.min_lr_fraction,
                                             schedule="official")
                loss, grad_norm = self.step(perm[1][s * B:(s + 1) * B])
                session.advance()
                interval["loss"] += loss.float()
                interval["n"] += 1
                if session.step % cfg.log_every == 0 or session.step == session.total_steps:
                    self.log_step(interval, lrs, grad_norm)
                if session.epoch_end:
                    self.validate_epoch()
                if session.epoch_end or (cfg.save_every and session.step % cfg.save_every == 0) \
                        or session.step == session.total_steps:
                    self.save(float(loss))

    def step(self, rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimizer step on the examples ``rows``; (loss, gradient norm), left on the device."""
        ids, mask = pad_batch([self.data["train"][i] for i in rows], self.pad_id, self.multiple)
        labels = to_device(torch.tensor([self.data["train_labels"][i] for i in rows], dtype=torch.long), self.device)
        mark_replay(self.device)
        with precision_context(self.device, self.precision):
            loss = F.cross_entropy(self.model(to_device(ids, self.device), to_device(mask, self.device)).float(),
                                   labels)
        loss.backward()
        self.session.fault_point("step_backward")
        grad_norm = torch.nn.utils.clip_grad_norm_(self.params, self.cfg.grad_clip if self.cfg.grad_clip > 0
                                                   else float("inf"))
        for opt in self.optimizers.values():
            opt.step()
            opt.zero_grad(set_to_none=True)
        return loss.detach(), grad_norm

    def log_step(self, interval: dict[str, Any], lrs: dict[str, float], grad_norm: torch.Tensor) -> None:
        session = self.session
        mean_loss = float(interval["loss"]) / interval["n"]
        if session.bar is not None:
            session.bar.set_postfix(loss=f"{mean_loss:.4f}", refresh=False)
        session.emit({"kind": "train", "step": session.step, "epoch": session.step / session.steps_per_epoch,
                      "loss": mean_loss, "lr": lrs, "grad_norm": float(grad_norm),
                      "seconds": round(time.time() - interval["t0"], 3)})
        interval.update({"loss": torch.zeros((), device=self.device), "n": 0, "t0": time.time()})

    def validate_epoch(self) -> None:
        """An epoch ended: score it on the valid file; keep the best epoch's predictions."""
        session = self.session
        predictions = predict(self.model, self.data["valid"], self.pad_id, self.eval_batch, self.device,
                              self.precision, self.multiple)
        record = {"epoch": session.step // session.steps_per_epoch, "step": session.step,
                  **task_metrics(self.task, predictions, self.data["gold"])}
        if not self.records or record["score"] > best_epoch(self.records)["score"]:
            self.best_predictions = predictions
        self.records.append(record)
        session.emit({"kind": "valid", **record})
        session.note(f"epoch {record['epoch']}/{session.spec.settings['epochs']}: " + _scores_line(record))

    def seconds(self) -> float:
        return round(self.seconds_before + time.time() - self.t_session, 3)

    def save(self, loss: float) -> None:
        state = {"loss": loss, "task": self.task.name, "model_kind": self.kind, "per_epoch": self.records,
                 "best_predictions": self.best_predictions, "seconds": self.seconds()}
        self.session.save(f"step{self.session.step:07d}", self.model.backbone.state_dict(), self.optimizers,
                          self.names, state, self.model_config, self.tokenizer_files,
                          extra_tensors={HEAD_FILE: self.model.head.state_dict()})

    def finish(self) -> dict[str, Any]:
        """The task's result (its best epoch), logged and written to ``TASK_DIR/results.json``."""
        session, task, settings = self.session, self.task, self.session.spec.settings
        best = best_epoch(self.records)
        latest = session.latest_path
        result = {"status": "ok", "task": task.name, **{k: best[k] for k in METRIC_KEYS if k in best},
                  "best_epoch": best["epoch"], "metric_for_valid": task.primary, "per_epoch": self.records,
                  "n_train": len(self.data["train"]), "n_valid": len(self.data["gold"]), "steps": session.total_steps,
                  "epochs": settings["epochs"], "batch_size": settings["batch_size"], "precision": self.precision,
                  "device": str(self.device), "seconds": self.seconds(),
                  "checkpoint": str(latest) if latest else None, "predictions": self.best_predictions}
        session.emit({"kind": "eval", "step": session.total_steps, "best_epoch": best["epoch"],
                      **{k: best[k] for k in METRIC_KEYS if k in best}})
        write_json_atomic(session.spec.run_dir / RESULTS_FILE, result)
        session.say(f"best epoch {best['epoch']} of {settings['epochs']} by {task.primary}: " + _scores_line(best))
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


def finetune(cfg: FinetuneConfig, out_dir: Path, log: Callable[[str], None] = print,
             child: bool = False) -> dict[str, Any]:
    """Fine-tune on every task of ``cfg`` (resuming what ``out_dir`` holds) and write OUT/results.json.

    ``cfg.jobs > 1``: first the tasks not finished yet in up to ``jobs`` child processes
    (:func:`blalm.finetune.parallel.finetune_in_parallel`; a failed one raises a BlalmError naming its
    log, after the others end), then the pass here reads every task back and writes the report.
    ``child``: one such child: it fine-tunes its tasks and leaves OUT/results.json to the parent."""
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
    parallel = cfg.jobs > 1 and not child
    with RunLock(out_dir, what="fine-tuning run (--jobs)", log=log) if parallel else contextlib.nullcontext():
        if parallel:
            from blalm.finetune.parallel import finetune_in_parallel

            finetune_in_parallel(cfg, out_dir, log)
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
        if not child:
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
