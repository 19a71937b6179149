"""Evaluate a training run: every checkpoint (or the last ones), then select the best by average.

The paper scores all checkpoints of a run on the fast suite and reports the best one by the
average of its six columns (the checkpoint in parentheses in its tables). ``evaluate_run`` does
that for a run folder written by ``blalm train``: one ``results.json`` per checkpoint under
``RUN_DIR/eval/<checkpoint>/``, and ``RUN_DIR/eval/summary.json`` with the score of every
checkpoint against words seen and the best checkpoint. A checkpoint already scored with the same
settings is not scored again (re-running resumes); settings that change only the speed
(``config.SPEED_ONLY_KEYS``: batch size, token budget, compile, ...) do not count.

Every checkpoint is verified first (``blalm.run.checkpoint.verify_checkpoint``: each file against
the size and SHA-256 that its state.json recorded): a damaged one is not scored, is named with what
is wrong (in the log and under ``"skipped"`` in the summary) and is never the best, even when it
was scored before it was damaged. A run none of whose checkpoints verifies is an error.

``follow_run`` (``blalm eval RUN_DIR --follow``) does the same while the run trains: it scores each
checkpoint as it appears and rewrites the summary after each, until the run's final checkpoint
(``"complete"`` in its state) is scored or the training process is gone — the pid given, else the
holder named by the run folder's lock file (``RUN_DIR/.lock``). A follower killed and restarted
scores only what it had not written yet.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import time
from pathlib import Path
from typing import Any, Callable

from blalm.atomic import read_json, write_json_atomic
from blalm.config import to_dict
from blalm.errors import InputError
from blalm.eval.config import PAPER_COLUMNS, SPEED_ONLY_KEYS, EvalConfig, expand_tasks
from blalm.eval.session import EvalSession
from blalm.eval.suite import RESULTS_FILE, evaluate_model
from blalm.run.checkpoint import list_checkpoints, verify_checkpoint
from blalm.run.layout import checkpoints_dir

SUMMARY_FILE = "summary.json"
OOM_WAIT_SECONDS = 30.0          # a follower out of GPU memory waits this long (at least a poll) and tries again
MIN_OOM_TOKEN_BUDGET = 4096      # ... each time with half the token budget, down to this
Verified = dict[str, tuple[tuple, list[str]]]    # checkpoint folder -> (its files' stat, what is wrong)


def evaluate_run(run_dir: Path, cfg: EvalConfig, out_dir: Path | None = None, last: int = 0,
                 log: Callable[[str], None] = lambda s: None, session: EvalSession | None = None,
                 verified: Verified | None = None) -> dict[str, Any]:
    """Score the run's checkpoints that verify (all, or of the ``last`` N by step) and select the best
    by average. ``verified``: what earlier calls found (:func:`checkpoint_problems`), kept by a follower."""
    run_dir = Path(run_dir)
    checkpoints = list_checkpoints(checkpoints_dir(run_dir))
    if not checkpoints:
        raise InputError(f"{run_dir}: no complete checkpoint under checkpoints/ (has the run started?)")
    if last:
        checkpoints = checkpoints[-last:]
    out_dir = Path(out_dir) if out_dir is not None else run_dir / "eval"
    session = session or EvalSession()
    rows, skipped = [], []
    verified = {} if verified is None else verified
    for ckpt in checkpoints:
        problems = checkpoint_problems(Path(ckpt["path"]), verified)
        if problems:
            log(f"{ckpt['name']}: skipped, not scored: the checkpoint does not verify: {'; '.join(problems)}")
            skipped.append({"checkpoint": ckpt["name"], "step": ckpt["step"], "problems": problems})
            continue
        folder = out_dir / ckpt["name"]
        report = cached_report(folder, cfg)
        if report is None:
            log(f"{ckpt['name']}: scoring ({ckpt['words_seen']:,} words seen)")
            report = evaluate_model(ckpt["path"], cfg, out_dir=folder, log=log, session=session)
        rows.append({"checkpoint": ckpt["name"], "step": ckpt["step"], "words_seen": ckpt["words_seen"],
                     "average": report["average"].get("score"),
                     **{task: report["tasks"].get(task, {}).get("score") for task, _ in PAPER_COLUMNS}})
    if not rows:
        raise InputError(f"{checkpoints_dir(run_dir)}: no checkpoint verifies, none was scored: " +
                         "; ".join(f"{c['checkpoint']}: {', '.join(c['problems'])}" for c in skipped) +
                         ". The files changed after they were written (disk trouble, a copy cut short?)")
    scored = [r for r in rows if r["average"] is not None]
    best = max(scored, key=lambda r: r["average"]) if scored else None
    summary = {"run_dir": str(run_dir), "suite": cfg.suite, "checkpoints": rows,
               "best": best, "selection": "highest paper average (BLiMP, Suppl., Entity, EWoK, Eye, Reading)",
               "skipped": skipped}
    write_json_atomic(out_dir / SUMMARY_FILE, summary)
    return summary


def checkpoint_problems(folder: Path, verified: Verified) -> list[str]:
    """What is wrong with checkpoint ``folder`` (:func:`~blalm.run.checkpoint.verify_checkpoint`; empty
    when nothing), remembered in ``verified`` while its files stay as they were, so that a follower
    hashes each checkpoint once. A file the training run prunes meanwhile (an older checkpoint's
    optimizer state) is not damage: the folder is looked at again."""
    for _ in range(2):
        try:
            stamp = tuple(sorted((e.name, e.inode(), e.stat().st_size, e.stat().st_mtime_ns)
                                 for e in os.scandir(folder)))
            known = verified.get(str(folder))
            if known is None or known[0] != stamp:
                known = verified[str(folder)] = (stamp, verify_checkpoint(folder))
            return known[1]
        except FileNotFoundError:
            continue
    return ["its files vanished while they were read (removed by the training run's pruning?)"]


def score_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """The settings that decide the scores (an ``EvalConfig`` dict without ``SPEED_ONLY_KEYS``; the task
    list with its aliases expanded, so that ``["all"]`` and the tasks it names are the same)."""
    out = {k: v for k, v in settings.items() if k not in SPEED_ONLY_KEYS}
    if isinstance(out.get("tasks"), list):
        out["tasks"] = expand_tasks(out["tasks"])
    return out


def cached_report(folder: Path, cfg: EvalConfig) -> dict[str, Any] | None:
    """The results.json in ``folder`` when it was written with the same score settings, else None."""
    report = read_json(folder / RESULTS_FILE)
    if not isinstance(report, dict):
        return None
    written = report.get("run_info", {}).get("config")
    if not isinstance(written, dict) or score_settings(written) != score_settings(to_dict(cfg)):
        return None
    return report


def training_alive(run_dir: Path, pid: int | None = None) -> bool | None:
    """Whether the training process still runs: ``pid`` when given, else the holder that the run
    folder's lock file names (on this host); None when neither says (no pid, no lock record)."""
    from blalm.lock import pid_alive, read_holder

    if pid is None:
        holder = read_holder(run_dir)
        if not isinstance(holder, dict) or "pid" not in holder:
            return None
        if holder.get("host") not in (None, socket.gethostname()):
            return None     # another machine's process: no way to ask it from here
        pid = int(holder["pid"])
    return pid_alive(pid)


def is_device_oom(exc: BaseException) -> bool:
    """A GPU out-of-memory error: torch's ``OutOfMemoryError`` (the caching allocator) or an
    ``AcceleratorError`` from a raw allocation (e.g. moving the weights to the device)."""
    import torch

    return isinstance(exc, torch.OutOfMemoryError) or (
        isinstance(exc, torch.AcceleratorError) and "out of memory" in str(exc).lower())


def follow_run(run_dir: Path, cfg: EvalConfig, out_dir: Path | None = None, pid: int | None = None,
               poll_seconds: float = 10.0, idle_seconds: float = 0.0,
               log: Callable[[str], None] = lambda s: None) -> dict[str, Any] | None:
    """Score every checkpoint of a training run as it appears (see the module docstring); returns
    the last summary (None when the run wrote no checkpoint before it ended). ``idle_seconds``: give
    up after that long without a new checkpoint when nothing says whether training runs (0: never).
    Out of GPU memory while the training runs (the trainer and other runs share the GPU), the follower
    frees what it holds, halves its token budget and tries the same checkpoints again after
    ``OOM_WAIT_SECONDS``; once the training has ended, an out-of-memory error is raised."""
    run_dir = Path(run_dir)
    session = EvalSession()
    verified: Verified = {}
    summary: dict[str, Any] | None = None
    seen: set[str] = set()
    last_new = time.monotonic()
    while True:
        alive = training_alive(run_dir, pid)    # asked before listing: a run gone now has written all it will
        checkpoints = list_checkpoints(checkpoints_dir(run_dir))
        names = {c["name"] for c in checkpoints}
        if names - seen:
            try:
                summary = evaluate_run(run_dir, cfg, out_dir=out_dir, log=log, session=session, verified=verified)
            except Exception as exc:
                if alive is False or not is_device_oom(exc):
                    raise       # out of memory with the training gone: not the training's memory
                session.release()
                budget = max(MIN_OOM_TOKEN_BUDGET, cfg.batching("cuda").token_budget // 2)
                cfg = dataclasses.replace(cfg, token_budget=budget)
                log(f"{run_dir}: out of GPU memory while scoring ({str(exc).splitlines()[0][:160]}); the "
                    f"training holds the GPU, so trying again in {max(poll_seconds, OOM_WAIT_SECONDS):.0f} s "
                    f"with a token budget of {budget:,} (a speed setting: the same scores)")
                time.sleep(max(poll_seconds, OOM_WAIT_SECONDS))
                continue
            seen |= names
            last_new = time.monotonic()
        if any(c.get("complete") for c in checkpoints):
            log(f"{run_dir}: the final checkpoint is scored")
            return summary
        if alive is False:
            log(f"{run_dir}: the training process has ended before its final checkpoint; "
                f"{len(seen)} checkpoint(s) scored")
            return summary
        if alive is None and idle_seconds and time.monotonic() - last_new > idle_seconds:
            log(f"{run_dir}: no new checkpoint for {idle_seconds:.0f} s and no pid or lock record to ask; stopping")
            return summary
        time.sleep(poll_seconds)


def format_run_table(summary: dict[str, Any]) -> str:
    """Score against words seen, one line per checkpoint, the best marked."""
    head = ["checkpoint", "words seen"] + [title for _, title in PAPER_COLUMNS] + ["Avg."]
    keys = [task for task, _ in PAPER_COLUMNS] + ["average"]
    best = (summary.get("best") or {}).get("checkpoint")
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for r in summary["checkpoints"]:
        cells = [r["checkpoint"] + (" (best)" if r["checkpoint"] == best else ""), f"{r['words_seen']:,}"]
        cells += ["n/a" if r[k] is None else f"{r[k]:.2f}" for k in keys]
        lines.append("| " + " | ".join(cells) + " |")
    for c in summary.get("skipped", []):
        lines.append(f"{c['checkpoint']}: not scored, it does not verify ({'; '.join(c['problems'])})")
    return "\n".join(lines)
