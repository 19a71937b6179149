"""Log-probabilities from a causal LM, batched, as the official BabyLM 2025 pipeline defines them.

**Sequence scores** (``sentence_zero_shot/dataset.py`` ``process_causal_sentences`` and
``get_causal_collate_fn``, ``compute_results.py`` ``compute_causal_results``). A candidate text is
tokenized with the tokenizer's own special tokens (``tokenizer(text)``, i.e.
``add_special_tokens=True``) and with offsets. The model reads ``ids[:-1]`` and predicts
``ids[1:]``; the score is the sum of ``log_softmax(logits)[target]`` over the target positions whose
token overlaps the scored completion, i.e. whose character span ends after
``start = len(text) − len(completion) + offset_of_first_token``. Position 0 is never a target. So:

* a tokenizer that **adds BOS itself** (Llama-style post-processor): BOS is position 0, every token
  of the text is scored;
* a tokenizer that **adds nothing** (GPT-2, and ours): the text's first token is position 0 and is
  *not* scored — the pipeline never sees P(first token);
* when the completion is only the end of the text (EWoK targets, entity-tracking options), a token
  straddling the boundary (``" the"`` after ``"contains"``) is scored.

**The BOS switch** (``prepend_bos``, CLI ``--prepend-bos``): our tokenizers define ``<|bos|>`` but
do not add it. The pipeline's logic is "whatever the tokenizer adds", so the default
``prepend_bos=False`` scores our models exactly as the official pipeline would score the same HF
folder (the first token unscored). ``prepend_bos=True`` puts ``tokenizer.bos_token_id`` first
whenever the tokenizer did not already, so the first token is scored too — the same numbers the
pipeline gives for a tokenizer that adds BOS. It changes nothing for a tokenizer that already
adds BOS. Reading-task contexts follow the same switch.

**Numerics and batching** (ours; the pipeline batches in file order): identical token sequences are
scored once; sequences are sorted by length, right-padded, and run with an ``attention_mask`` in
one forward pass per batch; ``log_softmax`` is taken in float32 whatever the model's dtype (the
pipeline takes it in the logits' dtype, so a bf16 model differs there) and the selected
log-probabilities are summed in float64. Padding and order change no score (beyond
float rounding of the forward pass), which the tests check against unbatched scoring.

**Next-token probabilities** (reading, ``reading/evaluation_functions.py`` ``get_p2``): the
probability of a word after a context is the product over the word's tokens (tokenized without
special tokens and *without a leading space*, as the pipeline does) of
``P(token_k | tokenize(context + decode(token_0) + … + decode(token_{k−1})))`` — each step
re-tokenizes the extended string, and the target of step k ≥ 1 is the first token of
``tokenize(decode(token_k))``; the context is tokenized with the tokenizer's special tokens (plus
BOS under ``prepend_bos``) and the prediction is read at its last position.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Sequence

from blalm.errors import InputError


@dataclass(frozen=True)
class Encoded:
    """A tokenized candidate: token ids and the target positions (≥ 1) whose log-probs are summed."""

    ids: tuple[int, ...]
    scored: tuple[int, ...]


def bos_to_prepend(tokenizer: Any, prepend_bos: bool) -> int | None:
    """The BOS id to put first under ``prepend_bos``, or None when the switch is off."""
    if not prepend_bos:
        return None
    if tokenizer.bos_token_id is None:
        raise InputError(f"{getattr(tokenizer, 'name_or_path', 'tokenizer')}: --prepend-bos asked, "
                         f"but the tokenizer defines no BOS token")
    return int(tokenizer.bos_token_id)


def encode_candidates(tokenizer: Any, sentences: Sequence[str], completions: Sequence[str],
                      prepend_bos: bool = False) -> list[Encoded]:
    """Tokenize candidates and mark the positions scored (see the module docstring)."""
    if len(sentences) != len(completions):
        raise ValueError("sentences and completions differ in length")
    if not sentences:
        return []
    bos = bos_to_prepend(tokenizer, prepend_bos)
    enc = tokenizer(list(sentences), return_offsets_mapping=True)
    out = []
    for sentence, completion, ids, offsets in zip(sentences, completions, enc["input_ids"],
                                                  enc["offset_mapping"]):
        if not sentence.endswith(completion):
            raise ValueError(f"the completion {completion!r} is not the end of {sentence!r}")
        ids = [int(i) for i in ids]
        offsets = [tuple(o) for o in offsets]
        start = len(sentence) - len(completion) + (offsets[0][0] if offsets else 0)
        if bos is not None and (not ids or ids[0] != bos):
            ids = [bos] + ids
            offsets = [(0, 0)] + offsets
        scored = tuple(i for i in range(1, len(ids)) if offsets[i][1] > start)
        out.append(Encoded(ids=tuple(ids), scored=scored))
    return out


def model_device(model: Any):
    import torch

    try:
        return next(model.parameters()).device
    except StopIteration:  # pragma: no cover - a model without parameters
        return torch.device("cpu")


def _accepts_use_cache(model: Any) -> bool:
    try:
        params = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):  # pragma: no cover
        return False
    return "use_cache" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def forward_logits(model: Any, input_ids, attention_mask):
    """The model's logits for a padded batch (HF output object or a tuple whose first item is logits)."""
    kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
    if _accepts_use_cache(model):
        kwargs["use_cache"] = False
    out = model(**kwargs)
    logits = out[0] if isinstance(out, tuple) else out.logits
    if logits.dim() != 3 or logits.shape[:2] != input_ids.shape:
        raise InputError(f"the model returned logits of shape {tuple(logits.shape)} for input "
                         f"{tuple(input_ids.shape)}; expected (batch, length, vocab)")
    return logits


def _check_ids(max_id: int, vocab: int) -> None:
    if max_id >= vocab:
        raise InputError(f"token id {max_id} is outside the model's output vocabulary of {vocab}; "
                         f"the tokenizer does not match the model")


def _batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches, longest first (stable for equal lengths)."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def sequence_logprobs(model: Any, seqs: Sequence[Encoded], batch_size: int = 64, progress: bool = False,
                      desc: str = "scoring") -> list[float]:
    """Summed log-probability of each sequence's scored positions (0.0 when none is scored)."""
    import torch
    from tqdm import tqdm

    unique: dict[Encoded, int] = {}
    for s in seqs:
        unique.setdefault(s, len(unique))
    todo = [s for s in unique if s.scored]
    results: dict[Encoded, float] = {s: 0.0 for s in unique if not s.scored}
    if todo:
        if any(len(s.ids) < 2 for s in todo):  # pragma: no cover - scored implies len >= 2
            raise ValueError("a scored sequence needs at least two tokens")
        device = model_device(model)
        batches = _batches([len(s.ids) for s in todo], batch_size)
        with torch.inference_mode():
            for batch in tqdm(batches, desc=desc, unit="batch", disable=not progress, leave=False):
                rows = [todo[i] for i in batch]
                width = max(len(r.ids) for r in rows)
                ids = torch.zeros((len(rows), width), dtype=torch.long)
                mask = torch.zeros((len(rows), width), dtype=torch.long)
                pick = torch.zeros((len(rows), width - 1), dtype=torch.bool)
                for j, r in enumerate(rows):
                    ids[j, :len(r.ids)] = torch.tensor(r.ids)
                    mask[j, :len(r.ids)] = 1
                    pick[j, [p - 1 for p in r.scored]] = True
                logits = forward_logits(model, ids[:, :-1].to(device), mask[:, :-1].to(device))
                _check_ids(int(ids.max()), logits.shape[-1])
                # only positions from the batch's first scored one on enter the float32 log-softmax
                first = min(r.scored[0] for r in rows) - 1
                logp = torch.log_softmax(logits[:, first:].float(), dim=-1)
                target = logp.gather(-1, ids[:, 1 + first:].to(device).unsqueeze(-1)).squeeze(-1)
                target = torch.where(pick[:, first:].to(device), target, torch.zeros_like(target))
                sums = target.double().sum(dim=1).cpu().tolist()
                for r, v in zip(rows, sums):
                    results[r] = float(v)
    return [results[s] for s in seqs]


def next_token_logprobs(model: Any, queries: Sequence[tuple[tuple[int, ...], int]], batch_size: int = 64,
                        progress: bool = False, desc: str = "next-token") -> list[float]:
    """``log P(target | context)`` for each ``(context ids, target id)``, read at the context's last
    position; each distinct context is run once."""
    import torch
    from tqdm import tqdm

    contexts: dict[tuple[int, ...], int] = {}
    for ctx, _ in queries:
        if not ctx:
            raise ValueError("an empty context cannot predict a next token")
        contexts.setdefault(ctx, len(contexts))
    ctx_list = list(contexts)
    wanted: dict[tuple[int, ...], set[int]] = {}
    for ctx, tgt in queries:
        wanted.setdefault(ctx, set()).add(int(tgt))
    got: dict[tuple[tuple[int, ...], int], float] = {}
    device = model_device(model)
    with torch.inference_mode():
        for batch in tqdm(_batches([len(c) for c in ctx_list], batch_size), desc=desc, unit="batch",
                          disable=not progress, leave=False):
            rows = [ctx_list[i] for i in batch]
            width = max(len(r) for r in rows)
            ids = torch.zeros((len(rows), width), dtype=torch.long)
            mask = torch.zeros((len(rows), width), dtype=torch.long)
            for j, r in enumerate(rows):
                ids[j, :len(r)] = torch.tensor(r)
                mask[j, :len(r)] = 1
            logits = forward_logits(model, ids.to(device), mask.to(device))
            _check_ids(max(int(ids.max()), max(max(wanted[r]) for r in rows)), logits.shape[-1])
            last = torch.tensor([len(r) - 1 for r in rows], device=device)
            logp = torch.log_softmax(logits[torch.arange(len(rows), device=device), last].float(), dim=-1)
            logp = logp.cpu()
            for j, r in enumerate(rows):
                for t in wanted[r]:
                    got[(r, t)] = float(logp[j, t])
    return [got[(ctx, int(t))] for ctx, t in queries]


def encode_context(tokenizer: Any, text: str, bos: int | None) -> tuple[int, ...]:
    ids = [int(i) for i in tokenizer(text)["input_ids"]]
    if bos is not None and (not ids or ids[0] != bos):
        ids = [bos] + ids
    return tuple(ids)


def word_queries(tokenizer: Any, context: str, word: str, prepend_bos: bool = False
                 ) -> list[tuple[tuple[int, ...], int]]:
    """The ``(context ids, target id)`` steps whose log-probs sum to ``log P(word | context)`` under the
    pipeline's ``get_p2`` (see the module docstring)."""
    bos = bos_to_prepend(tokenizer, prepend_bos)
    target = [int(i) for i in tokenizer(word, add_special_tokens=False)["input_ids"]]
    if not target:
        raise ValueError(f"the word {word!r} has no tokens")
    steps = [(encode_context(tokenizer, context, bos), target[0])]
    text = context + tokenizer.decode(target[0])
    for tok in target[1:]:
        piece = tokenizer.decode(tok)
        piece_ids = tokenizer(piece, add_special_tokens=False)["input_ids"]
        if not piece_ids:  # pragma: no cover - a token that decodes to nothing
            raise ValueError(f"the token {tok} of {word!r} decodes to an empty string")
        steps.append((encode_context(tokenizer, text, bos), int(piece_ids[0])))
        text = text + piece
    for ctx, _ in steps:
        if not ctx:
            raise ValueError(f"the context {context!r} has no tokens to predict {word!r} from")
    return steps
