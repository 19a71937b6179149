"""blalm models in Hugging Face ``transformers``: registration with the Auto classes.

After :func:`register_with_transformers` (called when this module is imported),
``AutoConfig`` knows ``model_type = "blalm"`` and ``AutoModelForCausalLM`` builds
:class:`~blalm.model.hf_model.BlalmHFForCausalLM`, so an exported folder loads with blalm's own
classes and no ``trust_remote_code``. Without blalm installed, the same folder loads through the
modelling code that ``blalm export`` writes beside the weights (``trust_remote_code=True``).
"""

from __future__ import annotations

from blalm.model.hf_config import BLALM_MODEL_TYPE, BlalmConfig
from blalm.model.hf_model import BlalmHFForCausalLM, hf_model_from_blalm

__all__ = ["BlalmConfig", "BlalmHFForCausalLM", "hf_model_from_blalm", "register_with_transformers"]


def register_with_transformers() -> None:
    """Register ``BlalmConfig`` / ``BlalmHFForCausalLM`` with ``AutoConfig`` and
    ``AutoModelForCausalLM`` (idempotent)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    AutoConfig.register(BLALM_MODEL_TYPE, BlalmConfig, exist_ok=True)
    AutoModelForCausalLM.register(BlalmConfig, BlalmHFForCausalLM, exist_ok=True)


register_with_transformers()
