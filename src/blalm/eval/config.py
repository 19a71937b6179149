"""The evaluation stage's typed config and the data layout of each suite.

``EvalConfig`` holds what ``blalm eval`` is asked to do; the CLI builds it with
:func:`blalm.config.from_dict`, so bad values are refused the same way as in a config file.
``TASK_PATHS`` says where each task's data lies under the evaluation data folder (the official
pipeline's ``evaluation_data`` layout, as in ``../shared/data/eval``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from blalm.config import check

if TYPE_CHECKING:
    from blalm.eval.batching import Batching

Suite = Literal["fast", "full"]

# Every task name --tasks accepts, in report order. "reading" is an alias for both reading tasks.
TASKS = ("blimp", "blimp_supplement", "ewok", "entity_tracking", "wug_adj", "wug_past",
         "eye_tracking", "self_paced_reading", "aoa", "glue")
TASK_ALIASES = {"reading": ("eye_tracking", "self_paced_reading"), "all": TASKS}

# The paper's average (Tables 2-6): these six, in this order, with these column titles.
PAPER_COLUMNS = (("blimp", "BLiMP"), ("blimp_supplement", "B. Suppl."), ("entity_tracking", "Entity"),
                 ("ewok", "EWoK"), ("eye_tracking", "Eye"), ("self_paced_reading", "Reading"))

EWOK_PASSWORD = b"BabyLM2025"      # the official pipeline's password for the EWoK and WUG past-tense zips
ENTITY_SPLITS = ("regular", "ambiref", "move_contents")

# Where each task's data lies under the evaluation data folder, per suite. Entity tracking has no
# fast split here: the fast suite reads the full files and keeps a fixed subsample (see
# ``EvalConfig.entity_fast_per_group``).
TASK_PATHS: dict[str, dict[str, str]] = {
    "fast": {
        "blimp": "fast_eval/blimp_fast",
        "blimp_supplement": "fast_eval/supplement_fast",
        "ewok": "fast_eval/ewok_fast.zip",
        "entity_tracking": "full_eval/entity_tracking",
        "wug_adj": "fast_eval/wug_adj_nominalization/wug_adj_nominalization.jsonl",
        "wug_past": "fast_eval/wug_past_tense.zip",
        "reading": "fast_eval/reading/reading_data.csv",
        "aoa": "aoa/child_american_english_proportions.csv",
        "glue": "full_eval/glue_filtered",
    },
    "full": {
        "blimp": "full_eval/blimp_filtered",
        "blimp_supplement": "full_eval/supplement_filtered",
        "ewok": "full_eval/ewok_filtered.zip",
        "entity_tracking": "full_eval/entity_tracking",
        "wug_adj": "full_eval/wug_adj_nominalization/wug_adj_nominalization.jsonl",
        "wug_past": "full_eval/wug_past_tense.zip",
        "reading": "full_eval/reading/reading_data.csv",
        "aoa": "aoa/child_american_english_proportions.csv",
        "glue": "full_eval/glue_filtered",
    },
}


# EvalConfig keys that change only the speed, never a score: results written under other values of
# these are reused (blalm eval RUN_DIR, --follow).
SPEED_ONLY_KEYS = frozenset({"batch_size", "token_budget", "shared_prefix_min", "compile", "progress"})


def default_eval_dir() -> Path:
    """``blalm.data.config.default_data_dir() / "eval"`` ($BLALM_DATA_DIR/eval, else ../shared/data/eval)."""
    from blalm.data.config import default_data_dir

    return default_data_dir() / "eval"


def expand_tasks(names: list[str]) -> list[str]:
    """Task names with aliases expanded, duplicates dropped, in report order."""
    wanted: set[str] = set()
    for name in names:
        wanted.update(TASK_ALIASES.get(name, (name,)))
    return [t for t in TASKS if t in wanted]


@dataclass
class EvalConfig:
    """What one ``blalm eval`` run does."""

    suite: Suite = "fast"                 # fast: the official fast subsets; full: the full sets
    tasks: list[str] = field(default_factory=lambda: list(TASKS))  # names from TASKS, or "reading"/"all"
    data_dir: str = ""                    # evaluation data folder; "" = default_eval_dir()
    batch_size: int = 1024                # most sequences per forward pass
    token_budget: int = 0                 # most padded tokens per forward pass; 0 = 1024 on the CPU,
    #                                     16384 on a GPU (blalm.eval.batching.DEFAULT_TOKEN_BUDGET)
    shared_prefix_min: int = 32           # blalm models: candidates sharing this many leading tokens
    #                                     run them once (entity tracking's story); 0 = never
    compile: bool = False                 # torch.compile each decoder block once per process (dynamic
    #                                     shapes; batches padded to blalm.eval.batching.WIDTH_LADDER)
    device: Literal["auto", "cpu", "cuda"] = "auto"  # auto: cuda when available, else cpu
    precision: Literal["fp32", "tf32", "bf16"] = "bf16"  # GPU forward: bf16 autocast (fast), TF32 tensor
    #                                     cores, or exact fp32 (the official pipeline's numerics);
    #                                     log-softmax is float32 always; the CPU always runs fp32
    prepend_bos: bool = False             # see blalm.eval.scoring (False = as the official pipeline)
    entity_fast_per_group: int = 100      # fast suite: first N items of each (split, numops) group
    progress: bool = True                 # tqdm progress bars
    glue_results: str = ""                # a 'blalm finetune' --out folder (its results.json); "" = GLUE n/a

    def validate(self) -> None:
        allowed = set(TASKS) | set(TASK_ALIASES)
        for name in self.tasks:
            check(name in allowed, f"unknown task {name!r}; allowed: {', '.join(list(TASKS) + list(TASK_ALIASES))}")
        check(len(self.tasks) > 0, "tasks: name at least one task")
        check(self.batch_size >= 1, f"batch_size must be at least 1, got {self.batch_size}")
        check(self.token_budget >= 0, f"token_budget must be at least 0 (0 = by device), got {self.token_budget}")
        check(self.shared_prefix_min >= 0, f"shared_prefix_min must be at least 0 (0 = never), got "
                                           f"{self.shared_prefix_min}")
        check(self.entity_fast_per_group >= 1,
              f"entity_fast_per_group must be at least 1, got {self.entity_fast_per_group}")

    def batching(self, device: str) -> "Batching":
        """How sequences share forward passes on ``device`` ("cpu" or "cuda...")."""
        from blalm.eval.batching import DEFAULT_TOKEN_BUDGET, WIDTH_LADDER, Batching

        kind = "cuda" if device.startswith("cuda") else "cpu"
        return Batching(batch_size=self.batch_size, token_budget=self.token_budget or DEFAULT_TOKEN_BUDGET[kind],
                        shared_prefix_min=self.shared_prefix_min, widths=WIDTH_LADDER if self.compile else ())

    def eval_dir(self) -> Path:
        return Path(self.data_dir).expanduser() if self.data_dir else default_eval_dir()

    def task_path(self, task: str) -> Path:
        key = "reading" if task in ("eye_tracking", "self_paced_reading") else task
        return self.eval_dir() / TASK_PATHS[self.suite][key]
