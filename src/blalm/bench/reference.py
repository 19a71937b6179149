"""A plain, compact PyTorch decoder of a training config's shape: the baseline that every
``blalm bench train --reference`` figure is divided by (a benchmark yardstick, not a model to train).

What a competent user would write in ~100 lines: ``F.rms_norm``, SwiGLU, RoPE, SDPA (the
Transformer) or the mLSTM in its naive quadratic parallel form (BLaLM, ShortConv as a depthwise
``conv1d`` when the config has it), fused AdamW, bf16 autocast, ``torch.compile`` of the whole model.
Same hidden size, layers, heads, FFN width, vocabulary and embedding tying as the config; no Muon,
no mechanisms beyond ShortConv, no custom kernels.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from blalm.model.config import ModelConfig


def rope(x: Tensor, theta: float = 10000.0) -> Tensor:
    d, s = x.shape[-1], x.shape[-2]
    inv = theta ** (-torch.arange(0, d, 2, device=x.device, dtype=torch.float32) / d)
    ang = torch.arange(s, device=x.device, dtype=torch.float32)[:, None] * inv
    cos, sin = ang.cos(), ang.sin()
    x1, x2 = x.float().chunk(2, dim=-1)
    return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1).to(x.dtype)


def naive_mlstm(q: Tensor, k: Tensor, v: Tensor, i_pre: Tensor, f_pre: Tensor, eps: float = 1e-6) -> Tensor:
    """The parallel form of GUIDE §2 written out: ``D_ij = F_i − F_j + ĩ_j`` (j ≤ i), row maximum,
    weighted scores, normaliser ``max(|Σ_j C_ij|, exp(−m_i))``. q, k, v ``(B, H, S, d)``; gates ``(B, H, S)``."""
    s = q.shape[-2]
    cum = F.logsigmoid(f_pre.float()).cumsum(-1)
    causal = torch.ones(s, s, dtype=torch.bool, device=q.device).tril()
    log_w = (cum[..., :, None] - cum[..., None, :] + i_pre.float()[..., None, :]).masked_fill(~causal, -math.inf)
    m = log_w.amax(-1, keepdim=True)
    scores = (q @ k.transpose(-1, -2)).float() / math.sqrt(q.shape[-1]) * torch.exp(log_w - m)
    norm = torch.maximum(scores.sum(-1, keepdim=True).abs(), torch.exp(-m)) + eps
    return ((scores / norm).to(v.dtype) @ v)


class Block(nn.Module):
    def __init__(self, c: ModelConfig) -> None:
        super().__init__()
        d, self.h = c.hidden_size, c.num_heads
        self.mlstm = c.mixer == "mlstm"
        self.qkv = nn.Linear(d, 3 * d, bias=False)
        self.o = nn.Linear(d, d, bias=False)
        self.gate_up = nn.Linear(d, 2 * c.intermediate_size, bias=False)
        self.down = nn.Linear(c.intermediate_size, d, bias=False)
        self.n1, self.n2 = nn.Parameter(torch.ones(d)), nn.Parameter(torch.ones(d))
        if self.mlstm:
            self.if_gates = nn.Linear(d, 2 * c.num_heads)
            self.ogate = nn.Linear(d, d, bias=False)
            self.head_norm = nn.Parameter(torch.ones(c.num_heads, 1, c.head_dim))
            self.conv = nn.Conv1d(3 * d, 3 * d, c.conv_kernel, groups=3 * d, bias=False) if c.short_conv else None
        else:
            self.qn, self.kn = nn.Parameter(torch.ones(c.head_dim)), nn.Parameter(torch.ones(c.head_dim))

    def mix(self, x: Tensor) -> Tensor:
        b, s, d = x.shape
        qkv = self.qkv(x)
        if self.mlstm and self.conv is not None:
            qkv = self.conv(F.pad(qkv.transpose(1, 2), (self.conv.kernel_size[0] - 1, 0))).transpose(1, 2)
        q, k, v = (t.view(b, s, self.h, -1).transpose(1, 2) for t in qkv.chunk(3, dim=-1))
        if self.mlstm:
            i_pre, f_pre = self.if_gates(x).transpose(1, 2).chunk(2, dim=1)
            y = F.rms_norm(naive_mlstm(q, k, v, i_pre, f_pre), (q.shape[-1],)) * self.head_norm
            y = torch.sigmoid(self.ogate(x)) * y.transpose(1, 2).reshape(b, s, d)
        else:
            q, k = F.rms_norm(q, (q.shape[-1],), self.qn), F.rms_norm(k, (k.shape[-1],), self.kn)
            y = F.scaled_dot_product_attention(rope(q), rope(k), v, is_causal=True).transpose(1, 2).reshape(b, s, d)
        return self.o(y)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.mix(F.rms_norm(x, (x.shape[-1],), self.n1))
        gate, up = self.gate_up(F.rms_norm(x, (x.shape[-1],), self.n2)).chunk(2, dim=-1)
        return x + self.down(F.silu(gate) * up)


class PlainDecoder(nn.Module):
    def __init__(self, c: ModelConfig) -> None:
        super().__init__()
        self.embed = nn.Embedding(c.vocab_size, c.hidden_size)
        self.blocks = nn.ModuleList(Block(c) for _ in range(c.num_layers))
        self.norm = nn.Parameter(torch.ones(c.hidden_size))
        self.head = None if c.tie_embeddings else nn.Linear(c.hidden_size, c.vocab_size, bias=False)
        for p in self.parameters():
            if p.dim() == 2:
                nn.init.normal_(p, 0.0, c.init_std)

    def forward(self, ids: Tensor) -> Tensor:
        """Mean next-token cross-entropy of ``ids (B, S)``."""
        x = self.embed(ids)
        for block in self.blocks:
            x = block(x)
        x = F.rms_norm(x, (x.shape[-1],), self.norm)
        logits = self.head(x) if self.head is not None else x @ self.embed.weight.t()
        return F.cross_entropy(logits[:, :-1].float().flatten(0, 1), ids[:, 1:].flatten())
