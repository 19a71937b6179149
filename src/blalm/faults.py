"""Named fault points: a process kills itself (SIGKILL, as ``kill -9``) at a chosen point, so that
tests and ``scripts/fault_injection.py`` can check what a crash there leaves behind.

``BLALM_FAULT="NAME@N"`` (comma-separated for several) kills the process the N-th time it reaches
point NAME (``@N`` may be left out: the first time). ``BLALM_FAULT_LOG=PATH`` appends the name of
every point reached to PATH, one a line, so a harness can count how often a run passes each point
and pick random ones to kill at. Without either variable a point costs one dictionary lookup.

The points (the ``POINTS`` table lists them with what has happened when they fire):

- atomic writes (every stage, :mod:`blalm.atomic`): ``atomic_file_written``, ``atomic_dir_built``;
- checkpoints (train, finetune, :mod:`blalm.run.checkpoint`): ``checkpoint_written``,
  ``checkpoint_renamed``, ``checkpoint_done``;
- the training loop (train, finetune, :mod:`blalm.run.session`): ``step_backward``,
  ``after_optimizer_step``;
- the token cache (train): ``token_cache_written``;
- the sweep (:mod:`blalm.experiments.sweep`): ``sweep_run_trained``, ``sweep_run_scored``;
- ``finetune --jobs`` (:mod:`blalm.finetune.parallel`, the parent): ``finetune_jobs_task_done``;
- submit (:mod:`blalm.submit.build`): ``submit_piece``.
"""

from __future__ import annotations

import os
import signal
from typing import Callable

FAULT_ENV = "BLALM_FAULT"
FAULT_LOG_ENV = "BLALM_FAULT_LOG"

POINTS = {
    "atomic_file_written": "a file written and fsynced beside its target, not yet renamed onto it",
    "atomic_dir_built": "a folder built beside its target, not yet moved into place",
    "checkpoint_written": "a checkpoint's files written in checkpoints/.NAME.tmp-*, folder not yet renamed",
    "checkpoint_renamed": "a checkpoint folder in place, the 'latest' pointer not yet moved to it",
    "checkpoint_done": "'latest' names the new checkpoint; older optimizer state / folders not yet pruned",
    "step_backward": "a micro-batch's backward done, the optimizer step not yet taken",
    "after_optimizer_step": "an optimizer step taken, its metrics and checkpoint not yet written",
    "token_cache_written": "the token cache written in a temporary folder, not yet renamed into place",
    "sweep_run_trained": "a sweep's run trained, its checkpoints not yet scored",
    "sweep_run_scored": "a sweep's run scored, its sweep_run.json not yet written",
    "finetune_jobs_task_done": "blalm finetune --jobs: the parent saw a task finish, other children still running",
    "submit_piece": "blalm submit: a piece (a branch, a revision's scores, GLUE, AoA) written, the next not started",
}

_counts: dict[str, int] = {}


def fault_point(name: str, before_kill: Callable[[], None] | None = None) -> None:
    """Kill this process with SIGKILL here when ``BLALM_FAULT`` names this point and count (see the
    module docstring). ``before_kill`` runs first (e.g. let a checkpoint write in flight finish, so
    that a test kills at a known state)."""
    spec = os.environ.get(FAULT_ENV)
    log = os.environ.get(FAULT_LOG_ENV)
    if not spec and not log:
        return
    if name not in POINTS:
        raise ValueError(f"unknown fault point {name!r}; add it to blalm.faults.POINTS")
    _counts[name] = _counts.get(name, 0) + 1
    if log:
        with open(log, "a", encoding="utf-8") as fh:
            fh.write(name + "\n")
    for item in (spec or "").split(","):
        point, _, count = item.strip().partition("@")
        if point == name and _counts[name] == int(count or 1):
            if before_kill is not None:
                before_kill()
            os.kill(os.getpid(), signal.SIGKILL)
