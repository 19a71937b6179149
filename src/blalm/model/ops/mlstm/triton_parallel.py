"""``triton``: the mLSTM parallel form as a tiled GPU kernel (forward and backward), like flash attention.

The guide (§2) notes that the stabiliser is a prefix maximum computable before the kernel:
with ``F_t = Σ_{s≤t} log f_s``, ``m_i = F_i + max_{j≤i}(ĩ_j − F_j)``. One O(S) ``cummax`` in
PyTorch gives every row's stabiliser, and the kernel tiles the ``(S, S)`` score matrix exactly as
flash attention does, with no online rescaling:

    c_ij = scale·(q_i·k_j)·exp(D_ij − m_i),   D_ij = F_i − F_j + ĩ_j   (j ≤ i)
    h_i  = Σ_j c_ij v_j / (max(|Σ_j c_ij|, exp(−m_i)) + eps)

``F`` grows like S·|log f| and ``F_i − F_j`` would cancel catastrophically in float32, so the
gate tables are built in float64 and the exponent is formed from terms of the size of one
64-step segment's decay (see ``_GateTables``). With the model's gate soft cap (|pre-activation|
≤ 15) float32 results stay within ~2e-4 of the float64 reference (relative to the largest value).

The backward recomputes the tiles: one kernel per query block gives dq and the row sums of
``dD_ij = dc_ij·c_ij``, one per key block gives dk, dv and the column sums; the gate gradients
(through ``D_ij = F_i − F_j + ĩ_j`` and through the stabiliser ``m``, which the eps term makes
matter slightly) are O(S) PyTorch around the kernels. The result is the exact gradient of the
reference, not the "normaliser treated as constant" shortcut some kernels take.

Training-only: no initial or last state (decoding and prefill use the chunkwise and step forms).
Head dims must be powers of two ≥ 16. What it cannot run is refused (ValueError), and declared in
its registry entry (blalm.model.ops.mlstm.backends), so the model refuses it at build time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
import triton
import triton.language as tl
from torch import Tensor

from blalm.model.ops.mlstm.common import check_sequence_inputs, default_scale


@triton.jit
def _fwd_kernel(Q, K, V, Aq, Bk, Dlt, NSEG, Mneg, Hout, Nout, S, scale, eps,
                DK: tl.constexpr, DV: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                PREC: tl.constexpr, SEG: tl.constexpr):
    pid_m = tl.program_id(0)
    bh = tl.program_id(1).to(tl.int64)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_dk = tl.arange(0, DK)
    offs_dv = tl.arange(0, DV)
    row_ok = offs_m < S
    q = tl.load(Q + bh * S * DK + offs_m[:, None] * DK + offs_dk[None, :], mask=row_ok[:, None], other=0.0)
    aq = tl.load(Aq + bh * S + offs_m, mask=row_ok, other=0.0)
    acc = tl.zeros((BLOCK_M, DV), dtype=tl.float32)
    nsum = tl.zeros((BLOCK_M,), dtype=tl.float32)
    hi = tl.minimum((pid_m + 1) * BLOCK_M, S)
    for start_n in range(0, hi, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        col_ok = offs_n < S
        k = tl.load(K + bh * S * DK + offs_n[:, None] * DK + offs_dk[None, :], mask=col_ok[:, None], other=0.0)
        v = tl.load(V + bh * S * DV + offs_n[:, None] * DV + offs_dv[None, :], mask=col_ok[:, None], other=0.0)
        bk = tl.load(Bk + bh * S + offs_n, mask=col_ok, other=0.0)
        delta = tl.load(Dlt + (bh * NSEG + (pid_m * BLOCK_M) // SEG) * NSEG + start_n // SEG)
        s = (tl.dot(q, tl.trans(k), input_precision=PREC) * scale).to(tl.float32)
        causal = (offs_n[None, :] <= offs_m[:, None]) & col_ok[None, :]
        w = tl.where(causal, tl.exp2(aq[:, None] + bk[None, :] + delta), 0.0)
        c = s * w
        acc += tl.dot(c.to(v.dtype), v, input_precision=PREC)
        nsum += tl.sum(c, axis=1)
    mneg = tl.load(Mneg + bh * S + offs_m, mask=row_ok, other=0.0)  # exp(-m_i)
    den = tl.maximum(tl.abs(nsum), mneg) + eps
    h = acc / den[:, None]
    tl.store(Hout + bh * S * DV + offs_m[:, None] * DV + offs_dv[None, :], h.to(Hout.dtype.element_ty),
             mask=row_ok[:, None])
    tl.store(Nout + bh * S + offs_m, nsum, mask=row_ok)


@triton.jit
def _bwd_dq_kernel(Q, K, V, Aq, Bk, Dlt, NSEG, DAcc, DN, DQ, Rsum, S, scale,
                   DK: tl.constexpr, DV: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                PREC: tl.constexpr, SEG: tl.constexpr):
    pid_m = tl.program_id(0)
    bh = tl.program_id(1).to(tl.int64)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_dk = tl.arange(0, DK)
    offs_dv = tl.arange(0, DV)
    row_ok = offs_m < S
    q = tl.load(Q + bh * S * DK + offs_m[:, None] * DK + offs_dk[None, :], mask=row_ok[:, None], other=0.0)
    dacc = tl.load(DAcc + bh * S * DV + offs_m[:, None] * DV + offs_dv[None, :], mask=row_ok[:, None], other=0.0)
    dn = tl.load(DN + bh * S + offs_m, mask=row_ok, other=0.0)
    aq = tl.load(Aq + bh * S + offs_m, mask=row_ok, other=0.0)
    dq = tl.zeros((BLOCK_M, DK), dtype=tl.float32)
    rsum = tl.zeros((BLOCK_M,), dtype=tl.float32)
    hi = tl.minimum((pid_m + 1) * BLOCK_M, S)
    for start_n in range(0, hi, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        col_ok = offs_n < S
        k = tl.load(K + bh * S * DK + offs_n[:, None] * DK + offs_dk[None, :], mask=col_ok[:, None], other=0.0)
        v = tl.load(V + bh * S * DV + offs_n[:, None] * DV + offs_dv[None, :], mask=col_ok[:, None], other=0.0)
        bk = tl.load(Bk + bh * S + offs_n, mask=col_ok, other=0.0)
        delta = tl.load(Dlt + (bh * NSEG + (pid_m * BLOCK_M) // SEG) * NSEG + start_n // SEG)
        s = (tl.dot(q, tl.trans(k), input_precision=PREC) * scale).to(tl.float32)
        causal = (offs_n[None, :] <= offs_m[:, None]) & col_ok[None, :]
        w = tl.where(causal, tl.exp2(aq[:, None] + bk[None, :] + delta), 0.0)
        dc = tl.dot(dacc.to(v.dtype), tl.trans(v), input_precision=PREC) + dn[:, None]
        ds = dc * w
        dq += tl.dot(ds.to(k.dtype), k, input_precision=PREC)
        rsum += tl.sum(ds * s, axis=1)
    tl.store(DQ + bh * S * DK + offs_m[:, None] * DK + offs_dk[None, :], (dq * scale).to(DQ.dtype.element_ty),
             mask=row_ok[:, None])
    tl.store(Rsum + bh * S + offs_m, rsum, mask=row_ok)


@triton.jit
def _bwd_dkv_kernel(Q, K, V, Aq, Bk, Dlt, NSEG, DAcc, DN, DK_, DV_, Csum, S, scale,
                    DK: tl.constexpr, DV: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                PREC: tl.constexpr, SEG: tl.constexpr):
    pid_n = tl.program_id(0)
    bh = tl.program_id(1).to(tl.int64)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_dk = tl.arange(0, DK)
    offs_dv = tl.arange(0, DV)
    col_ok = offs_n < S
    k = tl.load(K + bh * S * DK + offs_n[:, None] * DK + offs_dk[None, :], mask=col_ok[:, None], other=0.0)
    v = tl.load(V + bh * S * DV + offs_n[:, None] * DV + offs_dv[None, :], mask=col_ok[:, None], other=0.0)
    bk = tl.load(Bk + bh * S + offs_n, mask=col_ok, other=0.0)
    dk = tl.zeros((BLOCK_N, DK), dtype=tl.float32)
    dv = tl.zeros((BLOCK_N, DV), dtype=tl.float32)
    csum = tl.zeros((BLOCK_N,), dtype=tl.float32)
    lo = (pid_n * BLOCK_N) // BLOCK_M * BLOCK_M
    for start_m in range(lo, S, BLOCK_M):
        offs_m = start_m + tl.arange(0, BLOCK_M)
        row_ok = offs_m < S
        q = tl.load(Q + bh * S * DK + offs_m[:, None] * DK + offs_dk[None, :], mask=row_ok[:, None], other=0.0)
        dacc = tl.load(DAcc + bh * S * DV + offs_m[:, None] * DV + offs_dv[None, :], mask=row_ok[:, None],
                       other=0.0)
        dn = tl.load(DN + bh * S + offs_m, mask=row_ok, other=0.0)
        aq = tl.load(Aq + bh * S + offs_m, mask=row_ok, other=0.0)
        delta = tl.load(Dlt + (bh * NSEG + start_m // SEG) * NSEG + (pid_n * BLOCK_N) // SEG)
        s = (tl.dot(q, tl.trans(k), input_precision=PREC) * scale).to(tl.float32)
        causal = (offs_n[None, :] <= offs_m[:, None]) & row_ok[:, None] & col_ok[None, :]
        w = tl.where(causal, tl.exp2(aq[:, None] + bk[None, :] + delta), 0.0)
        c = s * w
        dc = tl.dot(dacc.to(v.dtype), tl.trans(v), input_precision=PREC) + dn[:, None]
        dv += tl.dot(tl.trans(c).to(v.dtype), dacc.to(v.dtype), input_precision=PREC)
        ds = dc * w
        dk += tl.dot(tl.trans(ds).to(q.dtype), q, input_precision=PREC)
        csum += tl.sum(ds * s, axis=0)
    tl.store(DK_ + bh * S * DK + offs_n[:, None] * DK + offs_dk[None, :], (dk * scale).to(DK_.dtype.element_ty),
             mask=col_ok[:, None])
    tl.store(DV_ + bh * S * DV + offs_n[:, None] * DV + offs_dv[None, :], dv.to(DV_.dtype.element_ty),
             mask=col_ok[:, None])
    tl.store(Csum + bh * S + offs_n, csum, mask=col_ok)


SEGMENT = 64
"""Forget-gate sums are kept per segment of this many steps (tiles never straddle a segment)."""


@dataclass
class _GateTables:
    """The O(S) gate quantities the kernels read, computed in float64 and handed over in float32.

    With ``F_t = Σ_{s≤t} log f_s`` split as ``F_t = G_{seg(t)} + L_t`` (``L`` the sum within the
    64-step segment, ``G`` the sum before it), a tile's exponent is
    ``D_ij − m_i = a_i + b_j + Δ_IJ`` with ``a_i = L_i − m_i``, ``b_j = ĩ_j − L_j`` and
    ``Δ_IJ = G_I − G_J`` one number per pair of segments. Unlike ``F`` itself, which grows like
    S·|log f| under strong forgetting, these terms stay of the size of one segment's decay, so
    float32 loses little to cancellation.
    """

    row: Tensor        # a_i = L_i − m_i, (B, H, S), times log2(e) like col and delta
    col: Tensor        # b_j = ĩ_j − L_j, (B, H, S)
    delta: Tensor      # Δ_IJ = G_I − G_J, (B, H, nseg, nseg)
    mneg: Tensor       # exp(−m_t), (B, H, S)
    argmax: Tensor     # the j that attains m_t (its gradient goes there), (B, H, S)

    def kernel_args(self) -> tuple:
        return self.row, self.col, self.delta, self.delta.shape[-1]


def _gate_tables(i_pre: Tensor, f_pre: Tensor) -> _GateTables:
    length = i_pre.shape[-1]
    igate = i_pre.double()
    log_f = F.logsigmoid(f_pre.double())
    cum = log_f.cumsum(-1)
    starts = (cum - log_f)[..., ::SEGMENT]                       # G: F just before each segment
    local = cum - starts.repeat_interleave(SEGMENT, dim=-1)[..., :length]
    delta = starts.unsqueeze(-1) - starts.unsqueeze(-2)
    mx, argmax = torch.cummax(igate - cum, dim=-1)
    m = cum + mx
    f32 = lambda t: t.float().contiguous()  # noqa: E731
    log2e = 1.0 / math.log(2.0)   # the kernels take exp2 (one multiply fewer per score): tables in log2 units
    return _GateTables(f32((local - m) * log2e), f32((igate - local) * log2e), f32(delta * log2e),
                       f32(torch.exp(-m)), argmax)


def _precision(q: Tensor) -> str:
    """fp32 inputs get exact fp32 products unless TF32 is allowed (torch.backends.cuda.matmul.allow_tf32);
    bf16/fp16 inputs use the tensor cores as they are."""
    exact = q.dtype == torch.float32 and not torch.backends.cuda.matmul.allow_tf32
    return "ieee" if exact else "tf32"


TILES: dict[str, tuple[int, int, int, int]] = {"fwd": (64, 32, 4, 3), "dq": (64, 32, 4, 3), "dkv": (64, 64, 4, 1)}
"""(BLOCK_M, BLOCK_N, warps, stages) per kernel for head dims ≤ 64 (wider heads cap BLOCK_N at 32).
Blocks divide ``SEGMENT``. Chosen on the H100 at B32 H16 S512 d64 from each kernel's CUDA time
(docs/results/performance.md): 99, 138 and 263 µs against 111, 170 and 295 µs with 64/64/4/2 for all;
``blalm bench mixer --tiles`` times other sets."""


def _blocks(kernel: str, dk: int, dv: int) -> tuple[int, int, int, int]:
    bm, bn, warps, stages = TILES[kernel]
    return (bm, bn, warps, stages) if max(dk, dv) <= 64 else (bm, min(bn, 32), warps, stages)


class _MLSTMParallelTriton(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, i_pre, f_pre, scale, eps):
        batch, heads, length, dk = q.shape
        dv = v.shape[-1]
        q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
        gates = _gate_tables(i_pre, f_pre)
        h = torch.empty(batch, heads, length, dv, device=q.device, dtype=v.dtype)
        nsum = torch.empty(batch, heads, length, device=q.device, dtype=torch.float32)
        bm, bn, warps, stages = _blocks("fwd", dk, dv)
        grid = (triton.cdiv(length, bm), batch * heads)
        _fwd_kernel[grid](q, k, v, *gates.kernel_args(), gates.mneg, h, nsum, length, scale, eps,
                          DK=dk, DV=dv, BLOCK_M=bm, BLOCK_N=bn, PREC=_precision(q), SEG=SEGMENT,
                          num_warps=warps, num_stages=stages)
        ctx.save_for_backward(q, k, v, h, nsum, gates.row, gates.col, gates.delta, gates.argmax, gates.mneg, f_pre)
        ctx.scale, ctx.eps, ctx.i_dtype = scale, eps, i_pre.dtype
        return h

    @staticmethod
    def backward(ctx, dh):
        q, k, v, h, nsum, row, col, delta, argmax, mneg, f_pre = ctx.saved_tensors
        gate_args = (row, col, delta, delta.shape[-1])
        scale, eps = ctx.scale, ctx.eps
        batch, heads, length, dk = q.shape
        dv_dim = v.shape[-1]
        dh = dh.float()
        exp_branch = mneg >= nsum.abs()
        den = torch.where(exp_branch, mneg, nsum.abs()) + eps
        dh_dot_h = (dh * h.float()).sum(-1)
        dacc = (dh / den.unsqueeze(-1)).contiguous()
        dden = -dh_dot_h / den
        dn = torch.where(exp_branch, torch.zeros_like(dden), dden * torch.sign(nsum)).contiguous()
        dq, dk_, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
        rsum = torch.empty_like(nsum)
        csum = torch.empty_like(nsum)
        bm, bn, warps, stages = _blocks("dq", dk, dv_dim)
        _bwd_dq_kernel[(triton.cdiv(length, bm), batch * heads)](
            q, k, v, *gate_args, dacc, dn, dq, rsum, length, scale,
            DK=dk, DV=dv_dim, BLOCK_M=bm, BLOCK_N=bn, PREC=_precision(q), SEG=SEGMENT, num_warps=warps,
            num_stages=stages)
        bm, bn, warps, stages = _blocks("dkv", dk, dv_dim)
        _bwd_dkv_kernel[(triton.cdiv(length, bn), batch * heads)](
            q, k, v, *gate_args, dacc, dn, dk_, dv, csum, length, scale,
            DK=dk, DV=dv_dim, BLOCK_M=bm, BLOCK_N=bn, PREC=_precision(q), SEG=SEGMENT, num_warps=warps,
            num_stages=stages)
        # D_ij = F_i - F_j + ĩ_j: rsum flows to F_i, csum to ĩ_j and (negated) to F_j. The stabiliser
        # m_i = F_i + max_{j<=i} (ĩ_j - F_j) enters through the weights exp(D - m) (acc and
        # the normaliser scale by exp(-m); dacc·acc = dh·h) and through exp(-m) in the denominator
        dm = -dh_dot_h - dn * nsum - torch.where(exp_branch, dden * mneg, torch.zeros_like(dden))
        dm = dm.double()
        db = csum.double() + torch.zeros_like(dm).scatter_add_(-1, argmax, dm)  # d(ĩ_j - F_j)
        dcum = rsum.double() + dm - db
        dlog_f = dcum.flip(-1).cumsum(-1).flip(-1)
        df_pre = dlog_f * torch.sigmoid(-f_pre.double())
        return dq, dk_, dv, db.to(ctx.i_dtype), df_pre.to(f_pre.dtype), None, None


def mlstm_parallel_triton(q: Tensor, k: Tensor, v: Tensor, i_pre: Tensor, f_pre: Tensor, *,
                          initial_state=None, return_last_state: bool = False, eps: float = 1e-6,
                          scale: float | None = None):
    """The registry's ``triton`` kernel (same signature as the other forms; CUDA tensors, no states).
    What it cannot run (see its registry entry) is a ValueError, never a silent other kernel."""
    check_sequence_inputs(q, k, v, i_pre, f_pre)
    dk, dv = q.shape[-1], v.shape[-1]
    if initial_state is not None or return_last_state:
        raise ValueError("the triton mLSTM kernel takes no initial state and returns none (training only); "
                         "prefill a decoding cache with the chunkwise kernel")
    if not q.is_cuda or q.dtype == torch.float64:
        raise ValueError(f"the triton mLSTM kernel runs float32/bf16/fp16 CUDA tensors; got {q.dtype} on {q.device}")
    if not all(d >= 16 and d & (d - 1) == 0 for d in (dk, dv)):
        raise ValueError(f"the triton mLSTM kernel needs head sizes that are powers of two >= 16; got {dk}/{dv}")
    return _MLSTMParallelTriton.apply(q, k, v, i_pre, f_pre, default_scale(scale, dk), eps)
