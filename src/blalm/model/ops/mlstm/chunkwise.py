"""mLSTM in its chunkwise form: the training path (pure PyTorch, vectorised over chunks).

The sequence is cut into chunks of L tokens. Inside a chunk the parallel form runs (one batched
L×L computation for all chunks at once); between chunks only the stabilised state ``(C, n, m)``
travels, in a Python loop over chunks of small tensor ops. With ``b_t = Σ_{s≤t} log f_s`` (local to
the chunk) and the state ``(C', n', m')`` at the chunk's start, the output at local position t is
the parallel form plus one extra term of log weight ``b_t + m'``::

    m_t = max(b_t + m', max_{j≤t} D_tj)
    h_t = [exp(b_t+m'−m_t) C'ᵀq_t + Σ_j exp(D_tj−m_t)(q_t·k_j) v_j]
          / (max(|the same with n' and 1 for v_j|, exp(−m_t)) + eps)

and the state at the chunk's end is ``m = max(b_L + m', a)``, ``C = exp(b_L+m'−m) C' + exp(a−m) K``
where ``K = Σ_j exp(D_Lj − a) k_j v_jᵀ`` and ``a = max_j D_Lj`` come from the chunk alone.
A length that is not a multiple of L is padded at the end with ``log f = 0`` and ``ĩ = −inf``
(forget gate exactly 1, input gate exactly 0): padded steps leave the state exactly as it was.
"""

from __future__ import annotations

import math

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


def mlstm_chunkwise(
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
    chunk_size: int = 64,
) -> Tensor | tuple[Tensor, MLSTMState]:
    """The mLSTM over a whole sequence in O(S·L) time; same results as the parallel form.

    q, k ``(B, H, S, Dk)``; v ``(B, H, S, Dv)``; i_pre, f_pre ``(B, H, S)`` gate pre-activations.
    Returns h ``(B, H, S, Dv)`` in v's dtype, or ``(h, (C, n, m))`` when ``return_last_state``.
    """
    check_sequence_inputs(q, k, v, i_pre, f_pre)
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer; got {chunk_size!r}")
    batch, heads, length, dk = q.shape
    dv = v.shape[-1]
    dtype = compute_dtype(q, k, v, i_pre, f_pre)
    qs = q.to(dtype) * default_scale(scale, dk)
    kc, vc = k.to(dtype), v.to(dtype)
    log_i = i_pre.to(dtype)
    log_f = F.logsigmoid(f_pre.to(dtype))

    chunk = min(chunk_size, length)
    n_chunks = math.ceil(length / chunk)
    pad = n_chunks * chunk - length
    if pad:
        qs, kc, vc = (F.pad(x, (0, 0, 0, pad)) for x in (qs, kc, vc))
        log_i = F.pad(log_i, (0, pad), value=float("-inf"))
        log_f = F.pad(log_f, (0, pad), value=0.0)
    qs = qs.reshape(batch, heads, n_chunks, chunk, dk)
    kc = kc.reshape(batch, heads, n_chunks, chunk, dk)
    vc = vc.reshape(batch, heads, n_chunks, chunk, dv)
    log_i = log_i.reshape(batch, heads, n_chunks, chunk)
    log_f = log_f.reshape(batch, heads, n_chunks, chunk)

    # Intra-chunk log weights D_tj and what each chunk alone writes into the state at its end.
    log_weight = segment_log_decay(log_f) + log_i.unsqueeze(-2)  # (B, H, N, L, L)
    m_intra = log_weight.amax(dim=-1)  # (B, H, N, L)
    log_decay_in = log_f.cumsum(dim=-1)  # b_t, (B, H, N, L)
    log_write = log_weight[..., -1, :]  # D_Lj, (B, H, N, L)
    chunk_m = log_write.amax(dim=-1)  # a, (B, H, N)
    weighted_k = kc * torch.exp(log_write - chunk_m.unsqueeze(-1)).unsqueeze(-1)
    chunk_c = weighted_k.transpose(-1, -2) @ vc  # K, (B, H, N, Dk, Dv)
    chunk_n = weighted_k.sum(dim=-2)  # (B, H, N, Dk)
    chunk_decay = log_decay_in[..., -1]  # b_L, (B, H, N)

    # Inter-chunk recurrence over the states at each chunk's start.
    if initial_state is None:
        c = qs.new_zeros(batch, heads, dk, dv)
        n = qs.new_zeros(batch, heads, dk)
        m = qs.new_full((batch, heads), float("-inf"))
    else:
        c, n, m = prepare_state(initial_state, batch, heads, dk, dv, dtype)
    starts_c, starts_n, starts_m = [], [], []
    for index in range(n_chunks):
        starts_c.append(c)
        starts_n.append(n)
        starts_m.append(m)
        m_next = torch.maximum(chunk_decay[..., index] + m, chunk_m[..., index])
        keep = torch.exp(chunk_decay[..., index] + m - m_next)
        write = torch.exp(chunk_m[..., index] - m_next)
        c = keep[..., None, None] * c + write[..., None, None] * chunk_c[:, :, index]
        n = keep[..., None] * n + write[..., None] * chunk_n[:, :, index]
        m = m_next
    c_start = torch.stack(starts_c, dim=2)  # (B, H, N, Dk, Dv)
    n_start = torch.stack(starts_n, dim=2)  # (B, H, N, Dk)
    m_start = torch.stack(starts_m, dim=2)  # (B, H, N)

    # Outputs: the parallel form inside each chunk plus the start state's term.
    log_weight0 = log_decay_in + m_start.unsqueeze(-1)  # (B, H, N, L)
    m_out = torch.maximum(m_intra, log_weight0)
    weight0 = torch.exp(log_weight0 - m_out)
    scores = (qs @ kc.transpose(-1, -2)) * torch.exp(log_weight - m_out.unsqueeze(-1))
    numerator = scores @ vc + weight0.unsqueeze(-1) * (qs @ c_start)
    normaliser = scores.sum(dim=-1) + weight0 * (qs @ n_start.unsqueeze(-1)).squeeze(-1)
    denominator = torch.maximum(normaliser.abs(), torch.exp(-m_out)) + eps
    h = numerator / denominator.unsqueeze(-1)
    h = h.reshape(batch, heads, n_chunks * chunk, dv)[:, :, :length].to(v.dtype)
    if return_last_state:
        return h, (c, n, m)
    return h
