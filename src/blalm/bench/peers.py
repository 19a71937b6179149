"""The linear-attention kernels a user would pick instead of ours, timed at the mixer bench's shape,
each in a process of its own (``blalm bench mixer --peers``).

* NX-AI ``mlstm_kernels``: ``chunkwise--triton_limit_chunk`` and ``chunkwise--triton_xl_chunk`` (the
  same mLSTM as ours: exp input gate, sigmoid forget gate, max-normaliser);
* flash-linear-attention (``fla-core``): ``chunk_simple_gla`` (gated linear attention with a scalar
  decay per head and step; no input gate, no normaliser) and ``parallel_forgetting_attn`` (softmax
  attention with a forget-gate decay, the "Forgetting Transformer").

Some of them abort Triton 3.6's compiler (an LLVM assertion kills the process), so each runs as
``python -m blalm.bench.peers NAME ...`` and a dead process becomes an ``error`` row naming its exit
status, without taking the other rows with it. A peer whose package is missing is an error row too.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from typing import Callable, Iterator

import torch
import torch.nn.functional as F

PEERS = ("nxai_triton_limit_chunk", "nxai_triton_xl_chunk", "fla_chunk_simple_gla", "fla_parallel_forgetting_attn")


def peer_function(name: str, shape) -> tuple[Callable, str]:
    """``(fn(q, k, v, i_pre, f_pre) -> h, layout)``; layout "bhsd" (ours) or "bshd" (fla's)."""
    if name.startswith("nxai_"):
        from mlstm_kernels.torch import get_mlstm_kernel

        kernel = get_mlstm_kernel("chunkwise--" + name.removeprefix("nxai_"))
        chunk = 64 if name == "nxai_triton_limit_chunk" else 128
        return (lambda q, k, v, i, f: kernel(q=q, k=k, v=v, i=i, f=f, chunk_size=chunk)), "bhsd"
    if name == "fla_chunk_simple_gla":
        from fla.ops.simple_gla import chunk_simple_gla

        return (lambda q, k, v, i, f: chunk_simple_gla(q, k, v, g=F.logsigmoid(f))[0]), "bshd"
    if name == "fla_parallel_forgetting_attn":
        from fla.ops.forgetting_attn import parallel_forgetting_attn

        return (lambda q, k, v, i, f: parallel_forgetting_attn(q, k, v, g=F.logsigmoid(f))), "bshd"
    raise ValueError(f"unknown peer {name!r}; choose from {', '.join(PEERS)}")


def time_peer(name: str, shape, warmup: int, reps: int) -> dict:
    from blalm.bench import device_fields
    from blalm.bench.mixer import make_inputs, time_fwd_bwd

    import statistics

    fn, layout = peer_function(name, shape)
    inputs = make_inputs(shape, "cuda", getattr(torch, shape.dtype))
    if layout == "bshd":   # (B, H, S, d) -> (B, S, H, d); gates (B, H, S) -> (B, S, H)
        inputs = [t.detach().transpose(1, 2).contiguous().requires_grad_() for t in inputs]
    times = time_fwd_bwd(fn, inputs, warmup, reps)
    return {"fwd_bwd_ms_median": round(statistics.median(times), 4), "fwd_bwd_ms_min": round(min(times), 4),
            **device_fields("cuda")}


def bench_peers(shape, names: list[str], warmup: int, reps: int, timeout: float = 300) -> Iterator[dict]:
    """One row per peer, each measured in a fresh process."""
    for name in names:
        row = {"bench": "mixer", "mixer": f"peer_{name}", "compiled": False, **vars(shape)}
        cmd = [sys.executable, "-m", "blalm.bench.peers", name, "--shape", json.dumps(vars(shape)),
               "--warmup", str(warmup), "--reps", str(reps)]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            yield {**row, "error": f"timed out after {timeout:.0f} s"}
            continue
        lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
        if done.returncode == 0 and lines:
            yield {**row, **json.loads(lines[-1])}
        else:
            tail = " | ".join(done.stderr.strip().splitlines()[-3:])
            yield {**row, "error": f"process exited with status {done.returncode}: {tail}"[:600]}


def main(argv: list[str] | None = None) -> int:
    from blalm.bench.mixer import MixerShape

    parser = argparse.ArgumentParser(description="time one peer mixer (used by 'blalm bench mixer --peers')")
    parser.add_argument("name", choices=PEERS)
    parser.add_argument("--shape", required=True, help="MixerShape fields as JSON")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--reps", type=int, default=20)
    args = parser.parse_args(argv)
    shape = MixerShape(**json.loads(args.shape))
    try:
        row = time_peer(args.name, shape, args.warmup, args.reps)
    except Exception as exc:   # a missing package or a refused shape: an error row, exit 0
        row = {"error": f"{type(exc).__name__}: {exc}"[:500]}
    print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
