"""Scoring while training (``blalm train ... --eval fast``, ``score_suite``): a side process.

Rank 0 starts ``blalm eval RUN_DIR --follow --follow-pid <the trainer>`` beside the training, on
the same device. It scores each checkpoint on the zero-shot suite as soon as the checkpoint is in
place (``RUN_DIR/eval/<checkpoint>/results.json``), while the training goes on, and keeps
``RUN_DIR/eval/summary.json`` (the best checkpoint by the paper's average) up to date; its log is
``RUN_DIR/eval/follow.log``. At the end of a run the trainer waits for it to score the final
checkpoint. When the trainer dies (killed, crashed), the follower sees its pid gone, scores what
was written and ends; a resumed run starts a new one, which skips every checkpoint already scored
with the same settings. The scores are ``blalm eval``'s own (the same code in another process).

The training stage does not import the evaluation stage: the side process is the ``blalm`` CLI.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Iterator

from blalm.data.config import default_data_dir
from blalm.errors import BlalmError, InputError
from blalm.faults import FAULT_ENV, FAULT_LOG_ENV
from blalm.run.layout import EVAL_DIR
from blalm.train.config import TrainConfig

FOLLOW_LOG = "follow.log"
SUMMARY = "summary.json"
POLL_SECONDS = 2.0


def follower_command(cfg: TrainConfig, run_dir: Path, device_type: str, pid: int) -> list[str]:
    """The ``blalm eval --follow`` command line for ``cfg``'s scoring settings."""
    cmd = [sys.executable, "-m", "blalm.cli", "eval", str(run_dir), "--follow", "--follow-pid", str(pid),
           "--follow-poll", str(POLL_SECONDS), "--suite", cfg.score_suite, "--quiet",
           "--device", "cuda" if device_type == "cuda" else "cpu"]
    if cfg.score_data:
        cmd += ["--eval-data", cfg.score_data]
    for item in cfg.score_set:
        cmd += ["--set", item]
    return cmd


@contextlib.contextmanager
def scoring_beside(cfg: TrainConfig, run_dir: Path, device_type: str, is_main: bool,
                   log: Callable[[str], None]) -> Iterator[dict[str, Any]]:
    """Run the block (the training) with the follower beside it (rank 0, ``score_suite != "none"``).
    On a normal end, wait for the follower and put the best checkpoint into the yielded dict
    (``{"best": {...}, "summary": path}``); an error of the follower is raised, naming its log."""
    result: dict[str, Any] = {}
    if cfg.score_suite == "none" or not is_main:
        yield result
        return
    data = Path(cfg.score_data).expanduser() if cfg.score_data else default_data_dir() / "eval"
    if not data.is_dir():      # found out now, not after the training
        raise InputError(f"{data}: evaluation data folder not found for --eval {cfg.score_suite} "
                         f"({'score_data' if cfg.score_data else 'the default'}); give --eval-data DIR (the folder "
                         f"holding fast_eval/ and full_eval/), or set BLALM_DATA_DIR")
    folder = Path(run_dir) / EVAL_DIR
    folder.mkdir(parents=True, exist_ok=True)
    log_path = folder / FOLLOW_LOG
    env = {k: v for k, v in os.environ.items() if k not in (FAULT_ENV, FAULT_LOG_ENV)}   # the trainer's faults only
    with open(log_path, "ab") as fh:
        proc = subprocess.Popen(follower_command(cfg, run_dir, device_type, os.getpid()), stdout=fh, env=env,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    log(f"scoring every checkpoint on the {cfg.score_suite} suite as it is written (pid {proc.pid}, log {log_path})")
    yield result          # an exception from the training leaves the follower to finish on its own
    log("waiting for the scoring of the last checkpoints")
    code = proc.wait()
    if code != 0:
        raise BlalmError(f"the scoring side process ended with exit status {code}; see {log_path}, then score "
                         f"the run with 'blalm eval {run_dir}' (checkpoints already scored are skipped)")
    summary = json.loads((folder / SUMMARY).read_text(encoding="utf-8"))
    result.update(best=summary.get("best"), summary=str(folder / SUMMARY))
    best = summary.get("best") or {}
    if best.get("average") is not None:
        log(f"best checkpoint by the paper's average: {best.get('checkpoint')} ({best['average']:.2f}); "
            f"{folder / SUMMARY}")
