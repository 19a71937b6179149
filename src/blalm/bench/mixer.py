"""``blalm bench mixer``: forward + backward time of each token mixer at one shape.

Times the registered mLSTM kernels beside flash attention (SDPA, causal) and our
sliding-window attention at the same (B, H, S, d), and, with ``check``, holds every mLSTM
kernel's output and gradients to the float64 parallel reference on the same inputs.
Prints one JSON line per mixer.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Callable, Iterator

import torch
import torch.nn.functional as F

from blalm.model.layers import sliding_window_attention
from blalm.model.ops.mlstm import get_mlstm_kernel, mlstm_parallel
from blalm.bench import device_fields


@dataclass
class MixerShape:
    batch: int = 32
    heads: int = 16
    seq: int = 512
    head_dim: int = 64
    dtype: str = "bfloat16"
    window: int = 128


def make_inputs(shape: MixerShape, device: str, dtype: torch.dtype, seed: int = 0) -> list[torch.Tensor]:
    gen = torch.Generator(device="cpu").manual_seed(seed)
    b, h, s, d = shape.batch, shape.heads, shape.seq, shape.head_dim
    q, k, v = (torch.randn(b, h, s, d, generator=gen) for _ in range(3))
    i_pre = torch.randn(b, h, s, generator=gen) - 3.0
    f_pre = torch.randn(b, h, s, generator=gen) + 4.0
    return [t.to(device=device, dtype=dtype if t.dim() == 4 else torch.float32).requires_grad_()
            for t in (q, k, v, i_pre, f_pre)]


def mixers(shape: MixerShape, kernels: list[str]) -> dict[str, Callable]:
    out: dict[str, Callable] = {
        "sdpa_causal": lambda q, k, v, i, f: F.scaled_dot_product_attention(q, k, v, is_causal=True),
        f"swa_w{shape.window}": lambda q, k, v, i, f: sliding_window_attention(q, k, v, shape.window),
    }
    for name in kernels:
        out[f"mlstm_{name}"] = (lambda fn: lambda q, k, v, i, f: fn(q, k, v, i, f))(get_mlstm_kernel(name))
    return out


def _times(run: Callable[[], object], cuda: bool, warmup: int, reps: int) -> list[float]:
    times = []
    for step in range(warmup + reps):
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        run()
        if cuda:
            torch.cuda.synchronize()
        if step >= warmup:
            times.append((time.perf_counter() - start) * 1e3)
    return times


def time_fwd_bwd(fn: Callable, inputs: list[torch.Tensor], warmup: int, reps: int) -> list[float]:
    grad = torch.randn_like(fn(*inputs))

    def step() -> None:
        for t in inputs:
            t.grad = None
        fn(*inputs).backward(grad)

    return _times(step, inputs[0].is_cuda, warmup, reps)


def time_fwd(fn: Callable, inputs: list[torch.Tensor], warmup: int, reps: int) -> list[float]:
    with torch.no_grad():
        return _times(lambda: fn(*inputs), inputs[0].is_cuda, warmup, reps)


def max_errors(fn: Callable, shape: MixerShape, device: str) -> dict[str, float]:
    """Output and gradient errors of ``fn`` against the float64 parallel reference (relative to max)."""
    small = MixerShape(batch=2, heads=shape.heads, seq=shape.seq, head_dim=shape.head_dim)
    ref_in = make_inputs(small, "cpu", torch.float64)
    test_in = [t.detach().to(device=device, dtype=torch.float32).requires_grad_() for t in ref_in]
    ref_out, out = mlstm_parallel(*ref_in), fn(*test_in)
    grad = torch.randn_like(ref_out)
    ref_out.backward(grad)
    out.backward(grad.to(device=device, dtype=out.dtype))
    errs = {"out": _rel(out, ref_out)}
    for name, a, b in zip(("q", "k", "v", "i", "f"), test_in, ref_in):
        errs[f"grad_{name}"] = _rel(a.grad, b.grad)
    return errs


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().double().cpu(), b.detach().double().cpu()
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


def bench_mixers(shape: MixerShape, kernels: list[str], device: str, warmup: int = 5, reps: int = 20,
                 check: bool = False, compile: bool = False) -> Iterator[dict]:
    """One row per mixer; with ``compile`` every mixer runs under ``torch.compile`` (as in a
    compiled training step, where the O(S) gate work around the Triton kernel is fused)."""
    dtype = getattr(torch, shape.dtype)
    inputs = make_inputs(shape, device, dtype)
    for name, fn in mixers(shape, kernels).items():
        row = {"bench": "mixer", "mixer": name, "compiled": compile, **vars(shape)}
        if compile:
            torch._dynamo.reset()
            fn = torch.compile(fn)
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        try:
            times = time_fwd_bwd(fn, inputs, warmup, reps)
        except Exception as exc:  # a backend that fails here is reported, not fatal to the others
            yield {**row, "error": f"{type(exc).__name__}: {exc}"[:500], **device_fields(device)}
            continue
        row.update(fwd_bwd_ms_median=round(statistics.median(times), 4), fwd_bwd_ms_min=round(min(times), 4),
                   **device_fields(device))   # peak memory of the timed runs, before the check
        if check and name.startswith("mlstm_"):
            row["max_rel_err_vs_float64_reference"] = max_errors(fn, shape, device)
        yield row


def parse_tiles(spec: str) -> list[tuple[int, int, int, int]]:
    """``"64,64,4,2;64,32,4,3"`` -> candidate (BLOCK_M, BLOCK_N, warps, stages) tuples."""
    out = []
    for part in filter(None, spec.split(";")):
        values = tuple(int(v) for v in part.split(","))
        if len(values) != 4:
            raise ValueError(f"--tiles {part!r}: give BLOCK_M,BLOCK_N,WARPS,STAGES (e.g. 64,64,4,2)")
        out.append(values)
    return out


def tune_tiles(shape: MixerShape, candidates: list[tuple[int, int, int, int]], device: str,
               warmup: int = 5, reps: int = 20) -> Iterator[dict]:
    """Times the ``triton`` kernel's forward alone and forward + backward with each candidate tile
    set applied to all three kernels (pick the forward's from ``fwd_ms`` and the backward's from
    the difference)."""
    from blalm.model.ops.mlstm import triton_parallel

    inputs = make_inputs(shape, device, getattr(torch, shape.dtype))
    kernel = get_mlstm_kernel("triton")
    saved = dict(triton_parallel.TILES)
    try:
        for tiles in candidates:
            triton_parallel.TILES.update(fwd=tiles, dq=tiles, dkv=tiles)
            row = {"bench": "mixer_tiles", "tiles": list(tiles), **vars(shape)}
            try:
                both = time_fwd_bwd(kernel, inputs, warmup, reps)
                fwd = time_fwd(kernel, inputs, warmup, reps)
            except Exception as exc:   # a tile set the compiler refuses (shared memory) is reported
                yield {**row, "error": f"{type(exc).__name__}: {exc}"[:300]}
                continue
            yield {**row, "fwd_ms": round(statistics.median(fwd), 4),
                   "fwd_bwd_ms": round(statistics.median(both), 4)}
    finally:
        triton_parallel.TILES.update(saved)

