"""The fine-tuning folder OUT, what its pieces are and how they are read back (the task run
folders' facts that the loop, :mod:`blalm.finetune.parallel` and ``blalm submit`` share):

- ``OUT/<task>/``: one task's run folder (``config.json`` = :func:`task_settings`, checkpoints,
  ``metrics.jsonl``) and, once it is finished, its ``results.json`` (:func:`finished_result`);
- ``OUT/results.json``: every task and the GLUE score (written by :func:`blalm.finetune.run.finetune`);
- ``OUT/logs/<group>.log``: the output of each ``--jobs`` child (:func:`group_log`,
  :mod:`blalm.finetune.parallel`).

A task takes :func:`run_plan`'s optimizer steps.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from blalm.config import to_dict
from blalm.finetune.config import FinetuneConfig
from blalm.finetune.tasks import Task
from blalm.run.resume import check_same_settings
from blalm.run.session import RunPlan

RESULTS_FILE = "results.json"
LOGS_DIR = "logs"


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


def run_plan(train_examples: int, batch_size: int, epochs: int) -> RunPlan:
    """A task's optimizer steps: ``train_examples // batch_size`` per epoch (the official trainer's
    ``drop_last``: a short last batch is left out), at least one, ``epochs`` times."""
    steps_per_epoch = max(1, train_examples // batch_size)
    return RunPlan(steps_per_epoch * epochs, steps_per_epoch)


def finished_result(task_dir: Path, settings: dict[str, Any], free: tuple[str, ...]) -> dict[str, Any] | None:
    """A finished task's result (its settings checked), or None when the task is not finished."""
    path = task_dir / RESULTS_FILE
    if not path.is_file():
        return None
    check_same_settings(task_dir, settings, free, "fine-tuning run")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None   # damaged: the task's final checkpoint gives the result again


def group_log(out_dir: Path, tasks: Sequence[str]) -> Path:
    """``OUT/logs/<the group's tasks joined by '-'>.log``: a ``--jobs`` child's output."""
    return Path(out_dir) / LOGS_DIR / f"{'-'.join(tasks)}.log"
