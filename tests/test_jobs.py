"""blalm.jobs: child processes side by side (``--jobs`` of sweep and finetune) with a log each, and a
child that ends when its parent is killed."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from blalm.jobs import Job, run_jobs

REPO_ROOT = Path(__file__).resolve().parents[1]


def _python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def test_jobs_run_to_their_ends_each_logging_to_its_file(tmp_path):
    """Three jobs, two at a time: each one's output (stdout and stderr) after a header naming its
    command; a failing job does not stop the others; every exit status comes back."""
    jobs = [Job("a", _python("print('a out')"), tmp_path / "logs" / "a.log"),
            Job("b", _python("import sys; print('b err', file=sys.stderr); sys.exit(3)"), tmp_path / "logs" / "b.log"),
            Job("c", _python("import time; time.sleep(0.2); print('c out')"), tmp_path / "logs" / "c.log")]
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "a.log").write_text("an earlier run\n")
    lines: list[str] = []
    polls: list[int] = []
    codes = run_jobs(jobs, 2, lines.append, poll=lambda: polls.append(1), poll_seconds=0.05)
    assert codes == {"a": 0, "b": 3, "c": 0}
    a = (tmp_path / "logs" / "a.log").read_text().splitlines()
    assert a[0] == "an earlier run" and a[1].startswith("== ") and "started: " in a[1] and a[2] == "a out"
    assert (tmp_path / "logs" / "b.log").read_text().splitlines()[1] == "b err"
    assert "print(" in a[1]                                   # the exact command, shell-quoted
    assert lines[:2] == [f"started a (log {tmp_path / 'logs' / 'a.log'})", f"started b (log {tmp_path / 'logs' / 'b.log'})"]
    assert "b: FAILED (exit 3)" in lines and "a: done" in lines and "c: done" in lines
    assert lines.index("started c (log " + str(tmp_path / "logs" / "c.log") + ")") > min(
        lines.index("a: done"), lines.index("b: FAILED (exit 3)"))  # c waited for a free slot
    assert polls


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting for its reaper does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def test_a_child_ends_when_its_parent_is_killed(tmp_path):
    """exit_with_parent: the parent is SIGKILLed; its child (sleeping for a minute) ends within a
    second or two; a child whose parent is gone before the call ends at once."""
    child = ("import sys, time; from blalm.jobs import exit_with_parent; exit_with_parent(int(sys.argv[1]), 0.05); "
             "print('watching', flush=True); time.sleep(60)")
    parent = ("import os, signal, subprocess, sys; "
              f"p = subprocess.Popen([sys.executable, '-c', {child!r}, str(os.getpid())], stdout=subprocess.PIPE, "
              "text=True); print(p.pid, p.stdout.readline().strip(), flush=True); os.kill(os.getpid(), signal.SIGKILL)")
    run = subprocess.run(_python(parent), capture_output=True, text=True, timeout=60, cwd=REPO_ROOT)
    assert run.returncode == -signal.SIGKILL, run.stderr
    pid, said = run.stdout.split()
    assert said == "watching"
    deadline = time.time() + 10
    while _alive(int(pid)) and time.time() < deadline:
        time.sleep(0.05)
    assert not _alive(int(pid))
    gone = subprocess.run(_python(child.replace("print('watching', flush=True); ", "")) + ["-1"],
                          capture_output=True, text=True, timeout=30, cwd=REPO_ROOT)
    assert gone.returncode == -signal.SIGTERM, gone.stderr
