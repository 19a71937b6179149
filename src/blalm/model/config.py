"""The model stage's typed config (``configs/model/*.toml``): one decoder family, two token mixers.

Both models are Qwen-style pre-norm decoders (RMSNorm, SwiGLU FFN, RoPE; paper §4, App. B).
``mixer = "attention"`` is the Transformer baseline (causal softmax self-attention, Qwen3 q/k
norm); ``mixer = "mlstm"`` is BLaLM (an mLSTM token mixer in the xLSTM-7B style). The paper's
lightweight mechanisms (Table 6) are switches on the mLSTM mixer:

==========================  ==========================================================
Table 6 row                 config
==========================  ==========================================================
BLaLM                       (defaults)
ShortConv                   ``short_conv = true``
SWA                         ``swa = "add"``              h = h_mLSTM + h_SWA      (Eq. 5)
SWA with Memory             ``swa = "memory"``           SWA also sees learned memory slots
SWA DynMod                  ``swa = "dynmod"``           h = h_mLSTM + α·h_SWA    (Eq. 6-7)
SWA DynMod Bounded          ``swa = "dynmod_bounded"``   h = h_mLSTM + tanh(α)·h_SWA (poster)
Hedgehog                    ``hedgehog = true``
Hedgehog + SWA              ``hedgehog = true``, ``swa = "add"``
==========================  ==========================================================

Named presets are just config files (``configs/model/``). ``vocab_size`` must equal the
tokenizer's vocabulary (specials included); the trainer overrides it from the tokenizer it
trains with, so a config's value only matters for ``blalm model summary``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from blalm.config import check

Mixer = Literal["attention", "mlstm"]
SWAMode = Literal["none", "add", "memory", "dynmod", "dynmod_bounded"]
ResidualInit = Literal["normal", "scaled", "zero"]

@dataclass
class ModelConfig:
    # --- shared decoder shape (paper App. B: 1024 / 1536 / 16 heads / 15K vocab) ---
    vocab_size: int = 15000            # = the tokenizer's vocabulary incl. specials (the trainer sets it)
    hidden_size: int = 1024
    intermediate_size: int = 1536      # SwiGLU inner width
    num_layers: int = 24               # Transformer 26, BLaLM 24 in the paper
    num_heads: int = 16                # head dim = hidden_size / num_heads
    mixer: Mixer = "mlstm"
    tie_embeddings: bool = False       # share the token embedding with the LM head
    rope_theta: float = 10000.0        # RoPE base (attention baseline and the SWA branch)
    norm_eps: float = 1e-6             # RMSNorm epsilon (block norms, q/k norm, mLSTM head norm)
    max_position_embeddings: int = 512  # nominal context (Hugging Face tools read it); RoPE is computed
    #                                     per call, so longer inputs still work
    init_std: float = 0.02             # normal init std of every projection and the embedding
    residual_init: ResidualInit = "normal"  # projections into the residual stream: "normal" (Qwen),
    #                                         "scaled" (init_std / sqrt(2 * num_layers)) or "zero"
    qk_norm: bool | None = None        # Qwen3 per-head RMSNorm on q and k; None = on for "attention".
    #                                    The mLSTM mixer has no q/k norm (true is refused there)
    dropout: float = 0.0               # training-only dropout on the embedding output and on every
    #                                    mixer and FFN output before its residual add (GPT-2 style
    #                                    residual dropout); 0 = off (the paper's models)

    # --- mLSTM mixer (xLSTM-7B style): kernel and gate initialisation ---
    mlstm_kernel: str = "auto"         # a name in the blalm.model.ops.mlstm registry ("chunkwise",
    #                                    "parallel", "recurrent", "triton", ...), checked when the model is
    #                                    built: one that cannot run here is an error; "auto" = the best
    #                                    that can where the model runs (triton on CUDA when the head sizes
    #                                    fit, chunkwise elsewhere: the CPU runs what "chunkwise" runs)
    chunk_size: int = 64               # chunk length of the chunkwise kernel
    mlstm_eps: float = 1e-6            # epsilon of the mLSTM normaliser max(|n·q|, exp(-m)) + eps
    igate_bias_init: float = -10.0     # input-gate bias (xLSTM-7B: -10, i.e. i_t = exp(-10) at step 0)
    fgate_bias_init_min: float = 3.0   # forget-gate biases: linspace(min, max) over the heads, so
    fgate_bias_init_max: float = 6.0   # f_t = sigmoid(3..6) = 0.95..0.998 at step 0 (xLSTM)
    gate_soft_cap: float = 15.0        # cap * tanh(x / cap) on gate pre-activations (xLSTM-7B); 0 = off

    # --- Table 6 mechanisms (mLSTM mixer only) ---
    short_conv: bool = False           # causal depthwise conv over q, k and v
    conv_kernel: int = 4
    swa: SWAMode = "none"              # sliding-window attention branch, see the module docstring
    swa_window: int = 128              # each query sees itself and the previous swa_window - 1 tokens
    swa_memory_slots: int = 4          # learned persistent key/value slots for swa = "memory"
    dynmod_init: float = 0.0           # initial α of swa = "dynmod" / "dynmod_bounded"
    hedgehog: bool = False             # φ(x) = softmax([Wx, -Wx]) on q and k (doubles their width)

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def use_qk_norm(self) -> bool:
        return self.mixer == "attention" if self.qk_norm is None else self.qk_norm

    def mechanisms(self) -> list[str]:
        """The Table 6 mechanisms switched on, in a stable order (empty for the plain models)."""
        out = []
        if self.short_conv:
            out.append(f"short_conv(k={self.conv_kernel})")
        if self.hedgehog:
            out.append("hedgehog")
        if self.swa != "none":
            extra = f", slots={self.swa_memory_slots}" if self.swa == "memory" else ""
            out.append(f"swa_{self.swa}(window={self.swa_window}{extra})")
        return out

    def validate(self) -> None:
        for name in ("vocab_size", "hidden_size", "intermediate_size", "num_layers", "num_heads",
                     "max_position_embeddings", "chunk_size", "conv_kernel", "swa_window"):
            value = getattr(self, name)
            check(value >= 1, f"{name} must be >= 1, got {value}")
        check(self.hidden_size % self.num_heads == 0,
              f"hidden_size ({self.hidden_size}) must be divisible by num_heads ({self.num_heads}); "
              f"e.g. hidden_size = {self.num_heads * max(1, round(self.hidden_size / self.num_heads))}")
        check(self.head_dim % 2 == 0,
              f"the head dim hidden_size / num_heads = {self.head_dim} must be even (RoPE rotates pairs)")
        check(self.rope_theta > 0, f"rope_theta must be > 0, got {self.rope_theta}")
        check(self.norm_eps > 0, f"norm_eps must be > 0, got {self.norm_eps}")
        check(self.init_std > 0, f"init_std must be > 0, got {self.init_std}")
        check(0.0 <= self.dropout < 1.0, f"dropout must be in [0, 1), got {self.dropout}")
        check(self.mlstm_eps > 0, f"mlstm_eps must be > 0, got {self.mlstm_eps}")
        check(self.gate_soft_cap >= 0, f"gate_soft_cap must be >= 0 (0 = off), got {self.gate_soft_cap}")
        check(self.fgate_bias_init_min <= self.fgate_bias_init_max,
              f"fgate_bias_init_min ({self.fgate_bias_init_min}) must be <= fgate_bias_init_max "
              f"({self.fgate_bias_init_max})")
        check(bool(self.mlstm_kernel), "mlstm_kernel must name a kernel, e.g. 'auto' or 'chunkwise'")
        check(self.swa != "memory" or self.swa_memory_slots >= 1,
              f"swa = 'memory' needs swa_memory_slots >= 1, got {self.swa_memory_slots}")
        if self.mixer == "attention":
            on = [name for name, active in (("short_conv", self.short_conv), ("hedgehog", self.hedgehog),
                                            (f"swa = {self.swa!r}", self.swa != "none")) if active]
            check(not on, f"mixer = 'attention' takes no mLSTM mechanisms, but {', '.join(on)} "
                          f"{'is' if len(on) == 1 else 'are'} set; use mixer = 'mlstm' or switch "
                          f"{'it' if len(on) == 1 else 'them'} off")
        else:
            check(self.qk_norm is not True,
                  "qk_norm = true applies to mixer = 'attention' only; the mLSTM mixer has its own "
                  "per-head output norm (drop qk_norm or set it to false)")
