"""Text generation with the decoding cache: the prompt runs once (the chunkwise kernel, keeping
its last state), then one token per step (:func:`~blalm.model.ops.mlstm.mlstm_step` for the
mLSTM, the window for SWA, the KV cache for attention).

``use_cache=False`` re-runs the whole sequence at every step instead: slow, and the reference
the cached path is tested against.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from blalm.errors import InputError
from blalm.model.decoder import BlalmForCausalLM


def next_token(logits: Tensor, temperature: float = 0.0, top_k: int | None = None,
               generator: torch.Generator | None = None) -> Tensor:
    """Pick one token per row from ``logits (B, V)``: the argmax when ``temperature == 0``, else a
    sample from ``softmax(logits / temperature)`` restricted to the ``top_k`` largest (all if None)."""
    if temperature == 0:
        return logits.argmax(dim=-1)
    scores = logits.float() / temperature
    if top_k is not None and top_k < scores.shape[-1]:
        kth = torch.topk(scores, top_k, dim=-1).values[..., -1:]
        scores = scores.masked_fill(scores < kth, float("-inf"))
    probs = torch.softmax(scores, dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


@torch.no_grad()
def generate(
    model: BlalmForCausalLM,
    input_ids: Tensor,
    max_new_tokens: int,
    *,
    temperature: float = 0.0,
    top_k: int | None = None,
    eos_token_id: int | None = None,
    generator: torch.Generator | None = None,
    use_cache: bool = True,
) -> Tensor:
    """Continue every row of ``input_ids (B, S)`` (or a 1-D prompt) by up to ``max_new_tokens``.

    Greedy when ``temperature == 0`` (the default), else sampling (see :func:`next_token`; pass a
    seeded ``generator`` for repeatable samples). A row that emits ``eos_token_id`` is finished:
    its later positions hold ``eos_token_id`` again, and generation stops once every row is
    finished. Returns ``(B, S + n)`` token ids, prompt included, ``n ≤ max_new_tokens``.
    """
    if input_ids.dim() == 1:
        input_ids = input_ids[None]
    if input_ids.dim() != 2 or input_ids.shape[1] == 0:
        raise InputError(f"the prompt must be (batch, length) token ids with length >= 1; "
                         f"got shape {tuple(input_ids.shape)}")
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 0:
        raise InputError(f"max_new_tokens must be an integer >= 0; got {max_new_tokens!r}")
    if temperature < 0:
        raise InputError(f"temperature must be >= 0 (0 = greedy); got {temperature}")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise InputError(f"top_k must be an integer >= 1 (or None for no limit); got {top_k!r}")
    device = next(model.parameters()).device
    sequence = input_ids.to(device)
    finished = torch.zeros(sequence.shape[0], dtype=torch.bool, device=device)
    cache = model.new_cache() if use_cache else None
    step_input = sequence
    for _ in range(max_new_tokens):
        logits = model(step_input if use_cache else sequence, cache=cache).logits[:, -1]
        token = next_token(logits, temperature, top_k, generator)
        if eos_token_id is not None:
            token = token.masked_fill(finished, eos_token_id)
            finished |= token == eos_token_id
        sequence = torch.cat((sequence, token[:, None]), dim=1)
        step_input = token[:, None]
        if eos_token_id is not None and bool(finished.all()):
            break
    return sequence


START_TOKENS = ("eos", "bos", "none")


def generate_text(
    checkpoint: str | Path,
    prompt: str,
    max_new_tokens: int = 50,
    *,
    temperature: float = 0.0,
    top_k: int | None = None,
    seed: int = 0,
    tokenizer_dir: str | Path | None = None,
    start_token: str = "eos",
    device: str = "cpu",
) -> dict[str, Any]:
    """Continue ``prompt`` with the model in the checkpoint folder ``checkpoint``.

    The tokenizer is the checkpoint's own copy unless ``tokenizer_dir`` is given. ``start_token``
    goes before the prompt: ``"eos"`` (default: training streams put EOS after every line, so
    text after an EOS is the start of a new line/document, as the model saw it), ``"bos"`` or
    ``"none"``. Generation stops at EOS. Returns the prompt, the completion text, the new token
    ids and the settings.
    """
    from blalm.model.checkpoint import checkpoint_tokenizer_dir, load_model
    from blalm.tokenizer.train import load_tokenizer

    if start_token not in START_TOKENS:
        raise InputError(f"start token {start_token!r} must be one of {', '.join(START_TOKENS)}")
    checkpoint = Path(checkpoint).expanduser()
    model = load_model(checkpoint, device=device)
    tok_dir = Path(tokenizer_dir).expanduser() if tokenizer_dir is not None else checkpoint_tokenizer_dir(checkpoint)
    if tok_dir is None:
        raise InputError(f"{checkpoint}: the checkpoint holds no tokenizer; pass the tokenizer folder it was "
                         f"trained with (--tokenizer DIR)")
    tokenizer = load_tokenizer(tok_dir)
    ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    start = {"eos": tokenizer.eos_token_id, "bos": tokenizer.bos_token_id, "none": None}[start_token]
    if start is not None:
        ids = [start] + ids
    if not ids:
        raise InputError("the prompt is empty and start token is 'none': give a prompt or a start token")
    generator = torch.Generator(device=device).manual_seed(seed)
    out = generate(model, torch.tensor([ids], device=device), max_new_tokens, temperature=temperature,
                   top_k=top_k, eos_token_id=tokenizer.eos_token_id, generator=generator)
    new_ids = out[0, len(ids):].tolist()
    if tokenizer.eos_token_id in new_ids:
        new_ids = new_ids[:new_ids.index(tokenizer.eos_token_id)]
    return {"prompt": prompt, "completion": tokenizer.decode(new_ids), "new_token_ids": new_ids,
            "checkpoint": str(checkpoint), "temperature": temperature, "top_k": top_k, "seed": seed,
            "start_token": start_token, "max_new_tokens": max_new_tokens}
