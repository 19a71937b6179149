"""The run room (blalm.run): the lock on a run folder, checkpoints verified by SHA-256, resume from
the newest checkpoint that verifies, the metrics file's damaged lines, the device, precision and
seeding helpers, the named fault points. Real files, real processes, real torch; each test runs in
a second or two."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from blalm.errors import BlalmError, InputError
from blalm.run import checkpoint as ckpt
from blalm.run.device import (precision_context, resolve_device, resolve_precision, rng_state, seed_everything,
                              set_rng_state)
from blalm.run.layout import LOCK_FILE, OPTIMIZER_FILE, check_run_dir
from blalm.lock import RunLock, RunLocked
from blalm.run.metrics import METRICS_FILE, read_metrics, truncate_metrics
from blalm.run.resume import check_same_settings, choose_checkpoint

REPO_ROOT = Path(__file__).resolve().parents[1]
HOLD_LOCK = ("import sys, time; from blalm.lock import RunLock; RunLock(sys.argv[1]).acquire(); "
             "print('held', flush=True); time.sleep(120)")


def _holder(folder: Path) -> subprocess.Popen:
    """Another process holding ``folder``'s lock (started and confirmed)."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(folder)], stdout=subprocess.PIPE, text=True,
                            cwd=REPO_ROOT)
    assert proc.stdout.readline().strip() == "held"
    return proc


# ----------------------------------------------------------------------------------------------
# the lock


def test_a_second_writer_is_refused_naming_the_holder_and_a_dead_holders_lock_is_taken_over(tmp_path):
    holder = _holder(tmp_path)
    try:
        with pytest.raises(RunLocked, match=rf"pid {holder.pid} on host {socket.gethostname()}"):
            RunLock(tmp_path, what="training run").acquire()
    finally:
        holder.send_signal(signal.SIGKILL)      # kill -9: no clean-up code runs
        holder.wait()
    assert json.loads((tmp_path / LOCK_FILE).read_text())["pid"] == holder.pid   # the file still names it
    messages = []
    with RunLock(tmp_path, log=messages.append):
        assert json.loads((tmp_path / LOCK_FILE).read_text())["pid"] == os.getpid()
        assert any(f"took over the lock of pid {holder.pid}" in m for m in messages)
        with pytest.raises(RunLocked, match=rf"pid {os.getpid()}"):      # one writer, in-process too
            RunLock(tmp_path).acquire()
    assert (tmp_path / LOCK_FILE).read_text() == ""                      # a clean release names no holder
    with RunLock(tmp_path, log=messages.append):
        pass
    assert len([m for m in messages if "took over" in m]) == 1


def test_a_run_folder_with_only_a_lock_in_it_is_still_a_new_run(tmp_path):
    with RunLock(tmp_path / "run"):
        pass
    check_run_dir(tmp_path / "run")                                       # the lock file is the run's own
    (tmp_path / "run" / "notes.txt").write_text("mine")
    with pytest.raises(BlalmError, match="notes.txt.*not a blalm training run"):
        check_run_dir(tmp_path / "run")


# ----------------------------------------------------------------------------------------------
# checkpoints


def _save(root: Path, name: str, step: int, value: float = 0.0) -> Path:
    weights = {"w": torch.full((64,), value + step), "b": torch.arange(8.0)}
    return ckpt.save_checkpoint(root, name, weights, {"adamw/w/exp_avg": torch.ones(64)},
                                {"step": step, "complete": False}, {"hidden_size": 4})


def _flip(path: Path, offset: int = -5) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_every_checkpoint_file_is_recorded_and_verified(tmp_path):
    folder = _save(tmp_path, "c1", 1)
    state = json.loads((folder / "state.json").read_text())
    assert set(state["files"]) == {"model.safetensors", OPTIMIZER_FILE, "model_config.json"}
    assert state["files"]["model.safetensors"]["sha256"] == ckpt.sha256_file(folder / "model.safetensors")
    assert ckpt.verify_checkpoint(folder, [OPTIMIZER_FILE]) == []
    assert torch.equal(ckpt.load_tensors(folder, "model.safetensors")["w"], torch.full((64,), 1.0))
    for entry in folder.iterdir():                       # the usual mode, not safetensors' 0600
        assert stat.S_IMODE(entry.stat().st_mode) == 0o666 & ~_umask(), entry.name

    _truncate(folder / OPTIMIZER_FILE)
    assert ckpt.verify_checkpoint(folder) == [f"{OPTIMIZER_FILE} has {(folder / OPTIMIZER_FILE).stat().st_size:,} "
                                              f"bytes, {state['files'][OPTIMIZER_FILE]['bytes']:,} were written "
                                              f"(cut short or changed)"]
    with pytest.raises(ckpt.DamagedCheckpoint, match="optimizer.safetensors has .* bytes"):
        ckpt.load_tensors(folder, OPTIMIZER_FILE)
    _flip(folder / "model.safetensors")                  # same size, one bit changed
    problems = ckpt.verify_checkpoint(folder)
    assert any("model.safetensors: SHA-256 differs" in p for p in problems)
    with pytest.raises(InputError, match="model.safetensors: SHA-256 differs"):
        ckpt.load_model_state(folder)
    # state.json checks itself: a changed digit that still parses is caught
    other = _save(tmp_path, "c2", 2)
    text = (other / "state.json").read_text()
    (other / "state.json").write_text(text.replace('"step": 2', '"step": 3'))
    assert "does not match its state_sha256" in ckpt.verify_checkpoint(other)[0]
    (other / "state.json").write_text(text[: len(text) // 2])
    assert "state.json: not readable JSON" in ckpt.verify_checkpoint(other)[0]
    assert [c["name"] for c in ckpt.list_checkpoints(tmp_path)] == ["c1"]   # c2's state cannot be read


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_resume_takes_the_newest_checkpoint_that_verifies_and_sets_the_others_aside(tmp_path):
    for step in (1, 2, 3):
        _save(tmp_path, f"c{step}", step)
    ckpt.prune_checkpoints(tmp_path, keep_optimizer=2)
    assert not (tmp_path / "c1" / OPTIMIZER_FILE).exists() and (tmp_path / "c2" / OPTIMIZER_FILE).exists()
    assert ckpt.verify_checkpoint(tmp_path / "c1") == []                 # pruned on purpose: still whole
    assert "optimizer.safetensors is missing" in ckpt.verify_checkpoint(tmp_path / "c1", [OPTIMIZER_FILE])[0]
    _truncate(tmp_path / "c3" / "model.safetensors")
    messages = []
    point = choose_checkpoint(tmp_path, log=messages.append)
    assert point.name == "c2" and point.state["step"] == 2
    assert (tmp_path / "latest").read_text().strip() == "c2"
    assert len(messages) == 1 and messages[0].startswith("checkpoint c3 skipped: model.safetensors has")
    [(name, why, moved)] = point.skipped
    assert name == "c3" and moved.startswith(".damaged-c3-") and (tmp_path / moved / "model.safetensors").is_file()
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == ["c1", "c2", "latest"]
    # nothing to resume from (c1 has no optimizer state): refused, nothing moved
    _flip(tmp_path / "c2" / OPTIMIZER_FILE)
    with pytest.raises(InputError, match=r"no checkpoint to resume from(.|\n)*c2: optimizer.safetensors: SHA-256"
                                         r"(.|\n)*c1: optimizer.safetensors is missing"):
        choose_checkpoint(tmp_path, log=messages.append)
    assert (tmp_path / "c2").is_dir() and len(messages) == 1


def test_a_resume_the_stage_refuses_moves_no_damaged_checkpoint(tmp_path):
    from blalm.run.session import RunPlan, RunSession, RunSpec

    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "config.json").write_text(json.dumps({"lr": 0.1}))
    for step in (1, 2):
        _save(run_dir / "checkpoints", f"c{step}", step)
    _truncate(run_dir / "checkpoints" / "c2" / "model.safetensors")

    def refuse(path, state):
        raise BlalmError(f"{path}: saved under another tokenizer")

    messages = []
    spec = RunSpec(run_dir, {"lr": 0.1}, RunPlan(10, 5), progress=False, tensorboard=False)
    with RunSession(spec, log=messages.append) as session:
        with pytest.raises(BlalmError, match="c1: saved under another tokenizer"):
            session.start(check_state=refuse)
    names = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    assert names == ["c1", "c2", "latest"] and (run_dir / "checkpoints" / "latest").read_text().strip() == "c2"
    assert messages == []
    with RunSession(spec, log=messages.append) as session:
        point = session.start()                              # accepted: only now is c2 set aside
    assert point.name == "c1" and point.skipped[0][0] == "c2"
    assert not (run_dir / "checkpoints" / "c2").exists()


def test_a_resume_under_other_settings_or_a_damaged_config_is_refused(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"lr": 0.1, "model": {"hidden_size": 8}, "progress": True}))
    check_same_settings(tmp_path, {"lr": 0.1, "model": {"hidden_size": 8}, "progress": False}, free={"progress"})
    with pytest.raises(BlalmError, match=r"different config(.|\n)*model.hidden_size: 8 in the run, 16 now"):
        check_same_settings(tmp_path, {"lr": 0.1, "model": {"hidden_size": 16}, "progress": True})
    (tmp_path / "config.json").write_text('{"lr": 0.1, "mod')
    with pytest.raises(InputError, match=r"config.json: the run's settings are not readable(.|\n)*run_info.json"):
        check_same_settings(tmp_path, {"lr": 0.1})


def test_damaged_metrics_lines_are_set_aside_not_lost(tmp_path):
    good = [{"kind": "train", "step": s, "loss": 1.0 / s} for s in (1, 2, 3, 4)]
    lines = [json.dumps(r) + "\n" for r in good]
    lines[1] = lines[1].replace('"step"', '"st\x00ep":')             # damaged in the middle
    (tmp_path / METRICS_FILE).write_text("".join(lines) + '{"kind": "tr')   # and cut at the end by a kill
    assert truncate_metrics(tmp_path, 3) == 1
    assert read_metrics(tmp_path) == [good[0], good[2]]
    assert (tmp_path / (METRICS_FILE + ".damaged")).read_text() == lines[1]


# ----------------------------------------------------------------------------------------------
# device, precision, seeding


def test_one_device_precision_and_seeding_helper():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(BlalmError, match=r"device 'cuda': no CUDA GPU is visible here; use device \"cpu\""):
            resolve_device("cuda")
    with pytest.raises(BlalmError, match="not a device name"):
        resolve_device("gpu0")
    cpu = torch.device("cpu")
    assert [resolve_precision(p, cpu) for p in ("auto", "fp32", "tf32", "bf16")] == ["fp32"] * 4
    assert resolve_precision("bf16", cpu, cpu_autocast=True) == "bf16"
    assert resolve_precision("auto", torch.device("cuda")) == "bf16"
    a, b = torch.randn(4, 4), torch.randn(4, 4)
    with precision_context(cpu, "bf16"):
        assert (a @ b).dtype == torch.bfloat16
    with precision_context(cpu, "fp32"):
        assert (a @ b).dtype == torch.float32
    seed_everything(7)
    saved = rng_state()
    json.dumps(saved)                                                    # JSON, not pickle
    first = (torch.rand(3), np.random.rand(3), __import__("random").random())
    set_rng_state(saved)
    again = (torch.rand(3), np.random.rand(3), __import__("random").random())
    assert torch.equal(first[0], again[0]) and np.array_equal(first[1], again[1]) and first[2] == again[2]


def test_a_named_fault_point_kills_the_process_there(tmp_path):
    log = tmp_path / "points.log"
    code = ("from blalm.faults import fault_point\n"
            "for i in range(5):\n    fault_point('step_backward')\n    print(i, flush=True)\n")
    env = {**os.environ, "BLALM_FAULT": "step_backward@3", "BLALM_FAULT_LOG": str(log)}
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=REPO_ROOT)
    assert run.returncode == -signal.SIGKILL and run.stdout.split() == ["0", "1"]
    assert log.read_text().split() == ["step_backward"] * 3
    bad = subprocess.run([sys.executable, "-c", "from blalm.faults import fault_point; fault_point('nope')"],
                         env=env, capture_output=True, text=True, cwd=REPO_ROOT)
    assert "unknown fault point 'nope'" in bad.stderr


def test_background_saver_settles_before_a_kill(tmp_path):
    """A loop's fault point lets the write in flight finish: the kill lands at a known state."""
    code = ("import torch, sys\nfrom pathlib import Path\nfrom blalm.run.checkpoint import BackgroundSaver\n"
            "from blalm.faults import fault_point\nsaver = BackgroundSaver()\n"
            "saver.save(Path(sys.argv[1]), 'c1', {'w': torch.zeros(1 << 16)}, None, {'step': 1}, {})\n"
            "fault_point('step_backward', before_kill=saver.settle)\n")
    env = {**os.environ, "BLALM_FAULT": "step_backward"}
    t0 = time.time()
    run = subprocess.run([sys.executable, "-c", code, str(tmp_path)], env=env, capture_output=True, text=True,
                         cwd=REPO_ROOT)
    assert run.returncode == -signal.SIGKILL, run.stderr
    assert ckpt.read_latest(tmp_path).name == "c1" and ckpt.verify_checkpoint(tmp_path / "c1") == []
    assert time.time() - t0 < 60
