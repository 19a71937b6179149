"""Kill-and-resume: a training process killed with SIGKILL at any point (at a random moment, in the
middle of a step, in the middle of a checkpoint write, between a checkpoint and its ``latest``
pointer) and re-run with the same command ends with weights bit-identical to an uninterrupted
run (CPU, fixed seed); a crash during a save never leaves a broken ``latest``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from blalm.run import checkpoint as ckpt
from blalm.run.metrics import read_metrics
from blalm.train.trainer import train
from test_train_helpers import (  # noqa: F401
    DEMO_TRAIN_CONFIG,
    REPO_ROOT,
    run_train_subprocess,
    tiny_config,
    tiny_overrides,
    train_data,
)


def _args(corpus, tokenizer, out) -> list[str]:
    args = [str(DEMO_TRAIN_CONFIG), "--out", str(out)]
    for item in tiny_overrides(corpus, tokenizer):
        args += ["--set", item]
    return args


def _latest_is_complete(root):
    """``latest`` names a complete checkpoint: its model loads and its optimizer state is there."""
    latest = ckpt.read_latest(root)
    assert latest is not None
    assert (latest / ckpt.OPTIMIZER_FILE).is_file()
    ckpt.load_checkpoint_model(latest)
    return latest.name, ckpt.read_state(latest)["step"]


def test_killed_runs_resume_to_bit_identical_weights(train_data, tmp_path):
    corpus, tokenizer = train_data
    reference = tmp_path / "reference"
    train(tiny_config(corpus, tokenizer), reference, log=lambda m: None)

    out = tmp_path / "killed"
    args = _args(corpus, tokenizer, out)
    root = out / "checkpoints"

    # 1. killed at an arbitrary moment, soon after the first checkpoint
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "blalm.train", *args], env=env, cwd=REPO_ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while not (root / "latest").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    history = [_latest_is_complete(root)]

    # 2. killed in the middle of writing its 2nd checkpoint (files written, folder not yet renamed)
    run = run_train_subprocess(args, {"BLALM_FAULT": "checkpoint_written@2"})
    assert run.returncode == -signal.SIGKILL, run.stderr[-2000:]
    assert any(".tmp-" in p.name for p in root.iterdir())          # the half-written one
    name, step = _latest_is_complete(root)
    assert step > history[-1][1]                                            # the 1st save of this run
    history.append((name, step))

    # 3. killed in the middle of an optimizer step (after a micro-batch's backward)
    run = run_train_subprocess(args, {"BLALM_FAULT": "step_backward@5"})
    assert run.returncode == -signal.SIGKILL, run.stderr[-2000:]
    assert not any(".tmp-" in p.name for p in root.iterdir())      # cleaned at the start
    history.append(_latest_is_complete(root))

    # 4. killed after a checkpoint was renamed into place but before 'latest' was updated
    run = run_train_subprocess(args, {"BLALM_FAULT": "checkpoint_renamed@2"})
    assert run.returncode == -signal.SIGKILL, run.stderr[-2000:]
    name, step = _latest_is_complete(root)
    newest = max(ckpt.list_checkpoints(root), key=lambda c: c["step"])
    assert newest["step"] > step and newest["name"] != name                 # the orphan is not 'latest'
    history.append((name, step))

    # 5. the same command once more finishes the run
    run = run_train_subprocess(args)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "resuming from" in run.stdout

    assert [s for _, s in history] == sorted(s for _, s in history)
    ref_checkpoints = ckpt.list_checkpoints(reference / "checkpoints")
    got_checkpoints = ckpt.list_checkpoints(root)
    assert [c["name"] for c in got_checkpoints] == [c["name"] for c in ref_checkpoints]
    final = ref_checkpoints[-1]["name"]
    want = ckpt.load_model_state(reference / "checkpoints" / final)
    got = ckpt.load_model_state(root / final)
    assert want.keys() == got.keys()
    for key in want:
        assert torch.equal(want[key], got[key]), key                        # bit-identical
    # every checkpoint along the way too, and the same optimizer state at the end
    for c in ref_checkpoints:
        a, b = ckpt.load_model_state(c["path"]), ckpt.load_model_state(root / c["name"])
        assert all(torch.equal(a[k], b[k]) for k in a), c["name"]
    from safetensors.torch import load_file

    opt_a = load_file(str(reference / "checkpoints" / final / ckpt.OPTIMIZER_FILE))
    opt_b = load_file(str(root / final / ckpt.OPTIMIZER_FILE))
    assert opt_a.keys() == opt_b.keys() and all(torch.equal(opt_a[k], opt_b[k]) for k in opt_a)
    # metrics.jsonl reads as one run: the same losses, step by step, no step twice
    ref_losses = [(r["step"], r["loss"]) for r in read_metrics(reference, "train")]
    got_losses = [(r["step"], r["loss"]) for r in read_metrics(out, "train")]
    assert got_losses == ref_losses


def test_background_saver_writes_in_order_and_surfaces_errors(tmp_path):
    """Checkpoints written on the background thread land in submission order with the snapshot's
    values (not the live tensors', changed after submit); a failed write is raised, not lost."""
    weights = {"w": torch.zeros(3)}
    saver = ckpt.BackgroundSaver()
    for i in range(3):
        weights["w"].fill_(float(i))
        saver.save(tmp_path, f"c{i}", weights, None, {"step": i}, {})
        weights["w"].fill_(-1.0)           # training goes on changing the live tensor
    saver.wait()
    assert ckpt.read_latest(tmp_path).name == "c2"
    for i in range(3):
        assert torch.equal(ckpt.load_model_state(tmp_path / f"c{i}")["w"], torch.full((3,), float(i)))
    saver.save(tmp_path / "c0" / "model.safetensors", "x", {}, None, {}, {})  # not a folder
    with pytest.raises(OSError):
        saver.close()


def test_metrics_reader_skips_a_line_cut_by_a_kill(tmp_path):
    """Every reader of metrics.jsonl (report, sweep, tests) sees the whole records of a killed run."""
    from blalm.run.metrics import METRICS_FILE, read_metrics

    (tmp_path / METRICS_FILE).write_text('{"kind": "train", "step": 1}\n{"kind": "eval", "step": 1}\n{"kind": "tr',
                                         encoding="utf-8")
    assert read_metrics(tmp_path) == [{"kind": "train", "step": 1}, {"kind": "eval", "step": 1}]
    assert read_metrics(tmp_path, "eval") == [{"kind": "eval", "step": 1}]
