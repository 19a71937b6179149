"""Faults a run folder meets, through the real ``blalm train`` command (issue 13, items 1, 2, 3, 5):
a damaged latest checkpoint is skipped with a message and the run resumes from the previous good one
to weights bit-identical with an uninterrupted run (and a damaged metrics.jsonl comes back whole); a finished run whose final checkpoint is damaged
re-does its end; a second writer into the same --out is refused naming the holder, and a dead
holder's lock is taken over; every file is written with the umask's mode (checkpoints, exports)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from blalm.run import checkpoint as ckpt
from blalm.run.metrics import read_metrics
from blalm.train.trainer import train
from test_train_helpers import (  # noqa: F401
    DEMO_TRAIN_CONFIG,
    REPO_ROOT,
    tiny_config,
    tiny_overrides,
    train_data,
)

UMASK = 0o027
HOLD_LOCK = ("import sys, time; from blalm.lock import RunLock; RunLock(sys.argv[1]).acquire(); "
             "print('held', flush=True); time.sleep(120)")


@pytest.fixture(scope="module")
def reference(train_data, tmp_path_factory) -> Path:
    """An uninterrupted run (34 steps, checkpoints at steps 4, 8, 11, 15, 17, 18, 22, 26, 29, 33, 34)."""
    corpus, tokenizer = train_data
    out = tmp_path_factory.mktemp("reference") / "run"
    train(tiny_config(corpus, tokenizer), out, log=lambda m: None)
    return out


def _blalm_train(train_data, out: Path, fault: str | None = None, **extra) -> subprocess.CompletedProcess:
    """``blalm train`` on the tiny config in a fresh process, under umask 027."""
    corpus, tokenizer = train_data
    args = [sys.executable, "-m", "blalm.cli", "train", str(DEMO_TRAIN_CONFIG), "--out", str(out)]
    for item in tiny_overrides(corpus, tokenizer, **extra):
        args += ["--set", item]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    env.pop("BLALM_FAULT", None)
    if fault:
        env["BLALM_FAULT"] = fault
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=180, cwd=REPO_ROOT,
                          preexec_fn=lambda: os.umask(UMASK))


def _cut(path: Path) -> None:
    """A file cut short, as a full disk or a copy interrupted leaves it."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])


def _latest(out: Path) -> Path:
    return ckpt.read_latest(out / "checkpoints")


def _same_checkpoints(reference: Path, out: Path) -> None:
    """Every checkpoint of ``out`` has the reference's weights, bit for bit, and the same names."""
    want = ckpt.list_checkpoints(reference / "checkpoints")
    got = ckpt.list_checkpoints(out / "checkpoints")
    assert [c["name"] for c in got] == [c["name"] for c in want]
    for c in want:
        a, b = load_file(str(Path(c["path"]) / "model.safetensors")), load_file(str(out / "checkpoints" / c["name"] /
                                                                                  "model.safetensors"))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), c["name"]
    ref_losses = [(r["step"], r["loss"]) for r in read_metrics(reference, "train")]
    assert [(r["step"], r["loss"]) for r in read_metrics(out, "train")] == ref_losses


def test_a_damaged_latest_checkpoint_is_skipped_and_the_run_resumes_identical(train_data, reference, tmp_path):
    out = tmp_path / "run"
    run = _blalm_train(train_data, out, fault="step_backward@40")        # killed in step 20
    assert run.returncode == -signal.SIGKILL, run.stderr[-2000:]
    assert _latest(out).name == "words_2500"                               # step 18
    _cut(_latest(out) / "optimizer.safetensors")
    run = _blalm_train(train_data, out, fault="step_backward@13")        # killed again, in step 24
    assert run.returncode == -signal.SIGKILL, run.stderr[-2000:]
    assert "checkpoint words_2500 skipped: optimizer.safetensors has" in run.stdout
    assert "resuming from " + str(out / "checkpoints" / "epoch_01") in run.stdout   # the previous good one
    assert _latest(out).name == "words_003k"                               # step 22
    _cut(_latest(out) / "model.safetensors")
    _cut(out / "metrics.jsonl")                  # the run's log too: restored from the checkpoint's copy
    run = _blalm_train(train_data, out)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "Traceback" not in run.stderr
    assert "checkpoint words_003k skipped: model.safetensors has" in run.stdout and "(cut short or changed)" in run.stdout
    assert "resuming from " + str(out / "checkpoints" / "words_2500") in run.stdout
    _same_checkpoints(reference, out)
    # the damaged checkpoints are kept aside, never read again; the resume records name them
    aside = sorted(p.name.rsplit("-", 1)[0] for p in (out / "checkpoints").iterdir() if p.name.startswith(".damaged-"))
    assert aside == [".damaged-words_003k", ".damaged-words_2500"]
    skipped = [s["checkpoint"] for r in read_metrics(out, "resume") for s in r["skipped"]]
    assert skipped == ["words_2500", "words_003k"]
    # item 5: every file the three processes wrote has the umask's mode (0640 under umask 027)
    files = [p for p in out.rglob("*") if p.is_file() and ".damaged-" not in str(p)]
    assert any(p.name == "optimizer.safetensors" for p in files)
    wrong = {str(p.relative_to(out)): oct(stat.S_IMODE(p.stat().st_mode)) for p in files
             if stat.S_IMODE(p.stat().st_mode) != 0o666 & ~UMASK}
    assert wrong == {}


def test_a_finished_run_with_a_damaged_final_checkpoint_redoes_its_end(train_data, reference, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(reference, out)
    _cut(out / "checkpoints" / "epoch_02" / "model.safetensors")
    run = _blalm_train(train_data, out)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "already complete" not in run.stdout
    assert "checkpoint epoch_02 skipped: model.safetensors has" in run.stdout
    assert "resuming from " + str(out / "checkpoints" / "words_4500") in run.stdout   # step 33 of 34
    _same_checkpoints(reference, out)
    assert ckpt.verify_checkpoint(out / "checkpoints" / "epoch_02") == []
    again = _blalm_train(train_data, out)                                  # now it is complete
    assert again.returncode == 0 and "already complete" in again.stdout and "verified" in again.stdout


def test_a_second_writer_into_the_same_out_is_refused_naming_the_holder(train_data, tmp_path):
    out = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(out)], stdout=subprocess.PIPE, text=True,
                              cwd=REPO_ROOT)
    try:
        assert holder.stdout.readline().strip() == "held"
        run = _blalm_train(train_data, out, max_steps=4)
        assert run.returncode == 2, run.stderr[-2000:]
        assert "Traceback" not in run.stderr
        assert (f"blalm train: error: {out} is in use: pid {holder.pid} on host {socket.gethostname()}"
                in run.stderr) and "is writing this training run" in run.stderr
        assert sorted(p.name for p in out.iterdir()) == [".lock"]        # the refused writer wrote nothing
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    run = _blalm_train(train_data, out, max_steps=4)                    # the dead holder's lock is taken over
    assert run.returncode == 0, run.stderr[-2000:]
    assert f"took over the lock of pid {holder.pid}" in run.stdout
    assert [r["step"] for r in read_metrics(out, "train")] == [1, 2, 3, 4]


def test_exported_weights_get_the_umasks_mode(reference, tmp_path):
    from blalm.model.export import export_hf

    before = os.umask(UMASK)
    try:
        export_hf(reference / "checkpoints" / "epoch_02", tmp_path / "export")
    finally:
        os.umask(before)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "export").iterdir() if p.is_file()}
    assert modes["model.safetensors"] == 0o640 and set(modes.values()) == {0o640}, modes
