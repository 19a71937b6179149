"""The training stage's typed config (``configs/train/*.toml``).

A training config names the corpus folder (``blalm corpus``), the tokenizer folder
(``blalm tokenizer``) and the model, and sets the recipe of the paper's §5: context 512, global
batch 64 (gradient accumulation over micro-batches), cosine decay with 10% linear warm-up,
Muon for the blocks' matrices + AdamW for the rest (or AdamW alone), at most 10 epochs.

The model is given by a model config file, a ``[model]`` table, or both::

    model_config = "configs/model/tiny_blalm.toml"   # read first (its ``extends`` resolved)
    [model]                                          # then these keys override it
    hidden_size = 32

``model_config`` is resolved against the current folder first, then against the repository
root (so the shipped configs work from anywhere). ``corpus_dir`` and ``tokenizer_dir`` are
resolved against the current folder. ``model.vocab_size`` is always set by the trainer from the
tokenizer, whatever the config says.

Load with :func:`load_train_config` (``blalm.config.load_config`` alone would not merge the
model config file into ``[model]``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Sequence

from blalm.config import Origin, check, deep_merge, load_config, read_toml, to_dict
from blalm.errors import ConfigError
from blalm.model.config import ModelConfig
from blalm.runinfo import REPO_ROOT

Track = Literal["strict-small", "strict", "none"]

TRACK_WORD_BUDGET = {"strict-small": 10_000_000, "strict": 100_000_000}
"""BabyLM 2025: at most this many words of training text per track."""

TRACK_MAX_EPOCHS = 10
"""BabyLM 2025: at most 10 passes over the training text (both tracks)."""

# Keys that may change between a run and its resumption: they change how the run is executed
# or logged, not what it computes (bit-identity of a resumed run still needs the same micro_batch,
# device, precision and compile setting). Everything else must match (``blalm.run.resume``).
RESUME_FREE_KEYS = frozenset({
    "corpus_dir", "tokenizer_dir", "model_config",  # paths; the data is compared by content hash
    "micro_batch", "device", "precision", "compile", "compile_scope", "compile_mode",
    "progress", "log_every", "eval_max_blocks", "eval_batch", "keep_optimizer_state",
    "max_nonfinite_steps", "token_cache", "score_suite", "score_data", "score_set",
    "parallelism", "ddp_bucket_cap_mb",             # how the processes share a step; the checkpoints are full
})


@dataclass
class TrainConfig:
    # --- inputs -------------------------------------------------------------------------------
    corpus_dir: Path                   # folder written by 'blalm corpus' (train.txt, dev.txt, manifest.json)
    tokenizer_dir: Path                # folder written by 'blalm tokenizer' (tokenizer.json)
    model_config: Path | None = None   # model config file (configs/model/*.toml); [model] overrides it
    model: ModelConfig = field(default_factory=ModelConfig)  # vocab_size is set from the tokenizer

    # --- BabyLM rules -------------------------------------------------------------------------
    track: Track = "none"              # "strict-small" (10M words), "strict" (100M words) or "none"
    epochs: int = 10                   # passes over train.txt (a track allows at most 10)
    max_steps: int = 0                 # stop after this many optimizer steps (0 = epochs decide);
    #                                    the learning-rate schedule spans the steps actually run

    # --- batching -----------------------------------------------------------------------------
    context_length: int = 512          # tokens per block (the stream is cut into fixed blocks)
    global_batch: int = 64             # blocks per optimizer step = micro_batch x accumulation x GPUs
    micro_batch: int = 0               # blocks per forward/backward pass on one device; 0 = chosen for the
    #                                    device: on a GPU the largest that fits its memory, on the CPU at most 8
    #                                    (blalm.train.execution); config.json records the value chosen

    # --- optimisation -------------------------------------------------------------------------
    optimizer: Literal["muon", "adamw"] = "muon"  # "muon": Muon for the blocks' matrices + AdamW for the rest
    lr: float = 7e-4                   # peak learning rate (AdamW; Muon too unless muon_lr is set)
    muon_lr: float | None = None       # Muon's peak learning rate (default: lr)
    muon_adjust_lr: Literal["match_rms_adamw", "original"] = "match_rms_adamw"  # torch Muon adjust_lr_fn:
    #                                    "match_rms_adamw" scales Muon's step to AdamW's RMS, so one lr serves both
    muon_momentum: float = 0.95
    muon_nesterov: bool = True
    muon_ns_steps: int = 5             # Newton-Schulz iterations
    adam_beta1: float = 0.9
    adam_beta2: float = 0.95
    adam_eps: float = 1e-8
    weight_decay: float = 0.1          # decoupled weight decay on 2-D weights only (none on norms,
    #                                    biases, DynMod alpha, conv kernels, Hedgehog maps, memory slots)
    warmup_fraction: float = 0.1       # linear warm-up over this share of the steps, then the schedule
    schedule: Literal["cosine", "wsd"] = "cosine"  # after warm-up: "cosine" decay to min_lr_fraction (the
    #                                    paper), or "wsd": constant, then a linear decay over the last
    #                                    decay_fraction of the steps (warm-up-stable-decay)
    decay_fraction: float = 0.2        # "wsd": share of the steps in the final linear decay
    min_lr_fraction: float = 0.0       # the schedule ends at lr x this
    grad_clip: float = 1.0             # clip the global gradient norm to this (0 = no clipping)
    ema_decay: float = 0.0             # > 0: keep an exponential moving average of the weights with this
    #                                    decay (e.g. 0.999); checkpoints save and validate the average as the
    #                                    model (blalm.train.ema); 0 = off (the paper)
    ema_warmup: bool = True            # the average's decay after step t is min(ema_decay, (1 + t) / (10 + t)),
    #                                    which reaches 0.999 only at step 8,990 (a 4,240-step strict-small run
    #                                    ends at 0.9979); false: ema_decay from the first step (GPT-BERT)
    max_nonfinite_steps: int = 10      # a non-finite loss or gradient skips the step; stop after this many in a row
    seed: int = 0

    # --- execution ----------------------------------------------------------------------------
    device: str = "auto"               # "auto" (cuda when available), "cpu", "cuda", "cuda:1", ...
    precision: Literal["auto", "bf16", "fp32"] = "auto"  # "auto": bf16 autocast on GPU, fp32 on CPU
    compile: bool | Literal["auto"] = "auto"  # torch.compile the model for training; "auto": on a CUDA
    #                                    GPU (3x faster steps there), off on the CPU (compiling costs more than
    #                                    it saves for short CPU runs); config.json records the value chosen
    compile_scope: Literal["layer", "model"] = "layer"  # "layer": each decoder layer compiled on its own
    #                                    (one graph for all layers: ~11 s instead of ~170 s for the 24-layer
    #                                    BLaLM on an H200, 3% slower steps); "model": the whole model in one graph
    compile_mode: Literal["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"] = "default"
    #                                    torch.compile's mode; "reduce-overhead" replays CUDA graphs (for small,
    #                                    launch-bound models: not measured yet)
    token_cache: Literal["corpus", "run"] = "corpus"  # where the tokenized corpus is cached (corpus
    #                                    folder, else the run folder when the corpus folder is read-only)

    # --- processes (torchrun; ignored in one process) -----------------------------------------
    parallelism: Literal["ddp", "fsdp"] = "ddp"  # "ddp": every process holds the whole model and the
    #                                    gradients are all-reduced (DistributedDataParallel); "fsdp": FSDP2
    #                                    (fully_shard) shards every decoder layer, then the rest, over the
    #                                    processes, for models that do not fit one GPU (Muon gathers each
    #                                    matrix stack whole for its orthogonalisation). Checkpoints hold the
    #                                    full model and optimizer state either way: a run resumes under
    #                                    either setting or in one process
    ddp_bucket_cap_mb: float | None = None  # "ddp": MiB of gradients per all-reduce bucket (None = DDP's
    #                                    default, 25); larger buckets mean fewer, longer all-reduces

    # --- checkpoints, validation, logging -----------------------------------------------------
    milestone_scale: float = 1.0       # BabyLM milestones (1M, 2M, .. 10M, 20M, .. 100M, 200M, ..
    #                                    words seen) times this; e.g. 0.02 for a 200k-word demo corpus
    #                                    gives a checkpoint every 20k words
    keep_optimizer_state: Literal["latest", "all"] = "latest"  # optimizer state in the latest two
    #                                    checkpoints only (a damaged latest one can be skipped at a resume;
    #                                    older ones keep weights + state.json), or in all
    eval_max_blocks: int = 0           # validate on N dev blocks evenly spaced over dev.txt (0 = all of them)
    eval_batch: int = 0                # blocks per validation forward pass (0 = micro_batch)
    log_every: int = 10                # a training record in metrics.jsonl every N optimizer steps
    progress: bool = True              # tqdm progress bar

    # --- scoring while training (blalm train --eval fast) ----------------------------------------
    score_suite: Literal["none", "fast", "full"] = "none"   # score every checkpoint on this zero-shot
    #                                    suite as it is written, in a side process on the same device
    #                                    ('blalm eval RUN_DIR --follow'); the run ends with RUN_DIR/eval/
    #                                    summary.json naming the best checkpoint, as 'blalm eval RUN_DIR'
    score_data: str = ""               # the evaluation data folder for it ("" = blalm eval's default)
    score_set: list[str] = field(default_factory=list)   # more 'blalm eval' settings, KEY=VALUE (EvalConfig
    #                                    keys, e.g. "entity_fast_per_group=20")

    def validate(self) -> None:
        for name in ("epochs", "context_length", "global_batch", "muon_ns_steps",
                     "log_every", "max_nonfinite_steps"):
            value = getattr(self, name)
            check(value >= 1, f"{name} must be >= 1, got {value}")
        for name in ("max_steps", "eval_max_blocks", "eval_batch", "micro_batch"):
            value = getattr(self, name)
            check(value >= 0, f"{name} must be >= 0 (0 = off/default), got {value}")
        check(self.context_length >= 2, f"context_length must be >= 2, got {self.context_length}")
        check(self.micro_batch == 0 or self.global_batch % self.micro_batch == 0,
              f"global_batch ({self.global_batch}) must be a multiple of micro_batch ({self.micro_batch}); "
              f"e.g. micro_batch = {largest_divisor_at_most(self.global_batch, self.micro_batch)}")
        check(self.lr > 0, f"lr must be > 0, got {self.lr}")
        check(self.muon_lr is None or self.muon_lr > 0, f"muon_lr must be > 0, got {self.muon_lr}")
        check(0 <= self.muon_momentum < 1, f"muon_momentum must be in [0, 1), got {self.muon_momentum}")
        check(0 <= self.adam_beta1 < 1 and 0 <= self.adam_beta2 < 1,
              f"adam_beta1 and adam_beta2 must be in [0, 1), got {self.adam_beta1}, {self.adam_beta2}")
        check(self.adam_eps > 0, f"adam_eps must be > 0, got {self.adam_eps}")
        check(self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay}")
        check(0 <= self.warmup_fraction < 1, f"warmup_fraction must be in [0, 1), got {self.warmup_fraction}")
        check(0 < self.decay_fraction <= 1, f"decay_fraction must be in (0, 1], got {self.decay_fraction}")
        check(0 <= self.min_lr_fraction <= 1, f"min_lr_fraction must be in [0, 1], got {self.min_lr_fraction}")
        for item in self.score_set:
            check("=" in item, f"score_set item {item!r}: expected KEY=VALUE of 'blalm eval' (e.g. "
                               f"\"entity_fast_per_group=20\")")
        check(0 <= self.ema_decay < 1, f"ema_decay must be in [0, 1) (0 = off), got {self.ema_decay}")
        check(self.grad_clip >= 0, f"grad_clip must be >= 0 (0 = off), got {self.grad_clip}")
        check(self.milestone_scale > 0, f"milestone_scale must be > 0, got {self.milestone_scale}")
        check(bool(self.device), "device must be 'auto', 'cpu', 'cuda' or 'cuda:N'")
        check(self.ema_decay == 0 or self.parallelism == "ddp",
              f"ema_decay = {self.ema_decay} with parallelism = \"{self.parallelism}\": the weight average is kept "
              f"whole on every process, which FSDP's shards do not give it; use parallelism = \"ddp\" (or one GPU)")
        check(self.ddp_bucket_cap_mb is None or self.ddp_bucket_cap_mb > 0,
              f"ddp_bucket_cap_mb must be > 0 (MiB), got {self.ddp_bucket_cap_mb}")
        check(self.ddp_bucket_cap_mb is None or self.parallelism == "ddp",
              f"ddp_bucket_cap_mb = {self.ddp_bucket_cap_mb} is a DDP setting, but parallelism = "
              f"\"{self.parallelism}\" (FSDP has no all-reduce buckets): remove ddp_bucket_cap_mb, or set "
              f"parallelism = \"ddp\"")
        if self.track != "none":
            check(self.epochs <= TRACK_MAX_EPOCHS,
                  f"epochs = {self.epochs} breaks the BabyLM rules: the {self.track} track allows at most "
                  f"{TRACK_MAX_EPOCHS} epochs; set epochs <= {TRACK_MAX_EPOCHS} (or track = \"none\" for "
                  f"runs outside the challenge)")


def largest_divisor_at_most(n: int, limit: int) -> int:
    return max(d for d in range(1, max(1, min(n, limit)) + 1) if n % d == 0)


def load_train_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> TrainConfig:
    """Read a training config (TOML, ``extends`` allowed), apply ``key=value`` overrides, merge the
    model config file named by ``model_config`` under the ``[model]`` table, and build the typed
    :class:`TrainConfig` (unknown keys and bad values raise :class:`ConfigError`).

    ``--set model_config=...`` and ``--set model.hidden_size=...`` both work: overrides are applied
    before the model file is merged, and ``[model]`` keys win over the file's.
    """
    return load_config(TrainConfig, path, overrides, prepare=_merge_model_config)


def _merge_model_config(data: dict[str, Any], origin: Origin) -> dict[str, Any]:
    """Read the file ``model_config`` names under the ``[model]`` table (whose keys win)."""
    model_path = data.get("model_config")
    if model_path is None:
        return data
    if not isinstance(model_path, str):
        raise origin.error("model_config", f"bad value for 'model_config': expected a path string, got {model_path!r}")
    resolved = resolve_model_config_path(Path(model_path), origin.under("model_config"))
    data["model_config"] = str(resolved)
    inline = data.get("model", {})
    if not isinstance(inline, dict):
        raise origin.error("model", f"'model' must be a table of model config keys, got {inline!r}",
                           "give dotted keys, e.g. --set model.hidden_size=64")
    data["model"] = deep_merge(read_toml(resolved), inline)
    return data


def resolve_model_config_path(path: Path, where: str = "config") -> Path:
    """``path`` as given if absolute or present under the current folder, else under the repository root."""
    path = path.expanduser()
    if path.is_absolute() or path.is_file():
        if not path.is_file():
            raise ConfigError(f"{where}: model_config {path} not found")
        return path
    candidate = REPO_ROOT / path
    if candidate.is_file():
        return candidate
    raise ConfigError(f"{where}: model_config '{path}' not found (looked in {Path.cwd()} and {REPO_ROOT}); "
                      f"give a path to a configs/model/*.toml file")


def with_vocab_size(cfg: TrainConfig, vocab_size: int) -> TrainConfig:
    """``cfg`` with ``model.vocab_size`` set to the tokenizer's vocabulary."""
    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, vocab_size=vocab_size))


def config_dict(cfg: TrainConfig) -> dict[str, Any]:
    """The JSON view of a config (paths as strings)."""
    return to_dict(cfg)
