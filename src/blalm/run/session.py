"""The plain steps of a training loop, shared by ``blalm train`` and ``blalm finetune``.

A stage trains in a run folder like this (``blalm.train.trainer`` and ``blalm.finetune.run`` do)::

    with hold_lock(run_dir, dist, "training run", log):          # one writer per run folder
        plan = ...                                              # the stage plans: RunPlan(total, per epoch)
        with RunSession(RunSpec(run_dir, settings, plan, ...), dist, log) as session:   # metrics closed at the end
            session.start(check_state=...)                      # start afresh, or resume: same settings,
            if session.complete: return ...                     #   the newest checkpoint that verifies
            seed_everything(seed); build the model and optimizers
            session.restore({MODEL_FILE: model}, optimizers, names, device)   # when resuming
            with session.loop():                                # progress bar, background saver
                while session.step < session.total_steps:
                    lrs = session.apply_schedule(optimizers, warmup, min_lr)
                    ... forward, backward (session.fault_point("step_backward")), clip, step ...
                    session.advance(loss=...)                   # step += 1; after_step hooks
                    if time to save: validate, session.save(name, model_state, optimizers, names, state, ...)

Extension points (for an EMA of the weights, a side-process evaluation, ...):

- ``session.after_step``: callables ``fn(session)`` run after every optimizer step (in
  :meth:`RunSession.advance`, on the training thread, ``session.step`` already counts the step;
  the training's weight average updates here);
- ``RunSession.save(..., extra_tensors={FILE: tensors})`` adds tensor files to a checkpoint, and
  ``restore({FILE: module}, ...)`` reads them back (fine-tuning's head does so);
- :func:`blalm.run.schedule.lr_factor` is the one learning-rate schedule.
"""

from __future__ import annotations

import contextlib
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import torch
from torch import nn

from blalm.atomic import remove_stale_temp, write_json_atomic
from blalm.errors import BlalmError
from blalm.faults import fault_point
from blalm.run import checkpoint as ckpt
from blalm.run.device import Dist, rng_state, set_rng_state
from blalm.run.layout import (CONFIG_FILE, METRICS_FILE, OPTIMIZER_FILE, RUN_INFO_FILE, check_run_dir,
                              checkpoints_dir, resume_info_file)
from blalm.lock import RunLock
from blalm.run.metrics import MetricsLogger, restore_metrics, truncate_metrics
from blalm.run.parallel import full_tensors, shard_state
from blalm.run.resume import ResumePoint, check_same_settings, choose_checkpoint, has_checkpoints
from blalm.run.schedule import lr_factor, set_learning_rates
from blalm.runinfo import run_info


@contextlib.contextmanager
def hold_lock(folder: Path, dist: Dist | None = None, what: str = "run",
              log: Callable[[str], None] = print, check_folder: bool = True) -> Iterator[None]:
    """Hold ``folder``'s :class:`~blalm.lock.RunLock` for the block (rank 0 takes it; every
    rank stops when it is refused). ``check_folder``: first refuse a folder that is not a run."""
    dist = dist or Dist()
    lock = RunLock(folder, what=what, log=log)

    def acquire() -> None:
        if check_folder:
            check_run_dir(folder, f"blalm {what}")
        lock.acquire()

    dist.on_main(acquire)
    try:
        yield
    finally:
        lock.release()


@dataclass
class RunPlan:
    total_steps: int
    steps_per_epoch: int


@dataclass
class RunSpec:
    """What a stage tells its session about the run."""

    run_dir: Path
    settings: dict[str, Any]               # written as config.json; a resume must match it
    plan: RunPlan
    what: str = "training run"             # for messages
    free_keys: Iterable[str] = ()          # settings that may change on resume
    label: str = ""                        # prefix of the messages (e.g. the fine-tuning task)
    progress: bool = True
    desc: str = "train"                    # the progress bar's label
    keep_optimizer: int | None = 2         # newest checkpoints keeping the optimizer state (None: all)
    keep_folders: int | None = None        # newest checkpoint folders kept (None: all)
    tensorboard: bool = True
    seed: int | None = None                # recorded in run_info.json
    info: dict[str, Any] = field(default_factory=dict)   # more run_info.json fields


class RunSession:
    """One process's session on a run folder (see the module docstring)."""

    def __init__(self, spec: RunSpec, dist: Dist | None = None, log: Callable[[str], None] = print) -> None:
        self.spec = spec
        self.dist = dist or Dist()
        self.log = log if self.dist.is_main else (lambda _msg: None)
        self.root = checkpoints_dir(spec.run_dir)
        self.step = 0
        self.point = ResumePoint()
        self.metrics: MetricsLogger | None = None
        self.saver: ckpt.BackgroundSaver | None = None
        self.bar = None
        self.saved: list[str] = []
        self.after_step: list[Callable[[RunSession], None]] = []

    @property
    def total_steps(self) -> int:
        return self.spec.plan.total_steps

    @property
    def steps_per_epoch(self) -> int:
        return self.spec.plan.steps_per_epoch

    @property
    def resumed_from(self) -> str | None:
        return self.point.name

    @property
    def complete(self) -> bool:
        """Resumed from a final checkpoint (verified), so there is nothing left to train."""
        state = self.point.state
        return bool(state and state.get("complete") and state["step"] >= self.total_steps)

    def say(self, message: str) -> None:
        self.log(f"{self.spec.label}{message}")

    # -- start or resume ------------------------------------------------------------------------

    def start(self, check_state: Callable[[Path, dict[str, Any]], None] | None = None,
              start_files: Callable[[], None] | None = None, write_when_complete: bool = False) -> ResumePoint:
        """Where the run stands: a fresh start, or the newest checkpoint that verifies (damaged newer
        ones set aside, a resume under other settings refused). Rank 0 then writes this session's
        files: config.json and run_info.json on a fresh start, a resume's run_info and the metrics
        truncated to the checkpoint's step on a resume, and ``start_files()`` in both. A complete run
        writes nothing (and says so) unless ``write_when_complete`` (its stage has more to write)."""
        def prepare() -> None:
            self.point = self._choose(check_state)
            if write_when_complete or not self.complete:
                self._write_start_files(start_files)

        self.dist.on_main(prepare)
        if not self.dist.is_main:
            latest = ckpt.read_latest(self.root) if self.root.is_dir() else None
            self.point = ResumePoint(latest, ckpt.read_state(latest)) if latest is not None else ResumePoint()
        if self.complete and not write_when_complete:
            self.say(f"{self.spec.run_dir}: the run is already complete ({self.point.state['step']} steps; its "
                     f"final checkpoint {self.point.name} verified); nothing to do")
        return self.point

    def _choose(self, check_state) -> ResumePoint:
        spec = self.spec
        if not has_checkpoints(self.root):
            (self.root / ckpt.LATEST_FILE).unlink(missing_ok=True)   # a pointer without checkpoints
            return ResumePoint()
        check_same_settings(spec.run_dir, spec.settings, spec.free_keys, spec.what)

        def check(path: Path, state: dict[str, Any]) -> None:   # before a damaged checkpoint is moved
            if state.get("steps_per_epoch", self.steps_per_epoch) != self.steps_per_epoch:
                raise BlalmError(f"{path}: saved with {state['steps_per_epoch']} steps per epoch, now "
                                 f"{self.steps_per_epoch}; the data or batch size changed. Choose a new --out")
            if check_state is not None:
                check_state(path, state)
        return choose_checkpoint(self.root, (OPTIMIZER_FILE,), log=self.say, check=check)

    def _write_start_files(self, start_files: Callable[[], None] | None) -> None:
        spec, run_dir = self.spec, self.spec.run_dir
        for folder in (self.root, run_dir):   # a killed write's temporary files (we hold the lock)
            remove_stale_temp(folder)
        info = {**run_info(spec.settings, spec.seed), **spec.info, "resumed_from": self.point.name}
        if self.point.path is None:
            (run_dir / METRICS_FILE).unlink(missing_ok=True)
            write_json_atomic(run_dir / CONFIG_FILE, spec.settings)
            write_json_atomic(run_dir / RUN_INFO_FILE, info)
        else:
            step, saved_log = self.point.state["step"], self.point.path / METRICS_FILE
            write_json_atomic(run_dir / resume_info_file(step), info)
            damaged = restore_metrics(run_dir, saved_log) if saved_log.is_file() else truncate_metrics(run_dir, step)
            if damaged:
                self.say(f"{run_dir / METRICS_FILE}: {damaged} damaged line(s) (not JSON) moved to "
                         f"{METRICS_FILE}.damaged")
        if start_files is not None:
            start_files()
        self.metrics = MetricsLogger(run_dir, tensorboard=spec.tensorboard)

    def restore(self, modules: dict[str, nn.Module], optimizers: dict[str, torch.optim.Optimizer],
                names: dict[str, list[list[str]]], device: torch.device | str) -> None:
        """Load the chosen checkpoint (each verified file into its module, the optimizer state, the
        RNG states) and continue at its step; nothing on a fresh start. Files that
        :meth:`start` verified on this rank are not hashed again."""
        path, state, verified = self.point.path, self.point.state, self.point.verified
        if path is None:
            return
        for file_name, module in modules.items():   # a sharded (FSDP) module takes its shard of the full weights
            module.load_state_dict(shard_state(module, ckpt.load_tensors(path, file_name, device, verified)))
        # read on the CPU: load_state_dict moves the moments to their parameters' device (and keeps
        # AdamW's 'step' counters where a fresh AdamW keeps them)
        ckpt.load_optimizer_state(optimizers, names, ckpt.load_tensors(path, OPTIMIZER_FILE, "cpu", verified),
                                  state["optimizer_scalars"])
        set_rng_state(state["rng"])
        self.step = state["step"]
        epoch, in_epoch = divmod(self.step, self.steps_per_epoch)
        self.say(f"resuming from {path} (step {self.step}, epoch {epoch + 1}, step {in_epoch} of the epoch; "
                 f"{self.total_steps} steps in all)")
        self.emit({"kind": "resume", "step": self.step, "checkpoint": path.name,
                   "skipped": [{"checkpoint": n, "reason": why, "set_aside": moved}
                               for n, why, moved in self.point.skipped]})

    # -- the loop -------------------------------------------------------------------------------

    @contextlib.contextmanager
    def loop(self) -> Iterator["RunSession"]:
        """The progress bar and the background saver for the loop; at its end the last checkpoint is
        on disk (or its error raised)."""
        from tqdm import tqdm

        self.saver = ckpt.BackgroundSaver()
        self.bar = tqdm(total=self.total_steps, initial=self.step, desc=self.spec.desc, unit="step",
                        dynamic_ncols=True, disable=not (self.spec.progress and self.dist.is_main), file=sys.stderr)
        try:
            yield self
        finally:
            try:
                self.saver.close()
            finally:
                self.bar.close()

    def emit(self, record: dict[str, Any]) -> None:
        if self.metrics is not None:
            self.metrics.log(record)

    def note(self, message: str) -> None:
        """A message on a line of its own, not inside the progress bar."""
        if self.bar is None or self.bar.disable:
            self.say(message)
        else:
            with self.bar.external_write_mode(file=sys.stderr):
                self.say(message)

    def fault_point(self, name: str) -> None:
        """A named fault point of the loop (:mod:`blalm.faults`); a write in flight finishes first."""
        fault_point(name, before_kill=self.saver.settle if self.saver is not None else None)

    def apply_schedule(self, optimizers: dict[str, torch.optim.Optimizer], warmup_fraction: float,
                       min_lr_fraction: float, schedule: str = "cosine", decay_fraction: float = 0.2
                       ) -> dict[str, float]:
        """Set this step's learning rates (warm-up, then the schedule: see :func:`lr_factor`); return
        each optimizer's."""
        return set_learning_rates(optimizers, lr_factor(self.step, self.total_steps, warmup_fraction,
                                                         min_lr_fraction, schedule, decay_fraction))

    def advance(self, **postfix: str) -> None:
        """Count one optimizer step (the progress bar too), then run the ``after_step`` hooks."""
        self.step += 1
        if self.bar is not None:
            self.bar.update(1)
            if postfix:
                self.bar.set_postfix(refresh=False, **postfix)
        fault_point("after_optimizer_step", before_kill=self.saver.settle if self.saver is not None else None)
        for hook in self.after_step:
            hook(self)

    @property
    def epoch_end(self) -> bool:
        return self.step % self.steps_per_epoch == 0

    # -- saving ---------------------------------------------------------------------------------

    def save(self, name: str, model_state: dict[str, torch.Tensor], optimizers: dict[str, torch.optim.Optimizer],
             names: dict[str, list[list[str]]], state: dict[str, Any], model_config: dict[str, Any],
             tokenizer_files: Iterable[Path] = (), extra_tensors: dict[str, dict[str, torch.Tensor]] | None = None
             ) -> None:
        """Checkpoint ``name`` at this step, written in the background (rank 0 only): the tensors, the
        optimizer state, the RNG states and the stage's ``state``; older checkpoints pruned after.
        Every rank calls it: sharded (FSDP) tensors are gathered whole for rank 0 first."""
        main = self.dist.is_main
        opt_tensors, opt_scalars = ckpt.optimizer_tensors(optimizers, names)
        model_state, opt_tensors = full_tensors(model_state, main), full_tensors(opt_tensors, main)
        extra_tensors = {file: full_tensors(t, main) for file, t in (extra_tensors or {}).items()} or None
        if not main:
            return
        full = {"step": self.step, "epoch": self.step // self.steps_per_epoch,
                "step_in_epoch": self.step % self.steps_per_epoch, "steps_per_epoch": self.steps_per_epoch,
                "total_steps": self.total_steps, "complete": self.step == self.total_steps, "rng": rng_state(),
                "optimizer_scalars": opt_scalars, "optimizer_param_names": names, **state}
        log = {METRICS_FILE: self.metrics.snapshot()} if self.metrics is not None else None
        self.saver.save(self.root, name, model_state, opt_tensors, full, model_config, tokenizer_files,
                        extra_tensors=extra_tensors, extra_files=log, then=self._prune)
        self.saved.append(name)

    def _prune(self, path: Path) -> None:
        """Once checkpoint ``path`` is in place (on the saver thread): prune the older ones."""
        ckpt.prune_checkpoints(self.root, self.spec.keep_optimizer, self.spec.keep_folders)

    def __enter__(self) -> "RunSession":
        return self

    def __exit__(self, *exc) -> None:
        """Close the metrics file (``with RunSession(...) as session:``)."""
        if self.metrics is not None:
            self.metrics.close()
            self.metrics = None

    @property
    def latest_path(self) -> Path | None:
        """The newest checkpoint of the run: the last one saved in this session, else the one resumed from."""
        return self.root / self.saved[-1] if self.saved else self.point.path
