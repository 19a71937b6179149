"""Building blocks of the decoder: norms, SwiGLU, RoPE, causal and sliding-window attention,
the short causal convolution and the Hedgehog feature map.

Tensors are ``(B, S, D)`` in the residual stream and ``(B, H, S, d)`` inside the mixers.
Every module keeps its own parameter initialisation in ``reset_parameters()`` (the decoder's
``init_weights`` calls them after the generic Linear/Embedding init).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from blalm.model.cache import AttentionCache

RopeTables = tuple[Tensor, Tensor]
"""``(cos, sin)``, each ``(S, head_dim / 2)`` float32, for the positions of the current input."""


def upcast(x: Tensor) -> Tensor:
    """``x`` in float32, or kept in float64 (tests run whole models in float64)."""
    return x if x.dtype == torch.float64 else x.float()


class RMSNorm(nn.Module):
    """RMSNorm over the last axis, computed in float32 (Qwen: ``weight * x_normed.to(x.dtype)``)."""

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def reset_parameters(self) -> None:
        nn.init.ones_(self.weight)

    def forward(self, x: Tensor) -> Tensor:
        h = upcast(x)
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * h.to(x.dtype)


class MultiHeadRMSNorm(nn.Module):
    """Per-head RMSNorm of ``(B, H, S, d)`` over ``d``, with one weight of ``H * d`` (the mLSTM
    output norm of xLSTM-7B: each head's cell output is normalised on its own)."""

    def __init__(self, num_heads: int, head_dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.num_heads, self.head_dim, self.eps = num_heads, head_dim, eps
        self.weight = nn.Parameter(torch.ones(num_heads * head_dim))

    def reset_parameters(self) -> None:
        nn.init.ones_(self.weight)

    def forward(self, x: Tensor) -> Tensor:
        h = upcast(x)
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight.view(self.num_heads, 1, self.head_dim) * h.to(x.dtype)


class SwiGLU(nn.Module):
    """``down(silu(gate(x)) * up(x))``, no biases (Qwen)."""

    def __init__(self, hidden_size: int, intermediate_size: int) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(hidden_size, intermediate_size, bias=False)
        self.up_proj = nn.Linear(hidden_size, intermediate_size, bias=False)
        self.down_proj = nn.Linear(intermediate_size, hidden_size, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))

    def hidden_matrices(self) -> list[nn.Parameter]:
        """The 2-D weights of hidden projections (Muon's share, see blalm.train.optim)."""
        return [self.gate_proj.weight, self.up_proj.weight, self.down_proj.weight]


# ----------------------------------------------------------------------------------------------
# RoPE
# ----------------------------------------------------------------------------------------------

def rope_tables(positions: Tensor, head_dim: int, theta: float) -> RopeTables:
    """cos/sin tables ``(len(positions), head_dim / 2)`` in float32 for integer ``positions``."""
    inv_freq = theta ** (-torch.arange(0, head_dim, 2, device=positions.device, dtype=torch.float32) / head_dim)
    angles = positions.to(torch.float32)[:, None] * inv_freq[None, :]
    return angles.cos(), angles.sin()


class RotaryEmbedding(nn.Module):
    """RoPE tables for the positions of each call, computed on the fly (``S × head_dim/2`` cos/sin,
    negligible next to the model). No buffers: nothing to save, move or refill, so a model built
    on the ``meta`` device and loaded from a checkpoint (ours or Hugging Face's loader) is complete,
    and no table size limits the input length. ``max_positions`` is the nominal context
    (``ModelConfig.max_position_embeddings``), kept for reference only."""

    def __init__(self, head_dim: int, theta: float, max_positions: int | None = None) -> None:
        super().__init__()
        self.head_dim, self.theta, self.max_positions = head_dim, theta, max_positions

    def forward(self, seq_len: int, offset: int = 0, device: torch.device | str | None = None) -> RopeTables:
        """Tables for positions ``offset .. offset + seq_len - 1`` (offset: tokens already decoded)."""
        positions = torch.arange(offset, offset + seq_len, device=device)
        return rope_tables(positions, self.head_dim, self.theta)

    def extra_repr(self) -> str:
        return f"head_dim={self.head_dim}, theta={self.theta}, max_positions={self.max_positions}"


def apply_rope(x: Tensor, rope: RopeTables) -> Tensor:
    """Rotate ``x (B, H, S, d)`` by the tables (half-split pairs ``(x_i, x_{i+d/2})``, as in
    Qwen/Llama), in float32 (float64 stays float64), returning ``x``'s dtype."""
    cos, sin = rope
    h = upcast(x)
    x1, x2 = h.chunk(2, dim=-1)
    out = torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)
    return out.to(x.dtype)


# ----------------------------------------------------------------------------------------------
# Softmax attention
# ----------------------------------------------------------------------------------------------

class CausalSelfAttention(nn.Module):
    """Qwen3-style multi-head causal self-attention: q/k/v/o projections without bias, optional
    per-head RMSNorm on q and k, RoPE, ``scaled_dot_product_attention(is_causal=True)``."""

    def __init__(self, hidden_size: int, num_heads: int, qk_norm: bool, norm_eps: float) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = hidden_size // num_heads
        self.q_proj = nn.Linear(hidden_size, hidden_size, bias=False)
        self.k_proj = nn.Linear(hidden_size, hidden_size, bias=False)
        self.v_proj = nn.Linear(hidden_size, hidden_size, bias=False)
        self.o_proj = nn.Linear(hidden_size, hidden_size, bias=False)
        self.q_norm = RMSNorm(self.head_dim, norm_eps) if qk_norm else None
        self.k_norm = RMSNorm(self.head_dim, norm_eps) if qk_norm else None

    def hidden_matrices(self) -> list[nn.Parameter]:
        """The 2-D weights of hidden projections (Muon's share): q, k, v and o (not the q/k norms)."""
        return [self.q_proj.weight, self.k_proj.weight, self.v_proj.weight, self.o_proj.weight]

    def forward(self, x: Tensor, rope: RopeTables, key_padding_mask: Tensor | None = None,
                cache: AttentionCache | None = None) -> Tensor:
        """``x (B, S, D)`` -> ``(B, S, D)``. ``key_padding_mask (B, S)`` (1 = real, 0 = padding)
        hides padded keys from every query; not needed for right padding, which causality already
        keeps away from real positions (the decoder therefore does not pass it).

        ``cache``: the keys and values of the tokens before ``x`` (``rope`` then holds the tables of
        ``x``'s positions after them); ``x``'s keys and values are appended to it."""
        b, s, _ = x.shape
        q, k, v = (split_heads(proj(x), self.num_heads) for proj in (self.q_proj, self.k_proj, self.v_proj))
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        q, k = apply_rope(q, rope), apply_rope(k, rope)
        past = 0
        if cache is not None:
            if key_padding_mask is not None:
                raise ValueError("the attention KV cache takes unpadded input (no key_padding_mask)")
            if cache.k is not None:
                past = cache.k.shape[2]
                k, v = torch.cat((cache.k, k), dim=2), torch.cat((cache.v, v), dim=2)
            cache.k, cache.v = k, v
        if past:
            # query i sits at position past + i and sees keys 0 .. past + i
            visible = None if s == 1 else (torch.arange(past + s, device=x.device)[None, :]
                                           <= past + torch.arange(s, device=x.device)[:, None])
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=visible)
        elif key_padding_mask is None:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            causal = torch.ones(s, s, dtype=torch.bool, device=x.device).tril()
            visible = causal & key_padding_mask.bool()[:, None, None, :]
            visible = visible | torch.eye(s, dtype=torch.bool, device=x.device)  # no empty rows (padded queries)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=visible)
        return self.o_proj(merge_heads(y))


def split_heads(x: Tensor, num_heads: int) -> Tensor:
    """``(B, S, H * d)`` -> ``(B, H, S, d)``."""
    b, s, _ = x.shape
    return x.view(b, s, num_heads, -1).transpose(1, 2)


def merge_heads(x: Tensor) -> Tensor:
    """``(B, H, S, d)`` -> ``(B, S, H * d)``."""
    b, h, s, d = x.shape
    return x.transpose(1, 2).reshape(b, s, h * d)


def sliding_window_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    window: int,
    *,
    memory_k: Tensor | None = None,
    memory_v: Tensor | None = None,
    memory_q: Tensor | None = None,
) -> Tensor:
    """Causal softmax attention in which query ``t`` sees keys ``t - window + 1 .. t``.

    ``q, k, v`` are ``(B, H, S, d)`` (q and k already rotated). The sequence is cut into blocks
    of ``window`` queries; each block attends to its own and the previous block (``2·window``
    keys) through ``scaled_dot_product_attention`` with a small per-block band mask, so memory
    is O(S·window), never O(S²).

    ``memory_k, memory_v (H, M, d)``: learned persistent slots that every query also sees
    ("SWA with Memory"). They carry no position: their scores use ``memory_q`` (the un-rotated
    queries, default ``q``) so that a slot's score does not depend on the query's position.
    Both score kinds share one softmax: the block queries are ``[q_rot, q_plain]`` against keys
    ``[k_rot, 0]`` (window) and ``[0, k_mem]`` (memory), with the scale of ``d``.
    """
    b, h, s, d = q.shape
    w = int(window)
    nb = -(-s // w)
    pad = nb * w - s
    if pad:
        q, k, v = (F.pad(t, (0, 0, 0, pad)) for t in (q, k, v))

    def two_blocks(t: Tensor) -> Tensor:  # (B, H, nb*W, e) -> (B, H*nb, 2W, e): previous block + own block
        blocks = t.reshape(b, h, nb, w, t.shape[-1])
        previous = F.pad(blocks, (0, 0, 0, 0, 1, 0))[:, :, :-1]
        return torch.cat((previous, blocks), dim=3).reshape(b, h * nb, 2 * w, t.shape[-1])

    qb = q.reshape(b, h * nb, w, d)
    kb, vb = two_blocks(k), two_blocks(v)
    # query i of block n sits at n*W + i; key j of its 2W keys at (n-1)*W + j.
    i = torch.arange(w, device=q.device)[:, None]
    j = torch.arange(2 * w, device=q.device)[None, :]
    band = (j > i) & (j <= i + w)                                   # (W, 2W): t - W < key <= t
    first = torch.arange(nb, device=q.device)[:, None, None] == 0
    mask = band & ~(first & (j < w))                                # block 0 has no previous block
    if memory_k is not None:
        if memory_v is None:
            raise ValueError("memory_k needs memory_v")
        m = memory_k.shape[1]
        mq = q if memory_q is None else F.pad(memory_q, (0, 0, 0, pad))
        qb = torch.cat((qb, mq.reshape(b, h * nb, w, d)), dim=-1)
        kb = torch.cat((kb, torch.zeros_like(kb)), dim=-1)
        mem_keys = torch.cat((torch.zeros_like(memory_k), memory_k), dim=-1).to(kb.dtype)   # (H, M, 2d)
        mem_keys = mem_keys[None, :, None].expand(b, h, nb, m, 2 * d).reshape(b, h * nb, m, 2 * d)
        mem_vals = memory_v.to(vb.dtype)[None, :, None].expand(b, h, nb, m, d).reshape(b, h * nb, m, d)
        kb = torch.cat((mem_keys, kb), dim=2)
        vb = torch.cat((mem_vals, vb), dim=2)
        mask = torch.cat((torch.ones(nb, w, m, dtype=torch.bool, device=q.device), mask.expand(nb, w, 2 * w)), dim=-1)
    mask = mask.expand(h, nb, w, mask.shape[-1]).reshape(1, h * nb, w, mask.shape[-1])
    out = F.scaled_dot_product_attention(qb, kb, vb, attn_mask=mask, scale=1.0 / math.sqrt(d))
    return out.reshape(b, h, nb * w, d)[:, :, :s]


def sliding_window_attention_with_past(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    window: int,
    past_k: Tensor | None,
    past_v: Tensor | None,
    *,
    memory_k: Tensor | None = None,
    memory_v: Tensor | None = None,
    memory_q: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """:func:`sliding_window_attention` for new tokens that follow earlier ones (decoding).

    ``past_k, past_v (B, H, P, d)``: the rotated keys and values of the ``P ≤ window - 1`` tokens
    just before ``q``'s (None or P = 0 at the start). Returns ``(out, keep_k, keep_v)``, where
    ``keep_*`` are the last ``window - 1`` keys/values of past + new: all that a later token can
    still see, so the cache never holds more than the window.
    """
    p = 0 if past_k is None else past_k.shape[2]
    s, d = q.shape[2], q.shape[3]
    w = int(window)
    keys = torch.cat((past_k, k), dim=2) if p else k
    values = torch.cat((past_v, v), dim=2) if p else v
    if p == 0:
        out = sliding_window_attention(q, k, v, w, memory_k=memory_k, memory_v=memory_v, memory_q=memory_q)
    elif s <= w:
        # a few queries (one per decoding step): the band-masked softmax written out
        position = p + torch.arange(s, device=q.device)[:, None]          # of query i among the keys
        j = torch.arange(p + s, device=q.device)[None, :]
        visible = (j <= position) & (j > position - w)
        scores = (q @ keys.transpose(-1, -2)) / math.sqrt(d)
        scores = scores.masked_fill(~visible, float("-inf"))
        if memory_k is not None:
            mq = q if memory_q is None else memory_q
            mem_scores = (mq @ memory_k.to(mq.dtype).transpose(-1, -2)) / math.sqrt(d)   # (B, H, S, M)
            scores = torch.cat((mem_scores, scores), dim=-1)
            values = torch.cat((memory_v.to(values.dtype).expand(q.shape[0], -1, -1, -1), values), dim=2)
        out = torch.softmax(scores, dim=-1) @ values
        values = values[:, :, values.shape[2] - (p + s):]                   # drop the memory values again
    else:
        # many queries: the blockwise kernel over past + new, with zero queries for the past tokens
        pad = q.new_zeros(q.shape[0], q.shape[1], p, d)
        mq = None if memory_k is None else torch.cat((pad, q if memory_q is None else memory_q), dim=2)
        out = sliding_window_attention(torch.cat((pad, q), dim=2), keys, values, w,
                                       memory_k=memory_k, memory_v=memory_v, memory_q=mq)[:, :, p:]
    keep = min(w - 1, p + s)
    return out, keys[:, :, p + s - keep:], values[:, :, p + s - keep:]


# ----------------------------------------------------------------------------------------------
# Mechanisms of the mLSTM mixer
# ----------------------------------------------------------------------------------------------

class CausalDepthwiseConv1d(nn.Module):
    """ShortConv: a causal depthwise 1-D convolution over ``(B, S, C)``, no bias. Output ``t``
    mixes inputs ``t - kernel + 1 .. t`` of its own channel. Initialised to the identity (last
    tap 1, others 0), so switching it on does not change the model at step 0."""

    def __init__(self, channels: int, kernel_size: int) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.weight = nn.Parameter(torch.empty(channels, 1, kernel_size))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        with torch.no_grad():
            self.weight.zero_()
            self.weight[:, :, -1] = 1.0

    def forward(self, x: Tensor) -> Tensor:
        return self._sums(F.pad(x, (0, 0, self.kernel_size - 1, 0)), x.shape[1])   # left padding only

    def forward_with_past(self, x: Tensor, past: Tensor | None) -> tuple[Tensor, Tensor]:
        """``forward`` for inputs that follow ``past (B, kernel - 1, C)`` (the previous inputs; None
        = the start, i.e. zeros). Returns the output and the last ``kernel - 1`` inputs."""
        if past is None:
            past = x.new_zeros(x.shape[0], self.kernel_size - 1, x.shape[2])
        full = torch.cat((past.to(x.dtype), x), dim=1)                       # (B, K-1+S, C)
        return self._sums(full, x.shape[1]), full[:, full.shape[1] - (self.kernel_size - 1):]

    def _sums(self, full: Tensor, length: int) -> Tensor:
        """The causal convolution of ``full (B, K-1+S, C)`` (S inputs after K-1 earlier ones) as K
        shifted multiply-adds rather than F.conv1d: the same sums (held to conv1d by the tests), but
        element-wise, so torch.compile fuses them with their neighbours (cuDNN's depthwise conv and its
        backward cost 7% of an eager BLaLM step on the H100) and a decoding step's few tokens are cheap."""
        k = self.kernel_size
        w = self.weight.to(full.dtype).squeeze(1)                   # (C, K)
        y = full[:, k - 1:] * w[:, k - 1]
        for tap in range(k - 1):
            y = y + full[:, tap:tap + length] * w[:, tap]
        return y


class HedgehogFeatureMap(nn.Module):
    """Hedgehog (Zhang et al. 2024): ``φ(x) = softmax([W x, -W x])`` over the feature axis, one
    ``W (d, d)`` per head, initialised to the identity. ``(B, H, S, d)`` -> ``(B, H, S, 2d)``,
    computed in float32."""

    def __init__(self, num_heads: int, head_dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_heads, head_dim, head_dim))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        with torch.no_grad():
            self.weight.copy_(torch.eye(self.weight.shape[-1], device=self.weight.device).expand_as(self.weight))

    def forward(self, x: Tensor) -> Tensor:
        h = upcast(x)
        with torch.autocast(device_type=x.device.type, enabled=False):   # keep float32 under autocast
            proj = torch.einsum("bhsd,hde->bhse", h, self.weight.to(h.dtype))
            return torch.softmax(torch.cat((proj, -proj), dim=-1), dim=-1).to(x.dtype)
