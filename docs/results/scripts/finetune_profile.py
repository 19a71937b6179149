"""Where does a GLUE fine-tuning step of our recipe model go? (issue 16; docs/results/glue_h100.md)

Compiled, a MultiRC step of the 34M model runs at ~15 steps/s on an H200 (~66 ms) although its
forward and backward are ~1.3 TFLOP (a few ms): the step is bound by something other than the
GPU's arithmetic. This script times the step as ``blalm finetune`` takes it (batch 16,
MultiRC-like lengths up to 512 tokens, bf16, AdamW, gradient clipping) on a random-init model of
``configs/train/strict_small_best.toml`` and profiles a window of steps with torch.profiler: the
wall per step against the GPU's busy time per step (kernels summed), the kernel launches per step,
and the top operators by host and by device time. Modes (run each in its own process: a crash
takes one mode only): ``eager``; ``regional`` (each block compiled, dynamic shapes: what
``blalm finetune --compile`` runs); ``whole`` (the whole forward in one static graph, every batch
padded to 512 tokens, MultiRC's width anyway); ``whole-graphs`` (the same as CUDA graphs,
``reduce-overhead``: does the SIGSEGV of session 16 come from dynamic shapes?). One JSON line per
mode on stdout; the tables go to ``$OUT/finetune_profile_<mode>.txt``. On a CUDA machine from the
repository root:

    for m in eager regional whole whole-graphs; do python docs/results/scripts/finetune_profile.py $m; done
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, "src")
from blalm.finetune.head import SequenceClassifier, last_token_states, pad_batch, width_multiple  # noqa: E402
from blalm.finetune.run import to_device  # noqa: E402
from blalm.model.compile import compile_backbone  # noqa: E402
from blalm.model.decoder import build_model  # noqa: E402
from blalm.run.device import precision_context  # noqa: E402
from blalm.train.config import load_train_config  # noqa: E402

def whole_forward(clf: SequenceClassifier, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The classifier's logits written out (embedding, blocks, final norm, last real token, head):
    what the norm hook of ``final_hidden_states`` does, in a form one graph can hold."""
    model = clf.backbone
    x = model.embed_dropout(model.embed_tokens(ids))
    rope = model.rotary(ids.shape[1], 0, device=ids.device)
    for layer in model.layers:
        x = layer(x, rope)
    return clf.head(clf.dropout(last_token_states(model.norm(x), mask)).float())


BATCH, WARM, PROFILED = (16, 30, 20) if not os.environ.get("SMOKE") else (2, 2, 2)


def main(mode: str) -> None:
    cuda = torch.cuda.is_available()      # the CPU only checks that the script runs (SMOKE=1: 2 + 2 steps)
    dev = torch.device("cuda" if cuda else "cpu")
    cfg = load_train_config(Path("configs/train/strict_small_best.toml"),
                            [f'model.mlstm_kernel="{"triton" if cuda else "chunkwise"}"'])
    rng = random.Random(0)
    lengths = [[min(512, max(64, int(rng.lognormvariate(5.7, 0.35)))) for _ in range(BATCH)]
               for _ in range(WARM + PROFILED)]
    batches = [[[rng.randrange(3, cfg.model.vocab_size) for _ in range(n)] for n in row] for row in lengths]
    labels = [torch.tensor([rng.randrange(2) for _ in range(BATCH)]) for _ in batches]
    torch.manual_seed(0)
    clf = SequenceClassifier(build_model(cfg.model, device=dev), 2, 0.1).to(dev)
    multiple, forward = 1, clf
    if mode == "regional":                       # what `blalm finetune --compile` runs
        compile_backbone(clf.backbone)
        multiple = width_multiple(clf.backbone)
    elif mode in ("whole", "whole-graphs"):      # one static graph: every batch padded to 512 (MultiRC's width)
        multiple = 512
        forward = torch.compile(lambda ids, mask: whole_forward(clf, ids, mask), dynamic=False,
                                mode="reduce-overhead" if mode == "whole-graphs" else "default")
    elif mode != "eager":
        raise SystemExit(f"unknown mode {mode!r}: eager, regional, whole, whole-graphs")
    params = [p for p in clf.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=3e-5, fused=True)

    def step(i: int) -> None:
        ids, mask = pad_batch(batches[i], 0, multiple)
        if mode == "whole-graphs":
            torch.compiler.cudagraph_mark_step_begin()
        with precision_context(dev, "bf16"):
            loss = F.cross_entropy(forward(to_device(ids, dev), to_device(mask, dev)).float(), to_device(labels[i], dev))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    t0 = time.time()
    for i in range(WARM):
        step(i)
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    sync()
    warm_s = time.time() - t0
    t0 = time.time()
    for i in range(WARM, WARM + PROFILED):      # the same steps unprofiled first: the clean wall figure
        step(i)
    sync()
    wall = (time.time() - t0) / PROFILED
    with profile(activities=[ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])) as prof:
        for i in range(WARM, WARM + PROFILED):
            step(i)
        sync()
    events = prof.key_averages()
    device_us = sum(e.self_device_time_total for e in events if e.device_type == torch.autograd.DeviceType.CUDA)
    launches = sum(e.count for e in events if e.key in ("cudaLaunchKernel", "cuLaunchKernel", "cudaLaunchKernelExC"))
    out = Path(os.environ.get("OUT", "out")) / f"finetune_profile_{mode}.txt"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("by host time\n" + events.table(sort_by="self_cpu_time_total", row_limit=25)
                   + "\nby device time\n" + events.table(sort_by="self_device_time_total", row_limit=25))
    print(json.dumps({"mode": mode, "warm_steps_s": round(warm_s, 1), "ms_per_step": round(1e3 * wall, 2),
                      "steps_per_s": round(1 / wall, 2), "gpu_busy_ms_per_step": round(device_us / 1e3 / PROFILED, 2),
                      "kernel_launches_per_step": launches // PROFILED,
                      "mean_width": sum(map(max, lengths[WARM:])) / PROFILED, "device": torch.cuda.get_device_name() if cuda else "cpu",
                      "torch": torch.__version__}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "eager")
