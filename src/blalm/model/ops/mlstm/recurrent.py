"""mLSTM in its recurrent form: one token at a time (decoding), and a loop of steps as a reference.

The stabilised step, with the state stored divided by ``exp(m)`` (see ``parallel.py``)::

    m_t = max(log f_t + m_{t-1}, ĩ_t)
    C_t = exp(log f_t + m_{t-1} − m_t) C_{t-1} + exp(ĩ_t − m_t) k_t v_tᵀ      (n_t likewise)
    h_t = C_tᵀ q_t / (max(|n_t·q_t|, exp(−m_t)) + eps)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from blalm.model.ops.mlstm.common import (
    MLSTMState,
    check_sequence_inputs,
    compute_dtype,
    default_scale,
    prepare_state,
)


def mlstm_step(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    i_pre: Tensor,
    f_pre: Tensor,
    state: MLSTMState | None,
    *,
    eps: float = 1e-6,
    scale: float | None = None,
) -> tuple[Tensor, MLSTMState]:
    """One token: q, k ``(B, H, Dk)``, v ``(B, H, Dv)``, gates ``(B, H)``; ``state=None`` is empty.

    Returns ``(h, new_state)``: h ``(B, H, Dv)`` in v's dtype, the state in the compute dtype.
    """
    if q.dim() != 3 or k.shape != q.shape or v.shape[:2] != q.shape[:2] or v.dim() != 3:
        raise ValueError(
            f"mlstm_step wants q, k (B, H, Dk) and v (B, H, Dv); got {tuple(q.shape)}, "
            f"{tuple(k.shape)}, {tuple(v.shape)}"
        )
    if i_pre.shape != q.shape[:2] or f_pre.shape != q.shape[:2]:
        raise ValueError(f"gates must be (B, H) = {tuple(q.shape[:2])}")
    batch, heads, dk = q.shape
    dv = v.shape[-1]
    dtype = compute_dtype(q, k, v, i_pre, f_pre)
    qs = q.to(dtype) * default_scale(scale, dk)
    kc, vc = k.to(dtype), v.to(dtype)
    log_i = i_pre.to(dtype)
    kv = kc.unsqueeze(-1) * vc.unsqueeze(-2)  # (B, H, Dk, Dv)

    if state is None:  # m_0 = -inf: m_1 = ĩ_1 and the write has weight exp(0) = 1
        m = log_i
        c, n = kv, kc.clone()  # a new tensor: the state must not alias the caller's k
    else:
        c0, n0, m0 = prepare_state(state, batch, heads, dk, dv, dtype)
        log_f = F.logsigmoid(f_pre.to(dtype))
        m = torch.maximum(log_f + m0, log_i)
        keep = torch.exp(log_f + m0 - m)
        write = torch.exp(log_i - m)
        c = keep[..., None, None] * c0 + write[..., None, None] * kv
        n = keep[..., None] * n0 + write[..., None] * kc

    numerator = (qs.unsqueeze(-2) @ c).squeeze(-2)  # (B, H, Dv)
    normaliser = (qs * n).sum(dim=-1)
    denominator = torch.maximum(normaliser.abs(), torch.exp(-m)) + eps
    h = numerator / denominator.unsqueeze(-1)
    return h.to(v.dtype), (c, n, m)


def mlstm_recurrent(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    i_pre: Tensor,
    f_pre: Tensor,
    *,
    initial_state: MLSTMState | None = None,
    return_last_state: bool = False,
    eps: float = 1e-6,
    scale: float | None = None,
) -> Tensor | tuple[Tensor, MLSTMState]:
    """The whole sequence by looping :func:`mlstm_step` over time (slow; a reference for decoding).

    Same arguments and results as :func:`blalm.model.ops.mlstm.mlstm_parallel`.
    """
    check_sequence_inputs(q, k, v, i_pre, f_pre)
    state = initial_state
    outputs = []
    for t in range(q.shape[2]):
        h, state = mlstm_step(
            q[:, :, t], k[:, :, t], v[:, :, t], i_pre[:, :, t], f_pre[:, :, t], state, eps=eps, scale=scale
        )
        outputs.append(h)
    h = torch.stack(outputs, dim=2)
    if return_last_state:
        assert state is not None
        return h, state
    return h
