"""DDP: the same command under ``torchrun`` with 2 CPU processes (gloo) gives the loss curve of a
single process with the same global batch."""

from __future__ import annotations

import json

import pytest

from blalm.run import checkpoint as ckpt
from blalm.run.metrics import read_metrics
from blalm.train.trainer import train
from test_train_helpers import (  # noqa: F401
    DEMO_TRAIN_CONFIG,
    TORCHRUN,
    run_train_subprocess,
    tiny_config,
    tiny_overrides,
    train_data,
)



# AdamW: float-rounding differences of the gradient sums (2 x 2 micro-batches + all-reduce vs 4
# micro-batches) stay at float level. Muon orthogonalises each update in bfloat16 (torch's
# Newton-Schulz), which can round such differences up to a bfloat16 step, so its tolerance is looser.
# (AdamW's DDP path is torch's own gradient all-reduce, which the Muon run also takes for its AdamW
# parameters: slow-marked to keep the default suite short; make test-all runs it)
@pytest.mark.parametrize("optimizer, tolerance", [pytest.param("adamw", 1e-5, marks=pytest.mark.slow), ("muon", 1e-4)])
def test_two_process_ddp_matches_single_process(train_data, tmp_path, optimizer, tolerance):
    corpus, tokenizer = train_data
    # 1 KiB gradient buckets: one a parameter or so (ignored in one process), views of the
    # gradients (gradient_as_bucket_view), all-reduced as the backward goes
    settings = {"micro_batch": 2, "max_steps": 12, "optimizer": optimizer, "ddp_bucket_cap_mb": 0.001}
    single = tmp_path / "single"
    train(tiny_config(corpus, tokenizer, **settings), single, log=lambda m: None)   # 4 micro-batches a step

    ddp = tmp_path / "ddp"
    args = [str(DEMO_TRAIN_CONFIG), "--out", str(ddp)]
    for item in tiny_overrides(corpus, tokenizer, **settings):
        args += ["--set", item]
    run = run_train_subprocess(args, {"OMP_NUM_THREADS": "1"}, launcher=TORCHRUN, timeout=180)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    assert run.stdout.count("final training loss") == 1                     # only rank 0 prints

    setup = read_metrics(ddp, "setup")[0]
    assert setup["world_size"] == 2 and setup["accumulation"] == 2 and setup["tokens_per_step"] == 8 * 32
    assert read_metrics(single, "setup")[0]["accumulation"] == 4
    a = read_metrics(single, "train")
    b = read_metrics(ddp, "train")
    assert [r["step"] for r in a] == [r["step"] for r in b] == list(range(1, 13))   # one writer: no doubled lines
    for x, y in zip(a, b):
        assert abs(x["loss"] - y["loss"]) <= tolerance, (x["step"], x["loss"], y["loss"])
        assert x["words_seen"] == y["words_seen"] and x["lr"] == y["lr"]
    va, vb = read_metrics(single, "eval"), read_metrics(ddp, "eval")
    assert [e["checkpoint"] for e in va] == [e["checkpoint"] for e in vb]
    for x, y in zip(va, vb):      # validation is sharded over the 2 ranks and summed
        assert x["val_tokens"] == y["val_tokens"] and abs(x["val_loss"] - y["val_loss"]) <= tolerance
    assert [c["name"] for c in ckpt.list_checkpoints(ddp / "checkpoints")] == \
        [c["name"] for c in ckpt.list_checkpoints(single / "checkpoints")]
    assert json.loads((ddp / "run_info.json").read_text())["world_size"] == 2
