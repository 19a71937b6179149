"""Model stage: the Qwen-style decoder family (Transformer baseline and BLaLM, paper §4 / App. B).

- :mod:`blalm.model.config` — ``ModelConfig`` (``configs/model/*.toml``), no torch import.
- :mod:`blalm.model.decoder` — ``BlalmForCausalLM``, ``ModelOutput``, ``build_model``, ``count_parameters``.
- :mod:`blalm.model.layers` — norms, SwiGLU, RoPE, causal and sliding-window attention, ShortConv, Hedgehog.
- :mod:`blalm.model.mlstm_layer` — the mLSTM mixer with the Table 6 mechanisms.
- :mod:`blalm.model.ops` — mLSTM kernels behind a registry.
- :mod:`blalm.model.cache` — ``DecodingCache``: recurrent mLSTM state, SWA window, conv inputs, KV cache.
- :mod:`blalm.model.generate` — ``generate`` (greedy / temperature / top-k, with the cache), ``generate_text``.
- :mod:`blalm.model.checkpoint` — ``save_model`` / ``load_model`` / ``is_model_checkpoint`` (safetensors + JSON).
- :mod:`blalm.model.hf` — Hugging Face classes (``BlalmConfig``, ``BlalmHFForCausalLM``) and
  ``register_with_transformers``; :mod:`blalm.model.export` — ``export_hf`` (``blalm export``).
- :mod:`blalm.model.cli` — ``blalm model summary``, ``blalm export``, ``blalm generate``.

Names are re-exported lazily so that ``import blalm.model.config`` does not import torch.
"""

from __future__ import annotations

from typing import Any

_EXPORTS = {
    "ModelConfig": "blalm.model.config",
    "BlalmForCausalLM": "blalm.model.decoder",
    "ModelOutput": "blalm.model.decoder",
    "build_model": "blalm.model.decoder",
    "count_parameters": "blalm.model.decoder",
    "load_model_config": "blalm.model.cli",
    "model_summary": "blalm.model.cli",
    "DecodingCache": "blalm.model.cache",
    "generate": "blalm.model.generate",
    "generate_text": "blalm.model.generate",
    "save_model": "blalm.model.checkpoint",
    "load_model": "blalm.model.checkpoint",
    "is_model_checkpoint": "blalm.model.checkpoint",
    "export_hf": "blalm.model.export",
    "register_with_transformers": "blalm.model.hf",
    "hf_model_from_blalm": "blalm.model.hf",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'blalm.model' has no attribute {name!r}")
