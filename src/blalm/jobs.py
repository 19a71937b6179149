"""Child processes side by side, for the verbs' ``--jobs N`` (``blalm sweep``, ``blalm finetune``).

:func:`run_jobs` runs a list of :class:`Job` commands, at most ``limit`` at once, each one's output
(stdout and stderr) appended to its own log file after a header line with the time and the exact
command, and returns every job's exit status. The parent says when a job starts and how it ended;
a job that fails does not stop the others. When the parent itself is stopped while waiting (Ctrl-C,
an exception), it terminates the jobs still running and waits for them before it goes on.

:func:`exit_with_parent` is for the child's side: it ends the child when its parent has gone (killed
with ``kill -9``, say), so that no orphan keeps training and holding a run folder's lock that the
re-run of the parent's command needs. Each verb's children are written to be killed at any point
(their outputs are atomic, their runs resumable), so ending them is what a re-run expects.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

POLL_SECONDS = 1.0


@dataclass(frozen=True)
class Job:
    name: str               # how the parent's lines name it, e.g. "strict/adamw/seed0" or "mnli-rte"
    command: list[str]
    log_path: Path          # stdout and stderr, appended


def run_jobs(jobs: Sequence[Job], limit: int, log: Callable[[str], None] = print,
             poll: Callable[[], None] | None = None, poll_seconds: float = POLL_SECONDS) -> dict[str, int]:
    """Run ``jobs`` (in order, at most ``limit`` at once) to their ends; ``{name: exit status}``
    (negative: killed by that signal). ``poll`` is called about every ``poll_seconds`` while they run
    (e.g. to report the parent's progress)."""
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    pending = list(jobs)
    running: dict[str, subprocess.Popen] = {}
    codes: dict[str, int] = {}
    try:
        while pending or running:
            while pending and len(running) < limit:
                job = pending.pop(0)
                job.log_path.parent.mkdir(parents=True, exist_ok=True)
                with open(job.log_path, "ab") as fh:
                    fh.write(f"== {time.strftime('%Y-%m-%d %H:%M:%S')} pid {os.getpid()} started: "
                             f"{shlex.join(job.command)}\n".encode())
                    fh.flush()
                    running[job.name] = subprocess.Popen(job.command, stdout=fh, stderr=subprocess.STDOUT,
                                                         stdin=subprocess.DEVNULL)
                log(f"started {job.name} (log {job.log_path})")
            time.sleep(poll_seconds)
            if poll is not None:
                poll()
            for name, proc in list(running.items()):
                if proc.poll() is not None:
                    del running[name]
                    codes[name] = proc.returncode
                    log(f"{name}: {'done' if proc.returncode == 0 else f'FAILED (exit {proc.returncode})'}")
    finally:
        for proc in running.values():      # stopped while waiting: end the children, then go on stopping
            proc.terminate()
        for proc in running.values():
            proc.wait()
    return codes


def exit_with_parent(parent_pid: int, poll_seconds: float = POLL_SECONDS) -> None:
    """End this process (SIGTERM to itself) as soon as its parent, ``parent_pid`` (what the parent
    passed on its command line), has ended: a thread watches this process's parent pid, which changes
    when the child is reparented; a parent that ended before this call ends the child at once."""

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(poll_seconds)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()
