"""Per-kernel CUDA time of the Triton mLSTM kernels for tile-set candidates (torch profiler), one
kernel's tiles changed at a time; how the tiles in ``triton_parallel.TILES`` were chosen (session 2,
H100, rows in ../mixer_tiles_h100.jsonl with "us").  Run from the repository root on a GPU:

    PYTHONPATH=src python docs/results/scripts/mixer_kernel_times.py > kernel_times.jsonl
"""
import json

import torch
from torch.profiler import ProfilerActivity, profile

from blalm.bench.mixer import MixerShape, make_inputs
from blalm.model.ops.mlstm import triton_parallel as tp

shape = MixerShape()
q, k, v, i, f = make_inputs(shape, "cuda", torch.bfloat16)
grad = torch.randn_like(q)
base = dict(tp.TILES)
names = {"fwd": "_fwd_kernel", "dq": "_bwd_dq_kernel", "dkv": "_bwd_dkv_kernel"}
cands = [(64, 64, 4, 2), (64, 64, 4, 1), (64, 64, 4, 3), (64, 64, 8, 2), (64, 32, 4, 2), (64, 32, 4, 1),
         (64, 32, 4, 3), (32, 64, 4, 2), (32, 64, 4, 1), (32, 64, 4, 3), (32, 32, 4, 2), (32, 32, 2, 2),
         (16, 64, 4, 2), (64, 16, 4, 2), (32, 64, 8, 2), (64, 32, 8, 2)]
for kern in ("fwd", "dq", "dkv"):
    for c in cands:
        tp.TILES.update(base)
        tp.TILES[kern] = c
        for _ in range(3):
            tp.mlstm_parallel_triton(q, k, v, i, f).backward(grad)
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            for _ in range(10):
                tp.mlstm_parallel_triton(q, k, v, i, f).backward(grad)
            torch.cuda.synchronize()
        us = sum(e.device_time_total for e in prof.key_averages() if e.key == names[kern]) / 10
        print(json.dumps({"kernel": kern, "tiles": c, "us": round(us, 1)}), flush=True)
