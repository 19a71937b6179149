"""The training loop: ``train(cfg, run_dir)`` (``blalm train CONFIG --out RUN_DIR``).

What a run does, in order:

1. checks the BabyLM rules of ``cfg.track`` (at most 10 epochs, a corpus within the track's word
   budget: the manifest's ``train_words`` and the words counted in train.txt);
2. tokenizes the corpus once (``blalm.train.data``; cached by content hash);
3. resumes from ``RUN_DIR/checkpoints/latest`` when there is one: the config must match the
   one the run started with (``RUN_DIR/config.json``) in every key that changes the computation,
   and the tokenized data must be the same bytes; else it writes ``config.json`` (the resolved
   config, vocab size set from the tokenizer), ``run_info.json`` (command, seed, versions, git
   commit, machine) and a copy of the tokenizer (``RUN_DIR/tokenizer/``);
4. seeds torch/numpy/python with ``seed``, builds the model, splits its parameters over Muon
   and AdamW (printed), and trains: each optimizer step takes the next ``global_batch`` blocks of
   the epoch's permutation, split over ``micro_batch``-sized forward/backward passes (gradient
   accumulation) and over the processes of a ``torchrun`` launch (DDP);
5. a non-finite loss or gradient norm skips the step (no update; the batch is consumed and the
   schedule moves on) and is counted; ``max_nonfinite_steps`` in a row stop the run;
6. at every BabyLM milestone (words seen), every epoch end and the end of the run it validates
   on the dev split (loss, perplexity, bits per byte) and writes a checkpoint atomically.

Determinism: on CPU with the same config, a run that is killed at any point and re-run with the
same command ends with weights bit-identical to an uninterrupted run: the data position is a
function of the step, the learning rate a function of the step, and checkpoints hold the exact
weights, optimizer states and RNG states. (Bit-identity holds for the same machine and torch
thread count; ``micro_batch``, ``device``, ``precision`` and ``compile`` may be changed on resume,
which keeps the math but not the last bit.)

DDP: under ``torchrun`` (``WORLD_SIZE > 1``) every process takes ``global_batch / world_size``
blocks of each global batch (``micro_batch x accumulation`` of them); gloo on CPU, NCCL on GPU.
Only rank 0 writes files; validation is sharded over the ranks.
"""

from __future__ import annotations

import contextlib
import json
import gc
import math
import os
import shutil
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from blalm.errors import BlalmError, InputError
from blalm.atomic import write_json_atomic
from blalm.runinfo import run_info
from blalm.model.checkpoint import TOKENIZER_FILES
from blalm.train import checkpoint as ckpt
from blalm.train import milestones as ms
from blalm.train.config import (
    RUN_CHECKPOINTS,
    RUN_CONFIG_FILE,
    TRACK_MAX_EPOCHS,
    TRACK_WORD_BUDGET,
    TrainConfig,
    config_dict,
    config_differences,
    with_vocab_size,
)
from blalm.train.data import batch_indices, blocks_view, cache_root_for, epoch_permutation, prepare_tokens
from blalm.train.metrics import MetricsLogger, truncate_metrics
from blalm.train.optim import build_optimizers, lr_factor, param_names, set_learning_rates

RUN_INFO_FILE = "run_info.json"
TOKENIZER_COPY = "tokenizer"


# ----------------------------------------------------------------------------------------------
# distributed helpers


class Dist:
    """Rank, world size and the collectives the loop needs (no-ops in a single process)."""

    def __init__(self, device: torch.device | None = None) -> None:
        self.world_size = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.owns_group = False
        if self.world_size > 1 and not torch.distributed.is_initialized():
            backend = "nccl" if (device is not None and device.type == "cuda") else "gloo"
            if device is not None and device.type == "cuda":
                torch.cuda.set_device(device)
            torch.distributed.init_process_group(backend=backend)
            self.owns_group = True

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            torch.distributed.barrier()

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.enabled:
            torch.distributed.all_reduce(tensor, op=torch.distributed.ReduceOp.SUM)
        return tensor

    def close(self, clean: bool = True) -> None:
        if self.owns_group and torch.distributed.is_initialized():
            # free the DDP wrapper (it holds the process group) now, not at interpreter exit, where
            # gloo's threads would be destroyed while still joinable
            gc.collect()
            if clean:
                # every rank gets here before any tears down: a rank that leaves while its peer still
                # talks to it makes gloo abort the peer at exit ("terminate called without an active
                # exception", seen once in CI). After an error the peers are not waited for.
                torch.distributed.barrier()
            torch.distributed.destroy_process_group()


def resolve_device(name: str) -> torch.device:
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise BlalmError(f"device = {name!r} but no CUDA GPU is available here; use device = \"cpu\" or \"auto\"")
        if device.index is None:
            device = torch.device("cuda", local_rank if int(os.environ.get("WORLD_SIZE", "1")) > 1 else 0)
    return device


def autocast_for(device: torch.device, precision: str):
    use_bf16 = precision == "bf16" or (precision == "auto" and device.type == "cuda")
    if not use_bf16:
        return contextlib.nullcontext, "fp32"
    return (lambda: torch.autocast(device_type=device.type, dtype=torch.bfloat16)), "bf16"


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


def check_run_dir(run_dir: Path) -> None:
    if run_dir.exists() and not run_dir.is_dir():
        raise BlalmError(f"--out {run_dir} exists and is not a folder; give a folder path")
    if run_dir.is_dir() and any(run_dir.iterdir()) and not (run_dir / RUN_CONFIG_FILE).is_file():
        names = ", ".join(sorted(p.name for p in run_dir.iterdir())[:5])
        raise BlalmError(f"--out {run_dir} holds files ({names}) but is not a blalm training run (no {RUN_CONFIG_FILE}); "
                         f"choose a new or empty folder")


def compiled_for_training(model: nn.Module, cfg: TrainConfig) -> nn.Module:
    """The module the training step calls: ``model`` itself, with each decoder layer compiled in
    place (``compile_scope = "layer"``: the layers share one graph, so compile time does not grow
    with depth), or ``torch.compile(model)`` (``"model"``); the weights stay ``model``'s either way."""
    if not cfg.compile:
        return model
    if cfg.compile_scope == "model":
        return torch.compile(model)
    for layer in model.layers:
        layer.compile()
    return model


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
    for start in range(0, len(indices), batch):
        x = torch.from_numpy(dev_blocks[indices[start:start + batch]].astype(np.int64)).to(device)
        with autocast():
            logits = model(x).logits
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
        summary = _train(cfg, run_dir, device, dist, model_hook, say)
    except BaseException:
        dist.close(clean=False)
        raise
    dist.close()
    return summary


def _train(cfg: TrainConfig, run_dir: Path, device: torch.device, dist: Dist,
           model_hook: Callable[[nn.Module], None] | None, say: Callable[[str], None]) -> dict[str, Any]:
    from tqdm import tqdm

    from blalm.model.decoder import build_model, count_parameters

    G, ctx_len = cfg.global_batch, cfg.context_length
    if G % (cfg.micro_batch * dist.world_size):
        raise BlalmError(f"global_batch ({G}) must be a multiple of micro_batch x processes "
                         f"({cfg.micro_batch} x {dist.world_size}); change micro_batch")
    accum = G // (cfg.micro_batch * dist.world_size)
    corpus_dir, tokenizer_dir = Path(cfg.corpus_dir), Path(cfg.tokenizer_dir)
    if not corpus_dir.is_dir():
        raise InputError(f"corpus_dir {corpus_dir}: not found; build it with 'blalm corpus CONFIG --out {corpus_dir}'")
    manifest = read_manifest(corpus_dir)
    check_track(cfg, manifest)
    if dist.is_main:   # the other ranks would race with rank 0's first writes
        check_run_dir(run_dir)

    # -- tokens (rank 0 builds the cache, the others read it) ------------------------------------
    cache_root = cache_root_for(corpus_dir, run_dir, cfg.token_cache)
    roots = (corpus_dir / ".tokens", run_dir / "tokens")
    if dist.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        tokens = prepare_tokens(corpus_dir, tokenizer_dir, cache_root, roots, progress=cfg.progress)
    dist.barrier()
    if not dist.is_main:
        tokens = prepare_tokens(corpus_dir, tokenizer_dir, cache_root, roots)
    check_track(cfg, manifest, counted_words=tokens.meta["train_words"])
    cfg = with_vocab_size(cfg, tokens.vocab_size)
    train_blocks = blocks_view(tokens.train, ctx_len)
    dev_blocks = blocks_view(tokens.dev, ctx_len)
    if cfg.eval_max_blocks and cfg.eval_max_blocks < len(dev_blocks):   # evenly spaced: every source of dev.txt
        dev_blocks = dev_blocks[np.linspace(0, len(dev_blocks) - 1, cfg.eval_max_blocks).round().astype(np.int64)]
    n_blocks = len(train_blocks)
    steps_per_epoch = n_blocks // G
    if steps_per_epoch == 0:
        raise InputError(f"{corpus_dir}/train.txt: {len(tokens.train):,} tokens make {n_blocks} blocks of "
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
    train_tokens = tokens.meta["train_tokens"]
    tokens_per_step = G * ctx_len
    planned_words = ms.words_seen(total_steps * tokens_per_step, train_words, train_tokens)
    milestone_list = ms.milestones(planned_words, cfg.milestone_scale)
    data_info = {"key": tokens.key, "train_tokens": train_tokens, "train_words": train_words,
                 "train_words_counted": tokens.meta["train_words"], "dev_tokens": tokens.meta["dev_tokens"],
                 "vocab_size": tokens.vocab_size, "cache": str(tokens.folder)}

    # -- resume or start -------------------------------------------------------------------------
    ckpt_root = run_dir / RUN_CHECKPOINTS
    new_config = config_dict(cfg)
    latest = ckpt.read_latest(ckpt_root) if ckpt_root.is_dir() else None
    resume_state = None
    if latest is not None:
        old_config = json.loads((run_dir / RUN_CONFIG_FILE).read_text(encoding="utf-8"))
        diffs = config_differences(old_config, new_config)
        if diffs:
            lines = "\n".join(f"  {k}: {a!r} in the run, {b!r} now" for k, a, b in diffs[:20])
            raise BlalmError(f"{run_dir} holds a run with a different config, so it cannot be resumed:\n{lines}\n"
                             f"Re-run with the run's config ({run_dir / RUN_CONFIG_FILE}) or choose a new --out")
        resume_state = ckpt.read_state(latest)
        if resume_state["data"]["key"] != tokens.key:
            raise BlalmError(f"{run_dir}: the run was trained on other data (tokenized corpus "
                             f"{resume_state['data']['key']}, now {tokens.key}): train.txt, dev.txt or tokenizer.json "
                             f"changed. Use the same corpus and tokenizer, or choose a new --out")
        if resume_state.get("complete") and resume_state["step"] >= total_steps:
            say(f"{run_dir}: the run is already complete ({resume_state['step']} steps; latest checkpoint "
                f"{latest.name}); nothing to do")
            return {"run_dir": str(run_dir), "rank": dist.rank, "steps": resume_state["step"],
                    "total_steps": total_steps, "already_complete": True, "checkpoints": [], "resumed_from": latest.name,
                    "nonfinite_steps": resume_state.get("nonfinite_steps", 0), "losses": []}
    if dist.is_main:
        ckpt.cleanup_stale(ckpt_root)
        info = run_info(new_config, cfg.seed)
        info.update({"world_size": dist.world_size, "device": str(device), "data": data_info,
                     "resumed_from": latest.name if latest else None})
        if latest is None:
            (run_dir / "metrics.jsonl").unlink(missing_ok=True)
            write_json_atomic(run_dir / RUN_CONFIG_FILE, new_config)
            write_json_atomic(run_dir / RUN_INFO_FILE, info)
            copy_tokenizer(tokenizer_dir, run_dir / TOKENIZER_COPY)
        else:
            write_json_atomic(run_dir / f"run_info.resume_step{resume_state['step']:06d}.json", info)
            truncate_metrics(run_dir, resume_state["step"])
    dist.barrier()

    # -- model and optimizers --------------------------------------------------------------------
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed % 2**32)
    import random
    random.seed(cfg.seed)
    model = build_model(cfg.model, device)
    if model_hook is not None:
        model_hook(model)
    optimizers, split = build_optimizers(model, cfg, fused=device.type == "cuda")
    names = {name: param_names(opt, model) for name, opt in optimizers.items()}
    params = [p for p in model.parameters() if p.requires_grad]
    counts = count_parameters(model)
    autocast, precision = autocast_for(device, cfg.precision)
    say(f"model: {cfg.model.mixer} {cfg.model.num_layers} layers, hidden {cfg.model.hidden_size}, "
        f"vocab {cfg.model.vocab_size}: {counts['total']:,} parameters ({counts['non_embedding']:,} non-embedding)")
    say(split.describe())
    say(f"data: {len(tokens.train):,} train tokens ({train_words:,} words) -> {n_blocks:,} blocks of {ctx_len}; "
        f"{steps_per_epoch} steps/epoch of {G} blocks ({cfg.micro_batch} x {accum} accumulation x "
        f"{dist.world_size} process(es)); {total_steps} steps; device {device}, {precision}")

    step = 0
    nonfinite_total = consecutive_nonfinite = 0
    if resume_state is not None:
        model.load_state_dict(ckpt.load_model_state(latest, device))
        opt_tensors = ckpt._load_tensors(latest / ckpt.OPTIMIZER_FILE, device)
        ckpt.load_optimizer_state(optimizers, names, opt_tensors, resume_state["optimizer_scalars"])
        ckpt.set_rng_state(resume_state["rng"])
        step = resume_state["step"]
        nonfinite_total = resume_state.get("nonfinite_steps", 0)
        consecutive_nonfinite = resume_state.get("consecutive_nonfinite", 0)
        if resume_state["steps_per_epoch"] != steps_per_epoch:
            raise BlalmError(f"{latest}: saved with {resume_state['steps_per_epoch']} steps per epoch, now "
                             f"{steps_per_epoch}; the data or batch size changed. Choose a new --out")
        say(f"resuming from {latest} (step {step}, epoch {step // steps_per_epoch + 1}, "
            f"step {step % steps_per_epoch} of the epoch)")

    metrics = MetricsLogger(run_dir) if dist.is_main else None

    def emit(record: dict[str, Any]) -> None:
        if metrics is not None:
            metrics.log(record)

    if resume_state is None:
        emit({"kind": "setup", "step": 0, "parameters": counts, "optimizer_split": split.summary(),
              "total_steps": total_steps, "steps_per_epoch": steps_per_epoch, "accumulation": accum,
              "world_size": dist.world_size, "tokens_per_step": tokens_per_step, "train_tokens": train_tokens,
              "train_words": train_words, "words_per_token": train_words / train_tokens,
              "milestones": milestone_list, "device": str(device), "precision": precision,
              "tensorboard": bool(metrics and metrics.tensorboard_available)})
    else:
        emit({"kind": "resume", "step": step, "checkpoint": latest.name})

    train_model = compiled_for_training(model, cfg)
    if dist.enabled:
        train_model = nn.parallel.DistributedDataParallel(
            train_model, device_ids=[device.index] if device.type == "cuda" else None)
    token_bytes = torch.from_numpy(tokens.token_bytes.astype(np.int64)).to(device)
    eval_batch = cfg.eval_batch or cfg.micro_batch

    if resume_state is None:
        val = evaluate(model, dev_blocks, token_bytes, eval_batch, device, autocast, dist)
        emit({"kind": "eval", "step": 0, "tokens_seen": 0, "words_seen": 0, **val, "checkpoint": None})
        say(f"step 0: val loss {val['val_loss']:.4f}, ppl {val['val_ppl']:.2f}, {val['val_bpb']:.4f} bits/byte")

    tokenizer_files = [run_dir / TOKENIZER_COPY / n for n in TOKENIZER_FILES
                       if (run_dir / TOKENIZER_COPY / n).is_file()]
    saved: list[str] = []
    losses: list[float] = []
    previous_latest = latest.name if latest is not None else None
    saver = ckpt.BackgroundSaver()   # rank 0 writes checkpoints while the steps go on
    bar = tqdm(total=total_steps, initial=step, desc="train", unit="step", dynamic_ncols=True,
               disable=not (cfg.progress and dist.is_main), file=sys.stderr)
    def note(message: str) -> None:
        if bar.disable:
            say(message)
        else:
            bar.write(message)

    perm_epoch, perm = -1, None
    interval_loss, interval_count, interval_start, interval_tokens = 0.0, 0, time.time(), 0
    lrs: dict[str, float] = {}
    grad_norm = float("nan")
    try:
        while step < total_steps:
            epoch, step_in_epoch = divmod(step, steps_per_epoch)
            if epoch != perm_epoch:
                perm, perm_epoch = epoch_permutation(n_blocks, cfg.seed, epoch), epoch
            lrs = set_learning_rates(optimizers, lr_factor(step, total_steps, cfg.warmup_fraction, cfg.min_lr_fraction,
                                                              cfg.schedule, cfg.decay_fraction))
            mine = batch_indices(perm, step_in_epoch, G, dist.rank, dist.world_size)
            loss_sum = torch.zeros((), dtype=torch.float64, device=device)
            for a in range(accum):
                rows = np.sort(mine[a * cfg.micro_batch:(a + 1) * cfg.micro_batch])
                x = torch.from_numpy(train_blocks[rows].astype(np.int64)).to(device, non_blocking=True)
                sync = contextlib.nullcontext() if (not dist.enabled or a == accum - 1) else train_model.no_sync()
                with sync:
                    with autocast():
                        loss = train_model(x, labels=x).loss
                    (loss / accum).backward()
                loss_sum += loss.detach().double()
                ckpt.fault_point("step_backward")
            loss_sum = dist.all_reduce_sum(loss_sum) / (accum * dist.world_size)
            grad_norm_t = torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip if cfg.grad_clip > 0 else float("inf"))
            step_loss, grad_norm = float(loss_sum), float(grad_norm_t)
            if math.isfinite(step_loss) and math.isfinite(grad_norm):
                for opt in optimizers.values():
                    opt.step()
                consecutive_nonfinite = 0
                interval_loss += step_loss
                interval_count += 1
            else:
                nonfinite_total += 1
                consecutive_nonfinite += 1
                emit({"kind": "nonfinite", "step": step + 1, "loss": step_loss, "grad_norm": grad_norm,
                      "consecutive": consecutive_nonfinite, "nonfinite_steps": nonfinite_total})
            for opt in optimizers.values():
                opt.zero_grad(set_to_none=True)
            losses.append(step_loss)
            if consecutive_nonfinite >= cfg.max_nonfinite_steps:
                raise BlalmError(f"the loss or gradient was not finite for {consecutive_nonfinite} optimizer steps "
                                 f"in a row (steps {step + 2 - consecutive_nonfinite}..{step + 1}); the run stops "
                                 f"(max_nonfinite_steps = {cfg.max_nonfinite_steps}). Lower lr, raise warmup_fraction "
                                 f"or set grad_clip; the last checkpoint is "
                                 f"{ckpt_root / previous_latest if previous_latest else 'none'}")
            words_before = ms.words_seen(step * tokens_per_step, train_words, train_tokens)
            step += 1
            interval_tokens += tokens_per_step
            tokens_seen = step * tokens_per_step
            words_now = ms.words_seen(tokens_seen, train_words, train_tokens)
            bar.update(1)
            if math.isfinite(step_loss):
                bar.set_postfix(loss=f"{step_loss:.4f}", lr=f"{lrs.get('adamw', 0):.2e}", refresh=False)

            if step % cfg.log_every == 0 or step == total_steps:
                elapsed = max(time.time() - interval_start, 1e-9)
                emit({"kind": "train", "step": step, "epoch": step / steps_per_epoch,
                      "loss": interval_loss / interval_count if interval_count else float("nan"),
                      "lr": lrs, "grad_norm": grad_norm, "tokens_per_s": interval_tokens / elapsed,
                      "tokens_seen": tokens_seen, "words_seen": words_now, "nonfinite_steps": nonfinite_total,
                      "swa_coefficients": swa_coefficients(model)})
                interval_loss, interval_count, interval_start, interval_tokens = 0.0, 0, time.time(), 0

            reached = ms.crossed(milestone_list, words_before, words_now)
            epoch_end = step % steps_per_epoch == 0
            if reached or epoch_end or step == total_steps:
                name = (ms.milestone_name(reached[-1]) if reached else
                        ms.epoch_name(step // steps_per_epoch) if epoch_end else ms.step_name(step))
                val = evaluate(model, dev_blocks, token_bytes, eval_batch, device, autocast, dist)
                emit({"kind": "eval", "step": step, "tokens_seen": tokens_seen, "words_seen": words_now,
                      **val, "checkpoint": name})
                note(f"step {step}: {name}: val loss {val['val_loss']:.4f}, ppl {val['val_ppl']:.2f}, "
                     f"{val['val_bpb']:.4f} bits/byte")
                if dist.is_main:
                    opt_tensors, opt_scalars = ckpt.optimizer_tensors(optimizers, names)
                    state = {"step": step, "epoch": step // steps_per_epoch, "step_in_epoch": step % steps_per_epoch,
                             "steps_per_epoch": steps_per_epoch, "total_steps": total_steps,
                             "tokens_seen": tokens_seen, "words_seen": words_now, "milestones": reached,
                             "epoch_end": epoch_end, "complete": step == total_steps, "loss": step_loss,
                             "lr": lrs, "nonfinite_steps": nonfinite_total,
                             "consecutive_nonfinite": consecutive_nonfinite, "rng": ckpt.rng_state(),
                             "data": data_info, "optimizer_scalars": opt_scalars, "optimizer_param_names": names,
                             "val": val, "world_size": dist.world_size}
                    drop = ckpt_root / previous_latest if cfg.keep_optimizer_state == "latest" and previous_latest else None
                    saver.save(ckpt_root, name, model.state_dict(), opt_tensors, state, config_dict(cfg)["model"],
                               tokenizer_files, drop_optimizer_of=drop)
                    saved.append(name)
                previous_latest = name
                dist.barrier()
    finally:
        saver.close()   # the last checkpoint is on disk before the run reports it (or an error surfaces)
        bar.close()
        if metrics is not None:
            metrics.close()
    finite = [v for v in losses if math.isfinite(v)]
    say(f"done: {step} steps; checkpoints in {ckpt_root}" + (f" ({', '.join(saved)})" if saved else "")
        + (f"; {nonfinite_total} non-finite steps skipped" if nonfinite_total else ""))
    return {"run_dir": str(run_dir), "rank": dist.rank, "steps": step, "total_steps": total_steps,
            "already_complete": False,
            "checkpoints": saved, "resumed_from": latest.name if latest else None,
            "nonfinite_steps": nonfinite_total, "losses": losses,
            "final_loss": finite[-1] if finite else None}


def copy_tokenizer(src: Path, dst: Path) -> None:
    """Copy the tokenizer files into the run (so a run folder is self-contained for evaluation)."""
    dst.mkdir(parents=True, exist_ok=True)
    for name in TOKENIZER_FILES:
        if (src / name).is_file():
            tmp = dst / f".{name}.tmp"
            shutil.copyfile(src / name, tmp)
            os.replace(tmp, dst / name)
