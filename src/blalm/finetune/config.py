"""``FinetuneConfig``: what one ``blalm finetune`` run does (built by the CLI with ``from_dict``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from blalm.config import check
from blalm.finetune.tasks import DEFAULT_TASKS, TASKS

GLUE_SUBDIR = Path("full_eval") / "glue_filtered"   # where GLUE lies in the evaluation data folder

# keys that may change between a killed run and its resumption (they keep the math: a compiled block
# computes what the eager one does, a row's validation result does not depend on its batch mates, and
# a task trained by a --jobs child is the run it would be in this process)
RESUMABLE_KEYS = ("progress", "device", "keep_all_checkpoints", "compile", "compile_mode", "eval_batch", "jobs")


@dataclass
class FinetuneConfig:
    model: str = ""                       # a blalm checkpoint folder or a Hugging Face causal-LM folder (+ tokenizer)
    tasks: list[str] = field(default_factory=lambda: list(DEFAULT_TASKS))
    data_dir: str = ""                    # the evaluation data folder (GLUE in its full_eval/glue_filtered), or
    #                                       the GLUE folder itself; "" = the default evaluation data folder
    lr: float = 3e-5                      # AdamW peak learning rate (official default)
    batch_size: int = 0                   # 0 = the task's official batch size (32; 16 BoolQ/MultiRC)
    epochs: int = 0                       # 0 = the task's official epochs (10; 30 WSC)
    max_length: int = 512                 # tokens per input (longest field truncated first)
    seed: int = 42
    weight_decay: float = 0.01            # on every parameter, as the official trainer's AdamW
    dropout: float = 0.1                  # the head's dropout (the official classifier_dropout)
    warmup_fraction: float = 0.06         # linear warm-up share of the steps, then cosine decay (official)
    min_lr_fraction: float = 0.1          # the cosine ends at lr x this (the official min_factor)
    grad_clip: float = 0.0                # 0 = no clipping (the official trainer clips nothing)
    eval_batch: int = 0                   # examples per validation forward; 0 = auto (128 on CUDA, 32 on the CPU)
    max_train: int = 0                    # first N training examples per task (0 = all; tests, demos)
    max_valid: int = 0                    # first N evaluation examples per task (0 = all)
    save_every: int = 0                   # also checkpoint every N steps (0 = at epoch ends only)
    log_every: int = 10
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["fp32", "tf32", "bf16"] = "bf16"   # CUDA only (bf16 autocast); the CPU runs float32
    keep_all_checkpoints: bool = False    # False: only the newest two checkpoint folders are kept (disk)
    compile: bool = False                 # torch.compile each decoder block (dynamic shapes); GPU runs
    compile_mode: Literal["default", "reduce-overhead"] = "default"   # with compile: reduce-overhead replays
    #                                     each block as CUDA graphs (widths rounded to CUDAGRAPH_WIDTH_MULTIPLE)
    progress: bool = True
    jobs: int = 1                         # child processes fine-tuning groups of tasks side by side (1 = in this process)

    def validate(self) -> None:
        check(bool(self.model), "model: give the model folder to fine-tune")
        check(len(self.tasks) > 0, "tasks: name at least one task")
        for name in self.tasks:
            check(name in TASKS, f"unknown task {name!r}; allowed: {', '.join(TASKS)}")
        check(self.lr > 0, f"lr must be positive, got {self.lr}")
        check(self.batch_size >= 0 and self.epochs >= 0, "batch_size and epochs must be >= 0 (0 = official)")
        check(self.max_length >= 8, f"max_length must be at least 8, got {self.max_length}")
        check(0.0 <= self.dropout < 1.0, f"dropout must be in [0, 1), got {self.dropout}")
        check(0.0 <= self.warmup_fraction < 1.0, f"warmup_fraction must be in [0, 1), got {self.warmup_fraction}")
        check(self.max_train >= 0 and self.max_valid >= 0, "max_train and max_valid must be >= 0")
        check(self.compile or self.compile_mode == "default",
              f"compile_mode={self.compile_mode!r} applies to compiled blocks: add --compile (compile=true)")
        check(self.save_every >= 0 and self.log_every >= 1 and self.eval_batch >= 0,
              "save_every and eval_batch must be >= 0 (eval_batch 0 = auto), log_every >= 1")
        check(self.jobs >= 1, f"jobs must be at least 1 (1 = every task in this process), got {self.jobs}")

    def glue_dir(self) -> Path:
        """``data_dir/full_eval/glue_filtered`` when ``data_dir`` is an evaluation data folder, else
        ``data_dir`` itself (a folder of GLUE files); the default evaluation data folder's otherwise."""
        if self.data_dir:
            folder = Path(self.data_dir).expanduser()
            return folder / GLUE_SUBDIR if (folder / GLUE_SUBDIR).is_dir() else folder
        from blalm.data.config import default_data_dir

        return default_data_dir() / "eval" / GLUE_SUBDIR
