"""``blalm finetune --jobs N``: the tasks in N child processes side by side on the one device.

A fine-tuning step of a small model is launch-bound (the GPU waits for the host), so processes
sharing one GPU add up their steps. With ``jobs > 1`` :func:`finetune` (in :mod:`blalm.finetune.run`)
first calls :func:`finetune_in_parallel`, holding ``OUT/.lock`` (one such parent per ``--out``):

1. the tasks not finished yet (a finished one's settings are checked, as the in-process pass does)
   whose data files are there are split into at most N groups of about equal steps
   (:func:`split_tasks` over :func:`estimated_steps`: training examples / batch size x epochs,
   counted from the training file's lines);
2. each group is one child, ``python -m blalm.cli finetune MODEL --out OUT`` with every setting
   of the parent on its command line (``tasks`` = the group, ``jobs = 1``, ``progress = false``;
   :func:`child_command`), its output appended to ``OUT/logs/<group>.log`` (the group's tasks
   joined by ``-``, e.g. ``mnli-rte.log``). Every task has its own folder and lock under OUT, and a
   child writes no ``OUT/results.json``, so the children share OUT and never write one file;
3. the parent says when a group starts and ends and when each task is done (its
   ``OUT/<task>/results.json`` appears); a group that fails does not stop the others, and once
   all have ended a :class:`~blalm.errors.BlalmError` names each failed group and its log.

Then the usual in-process pass reads every task back (``finished_result``: nothing is trained
again), reports the tasks whose data is missing as not available, and writes ``OUT/results.json``.
On the CPU the result is the one of ``jobs = 1``, bit for bit: each task is the same run in another
process. A child ends when its parent does (:func:`blalm.jobs.exit_with_parent`), so killing the
parent stops the whole run; the same command resumes it, each task from its own checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from pathlib import Path
from typing import Callable, Mapping, Sequence

from blalm.config import to_dict
from blalm.errors import BlalmError
from blalm.faults import fault_point
from blalm.finetune.config import RESUMABLE_KEYS, FinetuneConfig
from blalm.finetune.layout import RESULTS_FILE, finished_result, group_log, run_plan, task_settings
from blalm.finetune.tasks import TASKS, TaskUnavailable, count_examples, task_paths
from blalm.jobs import Job, run_jobs
from blalm.run.layout import CONFIG_FILE
from blalm.run.resume import check_same_settings


def split_tasks(steps: Mapping[str, int], jobs: int) -> list[list[str]]:
    """The tasks of ``steps`` (``{task: optimizer steps}``) in at most ``jobs`` groups of about equal
    total steps: the longest task first, each to the group with the fewest steps so far (the first
    such group on a tie). Each task is in exactly one group; no group is empty (fewer tasks than
    ``jobs``: one group per task); the groups in the order they were opened."""
    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, got {jobs}")
    groups: list[list[str]] = [[] for _ in range(min(jobs, len(steps)))]
    load = [0] * len(groups)
    for task in sorted(steps, key=lambda t: steps[t], reverse=True):   # stable: equal tasks keep their order
        i = load.index(min(load))
        groups[i].append(task)
        load[i] += steps[task]
    return groups


def estimated_steps(cfg: FinetuneConfig, name: str) -> int:
    """The optimizer steps task ``name`` takes under ``cfg``: its training file's examples (non-empty
    lines, at most ``max_train``), the batch size and epochs (``cfg``'s, or the task's official ones).
    TaskUnavailable when one of its files is missing."""
    train_path, _ = task_paths(cfg.glue_dir(), name)
    examples = count_examples(train_path)
    if cfg.max_train:
        examples = min(examples, cfg.max_train)
    task = TASKS[name]
    return run_plan(examples, cfg.batch_size or task.batch_size, cfg.epochs or task.epochs).total_steps


def tasks_to_train(cfg: FinetuneConfig, out_dir: Path) -> dict[str, int]:
    """``{task: estimated steps}`` of ``cfg``'s tasks that ``out_dir`` has not finished and whose data
    files are there. A task folder holding other settings is refused here (BlalmError, as the
    in-process pass would refuse it), not in a child's log."""
    todo: dict[str, int] = {}
    for name in cfg.tasks:
        task_dir, settings = Path(out_dir) / name, task_settings(cfg, TASKS[name])
        if finished_result(task_dir, settings, RESUMABLE_KEYS) is not None:
            continue
        if (task_dir / CONFIG_FILE).is_file():          # started before: it resumes only with its settings
            check_same_settings(task_dir, settings, RESUMABLE_KEYS, "fine-tuning run")
        try:
            todo[name] = estimated_steps(cfg, name)
        except TaskUnavailable:
            continue                                    # the in-process pass reports it as not available
    return todo


def child_command(cfg: FinetuneConfig, out_dir: Path, tasks: Sequence[str], parent_pid: int) -> list[str]:
    """``python -m blalm.cli finetune MODEL --out OUT --set KEY=VALUE ...``: every setting of ``cfg``
    on the command line (values as JSON, which TOML reads back the same), the tasks ``tasks``,
    ``jobs = 1``, ``progress = false`` (its log is a file); ``--child-of`` makes it a child of
    ``parent_pid`` (no ``OUT/results.json``; it ends when the parent ends)."""
    settings = to_dict(dataclasses.replace(cfg, tasks=list(tasks), jobs=1, progress=False))
    cmd = [sys.executable, "-m", "blalm.cli", "finetune", settings.pop("model"), "--out", str(out_dir),
           "--child-of", str(parent_pid)]
    for key, value in settings.items():
        cmd += ["--set", f"{key}={json.dumps(value)}"]
    return cmd


def finetune_in_parallel(cfg: FinetuneConfig, out_dir: Path, log: Callable[[str], None] = print) -> None:
    """Fine-tune the tasks of ``cfg`` not finished in ``out_dir`` in up to ``cfg.jobs`` child
    processes (see the module docstring); BlalmError naming every failed group and its log."""
    out_dir = Path(out_dir)
    todo = tasks_to_train(cfg, out_dir)
    groups = split_tasks(todo, cfg.jobs)
    if len(groups) < 2:
        if groups:
            log(f"one task left to fine-tune ({groups[0][0]}): fine-tuned in this process")
        return
    log(f"{len(todo)} task(s) in {len(groups)} processes: "
        + " | ".join(f"{','.join(g)} (~{sum(todo[t] for t in g):,} steps)" for g in groups))
    jobs = [Job(f"group {','.join(g)}", child_command(cfg, out_dir, g, os.getpid()), group_log(out_dir, g))
            for g in groups]

    def mtime(task: str) -> int | None:
        path = out_dir / task / RESULTS_FILE
        return path.stat().st_mtime_ns if path.is_file() else None

    before = {t: mtime(t) for t in todo}          # a damaged results.json of a task to train is there already
    done: list[str] = []

    def report_finished_tasks() -> None:
        for task in todo:
            if task not in done and mtime(task) not in (None, before[task]):
                done.append(task)
                log(f"{task}: done ({len(done)} of {len(todo)} tasks)")
                fault_point("finetune_jobs_task_done")

    codes = run_jobs(jobs, cfg.jobs, log, poll=report_finished_tasks)
    report_finished_tasks()                       # those written since the last poll
    failed = [job for job in jobs if codes[job.name] != 0]
    if failed:
        lines = "\n".join(f"  {job.name}: exit status {codes[job.name]}; see {job.log_path}" for job in failed)
        raise BlalmError(f"{len(failed)} of {len(jobs)} task group(s) failed:\n{lines}\nThe other groups ran to "
                         f"their ends. Fix the cause (the log's last lines), then run the same command again: "
                         f"finished tasks are read back, the others resume from their checkpoints")
