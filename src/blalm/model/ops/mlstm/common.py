"""Pieces shared by the mLSTM kernels: the state type, the compute dtype, input checks, decays."""

from __future__ import annotations

import torch
from torch import Tensor

MLSTMState = tuple[Tensor, Tensor, Tensor]
"""``(C, n, m)``: C ``(B, H, Dk, Dv)``, n ``(B, H, Dk)``, m ``(B, H)``.

C and n are stored divided by ``exp(m)`` (the true memory is ``exp(m) * C``); m is the stabiliser.
They hold the compute dtype (float32, or float64 when an input is float64). ``m = -inf`` with
zero C and n is the empty state.
"""


def compute_dtype(*tensors: Tensor) -> torch.dtype:
    """float32, or a wider float dtype if an input has one (float64 stays float64)."""
    dtype = torch.float32
    for tensor in tensors:
        if tensor.is_floating_point():
            dtype = torch.promote_types(dtype, tensor.dtype)
    return dtype


def default_scale(scale: float | None, head_dim_qk: int) -> float:
    """The q·k scale: ``Dk ** -0.5`` unless given."""
    return head_dim_qk**-0.5 if scale is None else float(scale)


def check_sequence_inputs(q: Tensor, k: Tensor, v: Tensor, i_pre: Tensor, f_pre: Tensor) -> None:
    """Refuse shapes that do not fit q, k ``(B, H, S, Dk)``, v ``(B, H, S, Dv)``, gates ``(B, H, S)``."""
    if q.dim() != 4 or k.shape != q.shape:
        raise ValueError(f"q and k must both be (B, H, S, Dk); got {tuple(q.shape)} and {tuple(k.shape)}")
    if v.dim() != 4 or v.shape[:3] != q.shape[:3]:
        raise ValueError(f"v must be (B, H, S, Dv) matching q {tuple(q.shape)}; got {tuple(v.shape)}")
    for name, gate in (("i_pre", i_pre), ("f_pre", f_pre)):
        if gate.shape != q.shape[:3]:
            raise ValueError(f"{name} must be (B, H, S) = {tuple(q.shape[:3])}; got {tuple(gate.shape)}")
    if q.shape[2] == 0:
        raise ValueError("the sequence is empty (S = 0)")


def prepare_state(
    state: MLSTMState, batch: int, heads: int, dk: int, dv: int, dtype: torch.dtype
) -> MLSTMState:
    """Check a state's shapes and cast it to the compute dtype."""
    c, n, m = state
    expected = ((batch, heads, dk, dv), (batch, heads, dk), (batch, heads))
    for name, tensor, shape in zip(("C", "n", "m"), (c, n, m), expected, strict=True):
        if tuple(tensor.shape) != shape:
            raise ValueError(f"state {name} must have shape {shape}; got {tuple(tensor.shape)}")
    return c.to(dtype), n.to(dtype), m.to(dtype)


def segment_log_decay(log_f: Tensor) -> Tensor:
    """``out[..., i, j] = Σ_{j<t≤i} log_f[..., t]`` for j ≤ i and ``-inf`` above the diagonal.

    Summing the masked segments directly (instead of ``F_i − F_j`` of one cumulative sum) keeps
    full precision when the forget gates are small and the cumulative sums grow large.
    """
    length = log_f.shape[-1]
    ones = torch.ones(length, length, dtype=torch.bool, device=log_f.device)
    strictly_lower = torch.tril(ones, diagonal=-1)
    repeated = log_f.unsqueeze(-1).expand(*log_f.shape, length)  # [..., t, j] = log_f[t]
    sums = repeated.masked_fill(~strictly_lower, 0.0).cumsum(dim=-2)
    return sums.masked_fill(~torch.tril(ones), float("-inf"))
