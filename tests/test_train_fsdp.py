"""FSDP2 (``parallelism = "fsdp"``): 2 CPU processes (gloo) under ``torchrun`` end where one process
ends with the same seed and global batch; their checkpoints hold the full model and optimizer
state, so one process resumes from them; a DDP-only setting under FSDP is refused."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from blalm.errors import ConfigError
from blalm.model.checkpoint import load_model
from blalm.run import checkpoint as ckpt
from blalm.run.layout import MODEL_FILE, OPTIMIZER_FILE
from blalm.run.metrics import read_metrics
from blalm.train.config import load_train_config
from blalm.train.trainer import train
from test_train_helpers import (  # noqa: F401
    DEMO_TRAIN_CONFIG,
    TORCHRUN,
    run_train_subprocess,
    tiny_config,
    tiny_overrides,
    train_data,
)


# The shapes that make FSDP's work visible: DynMod's 0-D alpha (FSDP2 cannot shard it: it stays
# whole on both ranks, its gradient all-reduced by hand), an FFN width of 63 (rows split 32 / 31:
# uneven shards, padded by FSDP), 2 micro-batches per rank (no gradient sync in the first), and
# gradient clipping at a norm the steps exceed (the clip over sharded gradients acts).
SETTINGS = {"micro_batch": 2, "max_steps": 12, "model.swa": "dynmod_bounded", "model.intermediate_size": 63,
            "grad_clip": 0.5, "keep_optimizer_state": "all"}


def relative_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    """The largest ||a - b|| / ||a|| over the tensors (same names and shapes asserted)."""
    assert a.keys() == b.keys() and all(a[k].shape == b[k].shape for k in a)
    return max(float((a[k].double() - b[k].double()).norm() / a[k].double().norm().clamp(min=1e-12)) for k in a)


def run_fsdp(corpus: Path, tokenizer: Path, out: Path, settings: dict) -> str:
    """The tiny run under torchrun, 2 processes, FSDP; its stdout."""
    args = [str(DEMO_TRAIN_CONFIG), "--out", str(out)]
    for item in tiny_overrides(corpus, tokenizer, **settings, parallelism="fsdp"):
        args += ["--set", item]
    run = run_train_subprocess(args, {"OMP_NUM_THREADS": "1"}, launcher=TORCHRUN, timeout=180)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    return run.stdout


def copy_to_checkpoint(run_dir: Path, to: Path, name: str, names: list[str]) -> None:
    """A copy of ``run_dir`` as it stood when checkpoint ``name`` (of ``names``, in order) was the latest."""
    shutil.copytree(run_dir, to)
    for later in names[names.index(name) + 1:]:
        shutil.rmtree(to / "checkpoints" / later)
    ckpt.write_latest(to / "checkpoints", name)


# Not bit-equal: the gradient of a step is summed in another order (FSDP reduce-scatters the 2 ranks'
# sums of 2 micro-batches; one process adds 4): float-level differences (measured: AdamW's weights
# 1.4e-6 apart after 12 steps, losses 2.4e-7). Muon orthogonalises in bfloat16, which can round such
# differences one bfloat16 step (2^-8 relative) apart: its weights end ~1.2e-3 apart relative, as
# under DDP (1.1e-3), its optimizer state (the gradients of those weights) 5.5e-3, its losses 4e-6
# (the DDP test's Muon tolerance is 1e-4, for the same reason).
TOLERANCES = {"adamw": {"loss": 1e-5, "weights": 1e-5, "state": 1e-5},
              "muon": {"loss": 1e-4, "weights": 5e-3, "state": 2e-2}}


def assert_same_run(single: Path, other: Path, optimizer: str) -> list[str]:
    """``other`` (trained, or resumed, under FSDP) ended where ``single`` (one process) ended: the
    same records within the tolerances, the same checkpoints, each holding the full model and
    optimizer state as one process writes it. Returns the checkpoint names."""
    tol = TOLERANCES[optimizer]
    a, b = read_metrics(single, "train"), read_metrics(other, "train")
    assert [r["step"] for r in a] == [r["step"] for r in b] == list(range(1, 13))
    assert any(r["grad_norm"] > SETTINGS["grad_clip"] for r in a)         # the clipping acts
    for x, y in zip(a, b):
        assert abs(x["loss"] - y["loss"]) <= tol["loss"], (x["step"], x["loss"], y["loss"])
        assert abs(x["grad_norm"] - y["grad_norm"]) <= 1e-3 * x["grad_norm"], (x["step"], x["grad_norm"], y["grad_norm"])
        assert len(x["swa_coefficients"]) == 2
        assert max(abs(u - v) for u, v in zip(x["swa_coefficients"], y["swa_coefficients"])) <= 1e-4
    for x, y in zip(read_metrics(single, "eval"), read_metrics(other, "eval")):   # lock-step sharded validation
        assert x["checkpoint"] == y["checkpoint"] and x["val_tokens"] == y["val_tokens"]
        assert abs(x["val_loss"] - y["val_loss"]) <= tol["loss"]
    names = [c["name"] for c in ckpt.list_checkpoints(other / "checkpoints")]
    assert names == [c["name"] for c in ckpt.list_checkpoints(single / "checkpoints")] and len(names) >= 3
    last_single, last_other = single / "checkpoints" / names[-1], other / "checkpoints" / names[-1]
    assert ckpt.verify_checkpoint(last_other, (OPTIMIZER_FILE,)) == []
    assert relative_difference(load_file(last_single / MODEL_FILE), load_file(last_other / MODEL_FILE)) <= tol["weights"]
    state_single, state_other = load_file(last_single / OPTIMIZER_FILE), load_file(last_other / OPTIMIZER_FILE)
    assert any("/exp_avg_sq" in k for k in state_other)
    assert any("/momentum_buffer" in k for k in state_other) == (optimizer == "muon")
    assert relative_difference(state_single, state_other) <= tol["state"]     # same keys, full shapes
    assert load_model(last_other).config.intermediate_size == 63             # what 'blalm eval' / 'export' read
    return names


def test_fsdp_two_processes_match_one_and_resume_in_one(train_data, tmp_path):
    """AdamW (tight tolerances): a 2-process FSDP run from scratch, then one process resuming it."""
    corpus, tokenizer = train_data
    settings = {**SETTINGS, "optimizer": "adamw"}
    single, fsdp = tmp_path / "single", tmp_path / "fsdp"
    train(tiny_config(corpus, tokenizer, **settings), single, log=lambda m: None)   # 4 micro-batches a step
    assert "2 process(es), fsdp" in run_fsdp(corpus, tokenizer, fsdp, settings)
    names = assert_same_run(single, fsdp, "adamw")

    # one process resumes the 2-process FSDP run at a mid-run checkpoint (parallelism may change)
    middle, resumed = names[len(names) // 2], tmp_path / "fsdp_then_one"
    copy_to_checkpoint(fsdp, resumed, middle, names)
    summary = train(tiny_config(corpus, tokenizer, **settings), resumed, log=lambda m: None)
    assert summary["resumed_from"] == middle and summary["steps"] == 12
    assert relative_difference(load_file(single / "checkpoints" / names[-1] / MODEL_FILE),
                               load_file(resumed / "checkpoints" / names[-1] / MODEL_FILE)) <= 1e-5


def test_fsdp_muon_resumes_a_one_process_run(train_data, tmp_path):
    """Muon: 2 FSDP processes resume a one-process run at a mid-run checkpoint (each takes its
    shards of the full weights, momenta and AdamW moments) and end where it ends."""
    corpus, tokenizer = train_data
    settings = {**SETTINGS, "optimizer": "muon"}
    single = tmp_path / "single"
    train(tiny_config(corpus, tokenizer, **settings), single, log=lambda m: None)
    names = [c["name"] for c in ckpt.list_checkpoints(single / "checkpoints")]
    middle, resumed = names[len(names) // 2], tmp_path / "one_then_fsdp"
    copy_to_checkpoint(single, resumed, middle, names)
    stdout = run_fsdp(corpus, tokenizer, resumed, settings)
    assert f"resuming from {resumed / 'checkpoints' / middle}" in stdout and "2 process(es), fsdp" in stdout
    assert_same_run(single, resumed, "muon")


def test_fsdp_refuses_ddp_only_settings(train_data):
    corpus, tokenizer = train_data
    with pytest.raises(ConfigError, match=r"ddp_bucket_cap_mb = 50.0 is a DDP setting.*remove ddp_bucket_cap_mb"):
        tiny_config(corpus, tokenizer, parallelism="fsdp", ddp_bucket_cap_mb=50.0)
    with pytest.raises(ConfigError, match="parallelism"):
        tiny_config(corpus, tokenizer, parallelism="zero3")
    with pytest.raises(ConfigError, match="ddp_bucket_cap_mb must be > 0"):
        tiny_config(corpus, tokenizer, ddp_bucket_cap_mb=0.0)
    assert load_train_config(DEMO_TRAIN_CONFIG).parallelism == "ddp"


@pytest.mark.slow   # the bench under torchrun (a device concern); FSDP training itself is tested above
def test_bench_train_under_torchrun_with_fsdp(repo_root):
    """``blalm bench train`` under torchrun times FSDP steps (a row from rank 0 only)."""
    tiny = {"model.hidden_size": 32, "model.intermediate_size": 63, "model.num_layers": 2, "model.num_heads": 2,
            "model.vocab_size": 500, "model.swa": '"dynmod_bounded"', "context_length": 32, "global_batch": 8,
            "micro_batch": 2, "parallelism": '"fsdp"'}
    cmd = TORCHRUN + ["-m", "blalm.cli", "bench", "train", str(DEMO_TRAIN_CONFIG), "--steps", "2", "--warmup", "1",
                      "--device", "cpu"]
    for key, value in tiny.items():
        cmd += ["--set", f"{key}={value}"]
    run = subprocess.run(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
                         timeout=120, cwd=repo_root)
    assert run.returncode == 0, run.stderr[-3000:]
    rows = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
    assert len(rows) == 1
    assert rows[0]["world_size"] == 2 and rows[0]["parallelism"] == "fsdp" and rows[0]["tokens_per_s"] > 0
