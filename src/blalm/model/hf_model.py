"""The Hugging Face face of a blalm model: ``BlalmHFForCausalLM`` (a ``PreTrainedModel`` with
``GenerationMixin``) around :class:`~blalm.model.decoder.BlalmForCausalLM`, whose parameters sit
under ``model.``.

- ``forward(input_ids, attention_mask=None, labels=None, past_key_values=None, use_cache=None)``
  (``cache=`` is the same as ``past_key_values=``) returns ``CausalLMOutputWithPast`` with
  ``.logits``, ``.loss`` (with labels) and, when caching, the cache under the name the installed
  transformers uses (``.cache`` from 5.2x, ``.past_key_values`` before): a blalm :class:`~blalm.model.cache.DecodingCache` (recurrent mLSTM state,
  SWA window, conv inputs or attention KV), not a Hugging Face ``Cache``. ``attention_mask``
  takes right padding (the BabyLM pipeline's default); left padding is refused.
- ``generate()``: Hugging Face's loop with our cache. The model declines Hugging Face's default
  ``DynamicCache`` and builds its own in the first forward; ``prepare_inputs_for_generation``
  then feeds only the new token. This route is the same in transformers 4.51 and 5.x. Prompts
  in one batch must have the same length (no padding) when generating.

This module is also copied into every exported model folder (``modeling_blalm.py``, see
:mod:`blalm.model.export`): it imports only ``torch``, ``transformers`` and bundled blalm modules.
"""

from __future__ import annotations

from dataclasses import asdict, fields

import torch
from torch import Tensor, nn
from transformers import GenerationMixin, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutputWithPast

from blalm.model.cache import DecodingCache
from blalm.model.decoder import BlalmForCausalLM
from blalm.model.hf_config import BlalmConfig

# transformers renamed the outputs' and generation's cache from ``past_key_values`` to ``cache``
# (5.2x; the old name still works there but warns on every call). The model answers to both
# names and returns its cache under the name the installed transformers uses.
CACHE_FIELD = "cache" if "cache" in {f.name for f in fields(CausalLMOutputWithPast)} else "past_key_values"


class BlalmHFForCausalLM(PreTrainedModel, GenerationMixin):
    config_class = BlalmConfig
    base_model_prefix = "model"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = False
    _no_split_modules = ["DecoderLayer"]
    _supports_cache_class = False   # transformers 4.x: no DynamicCache, the model brings its own

    def __init__(self, config: BlalmConfig) -> None:
        super().__init__(config)
        self.model = BlalmForCausalLM(config.to_model_config())
        self.post_init()

    @classmethod
    def _supports_default_dynamic_cache(cls) -> bool:   # transformers 4.x and 5.x ask this
        return False

    def _init_weights(self, module: nn.Module) -> None:
        """Nothing: ``BlalmForCausalLM`` initialises itself, and checkpoints hold every weight."""

    def get_input_embeddings(self) -> nn.Embedding:
        return self.model.embed_tokens

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.model.embed_tokens = value

    def get_output_embeddings(self) -> nn.Linear | None:
        return self.model.lm_head

    def set_output_embeddings(self, value: nn.Linear) -> None:
        self.model.lm_head = value

    def forward(
        self,
        input_ids: Tensor | None = None,
        attention_mask: Tensor | None = None,
        labels: Tensor | None = None,
        past_key_values: DecodingCache | None = None,
        use_cache: bool | None = None,
        return_dict: bool | None = None,
        cache: DecodingCache | None = None,
        **kwargs,
    ) -> CausalLMOutputWithPast | tuple:
        past_key_values = cache if cache is not None else past_key_values
        if kwargs.get("inputs_embeds") is not None:
            raise ValueError("blalm models take input_ids, not inputs_embeds")
        if input_ids is None:
            raise ValueError("input_ids are required")
        cache = past_key_values if isinstance(past_key_values, DecodingCache) else None
        if past_key_values is not None and cache is None:
            seen = past_key_values.get_seq_length() if hasattr(past_key_values, "get_seq_length") else None
            if seen != 0:
                raise ValueError(f"past_key_values must be the DecodingCache a blalm model returned; got "
                                 f"{type(past_key_values).__name__}")
        if cache is None and use_cache:
            cache = self.model.new_cache()
        mask = attention_mask
        if cache is not None and attention_mask is not None:
            # generation passes the mask of the whole sequence so far; cached input must be unpadded
            if not bool(attention_mask.bool().all()):
                raise ValueError("blalm's decoding cache takes unpadded prompts (every row the same length); "
                                 "generate padded prompts one at a time")
            mask = None
        out = self.model(input_ids, attention_mask=mask, labels=labels, cache=cache)
        result = CausalLMOutputWithPast(loss=out.loss, logits=out.logits, **{CACHE_FIELD: cache})
        return result.to_tuple() if return_dict is False else result

    def prepare_inputs_for_generation(self, input_ids: Tensor, past_key_values=None, attention_mask=None,
                                      use_cache: bool = True, cache=None, **kwargs) -> dict:
        given = cache if cache is not None else past_key_values
        cache = given if isinstance(given, DecodingCache) else None
        if cache is not None and use_cache:
            input_ids = input_ids[:, cache.seen_tokens:]
        return {"input_ids": input_ids, "attention_mask": attention_mask, "past_key_values": cache,
                "use_cache": use_cache}

    def _reorder_cache(self, past_key_values: DecodingCache, beam_idx: Tensor) -> DecodingCache:
        return past_key_values.reorder_cache(beam_idx)


def hf_model_from_blalm(model: BlalmForCausalLM, **config_kwargs) -> BlalmHFForCausalLM:
    """Wrap an existing blalm model (sharing its parameters) as a Hugging Face model, e.g. to run
    Hugging Face tools on it in the same process. ``config_kwargs``: extra config attributes such
    as ``bos_token_id`` / ``eos_token_id`` / ``pad_token_id``."""
    config = BlalmConfig(**asdict(model.config), **config_kwargs)
    with torch.device("meta"):
        wrapper = BlalmHFForCausalLM(config)
    wrapper.model = model
    return wrapper.to(next(model.parameters()).device)
