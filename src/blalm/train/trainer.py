"""The training loop: ``train(cfg, run_dir)`` (``blalm train CONFIG --out RUN_DIR``).

What a run does, in order:

1. checks the BabyLM rules of ``cfg.track`` (at most 10 epochs, a corpus within the track's word
   budget: the manifest's ``train_words`` and the words counted in train.txt);
2. tokenizes the corpus once (``blalm.train.data``; cached by content hash);
3. holds the run folder's lock (a second writer is refused) and resumes from the newest
   checkpoint that verifies when there is one (``blalm.run.resume``: damaged newer ones are named
   and set aside): the config must match the one the run started with (``RUN_DIR/config.json``)
   in every key that changes the computation, and the tokenized data must be the same bytes; else
   it writes ``config.json`` (the resolved config, vocab size set from the tokenizer),
   ``run_info.json`` (command, seed, versions, git commit, machine); and it copies the tokenizer
   (``RUN_DIR/tokenizer/``);
4. seeds torch/numpy/python with ``seed``, builds the model, splits its parameters over Muon
   and AdamW (printed), and trains: each optimizer step takes the next ``global_batch`` blocks of
   the epoch's permutation, split over ``micro_batch``-sized forward/backward passes (gradient
   accumulation) and over the processes of a ``torchrun`` launch (DDP);
5. a non-finite loss or gradient norm skips the step (no update; the batch is consumed and the
   schedule moves on) and is counted; ``max_nonfinite_steps`` in a row stop the run;
6. at every BabyLM milestone (words seen), every epoch end and the end of the run it validates
   on the dev split (loss, perplexity, bits per byte) and writes a checkpoint atomically.

The loop is made of plain steps: :func:`plan_run` (tokens, blocks, steps, milestones), the run
room's :class:`~blalm.run.session.RunSession` (start or resume, restore, progress, save, with its
``after_step`` hooks: the EMA update), and :class:`TrainLoop` (build, one optimizer step, its
record, validate and checkpoint); fine-tuning uses the same session.

Determinism: on CPU with the same config, a run that is killed at any point and re-run with the
same command ends with weights bit-identical to an uninterrupted run: the data position is a
function of the step, the learning rate a function of the step, and checkpoints hold the exact
weights, optimizer states and RNG states. (Bit-identity holds for the same machine and torch
thread count; ``micro_batch``, ``device``, ``precision`` and ``compile`` may be changed on resume,
which keeps the math but not the last bit.)

DDP: under ``torchrun`` (``WORLD_SIZE > 1``) every process takes ``global_batch / world_size``
blocks of each global batch (``micro_batch x accumulation`` of them); gloo on CPU, NCCL on GPU.
Only rank 0 writes files; validation is sharded over the ranks. ``parallelism = "fsdp"`` shards
the model itself over the processes instead (FSDP2, :mod:`blalm.run.parallel`); the data, the
checkpoints (full, gathered on rank 0) and the results are those of DDP.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from blalm.atomic import remove_stale_temp
from blalm.errors import BlalmError, InputError
from blalm.model.checkpoint import TOKENIZER_FILES
from blalm.run.device import Dist, precision_context, resolve_device, resolve_precision, seed_everything
from blalm.run.layout import MODEL_FILE, TOKEN_CACHE, TOKENIZER_COPY, TRAIN_WEIGHTS_FILE
from blalm.run.parallel import Parallel, parallelize
from blalm.run.schedule import epoch_permutation
from blalm.run.session import RunPlan, RunSession, RunSpec, hold_lock
from blalm.train import milestones as ms
from blalm.train.ema import WeightAverage, describe_ema
from blalm.train.execution import resolve_for
from blalm.train.scoring import scoring_beside
from blalm.train.config import (
    RESUME_FREE_KEYS,
    TRACK_MAX_EPOCHS,
    TRACK_WORD_BUDGET,
    TrainConfig,
    config_dict,
    with_vocab_size,
)
from blalm.train.data import TokenData, batch_indices, blocks_view, cache_root_for, prepare_tokens
from blalm.train.optim import build_optimizers, param_names


# ----------------------------------------------------------------------------------------------
# rules and data


def read_manifest(corpus_dir: Path) -> dict[str, Any] | None:
    path = Path(corpus_dir) / "manifest.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: not valid JSON ({exc}); rebuild the corpus with 'blalm corpus'") from None


def check_track(cfg: TrainConfig, manifest: dict[str, Any] | None, counted_words: int | None = None) -> None:
    """Refuse a run that breaks the BabyLM rules of ``cfg.track`` (no-op for track "none")."""
    if cfg.track == "none":
        return
    if cfg.epochs > TRACK_MAX_EPOCHS:
        raise BlalmError(f"epochs = {cfg.epochs} breaks the BabyLM rules: the {cfg.track} track allows at "
                         f"most {TRACK_MAX_EPOCHS} epochs; set epochs <= {TRACK_MAX_EPOCHS}")
    budget = TRACK_WORD_BUDGET[cfg.track]
    manifest_path = Path(cfg.corpus_dir) / "manifest.json"
    if manifest is None:
        raise InputError(f"{manifest_path}: not found; the {cfg.track} track needs the corpus manifest to check "
                         f"the word budget. Build the corpus with 'blalm corpus', or set track = \"none\"")
    words = manifest.get("train_words")
    if not isinstance(words, int):
        raise InputError(f"{manifest_path}: has no integer 'train_words'; rebuild the corpus with 'blalm corpus'")
    for what, value in (("the manifest's train_words", words), ("train.txt (whitespace words counted)", counted_words)):
        if value is not None and value > budget:
            raise BlalmError(f"{cfg.corpus_dir}: {what} = {value:,} exceeds the {cfg.track} track's budget of "
                             f"{budget:,} words (BabyLM rules); build a corpus with budget_words <= {budget:,}, "
                             f"or set track = \"none\"")


def check_inputs(cfg: TrainConfig, world_size: int = 1) -> dict[str, Any] | None:
    """The checks that need no tokens (before the run folder is touched); the corpus manifest."""
    if cfg.global_batch % ((cfg.micro_batch or 1) * world_size):   # micro_batch 0: chosen as a divisor later
        raise BlalmError(f"global_batch ({cfg.global_batch}) must be a multiple of micro_batch x processes "
                         f"({cfg.micro_batch or 'chosen'} x {world_size}); change "
                         f"{'micro_batch' if cfg.micro_batch else 'global_batch or the number of processes'}")
    corpus_dir = Path(cfg.corpus_dir)
    if not corpus_dir.is_dir():
        raise InputError(f"corpus_dir {corpus_dir}: not found; build it with 'blalm corpus CONFIG --out {corpus_dir}'")
    manifest = read_manifest(corpus_dir)
    check_track(cfg, manifest)
    return manifest


@dataclass
class TrainPlan:
    """What the run will do: its data, steps and milestones (a function of the config and the corpus)."""

    cfg: TrainConfig                  # vocab size set from the tokenizer
    tokens: TokenData
    train_blocks: np.ndarray
    dev_blocks: np.ndarray
    steps_per_epoch: int
    total_steps: int
    accumulation: int
    train_words: int
    milestones: list[int]
    data_info: dict[str, Any]

    @property
    def tokens_per_step(self) -> int:
        return self.cfg.global_batch * self.cfg.context_length

    def words_seen(self, step: int) -> int:
        return ms.words_seen(step * self.tokens_per_step, self.train_words, self.tokens.meta["train_tokens"])


def load_tokens(cfg: TrainConfig, run_dir: Path, dist: Dist, log: Callable[[str], None]) -> TokenData:
    """The tokenized corpus (rank 0 builds the cache, the others read it)."""
    corpus_dir = Path(cfg.corpus_dir)
    cache_root = cache_root_for(corpus_dir, run_dir, cfg.token_cache)
    roots = (corpus_dir / ".tokens", run_dir / TOKEN_CACHE)
    def build() -> TokenData:
        remove_stale_temp(run_dir / TOKEN_CACHE)     # a killed build's folder (the run's lock is held)
        return prepare_tokens(corpus_dir, Path(cfg.tokenizer_dir), cache_root, roots, progress=cfg.progress, log=log)

    tokens = dist.on_main(build)
    if not dist.is_main:   # rank 0 has verified the cache
        tokens = prepare_tokens(corpus_dir, Path(cfg.tokenizer_dir), cache_root, roots, verify=False)
    return tokens


def plan_run(cfg: TrainConfig, run_dir: Path, dist: Dist, manifest: dict[str, Any] | None,
             log: Callable[[str], None] = print, device: torch.device | None = None) -> TrainPlan:
    """Tokens, blocks, steps and milestones of the run (the first of the loop's plain steps); the
    config's ``compile = "auto"`` and ``micro_batch = 0`` made concrete for ``device``
    (:mod:`blalm.train.execution`)."""
    G, ctx_len, corpus_dir = cfg.global_batch, cfg.context_length, Path(cfg.corpus_dir)
    tokens = load_tokens(cfg, run_dir, dist, log)
    check_track(cfg, manifest, counted_words=tokens.meta["train_words"])
    cfg = resolve_for(with_vocab_size(cfg, tokens.vocab_size), device or torch.device("cpu"), dist.world_size)
    train_blocks, dev_blocks = blocks_view(tokens.train, ctx_len), blocks_view(tokens.dev, ctx_len)
    if cfg.eval_max_blocks and cfg.eval_max_blocks < len(dev_blocks):   # evenly spaced: every source of dev.txt
        dev_blocks = dev_blocks[np.linspace(0, len(dev_blocks) - 1, cfg.eval_max_blocks).round().astype(np.int64)]
    steps_per_epoch = len(train_blocks) // G
    if steps_per_epoch == 0:
        raise InputError(f"{corpus_dir}/train.txt: {len(tokens.train):,} tokens make {len(train_blocks)} blocks of "
                         f"{ctx_len}, fewer than one global batch of {G}; use a larger corpus or a smaller "
                         f"global_batch / context_length")
    if len(dev_blocks) == 0:
        raise InputError(f"{corpus_dir}/dev.txt: {len(tokens.dev):,} tokens, fewer than one block of {ctx_len}; "
                         f"build the corpus with a larger dev_words")
    total_steps = steps_per_epoch * cfg.epochs
    if cfg.max_steps:
        total_steps = min(total_steps, cfg.max_steps)
    train_words = manifest["train_words"] if manifest and isinstance(manifest.get("train_words"), int) \
        else tokens.meta["train_words"]
    planned_words = ms.words_seen(total_steps * G * ctx_len, train_words, tokens.meta["train_tokens"])
    data_info = {"key": tokens.key, "train_tokens": tokens.meta["train_tokens"], "train_words": train_words,
                 "train_words_counted": tokens.meta["train_words"], "dev_tokens": tokens.meta["dev_tokens"],
                 "vocab_size": tokens.vocab_size, "cache": str(tokens.folder)}
    return TrainPlan(cfg=cfg, tokens=tokens, train_blocks=train_blocks, dev_blocks=dev_blocks,
                     steps_per_epoch=steps_per_epoch, total_steps=total_steps,
                     accumulation=G // (cfg.micro_batch * dist.world_size), train_words=train_words,
                     milestones=ms.milestones(planned_words, cfg.milestone_scale), data_info=data_info)


def check_same_data(key: str, run_dir: Path) -> Callable[[Path, dict[str, Any]], None]:
    """A resume's check that the checkpoint was trained on the same tokenized corpus."""
    def check(path: Path, state: dict[str, Any]) -> None:
        saved = (state.get("data") or {}).get("key")
        if saved != key:
            raise BlalmError(f"{run_dir}: the run was trained on other data (tokenized corpus {saved}, now {key}): "
                             f"train.txt, dev.txt or tokenizer.json changed. Use the same corpus and tokenizer, "
                             f"or choose a new --out")
    return check


def copy_tokenizer(src: Path, dst: Path) -> None:
    """Copy the tokenizer files into the run (so a run folder is self-contained for evaluation); at
    every start, so that the copy new checkpoints take is the tokenizer the data key verified."""
    dst.mkdir(parents=True, exist_ok=True)
    for name in TOKENIZER_FILES:
        if (src / name).is_file():
            tmp = dst / f".{name}.tmp"
            shutil.copyfile(src / name, tmp)
            os.replace(tmp, dst / name)


# ----------------------------------------------------------------------------------------------
# validation


@torch.no_grad()
def evaluate(model: nn.Module, dev_blocks: np.ndarray, token_bytes: torch.Tensor, batch: int,
             device: torch.device, autocast, dist: Dist) -> dict[str, float]:
    """Loss (nats/token), perplexity and bits per byte of ``model`` on the dev blocks (sharded over ranks)."""
    was_training = model.training
    model.eval()
    totals = torch.zeros(3, dtype=torch.float64, device=device)   # nats, tokens, bytes
    indices = np.arange(dist.rank, len(dev_blocks), dist.world_size)
    most = -(-len(dev_blocks) // dist.world_size)                  # rank 0's share
    passes = -(-most // batch)
    for start in range(0, passes * batch, batch):   # as many forwards on every rank (FSDP's are collectives)
        rows = indices[start:start + batch]
        x = torch.from_numpy(dev_blocks[rows if len(rows) else [0]].astype(np.int64)).to(device)
        with autocast():
            logits = model(x).logits
        if not len(rows):   # this rank's share ran out: a forward for the others' sake, not counted
            continue
        targets = x[:, 1:]
        nats = F.cross_entropy(logits[:, :-1].float().reshape(-1, logits.shape[-1]), targets.reshape(-1),
                               reduction="sum")
        totals[0] += nats.double()
        totals[1] += targets.numel()
        totals[2] += token_bytes[targets].sum().double()
    dist.all_reduce_sum(totals)
    model.train(was_training)
    nats, tokens, nbytes = totals.tolist()
    loss = nats / tokens if tokens else float("nan")
    return {"val_loss": loss, "val_ppl": math.exp(loss) if loss < 700 else float("inf"),
            "val_bpb": nats / (math.log(2) * nbytes) if nbytes else float("nan"), "val_tokens": int(tokens)}


def swa_coefficients(model: nn.Module) -> list[float]:
    fn = getattr(model, "swa_coefficients", None)
    if fn is None:
        return []
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)   # float() of a parameter
        return [float(v) for v in fn()]


# ----------------------------------------------------------------------------------------------
# the run


def train(cfg: TrainConfig, run_dir: Path, *, model_hook: Callable[[nn.Module], None] | None = None,
          log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Train (or resume) the run in ``run_dir``; return a summary (steps, losses, checkpoints).

    ``model_hook`` is called with the freshly built model before training (tests use it to
    register forward hooks, e.g. to inject a non-finite loss). ``log`` prints the run's messages
    (default: ``print`` on rank 0; progress goes to a tqdm bar when ``cfg.progress``).
    """
    run_dir = Path(run_dir)
    device = resolve_device(cfg.device)
    dist = Dist(device)
    say = log or print
    if not dist.is_main:
        say = lambda _msg: None  # noqa: E731
    try:
        manifest = check_inputs(cfg, dist.world_size)
        with hold_lock(run_dir, dist, "training run", say):
            with scoring_beside(cfg, run_dir, device.type, dist.is_main, say) as scored:
                summary = _train(cfg, run_dir, device, dist, manifest, model_hook, say)
            summary.update(scored)
    except BaseException:
        dist.close(clean=False)
        raise
    dist.close()
    return summary


def _train(cfg: TrainConfig, run_dir: Path, device: torch.device, dist: Dist, manifest: dict[str, Any] | None,
           model_hook: Callable[[nn.Module], None] | None, say: Callable[[str], None]) -> dict[str, Any]:
    plan = plan_run(cfg, run_dir, dist, manifest, say, device)
    cfg = plan.cfg
    spec = RunSpec(run_dir, config_dict(cfg), RunPlan(plan.total_steps, plan.steps_per_epoch), what="run",
                   free_keys=RESUME_FREE_KEYS, progress=cfg.progress, desc="train",
                   keep_optimizer=None if cfg.keep_optimizer_state == "all" else 2, seed=cfg.seed,
                   info={"world_size": dist.world_size, "device": str(device), "data": plan.data_info})
    with RunSession(spec, dist, say) as session:
        session.start(check_state=check_same_data(plan.tokens.key, run_dir),
                      start_files=lambda: copy_tokenizer(Path(cfg.tokenizer_dir), run_dir / TOKENIZER_COPY))
        if session.complete:
            return _summary(session, plan, [], session.point.state.get("nonfinite_steps", 0), already_complete=True)
        loop = TrainLoop.build(plan, session, device, dist, model_hook)
        loop.run()
    finite = [v for v in loop.losses if math.isfinite(v)]
    say(f"done: {session.step} steps; checkpoints in {session.root}"
        + (f" ({', '.join(session.saved)})" if session.saved else "")
        + (f"; {loop.nonfinite_total} non-finite steps skipped" if loop.nonfinite_total else ""))
    return {**_summary(session, plan, loop.losses, loop.nonfinite_total, already_complete=False),
            "final_loss": finite[-1] if finite else None}


def _summary(session: RunSession, plan: TrainPlan, losses: list[float], nonfinite: int,
             already_complete: bool) -> dict[str, Any]:
    return {"run_dir": str(session.spec.run_dir), "rank": session.dist.rank, "steps": session.step
            if not already_complete else session.point.state["step"], "total_steps": plan.total_steps,
            "already_complete": already_complete, "checkpoints": list(session.saved),
            "resumed_from": session.resumed_from, "nonfinite_steps": nonfinite, "losses": losses}


@dataclass
class TrainLoop:
    """The model, its optimizers and the loop's counters; :meth:`run` trains to the plan's end."""

    plan: TrainPlan
    session: RunSession
    device: torch.device
    dist: Dist
    model: nn.Module                  # the model itself (saved, validated; sharded in place under FSDP)
    parallel: Parallel                # what the steps call (compiled, DDP-wrapped) and how gradients meet
    optimizers: dict[str, torch.optim.Optimizer]
    names: dict[str, list[list[str]]]
    precision: str
    token_bytes: torch.Tensor
    nonfinite_total: int = 0
    consecutive_nonfinite: int = 0
    ema: WeightAverage | None = None  # the weight average (ema_decay > 0): validated and saved as the model
    losses: list[float] = field(default_factory=list)
    interval: dict[str, float] = field(default_factory=dict)
    _perm: tuple[int, np.ndarray | None] = (-1, None)

    @classmethod
    def build(cls, plan: TrainPlan, session: RunSession, device: torch.device, dist: Dist,
              model_hook: Callable[[nn.Module], None] | None) -> "TrainLoop":
        """Seed, build the model and optimizers, restore a resumed checkpoint, log the setup."""
        from blalm.model.decoder import build_model, count_parameters

        cfg = plan.cfg
        seed_everything(cfg.seed)
        model = build_model(cfg.model, device)
        if model_hook is not None:
            model_hook(model)
        counts = count_parameters(model)
        parallel = wrap_for_training(model, cfg, dist, device)    # FSDP shards model's parameters
        optimizers, split = build_optimizers(model, cfg, fused=device.type == "cuda")
        names = {name: param_names(opt, model) for name, opt in optimizers.items()}
        precision = resolve_precision(cfg.precision, device, cpu_autocast=True)
        session.say(f"model: {cfg.model.mixer} {cfg.model.num_layers} layers, hidden {cfg.model.hidden_size}, "
                    f"vocab {cfg.model.vocab_size}: {counts['total']:,} parameters ({counts['non_embedding']:,} "
                    f"non-embedding)")
        session.say(split.describe())
        session.say(f"data: {len(plan.tokens.train):,} train tokens ({plan.train_words:,} words) -> "
                    f"{len(plan.train_blocks):,} blocks of {cfg.context_length}; {plan.steps_per_epoch} steps/epoch "
                    f"of {cfg.global_batch} blocks ({cfg.micro_batch} x {plan.accumulation} accumulation x "
                    f"{dist.world_size} process(es){', ' + parallel.kind if dist.enabled else ''}); "
                    f"{plan.total_steps} steps; device {device}, {precision}")
        ema = WeightAverage(model, cfg.ema_decay, cfg.ema_warmup) if cfg.ema_decay > 0 else None
        if ema is not None:
            session.say(describe_ema(cfg.ema_decay, cfg.ema_warmup, plan.total_steps))
        session.restore({MODEL_FILE: model} if ema is None else {TRAIN_WEIGHTS_FILE: model, MODEL_FILE: ema},
                        optimizers, names, device)
        if ema is not None:
            session.after_step.append(lambda s: ema.update(s.step))
        state = session.point.state or {}
        loop = cls(plan=plan, session=session, device=device, dist=dist, model=model,
                   parallel=parallel, optimizers=optimizers,
                   names=names, precision=precision,
                   token_bytes=torch.from_numpy(plan.tokens.token_bytes.astype(np.int64)).to(device),
                   nonfinite_total=state.get("nonfinite_steps", 0),
                   consecutive_nonfinite=state.get("consecutive_nonfinite", 0), ema=ema)
        if session.point.path is None:
            loop.log_setup(counts, split.summary())
        return loop

    def log_setup(self, counts: dict[str, int], split: dict[str, Any]) -> None:
        """A fresh run's setup record and its step-0 validation."""
        plan, session = self.plan, self.session
        session.emit({"kind": "setup", "step": 0, "parameters": counts, "optimizer_split": split,
                      "total_steps": plan.total_steps, "steps_per_epoch": plan.steps_per_epoch,
                      "accumulation": plan.accumulation, "world_size": self.dist.world_size,
                      "tokens_per_step": plan.tokens_per_step, "train_tokens": plan.tokens.meta["train_tokens"],
                      "train_words": plan.train_words,
                      "words_per_token": plan.train_words / plan.tokens.meta["train_tokens"],
                      "milestones": plan.milestones, "device": str(self.device), "precision": self.precision,
                      "tensorboard": bool(session.metrics and session.metrics.tensorboard_available)})
        val = self.validate()
        session.emit({"kind": "eval", "step": 0, "tokens_seen": 0, "words_seen": 0, **val, "checkpoint": None})
        session.say(f"step 0: val loss {val['val_loss']:.4f}, ppl {val['val_ppl']:.2f}, {val['val_bpb']:.4f} bits/byte")

    def autocast(self):
        return precision_context(self.device, self.precision)

    def validate(self) -> dict[str, float]:
        """Validation of the weights a checkpoint saves as the model (the average, with ``ema_decay``)."""
        cfg = self.plan.cfg
        with self.ema.swapped_in() if self.ema is not None else contextlib.nullcontext():
            return evaluate(self.model, self.plan.dev_blocks, self.token_bytes, cfg.eval_batch or cfg.micro_batch,
                            self.device, self.autocast, self.dist)

    def run(self) -> None:
        """Optimizer steps to the end of the plan: one step, its record, a checkpoint when one is due."""
        session = self.session
        self._reset_interval()
        with session.loop():
            while session.step < session.total_steps:
                words_before = self.plan.words_seen(session.step)
                cfg = self.plan.cfg
                lrs = session.apply_schedule(self.optimizers, cfg.warmup_fraction, cfg.min_lr_fraction,
                                             cfg.schedule, cfg.decay_fraction)
                step_loss, grad_norm = self.step()
                session.advance(**({"loss": f"{step_loss:.4f}", "lr": f"{lrs.get('adamw', 0):.2e}"}
                                   if math.isfinite(step_loss) else {}))
                self.log_step(lrs, grad_norm)
                self.maybe_checkpoint(words_before, step_loss, lrs)

    def _batch_rows(self) -> np.ndarray:
        """This rank's blocks of the session's step (the epoch's permutation drawn once per epoch)."""
        plan, step = self.plan, self.session.step
        epoch, step_in_epoch = divmod(step, plan.steps_per_epoch)
        if self._perm[0] != epoch:
            self._perm = (epoch, epoch_permutation(len(plan.train_blocks), plan.cfg.seed, epoch))
        return batch_indices(self._perm[1], step_in_epoch, plan.cfg.global_batch, self.dist.rank, self.dist.world_size)

    def step(self) -> tuple[float, float]:
        """One optimizer step over the global batch (accumulated micro-batches, DDP); a non-finite
        loss or gradient skips the update. Returns (loss, gradient norm)."""
        cfg, plan, dist = self.plan.cfg, self.plan, self.dist
        mine = self._batch_rows()
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        for a in range(plan.accumulation):
            rows = np.sort(mine[a * cfg.micro_batch:(a + 1) * cfg.micro_batch])
            x = torch.from_numpy(plan.train_blocks[rows].astype(np.int64)).to(self.device, non_blocking=True)
            with self.parallel.sync(last=a == plan.accumulation - 1):
                with self.autocast():
                    loss = self.parallel.module(x, labels=x).loss
                (loss / plan.accumulation).backward()
            loss_sum += loss.detach().double()
            self.session.fault_point("step_backward")
        loss_sum = dist.all_reduce_sum(loss_sum) / (plan.accumulation * dist.world_size)
        self.parallel.sync_replicated()
        params = [p for p in self.model.parameters() if p.requires_grad]
        norm = self.parallel.clip_grad_norm(params, cfg.grad_clip if cfg.grad_clip > 0 else float("inf"))
        step_loss, grad_norm = float(loss_sum), float(norm)
        if math.isfinite(step_loss) and math.isfinite(grad_norm):
            for opt in self.optimizers.values():
                opt.step()
            self.consecutive_nonfinite = 0
            self.interval["loss"] += step_loss
            self.interval["count"] += 1
        else:
            self._count_nonfinite(step_loss, grad_norm)
        for opt in self.optimizers.values():
            opt.zero_grad(set_to_none=True)
        self.losses.append(step_loss)
        self.interval["tokens"] += plan.tokens_per_step
        return step_loss, grad_norm

    def _count_nonfinite(self, step_loss: float, grad_norm: float) -> None:
        self.nonfinite_total += 1
        self.consecutive_nonfinite += 1
        step, cfg = self.session.step + 1, self.plan.cfg
        self.session.emit({"kind": "nonfinite", "step": step, "loss": step_loss, "grad_norm": grad_norm,
                           "consecutive": self.consecutive_nonfinite, "nonfinite_steps": self.nonfinite_total})
        if self.consecutive_nonfinite >= cfg.max_nonfinite_steps:
            last = self.session.latest_path
            raise BlalmError(f"the loss or gradient was not finite for {self.consecutive_nonfinite} optimizer steps "
                             f"in a row (steps {step + 1 - self.consecutive_nonfinite}..{step}); the run stops "
                             f"(max_nonfinite_steps = {cfg.max_nonfinite_steps}). Lower lr, raise warmup_fraction "
                             f"or set grad_clip; the last checkpoint is {last if last else 'none'}")

    def _reset_interval(self) -> None:
        self.interval = {"loss": 0.0, "count": 0, "tokens": 0, "start": time.time()}

    def log_step(self, lrs: dict[str, float], grad_norm: float) -> None:
        """The ``train`` record every ``log_every`` steps (and at the last one)."""
        session, plan, iv = self.session, self.plan, self.interval
        step = session.step
        if step % plan.cfg.log_every and step != plan.total_steps:
            return
        elapsed = max(time.time() - iv["start"], 1e-9)
        session.emit({"kind": "train", "step": step, "epoch": step / plan.steps_per_epoch,
                      "loss": iv["loss"] / iv["count"] if iv["count"] else float("nan"),
                      "lr": lrs, "grad_norm": grad_norm, "tokens_per_s": iv["tokens"] / elapsed,
                      "tokens_seen": step * plan.tokens_per_step, "words_seen": plan.words_seen(step),
                      "nonfinite_steps": self.nonfinite_total, "swa_coefficients": swa_coefficients(self.model)})
        self._reset_interval()

    def maybe_checkpoint(self, words_before: int, step_loss: float, lrs: dict[str, float]) -> None:
        """At a milestone, an epoch end or the run's end: validate, then save (rank 0, in the background)."""
        session, plan = self.session, self.plan
        step, words_now = session.step, plan.words_seen(session.step)
        reached = ms.crossed(plan.milestones, words_before, words_now)
        if not (reached or session.epoch_end or step == plan.total_steps):
            return
        name = (ms.milestone_name(reached[-1]) if reached else
                ms.epoch_name(step // plan.steps_per_epoch) if session.epoch_end else ms.step_name(step))
        val = self.validate()
        tokens_seen = step * plan.tokens_per_step
        session.emit({"kind": "eval", "step": step, "tokens_seen": tokens_seen, "words_seen": words_now,
                      **val, "checkpoint": name})
        session.note(f"step {step}: {name}: val loss {val['val_loss']:.4f}, ppl {val['val_ppl']:.2f}, "
                     f"{val['val_bpb']:.4f} bits/byte")
        state = {"tokens_seen": tokens_seen, "words_seen": words_now, "milestones": reached,
                 "epoch_end": session.epoch_end, "loss": step_loss, "lr": lrs, "nonfinite_steps": self.nonfinite_total,
                 "consecutive_nonfinite": self.consecutive_nonfinite, "data": plan.data_info, "val": val,
                 "world_size": self.dist.world_size}
        run_dir = session.spec.run_dir
        tokenizer_files = [run_dir / TOKENIZER_COPY / n for n in TOKENIZER_FILES
                           if (run_dir / TOKENIZER_COPY / n).is_file()]
        weights, extra = self.model.state_dict(), None
        if self.ema is not None:     # the average is the model; the trained weights are for resuming
            extra = {TRAIN_WEIGHTS_FILE: weights}
            weights = self.ema.state_dict()
        session.save(name, weights, self.optimizers, self.names, state, config_dict(plan.cfg)["model"],
                     tokenizer_files, extra_tensors=extra)
        self.dist.barrier()


def wrap_for_training(model: nn.Module, cfg: TrainConfig, dist: Dist, device: torch.device) -> Parallel:
    """What the training step calls: ``model`` with each decoder layer compiled in place
    (``compile_scope = "layer"``: the layers share one graph, so compile time does not grow with
    depth) or ``torch.compile(model)`` (``"model"``), then under torchrun wrapped in DDP or sharded
    in place with FSDP2 (``cfg.parallelism``, :func:`blalm.run.parallel.parallelize`); the weights
    stay ``model``'s either way (build the optimizers after this call)."""
    mode = None if cfg.compile_mode == "default" else cfg.compile_mode
    if cfg.compile and cfg.compile_scope == "layer":
        for layer in model.layers:
            layer.compile(mode=mode)
    return parallelize(model, cfg.parallelism, dist, device, bucket_cap_mb=cfg.ddp_bucket_cap_mb,
                       compile_model=cfg.compile and cfg.compile_scope == "model", compile_mode=mode)
