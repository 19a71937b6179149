"""mLSTM in its parallel (quadratic, attention-like) form: the reference the other kernels match.

The recurrence (guide §2), per batch element and head, with ``i_t = exp(ĩ_t)`` and
``log f_t = logsigmoid(f̃_t)``::

    C_t = f_t C_{t-1} + i_t k_t v_tᵀ        n_t = f_t n_{t-1} + i_t k_t
    h_t = C_tᵀ q_t / max(|n_tᵀ q_t|, exp(-m_t))        (q_t already multiplied by ``scale``)

Stabilisation. ``exp(ĩ)`` overflows and products of forget gates underflow, so nothing is stored
in linear scale. Unrolled, every term of the sum carries the log weight
``D_ij = Σ_{j<t≤i} log f_t + ĩ_j`` (``-inf`` for j > i), and the stabiliser is its row maximum
``m_i = max_j D_ij`` — the same number as the recurrent ``m_t = max(log f_t + m_{t-1}, ĩ_t)``.
Weights are evaluated as ``exp(D_ij − m_i) ≤ 1``; numerator and normaliser are both divided by
``exp(m_i)``, so their ratio is unchanged, and the lower bound 1 of the normaliser becomes
``exp(−m_i)``::

    S_ij = (q_i·k_j·scale) · exp(D_ij − m_i)
    h_i  = Σ_j S_ij v_j / (max(|Σ_j S_ij|, exp(−m_i)) + eps)

An initial state ``(C_0, n_0, m_0)`` — stored divided by ``exp(m_0)``, as all states here are —
enters as one extra term "j = 0" with log weight ``Σ_{t≤i} log f_t + m_0``: it joins the row
maximum and contributes ``exp(·−m_i)·(C_0ᵀ q_i, n_0·q_i)``. The last state is the last row:
``m_S``, ``C_S = Σ_j exp(D_Sj − m_S) k_j v_jᵀ (+ the j = 0 term)``, same for ``n_S``. The empty
state is ``m = -inf``, so the first step gives ``m_1 = ĩ_1``.

The decays are summed segment by segment (not as ``F_i − F_j``) to keep precision when forget
gates are small. Everything runs in float32 at least (float64 stays float64); ``h`` comes back in
v's dtype.
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
    segment_log_decay,
)


def mlstm_parallel(
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
    """The mLSTM over a whole sequence in O(S²) time and memory.

    q, k ``(B, H, S, Dk)``; v ``(B, H, S, Dv)``; i_pre, f_pre ``(B, H, S)`` gate pre-activations.
    Returns h ``(B, H, S, Dv)`` in v's dtype, or ``(h, (C, n, m))`` when ``return_last_state``.
    """
    check_sequence_inputs(q, k, v, i_pre, f_pre)
    batch, heads, _, dk = q.shape
    dv = v.shape[-1]
    dtype = compute_dtype(q, k, v, i_pre, f_pre)
    qs = q.to(dtype) * default_scale(scale, dk)
    kc, vc = k.to(dtype), v.to(dtype)
    log_i = i_pre.to(dtype)
    log_f = F.logsigmoid(f_pre.to(dtype))

    log_weight = segment_log_decay(log_f) + log_i.unsqueeze(-2)  # D_ij, (B, H, S, S)
    m = log_weight.amax(dim=-1)  # (B, H, S)
    if initial_state is not None:
        c0, n0, m0 = prepare_state(initial_state, batch, heads, dk, dv, dtype)
        log_weight0 = log_f.cumsum(dim=-1) + m0.unsqueeze(-1)  # (B, H, S)
        m = torch.maximum(m, log_weight0)

    weight = torch.exp(log_weight - m.unsqueeze(-1))
    scores = (qs @ kc.transpose(-1, -2)) * weight
    numerator = scores @ vc
    normaliser = scores.sum(dim=-1)
    if initial_state is not None:
        weight0 = torch.exp(log_weight0 - m)
        numerator = numerator + weight0.unsqueeze(-1) * (qs @ c0)
        normaliser = normaliser + weight0 * (qs @ n0.unsqueeze(-1)).squeeze(-1)
    denominator = torch.maximum(normaliser.abs(), torch.exp(-m)) + eps
    h = (numerator / denominator.unsqueeze(-1)).to(v.dtype)
    if not return_last_state:
        return h

    weighted_k = kc * weight[..., -1, :].unsqueeze(-1)  # exp(D_Sj − m_S) k_j, (B, H, S, Dk)
    c_last = weighted_k.transpose(-1, -2) @ vc
    n_last = weighted_k.sum(dim=-2)
    if initial_state is not None:
        c_last = c_last + weight0[..., -1, None, None] * c0
        n_last = n_last + weight0[..., -1, None] * n0
    return h, (c_last, n_last, m[..., -1])
