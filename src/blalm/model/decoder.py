"""The decoder family: one Qwen-style causal LM whose token mixer is softmax attention (the
Transformer baseline) or the mLSTM (BLaLM), chosen by ``ModelConfig.mixer``.

    x = embed(input_ids)
    for each layer:  x = x + mixer(RMSNorm(x));  x = x + SwiGLU(RMSNorm(x))
    logits = lm_head(RMSNorm(x))            (lm_head = the embedding matrix when tie_embeddings)

Padding: ``attention_mask`` (1 real, 0 padding) must be *right* padding. Every mixer is causal
(attention by its causal mask; the mLSTM, the short conv and the sliding window by
construction), so padding placed after a sequence's real tokens can never reach them; no mask is
needed inside the mixers. Left padding is refused rather than silently mis-handled.

Decoding: ``model(ids, cache=model.new_cache())`` runs the prompt and leaves each layer's state in
the cache (see :mod:`blalm.model.cache`); ``model(next_ids, cache=cache)`` then continues from it,
one token (or several) at a time, with the same results as re-running the whole sequence.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from blalm.errors import ConfigError, InputError
from blalm.model.cache import DecodingCache, new_decoding_cache
from blalm.model.config import ModelConfig
from blalm.model.layers import CausalSelfAttention, RMSNorm, RotaryEmbedding, SwiGLU
from blalm.model.mlstm_layer import MLSTMMixer

IGNORE_INDEX = -100


@dataclass
class ModelOutput:
    logits: Tensor               # (B, S, V)
    loss: Tensor | None = None   # mean cross-entropy of next-token prediction, when labels are given
    cache: DecodingCache | None = None   # the decoding cache passed in, updated to include input_ids


class DecoderLayer(nn.Module):
    """Pre-norm residual block: ``x + mixer(norm(x))``, then ``x + ffn(norm(x))``."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.mixer_norm = RMSNorm(config.hidden_size, config.norm_eps)
        if config.mixer == "attention":
            self.mixer = CausalSelfAttention(config.hidden_size, config.num_heads, config.use_qk_norm, config.norm_eps)
        else:
            self.mixer = MLSTMMixer(config)
        self.ffn_norm = RMSNorm(config.hidden_size, config.norm_eps)
        self.ffn = SwiGLU(config.hidden_size, config.intermediate_size)
        self.dropout = nn.Dropout(config.dropout) if config.dropout > 0 else nn.Identity()

    def forward(self, x: Tensor, rope: tuple[Tensor, Tensor], cache=None) -> Tensor:
        x = x + self.dropout(self.mixer(self.mixer_norm(x), rope, cache=cache))
        return x + self.dropout(self.ffn(self.ffn_norm(x)))

    def hidden_matrices(self) -> list[nn.Parameter]:
        return self.mixer.hidden_matrices() + self.ffn.hidden_matrices()


@dataclass
class ParameterGroups:
    """The model's parameters as the optimizers take them (paper §5), each in exactly one list."""

    matrices: list[nn.Parameter]   # the blocks' hidden projections: Muon
    other: list[nn.Parameter]      # embedding, LM head, norms, biases, gates, conv, Hedgehog, memory, α: AdamW


class BlalmForCausalLM(nn.Module):
    """Causal LM of the blalm decoder family (see the module docstring).

    Build on the ``meta`` device for a free parameter count (``with torch.device("meta"): ...``);
    a model moved off ``meta`` with ``to_empty`` needs ``init_weights()`` or a checkpoint's
    weights (the model has no buffers: RoPE tables are computed per call).
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        config.validate()
        self.config = config
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.embed_dropout = nn.Dropout(config.dropout) if config.dropout > 0 else nn.Identity()
        self.layers = nn.ModuleList(DecoderLayer(config) for _ in range(config.num_layers))
        self.norm = RMSNorm(config.hidden_size, config.norm_eps)
        self.lm_head = None if config.tie_embeddings else nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.rotary = RotaryEmbedding(config.head_dim, config.rope_theta, config.max_position_embeddings)
        self.init_weights()

    # -- initialisation ------------------------------------------------------------------------
    def init_weights(self) -> None:
        """Qwen-like init: every Linear and the embedding ~ N(0, init_std), biases 0, norms 1;
        the projections into the residual stream (attention ``o_proj``, mLSTM ``out_proj``, FFN
        ``down_proj``) follow ``residual_init``; then each module's own ``reset_parameters``
        (mLSTM gates, conv, Hedgehog, memory slots, DynMod α)."""
        cfg = self.config
        std = cfg.init_std
        residual_std = {"normal": std, "scaled": std / (2 * cfg.num_layers) ** 0.5, "zero": 0.0}[cfg.residual_init]
        with torch.no_grad():
            nn.init.normal_(self.embed_tokens.weight, 0.0, std)
            for name, module in self.named_modules():
                if isinstance(module, nn.Linear):
                    is_residual = name.endswith(("o_proj", "out_proj", "down_proj"))
                    if is_residual and residual_std == 0.0:
                        nn.init.zeros_(module.weight)
                    else:
                        nn.init.normal_(module.weight, 0.0, residual_std if is_residual else std)
                    if module.bias is not None:
                        nn.init.zeros_(module.bias)
        for module in self.modules():
            if module is not self and hasattr(module, "reset_parameters") and not isinstance(
                    module, (nn.Linear, nn.Embedding)):
                module.reset_parameters()

    def parameter_groups(self) -> ParameterGroups:
        """Muon's matrices (every block's hidden projections, as each layer declares them) and the
        rest, in ``parameters()`` order. The embedding and the LM head are matrices but not hidden
        layers, so they are in ``other``."""
        matrices = [p for layer in self.layers for p in layer.hidden_matrices()]
        declared = {id(p) for p in matrices}
        return ParameterGroups(matrices=matrices, other=[p for p in self.parameters() if id(p) not in declared])

    # -- forward -------------------------------------------------------------------------------
    def new_cache(self) -> DecodingCache:
        """An empty decoding cache for this model (pass it to ``forward`` as ``cache``)."""
        return new_decoding_cache(len(self.layers), attention=self.config.mixer == "attention")

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None,
                labels: Tensor | None = None, cache: DecodingCache | None = None) -> ModelOutput:
        """``input_ids (B, S)`` -> logits ``(B, S, V)``, and the loss when ``labels (B, S)`` are
        given: mean cross-entropy of predicting ``labels[:, t + 1]`` from position t, ignoring
        ``-100`` and (when ``attention_mask`` is given) padded positions.

        ``attention_mask (B, S)``: 1 for real tokens, 0 for right padding (see the module docstring).
        ``cache``: a :class:`DecodingCache` from :meth:`new_cache`; ``input_ids`` then continue the
        tokens the cache has seen (positions shift by ``cache.seen_tokens``) and the cache is
        updated in place. Cached input must be unpadded (every row the same length).
        """
        if input_ids.dim() != 2:
            raise InputError(f"input_ids must be (batch, sequence); got shape {tuple(input_ids.shape)}")
        if attention_mask is not None:
            check_right_padding(attention_mask, input_ids.shape)
        offset = 0
        layer_caches = [None] * len(self.layers)
        if cache is not None:
            self._check_cache(cache, input_ids, attention_mask)
            offset, layer_caches = cache.seen_tokens, cache.layers
        x = self.embed_dropout(self.embed_tokens(input_ids))
        rope = self.rotary(input_ids.shape[1], offset, device=input_ids.device)
        for layer, layer_cache in zip(self.layers, layer_caches):
            x = layer(x, rope, cache=layer_cache)
        if cache is not None:
            cache.seen_tokens += input_ids.shape[1]
            cache.batch_size = input_ids.shape[0]
        x = self.norm(x)
        logits = self.lm_head(x) if self.lm_head is not None else F.linear(x, self.embed_tokens.weight)
        loss = None
        if labels is not None:
            if labels.shape != input_ids.shape:
                raise InputError(f"labels must have the shape of input_ids {tuple(input_ids.shape)}; "
                                 f"got {tuple(labels.shape)}")
            if attention_mask is not None:
                labels = labels.masked_fill(attention_mask == 0, IGNORE_INDEX)
            shifted = logits[:, :-1]
            shifted = shifted if shifted.dtype == torch.float64 else shifted.float()  # at least float32
            loss = F.cross_entropy(shifted.reshape(-1, logits.shape[-1]),
                                   labels[:, 1:].reshape(-1), ignore_index=IGNORE_INDEX)
        return ModelOutput(logits=logits, loss=loss, cache=cache)

    def _check_cache(self, cache: DecodingCache, input_ids: Tensor, attention_mask: Tensor | None) -> None:
        if not isinstance(cache, DecodingCache) or len(cache.layers) != len(self.layers):
            raise InputError(f"cache must be a DecodingCache from model.new_cache() ({len(self.layers)} layers); "
                             f"got {cache!r}")
        if cache.batch_size is not None and cache.batch_size != input_ids.shape[0]:
            raise InputError(f"the cache holds {cache.batch_size} sequences but input_ids has "
                             f"{input_ids.shape[0]} rows")
        if attention_mask is not None and not bool(attention_mask.bool().all()):
            raise InputError("the decoding cache takes unpadded input (every row the same length): "
                             "generate padded prompts one at a time")

    def swa_coefficients(self) -> list[float]:
        """The SWA weight of every layer (1 for "add"/"memory", α or tanh(α) for DynMod; empty
        without SWA), for logging α over training (paper App. G)."""
        out = []
        for layer in self.layers:
            mixer = layer.mixer
            if getattr(mixer, "swa", "none") != "none":
                c = mixer.swa_coefficient()
                out.append(float(c.detach()) if isinstance(c, Tensor) else float(c))
        return out


def check_right_padding(attention_mask: Tensor, shape: torch.Size) -> None:
    """Refuse a mask that is not ``(B, S)`` of 0/1 with the ones first in every row."""
    if tuple(attention_mask.shape) != tuple(shape):
        raise InputError(f"attention_mask must have the shape of input_ids {tuple(shape)}; "
                         f"got {tuple(attention_mask.shape)}")
    mask = attention_mask.long()
    if bool(((mask != 0) & (mask != 1)).any()):
        raise InputError("attention_mask must hold only 0 (padding) and 1 (real token)")
    if bool((mask[:, 1:] > mask[:, :-1]).any()):
        raise InputError("attention_mask is not right padding: blalm models take the real tokens "
                         "first and the padding after them in every row (tokenize with "
                         "padding_side='right')")


def build_model(config: ModelConfig, device: str | torch.device | None = None) -> BlalmForCausalLM:
    """A freshly initialised model on ``device`` (``"meta"`` for a count without memory)."""
    if not isinstance(config, ModelConfig):
        raise ConfigError(f"build_model needs a ModelConfig, got {type(config).__name__}")
    with torch.device(device if device is not None else "cpu"):
        return BlalmForCausalLM(config)


def count_parameters(model: nn.Module) -> dict[str, int]:
    """``total``; ``embedding``: the token embedding plus an untied LM head; ``non_embedding``:
    the rest (the convention of scaling-law papers). Works on ``meta`` models."""
    total = sum(p.numel() for p in model.parameters())
    embedding = 0
    if isinstance(model, BlalmForCausalLM):
        embedding = model.embed_tokens.weight.numel()
        if model.lm_head is not None:
            embedding += model.lm_head.weight.numel()
    return {"total": total, "non_embedding": total - embedding, "embedding": embedding}
