"""BLaLM's token mixer: an mLSTM layer in the xLSTM-7B style, fitted into a Qwen block, with the
paper's Table 6 mechanisms as switches.

Data flow for ``x (B, S, D)`` (D = hidden, H heads of d = D / H)::

    q, k, v   = W_q x, W_k x, W_v x                         (D -> H·d each, no bias)
    q, k, v   = conv(q), conv(k), conv(v)                   if short_conv (causal depthwise)
    ĩ, f̃      = cap·tanh((W_i x + b_i) / cap), same for f   (D -> H each, with bias; cap = gate_soft_cap)
    q', k'    = φ_q(q), φ_k(k)                               if hedgehog (width d -> 2d), else q, k
    h         = HeadNorm(mLSTM(q', k', v, ĩ, f̃))            (kernel from the ops registry; per-head RMSNorm)
    h         = h + c · SWA(rope(q), rope(k), v)            if swa != "none"
    y         = W_out(σ(W_o x) ⊙ h)                          (output gate D -> D, out projection D -> D)

Decisions (the paper does not state them):

- **The SWA branch shares q, k and v** with the mLSTM (after the short conv, before Hedgehog),
  so switching SWA on adds no projections and keeps the parameter count comparable: "the input
  is passed through both modules and added together" (§4.1). RoPE is applied to the SWA's q and
  k only; the mLSTM itself has no positional encoding.
- **Where the branches meet**: the SWA output is added to the *normalised* mLSTM cell output,
  before the output gate and out projection: ``h_total = h_LA + c·h_SWA`` (the poster), with
  ``c = 1`` ("add", "memory"), ``c = α`` ("dynmod") or ``c = tanh(α)`` ("dynmod_bounded").
  The head norm makes h_LA O(1) per head whatever the mLSTM normaliser did, and the SWA output
  is a convex combination of values, so the two are on comparable scales and the output gate
  and out projection see their sum.
- **DynMod α** is one scalar parameter per layer (``swa_alpha``), initialised to
  ``dynmod_init`` (default 0: each layer starts as the plain mLSTM and learns how much local
  attention to add; the paper's App. G reports α growing during training). With α = 0 the SWA
  branch contributes nothing at step 0, but α's own gradient ``<∂L/∂h, h_SWA>`` is non-zero, so
  α leaves 0 on the first update and the branch starts to train.
- **Memory slots** ("SWA with Memory"): ``swa_memory_slots`` learned key/value pairs per head
  that every query sees besides its window; they carry no position (scored with un-rotated q).
- **Gates** follow xLSTM-7B: gate weights start at zero, the input-gate bias at
  ``igate_bias_init`` (-10) and the forget-gate biases at ``linspace(3, 6)`` over the heads
  (f = 0.95..0.998: long memories at step 0), gate pre-activations soft-capped at 15.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from blalm.errors import ConfigError
from blalm.model.cache import MLSTMCache
from blalm.model.config import ModelConfig
from blalm.model.layers import (
    CausalDepthwiseConv1d,
    HedgehogFeatureMap,
    MultiHeadRMSNorm,
    RopeTables,
    apply_rope,
    merge_heads,
    sliding_window_attention,
    sliding_window_attention_with_past,
    split_heads,
)
from blalm.model.ops.mlstm import AUTO_KERNEL, MLSTMKernel, decoding_kernels, mlstm_kernel_spec, resolve_mlstm_kernel


def kernel_head_dims(config: ModelConfig) -> tuple[int, int]:
    """The q/k and v head sizes the mLSTM kernel sees (Hedgehog doubles q and k)."""
    return (2 * config.head_dim if config.hedgehog else config.head_dim), config.head_dim


def kernel_problem(config: ModelConfig) -> str:
    """Why ``config.mlstm_kernel`` can run this model on no device of this machine ("" when it can;
    always "" for ``auto``). ConfigError for an unknown kernel name."""
    if config.mlstm_kernel == AUTO_KERNEL:
        return ""
    return mlstm_kernel_spec(config.mlstm_kernel).unfit_here(*kernel_head_dims(config))


class MLSTMMixer(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        d_model, heads = config.hidden_size, config.num_heads
        self.num_heads, self.head_dim = heads, config.head_dim
        self.q_proj = nn.Linear(d_model, d_model, bias=False)
        self.k_proj = nn.Linear(d_model, d_model, bias=False)
        self.v_proj = nn.Linear(d_model, d_model, bias=False)
        self.igate = nn.Linear(d_model, heads, bias=True)
        self.fgate = nn.Linear(d_model, heads, bias=True)
        self.ogate = nn.Linear(d_model, d_model, bias=False)
        self.out_proj = nn.Linear(d_model, d_model, bias=False)
        self.head_norm = MultiHeadRMSNorm(heads, self.head_dim, config.norm_eps)

        self.conv_q = self.conv_k = self.conv_v = None
        if config.short_conv:
            self.conv_q = CausalDepthwiseConv1d(d_model, config.conv_kernel)
            self.conv_k = CausalDepthwiseConv1d(d_model, config.conv_kernel)
            self.conv_v = CausalDepthwiseConv1d(d_model, config.conv_kernel)
        self.hedgehog_q = self.hedgehog_k = None
        if config.hedgehog:
            self.hedgehog_q = HedgehogFeatureMap(heads, self.head_dim)
            self.hedgehog_k = HedgehogFeatureMap(heads, self.head_dim)

        self.swa = config.swa
        self.swa_window = config.swa_window
        self.memory_k = self.memory_v = None
        if config.swa == "memory":
            self.memory_k = nn.Parameter(torch.empty(heads, config.swa_memory_slots, self.head_dim))
            self.memory_v = nn.Parameter(torch.empty(heads, config.swa_memory_slots, self.head_dim))
        self.swa_alpha = None
        if config.swa in ("dynmod", "dynmod_bounded"):
            self.swa_alpha = nn.Parameter(torch.full((), float(config.dynmod_init)))

        self.gate_soft_cap = config.gate_soft_cap
        self.mlstm_eps = config.mlstm_eps
        self.kernel_name = config.mlstm_kernel
        self.chunk_size = config.chunk_size
        self._kernels = self._kernel_table(config)
        self._config = config

    def _kernel_table(self, config: ModelConfig) -> dict[tuple[str, bool], MLSTMKernel | str]:
        """The kernel of each (device type, float64) this layer may run on, or why the configured
        kernel cannot run there, decided once at build time by the registry. A named kernel that
        can run on no device of this machine, or not at these head sizes, is a ConfigError here."""
        dk, dv = kernel_head_dims(config)
        name = config.mlstm_kernel
        try:
            problem = kernel_problem(config)
        except ConfigError as exc:          # an unknown name
            raise ConfigError(f"mlstm_kernel = {name!r}: {exc}") from None
        if problem:
            raise ConfigError(f"mlstm_kernel = {name!r} cannot run this model here: {problem}; use "
                              f"mlstm_kernel = 'auto' (the best kernel that can) or 'chunkwise'")
        table: dict[tuple[str, bool], MLSTMKernel | str] = {}
        for device_type in ("cpu", "cuda"):
            for float64 in (False, True):
                try:
                    table[device_type, float64] = resolve_mlstm_kernel(name, device_type, dk, dv, float64)
                except ConfigError as exc:
                    table[device_type, float64] = str(exc)
        return table

    def kernel_for(self, device_type: str, float64: bool = False, backward: bool = False) -> MLSTMKernel:
        """The kernel this layer runs (without a decoding cache) on ``device_type``, ``backward``
        when gradients must flow through it; ConfigError when the configured kernel cannot run there
        (never another kernel in its place)."""
        entry = self._kernels.get((device_type, float64))
        if entry is None:
            raise ConfigError(f"mlstm_kernel = {self.kernel_name!r}: no kernel for {device_type} tensors")
        if isinstance(entry, str):
            raise ConfigError(entry)
        if backward and not entry.training:
            raise ConfigError(f"mlstm_kernel = {self.kernel_name!r}: the kernel {entry.name!r} has no backward "
                              f"(it declares training=False), so the model cannot train with it; use "
                              f"mlstm_kernel = 'auto' or 'chunkwise' for training")
        return entry

    def hidden_matrices(self) -> list[nn.Parameter]:
        """The 2-D weights of hidden projections (Muon's share): q, k, v, the output gate and the out
        projection. Not the input and forget gates: their ``(heads, hidden)`` weights make one scalar
        per head, read as gates; nor the conv kernels, Hedgehog maps, memory slots or α."""
        return [self.q_proj.weight, self.k_proj.weight, self.v_proj.weight, self.ogate.weight, self.out_proj.weight]

    def reset_parameters(self) -> None:
        """Gate and mechanism init (the decoder has already drawn every Linear weight)."""
        cfg = self._config
        with torch.no_grad():
            for gate in (self.igate, self.fgate):
                gate.weight.zero_()
            self.igate.bias.fill_(cfg.igate_bias_init)
            self.fgate.bias.copy_(torch.linspace(cfg.fgate_bias_init_min, cfg.fgate_bias_init_max,
                                                 self.num_heads, device=self.fgate.bias.device))
            if self.memory_k is not None:
                self.memory_k.normal_(0.0, cfg.init_std)
                self.memory_v.normal_(0.0, cfg.init_std)
            if self.swa_alpha is not None:
                self.swa_alpha.fill_(cfg.dynmod_init)
        for module in (self.conv_q, self.conv_k, self.conv_v, self.hedgehog_q, self.hedgehog_k, self.head_norm):
            if module is not None:
                module.reset_parameters()

    def swa_coefficient(self) -> Tensor | float:
        """The weight c of the SWA branch: 1 ("add", "memory"), α ("dynmod"), tanh(α) ("dynmod_bounded")."""
        if self.swa == "dynmod":
            return self.swa_alpha
        if self.swa == "dynmod_bounded":
            return torch.tanh(self.swa_alpha)
        return 1.0

    def _gate(self, linear: nn.Linear, x: Tensor) -> Tensor:
        pre = linear(x).float().transpose(1, 2)              # (B, H, S), float32
        if self.gate_soft_cap > 0:
            pre = self.gate_soft_cap * torch.tanh(pre / self.gate_soft_cap)
        return pre

    def forward(self, x: Tensor, rope: RopeTables, cache: MLSTMCache | None = None) -> Tensor:
        """``x (B, S, D)`` -> ``(B, S, D)``; causal: output t depends on inputs ≤ t only.

        ``cache`` (decoding): what the tokens before ``x`` left behind — the kernel's state, the
        last ``conv_kernel - 1`` conv inputs, the last ``swa_window - 1`` rotated keys/values —
        updated in place. One new token runs the registry's step form (:func:`mlstm_step`); several
        (the prompt) run its prefill kernel (:func:`mlstm_chunkwise`) from the cached state and keep
        its last state (whatever the training kernel: the GPU kernels need not support states).
        """
        q, k, v = self.q_proj(x), self.k_proj(x), self.v_proj(x)
        if self.conv_q is not None:
            if cache is None:
                q, k, v = self.conv_q(q), self.conv_k(k), self.conv_v(v)
            else:
                q, cache.conv_q = self.conv_q.forward_with_past(q, cache.conv_q)
                k, cache.conv_k = self.conv_k.forward_with_past(k, cache.conv_k)
                v, cache.conv_v = self.conv_v.forward_with_past(v, cache.conv_v)
        q, k, v = (split_heads(t, self.num_heads) for t in (q, k, v))
        i_pre, f_pre = self._gate(self.igate, x), self._gate(self.fgate, x)

        q_mix, k_mix = q, k
        if self.hedgehog_q is not None:
            q_mix, k_mix = self.hedgehog_q(q), self.hedgehog_k(k)
        if cache is None:
            kernel = self.kernel_for(q_mix.device.type, q_mix.dtype == torch.float64,
                                     backward=torch.is_grad_enabled() and q_mix.requires_grad)
            options = {"chunk_size": self.chunk_size} if kernel.chunk_size else {}
            h = kernel.fn(q_mix, k_mix, v, i_pre, f_pre, eps=self.mlstm_eps, **options)
        elif x.shape[1] == 1:
            _, step = decoding_kernels()
            h, cache.state = step(q_mix[:, :, 0], k_mix[:, :, 0], v[:, :, 0], i_pre[:, :, 0], f_pre[:, :, 0],
                                  cache.state, eps=self.mlstm_eps)
            h = h.unsqueeze(2)
        else:   # a prompt: the registry's prefill kernel (chunkwise), which every device runs
            prefill, _ = decoding_kernels()
            h, cache.state = prefill.fn(q_mix, k_mix, v, i_pre, f_pre, initial_state=cache.state,
                                        return_last_state=True, eps=self.mlstm_eps, chunk_size=self.chunk_size)
        h = self.head_norm(h)

        if self.swa != "none":
            memory = dict(memory_k=self.memory_k, memory_v=self.memory_v,
                          memory_q=q if self.memory_k is not None else None)
            q_rot, k_rot = apply_rope(q, rope), apply_rope(k, rope)
            if cache is None:
                h_swa = sliding_window_attention(q_rot, k_rot, v, self.swa_window, **memory)
            else:
                h_swa, cache.swa_k, cache.swa_v = sliding_window_attention_with_past(
                    q_rot, k_rot, v, self.swa_window, cache.swa_k, cache.swa_v, **memory)
            h = h + self.swa_coefficient() * h_swa.to(h.dtype)

        out = torch.sigmoid(self.ogate(x)) * merge_heads(h).to(x.dtype)
        return self.out_proj(out)
