"""The decoding cache: what each layer keeps between calls so that generation costs O(1) per token
for the mLSTM (and O(window) for its SWA branch) instead of re-running the whole prefix.

Per layer (filled on first use; ``None`` = nothing seen yet):

- mLSTM mixer (:class:`MLSTMCache`): the recurrent state ``(C, n, m)`` of every head — constant
  size whatever the context length; with ShortConv the last ``conv_kernel - 1`` inputs of the q,
  k and v convolutions; with SWA the last ``swa_window - 1`` rotated keys and their values (the
  learned memory slots are parameters, so they need no cache).
- attention baseline (:class:`AttentionCache`): every key and value seen (a KV cache; grows with
  the context, as softmax attention needs).

:class:`DecodingCache` holds one of these per layer and the number of tokens seen (the RoPE offset
of the next token). Every row of a batch has seen the same tokens: padded batches are not cached.
The cache is updated in place by the model's forward (``model(ids, cache=cache)``).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from torch import Tensor


@dataclass
class MLSTMCache:
    state: tuple[Tensor, Tensor, Tensor] | None = None   # (C, n, m) of the mLSTM kernel
    conv_q: Tensor | None = None    # (B, conv_kernel - 1, D): last inputs of the ShortConv on q
    conv_k: Tensor | None = None
    conv_v: Tensor | None = None
    swa_k: Tensor | None = None     # (B, H, <= swa_window - 1, d): last rotated keys of the SWA branch
    swa_v: Tensor | None = None     # (B, H, <= swa_window - 1, d): their values


@dataclass
class AttentionCache:
    k: Tensor | None = None         # (B, H, T, d): every rotated key so far
    v: Tensor | None = None         # (B, H, T, d)


def _layer_tensors(layer) -> list[Tensor]:
    out: list[Tensor] = []
    for f in fields(layer):
        value = getattr(layer, f.name)
        if isinstance(value, Tensor):
            out.append(value)
        elif isinstance(value, tuple):
            out.extend(t for t in value if isinstance(t, Tensor))
    return out


class DecodingCache:
    """One cache per layer plus ``seen_tokens``; build it with ``model.new_cache()``."""

    def __init__(self, layers: list) -> None:
        self.layers = layers
        self.seen_tokens = 0
        self.batch_size: int | None = None

    def get_seq_length(self, layer_idx: int = 0) -> int:
        """Tokens seen so far (the name Hugging Face's generation code asks for)."""
        return self.seen_tokens

    def tensors(self) -> list[Tensor]:
        """Every tensor the cache holds."""
        return [t for layer in self.layers for t in _layer_tensors(layer)]

    def nbytes(self) -> int:
        """Total bytes of the cache's tensors."""
        return sum(t.numel() * t.element_size() for t in self.tensors())

    def reorder_cache(self, beam_idx: Tensor) -> "DecodingCache":
        """Select batch rows ``beam_idx`` in every tensor (beam search); returns ``self``."""
        for layer in self.layers:
            for f in fields(layer):
                value = getattr(layer, f.name)
                if isinstance(value, Tensor):
                    setattr(layer, f.name, value.index_select(0, beam_idx.to(value.device)))
                elif isinstance(value, tuple):
                    setattr(layer, f.name, tuple(t.index_select(0, beam_idx.to(t.device)) for t in value))
        if self.batch_size is not None:
            self.batch_size = int(beam_idx.numel())
        return self

    def __repr__(self) -> str:
        return (f"DecodingCache(layers={len(self.layers)}, seen_tokens={self.seen_tokens}, "
                f"batch_size={self.batch_size}, nbytes={self.nbytes()})")


def new_decoding_cache(num_layers: int, attention: bool) -> DecodingCache:
    """An empty cache for ``num_layers`` layers of attention (True) or mLSTM (False) mixers."""
    return DecodingCache([AttentionCache() if attention else MLSTMCache() for _ in range(num_layers)])
