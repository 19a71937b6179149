"""Load a model and its tokenizer for evaluation: ``load_for_eval(path) -> (model, tokenizer)``.

This is the one place that knows model formats. It reads

* a blalm checkpoint (``model.safetensors`` + ``model_config.json`` + tokenizer files, as
  ``blalm.model.checkpoint.save_model`` and the trainer write them), wrapped as a Hugging Face
  model in the same process, and
* any Hugging Face causal-LM folder (``config.json`` + weights + tokenizer files), as the official
  pipeline does: ``AutoModelForCausalLM.from_pretrained(path, trust_remote_code=True)`` and
  ``AutoTokenizer.from_pretrained(path, trust_remote_code=True)``.

The rest of the stage only sees the (model, tokenizer) pair.

Checks, each an :class:`~blalm.errors.InputError` naming the folder:

* the folder exists and holds a ``config.json``;
* the tokenizer is a *fast* tokenizer (scoring needs character offsets);
* the tokenizer's vocabulary fits the model: every id it can produce (``len(tokenizer)``) has a row
  in the input embedding and a column in the output logits. A model may have more rows than the
  tokenizer has tokens (padded vocabularies), never fewer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from blalm.errors import InputError


def load_for_eval(path: str | Path, device: str = "cpu", dtype: Any = None) -> tuple[Any, Any]:
    """The model (on ``device``, in eval mode) and its tokenizer from the folder at ``path``.

    ``dtype``: a torch dtype (or ``"auto"``) to load the weights in; None keeps transformers' default.
    """
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise InputError(f"{folder}: model folder not found")
    from blalm.model.checkpoint import is_model_checkpoint

    if is_model_checkpoint(folder):
        return load_blalm_checkpoint(folder, device, dtype)
    if not (folder / "config.json").is_file():
        raise InputError(f"{folder}: not a Hugging Face model folder (no config.json); "
                         f"give the folder written by save_pretrained")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder), trust_remote_code=True)
    except Exception as exc:  # transformers raises many kinds here
        raise InputError(f"{folder}: cannot load the tokenizer: {exc}") from None
    if not getattr(tokenizer, "is_fast", False):
        raise InputError(f"{folder}: the tokenizer is not a fast (Rust) tokenizer; evaluation needs "
                         f"its character offsets (save a tokenizer.json)")
    kwargs: dict[str, Any] = {"trust_remote_code": True}
    if dtype is not None:
        kwargs["dtype"] = dtype
    try:
        model = AutoModelForCausalLM.from_pretrained(str(folder), **kwargs)
    except Exception as exc:
        raise InputError(f"{folder}: cannot load the model: {exc}") from None
    check_vocab(model, tokenizer, folder)
    model.to(_device(device))
    model.eval()
    return model, tokenizer


def load_blalm_checkpoint(folder: Path, device: str, dtype: Any, hf: bool = True) -> tuple[Any, Any]:
    """A blalm checkpoint folder's model (on ``device``, in eval mode) and tokenizer: wrapped as a
    Hugging Face model (``hf``, what the scorers call), or the blalm model itself (``hf=False``, what
    the fine-tuning puts its head on; it spares the process the import of transformers' modelling code)."""
    from blalm.model.checkpoint import load_model
    from blalm.tokenizer.train import load_tokenizer

    if not (folder / "tokenizer.json").is_file():
        raise InputError(f"{folder}: this blalm checkpoint has no tokenizer files (tokenizer.json); "
                         f"save it with save_model(..., tokenizer_dir=...) or export it with blalm export")
    tokenizer = load_tokenizer(folder)
    model = load_model(folder, dtype=None if dtype in (None, "auto") else dtype)
    if hf:
        from blalm.model.hf_model import hf_model_from_blalm  # not blalm.model.hf: no Auto registration

        model = hf_model_from_blalm(model, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                                    pad_token_id=tokenizer.pad_token_id)
    check_vocab(model, tokenizer, folder)
    model.to(_device(device))
    model.eval()
    return model, tokenizer


def check_vocab(model: Any, tokenizer: Any, where: str | Path = "model") -> None:
    """InputError unless every token id of ``tokenizer`` is inside the model's vocabulary."""
    n_tok = len(tokenizer)
    emb = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    rows = getattr(emb, "num_embeddings", None)
    if rows is None and hasattr(emb, "weight"):
        rows = emb.weight.shape[0]
    out = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    cols = getattr(out, "out_features", None) if out is not None else None
    cfg_vocab = getattr(getattr(model, "config", None), "vocab_size", None)
    for what, size in (("input embedding", rows), ("output layer", cols), ("config vocab_size", cfg_vocab)):
        if size is not None and n_tok > size:
            raise InputError(f"{where}: the tokenizer has {n_tok} tokens but the model's {what} has "
                             f"only {size}; this tokenizer does not belong to this model")


def _device(device: str):
    """The run room's device helper (``"auto"`` resolved; CUDA without a GPU is an error)."""
    from blalm.run.device import resolve_device

    return resolve_device(device)
