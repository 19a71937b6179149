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
scored once; sequences are sorted by length and packed into batches of at most ``token_budget``
padded tokens (and at most ``batch_size`` rows), right-padded, one forward pass per batch;
``log_softmax`` is taken in float32 whatever the model's dtype (the pipeline takes it in the
logits' dtype, so a bf16 model differs there), only at the positions scored, and the selected
log-probabilities are summed in float64. Padding, batching and order change no score (beyond float
rounding of the forward pass), which the tests check against unbatched scoring. Nothing is read back
from the device until a task's last batch is done (one copy per call).

**Shared prefixes** (blalm models, ``model_type = "blalm"``): candidates whose token sequences share
at least ``shared_prefix_min`` leading tokens (entity tracking: the story before each option) run the
shared tokens once and the rest of each candidate from the model's decoding cache (the recurrent
mLSTM state, or the attention KV cache). The log-probabilities are the same function of the same
tokens, so the scores equal those of the unshared path within float rounding (tested).

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

import numpy as np

from blalm.errors import InputError
from blalm.eval.batching import Batching, SharedGroup, plan_batches, plan_shared_batches, shared_prefix_groups


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


def is_blalm_model(model: Any) -> bool:
    """A blalm model (native or exported): right-padded logits need no mask, and its decoding cache
    continues a batch of prefixes (the shared-prefix path)."""
    return getattr(getattr(model, "config", None), "model_type", None) == "blalm"


def _accepts_use_cache(model: Any) -> bool:
    try:
        params = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):  # pragma: no cover
        return False
    return "use_cache" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def forward_logits(model: Any, input_ids, attention_mask, use_cache_kw: bool | None = None):
    """The model's logits for a padded batch (HF output object or a tuple whose first item is logits).
    ``attention_mask=None``: no mask (blalm models, whose logits do not depend on right padding)."""
    kwargs = {"input_ids": input_ids}
    if attention_mask is not None:
        kwargs["attention_mask"] = attention_mask
    if use_cache_kw if use_cache_kw is not None else _accepts_use_cache(model):
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


class _Forward:
    """One model's forward passes for scoring: the plain forward, the shared-prefix passes through
    the decoding cache, and what was checked once."""

    def __init__(self, model: Any, batching: Batching) -> None:
        self.model = model
        self.batching = batching
        self.device = model_device(model)
        self.mask_free = is_blalm_model(model)
        self.use_cache_kw = _accepts_use_cache(model)
        self.max_id = -1        # the largest token id asked for, checked against the first logits
        self.checked = False

    def to_device(self, array: np.ndarray):
        import torch

        tensor = torch.from_numpy(array)
        if self.device.type == "cuda":
            return tensor.pin_memory().to(self.device, non_blocking=True)
        return tensor.to(self.device)

    def check(self, logits) -> None:
        if not self.checked:
            _check_ids(self.max_id, logits.shape[-1])
            self.checked = True

    def plain(self, input_ids, mask):
        logits = forward_logits(self.model, input_ids, None if self.mask_free else mask, self.use_cache_kw)
        self.check(logits)
        return logits

    def prefix_then_continuations(self, prefix_ids, row_groups, continuation_ids):
        """Logits of the prefixes ``(G, P)`` and of each row's continuation ``(R, W)`` after its
        group's prefix (``row_groups (R,)``), through the model's decoding cache."""
        from blalm.model.hf_model import CACHE_FIELD   # the cache's name in the installed transformers

        out = self.model(input_ids=prefix_ids, use_cache=True)
        self.check(out.logits)
        cache = getattr(out, CACHE_FIELD).reorder_cache(row_groups)
        cont = self.model(input_ids=continuation_ids, use_cache=True, **{CACHE_FIELD: cache})
        return out.logits, cont.logits


def _log_probs_at(logits, rows, cols, targets, first_col: int = 0):
    """float32 ``log P(targets)`` read at ``logits[rows, cols]`` (every col ≥ ``first_col``). The
    log-softmax runs on those positions only when they are a minority of the batch (a copy of them
    is cheaper than the rest), else on every position from ``first_col`` on (no copy)."""
    import torch

    n_positions = logits.shape[0] * (logits.shape[1] - first_col)
    if 2 * rows.numel() < n_positions:
        picked = logits[rows, cols].float()
        return torch.log_softmax(picked, dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    logp = torch.log_softmax(logits[:, first_col:].float(), dim=-1)
    return logp[rows, cols - first_col, targets]


def _row_sums(values, rows, cols, n_rows: int, n_cols: int):
    """float64 sum per row of ``values`` placed at ``(rows, cols)`` (deterministic: no atomics)."""
    import torch

    dense = torch.zeros((n_rows, n_cols), dtype=torch.float64, device=values.device)
    dense[rows, cols] = values.double()
    return dense.sum(dim=1)


def _padded_rows(seqs: Sequence[Sequence[int]], n_rows: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """``(ids, mask)`` of ``n_rows x width``: each sequence right-padded (cut at ``width``); rows past
    the sequences are filler (token 0, mask 1) that a fixed compiled shape needs."""
    ids = np.zeros((n_rows, width), dtype=np.int64)
    mask = np.ones((n_rows, width), dtype=np.int64)
    for j, s in enumerate(seqs):
        n = min(len(s), width)
        ids[j, :n] = s[:n]
        mask[j, n:] = 0
    return ids, mask


def _plain_shape(fwd: _Forward, longest: int, n: int) -> tuple[int, int]:
    """(rows, width) of a plain batch: as needed, or a fixed ladder shape (``Batching.widths``, what a
    compiled model is given)."""
    if not fwd.batching.widths:
        return n, longest
    width = fwd.batching.padded_width(longest)
    return max(n, fwd.batching.rows_for(width)), width


def _plain_sums(fwd: _Forward, rows: Sequence[Encoded]):
    """Summed log-probs of ``rows`` from one forward pass (a device tensor)."""
    n_rows, width = _plain_shape(fwd, max(len(r.ids) for r in rows) - 1, len(rows))
    ids, mask = _padded_rows([r.ids for r in rows], n_rows, width + 1)
    sel = np.array([(j, p - 1, r.ids[p]) for j, r in enumerate(rows) for p in r.scored], dtype=np.int64)
    packed = fwd.to_device(np.concatenate([ids.ravel(), mask[:, :-1].ravel(), sel.T.ravel()]))
    cut = n_rows * (width + 1)
    ids_t = packed[:cut].view(n_rows, width + 1)
    mask_t = packed[cut:cut + n_rows * width].view(n_rows, width)
    sel_t = packed[cut + n_rows * width:].view(3, -1)
    logits = fwd.plain(ids_t[:, :-1], mask_t)
    values = _log_probs_at(logits, sel_t[0], sel_t[1], sel_t[2], min(r.scored[0] for r in rows) - 1)
    return _row_sums(values, sel_t[0], sel_t[1], n_rows, width)[:len(rows)]


def _shared_sums(fwd: _Forward, seqs: Sequence[Encoded], groups: Sequence[SharedGroup], prefix: int):
    """Summed log-probs of the members of ``groups`` (in order): each group's first ``prefix`` tokens
    run once, every member's remaining tokens from the cache after them."""
    import torch

    members = [m for g in groups for m in g.members]
    row_groups = np.array([k for k, g in enumerate(groups) for _ in g.members], dtype=np.int64)
    pre_ids = np.array([seqs[g.members[0]].ids[:prefix] for g in groups], dtype=np.int64)
    cont_ids, _ = _padded_rows([seqs[m].ids[prefix:-1] for m in members], len(members),
                               max(len(seqs[m].ids) for m in members) - 1 - prefix)
    sel = np.array([(r, p <= prefix, p - 1, seqs[m].ids[p]) for r, m in enumerate(members)
                    for p in seqs[m].scored], dtype=np.int64).reshape(-1, 4)
    in_prefix = sel[:, 1] == 1
    a, b = sel[in_prefix], sel[~in_prefix]
    parts = [pre_ids.ravel(), row_groups, cont_ids.ravel(), row_groups[a[:, 0]], a[:, 2], a[:, 3],
             b[:, 0], b[:, 2] - prefix, b[:, 3], a[:, 0], b[:, 0], a[:, 2], b[:, 2]]
    packed = fwd.to_device(np.concatenate(parts))
    views, k = [], 0
    for part in parts:
        views.append(packed[k:k + part.size])
        k += part.size
    pre_t, groups_t, cont_t = views[0].view(pre_ids.shape), views[1], views[2].view(cont_ids.shape)
    logits_pre, logits_cont = fwd.prefix_then_continuations(pre_t, groups_t, cont_t)
    values = torch.cat([_log_probs_at(logits_pre, views[3], views[4], views[5]),
                        _log_probs_at(logits_cont, views[6], views[7], views[8])])
    rows, cols = torch.cat([views[9], views[10]]), torch.cat([views[11], views[12]])
    width = max(len(seqs[m].ids) for m in members) - 1
    return _row_sums(values, rows, cols, len(members), width)


def sequence_logprobs(model: Any, seqs: Sequence[Encoded], batch_size: int = 64, progress: bool = False,
                      desc: str = "scoring", batching: Batching | None = None) -> list[float]:
    """Summed log-probability of each sequence's scored positions (0.0 when none is scored).

    ``batching`` (default: ``Batching(batch_size=batch_size)``) says how sequences share forward
    passes (a compiled model, :func:`compile_for_scoring`, is given the ladder's fixed shapes)."""
    import torch
    from tqdm import tqdm

    batching = batching or Batching(batch_size=batch_size)
    batching.validate()
    unique: dict[Encoded, int] = {}
    for s in seqs:
        unique.setdefault(s, len(unique))
    todo = [s for s in unique if s.scored]
    results: dict[Encoded, float] = {s: 0.0 for s in unique if not s.scored}
    if todo:
        fwd = _Forward(model, batching)
        fwd.max_id = max(max(s.ids) for s in todo)
        groups, alone = (shared_prefix_groups([s.ids for s in todo], batching.shared_prefix_min)
                         if fwd.mask_free else ([], list(range(len(todo)))))
        lengths = [len(s.ids) for s in todo]
        work = [("shared", prefix, [groups[g] for g in batch])
                for prefix, batch in plan_shared_batches(groups, lengths, batching)]
        # a plain pass feeds each sequence but its last token (the inputs of _plain_sums)
        work += [("plain", 0, [alone[i] for i in batch])
                 for batch in plan_batches([lengths[i] - 1 for i in alone], batching)]
        order, sums = [], []
        with torch.inference_mode():
            for kind, prefix, batch in tqdm(work, desc=desc, unit="batch", disable=not progress, leave=False):
                if kind == "shared":
                    order += [m for g in batch for m in g.members]
                    sums.append(_shared_sums(fwd, todo, batch, prefix))
                else:
                    order += batch
                    sums.append(_plain_sums(fwd, [todo[i] for i in batch]))
            values = torch.cat(sums).cpu().tolist()      # the one copy back from the device
        for i, v in zip(order, values):
            results[todo[i]] = float(v)
    return [results[s] for s in seqs]


def next_token_logprobs(model: Any, queries: Sequence[tuple[tuple[int, ...], int]], batch_size: int = 64,
                        progress: bool = False, desc: str = "next-token", batching: Batching | None = None
                        ) -> list[float]:
    """``log P(target | context)`` for each ``(context ids, target id)``, read at the context's last
    position; each distinct context is run once."""
    import torch
    from tqdm import tqdm

    batching = batching or Batching(batch_size=batch_size)
    batching.validate()
    contexts: dict[tuple[int, ...], int] = {}
    for ctx, _ in queries:
        if not ctx:
            raise ValueError("an empty context cannot predict a next token")
        contexts.setdefault(ctx, len(contexts))
    ctx_list = list(contexts)
    wanted: dict[tuple[int, ...], list[int]] = {}
    for ctx, tgt in queries:
        if int(tgt) not in wanted.setdefault(ctx, []):
            wanted[ctx].append(int(tgt))
    if not ctx_list:
        return []
    fwd = _Forward(model, batching)
    fwd.max_id = max(max(max(c) for c in ctx_list), max(int(t) for _, t in queries))
    keys: list[tuple[tuple[int, ...], int]] = []
    values = []
    with torch.inference_mode():
        for batch in tqdm(plan_batches([len(c) for c in ctx_list], batching), desc=desc, unit="batch",
                          disable=not progress, leave=False):
            rows = [ctx_list[i] for i in batch]
            n_rows, width = _plain_shape(fwd, max(len(r) for r in rows), len(rows))
            ids, mask = _padded_rows(rows, n_rows, width)
            sel = np.array([(j, len(r) - 1, t) for j, r in enumerate(rows) for t in wanted[r]], dtype=np.int64)
            keys += [(r, t) for r in rows for t in wanted[r]]
            packed = fwd.to_device(np.concatenate([ids.ravel(), mask.ravel(), sel.T.ravel()]))
            ids_t = packed[:ids.size].view(ids.shape)
            mask_t = packed[ids.size:2 * ids.size].view(ids.shape)
            sel_t = packed[2 * ids.size:].view(3, -1)
            values.append(_log_probs_at(fwd.plain(ids_t, mask_t), sel_t[0], sel_t[1], sel_t[2]))
        got = dict(zip(keys, torch.cat(values).cpu().tolist()))
    return [float(got[(ctx, int(t))]) for ctx, t in queries]


def compile_for_scoring(model: Any) -> Any:
    """Each decoder block of ``model`` compiled in place with dynamic shapes (regional compilation,
    :func:`blalm.model.compile.compile_backbone`, as the fine-tuning compiles); returns ``model``.
    One graph per block class serves the few shapes that ``Batching.widths`` makes (whole-model
    compilation with static shapes took more than 170 s on a first full-BLiMP pass of the 270M
    model on an H200, docs/results/eval_speed.md). The embedding and the vocabulary projection
    stay eager."""
    from blalm.errors import InputError
    from blalm.model.compile import compile_backbone

    if compile_backbone(model.base_model) == 0:
        raise InputError(f"--compile: {type(model).__name__} has no list of decoder blocks (layers or h) to "
                         f"compile; score it without --compile")
    return model


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
