"""The classification model: a pretrained decoder plus a head on the LAST real token.

``SequenceClassifier(backbone, num_labels)`` runs the decoder on right-padded input, takes the
final (normed) hidden state of each row's last real token (position ``attention_mask.sum(1) - 1``)
and applies the official pipeline's head (:class:`ClassifierHead`). For a causal decoder the last
real token is the only position that has seen the whole input.

``backbone`` is either a blalm decoder (``BlalmForCausalLM``, also the copy bundled in an exported
Hugging Face folder): its final norm's output is read and the forward stops there, so the
vocabulary projection is never computed; or a Hugging Face base model (``AutoModelForCausalLM``'s
``base_model``, e.g. ``GPT2Model``, ``LlamaModel``), whose ``last_hidden_state`` is read (after the
final norm in every standard causal LM).

With ``--compile`` the backbone's decoder blocks are compiled one by one
(:func:`blalm.model.compile.compile_backbone`); ``width_multiple`` says what batch widths are
rounded up to for them.

Note: the official BabyLM 2025 fine-tuning script pools the FIRST token's hidden state for causal
models too (evaluation-pipeline-2025 issue #38), which for a decoder sees only the first token; we
read the last real token instead, so our GLUE numbers are not comparable to that bug's.
"""

from __future__ import annotations

import functools
import inspect
import math

import torch
from torch import Tensor, nn


def last_token_states(hidden: Tensor, attention_mask: Tensor) -> Tensor:
    """``hidden (B, S, H)`` -> ``(B, H)``: each row's state at its last real token (right padding).

    Every row must hold at least one real token; :func:`pad_batch` checks that on the CPU, so this
    function reads nothing back from the device (no host sync per step)."""
    last = attention_mask.long().sum(dim=1) - 1
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), last.to(hidden.device)]


def is_blalm_decoder(module: nn.Module) -> bool:
    """A blalm decoder (ours or the copy bundled with an exported folder: matched by class name)."""
    return type(module).__name__ == "BlalmForCausalLM" and isinstance(getattr(module, "norm", None), nn.Module)


class _Stop(Exception):
    """Raised by the norm hook to skip the (unused) vocabulary projection."""


def final_hidden_states(backbone: nn.Module, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
    """``(B, S, H)``: the backbone's final (normed) hidden states."""
    if is_blalm_decoder(backbone):
        captured: list[Tensor] = []

        def hook(_module, _inputs, output):
            captured.append(output)
            raise _Stop

        handle = backbone.norm.register_forward_hook(hook)
        try:
            # no attention_mask: the blalm decoder's mixers are causal and need none under right padding
            # (which pad_batch builds); the decoder would only check it, two host syncs per forward
            backbone(input_ids)
        except _Stop:
            pass
        finally:
            handle.remove()
        if not captured:   # pragma: no cover - a decoder whose forward skips its final norm
            raise RuntimeError("the blalm decoder's final norm did not run")
        return captured[-1]
    # no decoding cache: nothing reads it, and filling it costs time (and recompiles compiled blocks)
    extra = {"use_cache": False} if _takes_use_cache(type(backbone)) else {}
    out = backbone(input_ids=input_ids, attention_mask=attention_mask, **extra)
    hidden = getattr(out, "last_hidden_state", None)
    return hidden if hidden is not None else out[0]


@functools.cache
def _takes_use_cache(cls: type) -> bool:
    return "use_cache" in inspect.signature(cls.forward).parameters


class ClassifierHead(nn.Sequential):
    """The official pipeline's classification head (``evaluation_pipeline/finetune/classifier_model.py``,
    ``ClassifierHead``), layer for layer: LayerNorm (no affine) -> Linear(h, h) -> GELU -> LayerNorm
    (no affine) -> Dropout -> Linear(h, labels), PyTorch's default initialisation; its state dict has
    the official ``nonlinearity``'s keys (``1.weight`` ... ``5.bias``)."""

    def __init__(self, hidden: int, num_labels: int, dropout: float = 0.1, eps: float = 1e-5) -> None:
        super().__init__(nn.LayerNorm(hidden, eps, elementwise_affine=False), nn.Linear(hidden, hidden), nn.GELU(),
                         nn.LayerNorm(hidden, eps, elementwise_affine=False), nn.Dropout(dropout),
                         nn.Linear(hidden, num_labels))


class SequenceClassifier(nn.Module):
    def __init__(self, backbone: nn.Module, num_labels: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = ClassifierHead(backbone.config.hidden_size, num_labels, dropout)

    def pooled(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """The head's input: the last real token's final hidden state (after the final norm)."""
        return last_token_states(final_hidden_states(self.backbone, input_ids, attention_mask), attention_mask)

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """Logits ``(B, num_labels)`` (float32 outside autocast; under CUDA autocast the head's matmul
        runs in its dtype and the loss is taken in float32 by the caller)."""
        return self.head(self.pooled(input_ids, attention_mask).float())


def pad_batch(sequences: list[list[int]], pad_id: int, multiple: int = 1) -> tuple[Tensor, Tensor]:
    """Right-padded ``input_ids`` and ``attention_mask`` of a list of token-id lists (on the CPU;
    the caller moves them to its device). The width is the longest sequence rounded up to a
    multiple of ``multiple`` (see :func:`width_multiple`). Every sequence needs at least one token
    (ValueError otherwise): the head reads the last real one."""
    if not sequences:
        raise ValueError("pad_batch needs at least one sequence")
    if any(len(s) == 0 for s in sequences):
        empty = [i for i, s in enumerate(sequences) if len(s) == 0]
        raise ValueError(f"every sequence needs at least one token; rows {empty[:10]} of the batch are empty")
    width = max(len(s) for s in sequences)
    width = -(-width // multiple) * multiple
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for i, s in enumerate(sequences):
        ids[i, :len(s)] = torch.tensor(s, dtype=torch.long)
        mask[i, :len(s)] = 1
    return ids, mask


# ----------------------------------------------------------------------------------------------
# Regional compilation (FinetuneConfig.compile): blalm.model.compile, shared with the scoring

CUDAGRAPH_WIDTH_MULTIPLE = 64   # compile_mode reduce-overhead: a CUDA graph per width, so widths in steps of 64


def compiled_width_multiple(backbone: nn.Module, cfg) -> int:
    """What a fine-tuning run (``FinetuneConfig`` ``cfg``) rounds batch widths up to: 1 eager,
    :func:`width_multiple` compiled, and a multiple of :data:`CUDAGRAPH_WIDTH_MULTIPLE` too with
    ``compile_mode = "reduce-overhead"`` (each width a CUDA graph of its own: at most
    ``max_length / 64`` of them per mode, instead of one per width that a task's lengths make)."""
    if not cfg.compile:
        return 1
    multiple = width_multiple(backbone)
    return math.lcm(multiple, CUDAGRAPH_WIDTH_MULTIPLE) if cfg.compile_mode == "reduce-overhead" else multiple


def width_multiple(backbone: nn.Module) -> int:
    """What compiled batches round their width up to: the chunk size for a blalm mLSTM decoder
    whose kernel is chunked (chunkwise, or auto's choice on the CPU), else 1 (no rounding).

    The chunkwise kernel loops over ``ceil(S / chunk)`` chunks in Python and pads a partial last
    chunk, so under ``torch.compile`` every chunk count, with and without a partial chunk, is a
    graph of its own; widths that are whole chunks halve those graphs (at most
    ``max_length / chunk`` per mode). The extra positions are padding after every real token, so
    the causal decoder's result at the last real token is the same (up to float rounding)."""
    config = getattr(backbone, "config", None)
    if is_blalm_decoder(backbone) and getattr(config, "mixer", None) == "mlstm":
        kernel_for = getattr(backbone.layers[0].mixer, "kernel_for", None)   # absent in exports before it
        chunked = (kernel_for(next(backbone.parameters()).device.type).chunk_size if kernel_for is not None
                   else getattr(config, "mlstm_kernel", None) == "chunkwise")
        if chunked:
            return int(config.chunk_size)
    return 1
