"""``blalm eval RUN_DIR --follow``: each checkpoint scored as a training in another process writes it,
the summary equal to ``blalm eval RUN_DIR``'s, nothing scored twice across a kill, and the end found
from the training's pid or the run folder's lock."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from blalm.config import from_dict
from blalm.eval.config import PAPER_COLUMNS, EvalConfig
from blalm.eval.runs import SUMMARY_FILE, evaluate_run, follow_run, training_alive
from blalm.lock import LOCK_FILE
from test_eval_suite import make_mini_eval
from test_train_helpers import DEMO_TRAIN_CONFIG, REPO_ROOT, tiny_overrides, train_data  # noqa: F401


def eval_config(mini: Path) -> EvalConfig:
    return from_dict(EvalConfig, {"suite": "fast", "data_dir": str(mini), "device": "cpu", "progress": False,
                                  "entity_fast_per_group": 1, "tasks": [t for t, _ in PAPER_COLUMNS]})


def stamps(eval_dir: Path) -> dict[str, int]:
    return {p.parent.name: p.stat().st_mtime_ns for p in eval_dir.glob("*/results.json")}


@pytest.fixture(scope="module")
def followed(train_data, data_dir, tmp_path_factory):  # noqa: F811
    """A tiny training in a subprocess, followed from this process while it runs."""
    corpus, tokenizer = train_data
    root = tmp_path_factory.mktemp("follow")
    mini = make_mini_eval(data_dir / "eval", root / "mini_eval")
    run = root / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "blalm.train", str(DEMO_TRAIN_CONFIG), "--out", str(run),
           *[a for o in tiny_overrides(corpus, tokenizer, max_steps=10) for a in ("--set", o)]]
    proc = subprocess.Popen(cmd, env=env, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    log: list[str] = []
    t0 = time.monotonic()
    try:
        summary = follow_run(run, eval_config(mini), pid=proc.pid, poll_seconds=0.2, log=log.append)
        follow_seconds = time.monotonic() - t0
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out[-3000:]
    return {"run": run, "mini": mini, "summary": summary, "log": log, "seconds": follow_seconds}


def test_follow_scores_each_checkpoint_while_training_runs(followed):
    run, summary, log = followed["run"], followed["summary"], followed["log"]
    print(followed["seconds"], log)
    names = sorted(p.name for p in (run / "checkpoints").iterdir() if p.is_dir() and not p.name.startswith("."))
    assert len(names) >= 2
    assert [r["checkpoint"] for r in summary["checkpoints"]] == sorted(names, key=lambda n: next(
        r["step"] for r in summary["checkpoints"] if r["checkpoint"] == n))
    assert json.loads((run / "eval" / SUMMARY_FILE).read_text()) == summary
    assert summary["best"] is not None and summary["best"]["average"] == max(r["average"] for r in summary["checkpoints"])
    assert any("final checkpoint is scored" in line for line in log)
    # the checkpoints were scored as they appeared, not all at the end
    assert sum("scoring" in line for line in log) == len(names)


def test_follow_summary_is_the_one_blalm_eval_run_dir_writes(followed, tmp_path):
    run, summary = followed["run"], followed["summary"]
    again = evaluate_run(run, eval_config(followed["mini"]), out_dir=tmp_path / "eval")
    assert again["checkpoints"] == summary["checkpoints"]
    assert again["best"]["checkpoint"] == summary["best"]["checkpoint"]
    # speed-only settings do not make the follower's results stale
    faster = from_dict(EvalConfig, {**eval_config(followed["mini"]).__dict__, "token_budget": 64, "batch_size": 3})
    before = stamps(run / "eval")
    assert evaluate_run(run, faster) == summary
    assert stamps(run / "eval") == before


def test_a_killed_follower_resumes_without_scoring_anything_twice(followed, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(followed["run"], run, ignore=shutil.ignore_patterns("eval"))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "blalm.cli", "eval", str(run), "--follow", "--follow-poll", "0.2", "--quiet",
           "--device", "cpu", "--data-dir", str(followed["mini"]), "--entity-fast-items", "1"]
    proc = subprocess.Popen(cmd, env=env, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not list((run / "eval").glob("*/results.json")) and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.kill()
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    first = stamps(run / "eval")
    assert 1 <= len(first) < len(followed["summary"]["checkpoints"]), first   # killed mid-way
    cfg = from_dict(EvalConfig, {**eval_config(followed["mini"]).__dict__, "tasks": ["all"]})
    log: list[str] = []
    summary = follow_run(run, cfg, pid=None, poll_seconds=0.2, log=log.append)
    after = stamps(run / "eval")
    assert {k: after[k] for k in first} == first                      # not scored again
    assert sum("scoring" in line for line in log) == len(after) - len(first)
    assert len(summary["checkpoints"]) == len(after)
    assert not [p for p in (run / "eval").rglob("*") if p.name.startswith(".")]   # no half-written file


def test_follow_ends_when_the_training_process_is_gone(followed, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(followed["run"], run)
    final = next(p for p in (run / "checkpoints").iterdir()
                 if (p / "state.json").is_file() and json.loads((p / "state.json").read_text())["complete"])
    shutil.rmtree(final)       # a run killed before its last checkpoint
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(gone.stdout)
    log: list[str] = []
    t0 = time.monotonic()
    summary = follow_run(run, eval_config(followed["mini"]), pid=dead_pid, poll_seconds=30, log=log.append)
    assert time.monotonic() - t0 < 20          # no waiting for a checkpoint that will never come
    assert "ended before its final checkpoint" in log[-1]
    assert len(summary["checkpoints"]) == len(followed["summary"]["checkpoints"]) - 1
    # the lock file of the run folder (blalm.run's RUN_DIR/.lock) says the same without a pid
    assert training_alive(run) is None
    (run / LOCK_FILE).write_text(json.dumps({"pid": dead_pid, "host": socket.gethostname()}) + "\n")
    assert training_alive(run) is False
    (run / LOCK_FILE).write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname()}) + "\n")
    assert training_alive(run) is True
    assert training_alive(run, pid=dead_pid) is False


def test_a_follower_out_of_gpu_memory_waits_for_the_training_and_tries_again(followed, tmp_path, monkeypatch):
    """Nine trainers and their scorers on one GPU (recipe round 3, docs/results/sample_efficiency.md):
    a scorer's allocation fails while the trainers hold the memory. The follower must not die: it
    frees what it holds, halves its token budget and scores the same checkpoints on the next look.
    (There is no GPU here: the first scoring raises the error torch raises there.)"""
    import torch

    import blalm.eval.runs as runs
    from blalm.eval.batching import DEFAULT_TOKEN_BUDGET

    run = tmp_path / "run"
    shutil.copytree(followed["run"], run, ignore=shutil.ignore_patterns("eval"))
    real, budgets = runs.evaluate_run, []

    def first_out_of_memory(run_dir, cfg, **kw):
        budgets.append(cfg.token_budget)
        if len(budgets) == 1:
            raise torch.AcceleratorError("CUDA error: out of memory")
        return real(run_dir, cfg, **kw)

    monkeypatch.setattr(runs, "evaluate_run", first_out_of_memory)
    monkeypatch.setattr(runs, "OOM_WAIT_SECONDS", 0.0)
    monkeypatch.setattr(runs, "training_alive", lambda run_dir, pid=None: True)   # the trainer still runs
    log: list[str] = []
    summary = follow_run(run, eval_config(followed["mini"]), pid=None, poll_seconds=0.01, log=log.append)
    # the same scores (the reading regressions to float rounding: other batches, other sums)
    for got, want in zip(summary["checkpoints"], followed["summary"]["checkpoints"], strict=True):
        assert got["checkpoint"] == want["checkpoint"]
        assert {k: v for k, v in got.items() if k != "checkpoint"} == pytest.approx(
            {k: v for k, v in want.items() if k != "checkpoint"}, rel=1e-6)
    assert budgets[0] == 0 and budgets[1] == DEFAULT_TOKEN_BUDGET["cuda"] // 2
    assert any("out of GPU memory" in line and "trying again" in line for line in log)

    # with the training gone the memory is not the trainer's: the error is raised, not waited out
    monkeypatch.setattr(runs, "training_alive", lambda run_dir, pid=None: False)
    budgets.clear()
    shutil.rmtree(run / "eval")
    with pytest.raises(torch.AcceleratorError):
        follow_run(run, eval_config(followed["mini"]), pid=None, poll_seconds=0.01, log=log.append)
    # another error is never taken for a lack of memory
    assert not runs.is_device_oom(RuntimeError("CUDA error: device-side assert triggered"))
    assert runs.is_device_oom(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 936.00 MiB"))
