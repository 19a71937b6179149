"""The Hugging Face config of blalm models (``model_type = "blalm"``): the fields of
:class:`~blalm.model.config.ModelConfig`, flat, plus the usual token ids.

This module is also copied into every exported model folder (``configuration_blalm.py``, see
:mod:`blalm.model.export`), so it imports only ``transformers`` and blalm modules that the export
bundles; it works with transformers 4.51+ and 5.x.
"""

from __future__ import annotations

from dataclasses import fields

from transformers import PretrainedConfig

from blalm.model.config import ModelConfig

BLALM_MODEL_TYPE = "blalm"


class BlalmConfig(PretrainedConfig):
    """``ModelConfig``'s fields as attributes (``num_hidden_layers`` / ``num_attention_heads`` are
    aliases of ``num_layers`` / ``num_heads``). The model ties its embeddings itself
    (``tie_embeddings``), so Hugging Face's ``tie_word_embeddings`` stays False."""

    model_type = BLALM_MODEL_TYPE
    attribute_map = {"num_hidden_layers": "num_layers", "num_attention_heads": "num_heads"}
    keys_to_ignore_at_inference = ["past_key_values", "cache"]   # the cache's old and new output names

    def __init__(self, **kwargs) -> None:
        defaults = ModelConfig()
        values = {f.name: kwargs.pop(f.name, getattr(defaults, f.name)) for f in fields(ModelConfig)}
        kwargs["tie_word_embeddings"] = False
        kwargs.setdefault("use_cache", True)
        super().__init__(**kwargs)
        for name, value in values.items():
            setattr(self, name, value)

    def to_model_config(self) -> ModelConfig:
        """The blalm :class:`ModelConfig` these attributes describe (validated)."""
        config = ModelConfig(**{f.name: getattr(self, f.name) for f in fields(ModelConfig)})
        config.validate()
        return config
